"""The thread a member's mail answers: the subjects a command must not stand in to count."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import InboundMessage, OutboxMessage

MAX_THREAD = 50  # message ids of In-Reply-To/References looked up
#: Inbound mail of a member whose commands were applied (cases/desk.py, cases/personal.py and
#: cases/reports.py set these kinds): the only inbound mail whose subject can make a command stale.
#: Anyone can send mail with a Message-ID a member's reply will reference (the case's root id, a
#: guessed one): their subject must not cancel the member's commands.
APPLIED_MEMBER_KINDS = ("commands", "commands_note", "note", "personal", "forwarded_report")


def thread_case_id(session: Session, msg: Parsed) -> int | None:
    """The case of the first of our messages this one answers (In-Reply-To, References)."""
    thread = [m for m in (*msg.in_reply_to, *msg.references) if m]
    if not thread:
        return None
    return session.scalars(select(OutboxMessage.case_id).where(
        OutboxMessage.message_id.in_(thread), OutboxMessage.case_id.is_not(None)).limit(1)).first()


def earlier_subjects(session: Session, msg: Parsed, forwarded_by: Callable[[str | None], bool] | None = None) -> list[str]:
    """Subjects a command must not stand in to count: every message this one answers or forwards
    (ours, or a member's own sent mail, as Gmail threads it), if its commands were applied.
    Subjects of reporters and parties never reach members' subjects (`commands.title_of`), and
    a party's subject on the case must not be able to block a command for good. `forwarded_by`:
    which forwarded messages count, by their sender (default: all, as for a report forwarded with
    `!new`, whose subject must not carry a command into the member's)."""
    thread = [m for m in (*msg.in_reply_to, *msg.references) if m][:MAX_THREAD]
    # A member forwarding their own sent mail (no threading headers) carries its subject along.
    subjects: list[str | None] = [f.subject for f in msg.forwarded if forwarded_by is None or forwarded_by(f.from_address)]
    if thread:
        subjects += session.scalars(select(OutboxMessage.subject).where(OutboxMessage.message_id.in_(thread))).all()
        # A member's earlier mail counts only if its commands were applied: a refused `!reply`,
        # corrected and sent again as an answer to itself, must go out.
        subjects += session.scalars(select(InboundMessage.subject).where(
            InboundMessage.message_id.in_(thread), InboundMessage.kind.in_(APPLIED_MEMBER_KINDS))).all()
    return [s for s in subjects if s]
