"""Recusals: members excluded from a case, automatically (named in what a reporter, witness or
unknown sender wrote) or by a command (`!concerns`, `!recuse`, a reported member). A recused
member is never an assignee and receives nothing more about the case (`core.routing`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from conduct_inbox.cases import mailer
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.context import Context, recused
from conduct_inbox.core import routing
from conduct_inbox.mail.compose import text_of
from conduct_inbox.store.models import Case, OutboxMessage, Recusal

log = logging.getLogger(__name__)


def withdraw_unsent(session: Session, case: Case, email: str) -> None:
    """Case mail to a member just recused that has not gone out (queued by an earlier command of
    the same subject, or waiting out an outage) never will: they receive nothing more about it.
    Nor will mail about several cases that names this one (the weekly overview, a `!list` answer,
    the spam digest): it would list a case they are excluded from; it is withdrawn whole (the next
    one comes as usual)."""
    pending = (OutboxMessage.recipient == email, OutboxMessage.status == "pending",
               OutboxMessage.audience.in_(("member", "steering")))
    session.execute(
        delete(OutboxMessage).where(OutboxMessage.case_id == case.id, *pending)
        .execution_options(synchronize_session=False)
    )
    # (any case's: a `!list` answered on another case's mail belongs to that case)
    listings = session.execute(select(OutboxMessage.id, OutboxMessage.data).where(*pending))
    naming = [row_id for row_id, data in listings if case.ref in text_of(data)]
    if naming:
        session.execute(delete(OutboxMessage).where(OutboxMessage.id.in_(naming)).execution_options(synchronize_session=False))
        log.info("case %s: %d queued mail(s) listing the case withdrawn from a member just recused", case.ref, len(naming))


def recuse_named(session: Session, case: Case, found: Sequence[str], now: datetime) -> list[str]:
    """Recuse these members (automatic recusal, reason "named"). Returns the ones newly recused."""
    if not found:
        return []
    current = recused(case)
    new = [email for email in found if email not in current]
    for recusal in case.recusals:
        if recusal.member_email in found and recusal.active and recusal.include_proposed_by:
            # Agreed about what the case held before: new mail naming them again voids it.
            recusal.include_proposed_by = None
            event(session, case.id, "system", "include_proposal_voided", now, recusal=recusal.id)
    for email in new:
        existing = next((r for r in case.recusals if r.member_email == email), None)
        if existing is not None:
            existing.active, existing.reason, existing.automatic = True, "named", True
        else:
            existing = Recusal(case_id=case.id, member_email=email, reason="named", automatic=True, active=True, created_at=now)
            session.add(existing)
            session.flush()
        if case.assignee == email:
            case.assignee = None
        withdraw_unsent(session, case, email)
        event(session, case.id, "system", "member_recused", now, reason="named", automatic=True, recusal=existing.id)
    if new:
        session.flush()
        session.refresh(case)
        log.info("case %s: %d member(s) recused automatically", case.ref, len(new))
    return new


def recuse_before_sending(session: Session, case: Case, email: str, actor: str, now: datetime) -> None:
    """`!new ... !concerns NAME`: recused before anything about the new case is sent (no announcement)."""
    recusal = Recusal(case_id=case.id, member_email=email, reason="concerns", automatic=False, active=True, created_at=now)
    session.add(recusal)
    session.flush()
    event(session, case.id, actor, "member_recused", now, reason="concerns", recusal=recusal.id)


def carry_over(session: Session, case: Case, ref: str | None, now: datetime) -> None:
    """A report written under the reference of a purged case (mail about it opens a new case): the
    members that case was kept from are kept from this one too, before anything is sent (its
    content is gone, not who it concerned)."""
    if not ref:
        return
    purged = session.scalars(select(Case).where(Case.ref == ref, Case.purged_at.is_not(None))).first()
    kept_from: set[str] = set()
    for _ in range(20):  # the purged case, and the case it was merged into (exclusions made there later)
        if purged is None:
            break
        kept_from |= set(recused(purged))
        purged = session.get(Case, purged.merged_into_id) if purged.merged_into_id is not None else None
    for email in sorted(kept_from):
        if email not in recused(case):
            recuse_before_sending(session, case, email, "system", now)
            session.refresh(case)


def recuse_reporting_member(ctx: Context, session: Session, case: Case, now: datetime) -> None:
    """A committee or steering member who reports (or is reported for, by `!new ADDRESS`) is the
    reporter: the case concerns them, so none of its internal mail reaches them (they hear as a
    reporter does). Before anything about the new case is sent."""
    reporter = case.party("reporter")
    person = ctx.roster.person(reporter.address) if reporter is not None else None
    if person is not None and person.email not in recused(case):
        recuse_before_sending(session, case, person.email, "system", now)
        session.refresh(case)


def recuse(ctx: Context, session: Session, case: Case, email: str, reason: str, now: datetime, automatic: bool,
           tell: Callable[[str], None] | None = None) -> None:
    """Recuse a member by command, and tell the members who may still see the case (through
    `tell`, a command's one announcement, when given; else in a mail of its own)."""
    existing = next((r for r in case.recusals if r.member_email == email), None)
    if existing is not None and existing.active and (existing.reason, existing.automatic) == (reason, automatic) \
            and existing.include_proposed_by is None:
        return  # excluded already, for this reason: the others were told then
    if existing is not None:
        existing.active, existing.reason, existing.automatic, existing.include_proposed_by = True, reason, automatic, None
    else:
        existing = Recusal(case_id=case.id, member_email=email, reason=reason, automatic=automatic, active=True, created_at=now)
        session.add(existing)
    session.flush()
    session.refresh(case)
    if case.assignee == email:
        case.assignee = None
    withdraw_unsent(session, case, email)
    event(session, case.id, "system", "member_recused", now, reason=reason, recusal=existing.id)
    person = ctx.roster.person(email)
    text = (f"{person.name if person else 'A member'} is excluded from this case "
            f"({routing.RECUSAL_REASONS.get(reason, reason)}) and receives nothing more about it.")
    if tell is not None:
        tell(text)
    else:
        mailer.announce(session, ctx, case, now, text)
