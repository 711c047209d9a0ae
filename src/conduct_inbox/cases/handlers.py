"""One function per command on a case, and the table that finds it by command type.

Each handler changes the case inside the desk's savepoint and returns the line the member's
confirmation shows, or raises `Refused` (then nothing of the message applies).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from conduct_inbox.cases import decisions, mailer, recusals
from conduct_inbox.cases.calls import Call
from conduct_inbox.cases.context import Context, recused, subject, works_on
from conduct_inbox.cases.deadlines import answered, restart_waits
from conduct_inbox.cases.history import history
from conduct_inbox.cases.merge import merge
from conduct_inbox.cases.reports import urgent_task
from conduct_inbox.cases.steering import steering_report
from conduct_inbox.core import command_types as ct
from conduct_inbox.core import routing, scanning, states
from conduct_inbox.core.commands import title_of
from conduct_inbox.core.outward import outward_text
from conduct_inbox.core.roster import Person
from conduct_inbox.errors import Refused
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import Case, Event, InboundMessage, Party

SHINGLE = 8  # words: a shared run this long between a reply and an internal note is a leak
NOTE_WITH_COMMANDS = "commands_note"
#: Inbound rows whose own text is an internal note (a !reply or !send must not repeat it).
NOTE_KINDS = ("note", NOTE_WITH_COMMANDS)


# ----- texts to parties -----------------------------------------------------------------------


def _norm_words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def leaks_note(text: str, notes: Sequence[str]) -> bool:
    """Whether `text` contains a passage of any internal note (a run of SHINGLE words, or a whole short note)."""
    words = _norm_words(text)
    joined = " " + " ".join(words) + " "
    shingles = {tuple(words[i : i + SHINGLE]) for i in range(max(0, len(words) - SHINGLE + 1))}
    for note in notes:
        nwords = _norm_words(note)
        if not nwords:
            continue
        if len(nwords) < SHINGLE:
            if len(nwords) >= 4 and f" {' '.join(nwords)} " in joined:
                return True
            continue
        if any(tuple(nwords[i : i + SHINGLE]) in shingles for i in range(len(nwords) - SHINGLE + 1)):
            return True
    return False


def _attachments_left_out(msg: Parsed) -> str:
    """Parties receive the committee's text only: say so when the member attached files."""
    attached = sum(1 for a in msg.attachments if not a.inline)
    return f" (text only: your {attached} attachment(s) were not sent; parties receive text only)" if attached else ""


def _outgoing_text(call: Call, what: str) -> str:
    """The member's text as a party may receive it: signature blocks removed, refused while it
    still identifies the member (parties hear from conduct@, never from a person) or repeats
    an internal note."""
    roster = call.ctx.roster
    result = outward_text(call.msg.own_text, call.member, committee_address=call.ctx.policy.address,
                          people=(*roster.members, *roster.steering))
    if result.refusal is not None:
        raise Refused(f"{what}: {result.refusal}")
    text = result.text
    if leaks_note(text, note_texts(call.session, call.case.id)):
        raise Refused(f"{what}: the text contains a passage of an internal note of this case; nothing was sent")
    return text


def note_texts(session: Session, case_id: int) -> list[str]:
    """The case's internal notes: mail filed as a note (NOTE_KINDS), and the words a member wrote
    beside a report they forwarded (`!new`), whose `note_added` entry names that mail."""
    noted = [d.get("inbound_id") for d in session.scalars(
        select(Event.detail).where(Event.case_id == case_id, Event.action == "note_added"))]
    notes = session.scalars(select(InboundMessage.own_text).where(InboundMessage.case_id == case_id, or_(
        InboundMessage.kind.in_(NOTE_KINDS), InboundMessage.id.in_([i for i in noted if isinstance(i, int)])))).all()
    return [n or "" for n in notes]


def _parties(n: int) -> str:
    return f"part{'y' if n == 1 else 'ies'}"


# ----- the handlers ---------------------------------------------------------------------------


def ack(call: Call, c: ct.Ack) -> str:
    case = call.case
    if case.human_ack_at is None:
        case.human_ack_at = call.now
    if case.status == states.NEW:
        call.set_status(states.TRANSITIONS[(states.NEW, "ack")])
    if case.assignee is None and not call.member.steering:
        case.assignee = call.member.email
    return "acknowledged"


def assign(call: Call, c: ct.Assign) -> str:
    roster, case = call.ctx.roster, call.case
    person = roster.find(c.name)
    if person is None or person.steering and person not in routing.committee(roster, recused(case)).recipients:
        raise Refused("!assign: no committee member by that name")
    if person.email in recused(case):
        raise Refused("!assign: that member is recused from this case")
    case.assignee = person.email
    return f"assigned to {person.name}"


def status(call: Call, c: ct.Status) -> str:
    case = call.case
    if case.status not in states.STATUS_SETTABLE_FROM:
        raise Refused(f"!status {c.state}: not possible while the case is {case.status}"
                      + (" (send !ack first)" if case.status == states.NEW else ""))
    call.set_status(c.state)
    return f"status {c.state}"


def _one_reporter(case: Case, what: str) -> None:
    """After a `!merge` a case may hold several reporters: a text written to "the reporter" could
    carry one reporter's words to another, so it is refused rather than guessed."""
    if sum(p.role == "reporter" for p in case.parties) > 1:
        raise Refused(f"{what}: this case holds reports from more than one reporter (a merge); name the one "
                      "you write to with !reply ADDRESS (!history lists the case's reporters)")


def reply(call: Call, c: ct.Reply) -> str:
    case = call.case
    if c.to is not None:
        reporter = next((p for p in case.parties if p.role == "reporter" and p.address == c.to), None)
        if reporter is None:
            raise Refused("!reply: no reporter of this case has that address")
    else:
        reporter = case.party("reporter")
        if reporter is None:
            raise Refused("!reply: this case has no reporter address")
        _one_reporter(case, "!reply")
    text = _outgoing_text(call, "!reply")
    mailer.send_to_party(call.session, call.ctx, case, reporter, text, call.now, kind="reply")
    call.copy("the reporter", text)
    answered(case, reporter, call.now)
    return "reply sent to the reporter" + _attachments_left_out(call.msg)


def send(call: Call, c: ct.Send) -> str:
    case = call.case
    parties = [p for p in case.parties if p.role == c.role]
    if not parties:
        raise Refused(f"!send {c.role}: the case has no party with that role (add one with !party)")
    if c.to is not None:
        parties = [p for p in parties if p.address == c.to]
        if not parties:
            raise Refused(f"!send {c.role}: no {c.role} party of this case has that address")
    elif c.role == "reporter":
        _one_reporter(case, "!send reporter")
    elif len({p.known_ref for p in parties}) > 1:
        # After a merge: a text written for the party of one case must not reach the other's.
        raise Refused(f"!send {c.role}: this case holds {c.role} parties of cases merged into it; name the one "
                      f"you write to with !send {c.role} ADDRESS (!history lists the parties)")
    text = _outgoing_text(call, f"!send {c.role}")
    for party in parties:
        mailer.send_to_party(call.session, call.ctx, case, party, text, call.now, kind="send")
    call.copy(f"the {c.role} {_parties(len(parties))}", text)
    if c.role == "reporter":
        answered(case, parties[0], call.now)  # one reporter (`_one_reporter`)
    return f"message sent to {len(parties)} {c.role} {_parties(len(parties))}" + _attachments_left_out(call.msg)


def party(call: Call, c: ct.Party) -> str:
    session, case = call.session, call.case
    if any(p.role == c.role and p.address == c.address.lower() for p in case.parties):
        return f"{c.role} party already recorded"  # recorded twice, they would get each !send twice
    member = scanning.named_by(call.ctx.roster, c.address, c.name)
    if member is not None:  # a member who is a party (reported, witness, other): the case concerns them
        recusals.recuse(call.ctx, session, case, member, "concerns", call.now, automatic=False, tell=call.tell)
    session.add(Party(case_id=case.id, role=c.role, address=c.address.lower(), name=c.name, created_at=call.now))
    session.flush()
    session.refresh(case)
    return f"{c.role} party recorded"


def urgent(call: Call, c: ct.Urgent) -> str:
    if not call.case.urgent:
        call.case.urgent, call.case.urgent_since = True, call.now
        call.tell(urgent_task(call.session, call.case, call.now), kind="urgent")
    return "marked urgent"


def not_urgent(call: Call, c: ct.NotUrgent) -> str:
    call.case.urgent = False
    return "no longer urgent"


def spam(call: Call, c: ct.Spam) -> str:
    call.case.spam = True
    return "marked as spam: its clocks stopped (no reminders or escalations); the next spam digest lists it"


def concerns(call: Call, c: ct.Concerns) -> str:
    person = call.ctx.roster.find(c.name)
    if person is None:
        raise Refused("!concerns: no member by that name")
    recusals.recuse(call.ctx, call.session, call.case, person.email, "concerns", call.now, automatic=False, tell=call.tell)
    return f"{person.name} recused (the case concerns them)"


def recuse(call: Call, c: ct.Recuse) -> str:
    recusals.recuse(call.ctx, call.session, call.case, call.member.email, "self", call.now, automatic=False, tell=call.tell)
    return f"{call.member.name} recused (at their own request)"


def include(call: Call, c: ct.Include) -> str:
    case, member = call.case, call.member
    person = call.ctx.roster.find(c.name)
    recusal = next((r for r in case.recusals if person and r.member_email == person.email and r.active), None)
    if person is None or recusal is None:
        raise Refused("!include: that member is not recused from this case")
    if not recusal.automatic:
        raise Refused("!include: only an automatic recusal (a name found in the report) can be undone")
    recusal.include_proposed_by = member.email
    call.tell(f"{member.name} proposes to include {person.name} in this case again "
              "(automatically excluded because named in the report). A second member must send !confirm.",
              kind=decisions.INCLUDE_PROPOSAL)
    return f"inclusion of {person.name} proposed; waiting for a second member's !confirm"


def reopen(call: Call, c: ct.Reopen) -> str:
    case = call.case
    if case.status not in states.REOPENABLE_FROM:
        raise Refused(f"!reopen: the case is {case.status}, not closed or decided")
    if case.status == states.CLOSED:
        restart_waits(case, call.now)
    call.set_status(states.TRANSITIONS[(case.status, "reopen")])
    case.closed_at = None
    return "case reopened (investigating)"


def steering(call: Call, c: ct.Steering) -> str:
    steering_report(call.ctx, call.session, call.case, call.now, reason="requested")
    return "report sent to the steering committee"


def title(call: Call, c: ct.Title) -> str:
    """The committee's title replaces the reporter's subject in committee mail from now on. It is
    stored as any title is made (`title_of`: decoded, normalised, no `!` left), so a subject built
    from it carries no command; mail to reporters and parties never carries a title at all."""
    new = title_of(c.text)[:200]
    if not new:
        raise Refused("!title: nothing is left of that title once commands, case tags and ! are removed")
    call.case.title = new
    return f"title set; committee mail about this case now has the subject: {subject(call.ctx, call.case)}"


def help_(call: Call | None, c: ct.Help) -> str:
    return "the command list is below"


def list_(call: Call, c: ct.List) -> str:
    return "your open cases:\n" + list_text(call.ctx, call.session, call.member)


def list_text(ctx: Context, session: Session, member: Person) -> str:
    """The open cases the member may see, one line each."""
    lines = []
    for case in session.scalars(select(Case).where(Case.status != states.CLOSED, Case.spam.is_(False)).order_by(Case.id)):
        if works_on(ctx, case, member.email):
            lines.append(f"  {case.ref}  {case.status:<15} {case.title}")
    return "\n".join(lines) or "  (none)"


@dataclass(frozen=True)
class On:
    """A command's handler and the audit action recorded when it applied."""

    run: Callable[[Call, Any], str]
    action: str


#: The commands that act on a case, by type. `!new` and `!reconsider` are case-less (personal.py).
ON_CASE: dict[type, On] = {
    ct.Ack: On(ack, "command_ack"),
    ct.Assign: On(assign, "command_assign"),
    ct.Status: On(status, "command_status"),
    ct.Reply: On(reply, "command_reply"),
    ct.Send: On(send, "command_send"),
    ct.Party: On(party, "command_party"),
    ct.Urgent: On(urgent, "command_urgent"),
    ct.NotUrgent: On(not_urgent, "command_noturgent"),
    ct.Spam: On(spam, "command_spam"),
    ct.Concerns: On(concerns, "command_concerns"),
    ct.Recuse: On(recuse, "command_recuse"),
    ct.Include: On(include, "command_include"),
    ct.Decide: On(decisions.decide, "command_decide"),
    ct.Confirm: On(decisions.confirm, "command_confirm"),
    ct.Close: On(decisions.close, "command_close"),
    ct.Reopen: On(reopen, "command_reopen"),
    ct.Steering: On(steering, "command_steering"),
    ct.Help: On(help_, "command_help"),
    ct.List: On(list_, "command_list"),
    ct.Title: On(title, "command_title"),
    ct.History: On(history, "command_history"),
    ct.Merge: On(merge, "command_merge"),
}


#: Commands that change nothing on the case yet act on it: mail to parties, a merge.
_ACTS_OUTSIDE = (ct.Reply, ct.Send, ct.Merge)


def run(call: Call, command: ct.Command) -> str:
    """Apply one command to the call's case; its audit entry follows. Raises Refused."""
    on = ON_CASE.get(type(command))
    if on is None:
        raise Refused(f"!{ct.typed_name(command)} cannot be used on a case")
    if (call.case.status == states.RECONSIDERATION and not call.member.steering
            and (command.changes_case or isinstance(command, _ACTS_OUTSIDE))
            and not isinstance(command, (ct.Recuse, ct.Concerns))):  # more recusal never shows anyone anything
        # The policy: the steering committee reviews the case; the members whose decision is
        # reconsidered neither close nor change it meanwhile (notes and !history stay theirs).
        raise Refused(f"!{ct.typed_name(command)}: the case is under reconsideration by the steering committee, "
                      "which alone acts on it until it is closed again")
    text = on.run(call, command)
    call.event(on.action, inbound_id=call.row.id)
    return text
