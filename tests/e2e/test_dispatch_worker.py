"""The outbox sent from a worker process, as `conduct-inbox run` does it (real Dovecot, aiosmtpd, databases).

The crash drill (tests/drills/test_drill_crash.py) and the two-daemon test run the real command, so they
exercise the worker under kills and races; here: the daemon's handle on it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from conduct_inbox.shell.app import build_app
from conduct_inbox.shell.daemon import Daemon
from conduct_inbox.shell.dispatch_worker import DispatchWorker
from tests.harness import MEMBERS, Harness, report
from tests.procs import wait_until


def _daemon(harness: Harness) -> tuple[Daemon, DispatchWorker]:
    settings = harness.settings()
    app = build_app(settings)  # the real clock, as the worker's
    harness.apps.append(app)
    worker = DispatchWorker(settings)
    return Daemon(app, poll_seconds=1, idle=False, dispatch_worker=worker), worker


@pytest.mark.timeout(90)
def test_worker_sends_what_the_intake_commits_survives_a_crash_of_its_own_and_stops_with_the_daemon(
    harness, smtp_receiver
):
    daemon, worker = _daemon(harness)
    per_report = 1 + len(MEMBERS)

    async def scenario() -> int:
        running = asyncio.create_task(daemon.run())
        try:
            harness.deliver(report(sender="first@example.net"))
            assert await asyncio.to_thread(wait_until, lambda: len(smtp_receiver.messages) >= per_report, 30)
            first = worker._process.pid
            assert first != os.getpid()
            os.kill(first, signal.SIGKILL)  # the worker dies; the daemon must notice and start another
            await asyncio.to_thread(wait_until, lambda: not worker.alive(), 10)
            harness.deliver(report(sender="second@example.net"))
            assert await asyncio.to_thread(wait_until, lambda: len(smtp_receiver.messages) >= 2 * per_report, 30)
            assert worker.alive() and worker._process.pid != first
            return worker._process.pid
        finally:
            daemon.request_stop()
            await asyncio.wait_for(running, 40)

    pid = asyncio.run(scenario())
    assert not worker.alive()
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 5)
    assert smtp_receiver.to("first@example.net") and smtp_receiver.to("second@example.net")
    assert len(smtp_receiver.messages) == 2 * per_report  # nothing sent twice


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.timeout(60)
def test_worker_ends_by_itself_when_the_daemon_is_gone(harness):
    """A daemon killed outright: its worker notices (its parent changed) and exits within seconds."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    parent = ctx.Process(target=_start_worker_then_wait, args=(str(harness.config_path), ready), daemon=False)
    parent.start()
    worker_pid = ready.get(timeout=60)
    os.kill(parent.pid, signal.SIGKILL)
    parent.join(10)
    started = time.monotonic()
    assert wait_until(lambda: _zombie(worker_pid), 10), "the orphaned worker is still running"
    assert time.monotonic() - started < 5


def _start_worker_then_wait(config: str, ready: object) -> None:
    from conduct_inbox.config import load_settings

    worker = DispatchWorker(load_settings(config, environ={}))
    worker.start()
    worker.wait_ready(60)
    ready.put(worker._process.pid)  # type: ignore[attr-defined]
    time.sleep(120)
