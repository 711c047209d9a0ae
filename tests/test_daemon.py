"""The long-running daemon: new mail over IMAP IDLE, graceful SIGTERM, and systemd notifications.

Real Dovecot (LMTP delivery, IDLE), aiosmtpd and SQLite/PostgreSQL; the SIGTERM and sd_notify
tests run `conduct-inbox run` as a child process and stop it themselves.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conduct_inbox.shell.daemon import Daemon
from conduct_inbox.shell.wiring import build_app
from conduct_inbox.store import db
from conduct_inbox.store.models import Case, InboundMessage, Party
from tests.harness import Harness, report

REPORTS = 20


def set_mailbox(harness: Harness, **values: object) -> None:
    """Change [mailbox] keys in the harness config file."""
    path = harness.config_path
    text = path.read_text()
    for key, value in values.items():
        rendered = str(value).lower() if isinstance(value, bool) else str(value)
        lines = [ln for ln in text.split("\n") if not ln.startswith(f"{key} = ")]
        text = "\n".join(lines).replace("[mailbox]\n", f"[mailbox]\n{key} = {rendered}\n", 1)
    path.write_text(text)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_idle_brings_new_mail_in_at_once(harness, dovecot, smtp_receiver):
    set_mailbox(harness, poll_seconds=300, idle=True)  # only IDLE can notice the second report
    holder: dict[str, Daemon] = {}
    app = build_app(harness.settings(), on_commit=lambda: holder["daemon"].kick_flush())
    harness.apps.append(app)
    daemon = holder["daemon"] = Daemon(app, poll_seconds=300)
    harness.deliver(report(sender="first@example.net"))  # taken by the poll at start (warms the parser)

    async def scenario() -> float:
        running = asyncio.create_task(daemon.run())
        try:
            assert await asyncio.to_thread(wait_until, lambda: smtp_receiver.to("first@example.net"), 15)
            await asyncio.sleep(0.3)  # the IDLE thread is connected and idling by now
            started = time.monotonic()
            await asyncio.to_thread(dovecot.deliver_lmtp, harness.user, report(sender="second@example.net"))
            arrived = await asyncio.to_thread(wait_until, lambda: smtp_receiver.to("second@example.net"), 5)
            latency = time.monotonic() - started
            assert arrived, "the second report was not acknowledged: IDLE did not trigger a poll"
        finally:
            daemon.request_stop()
            stopping = time.monotonic()
            await asyncio.wait_for(running, 10)
            assert time.monotonic() - stopping < 5
        return latency

    latency = asyncio.run(scenario())
    assert latency <= 1.5, f"acknowledgement took {latency:.2f}s after delivery"
    assert not any(t.name == "conduct-inbox-idle" for t in threading.enumerate())
    assert harness.folder_count("INBOX") == 0


# ----- the real command as a child process ------------------------------------------------------


class Notifications:
    """A NOTIFY_SOCKET like systemd's: an AF_UNIX datagram socket that collects what arrives."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ci-n-"))  # short: AF_UNIX paths are limited
        self.path = self.dir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.received: list[str] = []

    def wait_for(self, line: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not any(line in msg.split("\n") for msg in self.received):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return False
        return True

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
        self.dir.rmdir()


@pytest.fixture
def notify() -> Iterator[Notifications]:
    n = Notifications()
    yield n
    n.close()


def conduct_inbox(config: Path, *args: str, notify_socket: Path | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = str(notify_socket)
    return subprocess.Popen(
        [sys.executable, "-m", "conduct_inbox.cli", *args, "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 20) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"conduct-inbox did not exit in {timeout}s:\n{err.decode(errors='replace')}") from None
    return proc.returncode, err.decode(errors="replace")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Child processes a test starts; any still running at the end are killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sigterm_mid_intake_loses_and_repeats_nothing(harness, smtp_receiver, notify, started, database):
    set_mailbox(harness, poll_seconds=1)
    proc = conduct_inbox(harness.config_path, "run", notify_socket=notify.path)
    started.append(proc)
    assert notify.wait_for("READY=1", 15), finish(proc, 5)[1]
    senders = [f"r{i}@example.net" for i in range(REPORTS)]
    for sender in senders:
        harness.deliver(report(sender=sender, body=f"report from {sender}"))
    wait_until(lambda: len(smtp_receiver.messages) > 0, 5)  # stop it in the middle of the work
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err
    assert notify.wait_for("STOPPING=1", 1)

    again = conduct_inbox(harness.config_path, "run", "--once")
    started.append(again)
    code, err = finish(again)
    assert code == 0, err

    with database.sessions() as session:
        reporters = session.scalars(
            select(Party.address).join(Case, Case.id == Party.case_id).where(Party.role == "reporter")
        ).all()
        assert sorted(reporters) == sorted(senders)  # one case per report, none twice
        assert session.scalar(select(func.count()).select_from(Case)) == REPORTS
        assert session.scalar(
            select(func.count()).select_from(InboundMessage).where(InboundMessage.status != "processed")
        ) == 0
    for sender in senders:
        assert len(smtp_receiver.to(sender)) == 1, sender  # exactly one acknowledgement each
    assert harness.folder_count("INBOX") == 0 and harness.folder_count("Processed") == REPORTS


def test_tells_systemd_ready_and_stopping(dovecot, smtp_receiver, notify, started):
    url = f"sqlite:///{tempfile.mkdtemp(prefix='ci-db-')}/cases.db"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    harness = Harness(dovecot, smtp_receiver, url, dovecot.new_user())
    proc = conduct_inbox(harness.config_path, "run", notify_socket=notify.path)
    started.append(proc)
    assert notify.wait_for("READY=1", 15), finish(proc, 5)[1]
    assert not any("STOPPING=1" in m for m in notify.received)
    proc.send_signal(signal.SIGTERM)
    assert notify.wait_for("STOPPING=1", 10)
    code, err = finish(proc)
    assert code == 0, err
