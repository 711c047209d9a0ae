"""New cases and what the committee receives of what reporters and parties write: the report
(`new_report`, or a member's forward with `!new`), follow-ups, urgency. Content reaches members
only after the member scan (`core.scanning`), whose named members are recused first.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlalchemy.orm import Session

from conduct_inbox.cases import acks, fences, mailer, recusals, standing
from conduct_inbox.cases.audit import Entry, event, events, written
from conduct_inbox.cases.context import Context, recused, subject
from conduct_inbox.cases.deadlines import refresh_clock, start_clock
from conduct_inbox.cases.notes import file_note
from conduct_inbox.core import routing, scanning, states
from conduct_inbox.core.classify import Classification
from conduct_inbox.core.command_types import Concerns, New
from conduct_inbox.core.commands import strip_commands, title_of
from conduct_inbox.core.promises import hours_text
from conduct_inbox.core.roster import Person
from conduct_inbox.core.sla import is_urgent_text
from conduct_inbox.mail.compose import Draft
from conduct_inbox.mail.headers import case_ref_in
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.db import DIALECT_INSERTS
from conduct_inbox.store.models import Case, CaseCounter, InboundMessage, Party

LAW_TASK = "notify law enforcement?"

_counters = CaseCounter.__table__
#: The year's next case number, counted by the database (safe with two daemons). A plain
#: statement on the table: no autoflush first.
_NEXT_NUMBER = {
    name: insert_of(_counters).values(year=bindparam("year"), last=1)
    .on_conflict_do_update(index_elements=["year"], set_={"last": _counters.c.last + 1}).returning(_counters.c.last)
    for name, insert_of in DIALECT_INSERTS.items()
}


# ----- cases ----------------------------------------------------------------------------------


def next_ref(session: Session, now: datetime) -> str:
    """Allocate the next per-year reference atomically (safe with two daemons)."""
    number = session.execute(_NEXT_NUMBER[session.get_bind().dialect.name], {"year": now.year}).scalar_one()
    return f"{now.year}-{number:04d}"


def new_case(ctx: Context, session: Session, msg: Parsed, now: datetime, flags: Iterable[str] = ()) -> Case:
    """A new case with its reference and reporter, not yet added to the session."""
    flags = set(flags)
    title = title_of(msg.subject)[:200] or "(no subject)"
    case = Case(
        ref=next_ref(session, now),
        title=title,
        status=states.NEW,
        spam="spam" in flags,
        auto="auto" in flags,
        urgent=False,
        unverified=False,
        created_at=now,
        updated_at=now,
        parties=[],  # a new case's collections start loaded: no query to find them empty
        recusals=[],
    )
    # Spam and automatic mail run no clock until a member acknowledges the case.
    if not case.spam and not case.auto:
        case.next_due_at = now + timedelta(hours=ctx.options.ack_hours)
    if msg.reporter_address:
        case.parties.append(Party(role="reporter", address=msg.reporter_address, name=msg.reporter_name, created_at=now))
    return case


def open_case(ctx: Context, session: Session, msg: Parsed, now: datetime, flags: Iterable[str] = ()) -> Case:
    """A new case, written (flushed) with its reporter and a case_opened event."""
    flags = set(flags)
    case = new_case(ctx, session, msg, now, flags)
    session.add(case)
    session.flush()
    event(session, case.id, "system", "case_opened", now, flags=sorted(flags))
    return case


def open_reported_case(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    """A new report: the case, its acknowledgement and the committee's copies."""
    # Everything that decides the case's first deadline is known before it is written, so the
    # case, its reporter and this message's link to it go to the database in one flush.
    case = new_case(ctx, session, msg, now, flags=result.flags)
    urgent = is_urgent(ctx, case, msg)
    case.urgent = urgent
    no_ack = acks.no_ack_reason(ctx, session, case, msg.reporter_address, now)
    if not no_ack and msg.case_ref and fences.is_lost_ref(session, msg.case_ref):
        no_ack = acks.LOST_REF  # they were acknowledged for it before the restore
    start_clock(ctx, case, ack_queued_at=None if no_ack else now)
    row.case, row.status = case, "processed"
    session.add(case)
    session.flush()
    # The audit entries go in as few INSERTs as their order allows (usually one, at the end).
    entries: list[Entry] = [
        ("system", "case_opened", {"flags": sorted(result.flags)}), ("reporter", "report_received", {"inbound_id": row.id})
    ]
    recusals.recuse_reporting_member(ctx, session, case, now)
    recusals.carry_over(session, case, msg.case_ref, now)
    scanned = scanning.scan(msg, ctx.roster, report_body(msg))
    named = scanning.recusing(scanned, ("reporter",))
    if named:
        entries = written(session, case, now, entries)
        recusals.recuse_named(session, case, named, now)
    if urgent:
        entries += [("system", "marked_urgent", {"automatic": True}), ("system", "task_opened", {"task": LAW_TASK})]
    if ctx.options.recovering:
        entries.append(("system", "recovered_after_restore", {}))
    if no_ack == acks.RATE_LIMITED:
        entries = written(session, case, now, entries)
        acks.note_rate_limit(ctx, session, case, msg.reporter_address or "", now)
    # The acknowledgement and the committee's copies in one INSERT.
    drafts: list[Draft] = [] if no_ack else [acks.ack_draft(ctx, case, msg)]
    drafts += report_copies(ctx, case, msg, scanned, now, acked=not no_ack, ack_reason=no_ack)
    mailer.send(session, ctx, drafts, now, case_id=case.id, inbound_id=row.id)
    if not no_ack:
        entries.append(("system", "acknowledgement_queued", {}))
    written(session, case, now, entries)
    return f"new case {case.ref}" + (f" [{','.join(sorted(result.flags))}]" if result.flags else "")


def open_forwarded_case(
    ctx: Context, session: Session, row: InboundMessage, msg: Parsed, member: Person, new: New, concerns: Sequence[Concerns],
    now: datetime, urgent: bool = False,
) -> str:
    """`!new ADDRESS [noack]`: a report a member received directly and forwards to the committee."""
    forwarded = msg.forwarded[0] if msg.forwarded else None
    subject_ = forwarded.subject if forwarded else strip_commands(msg.subject)
    text = forwarded.text if forwarded else msg.own_text
    report = replace(
        msg, subject=subject_ or "(forwarded report)", text=text, own_text=text,
        reporter_address=new.address.lower(), reporter_name=None, forwarded=msg.forwarded[1:],
        # The member's own message: the reporter never saw it, so their acknowledgement must not
        # reference it (threading headers would show them the committee's internal mail).
        message_id=None, in_reply_to=(), references=(),
    )
    # Only the forwarded content counts for recusal, not the forwarding member's own words;
    # the forward's attachments and file names do.
    sources = scanning.FORWARDED_SOURCES if forwarded else scanning.FORWARDED_SOURCES | {"body"}
    scanned = scanning.scan(report, ctx.roster, report_body(report), sources=sources, subject=subject_ or "")
    case = open_case(ctx, session, report, now)
    case.forwarded_by = member.email
    row.case_id, row.status, row.kind = case.id, "processed", "forwarded_report"
    event(session, case.id, member.email, "report_forwarded", now, inbound_id=row.id, noack=new.noack)
    for c in concerns:  # before anything is sent
        person = ctx.roster.find(c.name)
        if person is not None:
            recusals.recuse_before_sending(session, case, person.email, member.email, now)
    session.flush()
    session.refresh(case)
    recusals.recuse_reporting_member(ctx, session, case, now)
    # A report written under a purged case's reference, forwarded: kept from whom that case was.
    recusals.carry_over(session, case, case_ref_in(subject_ or "", ctx.options.case_tag), now)
    recusals.recuse_named(session, case, scanning.recusing(scanned, ("forwarded",)), now)
    if urgent and not case.spam:  # `!new ... !urgent`: the member says so
        case.urgent = True
        note_urgent(session, case, now)
    else:
        check_urgency(ctx, session, case, report, now)
    if new.noack:
        acked, ack_reason = False, "the forwarding member asked for none"
    else:
        acked, ack_reason = acks.acknowledge(ctx, session, case, report, now)
    drafts = report_copies(ctx, case, report, scanned, now, acked, ack_reason)
    mailer.send(session, ctx, drafts, now, case_id=case.id, inbound_id=row.id)
    if member.email not in {d.recipient for d in drafts}:
        # The copy is the forwarding member's confirmation; one who gets none (a steering member,
        # or one the report concerns) is told it was filed, and nothing more.
        mailer.reply_to_member(session, ctx, None, member, "confirmation", now,
                               done=[f"the report you forwarded was filed as case {case.ref}; its copies went to "
                                     "the members who handle it"])
    if forwarded is not None and msg.own_text.strip():
        # The member's own words beside the forward are never dropped: an internal note.
        file_note(ctx, session, case, member, msg.own_text.strip(), now, inbound_id=row.id)
    refresh_clock(ctx, session, case)
    return f"forwarded report opened case {case.ref}"


# ----- urgency --------------------------------------------------------------------------------


def check_urgency(ctx: Context, session: Session, case: Case, msg: Parsed, now: datetime) -> None:
    if is_urgent(ctx, case, msg):
        case.urgent, case.urgent_since = True, now
        note_urgent(session, case, now)
        refresh_clock(ctx, session, case)


def is_urgent(ctx: Context, case: Case, msg: Parsed) -> bool:
    """The sender's own, unquoted text matches the configured urgent phrases (never on spam)."""
    if case.spam or not ctx.options.urgent_phrases:
        return False
    return is_urgent_text(f"{msg.subject}\n{msg.own_text or msg.text}", ctx.options.urgent_phrases)


def note_urgent(session: Session, case: Case, now: datetime) -> None:
    events(session, case.id, now, ("system", "marked_urgent", {"automatic": True}),
           ("system", "task_opened", {"task": LAW_TASK}))


def urgent_task(session: Session, case: Case, now: datetime) -> str:
    """The case became urgent: open the task of considering law enforcement; returns the alert's text."""
    event(session, case.id, "system", "task_opened", now, task=LAW_TASK)
    return (f"Case {case.ref} was marked URGENT. Its deadlines are now short. "
            "Consider whether law enforcement must be notified.")



# ----- copies for the committee ---------------------------------------------------------------


def report_body(msg: Parsed) -> str:
    parts = [msg.text.strip() or "(the message has no text)"]
    for fwd in msg.forwarded:
        parts.append(f"----- forwarded message -----\nSubject: {fwd.subject}\n\n{fwd.text.strip()}")
    return "\n\n".join(parts)


def report_copies(ctx: Context, case: Case, msg: Parsed, content: scanning.Scanned, now: datetime, acked: bool,
                  ack_reason: str) -> list[Draft]:
    """The committee's copies of a new report (none for spam: it goes out in the daily digest)."""
    if case.spam:
        return []
    audience = routing.committee(ctx.roster, recused(case))
    listed = mailer.attachments(ctx, content)[0]
    where = standing.of(ctx, case, now)  # once: the copy's due time and its block say the same
    body = ctx.renderer.render(
        "report",
        marker=audience.marker_line(),
        ref=case.ref,
        auto=case.auto,
        spam=case.spam,
        unverified=case.unverified,
        received=standing.when(ctx, now),
        reporter=person_text(msg.reporter_name, msg.reporter_address),
        subject=content.subject or "(no subject)",
        acknowledged=acked,
        ack_reason=ack_reason,
        ack_time=hours_text(ctx.options.promises.ack_hours_for(bool(case.urgent))),
        ack_due=standing.due_text(ctx, where, "ack"),
        body=content.body,
        attachments=listed,
        max_mb=ctx.options.max_forward_attachment_mb,
    )
    subject_ = subject(ctx, case, " ".join(m for m, on in (("URGENT", case.urgent), ("[auto]", case.auto)) if on))
    return mailer.committee_drafts(ctx, case, audience, "report", subject_, lambda _p: body, content, now=now, where=where)


def forward_to_committee(ctx: Context, session: Session, case: Case, row: InboundMessage, msg: Parsed, now: datetime,
                         heading: str, sender_roles: Collection[str], urgent: bool = False) -> None:
    """A follow-up to the members who may see the case, after the member scan: a member it
    names is recused first, unless the sender is the reported person (then the copy says whom
    it names, and the committee decides with !concerns)."""
    content = scanning.scan(msg, ctx.roster, scanning.followup_body(msg), sources=scanning.FOLLOWUP_SOURCES)
    recuse = scanning.recusing(content, sender_roles)
    recusals.recuse_named(session, case, recuse, now)
    named_only = [ctx.roster.person(e) for e in content.named if e not in recuse]
    audience = routing.committee(ctx.roster, recused(case))
    listed = mailer.attachments(ctx, content)[0]
    body = ctx.renderer.render(
        "followup",
        marker=audience.marker_line(),
        heading=heading,
        ref=case.ref,
        received=standing.when(ctx, now),
        sender=person_text(msg.reporter_name, msg.reporter_address),
        subject=content.subject or "(no subject)",
        body=content.body,
        named=[p.name for p in named_only if p is not None] if "reported" in sender_roles else [],
        attachments=listed,
        max_mb=ctx.options.max_forward_attachment_mb,
    )
    subject_ = subject(ctx, case, "URGENT" if urgent else "")  # (only the mail that made it urgent)
    drafts = mailer.committee_drafts(ctx, case, audience, "followup", subject_, lambda _p: body, content,
                                     now=now)
    mailer.send(session, ctx, drafts, now, case_id=case.id, inbound_id=row.id)


def person_text(name: str | None, address: str | None) -> str:
    if name and address:
        return f"{name} <{address}>"
    return address or name or "(unknown sender)"
