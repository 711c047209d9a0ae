"""`!history`: a case's timeline for the member who asks, and for them alone — what happened and
when, who did what, internal notes, decisions, the mail sent to the reporter and the parties.

It shows what the member may see of the case and nothing of what members excluded from it did:
that they are excluded (and why) is all; their commands, notes and votes before the exclusion are
left out, and mail that went to a party because of them is shown without their name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from conduct_inbox.cases.calls import Call
from conduct_inbox.cases.context import Context, recused, works_on
from conduct_inbox.core import routing
from conduct_inbox.core.command_types import History
from conduct_inbox.core.commands import title_of
from conduct_inbox.errors import Refused
from conduct_inbox.store.models import Case, Decision, Event, InboundMessage, OutboxMessage, Recusal

MAX_ENTRIES = 300  # the most recent; a long case says how many earlier ones were left out
MAX_NOTE = 4000  # characters of one note shown
#: Inbound rows whose own text is an internal note (as handlers.NOTE_KINDS).
NOTE_KINDS = ("note", "commands_note")
#: Events that are not steps of the case: read-only commands, refusals, the note event (the note
#: itself is shown from its message), the acknowledgement (shown as mail to the reporter), and
#: recusals (who is excluded, and why, heads the history).
_SKIPPED = frozenset({"command_help", "command_list", "command_history", "command_rejected", "command_refused",
                      "note_added", "member_recused", "acknowledgement_queued"})
_ACTIONS = {
    "case_opened": "case opened",
    "report_received": "report received",
    "followup_received": "follow-up received",
    "feedback_received": "feedback received after closure",
    "message_from_non_party": "message received from someone who is not a party",
    "automatic_reply_received": "automatic reply received (not forwarded)",
    "marked_urgent": "marked urgent",
    "task_opened": "task opened",
    "decision_effective": "decision took effect",
    "steering_report_queued": "report sent to the steering committee",
    "delivery_failed": "a mail could not be delivered",
    "case_merged": "another case was merged into this one",
    "member_included": "an excluded member was included again",
    "status_changed": "status changed",
}
_ACTORS = {"system": "", "reporter": "the reporter", "party": "a party", "unknown": "someone not a party"}


@dataclass(frozen=True)
class _Entry:
    at: datetime
    order: int
    text: str


def _zone(name: str) -> Any:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def _who(ctx: Context, actor: str) -> str:
    if actor in _ACTORS:
        return _ACTORS[actor]
    person = ctx.roster.person(actor)
    return person.name if person is not None else actor


def _event_text(ctx: Context, e: Event, merged_refs: dict[int, str]) -> str:
    detail = e.detail or {}
    if e.action == "status_changed":
        what = f"status {detail.get('old', '?')} -> {detail.get('new', '?')}"
    elif e.action == "case_merged":
        what = f"case {merged_refs.get(detail.get('from_case', -1), '(another case)')} merged into this one"
    elif e.action == "task_opened":
        what = f"task opened: {detail.get('task', '?')}"
    elif e.action.startswith("command_"):
        what = "!" + e.action.removeprefix("command_").replace("noturgent", "not-urgent")
    else:
        what = _ACTIONS.get(e.action, e.action.replace("_", " "))
    who = _who(ctx, e.actor)
    return f"{who}: {what}" if who else what


def _names(ctx: Context, emails: list[str | None], hidden: set[str]) -> str:
    return ", ".join(_who(ctx, e) for e in emails if e and e not in hidden) or "a member now excluded"


def timeline(ctx: Context, session: Session, case: Case, reader: str) -> str:
    """The history text of `case` as `reader` (a member who may see it) may read it."""
    zone = _zone(ctx.options.timezone)
    hidden = set(recused(case))
    # A member excluded once and included again did not receive the notes of the time between.
    windows = _exclusions(session, case, reader)
    entries: list[_Entry] = []
    merged_refs = {row.id: row.ref for row in session.execute(select(Case.id, Case.ref).where(Case.merged_into_id == case.id))}
    for e in session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.id)):
        if e.action in _SKIPPED or e.actor in hidden:
            continue
        entries.append(_Entry(e.at, 1, _event_text(ctx, e, merged_refs)))
    notes = session.execute(select(InboundMessage.received_at, InboundMessage.processed_at, InboundMessage.sender,
                                   InboundMessage.own_text)
                            .where(InboundMessage.case_id == case.id, InboundMessage.kind.in_(NOTE_KINDS))
                            .order_by(InboundMessage.id)).all()
    for received, processed, sender, text in notes:
        author = ctx.roster.person(sender)  # `bob+conduct@` is Bob
        if not (text or "").strip() or (sender or "").lower() in hidden or (author is not None and author.email in hidden):
            continue
        if any(start <= (processed or received) and (end is None or (processed or received) < end)
               for start, end in windows):
            continue
        body = "\n".join("      " + line for line in (text or "").strip()[:MAX_NOTE].splitlines())
        name = author.name if author is not None else _who(ctx, (sender or "").lower())
        entries.append(_Entry(processed or received, 2, f"{name}: internal note:\n{body}"))
    sent = session.execute(select(OutboxMessage.created_at, OutboxMessage.audience, OutboxMessage.kind,
                                  OutboxMessage.status)
                           .where(OutboxMessage.case_id == case.id, OutboxMessage.audience.in_(("reporter", "party")))
                           .order_by(OutboxMessage.id)).all()
    for at, audience, kind, status in sent:
        state = {"sent": "delivered to their mail server", "failed": "FAILED"}.get(status, "waiting to be sent")
        entries.append(_Entry(at, 3, f"mail to {'the reporter' if audience == 'reporter' else 'a party'} ({kind}): {state}"))
    entries.sort(key=lambda x: (x.at, x.order))
    left_out = max(0, len(entries) - MAX_ENTRIES)
    lines = [f"Case {case.ref}: {title_of(case.title)}", f"status {case.status}"
             + (f", flags {', '.join(case.flags)}" if case.flags else "")
             + (f", assignee {_who(ctx, case.assignee)}" if case.assignee else "")]
    lines += [f"party: {p.role} {p.name + ' ' if p.name else ''}<{p.address}>" for p in case.parties]
    excluded = routing.committee(ctx.roster, recused(case)).excluded
    if excluded:
        lines.append("excluded: " + ", ".join(f"{p.name} ({routing.RECUSAL_REASONS.get(r, r)})" for p, r in excluded))
    for d in session.scalars(select(Decision).where(Decision.case_id == case.id).order_by(Decision.id)):
        until = f" until {d.until.isoformat()}" if d.until else ""
        by = _names(ctx, [d.decided_by], hidden) + (f", confirmed by {_names(ctx, [d.confirmed_by], hidden)}" if d.confirmed_by else "")
        lines.append(f"decision: {d.kinds.replace(',', ', ')}{until} ({d.status}; by {by})")
    lines += ["", f"Timeline (times in {ctx.options.timezone}):"]
    if windows:
        lines.append("(internal notes from the time you were excluded from this case are not shown)")
    if left_out:
        lines.append(f"({left_out} earlier entries left out)")
    for entry in entries[left_out:]:
        lines.append(f"  {entry.at.astimezone(zone):%Y-%m-%d %H:%M}  {entry.text}")
    return "\n".join(lines)


def _exclusions(session: Session, case: Case, reader: str) -> list[tuple[datetime, datetime | None]]:
    """When `reader` was excluded from the case or from a case merged into it: (from, until), from
    the audit trail of their recusals (`member_recused` / `member_included`, by recusal id; a merge
    moves the events and leaves an ended recusal on the merged case); an exclusion recorded
    without those ids counts from its start to this day."""
    merged = select(Case.id).where(Case.merged_into_id == case.id)
    rows = session.execute(select(Recusal.id, Recusal.created_at).where(
        Recusal.member_email == reader, or_(Recusal.case_id == case.id, Recusal.case_id.in_(merged)))).all()
    if not rows:
        return []
    ids = {row.id for row in rows}
    marks = session.execute(select(Event.at, Event.action, Event.detail)
                            .where(Event.case_id == case.id, Event.action.in_(("member_recused", "member_included")))
                            .order_by(Event.id)).all()
    windows: list[tuple[datetime, datetime | None]] = []
    open_since: dict[int, datetime] = {}
    for at, action, detail in marks:
        recusal = (detail or {}).get("recusal")
        if not isinstance(recusal, int) or recusal not in ids:
            continue
        if action == "member_recused":
            open_since.setdefault(recusal, at)
        elif recusal in open_since:
            windows.append((open_since.pop(recusal), at))
    windows += [(start, None) for start in open_since.values()]
    if not windows:
        windows.append((min(row.created_at for row in rows), None))
    return windows


def history(call: Call, c: History) -> str:
    case = call.case
    if not works_on(call.ctx, case, call.member.email):
        raise Refused("!history: the case's history goes to the members working on it; the steering committee gets "
                      "the case report (without identities) unless it stands in for the committee or reconsiders "
                      "the case")
    return "the history of this case (to you only):\n\n" + timeline(call.ctx, call.session, case, call.member.email)
