"""The recusal invariant under random sequences, over the real database, a Maildir and aiosmtpd.

Random reports (naming members in the text, in an attachment, or not at all), follow-ups, notes,
`!concerns`/`!recuse`/`!include`/`!confirm`/`!reply` commands, quarantined messages, failed
deliveries and escalation ticks. After every step, read from the outbox:

- nothing about case C went to a member recused from C, from the step of the recusal on
  (including the mail that caused it), and no `!list`-like mail names C to them;
- no internal note text reached any reporter or party.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from conduct_inbox.app import build_app
from conduct_inbox.config import load_settings
from conduct_inbox.daemon import run_once
from conduct_inbox.escalation import escalate_once, sla_policy
from conduct_inbox.mail.maildir import deliver_to_maildir
from conduct_inbox.models import Case, OutboxMessage
from conduct_inbox.parsing import WorkerParser
from tests.faults import faulty_parse
from tests.harness import MEMBERS, Clock, report, write_config
from tests.test_committee_e2e import reply

MEMBER_EMAILS = [m[1] for m in MEMBERS]
# Ways a report can name each member: full name, possessive, alias, address.
NAMINGS = {
    "alice@example.org": ["Alice Example", "alice example's", "Ali", "alice@example.org"],
    "bob@example.org": ["Bob Builder", "BOB BUILDER's", "bob@example.org"],
    "carol@example.org": ["Carol Chen", "CC", "carol@example.org"],
}
SHORT_NAMES = {"alice@example.org": "Alice Example", "bob@example.org": "Bob Builder", "carol@example.org": "Carol Chen"}

member = st.sampled_from(MEMBER_EMAILS)
naming = st.one_of(st.none(), st.tuples(member, st.integers(0, 3), st.booleans()))  # (who, which naming, in attachment)
steps = st.one_of(
    st.tuples(st.just("report"), naming),
    st.tuples(st.just("followup"), st.integers(0, 5), naming),
    st.tuples(st.just("note"), member, st.integers(0, 5)),
    st.tuples(st.just("concerns"), member, st.integers(0, 5), member),
    st.tuples(st.just("recuse"), member, st.integers(0, 5)),
    st.tuples(st.just("include"), member, st.integers(0, 5), member),
    st.tuples(st.just("confirm"), member, st.integers(0, 5)),
    st.tuples(st.just("reply"), member, st.integers(0, 5)),
    st.tuples(st.just("quarantine"), st.integers(0, 5)),
    st.tuples(st.just("reject"), member),
    st.tuples(st.just("tick"), st.integers(1, 60)),
)


@dataclass
class World:
    """One daemon on a fresh case store, plus what the test has done to it."""

    app: object
    maildir: Path
    clock: Clock
    receiver: object
    counter: int = 0
    cases: list[str] = field(default_factory=list)  # refs created in this example
    notes: list[str] = field(default_factory=list)
    reporters: dict[str, str] = field(default_factory=dict)  # ref -> reporter address

    def unique(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter:04d}-{id(self) % 10000}"


def _mention(naming_choice) -> tuple[str, list[tuple[str, str, bytes]]]:  # type: ignore[no-untyped-def]
    if naming_choice is None:
        return "", []
    who, index, in_attachment = naming_choice
    words = NAMINGS[who][index % len(NAMINGS[who])]
    sentence = f"It was {words} who did it."
    if in_attachment:
        return "", [("details.txt", "text/plain", sentence.encode())]
    return sentence, []


def _latest_to(world: World, who: str, ref: str):  # type: ignore[no-untyped-def]
    """The latest mail `who` received about `ref` (any time, even before a recusal), as a record."""
    with world.app.sessions() as session:  # type: ignore[attr-defined]
        case_id = session.scalar(select(Case.id).where(Case.ref == ref))
        data = session.scalars(
            select(OutboxMessage.data)
            .where(OutboxMessage.case_id == case_id, OutboxMessage.recipient == who)
            .order_by(OutboxMessage.id.desc())
            .limit(1)
        ).first()
    return None if data is None else SimpleNamespace(content=data)


def _pick(world: World, index: int) -> str | None:
    return world.cases[index % len(world.cases)] if world.cases else None


def apply_step(world: World, step: tuple) -> None:  # type: ignore[type-arg]
    kind = step[0]
    app = world.app
    tag = app.settings.committee.case_tag  # type: ignore[attr-defined]
    raw: bytes | None = None
    if kind == "report":
        text, attachments = _mention(step[1])
        sender = f"{world.unique('reporter')}@example.net"
        raw = report(sender=sender, subject=world.unique("Report"), body=f"Something happened. {text}", attachments=attachments)
    elif kind == "followup" and (ref := _pick(world, step[1])):
        text, attachments = _mention(step[2])
        raw = report(sender=world.reporters[ref], subject=f"Re: [{tag} #{ref}] more", body=f"One more thing. {text}",
                     attachments=attachments)
    elif kind in ("note", "recuse", "confirm", "reply", "concerns", "include") and (ref := _pick(world, step[2])):
        who = step[1]
        record = _latest_to(world, who, ref)
        if record is None:
            return
        if kind == "note":
            note = world.unique("INTERNAL-NOTE")
            world.notes.append(note)
            raw = reply(record, who, "", f"My view: {note}")
        elif kind == "reply":
            raw = reply(record, who, "!reply", f"Thank you for writing. {world.unique('REPLY')}")
        elif kind in ("concerns", "include"):
            raw = reply(record, who, f"!{kind} {SHORT_NAMES[step[3]]}", "")
        else:
            raw = reply(record, who, f"!{kind}", "")
    elif kind == "quarantine":
        sender = f"{world.unique('odd')}@example.net"
        raw = report(sender=sender, headers={"X-Test-Fault": "crash"}, body="A message our parser cannot read.")
    elif kind == "reject":
        world.receiver.reject_rcpt[step[1]] = "550 5.1.1 no such user"  # type: ignore[attr-defined]
    elif kind == "tick":
        world.clock.advance(hours=step[1])
        escalate_once(app.sessions, app.workflow, sla_policy(app.settings), world.clock())  # type: ignore[attr-defined]
    if raw is not None:
        deliver_to_maildir(world.maildir, raw)
    run_once(app)  # type: ignore[arg-type]
    world.receiver.reject_rcpt.clear()  # type: ignore[attr-defined]
    if kind == "report" and raw is not None:
        with app.sessions() as session:  # type: ignore[attr-defined]
            case = session.scalars(select(Case).options(selectinload(Case.parties)).order_by(Case.id.desc()).limit(1)).first()
            if case is not None and case.ref not in world.cases:
                world.cases.append(case.ref)
                reporter = case.party("reporter")
                world.reporters[case.ref] = reporter.address if reporter else sender


def recused_now(world: World) -> dict[int, set[str]]:
    with world.app.sessions() as session:  # type: ignore[attr-defined]
        cases = session.scalars(select(Case).options(selectinload(Case.recusals)).where(Case.ref.in_(world.cases)))
        return {c.id: c.recused_members() for c in cases}


def check_invariants(world: World, before_id: int, recused_before: dict[int, set[str]]) -> None:
    recused_after = recused_now(world)
    with world.app.sessions() as session:  # type: ignore[attr-defined]
        refs = dict(session.execute(select(Case.id, Case.ref).where(Case.ref.in_(world.cases))).all())
        new_rows = session.scalars(select(OutboxMessage).where(OutboxMessage.id > before_id)).all()
        for row in new_rows:
            text = row.data.decode("utf-8", "replace")
            if row.case_id in refs:
                before, after = recused_before.get(row.case_id, set()), recused_after.get(row.case_id, set())
                # Recused at the end of this step: nothing from this step on (the mail that caused it included).
                # Recused before and included again in this step: only the announcement of that may reach them.
                barred = after | (before if row.kind != "announcement" else set())
                assert row.recipient not in barred, (
                    f"{row.kind} mail about {refs[row.case_id]} went to recused member {row.recipient}"
                )
            if row.recipient in MEMBER_EMAILS and row.case_id is None:
                for case_id, members in recused_after.items():
                    if row.recipient in members:
                        assert refs[case_id] not in text, f"{row.kind} mail names {refs[case_id]} to a recused member"
            if row.audience in ("reporter", "party"):
                leaked = [n for n in world.notes if n in text]
                assert not leaked, f"internal note reached a {row.audience}: {leaked}"


@pytest.fixture
def world_factory(smtp_receiver, database):
    made: list = []

    def make() -> World:
        while made:  # one daemon at a time: the previous example's is done
            made.pop().close()
        folder = Path(tempfile.mkdtemp(prefix="ci-prop-"))
        config = write_config(
            folder,
            database_url=database.url,
            mailbox={"maildir": str(folder / "Maildir"), "poll_seconds": 1},
            smtp={"host": "127.0.0.1", "port": smtp_receiver.port, "security": "none", "retry_initial_seconds": 1,
                  "retry_max_seconds": 2},
        )
        config.write_text(config.read_text().replace("[intake]\n", "[intake]\nmax_attempts = 1\n", 1))
        clock = Clock()
        app = build_app(load_settings(config, environ={}), clock=clock,
                        parser=WorkerParser(timeout=2.0, function=faulty_parse))
        made.append(app)
        return World(app, folder / "Maildir", clock, smtp_receiver)

    yield make
    for app in made:
        app.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=st.lists(steps, min_size=2, max_size=10))
def test_nothing_reaches_a_recused_member_and_no_note_reaches_a_reporter(world_factory, sequence):
    world = world_factory()
    sequence = [("report", None)] + sequence  # always at least one case to work on
    for step in sequence:
        with world.app.sessions() as session:  # type: ignore[attr-defined]
            before_id = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)) or 0
        recused_before = recused_now(world)
        apply_step(world, step)
        check_invariants(world, before_id, recused_before)
    event(f"cases with a recusal: {sum(1 for members in recused_now(world).values() if members) > 0}")
