"""The long-running daemon: new mail over IMAP IDLE, graceful SIGTERM, and systemd notifications.

Real Dovecot (LMTP delivery, IDLE), aiosmtpd and SQLite/PostgreSQL; the SIGTERM and sd_notify
tests run `conduct-inbox run` as a child process and stop it themselves.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import threading
import time
from collections.abc import Callable

from sqlalchemy import func, select

from conduct_inbox.shell.app import build_app
from conduct_inbox.shell.daemon import Daemon
from conduct_inbox.store import db
from conduct_inbox.store.models import Case, InboundMessage, Party
from tests.daemons import conduct_inbox, finish, set_mailbox
from tests.harness import report

REPORTS = 20


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_idle_brings_new_mail_in_at_once(harness, dovecot, smtp_receiver):
    set_mailbox(harness, poll_seconds=300, idle=True)  # only IDLE can notice the second report
    app = build_app(harness.settings())
    harness.apps.append(app)
    daemon = Daemon(app, poll_seconds=300)
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


def test_tells_systemd_ready_and_stopping(make_harness, notify, started):
    url = f"sqlite:///{tempfile.mkdtemp(prefix='ci-db-')}/cases.db"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    harness = make_harness(url)
    proc = conduct_inbox(harness.config_path, "run", notify_socket=notify.path)
    started.append(proc)
    assert notify.wait_for("READY=1", 15), finish(proc, 5)[1]
    assert not any("STOPPING=1" in m for m in notify.received)
    proc.send_signal(signal.SIGTERM)
    assert notify.wait_for("STOPPING=1", 10)
    code, err = finish(proc)
    assert code == 0, err
