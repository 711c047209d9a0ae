"""The SLA clocks of a stored case: the facts the pure rules (`core.sla`) need, and the case's
next due time (`cases.next_due_at`, indexed), recomputed after anything that moves a clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.cases.context import Context
from conduct_inbox.core import sla, states
from conduct_inbox.store.models import Case, EscalationFired, OutboxMessage, Party


def sla_policy(settings: Any) -> sla.SlaPolicy:
    """The SLA policy from loaded Settings (`[sla]`, and `committee.auto_ack_alert_hours`)."""
    s = settings.sla
    return sla.SlaPolicy(
        ack_hours=s.ack_hours,
        urgent_ack_hours=s.urgent_ack_hours,
        second_level_hours=s.second_level_hours,
        urgent_second_level_hours=s.urgent_second_level_hours,
        response_days=s.response_days,
        reminder_hours_before=s.reminder_hours_before,
        auto_ack_alert_hours=getattr(settings.committee, "auto_ack_alert_hours", 1),
        urgent_phrases=tuple(s.urgent_phrases),
    )


def case_clock(session: Session, case: Case) -> sla.CaseClock:
    """The facts of a stored case that the SLA rules need, fired escalations included."""
    fired = session.scalars(select(EscalationFired.key).where(EscalationFired.case_id == case.id)).all()
    pending_ack = session.scalar(
        select(OutboxMessage.created_at)
        .where(OutboxMessage.case_id == case.id, OutboxMessage.kind == "ack", OutboxMessage.status == "pending")
        .order_by(OutboxMessage.created_at)
        .limit(1)
    )
    return _clock(case, frozenset(fired), pending_ack)


def _clock(case: Case, fired: frozenset[str], pending_ack: datetime | None) -> sla.CaseClock:
    return sla.CaseClock(
        case_id=case.id,
        ref=case.ref,
        status=case.status,
        urgent=case.urgent,
        spam=case.spam,
        auto=case.auto,
        created_at=case.clocks_from or case.created_at,
        human_ack_at=case.human_ack_at,
        last_response_at=case.last_response_at,
        auto_ack_pending_since=pending_ack,
        fired=fired,
        urgent_since=case.urgent_since,
    )


def answered(case: Case, reporter: Party, now: datetime) -> None:
    """`reporter` was answered: their clock restarts, and the case's runs from whichever of its
    reporters now waits longest (after a merge, answering one is not answering all)."""
    reporter.answered_at = now
    reporter.waiting_since = None
    reset_response_clock(case)


def restart_waits(case: Case, now: datetime) -> None:
    """A closed case comes back (`!reopen`, `!reconsider`, a merge): every reporter is owed a
    response from now (what was owed before the closing was answered by it)."""
    for party in case.parties:
        if party.role == "reporter":
            party.waiting_since = now
    reset_response_clock(case)


def reset_response_clock(case: Case) -> None:
    """The case's response clock from its reporters' own clocks (`sla.response_from`)."""
    case.last_response_at = sla.response_from((p.answered_at, p.waiting_since) for p in case.parties
                                              if p.role == "reporter")


def refresh_next_due(session: Session, case: Case, policy: sla.SlaPolicy) -> None:
    """Recompute the case's next due time after anything that changes its clocks."""
    case.next_due_at = sla.next_due_at(case_clock(session, case), policy)


def new_case_due(case: Case, ack_queued_at: datetime | None, policy: sla.SlaPolicy) -> datetime | None:
    """`refresh_next_due` for a case opened in this very transaction: nothing has fired yet, and
    its acknowledgement (if any) was queued at `ack_queued_at`."""
    return sla.next_due_at(_clock(case, frozenset(), ack_queued_at), policy)


def refresh_clock(ctx: Context, session: Session, case: Case) -> None:
    """Recompute the case's next due time after anything that moves its clocks."""
    if not states.is_open(case.status) or case.spam:
        case.next_due_at = None
        return
    if ctx.sla_policy is not None:
        refresh_next_due(session, case, ctx.sla_policy)


def start_clock(ctx: Context, case: Case, ack_queued_at: datetime | None) -> None:
    """`refresh_clock` for a case opened in this transaction, without asking the database:
    nothing has fired yet and its acknowledgement, if any, was queued at `ack_queued_at`."""
    if case.spam:
        case.next_due_at = None
    elif ctx.sla_policy is not None:
        case.next_due_at = new_case_due(case, ack_queued_at, ctx.sla_policy)
