"""Case-less commands on a member's personal token (`!help`, `!list`, `!new`, `!reconsider`),
and a member's mail about a case reference the database does not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from conduct_inbox.cases import fences, mailer
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.context import Context
from conduct_inbox.cases.handlers import help_, list_text
from conduct_inbox.cases.reports import open_forwarded_case
from conduct_inbox.cases.steering import reconsider
from conduct_inbox.cases.threads import earlier_subjects
from conduct_inbox.core import command_types as ct
from conduct_inbox.core import commands as cmd
from conduct_inbox.core.admission import PersonalFacts, PersonalWay, personal_way
from conduct_inbox.core.roster import Person
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import InboundMessage

#: The commands a personal token may carry beside `!new`, by type: (ctx, session, row, member, command, now) → line.
PERSONAL: dict[type, Callable[[Context, Session, InboundMessage, Person, Any, datetime], str]] = {
    ct.Help: lambda ctx, session, row, member, c, now: help_(None, c),
    ct.List: lambda ctx, session, row, member, c, now: "your open cases:\n" + list_text(ctx, session, member),
    ct.Reconsider: reconsider,
}


def caseless(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, member: Person, now: datetime) -> str:
    row.status, row.kind = "processed", "personal"
    # A forwarded report's own subject cannot carry a command (`Fwd: ... !concerns Carol`).
    parsed = cmd.new_commands(msg.subject, earlier_subjects(session, msg))
    commands = [] if isinstance(parsed, cmd.CommandError) else parsed
    way = personal_way(PersonalFacts(
        parsed=not isinstance(parsed, cmd.CommandError),
        case_ref=bool(msg.case_ref),
        caseless=any(isinstance(c, (cmd.Reconsider, cmd.New)) for c in commands),
        new=any(isinstance(c, cmd.New) for c in commands),
        others_beside_new=any(not isinstance(c, (cmd.New, cmd.Concerns, cmd.Urgent)) for c in commands),
        unknown_concerns=any(isinstance(c, cmd.Concerns) and ctx.roster.find(c.name) is None for c in commands),
    ))
    if way is PersonalWay.NO_SUCH_CASE:
        _refusal(ctx, session, row, member, now, [f"there is no case {msg.case_ref} you can act on"])
        return "personal mail about an unknown case"
    if way is PersonalWay.MALFORMED:
        assert isinstance(parsed, cmd.CommandError)
        _refusal(ctx, session, row, member, now, list(parsed.problems))
        return "personal commands refused"
    if way is PersonalWay.NEW_WITH_OTHERS:
        _refusal(ctx, session, row, member, now, [
            "!new takes only !concerns and !urgent beside it; send the other commands on the new case's mail"])
        return "personal commands refused"
    if way is PersonalWay.NEW_UNKNOWN_CONCERNS:
        _refusal(ctx, session, row, member, now, ["!concerns: no member by that name; no case was opened"])
        return "personal commands refused"
    if way is PersonalWay.OPEN_FORWARDED:
        new = next(c for c in commands if isinstance(c, cmd.New))
        return open_forwarded_case(ctx, session, row, msg, member, new, [c for c in commands if isinstance(c, cmd.Concerns)],
                                   now, urgent=any(isinstance(c, cmd.Urgent) for c in commands))
    done = []
    for c in commands:
        run = PERSONAL.get(type(c))
        if run is None:
            _refusal(ctx, session, row, member, now, [f"!{ct.typed_name(c)} needs a case: reply to that case's mail"])
            return "case command without a case refused"
        done.append(run(ctx, session, row, member, c, now))
    event(session, None, member.email, "personal_commands", now, inbound_id=row.id)
    mailer.reply_to_member(session, ctx, None, member, "confirmation", now, done=done or ["nothing to do"])
    return "personal commands applied"


def unknown_case(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, member: Person, now: datetime) -> str:
    """A member's reply about a case reference the database does not hold: refused, the member
    told; when the reference was fenced off after a restore, the committee told once."""
    row.status, row.kind = "processed", "personal"
    assert msg.case_ref is not None
    lost = fences.is_lost_ref(session, msg.case_ref)
    no_such_case(ctx, session, row, member, msg.case_ref, now, lost=lost)
    if lost and fences.first_mail_about(session, msg.case_ref):
        mailer.alert(session, ctx, None, (
            f"Mail arrived about case {msg.case_ref}, a reference that may have been issued after the backup the case "
            "database was restored from. That case is not in the database: its report, if it was one, was taken in "
            "again under a new reference (see the recovery summary). Commands about it were refused."), now)
    return "mail about an unknown case refused" + (" (a reference fenced off after a restore)" if lost else "")


def no_such_case(ctx: Context, session: Session, row: InboundMessage, member: Person, ref: str, now: datetime,
                 lost: bool = False) -> None:
    """The one answer for a reference the member cannot act on: one that does not exist, and one
    they are excluded from (a different answer would tell them which cases are kept from them)."""
    why = f"there is no case {ref} you can act on" + (
        " (the case database was restored from a backup taken before that reference was issued)" if lost else "")
    _refusal(ctx, session, row, member, now, [why])


def _refusal(ctx: Context, session: Session, row: InboundMessage, member: Person, now: datetime, problems: list[str]) -> None:
    """Refused case-less commands: audited (ids only) and explained to the member alone. Not
    applied, so its subject never makes a later command stale (`threads.earlier_subjects`)."""
    row.kind = "command_error"
    event(session, None, member.email, "command_rejected", now, inbound_id=row.id)
    mailer.reply_to_member(session, ctx, None, member, "refusal", now, problems=problems)
