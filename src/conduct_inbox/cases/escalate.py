"""Runs the pure SLA rules (`sla`) against the case store: reminders and escalations by mail.

Each case stores its next due time (`cases.next_due_at`, indexed); a pass looks only at cases
due by `now`. Every escalation sent is recorded in `escalations_fired` (unique per case and key)
in the same transaction as its outbox rows, so it fires once, across restarts and daemons: on
PostgreSQL the case row is claimed with SKIP LOCKED, and a racing insert of the same key fails
and rolls that case back. Recipients come only from `routing`; mail carries refs and ids only.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from conduct_inbox.cases import mailer, standing
from conduct_inbox.cases.context import Context, recused, subject
from conduct_inbox.cases.deadlines import case_clock, refresh_next_due
from conduct_inbox.core import routing, sla, states
from conduct_inbox.store.models import Case, EscalationFired, Event, OutboxMessage

log = logging.getLogger(__name__)

#: The key `sla` gives the one alert about an automatic acknowledgement still unsent.
AUTO_ACK_KEY = "auto_ack_unsent"


def _due_case_ids(session: Session, policy: sla.SlaPolicy, now: datetime) -> list[int]:
    """Cases that may have an escalation due: by the index, plus any whose acknowledgement is stuck.

    The second query keeps the unsent-acknowledgement alert working even where a case's
    next_due_at was set before its acknowledgement was queued.
    """
    by_index = session.scalars(
        select(Case.id).where(Case.next_due_at <= now).order_by(Case.next_due_at, Case.id)
    ).all()
    # No DISTINCT and no "case_id IS NOT NULL" here: either makes SQLite walk the case_id index over
    # the whole outbox instead of the (status, next_attempt_at) index over the few pending rows.
    stuck = session.scalars(
        select(OutboxMessage.case_id)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.kind == "ack",
            OutboxMessage.created_at <= now - timedelta(hours=policy.auto_ack_alert_hours),
            ~exists().where(EscalationFired.case_id == OutboxMessage.case_id, EscalationFired.key == AUTO_ACK_KEY),
        )
    ).all()
    seen = set(by_index)
    extra = [case_id for case_id in dict.fromkeys(stuck) if case_id is not None and case_id not in seen]
    return list(by_index) + extra


def _audience(ctx: Context, case: Case, level: int) -> routing.Audience:
    """A reminder goes to the committee; an escalation up the ladder (`routing.escalation`)."""
    if level == 0:
        return routing.committee(ctx.roster, recused(case))
    return routing.escalation(ctx.roster, recused(case), level)


def _subject(ctx: Context, case: Case, level: int) -> str:
    """The case's own subject: escalations thread with the rest of the case's mail (Gmail joins
    only equal subjects); the body's first line says Reminder or Overdue."""
    return subject(ctx, case)


def _send(session: Session, ctx: Context, case: Case, esc: sla.Escalation, now: datetime) -> int:
    """Queue one mail per recipient of the escalation and audit it. Returns the recipient count."""
    audience = _audience(ctx, case, esc.level)
    if (case.steering_since is None and case.status != states.RECONSIDERATION
            and (esc.level >= 2 or ctx.roster.chair is None) and any(p.steering for p in audience.recipients)):
        # Escalated to them (the second level, or the first standing in for a missing chair): the
        # steering members work on it from now. Standing in for a recused chair or a short quorum,
        # or reconsidering, they do only while that lasts (`routing.committee`).
        case.steering_since = now
    body = ctx.renderer.render(
        "escalation",
        marker=audience.marker_line(),
        ref=case.ref,
        rule=esc.rule,
        level=esc.level,
        urgent=case.urgent,
        description=esc.description.replace(sla.human(esc.due_at), standing.when(ctx, esc.due_at)),
        due=standing.when(ctx, esc.due_at),
        steering=audience.steering_included,
    )
    drafts = mailer.committee_drafts(ctx, case, audience, "escalation", _subject(ctx, case, esc.level), lambda _p: body,
                                     now=now)
    mailer.send(session, ctx, drafts, now, case_id=case.id)
    session.add(Event(case_id=case.id, at=now, actor="system", action="escalation_sent",
                      detail={"key": esc.key, "level": esc.level}))
    return len(drafts)


def _escalate_case(sessions: sessionmaker[Session], ctx: Context, policy: sla.SlaPolicy, case_id: int, now: datetime) -> int:
    """One case in one transaction: record what is due, queue its mail, move its next due time."""
    with sessions() as session, session.begin():
        # SKIP LOCKED: a case another daemon is working on right now is left to it.
        case = session.scalars(select(Case).where(Case.id == case_id).with_for_update(skip_locked=True)).first()
        if case is None:
            return 0
        due = sla.due([case_clock(session, case)], now, policy)
        for esc in due:
            session.add(EscalationFired(case_id=case.id, key=esc.key, level=esc.level, fired_at=now))
        session.flush()  # a key another daemon fired already fails here, before any mail is queued
        for esc in due:
            count = _send(session, ctx, case, esc, now)
            log.info("case %s: %s (level %d) queued to %d recipient(s)", case.ref, esc.key, esc.level, count)
        refresh_next_due(session, case, policy)
        return len(due)


def escalate_once(sessions: sessionmaker[Session], ctx: Context, policy: sla.SlaPolicy, now: datetime) -> int:
    """Send every reminder and escalation due at `now` that was not sent before. Returns how many."""
    with sessions() as session:
        case_ids = _due_case_ids(session, policy, now)
    sent = 0
    for case_id in case_ids:
        try:
            sent += _escalate_case(sessions, ctx, policy, case_id, now)
        except IntegrityError:
            log.info("case #%d: escalation already recorded by another daemon; skipped", case_id)
        except OperationalError as exc:
            log.warning("case #%d: escalation pass failed (%s); retried next time", case_id, type(exc.orig).__name__)
    return sent


def preview(sessions: sessionmaker[Session], ctx: Context, policy: sla.SlaPolicy, at: datetime) -> list[dict[str, Any]]:
    """What `escalate_once(at)` would send, and to whom. Records and sends nothing."""
    found: list[dict[str, Any]] = []
    with sessions() as session:
        for case_id in _due_case_ids(session, policy, at):
            case = session.get(Case, case_id)
            if case is None:
                continue
            for esc in sla.due([case_clock(session, case)], at, policy):
                found.append({
                    "ref": case.ref,
                    "rule": esc.rule,
                    "level": esc.level,
                    "key": esc.key,
                    "due_at": esc.due_at.isoformat(),
                    "description": esc.description,
                    "recipients": [p.email for p in _audience(ctx, case, esc.level).recipients],
                })
    found.sort(key=lambda e: (e["due_at"], e["ref"], e["level"]))
    return found
