"""The thread a member's mail answers: the subjects a command must not stand in to count."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import InboundMessage, OutboxMessage

MAX_THREAD = 50  # message ids of In-Reply-To/References looked up
#: Inbound committee mail whose commands were not applied.
NOT_APPLIED_KINDS = ("command_error", "refused")


def thread_case_id(session: Session, msg: Parsed) -> int | None:
    """The case of the first of our messages this one answers (In-Reply-To, References)."""
    thread = [m for m in (*msg.in_reply_to, *msg.references) if m]
    if not thread:
        return None
    return session.scalars(select(OutboxMessage.case_id).where(
        OutboxMessage.message_id.in_(thread), OutboxMessage.case_id.is_not(None)).limit(1)).first()


def earlier_subjects(session: Session, msg: Parsed) -> list[str]:
    """Subjects a command must not stand in to count: every message this one answers or forwards
    (ours, or the member's own sent mail, as Gmail threads it), if its commands were applied.
    Subjects of reporters and parties never reach members' subjects (`commands.title_of`), and
    a party's subject on the case must not be able to block a command for good."""
    thread = [m for m in (*msg.in_reply_to, *msg.references) if m][:MAX_THREAD]
    # A member forwarding their own sent mail (no threading headers) carries its subject along.
    subjects: list[str | None] = [f.subject for f in msg.forwarded]
    if thread:
        subjects += session.scalars(select(OutboxMessage.subject).where(OutboxMessage.message_id.in_(thread))).all()
        # The member's own earlier mail counts only if its commands were applied: a refused
        # `!reply`, corrected and sent again as an answer to itself, must go out.
        subjects += session.scalars(select(InboundMessage.subject).where(
            InboundMessage.message_id.in_(thread), InboundMessage.kind.not_in(NOT_APPLIED_KINDS))).all()
    return [s for s in subjects if s]
