"""Two daemons on one PostgreSQL database share the work without doing anything twice; on SQLite
a second daemon refuses to start.

Both daemons are the real `conduct-inbox run` command as child processes, with the same config
file, the same Dovecot mailbox and the same aiosmtpd receiver. Reports arrive while both run.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from conduct_inbox.adapters.parsing import InlineParser, ParseTimeout
from conduct_inbox.errors import MailboxUnavailable
from conduct_inbox.shell.app import App, build_app
from conduct_inbox.store import db
from conduct_inbox.store.models import Case, Event, InboundMessage, OutboxMessage, Party, Quarantine
from tests.fixtures.database import BACKENDS, fresh_postgres_database
from tests.harness import MEMBERS, Harness, report
from tests.procs import wait_until

REPORTS = 200
BIN = Path(sys.executable).parent / "conduct-inbox"  # the console script of this venv
REF = re.compile(r"\[conduct #(\d{4}-\d{4})\]")


# ----- helpers ----------------------------------------------------------------------------------




class Daemon:
    """`conduct-inbox <args> --config CONFIG` as a child; its log goes to a file (a pipe could fill)."""

    def __init__(self, config: Path, *args: str, name: str):
        self.log_path = config.parent / f"{name}.log"
        self._log = open(self.log_path, "wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        self.proc = subprocess.Popen(
            [str(BIN), *args, "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=self._log,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return "conduct-inbox running" in self.log()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.proc.args} did not exit in {timeout}s:\n{self.log()[-3000:]}") from None

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def children() -> Iterator[list[Daemon]]:
    """Daemons a test starts; any still running at the end are killed."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL not among TEST_DATABASES")
    with fresh_postgres_database() as url:
        yield url


def upgrade(config: Path) -> None:
    result = subprocess.run([str(BIN), "db", "upgrade", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ----- two daemons, one PostgreSQL database -----------------------------------------------------


def test_two_daemons_on_postgresql_do_every_report_exactly_once(dovecot, smtp_receiver, postgres_url, make_harness, children):
    harness = make_harness(postgres_url)
    config = harness.config_path  # poll every 1 s, IMAP IDLE on
    upgrade(config)
    first, second = Daemon(config, "run", name="a"), Daemon(config, "run", name="b")
    children += [first, second]
    for daemon in (first, second):
        assert wait_until(daemon.running, 20), daemon.log()

    senders = [f"reporter{i}@example.net" for i in range(REPORTS)]
    with dovecot.client(harness.user) as imap:  # bursts, so that mail keeps arriving while they work
        for start in range(0, REPORTS, 10):
            for sender in senders[start : start + 10]:
                imap.append("INBOX", report(sender=sender, name=f"Reporter {sender[8:-12]}",
                                            body=f"Report number {sender} about the sprint."))
            time.sleep(0.05)
            assert first.proc.poll() is None and second.proc.poll() is None, first.log() + second.log()

    engine = db.make_engine(postgres_url)
    sessions = db.session_factory(engine)
    expected_mail = REPORTS * (1 + len(MEMBERS))  # an acknowledgement and one copy per member

    def done() -> bool:
        with sessions() as session:
            cases = session.scalar(select(func.count()).select_from(Case))
            pending_in = session.scalar(
                select(func.count()).select_from(InboundMessage).where(InboundMessage.status == "pending"))
            pending_out = session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending"))
        return cases == REPORTS and pending_in == 0 and pending_out == 0 and len(smtp_receiver.messages) >= expected_mail

    try:
        finished = wait_until(done, 45, step=0.25)
        with sessions() as session:
            state = {
                "cases": session.scalar(select(func.count()).select_from(Case)),
                "inbound": dict(session.execute(
                    select(InboundMessage.status, func.count()).group_by(InboundMessage.status)).all()),
                "outbox": dict(session.execute(
                    select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all()),
                "outbox still claimed": session.scalar(select(func.count()).select_from(OutboxMessage).where(
                    OutboxMessage.status == "pending", OutboxMessage.claimed_until.is_not(None))),
                "received": len(smtp_receiver.messages),
            }
        assert finished, f"not done in 45 s: {state}\n--- a ---\n{first.log()[-4000:]}\n--- b ---\n{second.log()[-4000:]}"

        # Both stop cleanly on SIGTERM.
        first.proc.send_signal(signal.SIGTERM)
        second.proc.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0, first.log()[-3000:]
        assert second.wait(20) == 0, second.log()[-3000:]
        logs = first.log() + second.log()
        assert "@" not in logs  # ids only, never addresses

        # Both really worked (otherwise this test proves nothing about sharing the work).
        worked = [len(re.findall(r"inbound #\d+ \(uid \d+\): new case ", d.log())) for d in (first, second)]
        assert sum(worked) == REPORTS and min(worked) > 0, worked

        with sessions() as session:
            # Exactly one case per report, each with the right reporter.
            reporters = session.scalars(select(Party.address).where(Party.role == "reporter")).all()
            assert sorted(reporters) == sorted(senders)
            assert session.scalar(select(func.count()).select_from(Case)) == REPORTS
            # Every inbound message processed once: one row per UID, processed, each its own case.
            rows = session.execute(select(InboundMessage.uid, InboundMessage.status, InboundMessage.case_id,
                                          InboundMessage.attempts, InboundMessage.error)).all()
            assert len(rows) == REPORTS
            assert {r.status for r in rows} == {"processed"}, [tuple(r) for r in rows if r.status != "processed"]
            assert len({r.uid for r in rows}) == REPORTS and len({r.case_id for r in rows}) == REPORTS
            opened = Counter(session.scalars(select(Event.case_id).where(Event.action == "case_opened")).all())
            assert len(opened) == REPORTS and set(opened.values()) == {1}
            queued_acks = Counter(session.scalars(select(Event.case_id).where(Event.action == "acknowledgement_queued")).all())
            assert len(queued_acks) == REPORTS and set(queued_acks.values()) == {1}
            # Every outbox row sent once and released.
            assert session.scalar(select(func.count()).select_from(OutboxMessage)) == expected_mail
            assert session.scalar(select(func.count()).select_from(OutboxMessage).where(
                (OutboxMessage.status != "sent") | OutboxMessage.claimed_until.is_not(None))) == 0
    finally:
        engine.dispose()

    received = smtp_receiver.messages
    # No mail sent twice: each (Message-ID, recipient) arrived once.
    deliveries = Counter((m.message["Message-ID"], rcpt) for m in received for rcpt in m.rcpt_tos)
    twice = {key: n for key, n in deliveries.items() if n > 1}
    assert not twice, f"{len(twice)} mails delivered more than once"
    assert len(received) == expected_mail
    # One acknowledgement per reporter, none twice.
    for sender in senders:
        assert len(smtp_receiver.to(sender)) == 1, sender
    # Each member got exactly one copy of each case.
    for _, member, _, _ in MEMBERS:
        refs = Counter(REF.search(str(m.message["Subject"])).group(1) for m in smtp_receiver.to(member))
        assert len(refs) == REPORTS and set(refs.values()) == {1}, member
    # The mailbox is tidy: every report moved to Processed, once.
    assert harness.folder_count("INBOX") == 0
    processed = [m for m in dovecot.folder_messages(harness.user, "Processed")]
    assert len(processed) == REPORTS
    assert len({re.search(rb"(?im)^Message-ID:\s*(\S+)", raw).group(1) for raw in processed}) == REPORTS
    assert harness.folder_count("Quarantine") == 0


# ----- SQLite: one daemon only -----------------------------------------------------------------


def test_second_daemon_on_the_same_sqlite_database_refuses_to_start(dovecot, smtp_receiver, children, make_harness):
    url = f"sqlite:///{tempfile.mkdtemp(prefix='ci-db-')}/cases.db"
    harness = make_harness(url)
    config = harness.config_path
    upgrade(config)
    first = Daemon(config, "run", name="a")
    children.append(first)
    assert wait_until(first.running, 20), first.log()

    second = Daemon(config, "run", name="b")
    children.append(second)
    assert second.wait(20) == 1
    err = second.log()
    assert "another conduct-inbox daemon is already running on this SQLite database" in err, err
    assert "Traceback" not in err
    assert first.proc.poll() is None  # the first one is unharmed

    harness.deliver(report(sender="after@example.net"))
    assert wait_until(lambda: len(smtp_receiver.to("after@example.net")) == 1, 15), first.log()
    assert first.terminate() == 0, first.log()

    # Once the first has stopped, the lock is free again.
    again = Daemon(config, "run", "--once", name="c")
    children.append(again)
    assert again.wait(30) == 0, again.log()


# ----- the same races, interleaved by hand (two daemons in this process, one PostgreSQL database) --


class AlwaysTimesOut(InlineParser):
    """A parser that always hits the time limit (a message that hangs the real parser)."""

    def __call__(self, raw: bytes):  # type: ignore[no-untyped-def]
        raise ParseTimeout()


def set_intake(harness: Harness, **values: int) -> None:
    """Set [intake] keys in the harness config file."""
    path = harness.config_path
    lines = "".join(f"{key} = {value}\n" for key, value in values.items())
    path.write_text(path.read_text().replace("[intake]\n", f"[intake]\n{lines}", 1))


def migrate(url: str) -> None:
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()


def two_apps(harness: Harness, parser: Callable[[], InlineParser] = InlineParser) -> tuple[App, App]:
    migrate(harness.database_url)
    apps = tuple(build_app(harness.settings(), clock=harness.clock, parser=parser()) for _ in range(2))
    harness.apps.extend(apps)
    return apps  # type: ignore[return-value]


def blocked_on_a_lock(url: str) -> Callable[[], bool]:
    """True once some session of this database waits for a row lock."""
    engine = create_engine(url, poolclass=NullPool)  # nothing left connected afterwards

    def check() -> bool:
        with engine.connect() as conn:
            return bool(conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")))
    return check


def test_first_batches_of_two_daemons_recorded_at_once_are_not_sent_again(dovecot, smtp_receiver, postgres_url, make_harness):
    harness = make_harness(postgres_url)
    a, b = two_apps(harness)
    harness.deliver(report(sender="first@example.net"))
    assert a.intake.poll_once().processed == 1  # an acknowledgement and three copies wait
    a.dispatcher.batch_size = b.dispatcher.batch_size = 2  # each daemon takes half
    now = harness.clock()
    original = a.dispatcher._record_service_state

    def meanwhile_b_flushes(session, outage, at):  # type: ignore[no-untyped-def]
        original(session, outage, at)  # A found no "smtp" state row and adds one ...
        thread = threading.Thread(target=lambda: asyncio.run(b.dispatcher.flush_once(now)))
        thread.start()  # ... while B sends its half and records its own first state row
        thread.join(30)

    a.dispatcher._record_service_state = meanwhile_b_flushes  # type: ignore[method-assign]
    try:
        asyncio.run(a.dispatcher.flush_once(now))
    except IntegrityError:
        pass  # what the daemon does with a failed job: log it, run again at the next tick
    a.dispatcher._record_service_state = original  # type: ignore[method-assign]
    assert len(smtp_receiver.messages) == 4  # everything went out once

    # Later (past the 10-minute claim) both daemons flush again: nothing is due any more.
    later = now + timedelta(minutes=11)
    asyncio.run(a.dispatcher.flush_all(later))
    asyncio.run(b.dispatcher.flush_all(later))
    deliveries = Counter((m.message["Message-ID"], rcpt) for m in smtp_receiver.messages for rcpt in m.rcpt_tos)
    assert len(deliveries) == 4 and set(deliveries.values()) == {1}, deliveries
    with a.sessions() as session:
        assert set(session.scalars(select(OutboxMessage.status)).all()) == {"sent"}


def test_a_message_is_quarantined_only_after_max_attempts(dovecot, smtp_receiver, postgres_url, make_harness):
    harness = make_harness(postgres_url)
    migrate(harness.database_url)
    app = build_app(harness.settings(), clock=harness.clock, parser=AlwaysTimesOut())
    harness.apps.append(app)
    harness.deliver(report(sender="hangs@example.net"))
    for attempt in (1, 2):  # max_attempts is 3
        stats = app.intake.poll_once()
        assert (stats.failed, stats.quarantined) == (1, 0), f"quarantined at attempt {attempt}"
    assert app.intake.poll_once().quarantined == 1
    with app.sessions() as session:
        assert session.scalars(select(InboundMessage.attempts)).one() == 3
    assert harness.folder_count("Quarantine") == 1


def test_a_report_the_other_daemon_just_processed_is_not_quarantined(dovecot, smtp_receiver, postgres_url, make_harness):
    harness = make_harness(postgres_url)
    set_intake(harness, max_attempts=1)  # no retries: B's attempt after A's is one too many
    a, b = two_apps(harness)
    harness.deliver(report(sender="raced@example.net"))
    original = a.inbound.apply
    blocked = blocked_on_a_lock(postgres_url)
    errors: list[Exception] = []

    def b_polls() -> None:
        try:
            b.intake.poll_once()
        except MailboxUnavailable as exc:  # e.g. its MOVE of a message A moved already
            errors.append(exc)

    thread = threading.Thread(target=b_polls)

    def apply_while_b_polls(session, row, parsed, result, now):  # type: ignore[no-untyped-def]
        outcome = original(session, row, parsed, result, now)
        thread.start()  # B polls while A still holds the row (its transaction is open)
        assert wait_until(blocked, 10, step=0.02), "B never waited for A's row lock"
        return outcome

    a.inbound.apply = apply_while_b_polls  # type: ignore[method-assign]
    assert a.intake.poll_once().processed == 1  # A opened the case
    thread.join(30)
    with a.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 1
        row = session.scalars(select(InboundMessage)).one()
        assert row.status == "processed", f"{row.status} after {row.attempts} attempts ({row.error})"
        assert session.scalar(select(func.count()).select_from(Quarantine)) == 0
        # The committee is not told that a report it has as a case could not be processed.
        assert session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "alert")) == 0


def test_the_daemon_that_did_not_process_a_report_does_not_move_it(dovecot, smtp_receiver, postgres_url, make_harness):
    harness = make_harness(postgres_url)
    a, b = two_apps(harness)
    harness.deliver(report(sender="moved@example.net"))
    original = a.intake.mailbox.move

    def b_polls_first(uids, destination):  # type: ignore[no-untyped-def]
        b.intake.poll_once()  # B polls between A's commit and A's move
        return original(uids, destination)

    a.intake.mailbox.move = b_polls_first  # type: ignore[method-assign]
    try:
        stats = a.intake.poll_once()
    except MailboxUnavailable as exc:
        pytest.fail(f"the daemon that processed the report could not move it: {exc}")
    assert stats.processed == 1
    assert harness.folder_count("INBOX") == 0 and harness.folder_count("Processed") == 1
