"""Outage drills: the SMTP receiver, the IMAP server and PostgreSQL go away in the middle of a
batch while the daemon runs; it keeps running, reconnects, and ends with every report processed
and acknowledged exactly once.

The daemon runs in this process (its real scheduler, IDLE thread, worker parser and network
clients) against real servers on loopback. The PostgreSQL drills use a private cluster
(tests/fixtures/pg_cluster.py), never the shared server. The outbox flush timer is shortened to
one second so that the test does not wait ten; clocks are only moved, never slept through.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from conduct_inbox.shell import daemon as daemon_module
from conduct_inbox.shell.app import App, build_app
from conduct_inbox.shell.daemon import Daemon
from conduct_inbox.store import db
from conduct_inbox.store.models import Case, InboundMessage, OutboxMessage, Quarantine, ServiceState
from tests.fixtures.pg_cluster import PgCluster
from tests.harness import MEMBERS, Harness, report
from tests.procs import wait_until

MEMBER_EMAILS = [m[1] for m in MEMBERS]


class MovableClock:
    """The real time plus an offset the test can move forward (to let a claim expire)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


class LogWatch(logging.Handler):
    """Notices a log line of ours starting with `prefix` (warnings and errors only)."""

    def __init__(self, prefix: str) -> None:
        super().__init__(logging.WARNING)
        self.prefix = prefix
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.prefix):
            self.seen.set()


@pytest.fixture
def log_watch() -> Iterator[Callable[[str], LogWatch]]:
    added: list[LogWatch] = []

    def watch(prefix: str) -> LogWatch:
        handler = LogWatch(prefix)
        logging.getLogger("conduct_inbox").addHandler(handler)
        added.append(handler)
        return handler

    yield watch
    for handler in added:
        logging.getLogger("conduct_inbox").removeHandler(handler)




def count(app: App, model: type, *where: object) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def count_or_none(app: App, model: type, *where: object) -> int | None:
    """count(), or None while the database cannot be reached."""
    try:
        return count(app, model, *where)
    except Exception:
        return None


@pytest.fixture(autouse=True)
def quick_flush_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_module, "FLUSH_SECONDS", 1)


def make_daemon(harness: Harness, clock: MovableClock, after_commit: Callable[[int], None] | None = None) -> tuple[App, Daemon]:
    """An in-process daemon; `after_commit(n)` runs in the intake thread after its n-th commit."""
    commits = iter(range(1, 1_000_000))

    def on_commit() -> None:
        if after_commit is not None:
            after_commit(next(commits))

    app = build_app(harness.settings(), clock=clock, on_commit=on_commit)
    harness.apps.append(app)
    daemon = Daemon(app, poll_seconds=1)  # it kicks its flush after each commit, after on_commit
    return app, daemon


def run_daemon(daemon: Daemon, scenario: Callable[[], None]) -> None:
    """Run the daemon while `scenario` runs in a thread; the daemon must still be running at its end."""

    async def main() -> None:
        running = asyncio.create_task(daemon.run())
        try:
            await asyncio.to_thread(scenario)
            assert not running.done(), "the daemon stopped during the outage"
        finally:
            daemon.request_stop()
            await asyncio.wait_for(running, 30)

    asyncio.run(main())


def deliver_reports(harness: Harness, count_: int, prefix: str) -> list[str]:
    senders = [f"{prefix}{i}@example.net" for i in range(count_)]
    with harness.dovecot.client(harness.user) as client:
        client.multiappend("INBOX", [report(sender=s, body=f"report {i} of the drill") for i, s in enumerate(senders)])
    return senders


def intake_done(app: App, reports: int) -> bool:
    done = count_or_none(app, InboundMessage, InboundMessage.status != "pending")
    return done is not None and done >= reports


def ten_minutes_later(app: App, harness: Harness, clock: MovableClock, mails: int) -> None:
    """Messages done but not moved when the outage hit (intake.LEFTOVER_AFTER) and outbox rows a
    cut-short batch had claimed (outbox.CLAIM) are taken up after ten minutes: move the clock."""
    clock.offset = timedelta(minutes=11)
    assert wait_until(lambda: harness.folder_count("INBOX") == 0, 20), "messages left in INBOX"
    assert wait_until(lambda: outbox_done(app, mails), 20), "mail not sent"


def outbox_done(app: App, expected: int) -> bool:
    return count_or_none(app, OutboxMessage, OutboxMessage.status == "sent") == expected


def assert_each_once(app: App, harness: Harness, senders: list[str]) -> None:
    """One case per report, one acknowledgement per reporter and one copy per member, each sent once."""
    receiver = harness.receiver
    with app.sessions() as session:
        statuses = Counter(session.scalars(select(InboundMessage.status)).all())
        outbox = Counter(session.scalars(select(OutboxMessage.status)).all())
    assert statuses == {"processed": len(senders)}, statuses
    assert count(app, Case) == len(senders)
    assert count(app, Quarantine) == 0
    assert outbox == {"sent": len(senders) * (1 + len(MEMBERS))}, outbox
    for sender in senders:
        assert len(receiver.to(sender)) == 1, f"{sender}: {len(receiver.to(sender))} acknowledgements"
    for member in MEMBER_EMAILS:
        copies = Counter(m.message["Message-ID"] for m in receiver.to(member))
        assert len(copies) == len(senders) and set(copies.values()) == {1}, member
    assert harness.folder_count("INBOX") == 0 and harness.folder_count("Processed") == len(senders)
    assert harness.folder_count("Quarantine") == 0


#: Tests here stop and restart Dovecot: their harness uses `dovecot_running`, which starts it again after the test.
pytestmark = pytest.mark.harness(dovecot="dovecot_running")


# ----- SMTP ------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_smtp_receiver_down_for_the_first_half_of_a_batch(harness, smtp_receiver, log_watch):
    reports = 16
    smtp_receiver.down()
    senders = deliver_reports(harness, reports, "smtp")
    clock = MovableClock()

    received_while_down: list[int] = []
    outage = log_watch("outgoing mail outage")

    def receiver_back_at_half(commit: int) -> None:
        if commit == reports // 2:
            # Hold the intake here until the dispatcher (kicked by each commit) has met the outage.
            outage.seen.wait(20)
            received_while_down.append(len(smtp_receiver.messages))
            smtp_receiver.up()  # again, on the same port

    app, daemon = make_daemon(harness, clock, receiver_back_at_half)

    def scenario() -> None:
        assert wait_until(lambda: intake_done(app, reports), 30), "intake stalled"
        assert wait_until(lambda: outbox_done(app, reports * (1 + len(MEMBERS))), 30), "mail not sent after the outage"
        ten_minutes_later(app, harness, clock, reports * (1 + len(MEMBERS)))

    run_daemon(daemon, scenario)
    assert received_while_down == [0] and outage.seen.is_set()
    assert_each_once(app, harness, senders)
    with app.sessions() as session:
        state = session.get(ServiceState, "smtp")
        assert state is not None and state.outage_since is None and state.failures == 0


# ----- IMAP ------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_dovecot_restarted_mid_batch(harness, dovecot_running, smtp_receiver, log_watch):
    reports = 30
    senders = deliver_reports(harness, reports, "imap")
    clock = MovableClock()

    def restart_dovecot_at_eight(commit: int) -> None:
        if commit == 8:  # in the middle of the fetched chunk, before its MOVE
            dovecot_running.restart()  # every IMAP connection (intake and IDLE) is cut

    unavailable = log_watch("mailbox unavailable")
    app, daemon = make_daemon(harness, clock, restart_dovecot_at_eight)

    def scenario() -> None:
        assert unavailable.seen.wait(30), "the intake did not meet the outage"
        assert wait_until(lambda: intake_done(app, reports), 40), "intake did not resume"
        ten_minutes_later(app, harness, clock, reports * (1 + len(MEMBERS)))

    run_daemon(daemon, scenario)
    assert_each_once(app, harness, senders)


# ----- PostgreSQL (a private cluster) ---------------------------------------------------------


@pytest.fixture
def pg_harness(pg_cluster: PgCluster, make_harness) -> Harness:
    url = pg_cluster.create_database()
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    return make_harness(url)


@pytest.mark.timeout(90)
def test_postgres_restarted_mid_intake(pg_harness, pg_cluster, smtp_receiver, log_watch):
    harness = pg_harness
    reports = 30
    # Outgoing mail is held back while PostgreSQL is down, so the outage meets the intake
    # (the next test has it meet a mail batch).
    smtp_receiver.down()
    senders = deliver_reports(harness, reports, "pg")
    clock = MovableClock()
    poll_failed = log_watch("job poll failed")

    def stop_postgres_at_eight(commit: int) -> None:
        if commit == 8:  # every session is ended; the intake's next statement fails
            pg_cluster.stop()

    app, daemon = make_daemon(harness, clock, stop_postgres_at_eight)

    def scenario() -> None:
        assert poll_failed.seen.wait(30), "the intake did not meet the outage"
        assert (count_or_none(app, Case) or 0) < reports  # down in the middle of the batch
        pg_cluster.start()
        assert wait_until(lambda: intake_done(app, reports), 40), "intake did not resume"
        smtp_receiver.up()
        ten_minutes_later(app, harness, clock, reports * (1 + len(MEMBERS)))

    run_daemon(daemon, scenario)
    assert_each_once(app, harness, senders)


class RepeatedMail(AssertionError):
    """A mail went out twice."""


@pytest.mark.timeout(90)
def test_postgres_down_during_an_smtp_batch_sends_each_mail_once(pg_harness, pg_cluster, smtp_receiver, log_watch):
    harness = pg_harness
    senders = deliver_reports(harness, 5, "pgb")
    clock = MovableClock()
    intake = build_app(harness.settings(), clock=clock)
    intake.intake.poll_once()  # intake only: the 20 mails wait in the outbox for one batch
    assert count(intake, OutboxMessage, OutboxMessage.status == "pending") == 20
    intake.close()

    accept = smtp_receiver._record

    def stop_postgres_at_the_sixth(record) -> None:  # in the receiver's thread, before its 250
        accept(record)
        if len(smtp_receiver.messages) == 6:
            pg_cluster.stop()

    smtp_receiver._record = stop_postgres_at_the_sixth
    flush_failed = log_watch("job flush failed")
    app, daemon = make_daemon(harness, clock)

    def scenario() -> None:
        assert flush_failed.seen.wait(30), "the flush did not meet the outage"
        pg_cluster.start()
        ten_minutes_later(app, harness, clock, 20)

    run_daemon(daemon, scenario)
    twice = [k for k, n in Counter((m.rcpt_tos, m.message["Message-ID"]) for m in smtp_receiver.messages).items() if n > 1]
    if twice:
        raise RepeatedMail(f"{len(twice)} of 20 mails sent twice")
    assert_each_once(app, harness, senders)


def test_a_poll_after_the_server_cut_the_idle_connection_takes_the_mail_at_once(harness, dovecot_running, smtp_receiver):
    """Between two polls the server restarts (or a NAT drops the idle connection): the next poll
    logs in again at once and takes the report, rather than failing and waiting a poll interval."""
    from conduct_inbox.shell.daemon import run_once

    app = harness.app()
    harness.deliver(report(sender="first@example.net"))
    run_once(app)
    dovecot_running.restart()
    harness.deliver(report(sender="second@example.net"))
    stats = app.intake.poll_once()
    assert stats.processed == 1, "the poll failed on the connection the server had closed"
