"""Committee mail: authenticate the sender, then apply subject-line commands or file a note.

A command counts only on the member's valid reply token (To, Cc, or our server's topmost
Delivered-To) with `From:` that member. Everything else changes nothing and is audited.
Commands in one subject apply together or not at all (one savepoint).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.cases import decisions, fences, handlers, mailer, merge, personal, recusals
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.calls import Call
from conduct_inbox.cases.context import Context, recused, works_on
from conduct_inbox.cases.deadlines import refresh_clock
from conduct_inbox.cases.notes import file_note
from conduct_inbox.cases.threads import earlier_subjects
from conduct_inbox.core import commands as cmd
from conduct_inbox.core import routing, tokens
from conduct_inbox.core.admission import DeskFacts, Way, admit
from conduct_inbox.core.classify import Classification, dmarc_verdict
from conduct_inbox.core.command_types import typed_name
from conduct_inbox.core.roster import Person
from conduct_inbox.errors import Refused
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import Case, Decision, Event, InboundMessage, OutboxMessage

log = logging.getLogger(__name__)

#: What a DMARC pass alone (no token) may do: notes and status, never anything that sends or decides.
DMARC_ALLOWED = (cmd.Ack, cmd.Status, cmd.Urgent, cmd.NotUrgent, cmd.Help, cmd.List)
#: Commands whose text goes to a party; with any other commands the text is an internal note.
TEXT_COMMANDS = (cmd.Reply, cmd.Send)


def _repeated_line(repeated: Sequence[str]) -> str:
    return ("not applied, because an earlier message of this thread already has it in its subject "
            "(write it in a new subject to apply it again): " + " ".join(repeated))


@dataclass(frozen=True)
class Auth:
    member: Person | None
    case_token: bool = False
    personal: bool = False
    dmarc: bool = False
    #: A valid case token for the reference in the subject, of a case the database does not hold
    #: (one fenced off after a restore, say): the member's own mail, about no case we know.
    unknown_case_token: bool = False


def dmarc_pass(msg: Parsed, authserv_id: str, address: str) -> bool:
    """The topmost Authentication-Results from our trusted server shows an aligned DMARC pass."""
    verdict = dmarc_verdict(msg, authserv_id)
    return verdict is not None and verdict == ("pass", address.rsplit("@", 1)[-1].lower())


# ----- authentication ---------------------------------------------------------------------------


def token_owners(ctx: Context, found: Sequence[str], case_refs: Sequence[str]) -> frozenset[str]:
    """Roster addresses for which one of `found` is a valid token (personal, or for the case:
    `case_refs` are its reference and those of the cases merged into it)."""
    secrets = ctx.options.secrets
    owners = set()
    for token in found:
        for person in (*ctx.roster.members, *ctx.roster.steering):
            if tokens.check(token, "personal", None, person.email, secrets) or any(
                tokens.check(token, "case", ref, person.email, secrets) for ref in case_refs
            ):
                owners.add(person.email)
    return frozenset(owners)


def authenticate(ctx: Context, msg: Parsed, case: Case | None, case_refs: Sequence[str] = ()) -> Auth:
    """Who sent it and on what. A case token counts for `case` (and, after `!merge`, a token of a
    case merged into it, in `case_refs`) only while the member may see `case`."""
    member = ctx.roster.person(msg.from_address)
    if member is None:
        return Auth(None)
    secrets = ctx.options.secrets
    found = tokens.tokens_in((*msg.to, *msg.cc, *msg.delivered_to[:1]), ctx.policy.local_part, ctx.policy.domain)
    personal_token = any(tokens.check(t, "personal", None, member.email, secrets) for t in found)
    case_token = False
    if case is not None and routing.may_see(ctx.roster, recused(case), member.email):
        refs = case_refs or (case.ref,)
        case_token = any(tokens.check(t, "case", ref, member.email, secrets) for t in found for ref in refs)
    dmarc = case is not None and routing.may_see(ctx.roster, recused(case), member.email) and dmarc_pass(
        msg, ctx.options.trusted_authserv_id, member.email
    )
    unknown = case is None and bool(msg.case_ref) and any(
        tokens.check(t, "case", msg.case_ref, member.email, secrets) for t in found)
    return Auth(member, case_token, personal_token, dmarc, unknown)


def _caseless_commands(subject: str) -> bool:
    parsed = cmd.parse_commands(subject)
    return not isinstance(parsed, cmd.CommandError) and any(isinstance(c, (cmd.New, cmd.Reconsider)) for c in parsed)


def _refuse_silently(session: Session, row: InboundMessage, case: Case | None, why: str, now: datetime) -> str:
    row.status, row.kind = "processed", "refused"
    event(session, case.id if case else None, "unknown", "command_refused", now, inbound_id=row.id, why=why)
    log.warning("inbound #%d: committee mail refused (%s)", row.id, why)
    return f"committee mail refused: {why}"


# ----- entry point ------------------------------------------------------------------------------


def handle(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    """A member's mail on a reply token or with a case tag: authenticate, then apply."""
    case = session.get(Case, result.case.id) if result.case is not None else None
    if case is not None and _kept_from(ctx, session, case, msg):
        # For this member the reference does not exist: they are told what a reference that does
        # not exist gets (an unknown reference is never resolved through the thread for a member:
        # cases/inbound.py `_case_for`).
        case = None
    auth = authenticate(ctx, msg, case, merge.token_refs(session, case) if case is not None else ())
    admission = admit(DeskFacts(
        on_roster=auth.member is not None, case_known=case is not None, case_token=auth.case_token,
        personal_token=auth.personal, dmarc_pass=auth.dmarc, unknown_case_token=auth.unknown_case_token,
        caseless_commands=_caseless_commands(msg.subject), case_ref=bool(msg.case_ref),
    ))
    member = auth.member
    if admission.way is Way.REFUSE or member is None:
        return _refuse_silently(session, row, case, admission.why, now)
    if admission.way is Way.UNKNOWN_CASE:
        return personal.unknown_case(ctx, session, row, msg, member, now)
    if admission.way is Way.PERSONAL:
        return personal.caseless(ctx, session, row, msg, member, now)
    assert case is not None
    if member.steering and not works_on(ctx, case, member.email):
        # A steering member who gets this case's reports, not the case: nothing they send acts on
        # it, and the answer carries nothing of it (no title, no standing block, no address).
        outcome = _refuse_silently(session, row, case, "steering member not working on the case", now)
        mailer.reply_to_member(session, ctx, None, member, "refusal", now, problems=[
            f"case {msg.case_ref or case.ref}: you receive its reports as a steering member but do not work on it, so nothing "
            "was applied. The steering members take a case up when it is escalated to them, when too few "
            "committee members are left to handle it, or with !reconsider REF once it is closed."])
        return outcome
    if admission.way is Way.NOT_OWN_ADDRESS:
        outcome = _refuse_silently(session, row, case, admission.why, now)
        # A member excluded after seeing the case gets no answer: any would tell them of the exclusion.
        if routing.may_see(ctx.roster, recused(case), member.email):
            # A reply-all onto a colleague's reply address: the member (at their roster address,
            # so a forged From tells the real member) learns nothing was filed.
            mailer.reply_to_member(session, ctx, case, member, "refusal", now, problems=[
                "your mail did not come to your own reply address for this case (a reply-all to a colleague's mail, "
                "or written to conduct@ directly?), so nothing was filed: answer your own copy of the case mail"])
        return outcome
    return _on_case(ctx, session, row, case, member, auth, msg, now)


def _kept_from(ctx: Context, session: Session, case: Case, msg: Parsed) -> bool:
    """Whether the case the mail names is, for the member who sent it, a reference that does not
    exist: kept from them without their ever having had mail about that reference (a member
    excluded after seeing it knows it exists: their mail is refused, unanswered). A purged case
    never gets here: mail about it is mail about no case (cases/inbound.py `_case_for`)."""
    member = ctx.roster.person(msg.from_address)
    if member is None:
        return False
    if routing.may_see(ctx.roster, recused(case), member.email):
        return False
    tag = f"#{msg.case_ref or case.ref}]"
    subjects = session.scalars(select(OutboxMessage.subject).where(
        OutboxMessage.case_id == case.id, OutboxMessage.recipient == member.email))
    return not any(tag in (s or "") for s in subjects)


def _on_case(ctx: Context, session: Session, row: InboundMessage, case: Case, member: Person, auth: Auth, msg: Parsed,
             now: datetime) -> str:
    row.case_id = case.id
    # Only the member's own forwarded mail: a forward block quoted from the report is the
    # reporter's, and its subject must not cancel what the member typed.
    earlier = earlier_subjects(session, msg, forwarded_by=lambda sender: ctx.roster.person(sender) == member)
    parsed = cmd.new_commands(msg.subject, earlier)
    repeated = cmd.repeated_commands(msg.subject, earlier)
    if isinstance(parsed, cmd.CommandError):
        row.status, row.kind = "processed", "command_error"
        event(session, case.id, member.email, "command_rejected", now, inbound_id=row.id)
        mailer.reply_to_member(session, ctx, case, member, "refusal", now, problems=list(parsed.problems))
        return f"case {case.ref}: malformed commands refused"
    if not auth.case_token and any(not isinstance(c, DMARC_ALLOWED) for c in parsed):
        row.status, row.kind = "processed", "command_error"
        event(session, case.id, member.email, "command_rejected", now, inbound_id=row.id, why="dmarc_only")
        mailer.reply_to_member(
            session, ctx, case, member, "refusal", now,
            problems=["this command needs the reply address of the case mail (its reply token), not just your address"],
        )
        return f"case {case.ref}: command needing a token refused"
    if not parsed:
        outcome = _note(ctx, session, row, case, member, msg, now)
        if repeated:  # the member may have meant them: say why nothing happened
            mailer.reply_to_member(session, ctx, case, member, "confirmation", now, done=[_repeated_line(repeated)])
        return outcome
    return _apply(Call(ctx, session, row, case, member, msg, now), parsed, repeated)


# ----- notes and commands -----------------------------------------------------------------------


def _note(ctx: Context, session: Session, row: InboundMessage, case: Case, member: Person, msg: Parsed, now: datetime) -> str:
    text = msg.own_text.strip()
    row.status, row.kind = "processed", "note"
    if not text:
        event(session, case.id, member.email, "note_added", now, inbound_id=row.id)
        return f"case {case.ref}: empty note ignored"
    file_note(ctx, session, case, member, text, now, inbound_id=row.id)
    return f"case {case.ref}: note from a member"


def _apply(call: Call, parsed: list[cmd.Command], repeated: Sequence[str] = ()) -> str:
    ctx, session, row, case, member, msg, now = call.ctx, call.session, call.row, call.case, call.member, call.msg, call.now
    row.status, row.kind = "processed", "commands"
    done: list[str] = [_repeated_line(repeated)] if repeated else []
    changes: list[str] = []
    savepoint = session.begin_nested()
    try:
        for command in parsed:
            before = _standing_of(session, case) if command.changes_case else None
            line = handlers.run(call, command)
            done.append(line)
            if command.changes_case and _standing_of(session, case) != before:  # `!urgent` on an urgent case: nothing to tell
                changes.append(f"!{typed_name(command)}: {line}")
        session.flush()
    except Refused as exc:
        savepoint.rollback()
        session.refresh(case)
        row.kind = "command_error"
        call.event("command_rejected", inbound_id=row.id, why=type(exc).__name__)
        problems = [str(exc)] + (["your text was not filed either; send it again"] if msg.own_text.strip() else [])
        mailer.reply_to_member(session, ctx, case, member, "refusal", now, problems=problems)
        return f"case {case.ref}: commands refused, nothing changed"
    savepoint.commit()
    if case.merged_into_id is not None:  # `!merge`: what follows (note, clock, confirmation) is the target's
        refresh_clock(ctx, session, case)
        case = merge.resolve(session, case)
    case.updated_at = now
    # Text written with commands is never dropped: it is an internal note.
    note = "" if any(isinstance(c, TEXT_COMMANDS) for c in parsed) else msg.own_text.strip()
    if note:
        row.kind = handlers.NOTE_WITH_COMMANDS
    if ctx.options.announce != "changes":
        changes = []
    if call.copies and routing.may_see(ctx.roster, recused(case), member.email):
        mailer.copy_to_member(session, ctx, case, member, call.copies, now)
    if changes or call.notices or call.copies:
        # One mail to the others about this message: the changes, what they made happen, what
        # was sent to parties, the note.
        if note:
            event(session, case.id, member.email, "note_added", now)
        sent_to = mailer.announce_to_others(session, ctx, case, member, now, changes=changes,
                                            notices=[n.text for n in call.notices], note=note, copies=call.copies,
                                            kind=_announcement_kind(call), urgent=any(n.kind == "urgent" for n in call.notices))
        if note:
            done.append("your text was recorded as an internal note" + (f" and sent to {sent_to} with the announcement"
                                                                         if sent_to else ""))
    elif note:
        sent_to = file_note(ctx, session, case, member, note, now)
        done.append("your text was recorded as an internal note" + (f" and sent to {sent_to}" if sent_to else ""))
    refresh_clock(ctx, session, case)
    if routing.may_see(ctx.roster, recused(case), member.email):
        mailer.reply_to_member(session, ctx, case, member, "confirmation", now, done=done)
    return f"case {case.ref}: {len(done)} command(s) applied"


#: What the other members are told about when a command changes it (`updated_at`, the clock's
#: cache and the like are not news).
_ANNOUNCED = ("status", "urgent", "spam", "assignee", "human_ack_at", "closed_at", "title", "merged_into_id")


def _standing_of(session: Session, case: Case) -> tuple[object, ...]:
    """The case as the others know it: its announced columns, who is recused, its parties and its
    decisions, read after the handler's changes are flushed."""
    session.flush()
    session.refresh(case)
    decided = session.execute(select(Decision.id, Decision.status).where(Decision.case_id == case.id)).all()
    return (tuple(getattr(case, c) for c in _ANNOUNCED),
            frozenset((r.member_email, r.active, r.include_proposed_by) for r in case.recusals),
            frozenset((p.role, p.address) for p in case.parties), frozenset(map(tuple, decided)))


def _announcement_kind(call: Call) -> str:
    """The outbox kind of a message's announcement: the proposal it asks a `!confirm` for when it
    carries exactly one (a reply to it then says what it confirms)."""
    proposals = {n.kind for n in call.notices if n.kind in (decisions.DECISION_PROPOSAL, decisions.INCLUDE_PROPOSAL)}
    return proposals.pop() if len(proposals) == 1 else "announcement"


# ----- recovery after a restore -------------------------------------------------------------------


def replay_recusals(ctx: Context, session: Session, msg: Parsed, case_id: int | None, now: datetime) -> list[str]:
    """Recovery after a restore replays no command, but a recusal it skipped would show a member a case
    they were kept out of: an authenticated `!concerns` or `!recuse` is applied again, on the case the
    database holds or, about a case of the lost stretch taken in again under a new reference that cannot
    be told, on every case taken in again (more recusal never shows anyone anything). Returns the members
    recused."""
    case = session.get(Case, case_id) if case_id is not None else None
    auth = authenticate(ctx, msg, case, merge.token_refs(session, case) if case is not None else ())
    cases: list[Case] = []
    if case is not None:
        cases = [case] if auth.member is not None and (auth.case_token or auth.dmarc) else []
    elif auth.member is not None and auth.unknown_case_token and msg.case_ref and fences.is_lost_ref(session, msg.case_ref):
        cases = list(session.scalars(select(Case).join(Event, Event.case_id == Case.id)
                                     .where(Event.action == "recovered_after_restore").distinct()))
    parsed = cmd.new_commands(msg.subject, [])
    if not cases or isinstance(parsed, cmd.CommandError) or auth.member is None:
        return []
    done = []
    for c in parsed:
        person = ctx.roster.find(c.name) if isinstance(c, cmd.Concerns) else (
            auth.member if isinstance(c, cmd.Recuse) else None)
        for target in cases if person is not None else []:
            if person is not None and person.email not in recused(target):
                recusals.recuse(ctx, session, target, person.email, "concerns" if isinstance(c, cmd.Concerns) else "self",
                                now, automatic=False)
                done.append(person.email)
    return done

