"""The facts `core.standing` turns into the block every committee mail about a case carries:
the case's clocks as the escalations see them (`deadlines.case_clock`, `sla.deadlines`), its
pending and time-limited decisions, its assignee.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.cases.context import Context
from conduct_inbox.cases.deadlines import case_clock
from conduct_inbox.core import sla, standing, states
from conduct_inbox.mail.quotes import REPLY_MARKER
from conduct_inbox.store.models import Case, Decision


@lru_cache(maxsize=8)
def zone(name: str) -> tzinfo:
    """The committee's time zone (validated when the configuration is loaded)."""
    return ZoneInfo(name)


def facts(session: Session, ctx: Context, case: Case, now: datetime | None = None) -> standing.Standing:
    """Where `case` stands, read in the caller's transaction."""
    due = sla.deadlines(case_clock(session, case), ctx.sla_policy) if ctx.sla_policy is not None else {}
    decisions = session.scalars(
        select(Decision).where(Decision.case_id == case.id, Decision.status.in_(("pending", "effective")))
        .order_by(Decision.id)
    ).all()
    person = ctx.roster.person(case.assignee) if case.assignee else None
    reporters = [p for p in case.parties if p.role == "reporter"]
    return standing.Standing(
        ref=case.ref, status=case.status, urgent=bool(case.urgent), spam=bool(case.spam), auto=bool(case.auto),
        acknowledged=case.human_ack_at is not None,
        assignee=(person.name if person is not None else case.assignee) if case.assignee else None,
        has_reporter=bool(reporters),
        several_reporters=len(reporters) > 1,
        reporters=len(reporters),
        unanswered=sum(sla.still_owed(p.answered_at, p.waiting_since) for p in reporters),
        due={k: v for k, v in due.items() if k in ("ack", "response")},
        sanctions_end=[(d.kinds.replace(",", ", "), d.until) for d in decisions if d.until is not None],
        decision_pending=any(d.status == "pending" for d in decisions),
        decided=any(d.status == "effective" for d in decisions),
        now=now,
    )


def of(ctx: Context, case: Case, now: datetime | None = None) -> standing.Standing | None:
    """Where `case` stands, in the session the case belongs to (none: the case alone)."""
    session = Session.object_session(case)
    if session is None or case.id is None:
        return None
    return facts(session, ctx, case, now)


def lines(ctx: Context, case: Case, now: datetime | None = None, where: standing.Standing | None = None) -> list[str]:
    """The block for `case` (`where`: its facts, when the caller has them already)."""
    where = where or of(ctx, case, now)
    return standing.lines(where, zone(ctx.options.timezone)) if where is not None else []


def due_text(ctx: Context, where: standing.Standing | None, clock: str) -> str:
    """When the case's `clock` ("ack" or "response") is due, as the block says it; "" when it runs not."""
    due = where.due.get(clock) if where is not None else None
    return standing.moment(due, zone(ctx.options.timezone)) if due is not None else ""


def next_due(session: Session, ctx: Context, case: Case) -> datetime | None:
    """The earliest due time the case's block states (human acknowledgement or response), from
    the same rules the escalations run on; None when no clock runs."""
    if ctx.sla_policy is None or case.spam or case.status == states.CLOSED:
        return None
    due = sla.deadlines(case_clock(session, case), ctx.sla_policy)
    running = [due[k] for k in ("ack", "response") if k in due]
    return min(running) if running else None


def when(ctx: Context, moment: datetime) -> str:
    """A moment (received, due) in the committee's time zone."""
    return standing.moment(moment, zone(ctx.options.timezone))


def with_block(body: str, block: list[str]) -> str:
    """`body` with the block after the first paragraph below our reply marker (the mail's own
    heading: "New report: case ...", "Overdue: case ...", "Case ...: done."), or at its end
    when an admin's template has no marker."""
    if not block:
        return body
    text = "\n".join(block) + "\n"
    at = body.find(REPLY_MARKER)
    if at < 0:
        return body.rstrip("\n") + "\n\n" + text
    start = at + len(REPLY_MARKER)
    while start < len(body) and body[start] == "\n":
        start += 1
    end = body.find("\n\n", start)
    if end < 0:
        return body.rstrip("\n") + "\n\n" + text
    return body[: end + 1] + "\n" + text + body[end + 1:]
