"""Crash drill: `conduct-inbox run` killed with SIGKILL at random moments while it works through
300 reports, restarted each time, then left to finish.

Real Dovecot (IMAP), aiosmtpd and SQLite; the daemon is the real command in a child process,
each in its own process group so that whatever a killed daemon leaves behind can be found.
Afterwards: exactly one case per report, every reporter acknowledged, and at most one repeated
mail per kill (the mail in flight when it died). The SQLite instance lock must not outlive the
killed process: every restart has to come up.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from conduct_inbox.shell.app import build_app
from conduct_inbox.store import db
from conduct_inbox.store.models import Case, InboundMessage, OutboxMessage, Party
from tests.harness import MEMBERS, Harness, report
from tests.procs import proc_stats, wait_until

REPORTS = 300
KILLS = 20
SEED = 20261124
MEMBER_EMAILS = [m[1] for m in MEMBERS]


class Notify:
    """A NOTIFY_SOCKET like systemd's, to learn when a started daemon is ready."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ci-k-"))  # short: AF_UNIX paths are limited
        self.path = self.dir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            self.sock.settimeout(0.1)
            try:
                if "READY=1" in self.sock.recv(4096).decode().split("\n"):
                    return True
            except TimeoutError:
                continue
        return False

    def drain(self) -> None:
        self.sock.setblocking(False)
        try:
            while True:
                self.sock.recv(4096)
        except BlockingIOError:
            pass

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Daemons:
    """`conduct-inbox run` child processes, each leading its own process group."""

    def __init__(self, config: Path, notify: Notify) -> None:
        self.config = config
        self.notify = notify
        self.groups: list[int] = []
        self.current: subprocess.Popen[bytes] | None = None
        self.log = notify.dir / "stderr.log"

    def start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "NOTIFY_SOCKET", "WATCHDOG_"))}
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        self.notify.drain()
        # stderr to a file, not a pipe: a killed daemon's children may keep a pipe open.
        with open(self.log, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conduct_inbox.cli", "run", "--config", str(self.config)],
                env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
            )
        self.groups.append(proc.pid)
        self.current = proc
        if not self.notify.wait_ready(proc, 30):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise AssertionError(f"a restarted daemon did not come up (exit {proc.returncode}):\n{self.stderr()}")
        return proc

    def stderr(self) -> str:
        return "\n".join(ln for ln in self.log.read_text(errors="replace").splitlines() if "apscheduler" not in ln)[-3000:]

    def kill(self) -> None:
        """SIGKILL the running daemon's own process, nothing else (like the OOM killer would)."""
        proc = self.current
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.current = None

    def survivors(self) -> list[int]:
        """Processes still alive in the process groups of the daemons we started (zombies excluded)."""
        return [pid for pid, fields in proc_stats().items() if int(fields[2]) in self.groups and fields[0] not in ("Z", "X")]

    def wait_survivors_gone(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while (left := self.survivors()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def end_survivors(self) -> list[int]:
        """SIGKILL, by pid, what is left of the daemons we started; returns those pids."""
        found = self.survivors()
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return found

    def cleanup(self) -> None:
        if self.current is not None and self.current.poll() is None:
            self.current.kill()
            self.current.wait()
        self.end_survivors()


@pytest.fixture
def sqlite_db() -> Iterator[tuple[str, sessionmaker[Session]]]:
    folder = Path(tempfile.mkdtemp(prefix="ci-crash-"))
    url = f"sqlite:///{folder}/cases.db"
    engine = db.make_engine(url)
    db.upgrade(engine)
    yield url, db.session_factory(engine)
    engine.dispose()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def daemons(sqlite_db, make_harness) -> Iterator[tuple[Harness, Daemons]]:
    harness = make_harness(sqlite_db[0])
    notify = Notify()
    children = Daemons(harness.config_path, notify)
    yield harness, children
    children.cleanup()
    notify.close()


def count(sessions: sessionmaker[Session], model: type, *where: object) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)




def finish_what_a_kill_left(harness: Harness) -> None:
    """A pass eleven minutes on: messages done but not moved (intake.LEFTOVER_AFTER) and outbox
    rows a killed batch had claimed (outbox.CLAIM) are taken up after ten minutes; the clock is
    moved rather than waited for."""
    later = datetime.now(timezone.utc) + timedelta(minutes=11)
    app = build_app(harness.settings(), clock=lambda: later)
    try:
        app.intake.poll_once()
        asyncio.run(app.dispatcher.flush_all(later))
    finally:
        app.close()


class RepeatedMail(AssertionError):
    """More mails went out twice than a crash can excuse (one in flight per kill)."""




@pytest.mark.timeout(240)
def test_kill_9_twenty_times_loses_nothing_and_repeats_at_most_one_mail_per_kill(daemons, sqlite_db, dovecot, smtp_receiver):
    harness, children = daemons
    _, sessions = sqlite_db
    senders = [f"crash{i}@example.net" for i in range(REPORTS)]
    with dovecot.client(harness.user) as client:
        client.multiappend("INBOX", [report(sender=s, body=f"report number {i}") for i, s in enumerate(senders)])
    rng = random.Random(SEED)
    started = time.monotonic()
    kills = orphans = 0
    for k in range(KILLS):
        children.start()
        # A random moment during the work: kill points spread over the first 90 % of the reports
        # (so that every kill lands while there is work left, however fast the machine), each
        # moved by a few cases and a random fraction of one.
        target = (k + 1) * (REPORTS * 9 // 10) // KILLS + rng.randint(-3, 3)
        assert wait_until(lambda: count(sessions, Case) >= target, 30), f"the daemon made no progress after kill {kills}:\n{children.stderr()}"  # noqa: B023
        time.sleep(rng.uniform(0, 0.05))
        children.kill()
        kills += 1
        orphans += len(children.end_survivors())  # see test_killed_daemon_leaves_no_process_behind
    cases_at_last_kill = count(sessions, Case)
    assert cases_at_last_kill < REPORTS, "the last kill came after the work was done"

    children.start()  # the last restart: let it finish

    def done() -> bool:
        now = datetime.now(timezone.utc)
        waiting = count(sessions, OutboxMessage, OutboxMessage.status == "pending",
                        OutboxMessage.claimed_until.is_(None) | (OutboxMessage.claimed_until < now))
        return count(sessions, InboundMessage, InboundMessage.status != "pending") >= REPORTS and waiting == 0

    assert wait_until(done, 120, step=0.2), "the restarted daemon did not finish the work"
    assert children.current is not None
    children.current.send_signal(signal.SIGTERM)
    assert children.current.wait(timeout=30) == 0, children.stderr()
    children.current = None
    finish_what_a_kill_left(harness)
    elapsed = time.monotonic() - started

    mails = smtp_receiver.messages
    per_copy = Counter((m.rcpt_tos, m.message["Message-ID"]) for m in mails)
    duplicates = sum(n - 1 for n in per_copy.values())
    print(f"\ncrash drill: {REPORTS} reports, {kills} kills ({cases_at_last_kill} cases by the last one), "
          f"{len(mails)} mails received, {duplicates} sent twice, {orphans} leftover processes ended right after a kill, {elapsed:.1f}s")

    with sessions() as session:
        statuses = Counter(session.scalars(select(InboundMessage.status)).all())
        assert statuses == {"processed": REPORTS}, statuses  # nothing quarantined, nothing left
        reporters = session.scalars(
            select(Party.address).join(Case, Case.id == Party.case_id).where(Party.role == "reporter")).all()
        assert sorted(reporters) == sorted(senders)  # one case per report, none twice
        outbox = Counter(session.scalars(select(OutboxMessage.status)).all())
        assert outbox == {"sent": REPORTS * (1 + len(MEMBERS))}, outbox
    for sender in senders:
        assert len({m.message["Message-ID"] for m in smtp_receiver.to(sender)}) == 1, sender  # one acknowledgement
    for member in MEMBER_EMAILS:
        assert len({m.message["Message-ID"] for m in smtp_receiver.to(member)}) == REPORTS
    assert harness.folder_count("INBOX") == 0 and harness.folder_count("Processed") == REPORTS
    if duplicates > kills:
        raise RepeatedMail(f"{duplicates} mails sent twice after {kills} kills")


@pytest.mark.timeout(60)
def test_kill_during_an_smtp_batch_repeats_only_the_mail_in_flight(daemons, sqlite_db, smtp_receiver):
    harness, children = daemons
    _, sessions = sqlite_db
    for i in range(5):
        harness.deliver(report(sender=f"batch{i}@example.net"))
    app = build_app(harness.settings())  # the real clock, as the daemon's
    app.intake.poll_once()  # intake only: all 20 mails wait in the outbox for one batch
    app.close()
    assert count(sessions, OutboxMessage, OutboxMessage.status == "pending") == 20

    holding, release = threading.Event(), threading.Event()
    accept = smtp_receiver._record

    def hold_the_sixth(record) -> None:  # runs in the receiver's thread, before it answers 250
        accept(record)
        if len(smtp_receiver.messages) == 6:
            holding.set()
            release.wait(20)

    smtp_receiver._record = hold_the_sixth
    try:
        children.start()
        assert holding.wait(20), "the daemon did not send"
        children.kill()  # five mails delivered and answered, the sixth delivered but not answered
    finally:
        release.set()
    children.end_survivors()
    finish_what_a_kill_left(harness)

    assert count(sessions, OutboxMessage, OutboxMessage.status == "sent") == 20
    per_copy = Counter((m.rcpt_tos, m.message["Message-ID"]) for m in smtp_receiver.messages)
    assert len(per_copy) == 20
    duplicates = sum(n - 1 for n in per_copy.values())
    if duplicates > 1:
        raise RepeatedMail(f"{duplicates} mails sent twice after one kill")


@pytest.mark.timeout(60)
def test_report_interrupted_by_two_crashes_is_still_processed(daemons, sqlite_db, dovecot, smtp_receiver):
    """max_attempts = 3: two attempts cut short by a crash leave the third to run the message."""
    harness, children = daemons
    _, sessions = sqlite_db
    harness.deliver(report(sender="twice@example.net"))
    for attempt in (1, 2):
        children.start()
        # Killed while the first message is being parsed (the parser worker is still starting).
        assert wait_until(lambda: count(sessions, InboundMessage, InboundMessage.attempts >= attempt) == 1, 10)  # noqa: B023
        children.kill()
        children.end_survivors()
        assert count(sessions, Case) == 0, "the report was finished before the kill: drill inconclusive"
    children.start()
    assert wait_until(lambda: count(sessions, InboundMessage, InboundMessage.status != "pending") == 1, 20)
    assert wait_until(lambda: bool(smtp_receiver.messages), 15)
    with sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        assert (row.status, row.attempts) == ("processed", 3), (row.status, row.attempts, row.error)
    assert count(sessions, Case) == 1
    assert wait_until(lambda: len(smtp_receiver.to("twice@example.net")) == 1, 15)


@pytest.mark.timeout(60)
def test_killed_daemon_leaves_no_process_behind(daemons, sqlite_db, dovecot):
    harness, children = daemons
    _, sessions = sqlite_db
    for i in range(3):
        harness.deliver(report(sender=f"orphan{i}@example.net"))
    children.start()
    assert wait_until(lambda: count(sessions, Case) >= 1, 20)  # the parser worker is running
    children.kill()
    left = children.wait_survivors_gone(3)
    assert left == [], f"{len(left)} processes of the killed daemon still run 3 s later"
