"""Confidentiality and recusal under random sequences driven by an adversary, over the real
database, a Maildir and aiosmtpd.

The adversary writes reports and follow-ups (as the reporter, the reported party, a witness, or
an unknown sender with the case tag): subjects that hide `!reply`, `!close silent x`, `!spam`,
`!send reported` in nested or glued RFC 2047 words, fullwidth `！` or small `﹗`; member names in
the body, the subject, latin-1 attachments without charset, UTF-16 with BOM, octet-stream JSON,
HTML attachments with `&nbsp;`, file names only, base64 forwarded messages, multipart/alternative
with a plain stub, confusable letters (`Аlice` with a Cyrillic `А`), accents, line breaks.
The test's members send commands (tracked in a model of what each case must look like), notes,
and answers to their own earlier command mail; among them `!title`, `!history` and `!merge` (into
another case of the sequence, refused unless both exclude the same members; after it the merged
case's mail, reference and tokens act on the case it went into, and the steps use them so). Quarantined messages, failed deliveries and
escalation ticks are mixed in. After every step, from the outbox table and the mail received:

1. no internal note text (unique markers) reaches a reporter or party;
2. nothing about case C reaches a member recused from C, from the step of the recusal on (the
   mail that caused it included); recusals are exactly those DESIGN asks for (a member named by
   the reported party is not recused and keeps receiving the case);
3. nothing identifying a reporter (name, address, unique subject word) reaches another party;
4. every inbound message is accounted for as what it is (case, follow-up of its case, committee
   mail, quarantine of the messages made to fail) and no quarantine says INTERNAL_ERROR;
5. no case state (status, spam, urgent, closed, decisions, parties, mail to reporters and
   parties, the committee's title) changes except by a command a test member typed in that
   step, as the model expects;
6. a committee title (`!title`) never reaches a reporter or a party (part of 1), and a history
   (`!history`) never shows a note of a member excluded from the case.

Profiles: the default keeps the test well under a minute on SQLite; RECUSAL_PROPERTY_PROFILE=
thorough runs many more and longer sequences. RECUSAL_PROPERTY_SKIP (comma-separated carrier
names, or "confusable") leaves known scan gaps out, to look for further bugs behind them.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload, undefer

from conduct_inbox.adapters.maildir import deliver_to_maildir
from conduct_inbox.adapters.parsing import WorkerParser
from conduct_inbox.cases.deadlines import sla_policy
from conduct_inbox.cases.escalate import escalate_once
from conduct_inbox.core import routing
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, Decision, Event, InboundMessage, OutboxMessage, Quarantine
from tests import adversary
from tests.faults import faulty_parse
from tests.harness import MEMBERS, STEERING, Clock, maildir_app, report
from tests.mailers import reply

try:
    from conduct_inbox.shell.intake import INTERNAL_ERROR
except ImportError:  # older code said so in other words
    INTERNAL_ERROR = "internal error in conduct-inbox"
#: Quarantine reasons that mean our own code raised (older code: "processing failed (...)").
BUG_REASONS = (INTERNAL_ERROR.split(",")[0], "processing failed")

PROFILE = os.environ.get("RECUSAL_PROPERTY_PROFILE", "default")
MAX_EXAMPLES, MAX_STEPS = {"default": (30, 12), "thorough": (400, 30)}[PROFILE]
#: Shrinking a failure replays hundreds of sequences through the daemon (minutes): the default
#: profile reports the failing sequence as found, within the suite's time limit; the thorough one
#: shrinks it (run it with --timeout=0).
SHRINK = os.environ.get("RECUSAL_PROPERTY_SHRINK", "1" if PROFILE == "thorough" else "0") == "1"
PHASES = (Phase.explicit, Phase.reuse, Phase.generate) + ((Phase.shrink,) if SHRINK else ())
SKIP = {s.strip() for s in os.environ.get("RECUSAL_PROPERTY_SKIP", "").split(",") if s.strip()}

MEMBER_EMAILS = [m[1] for m in MEMBERS]
COMMANDERS = MEMBER_EMAILS + [s[1] for s in STEERING]
CARRIERS = [c for c in adversary.CARRIERS if c not in SKIP]
NAMINGS = {
    who: [n for n in names if not ("confusable" in SKIP and any(c in n for c in "\u0410\u043e\u0421"))]
    for who, names in adversary.NAMINGS.items()
}

member = st.sampled_from(MEMBER_EMAILS)
commander = st.sampled_from(COMMANDERS)
case_index = st.integers(0, 5)
# (who, which naming, where)
naming = st.one_of(st.none(), st.tuples(member, st.integers(0, 7), st.sampled_from(CARRIERS))) if CARRIERS else st.none()
hidden = st.one_of(st.none(), st.tuples(st.sampled_from(adversary.HIDDEN_COMMANDS), st.sampled_from(adversary.HIDINGS)))
SPECS = (
    "note", "ack", "status investigating", "status waiting", "reply", "reply leaky", "party reported", "party witness",
    "party reported-member", "send reported", "send witness", "send reporter", "urgent", "not-urgent", "spam",
    "concerns", "recuse", "include", "confirm", "decide no-action", "decide private-reprimand", "decide temporary-ban",
    "close", "close silent", "reopen", "title", "history", "merge",
)
steps = st.one_of(
    st.tuples(st.just("report"), hidden, naming),
    st.tuples(st.just("followup"), case_index, st.sampled_from(("reporter", "reported", "witness", "unknown")), hidden,
              naming, st.booleans()),
    st.tuples(st.just("command"), commander, case_index, st.sampled_from(SPECS), member, st.booleans()),
    st.tuples(st.just("command"), commander, case_index, st.sampled_from(SPECS), member, st.booleans()),
    st.tuples(st.just("self_answer"), commander, case_index, st.integers(0, 3), st.booleans()),
    st.tuples(st.just("quarantine"),),
    st.tuples(st.just("reject"), member),
    st.tuples(st.just("tick"), st.integers(1, 60)),
)


# ----- the model of what each case must look like ---------------------------------------------


@dataclass
class Rec:
    active: bool
    automatic: bool
    proposer: str | None = None


@dataclass
class CaseModel:
    ref: str
    id: int
    reporter: str
    reporter_words: tuple[str, ...]  # unique words of the reporter's name, address and subject
    status: str = "new"
    urgent: bool = False
    spam: bool = False
    parties: list[tuple[str, str]] = field(default_factory=list)  # (role, address)
    decisions: list[list[str]] = field(default_factory=list)  # [kinds, status, decided_by]
    recusals: dict[str, Rec] = field(default_factory=dict)  # in the order their rows were made
    replied: bool = False
    outward: int = 0  # mail to the reporter and parties
    notes: list[str] = field(default_factory=list)  # note markers filed on the case
    note_by: dict[str, str] = field(default_factory=dict)  # note marker -> the member who wrote it
    title: str | None = None  # the committee's title (`!title`), once set
    merged_into: int | None = None  # `!merge`: the id of the case this one went into

    def recused(self) -> dict[str, str]:
        return {e: "named" for e, r in self.recusals.items() if r.active}

    def recuse(self, email: str, automatic: bool) -> None:
        rec = self.recusals.get(email)
        if automatic:
            if rec is not None and rec.active:
                return
            if rec is None:
                self.recusals[email] = Rec(True, True)
            else:
                rec.active, rec.automatic = True, True
        elif rec is None:
            self.recusals[email] = Rec(True, False)
        else:
            rec.active, rec.automatic, rec.proposer = True, False, None

    def snapshot(self) -> tuple:  # type: ignore[type-arg]
        return (self.status, self.spam, self.urgent, self.status == "closed", [tuple(d[:2]) for d in self.decisions],
                sorted(self.parties), self.outward)


class Refused(Exception):
    pass


SEVERE = {"public-reprimand", "temporary-ban", "permanent-ban"}
SANCTIONS = {"vacation", "temporary-ban", "permanent-ban", "public-reprimand", "private-reprimand", "apology-request"}


def resolve(world: World, case: CaseModel) -> CaseModel:
    """The case that mail about `case` acts on: itself, or the case it was merged into."""
    while case.merged_into is not None:
        case = world.by_id(case.merged_into) or case
    return case


def _exclusions(world: World, case: CaseModel) -> routing.Exclusions:
    """The case's exclusions as routing reads them, with whether the steering members work on it:
    escalations are time-driven and not modelled, so whether one handed the case to the steering
    members is read from the stored case (`cases.steering_since`); a reconsideration is modelled."""
    with world.app.sessions() as session:  # type: ignore[attr-defined]
        handed = session.scalar(select(Case.steering_since).where(Case.id == case.id)) is not None
    return routing.Exclusions(case.recused(), steering_works=handed or case.status == "reconsideration")


def model_merge(world: World, case: CaseModel, who: str, ref: str) -> None:
    """`!merge REF` as README says: refused unless REF is another unmerged case the sender may act
    on that excludes exactly the same members (and not a closed one for an open case); else
    everything of `case` moves to it and `case` is closed."""
    roster = world.app.inbound.roster  # type: ignore[attr-defined]
    target = next((c for c in world.cases if c.ref == ref), None)
    if target is None or target is case or target.merged_into is not None:
        raise Refused
    if not routing.works_on(roster, _exclusions(world, target), who) or set(case.recused()) != set(target.recused()):
        raise Refused
    if _exclusions(world, case).steering_works != _exclusions(world, target).steering_works:
        raise Refused
    if target.status == "closed" and case.status != "closed":
        raise Refused
    for p in case.parties:
        if p not in target.parties:
            target.parties.append(p)
    target.decisions = sorted(target.decisions + case.decisions, key=lambda d: d[3])
    for email_, rec in case.recusals.items():
        mine = target.recusals.get(email_)
        if rec.active and mine is not None and mine.automatic and not rec.automatic:
            mine.automatic, mine.proposer = False, None
    target.urgent = target.urgent or case.urgent
    target.replied = target.replied or case.replied
    target.outward += case.outward
    target.notes += case.notes
    target.note_by.update(case.note_by)
    case.status, case.merged_into, case.parties, case.decisions, case.outward = "closed", target.id, [], [], 0
    for expected in world.expected.values():  # its messages went with it
        if expected.case_id == case.id:
            expected.case_id = target.id


def model_command(world: World, case: CaseModel, who: str, spec: str, target: str, text: str, party: tuple[str, str] | None) -> None:
    """Apply one command as DESIGN says; raises Refused when the daemon must refuse it."""
    roster = world.app.inbound.roster  # type: ignore[attr-defined]
    person = roster.person(who)
    if spec == "merge":
        model_merge(world, case, who, target)
    elif spec == "title":
        case.title = target
    elif spec == "history":
        pass
    elif spec == "ack":
        if case.status == "new":
            case.status = "acknowledged"
    elif spec.startswith("status "):
        if case.status not in ("acknowledged", "investigating", "waiting", "reconsideration"):
            raise Refused
        case.status = spec.split()[1]
    elif spec in ("reply", "reply leaky"):
        if not text or any(n in text for n in case.notes):
            raise Refused
        case.outward += 1
        case.replied = True
    elif spec.startswith("party"):
        assert party is not None
        role, address = party
        if roster.person(address) is not None and role == "reported":
            case.recuse(address, automatic=False)
        case.parties.append((role, address))
    elif spec.startswith("send "):
        role = spec.split()[1]
        found = [p for p in case.parties if p[0] == role]
        if not found or not text or any(n in text for n in case.notes):
            raise Refused
        case.outward += len(found)
        if role == "reporter":
            case.replied = True
    elif spec == "urgent":
        case.urgent = True
    elif spec == "not-urgent":
        case.urgent = False
    elif spec == "spam":
        case.spam = True
    elif spec == "concerns":
        case.recuse(target, automatic=False)
    elif spec == "recuse":
        case.recuse(who, automatic=False)
    elif spec == "include":
        rec = case.recusals.get(target)
        if rec is None or not rec.active or not rec.automatic:
            raise Refused
        rec.proposer = who
    elif spec == "confirm":
        if person.steering and not routing.committee(roster, _exclusions(world, case)).steering_included:
            raise Refused
        pending = [d for d in case.decisions if d[1] == "pending"]
        include = next((e for e, r in case.recusals.items() if r.active and r.proposer), None)
        if pending:
            if pending[-1][2] == who:
                raise Refused
            pending[-1][1] = "effective"
            if case.status != "closed":
                case.status = "decided"
        elif include is not None:
            if case.recusals[include].proposer == who:
                raise Refused
            case.recusals[include].active, case.recusals[include].proposer = False, None
        else:
            raise Refused
    elif spec.startswith("decide "):
        if case.status == "closed":
            raise Refused
        kinds = spec.split()[1]
        explicit = "temporary-ban" in kinds  # sent with target=reported
        has_reported = any(p[0] == "reported" for p in case.parties)
        if explicit and not has_reported:
            raise Refused
        if kinds in SANCTIONS and not has_reported:
            raise Refused
        for d in case.decisions:
            if d[1] == "pending":
                d[1] = "superseded"
        world.counter += 1  # the decisions' order (by row id) survives a merge
        if kinds in SEVERE:
            case.decisions.append([kinds, "pending", who, world.counter])
        else:
            case.decisions.append([kinds, "effective", who, world.counter])
            if case.status != "closed":
                case.status = "decided"
    elif spec == "close":
        if case.status == "closed" or not any(d[1] == "effective" for d in case.decisions) or not case.replied:
            raise Refused
        case.status = "closed"
    elif spec == "close silent":
        if case.status == "closed":
            raise Refused
        case.status = "closed"
    elif spec == "reopen":
        if case.status not in ("closed", "decided", "reconsideration"):
            raise Refused
        case.status = "investigating"
    elif spec != "note":
        raise AssertionError(spec)


def command_subject(spec: str, target: str, party: tuple[str, str, str] | None) -> str:
    if spec == "note":
        return ""
    if spec == "reply leaky":
        return "!reply"
    if spec.startswith("party"):
        assert party is not None
        return f"!party {party[0]} {party[1]} {party[2]}"
    if spec in ("concerns", "include"):
        return f"!{spec} {adversary.SHORT_NAMES[target]}"
    if spec in ("title", "merge"):
        return f"!{spec} {target}"
    if spec == "decide temporary-ban":
        return "!decide temporary-ban target=reported until=2027-01-31"
    if spec == "close silent":
        return "!close silent resolved informally"
    return "!" + spec


# ----- the world ----------------------------------------------------------------------------


@dataclass
class Expected:
    """What an inbound message must end as."""

    kind: str  # report | followup | stray | committee | quarantine
    case_id: int | None = None


@dataclass
class World:
    """One daemon on the shared case store, plus what the test has done to it."""

    app: object
    maildir: Path
    clock: Clock
    receiver: object
    salt: str
    first_outbox: int
    first_inbound: int
    first_received: int
    counter: int = 0
    step: int = 0
    cases: list[CaseModel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # every note marker written (filed or not)
    titles: list[str] = field(default_factory=list)  # the unique word of every committee title typed
    expected: dict[str, Expected] = field(default_factory=dict)  # sha256 of the raw message -> outcome
    #: (member, ref, mid, subject, to, the command as typed (spec, target, party), whether it was applied)
    sent_by: list[tuple[object, ...]] = field(default_factory=list)
    step_of_row: list[tuple[int, int]] = field(default_factory=list)  # (last outbox id before step, step)
    recused_since: dict[tuple[int, str], int] = field(default_factory=dict)  # (case id, member) -> step
    received_seen: int = 0
    done: list[str] = field(default_factory=list)  # kinds of the steps that sent mail

    def unique(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:04d}q{self.salt}"

    def case(self, index: int) -> CaseModel | None:
        return self.cases[index % len(self.cases)] if self.cases else None

    def by_id(self, case_id: int | None) -> CaseModel | None:
        return next((c for c in self.cases if c.id == case_id), None)


def _latest_to(world: World, who: str, case: CaseModel) -> bytes | None:
    """The latest mail `who` was sent about the case (any time, even before a recusal); of a
    merged case, whose mail moved to the case it went into, the latest under its own reference."""
    with world.app.sessions() as session:  # type: ignore[attr-defined]
        if case.merged_into is not None:
            rows = session.execute(select(OutboxMessage.subject, OutboxMessage.data).where(
                OutboxMessage.recipient == who, OutboxMessage.id > world.first_outbox).order_by(OutboxMessage.id.desc())).all()
            return next((data for subject, data in rows if f"#{case.ref}]" in subject), None)
        return session.scalars(
            select(OutboxMessage.data)
            .where(OutboxMessage.case_id == case.id, OutboxMessage.recipient == who)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        ).first()


def _outward_to(world: World, case: CaseModel, address: str) -> bytes | None:
    with world.app.sessions() as session:  # type: ignore[attr-defined]
        return session.scalars(
            select(OutboxMessage.data)
            .where(OutboxMessage.case_id == case.id, OutboxMessage.recipient == address)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        ).first()


def _named(naming_choice) -> tuple[str | None, str, str | None]:  # type: ignore[no-untyped-def]
    """(member named, the naming text, carrier)."""
    if naming_choice is None:
        return None, "", None
    who, index, carrier = naming_choice
    names = NAMINGS[who]
    return who, names[index % len(names)], carrier


def _subject_with(world: World, base: str, hidden_choice) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(header text, its unique word): `base` plus a hidden command, if any."""
    word = world.unique("Sbj")
    text = f"{base} {word}".strip()
    if hidden_choice is not None:
        text += " " + adversary.hide_command(*hidden_choice)
    return text, word


def _message_id(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return str(msg["Message-ID"]).strip().strip("<>")


def _key(raw: bytes) -> str:
    """How the test finds the inbound row of a message it sent (a quarantined one has no Message-ID on record)."""
    return hashlib.sha256(raw).hexdigest()


def _recuse_named(world: World, case: CaseModel, who: str | None) -> None:
    if who is not None:
        case.recuse(who, automatic=True)


def apply_step(world: World, step: tuple) -> None:  # type: ignore[type-arg]
    kind = step[0]
    app = world.app
    tag = app.settings.committee.case_tag  # type: ignore[attr-defined]
    raw: bytes | None = None
    expected: Expected | None = None
    new_report: tuple | None = None
    if kind == "report":
        _, hidden_choice, naming_choice = step
        who, words, carrier = _named(naming_choice)
        sender = world.unique("rep")
        name_word = world.unique("Rn")
        subject, subject_word = _subject_with(world, "Report", hidden_choice)
        raw = adversary.mail(sender=f"{sender}@example.net", name=f"Robin {name_word}", subject=subject,
                             body="Something happened at the sprint.", carrier=carrier, naming=words, variant=world.counter)
        expected = Expected("report")
        new_report = (f"{sender}@example.net", (sender, name_word, subject_word), who)
    elif kind == "followup" and (case := world.case(step[1])):
        _, _, role, hidden_choice, naming_choice, threaded = step
        who, words, carrier = _named(naming_choice)
        acting = resolve(world, case)  # mail about a merged case's reference joins the case it went into
        if role == "reporter":
            address, name = case.reporter, "Robin"
        elif role == "unknown":
            address, name = f"{world.unique('stranger')}@example.com", "Some Stranger"
        else:
            found = [p for p in acting.parties if p[0] == role and app.inbound.roster.person(p[1]) is None]  # type: ignore[attr-defined]
            if not found:
                return _finish(world, kind, None, None)
            address, name = found[-1][1], "A Party"
        ours = _outward_to(world, acting, address) if threaded and role != "unknown" else None
        if ours is not None:
            original = email.message_from_bytes(ours, policy=email.policy.default)
            subject, _ = _subject_with(world, f"Re: {adversary.header_value(str(original['Subject']))}", hidden_choice)
            in_reply_to = str(original["Message-ID"])
        else:
            subject, _ = _subject_with(world, f"Re: [{tag} #{case.ref}] more", hidden_choice)
            in_reply_to = None
        raw = adversary.mail(sender=address, name=name, subject=subject, body="One more thing about it.", carrier=carrier,
                             naming=words, in_reply_to=in_reply_to, variant=world.counter)
        expected = Expected("stray" if role == "unknown" else "followup", acting.id)
        if role != "reported":  # the reported person cannot recuse anyone
            _recuse_named(world, acting, who)
    elif kind == "command" and (case := world.case(step[2])):
        _, who, index, spec, target, with_text = step
        record = _latest_to(world, who, case)
        if record is None:
            return _finish(world, kind, None, None)
        acting = resolve(world, case)  # a merged case's mail and tokens act on the case it went into
        if spec == "merge":
            target = world.case(index + 1).ref  # type: ignore[union-attr]
        elif spec == "title":
            target = f"Committee words {world.unique('Ttl')}"
            world.titles.append(target.split()[-1])
        party = None
        if spec.startswith("party"):
            if spec == "party reported-member":
                party = ("reported", target, adversary.SHORT_NAMES[target])
            else:
                party = (spec.split()[1], f"{world.unique('party')}@example.com", f"Pat {world.unique('Pn')}")
        if spec == "reply leaky" and acting.notes:
            text = f"As we said among us: {acting.notes[-1]}. Kind regards"
        elif spec in ("reply", "reply leaky") or spec.startswith("send "):
            text = f"Thank you for your patience. {world.unique('OUT')}" if with_text else ""
        else:
            text = ""
            if with_text or spec == "note":
                text = f"My view on this: the person named has two earlier warnings on file {world.unique('INTERNALNOTE')}"
                world.notes.append(text.split()[-1])
        raw = reply(_Record(record), who, command_subject(spec, target, party), text)
        expected = Expected("committee", acting.id)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        applied = _model_member_mail(world, acting, who, spec, target, text, party)
        expected.case_id = resolve(world, acting).id  # a `!merge` message goes with the case merged into
        if spec != "note":
            world.sent_by.append((who, case.ref, str(parsed["Message-ID"]), str(parsed["Subject"]), str(parsed["To"]),
                                  (spec, target, party), applied))
    elif kind == "self_answer" and (case := world.case(step[2])):
        _, who, _, which, with_text = step
        mine = [s for s in world.sent_by if s[0] == who and s[1] == case.ref]
        if not mine:
            return _finish(world, kind, None, None)
        _, _, mid, subject, to, typed, applied = mine[which % len(mine)]
        msg = EmailMessage()
        msg["From"] = who
        msg["To"] = to
        msg["Subject"] = f"Re: {subject}"
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg["In-Reply-To"] = mid
        msg["References"] = mid
        text = ""
        outward_again = not applied and (typed[0] in ("reply", "reply leaky") or typed[0].startswith("send "))
        if with_text:
            text = f"Done, thanks; I also asked the venue for their own account of it {world.unique('INTERNALNOTE')}"
            if not outward_again:  # else it is the text of the command sent again: for the reporter
                world.notes.append(text.split()[-1])
        msg.set_content(f"{text}\n\nOn Tue, {who} wrote:\n> (my earlier mail)\n")
        raw = msg.as_bytes()
        acting = resolve(world, case)
        expected = Expected("committee", acting.id)
        if applied:
            # Nothing it repeats may run again: at most a note.
            _model_member_mail(world, acting, who, "note", who, text, None)
        else:
            # A refused command (a !reply without text, say), answered by its sender with what was
            # missing, is the same command sent again: it runs (README "Working a case by email").
            spec, target, party = typed
            _model_member_mail(world, acting, who, spec, target, text, party)
            expected.case_id = resolve(world, acting).id
    elif kind == "quarantine":
        raw = report(sender=f"{world.unique('odd')}@example.net", headers={"X-Test-Fault": "crash"},
                     body="A message our parser cannot read.")
        expected = Expected("quarantine")
    elif kind == "reject":
        world.receiver.reject_rcpt[step[1]] = "550 5.1.1 no such user"  # type: ignore[attr-defined]
    elif kind == "tick":
        world.clock.advance(hours=step[1])
        escalate_once(app.sessions, app.inbound.ctx, sla_policy(app.settings), world.clock())  # type: ignore[attr-defined]
    _finish(world, kind, raw, expected, new_report)


class _Record:
    def __init__(self, content: bytes):
        self.content = content


def _model_member_mail(world: World, case: CaseModel, who: str, spec: str, target: str, text: str,
                       party: tuple[str, str, str] | None) -> bool:
    """Apply a member's mail to the model; False when it is refused (nothing changes)."""
    roster = world.app.inbound.roster  # type: ignore[attr-defined]
    if not routing.works_on(roster, _exclusions(world, case), who):
        return False  # a recused member's token no longer works, nor a steering member's off the case
    saved = (case.status, case.urgent, case.spam, list(case.parties), [list(d) for d in case.decisions],
             {e: Rec(r.active, r.automatic, r.proposer) for e, r in case.recusals.items()}, case.replied, case.outward,
             case.title)
    try:
        model_command(world, case, who, spec, target, text, party[:2] if party else None)
    except Refused:
        (case.status, case.urgent, case.spam, case.parties, case.decisions, case.recusals, case.replied,
         case.outward, case.title) = saved
        return False
    if text and not (spec in ("reply", "reply leaky") or spec.startswith("send ")):
        case = resolve(world, case)  # text with `!merge` is a note on the case merged into
        case.notes.append(text.split()[-1])
        case.notes.append(text)
        case.note_by[text.split()[-1]] = who
    return True


def _finish(world: World, kind: str, raw: bytes | None, expected: Expected | None,
            new_report: tuple | None = None) -> None:
    app = world.app
    if raw is not None:
        world.done.append(kind)
        if expected is not None:
            world.expected[_key(raw)] = expected
        deliver_to_maildir(world.maildir, raw)
    run_once(app)  # type: ignore[arg-type]
    world.receiver.reject_rcpt.clear()  # type: ignore[attr-defined]
    if new_report is not None and raw is not None:
        with app.sessions() as session:  # type: ignore[attr-defined]
            row = session.scalars(select(InboundMessage).where(InboundMessage.message_id == _message_id(raw))).first()
            case = session.get(Case, row.case_id) if row is not None and row.case_id is not None else None
            assert case is not None, "invariant 4: a report did not become a case"
            address, words, who = new_report
            model = CaseModel(case.ref, case.id, address, words, parties=[("reporter", address)], outward=1)
            _recuse_named(world, model, who)
            world.cases.append(model)
            world.expected[_key(raw)].case_id = case.id


# ----- reading what went out ------------------------------------------------------------------


def readable(data: bytes) -> str:
    """Everything a recipient could read in a mail: headers decoded, every part decoded."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    parts = [data.decode("utf-8", "replace")]
    for part in msg.walk():
        for key, value in part.items():
            parts.append(f"{key}: {value}")
        if part.is_multipart():
            continue
        if part.get_filename():
            parts.append(part.get_filename())
        try:
            payload = part.get_payload(decode=True) or b""
        except Exception:
            payload = b""
        try:
            parts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
        except LookupError:
            parts.append(payload.decode("utf-8", "replace"))
    return "\n".join(parts)


def _step_of(world: World, row_id: int) -> int:
    found = 0
    for last_before, step in world.step_of_row:
        if row_id > last_before:
            found = step
    return found


def check_invariants(world: World, recused_before: dict[int, set[str]]) -> None:
    by_id = {c.id: c for c in world.cases}
    party_addresses = {p[1] for c in world.cases for p in c.parties if p[0] != "reporter"} - set(COMMANDERS)
    reporter_addresses = {c.reporter for c in world.cases}
    outsiders = party_addresses | reporter_addresses
    with world.app.sessions() as session:  # type: ignore[attr-defined]
        # -- recusals are what DESIGN asks for (invariant 2 relies on it)
        cases = {c.id: c for c in session.scalars(
            select(Case).options(selectinload(Case.recusals), selectinload(Case.parties)).where(Case.id.in_(list(by_id))))}
        for case_id, model in by_id.items():
            actual = cases[case_id].recused_members()
            assert actual == set(model.recused()), (
                f"invariant 2: case {model.ref} recuses {sorted(actual)}, DESIGN asks for {sorted(model.recused())}"
            )
            for email_ in actual - recused_before.get(case_id, set()):
                world.recused_since.setdefault((case_id, email_), world.step)
            for email_ in recused_before.get(case_id, set()) - actual:
                world.recused_since.pop((case_id, email_), None)
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.id > world.first_outbox)).all()
        rows_by_mid = {r.message_id: r for r in rows}
        # -- invariant 5: the state of every case is the model's
        for case_id, model in by_id.items():
            case = cases[case_id]
            decisions = session.execute(select(Decision.kinds, Decision.status).where(Decision.case_id == case_id)
                                        .order_by(Decision.id)).all()
            outward = session.scalar(select(func.count(OutboxMessage.id)).where(
                OutboxMessage.case_id == case_id, OutboxMessage.audience.in_(("reporter", "party"))))
            actual_state = (case.status, case.spam, case.urgent, case.closed_at is not None, [tuple(d) for d in decisions],
                            sorted((p.role, p.address) for p in case.parties), outward)
            assert actual_state == model.snapshot(), (
                f"invariant 5: case {model.ref} is (status, spam, urgent, closed, decisions, parties, outward mail) "
                f"{actual_state}; the commands typed lead to {model.snapshot()}"
            )
            assert model.title is None or case.title == model.title, (
                f"invariant 5: case {model.ref} is titled {case.title!r}, the last !title typed was {model.title!r}")
        # -- invariant 4: every inbound message accounted for, as what it is
        inbound = session.scalars(select(InboundMessage).options(undefer(InboundMessage.raw))
                                  .where(InboundMessage.id > world.first_inbound)).all()
        reasons = dict(session.execute(select(Quarantine.inbound_id, Quarantine.reason)
                                       .where(Quarantine.inbound_id > world.first_inbound)).all())
        refused = {e.detail.get("inbound_id") for e in session.scalars(
            select(Event).where(Event.action == "command_refused", Event.id > 0))}
    assert len(inbound) == len(world.expected), f"invariant 4: {len(world.expected)} delivered, {len(inbound)} recorded"
    for row in inbound:
        assert row.status != "pending", f"invariant 4: inbound #{row.id} still pending"
        reason = reasons.get(row.id, "")
        assert not reason.startswith(BUG_REASONS), f"invariant 4: inbound #{row.id} quarantined by our own bug: {reason}"
        want = world.expected.get(_key(row.raw))
        assert want is not None, f"invariant 4: inbound #{row.id} is no message the test sent"
        got = (row.status, row.kind, row.case_id)
        if want.kind == "report":
            ok = row.status == "processed" and row.kind == "new_report" and row.case_id is not None
        elif want.kind == "followup":
            ok = row.status == "processed" and row.kind == "followup" and row.case_id == want.case_id
        elif want.kind == "stray":
            ok = row.status == "processed" and row.kind == "stray_followup" and row.case_id == want.case_id
        elif want.kind == "committee":
            ok = row.status == "processed" and (
                row.kind in ("commands", "note", "commands_note", "command_error")
                and row.case_id == want.case_id or row.kind == "refused" and row.id in refused)
        else:
            ok = row.status == "quarantined" and bool(reason)
        assert ok, f"invariant 4: inbound #{row.id} should be {want.kind} (case id {want.case_id}) but is {got} {reason}"
    leftover = [p for sub in ("new", "cur") for p in (world.maildir / sub).iterdir()]
    assert not leftover, f"invariant 4: {len(leftover)} message(s) left in the intake folder"

    # -- what went out: outbox rows of this step, and the mail that arrived
    received = world.receiver.messages[world.received_seen:]  # type: ignore[attr-defined]
    world.received_seen += len(received)
    deliveries: list[tuple[str, OutboxMessage | None, str]] = []
    for row in rows:
        if _step_of(world, row.id) == world.step:
            deliveries.append((row.recipient, row, readable(row.data)))
    for mail in received:
        mid = str(mail.message.get("Message-ID", "")).strip().strip("<>")
        row = rows_by_mid.get(mid)
        for rcpt in mail.rcpt_tos:
            if row is None:
                with world.app.sessions() as session:  # type: ignore[attr-defined]
                    old = session.scalars(select(OutboxMessage.case_id).where(OutboxMessage.message_id == mid)).first()
                assert old is not None, f"mail to {rcpt} that is in no outbox row"
                continue  # an earlier example's
            deliveries.append((rcpt, row, readable(mail.content)))
    for rcpt, row, text in deliveries:
        assert row is not None
        model = by_id.get(row.case_id) if row.case_id is not None else None
        if row.case_id is not None and model is None:
            continue  # a case of an earlier example
        # 1. no note reaches a reporter or a party
        if row.audience in ("reporter", "party") or rcpt in outsiders:
            leaked = [n for n in world.notes if n in text]
            assert not leaked, f"invariant 1: internal note reached a {row.audience} ({row.kind}): {leaked}"
            titled = [t for t in world.titles if t in text]
            assert not titled, f"invariant 6: a committee title reached a {row.audience} ({row.kind}): {titled}"
        # 6. a history shows no note of a member excluded from the case
        if model is not None and "the history of this case" in text:
            excluded = set(model.recused())
            shown = [m for m, by in model.note_by.items() if by in excluded and m in text]
            assert not shown, f"invariant 6: the history of {model.ref} shows notes of excluded members: {shown}"
        # 3. nothing identifying a reporter reaches another party
        if rcpt in party_addresses or row.audience == "party":
            folded = text.casefold()
            for other in world.cases:
                if other.reporter == rcpt:
                    continue
                found = [w for w in other.reporter_words if w.casefold() in folded]
                assert not found, f"invariant 3: the reporter of {other.ref} identified to a party ({row.kind}): {found}"
        # 2. nothing about a case reaches a member recused from it
        if rcpt in COMMANDERS:
            row_step = _step_of(world, row.id)
            for other in world.cases:
                since = world.recused_since.get((other.id, rcpt))
                # A merged case's content is its target's: mail about the target (which names the
                # merged case) is judged by the target's recusals.
                about = row.case_id == other.id or other.ref in text and other.merged_into is None
                if since is None or row_step < since or not about:
                    continue
                if row.audience in ("reporter", "party") and (rcpt in {p[1] for p in other.parties}):
                    continue  # the member is a party of the case: the committee's words to them
                assert False, f"invariant 2: {row.kind} mail about {other.ref} reached {rcpt}, recused since step {since}"
        # (a member included again in this step is not recused at its end: the announcement reaches them)


@pytest.fixture
def world_factory(smtp_receiver, database):
    made: list = []

    def make() -> World:
        while made:  # one daemon at a time: the previous example's is done
            made.pop().close()
        folder = Path(tempfile.mkdtemp(prefix="ci-prop-"))
        clock = Clock()
        app = maildir_app(folder, database.url, smtp_receiver, clock=clock, mailbox={"poll_seconds": 1},
                          smtp={"retry_initial_seconds": 1, "retry_max_seconds": 2}, intake={"max_attempts": 1},
                          parser=WorkerParser(timeout=5.0, function=faulty_parse))
        made.append(app)
        with app.sessions() as session:
            first_outbox = session.scalar(select(func.max(OutboxMessage.id))) or 0
            first_inbound = session.scalar(select(func.max(InboundMessage.id))) or 0
        return World(app, folder / "Maildir", clock, smtp_receiver, salt=f"{len(smtp_receiver.messages) % 9973:04d}",
                     first_outbox=first_outbox, first_inbound=first_inbound, first_received=len(smtp_receiver.messages),
                     received_seen=len(smtp_receiver.messages))

    yield make
    for app in made:
        app.close()


@settings(max_examples=MAX_EXAMPLES, deadline=None, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sequence=st.lists(steps, min_size=4, max_size=MAX_STEPS))
def test_adversary_cannot_break_confidentiality_recusal_or_case_state(world_factory, sequence):
    world = world_factory()
    sequence = [("report", None, None)] + sequence  # always at least one case to work on
    for number, step in enumerate(sequence, start=1):
        world.step = number
        with world.app.sessions() as session:  # type: ignore[attr-defined]
            last = session.scalar(select(func.max(OutboxMessage.id))) or 0
        world.step_of_row.append((last, number))
        recused_before = {c.id: set(c.recused()) for c in world.cases}
        apply_step(world, step)
        check_invariants(world, recused_before)
    event(f"cases with a recusal: {any(c.recused() for c in world.cases)}")
    event(f"a case merged into another: {any(c.merged_into is not None for c in world.cases)}")
    event(f"a committee title set: {any(c.title for c in world.cases)}")
    event(f"mail sent in {len(world.done)} of {len(sequence)} steps")
    for kind in sorted(set(world.done)):
        event(f"step sent: {kind}")
