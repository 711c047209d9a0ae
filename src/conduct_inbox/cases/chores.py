"""Periodic chores beside the SLA clocks: the urgent webhook, the daily spam digest, reminders
about sanctions ending soon, statistics and the members' weekly overview. Each is once-only
through the database, across restarts and daemons.

Recipients come from `routing` only; the webhook receives a case reference and nothing else.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Exists, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from conduct_inbox.cases import mailer, standing
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.context import Context, personal_reply_to, recused
from conduct_inbox.cases.context import subject as case_subject
from conduct_inbox.core import routing, states, weekly
from conduct_inbox.core.commands import title_of
from conduct_inbox.core.roster import Person
from conduct_inbox.mail.compose import Draft
from conduct_inbox.store.db import dialect_insert
from conduct_inbox.store.models import Case, DatabaseMeta, EscalationFired, Sanction

log = logging.getLogger(__name__)

WEBHOOK_KEY = "urgent_webhook"
DIGEST_KEY = "spam_digest"
_LAST_DIGEST = "spam_digest_at"
DIGEST_EVERY = timedelta(hours=24)


class _Overtaken(Exception):
    """Another daemon moved a once-per-period marker first: this transaction must not commit."""


def _advance_marker(session: Session, name: str, old: str | None, new: str) -> None:
    """Compare-and-set the database fact `name` from `old` (None: absent) to `new`, or raise _Overtaken."""
    if old is None:
        statement = dialect_insert(session)(DatabaseMeta).values(name=name, value=new)
        statement = statement.on_conflict_do_nothing(index_elements=["name"])
    else:
        statement = update(DatabaseMeta).where(DatabaseMeta.name == name, DatabaseMeta.value == old).values(value=new)
    # RETURNING, not rowcount: an ORM-enabled INSERT does not report a row count on every driver.
    if session.execute(statement.returning(DatabaseMeta.name)).first() is None:
        raise _Overtaken


def _fired(key: str) -> Exists:
    return exists().where(EscalationFired.case_id == Case.id, EscalationFired.key == key)


# ----- urgent webhook ---------------------------------------------------------------------------


def post_json(url: str, payload: dict[str, object], timeout: float = 10.0) -> bool:
    """POST `payload` as JSON; True on a 2xx answer. Errors are logged by type only (URLs may hold tokens)."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "conduct-inbox"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http/https only, validated)
            return 200 <= response.status < 300
    except urllib.error.HTTPError as exc:
        log.warning("urgent webhook answered HTTP %d", exc.code)
    except (OSError, ValueError) as exc:
        log.warning("urgent webhook unreachable (%s)", type(exc).__name__)
    return False


def post_urgent_webhooks(sessions: sessionmaker[Session], url: str, now: datetime) -> int:
    """POST {"case": REF} once for every urgent case not yet posted; a failed POST is retried next pass."""
    if not url:
        return 0
    posted = 0
    with sessions() as session:
        due = session.execute(
            select(Case.id, Case.ref).where(Case.urgent.is_(True), Case.spam.is_(False), ~_fired(WEBHOOK_KEY))
        ).all()
    for case_id, ref in due:
        if not post_json(url, {"case": ref, "urgent": True}):
            continue
        try:
            with sessions() as session, session.begin():
                session.add(EscalationFired(case_id=case_id, key=WEBHOOK_KEY, level=0, fired_at=now))
                event(session, case_id, "system", "urgent_webhook_posted", now)
            posted += 1
        except IntegrityError:
            pass  # another daemon posted it at the same moment
    return posted


# ----- spam digest ------------------------------------------------------------------------------


def send_spam_digest(sessions: sessionmaker[Session], ctx: Context, now: datetime) -> int:
    """Once a day, one mail per member listing the spam-flagged cases they may see; returns cases listed."""
    try:
        return _spam_digest(sessions, ctx, now)
    except _Overtaken:
        return 0  # another daemon sent it a moment ago


def _spam_digest(sessions: sessionmaker[Session], ctx: Context, now: datetime) -> int:
    with sessions() as session, session.begin():
        last = session.get(DatabaseMeta, _LAST_DIGEST)
        if last is not None and datetime.fromisoformat(last.value) > now - DIGEST_EVERY:
            return 0
        cases = session.scalars(
            select(Case).options(selectinload(Case.recusals))
            .where(Case.spam.is_(True), Case.purged_at.is_(None), ~_fired(DIGEST_KEY))
            .order_by(Case.id)
        ).all()
        if not cases:
            return 0
        audience = routing.committee(ctx.roster, {})

        def visible_to(person: Person) -> list[Case]:
            return [c for c in cases if routing.may_see(ctx.roster, recused(c), person.email)]

        def body_for(person: Person) -> str:
            visible = visible_to(person)
            if not visible:
                return ""
            return ctx.renderer.render(
                "spam_digest", marker=audience.marker_line(), cases=[
                    {"ref": c.ref, "received": standing.when(ctx, c.created_at), "title": c.title}
                    for c in visible
                ],
            )

        drafts = mailer.committee_drafts(ctx, None, audience, "spam_digest", "", body_for)
        # Each counts what its reader may see (a total would tell a member that a report kept from
        # them exists); replies go to the member's personal command address, where `!new` opens a case.
        by_email = {p.email: p for p in audience.recipients}
        drafts = [replace(d, reply_to=personal_reply_to(ctx, by_email[d.recipient]),
                          subject=f"[{ctx.options.case_tag}] Spam digest: {len(visible_to(by_email[d.recipient]))} "
                                  "message(s) set aside")
                  for d in drafts if d.body]
        mailer.send(session, ctx, drafts, now)
        for case in cases:
            session.add(EscalationFired(case_id=case.id, key=DIGEST_KEY, level=0, fired_at=now))
        _advance_marker(session, _LAST_DIGEST, last.value if last else None, now.isoformat())
    log.info("spam digest: %d case(s)", len(cases))
    return len(cases)


# ----- sanctions ending soon --------------------------------------------------------------------


def remind_sanctions_ending(sessions: sessionmaker[Session], ctx: Context, now: datetime, days: int) -> int:
    """Tell the members who may see the case that a sanction ends within `days`; once per sanction."""
    if days <= 0:
        return 0
    reminded = 0
    horizon = (now + timedelta(days=days)).date()
    with sessions() as session:
        ids = session.scalars(
            select(Sanction.id).where(
                Sanction.reminded_at.is_(None), Sanction.ends_on.is_not(None),
                Sanction.ends_on <= horizon, Sanction.ends_on >= now.date(),
            )
        ).all()
    for sanction_id in ids:
        with sessions() as session, session.begin():
            claimed = session.execute(
                update(Sanction).where(Sanction.id == sanction_id, Sanction.reminded_at.is_(None))
                .values(reminded_at=now).execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another daemon took it
            sanction = session.get(Sanction, sanction_id)
            assert sanction is not None and sanction.ends_on is not None
            case = session.scalars(
                select(Case).options(selectinload(Case.recusals)).where(Case.ref == sanction.case_ref)
            ).first()
            audience = routing.committee(ctx.roster, recused(case))
            body = ctx.renderer.render(
                "sanction_reminder", marker=audience.marker_line(), ref=sanction.case_ref, kind=sanction.kind,
                scope=sanction.scope, ends_on=sanction.ends_on.isoformat(),
                days_left=(sanction.ends_on - now.date()).days,
            )
            # The case's own subject, so the reminder threads with the case; without the case
            # (purged), the reference alone.
            subject = (case_subject(ctx, case) if case is not None
                       else f"[{ctx.options.case_tag} #{sanction.case_ref}] Reminder: {sanction.kind} ends {sanction.ends_on.isoformat()}")
            drafts = mailer.committee_drafts(ctx, case, audience, "sanction_reminder", subject, lambda _p: body, now=now)  # noqa: B023 (used at once)
            mailer.send(session, ctx, drafts, now, case_id=case.id if case else None)
            event(session, case.id if case else None, "system", "sanction_reminder_sent", now, sanction_id=sanction_id)
            reminded += 1
    return reminded


# ----- statistics to the steering address -------------------------------------------------------

_LAST_STATISTICS = "statistics_sent_month"


def send_statistics(
    sessions: sessionmaker[Session], ctx: Context, address: str, every_months: int, now: datetime
) -> bool:
    """Every `every_months` months (on the first pass of the month), mail the anonymous statistics of
    the last 12 full months to the steering address. Counts only, small ones hidden (stats.py)."""
    from conduct_inbox.cases.stats import collect, render_text

    if not address or every_months <= 0:
        return False
    month = now.year * 12 + now.month - 1
    try:
        with sessions() as session, session.begin():
            last = session.get(DatabaseMeta, _LAST_STATISTICS)
            if last is not None and month - int(last.value) < every_months:
                return False
            first_of_month = now.date().replace(day=1)
            since = first_of_month.replace(year=first_of_month.year - 1)
            until = first_of_month - timedelta(days=1)
            text = render_text(collect(session, since, until, today=now.date()))
            draft = Draft(kind="statistics", audience="steering", recipient=address,
                          subject=f"[{ctx.options.case_tag}] Statistics {since.isoformat()} to {until.isoformat()}",
                          body=text)
            mailer.send(session, ctx, [draft], now)
            _advance_marker(session, _LAST_STATISTICS, last.value if last else None, str(month))
    except _Overtaken:
        return False  # another daemon sent them a moment ago
    log.info("statistics sent to the steering address")
    return True


# ----- weekly overview --------------------------------------------------------------------------

_LAST_OVERVIEW = "weekly_overview_week"


def send_weekly_overview(sessions: sessionmaker[Session], ctx: Context, now: datetime, weekday: str, hour: int) -> int:
    """Once a week, from `weekday` at `hour`:00 in the committee's time zone on, one mail to each
    member listing the open cases routed to them (never one they are recused from), oldest first;
    a member with none is told so in a line. The week is claimed in the database before anything
    is written, so two daemons or a restart send it once; a daemon down at the hour sends it when
    it comes back that week. The first run on a database only starts the count (the first
    overview comes at the next hour due). Returns the mails queued."""
    slot = weekly.last_slot(now, ctx.options.timezone, weekday, hour)
    week = weekly.week_of(slot)
    try:
        with sessions() as session, session.begin():
            last = session.get(DatabaseMeta, _LAST_OVERVIEW)
            if last is not None and weekly.claimed_week(last.value) >= week:
                return 0
            _advance_marker(session, _LAST_OVERVIEW, last.value if last else None, week)
            if last is None:
                return 0
            drafts = _overview_drafts(session, ctx, now)
            mailer.send(session, ctx, drafts, now)
    except _Overtaken:
        return 0  # another daemon claimed this week a moment ago
    log.info("weekly overview: %d mail(s)", len(drafts))
    return len(drafts)


def _overview_drafts(session: Session, ctx: Context, now: datetime) -> list[Draft]:
    cases = session.scalars(
        select(Case).options(selectinload(Case.recusals))
        .where(Case.status != states.CLOSED, Case.spam.is_(False), Case.purged_at.is_(None))
        .order_by(Case.created_at, Case.id)
    ).all()
    # Every member, and a steering member only where a case is routed to them (too few members left).
    seen: dict[Person, list[Case]] = {p: [] for p in ctx.roster.members}
    for case in cases:
        for recipient in routing.committee(ctx.roster, recused(case)).recipients:
            seen.setdefault(recipient, []).append(case)
    drafts = []
    rows = {c.id: _overview_row(session, ctx, c, now) for c in cases}
    for person, visible in seen.items():
        audience = routing.Audience((person,))
        body = ctx.renderer.render("weekly_overview", marker=audience.marker_line(), zone=ctx.options.timezone,
                                   cases=[rows[c.id] for c in visible])
        drafts.append(Draft(kind="weekly_overview", audience="steering" if person.steering else "member",
                            recipient=person.email, recipient_name=person.name, body=body,
                            subject=f"[{ctx.options.case_tag}] Weekly overview: {len(visible)} open case(s)",
                            reply_to=personal_reply_to(ctx, person)))
    return drafts


def _overview_row(session: Session, ctx: Context, case: Case, now: datetime) -> dict[str, object]:
    """One case's line: its due time as the case's own mails state it (`cases.standing`)."""
    due = standing.next_due(session, ctx, case)
    return {"ref": case.ref, "title": title_of(case.title), "status": case.status, "urgent": case.urgent,
            "opened": standing.when(ctx, case.created_at), "assignee": _name(ctx, case.assignee),
            "due": standing.when(ctx, due) + (" (overdue)" if due <= now else "") if due else "none"}


def _name(ctx: Context, email: str | None) -> str:
    if email is None:
        return "nobody"
    person = ctx.roster.person(email)
    return person.name if person is not None else "a former member"
