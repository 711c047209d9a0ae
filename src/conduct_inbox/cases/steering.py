"""The steering committee's side of a case: the case report the policy promises them (no
reporter or witness identities) and reconsideration of a closed case (`!reconsider REF`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conduct_inbox.cases import mailer
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.context import Context, recused, subject
from conduct_inbox.cases.deadlines import refresh_clock, restart_waits
from conduct_inbox.cases.merge import resolve
from conduct_inbox.core import routing, states
from conduct_inbox.core.command_types import Reconsider
from conduct_inbox.core.roster import Person
from conduct_inbox.store.models import Case, Decision, Event, InboundMessage, OutboxMessage


def steering_report(ctx: Context, session: Session, case: Case, now: datetime, reason: str) -> None:
    """The report the policy promises the steering committee: no reporter or witness identities."""
    # Who is excluded is itself an identity (a steering member who reported): not in this report.
    audience = routing.Audience(routing.steering(ctx.roster, recused(case)).recipients, steering_included=True)
    decisions = session.scalars(select(Decision).where(Decision.case_id == case.id).order_by(Decision.id)).all()
    timeline = session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.id)).all()
    inbound = session.scalar(select(func.count(InboundMessage.id)).where(InboundMessage.case_id == case.id))
    outbound = session.scalar(
        select(func.count(OutboxMessage.id)).where(
            OutboxMessage.case_id == case.id, OutboxMessage.audience.in_(("reporter", "party"))
        )
    )
    body = ctx.renderer.render(
        "steering_report",
        marker=audience.marker_line(),
        ref=case.ref,
        reason=reason,
        status=case.status,
        opened=case.created_at.strftime("%Y-%m-%d"),
        closed=case.closed_at.strftime("%Y-%m-%d") if case.closed_at else None,
        flags=", ".join(case.flags),
        inbound=inbound,
        outbound=outbound,
        decisions=[
            {"kinds": d.kinds.replace(",", ", "), "target": d.target_address if d.target_role == "reported" else d.target_role,
             "until": d.until.isoformat() if d.until else None, "status": d.status}
            for d in decisions
        ],
        timeline=[f"{e.at:%Y-%m-%d %H:%M} {e.action.replace('_', ' ')}" for e in timeline],
    )
    subject_ = f"[{ctx.options.case_tag} #{case.ref}] Case report for the steering committee"
    mailer.send(session, ctx, mailer.committee_drafts(ctx, case, audience, "steering_report", subject_, lambda _p: body, now=now),
                now, case_id=case.id)
    event(session, case.id, "system", "steering_report_queued", now, reason=reason)


def reconsider(ctx: Context, session: Session, row: InboundMessage, member: Person, c: Reconsider, now: datetime) -> str:
    """`!reconsider REF` on a personal token: steering members reopen a closed case for reconsideration."""
    case = session.scalars(select(Case).where(Case.ref == c.ref)).first()
    if case is not None and case.merged_into_id is not None:
        case = resolve(session, case)  # merged (`!merge`): the case it went into is reconsidered
    if not member.steering:
        return "!reconsider: only steering committee members can open a reconsideration"
    if case is None or case.purged_at is not None or member.email in recused(case):
        # One answer for unknown, purged and hidden references (a purged case has nothing left to
        # reconsider, and its recusals went with it).
        return f"!reconsider: there is no case {c.ref} you can act on"
    if case.status not in states.RECONSIDERABLE_FROM:
        # Named as written, its state not told: the answer must not say where a merged case went,
        # nor give a steering member who does not work on a case its state.
        return f"!reconsider: case {c.ref} cannot be reconsidered now (only a closed case can)"
    previous = case.status
    restart_waits(case, now)
    case.status, case.updated_at = states.RECONSIDERATION, now
    row.case_id = case.id
    event(session, case.id, member.email, "status_changed", now, old=previous, new=states.RECONSIDERATION)
    _announce_reconsideration(ctx, session, case, member, now)
    refresh_clock(ctx, session, case)
    return f"reconsideration of case {case.ref} opened; the steering members have the case"


def _announce_reconsideration(ctx: Context, session: Session, case: Case, member: Person, now: datetime) -> None:
    audience = routing.steering(ctx.roster, recused(case))
    mailer.to_committee(
        session, ctx, case, audience, "reconsideration", now, heading="Reconsideration opened",
        text=f"{member.name} opened a reconsideration of case {case.ref}. The steering members handle it; "
             "the original decision stays on record unchanged.",
        subject_=subject(ctx, case, "Reconsideration:"),
    )
