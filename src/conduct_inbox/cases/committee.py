"""Committee mail: authenticate the sender, then apply subject-line commands or file a note.

A command counts only on the member's valid reply token (To, Cc, or our server's topmost
Delivered-To) with `From:` that member. Everything else changes nothing and is audited.
Commands in one subject apply together or not at all (one savepoint).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.cases import fences
from conduct_inbox.core import commands as cmd
from conduct_inbox.core import routing, tokens
from conduct_inbox.core.classify import Classification, dmarc_verdict
from conduct_inbox.core.outward import outward_text
from conduct_inbox.core.party_mail import OutwardDraft
from conduct_inbox.core.roster import Person
from conduct_inbox.mail.compose import Draft
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import Case, Decision, InboundMessage, OutboxMessage, Party, Recusal, Sanction
from conduct_inbox.store.outbox import enqueue

if TYPE_CHECKING:
    from conduct_inbox.cases.workflow import Workflow

log = logging.getLogger(__name__)

#: What a DMARC pass alone (no token) may do: notes and status, never anything that sends or decides.
DMARC_ALLOWED = (cmd.Ack, cmd.Status, cmd.Urgent, cmd.NotUrgent, cmd.Help, cmd.List)
SANCTION_KINDS = {"vacation", "temporary-ban", "permanent-ban", "public-reprimand", "private-reprimand", "apology-request"}
SHINGLE = 8  # words: a shared run this long between a reply and an internal note is a leak
#: Commands whose text goes to a party; with any other commands the text is an internal note.
TEXT_COMMANDS = (cmd.Reply, cmd.Send)
NOTE_WITH_COMMANDS = "commands_note"
#: Inbound rows whose own text is an internal note (a !reply or !send must not repeat it).
NOTE_KINDS = ("note", NOTE_WITH_COMMANDS)
MAX_THREAD = 50  # message ids of In-Reply-To/References looked up
#: Outbox kinds of the announcements that ask for a !confirm (a reply to one says what it confirms).
DECISION_PROPOSAL, INCLUDE_PROPOSAL = "decision_proposal", "include_proposal"
#: Inbound committee mail whose commands were not applied.
NOT_APPLIED_KINDS = ("command_error", "refused")


def _caseless_commands(subject: str) -> bool:
    parsed = cmd.parse_commands(subject)
    return not isinstance(parsed, cmd.CommandError) and any(isinstance(c, (cmd.New, cmd.Reconsider)) for c in parsed)


def _attachments_left_out(msg: Parsed) -> str:
    """Parties receive the committee's text only: say so when the member attached files."""
    attached = sum(1 for a in msg.attachments if not a.inline)
    return f" (text only: your {attached} attachment(s) were not sent; parties receive text only)" if attached else ""


def _repeated_line(repeated: Sequence[str]) -> str:
    return ("not applied, because an earlier message of this thread already has it in its subject "
            "(write it in a new subject to apply it again): " + " ".join(repeated))


class Refused(Exception):
    """A command cannot be applied; the message goes to the sender only."""


@dataclass(frozen=True)
class Auth:
    member: Person | None
    case_token: bool = False
    personal: bool = False
    dmarc: bool = False
    #: A valid case token for the reference in the subject, of a case the database does not hold
    #: (one fenced off after a restore, say): the member's own mail, about no case we know.
    unknown_case_token: bool = False


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


def dmarc_pass(msg: Parsed, authserv_id: str, address: str) -> bool:
    """The topmost Authentication-Results from our trusted server shows an aligned DMARC pass."""
    verdict = dmarc_verdict(msg, authserv_id)
    return verdict is not None and verdict == ("pass", address.rsplit("@", 1)[-1].lower())


class Desk:
    """Applies one authenticated committee message to a case."""

    def __init__(self, wf: Workflow, secrets: Sequence[bytes], trusted_authserv_id: str, severe: Sequence[str]):
        self.wf = wf
        self.secrets = [s for s in secrets if s]
        self.trusted_authserv_id = trusted_authserv_id
        self.severe = set(severe)

    # ----- authentication -------------------------------------------------------------------

    def token_owners(self, found: Sequence[str], case_ref: str | None) -> frozenset[str]:
        """Roster addresses for which one of `found` is a valid token (personal, or for the case)."""
        owners = set()
        for token in found:
            for person in (*self.wf.roster.members, *self.wf.roster.steering):
                if tokens.check(token, "personal", None, person.email, self.secrets) or (
                    case_ref is not None and tokens.check(token, "case", case_ref, person.email, self.secrets)
                ):
                    owners.add(person.email)
        return frozenset(owners)

    def authenticate(self, msg: Parsed, case: Case | None) -> Auth:
        member = self.wf.roster.person(msg.from_address)
        if member is None:
            return Auth(None)
        found = tokens.tokens_in((*msg.to, *msg.cc, *msg.delivered_to[:1]), self.wf.policy.local_part, self.wf.policy.domain)
        personal = any(tokens.check(t, "personal", None, member.email, self.secrets) for t in found)
        case_token = False
        if case is not None and routing.may_see(self.wf.roster, self.wf.recused(case), member.email):
            case_token = any(tokens.check(t, "case", case.ref, member.email, self.secrets) for t in found)
        dmarc = case is not None and routing.may_see(self.wf.roster, self.wf.recused(case), member.email) and dmarc_pass(
            msg, self.trusted_authserv_id, member.email
        )
        unknown = case is None and bool(msg.case_ref) and any(
            tokens.check(t, "case", msg.case_ref, member.email, self.secrets) for t in found)
        return Auth(member, case_token, personal, dmarc, unknown)

    def _refuse_silently(self, session: Session, row: InboundMessage, case: Case | None, why: str, now: datetime) -> str:
        from conduct_inbox.cases.workflow import event

        row.status, row.kind = "processed", "refused"
        event(session, case.id if case else None, "unknown", "command_refused", now, inbound_id=row.id, why=why)
        log.warning("inbound #%d: committee mail refused (%s)", row.id, why)
        return f"committee mail refused: {why}"

    # ----- entry point ----------------------------------------------------------------------

    def handle(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        case = session.get(Case, result.case.id) if result.case is not None else None
        auth = self.authenticate(msg, case)
        if auth.member is None:
            return self._refuse_silently(session, row, case, "sender is not on the roster", now)
        member = auth.member
        if case is None:
            if (auth.unknown_case_token or msg.case_ref) and not auth.personal:
                return self._unknown_case(session, row, msg, member, now)
            if not auth.personal:
                return self._refuse_silently(session, row, None, "no valid personal token", now)
            return self._caseless(session, row, msg, member, now)
        if not (auth.case_token or auth.dmarc) and auth.personal and _caseless_commands(msg.subject):
            # `Fwd: Re: [conduct #REF] ... !new ADDRESS`: a report forwarded to a personal address may
            # carry a case tag; `!new`/`!reconsider` on a personal token are case-less.
            return self._caseless(session, row, msg, member, now)
        if not (auth.case_token or auth.dmarc):
            if auth.personal and msg.case_ref:
                # A personal token never authorises anything on a case.
                return self._refuse_silently(session, row, case, "personal token used on a case", now)
            outcome = self._refuse_silently(session, row, case, "no valid case token", now)
            if routing.may_see(self.wf.roster, self.wf.recused(case), member.email):
                # A reply-all onto a colleague's reply address: the member (at their roster address,
                # so a forged From tells the real member) learns nothing was filed.
                self._reply_to_member(session, case, member, "refusal", now, problems=[
                    "your mail did not come to your own reply address for this case (a reply-all to a colleague's mail, "
                    "or written to conduct@ directly?), so nothing was filed: answer your own copy of the case mail"])
            return outcome
        row.case_id = case.id
        earlier = self._earlier_subjects(session, msg)
        parsed = cmd.new_commands(msg.subject, earlier)
        repeated = cmd.repeated_commands(msg.subject, earlier)
        if isinstance(parsed, cmd.CommandError):
            row.status, row.kind = "processed", "command_error"
            self._event(session, case, member, "command_rejected", now, inbound_id=row.id)
            self._reply_to_member(session, case, member, "refusal", now, problems=list(parsed.problems))
            return f"case {case.ref}: malformed commands refused"
        if not auth.case_token and any(not isinstance(c, DMARC_ALLOWED) for c in parsed):
            row.status, row.kind = "processed", "command_error"
            self._event(session, case, member, "command_rejected", now, inbound_id=row.id, why="dmarc_only")
            self._reply_to_member(
                session, case, member, "refusal", now,
                problems=["this command needs the reply address of the case mail (its reply token), not just your address"],
            )
            return f"case {case.ref}: command needing a token refused"
        if not parsed:
            outcome = self._note(session, row, case, member, msg, now)
            if repeated:  # the member may have meant them: say why nothing happened
                self._reply_to_member(session, case, member, "confirmation", now, done=[_repeated_line(repeated)])
            return outcome
        return self._apply(session, row, case, member, msg, parsed, now, repeated)

    def _earlier_subjects(self, session: Session, msg: Parsed) -> list[str]:
        """Subjects a command must not stand in to count: every message this one answers or forwards
        (ours, or the member's own sent mail, as Gmail threads it), if its commands were applied.
        Subjects of reporters and parties never reach members' subjects (`commands.title_of`), and
        a party's subject on the case must not be able to block a command for good."""
        thread = [m for m in (*msg.in_reply_to, *msg.references) if m][:MAX_THREAD]
        # A member forwarding their own sent mail (no threading headers) carries its subject along.
        subjects: list[str | None] = [f.subject for f in msg.forwarded]
        if thread:
            subjects += session.scalars(select(OutboxMessage.subject).where(OutboxMessage.message_id.in_(thread))).all()
            # The member's own earlier mail counts only if its commands were applied: a refused
            # `!reply`, corrected and sent again as an answer to itself, must go out.
            subjects += session.scalars(select(InboundMessage.subject).where(
                InboundMessage.message_id.in_(thread), InboundMessage.kind.not_in(NOT_APPLIED_KINDS))).all()
        return [s for s in subjects if s]

    # ----- notes ------------------------------------------------------------------------------

    def _note(self, session: Session, row: InboundMessage, case: Case, member: Person, msg: Parsed, now: datetime) -> str:
        text = msg.own_text.strip()
        row.status, row.kind = "processed", "note"
        if not text:
            self._event(session, case, member, "note_added", now, inbound_id=row.id)
            return f"case {case.ref}: empty note ignored"
        self.file_note(session, case, member, text, now, inbound_id=row.id)
        return f"case {case.ref}: note from a member"

    def file_note(self, session: Session, case: Case, member: Person, text: str, now: datetime, **detail: object) -> str:
        """An internal note to the other members who may see the case; returns their names."""
        self._event(session, case, member, "note_added", now, **detail)
        audience = routing.committee(self.wf.roster, self.wf.recused(case))
        others = routing.Audience(
            tuple(p for p in audience.recipients if p.email != member.email), audience.excluded, audience.steering_included
        )
        self._to_committee(session, case, others, "note", now, heading=f"Internal note from {member.name}", text=text)
        return ", ".join(p.name for p in others.recipients)

    # ----- commands ---------------------------------------------------------------------------

    def _apply(
        self, session: Session, row: InboundMessage, case: Case, member: Person, msg: Parsed, parsed: list[cmd.Command],
        now: datetime, repeated: Sequence[str] = (),
    ) -> str:
        row.status, row.kind = "processed", "commands"
        done: list[str] = [_repeated_line(repeated)] if repeated else []
        savepoint = session.begin_nested()
        try:
            for command in parsed:
                done.append(self._one(session, row, case, member, msg, command, now))
            session.flush()
        except Refused as exc:
            savepoint.rollback()
            session.refresh(case)
            row.kind = "command_error"
            self._event(session, case, member, "command_rejected", now, inbound_id=row.id, why=type(exc).__name__)
            problems = [str(exc)] + (["your text was not filed either; send it again"] if msg.own_text.strip() else [])
            self._reply_to_member(session, case, member, "refusal", now, problems=problems)
            return f"case {case.ref}: commands refused, nothing changed"
        savepoint.commit()
        case.updated_at = now
        if not any(isinstance(c, TEXT_COMMANDS) for c in parsed) and msg.own_text.strip():
            # Text written with commands is never dropped: it is an internal note.
            row.kind = NOTE_WITH_COMMANDS
            sent_to = self.file_note(session, case, member, msg.own_text.strip(), now)
            done.append("your text was recorded as an internal note" + (f" and sent to {sent_to}" if sent_to else ""))
        self.wf.refresh_clock(session, case)
        if routing.may_see(self.wf.roster, self.wf.recused(case), member.email):
            self._reply_to_member(session, case, member, "confirmation", now, done=done)
        return f"case {case.ref}: {len(done)} command(s) applied"

    def _one(self, session: Session, row: InboundMessage, case: Case, member: Person, msg: Parsed, c: cmd.Command, now: datetime) -> str:
        name = type(c).__name__.lower()
        handler = getattr(self, f"_c_{name}", None)
        if handler is None:
            raise Refused(f"!{name} cannot be used on a case")
        text: str = handler(session, row, case, member, msg, c, now)
        self._event(session, case, member, f"command_{name}", now, inbound_id=row.id)
        return text

    def _require_open(self, case: Case, what: str) -> None:
        if case.status in ("closed",):
            raise Refused(f"{what}: the case is closed (use !reopen first)")

    def _c_ack(self, session, row, case, member, msg, c, now) -> str:
        if case.human_ack_at is None:
            case.human_ack_at = now
        if case.status == "new":
            self._set_status(session, case, member, "acknowledged", now)
        if case.assignee is None and not member.steering:
            case.assignee = member.email
        return "acknowledged"

    def _c_assign(self, session, row, case, member, msg, c: cmd.Assign, now) -> str:
        person = self.wf.roster.find(c.name)
        if person is None or person.steering and person not in routing.committee(self.wf.roster, self.wf.recused(case)).recipients:
            raise Refused("!assign: no committee member by that name")
        if person.email in self.wf.recused(case):
            raise Refused("!assign: that member is recused from this case")
        case.assignee = person.email
        return f"assigned to {person.name}"

    def _c_status(self, session, row, case, member, msg, c: cmd.Status, now) -> str:
        if case.status not in ("acknowledged", "investigating", "waiting", "reconsideration"):
            raise Refused(f"!status {c.state}: not possible while the case is {case.status}" + (" (send !ack first)" if case.status == "new" else ""))
        self._set_status(session, case, member, c.state, now)
        return f"status {c.state}"

    def _c_reply(self, session, row, case, member, msg, c, now) -> str:
        reporter = case.party("reporter")
        if reporter is None:
            raise Refused("!reply: this case has no reporter address")
        text = self._outgoing_text(session, case, msg, "!reply", member)
        self._send_to_party(session, case, reporter, text, now, kind="reply")
        self._copy_to_committee(session, case, member, "the reporter", text, now)
        case.last_response_at = now
        return "reply sent to the reporter" + _attachments_left_out(msg)

    def _c_send(self, session, row, case, member, msg, c: cmd.Send, now) -> str:
        parties = [p for p in case.parties if p.role == c.role]
        if not parties:
            raise Refused(f"!send {c.role}: the case has no party with that role (add one with !party)")
        text = self._outgoing_text(session, case, msg, f"!send {c.role}", member)
        for party in parties:
            self._send_to_party(session, case, party, text, now, kind="send")
        self._copy_to_committee(session, case, member, f"the {c.role} part{'y' if len(parties) == 1 else 'ies'}", text, now)
        if c.role == "reporter":
            case.last_response_at = now
        return f"message sent to {len(parties)} {c.role} part{'y' if len(parties) == 1 else 'ies'}" + _attachments_left_out(msg)

    def _c_party(self, session, row, case, member, msg, c: cmd.Party, now) -> str:
        accused = self.wf.roster.person(c.address)
        if accused is not None and c.role == "reported":
            self._recuse(session, case, accused.email, "concerns", now, automatic=False)
        session.add(Party(case_id=case.id, role=c.role, address=c.address.lower(), name=c.name, created_at=now))
        session.flush()
        session.refresh(case)
        return f"{c.role} party recorded"

    def _c_urgent(self, session, row, case, member, msg, c, now) -> str:
        if not case.urgent:
            case.urgent = True
            self.wf.announce_urgent(session, case, now)
        return "marked urgent"

    def _c_noturgent(self, session, row, case, member, msg, c, now) -> str:
        case.urgent = False
        return "no longer urgent"

    def _c_spam(self, session, row, case, member, msg, c, now) -> str:
        case.spam = True
        return "marked as spam: clocks stopped, nothing more is sent"

    def _c_concerns(self, session, row, case, member, msg, c: cmd.Concerns, now) -> str:
        person = self.wf.roster.find(c.name)
        if person is None:
            raise Refused("!concerns: no member by that name")
        self._recuse(session, case, person.email, "concerns", now, automatic=False)
        return f"{person.name} recused (the case concerns them)"

    def _c_recuse(self, session, row, case, member, msg, c, now) -> str:
        self._recuse(session, case, member.email, "self", now, automatic=False)
        return "you are recused from this case"

    def _c_include(self, session, row, case, member, msg, c: cmd.Include, now) -> str:
        person = self.wf.roster.find(c.name)
        recusal = next((r for r in case.recusals if person and r.member_email == person.email and r.active), None)
        if person is None or recusal is None:
            raise Refused("!include: that member is not recused from this case")
        if not recusal.automatic:
            raise Refused("!include: only an automatic recusal (a name found in the report) can be undone")
        recusal.include_proposed_by = member.email
        self._announce(session, case, now, f"{member.name} proposes to include {person.name} in this case again "
                       "(automatically excluded because named in the report). A second member must send !confirm.",
                       kind=INCLUDE_PROPOSAL)
        return f"inclusion of {person.name} proposed; waiting for a second member's !confirm"

    def _c_decide(self, session, row, case, member, msg, c: cmd.Decide, now) -> str:
        self._require_open(case, "!decide")
        target_role = c.target or ("reported" if case.party("reported") else None)
        target = case.party(target_role) if target_role else None
        if c.target and target is None:
            raise Refused(f"!decide: the case has no {c.target} party (add one with !party)")
        if any(v in SANCTION_KINDS for v in c.values) and target is None:
            raise Refused("!decide: a sanction needs a target party (target=ROLE)")
        for old in session.scalars(select(Decision).where(Decision.case_id == case.id, Decision.status == "pending")):
            old.status = "superseded"
        severe = any(v in self.severe for v in c.values)
        decision = Decision(
            case_id=case.id, kinds=",".join(c.values), target_role=target_role,
            target_address=target.address if target else None, until=c.until,
            status="pending" if severe else "effective", decided_by=member.email, created_at=now,
        )
        session.add(decision)
        session.flush()
        if severe:
            self._announce(session, case, now, f"{member.name} proposes the decision {', '.join(c.values)}. It is a severe "
                           "decision: it takes effect when a second member sends !confirm.", kind=DECISION_PROPOSAL)
            return f"decision {', '.join(c.values)} recorded as pending; a second member must !confirm"
        self._make_effective(session, case, decision, now)
        return f"decision {', '.join(c.values)} recorded"

    def _c_confirm(self, session, row, case, member, msg, c: cmd.Confirm, now) -> str:
        audience = routing.committee(self.wf.roster, self.wf.recused(case))
        if member.steering and not audience.steering_included:
            raise Refused("!confirm: steering members confirm only when too few committee members are left")
        decision = session.scalars(
            select(Decision).where(Decision.case_id == case.id, Decision.status == "pending").order_by(Decision.id.desc())
        ).first()
        include = next((r for r in case.recusals if r.active and r.include_proposed_by), None)
        if decision is None and include is None:
            raise Refused("!confirm: nothing on this case is waiting for confirmation")
        if decision is not None and decision.decided_by == member.email and include is not None \
                and include.include_proposed_by != member.email:
            decision = None  # their own decision waits for another member; the !include is theirs to confirm
        elif decision is not None and include is not None and include.include_proposed_by != member.email:
            # Both wait and both are this member's to confirm: a severe decision must not take
            # effect because a member meant the other one.
            what = c.what or self._answered_proposal(session, case, msg)
            if what is None:
                raise Refused("!confirm: a decision and an inclusion both wait for confirmation; "
                              "send !confirm decision or !confirm include")
            if what == "include":
                decision = None
        if c.what == "include" and include is None or c.what == "decision" and decision is None:
            raise Refused(f"!confirm {c.what}: nothing of that kind waits for confirmation")
        if c.what == "include":
            decision = None
        if decision is not None:
            if decision.decided_by == member.email:
                raise Refused("!confirm: a second member must confirm your own decision")
            decision.confirmed_by = member.email
            self._make_effective(session, case, decision, now)
            return f"decision {decision.kinds.replace(',', ', ')} confirmed and in effect"
        assert include is not None
        if include.include_proposed_by == member.email:
            raise Refused("!confirm: a second member must confirm your own !include")
        include.active = False
        include.include_proposed_by = None
        person = self.wf.roster.person(include.member_email)
        session.flush()
        session.refresh(case)
        self._announce(session, case, now, f"{person.name if person else 'A member'} is included in this case again "
                       f"(confirmed by {member.name}).")
        return "inclusion confirmed"

    def _answered_proposal(self, session: Session, case: Case, msg: Parsed) -> str | None:
        """"decision" or "include" when the mail answers our announcement of that proposal."""
        kinds = set(session.scalars(select(OutboxMessage.kind).where(
            OutboxMessage.case_id == case.id, OutboxMessage.message_id.in_(list(msg.in_reply_to)[:MAX_THREAD]))))
        found = [what for what, kind in (("decision", DECISION_PROPOSAL), ("include", INCLUDE_PROPOSAL)) if kind in kinds]
        return found[0] if len(found) == 1 else None

    def _c_close(self, session, row, case, member, msg, c: cmd.Close, now) -> str:
        self._require_open(case, "!close")
        if not c.silent:
            effective = session.scalars(select(Decision).where(Decision.case_id == case.id, Decision.status == "effective")).first()
            if effective is None:
                raise Refused("!close: record a decision first (!decide), or use !close silent REASON")
            if case.last_response_at is None:
                raise Refused("!close: the reporter has not been answered yet (!reply), or use !close silent REASON")
        previous = case.status
        case.status, case.closed_at = "closed", now
        self._event(session, case, member, "status_changed", now, old=previous, new="closed", silent=c.silent)
        self.wf.steering_report(session, case, now, reason="closed")
        return "case closed; report queued for the steering committee"

    def _c_reopen(self, session, row, case, member, msg, c, now) -> str:
        if case.status not in ("closed", "decided", "reconsideration"):
            raise Refused(f"!reopen: the case is {case.status}, not closed or decided")
        self._set_status(session, case, member, "investigating", now)
        case.closed_at = None
        return "case reopened (investigating)"

    def _c_steering(self, session, row, case, member, msg, c, now) -> str:
        self.wf.steering_report(session, case, now, reason="requested")
        return "report sent to the steering committee"

    def _c_help(self, session, row, case, member, msg, c, now) -> str:
        return "the command list is below"

    def _c_list(self, session, row, case, member, msg, c, now) -> str:
        return "your open cases:\n" + self._list_text(session, member)

    # ----- case-less (personal token) -------------------------------------------------------

    def _caseless(self, session: Session, row: InboundMessage, msg: Parsed, member: Person, now: datetime) -> str:
        row.status, row.kind = "processed", "personal"
        # A forwarded report's own subject cannot carry a command (`Fwd: ... !concerns Carol`).
        parsed = cmd.new_commands(msg.subject, self._earlier_subjects(session, msg))
        caseless = not isinstance(parsed, cmd.CommandError) and any(isinstance(c, (cmd.Reconsider, cmd.New)) for c in parsed)
        if msg.case_ref and not caseless:
            self._personal_refusal(session, row, member, now, [f"there is no case {msg.case_ref} you can act on"])
            return "personal mail about an unknown case"
        if isinstance(parsed, cmd.CommandError):
            self._personal_refusal(session, row, member, now, list(parsed.problems))
            return "personal commands refused"
        news = [c for c in parsed if isinstance(c, cmd.New)]
        others = [c for c in parsed if not isinstance(c, (cmd.New, cmd.Concerns, cmd.Urgent))]
        if news and others:
            self._personal_refusal(session, row, member, now, [
                "!new takes only !concerns and !urgent beside it; send the other commands on the new case's mail"])
            return "personal commands refused"
        unknown = [c for c in parsed if isinstance(c, cmd.Concerns) and self.wf.roster.find(c.name) is None]
        if news and unknown:  # the report must not reach the member it is about because of a typo
            self._personal_refusal(session, row, member, now, ["!concerns: no member by that name; no case was opened"])
            return "personal commands refused"
        if news:
            return self.wf.open_forwarded_case(session, row, msg, member, news[0], [c for c in parsed if isinstance(c, cmd.Concerns)],
                                               now, urgent=any(isinstance(c, cmd.Urgent) for c in parsed))
        done = []
        for c in parsed:
            if isinstance(c, cmd.Help):
                done.append("the command list is below")
            elif isinstance(c, cmd.List):
                done.append("your open cases:\n" + self._list_text(session, member))
            elif isinstance(c, cmd.Reconsider):
                done.append(self._reconsider(session, row, member, c, now))
            else:
                self._personal_refusal(session, row, member, now, [f"!{type(c).__name__.lower()} needs a case: reply to that case's mail"])
                return "case command without a case refused"
        self._event(session, None, member, "personal_commands", now, inbound_id=row.id)
        self._reply_to_member(session, None, member, "confirmation", now, done=done or ["nothing to do"])
        return "personal commands applied"

    def _unknown_case(self, session: Session, row: InboundMessage, msg: Parsed, member: Person, now: datetime) -> str:
        """A member's reply about a case reference the database does not hold: refused, the member
        told; when the reference was fenced off after a restore, the committee told once."""
        row.status, row.kind = "processed", "personal"
        assert msg.case_ref is not None
        lost = fences.is_lost_ref(session, msg.case_ref)
        why = f"there is no case {msg.case_ref} you can act on" + (
            " (the case database was restored from a backup taken before that reference was issued)" if lost else "")
        self._personal_refusal(session, row, member, now, [why])
        if lost and fences.first_mail_about(session, msg.case_ref):
            self.wf.alert(session, None, (
                f"Mail arrived about case {msg.case_ref}, a reference that may have been issued after the backup the case "
                "database was restored from. That case is not in the database: its report, if it was one, was taken in "
                "again under a new reference (see the recovery summary). Commands about it were refused."), now)
        return "mail about an unknown case refused" + (" (a reference fenced off after a restore)" if lost else "")

    def _personal_refusal(self, session: Session, row: InboundMessage, member: Person, now: datetime, problems: list[str]) -> None:
        """Refused case-less commands: audited (ids only) and explained to the member alone."""
        self._event(session, None, member, "command_rejected", now, inbound_id=row.id)
        self._reply_to_member(session, None, member, "refusal", now, problems=problems)

    def _reconsider(self, session: Session, row: InboundMessage, member: Person, c: cmd.Reconsider, now: datetime) -> str:
        case = session.scalars(select(Case).where(Case.ref == c.ref)).first()
        if not member.steering:
            return "!reconsider: only steering committee members can open a reconsideration"
        if case is None or member.email in self.wf.recused(case):
            return f"!reconsider: there is no case {c.ref} you can act on"
        if case.status != "closed":
            return f"!reconsider: case {c.ref} is {case.status}, not closed"
        previous = case.status
        case.status, case.updated_at = "reconsideration", now
        row.case_id = case.id
        self._event(session, case, member, "status_changed", now, old=previous, new="reconsideration")
        self.wf.announce_reconsideration(session, case, member, now)
        self.wf.refresh_clock(session, case)
        return f"reconsideration of case {c.ref} opened; the steering members have the case"

    def _list_text(self, session: Session, member: Person) -> str:
        lines = []
        for case in session.scalars(select(Case).where(Case.status != "closed", Case.spam.is_(False)).order_by(Case.id)):
            if routing.may_see(self.wf.roster, self.wf.recused(case), member.email):
                lines.append(f"  {case.ref}  {case.status:<15} {case.title}")
        return "\n".join(lines) or "  (none)"

    # ----- helpers ----------------------------------------------------------------------------

    def _event(self, session: Session, case: Case | None, member: Person, action: str, now: datetime, **detail: object) -> None:
        from conduct_inbox.cases.workflow import event

        event(session, case.id if case else None, member.email, action, now, **detail)

    def _set_status(self, session: Session, case: Case, member: Person, status: str, now: datetime) -> None:
        if case.status != status:
            self._event(session, case, member, "status_changed", now, old=case.status, new=status)
            case.status = status

    def _recuse(self, session: Session, case: Case, email: str, reason: str, now: datetime, automatic: bool) -> None:
        existing = next((r for r in case.recusals if r.member_email == email), None)
        if existing is not None:
            existing.active, existing.reason, existing.automatic, existing.include_proposed_by = True, reason, automatic, None
        else:
            session.add(Recusal(case_id=case.id, member_email=email, reason=reason, automatic=automatic, active=True, created_at=now))
        session.flush()
        session.refresh(case)
        if case.assignee == email:
            case.assignee = None
        from conduct_inbox.cases.workflow import event

        event(session, case.id, "system", "member_recused", now, reason=reason)
        person = self.wf.roster.person(email)
        self._announce(session, case, now, f"{person.name if person else 'A member'} is excluded from this case "
                       f"({routing.RECUSAL_REASONS.get(reason, reason)}) and receives nothing more about it.")

    def _make_effective(self, session: Session, case: Case, decision: Decision, now: datetime) -> None:
        decision.status, decision.effective_at = "effective", now
        if case.status not in ("closed",):
            case.status = "decided"
        for kind in decision.kind_list:
            if kind in {"vacation", "temporary-ban", "permanent-ban"} and decision.target_address:
                session.add(Sanction(case_ref=case.ref, target_address=decision.target_address, kind=kind,
                                     scope="all spaces", starts_on=now.date(), ends_on=decision.until))
        from conduct_inbox.cases.workflow import event

        event(session, case.id, "system", "decision_effective", now, decision_id=decision.id, kinds=decision.kind_list)

    def _outgoing_text(self, session: Session, case: Case, msg: Parsed, what: str, member: Person) -> str:
        """The member's text as a party may receive it: signature blocks removed, refused while it
        still identifies the member (parties hear from conduct@, never from a person) or repeats
        an internal note."""
        roster = self.wf.roster
        result = outward_text(msg.own_text, member, committee_address=self.wf.policy.address,
                              people=(*roster.members, *roster.steering))
        if result.refusal is not None:
            raise Refused(f"{what}: {result.refusal}")
        text = result.text
        notes = session.scalars(
            select(InboundMessage.own_text).where(InboundMessage.case_id == case.id, InboundMessage.kind.in_(NOTE_KINDS))
        ).all()
        if leaks_note(text, [n or "" for n in notes]):
            raise Refused(f"{what}: the text contains a passage of an internal note of this case; nothing was sent")
        return text

    def _send_to_party(self, session: Session, case: Case, party: Party, text: str, now: datetime, kind: str) -> None:
        last_in = session.scalars(
            select(InboundMessage.message_id)
            .where(InboundMessage.case_id == case.id, InboundMessage.sender == party.address, InboundMessage.message_id.is_not(None))
            .order_by(InboundMessage.id.desc())
            .limit(1)
        ).first()
        body = self.wf.renderer.render("to_party", text=text, committee_name=self.wf.options.committee_name, ref=case.ref)
        draft = OutwardDraft(kind=kind, audience="reporter" if party.role == "reporter" else "party", recipient=party.address,
                             recipient_name=party.name, body=body, in_reply_to=last_in, case_tag=self.wf.options.case_tag,
                             ref=case.ref, committee_name=self.wf.options.committee_name)
        enqueue(session, draft, self.wf.sender, now, case_id=case.id)

    def _copy_to_committee(self, session: Session, case: Case, member: Person, to_whom: str, text: str, now: datetime) -> None:
        audience = routing.committee(self.wf.roster, self.wf.recused(case))
        self._to_committee(session, case, audience, "sent_copy", now, heading=f"{member.name} sent this to {to_whom}", text=text)

    def _announce(self, session: Session, case: Case, now: datetime, text: str, kind: str = "announcement") -> None:
        session.flush()
        session.refresh(case)
        audience = routing.committee(self.wf.roster, self.wf.recused(case))
        self._to_committee(session, case, audience, kind, now, heading="Announcement", text=text)

    def _to_committee(self, session: Session, case: Case, audience: routing.Audience, kind: str, now: datetime, heading: str, text: str) -> None:
        body = self.wf.renderer.render("committee_note", marker=audience.marker_line(), heading=heading, ref=case.ref, text=text)
        for draft in self.wf.committee_drafts(case, audience, kind, self.wf.subject(case), lambda _p: body):
            enqueue(session, draft, self.wf.sender, now, case_id=case.id)

    def _reply_to_member(self, session: Session, case: Case | None, member: Person, kind: str, now: datetime, **context: object) -> None:
        """A confirmation or refusal to the sender alone (only if they may see the case)."""
        if case is not None and not routing.may_see(self.wf.roster, self.wf.recused(case), member.email):
            return
        audience = routing.Audience((member,))
        body = self.wf.renderer.render(
            kind, marker=audience.marker_line(), ref=case.ref if case else None, help=cmd.HELP_TEXT,
            done=context.get("done", []), problems=context.get("problems", []),
        )
        subject = self.wf.subject(case) if case is not None else f"[{self.wf.options.case_tag}] Your commands"
        reply_to = self.wf.member_reply_to(case, member) if case is not None else self.wf.personal_reply_to(member)
        draft = Draft(kind=kind, audience="steering" if member.steering else "member", recipient=member.email,
                      recipient_name=member.name, subject=subject, body=body, reply_to=reply_to)
        enqueue(session, draft, self.wf.sender, now, case_id=case.id if case else None)
