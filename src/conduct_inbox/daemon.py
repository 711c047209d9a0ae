"""The long-running service: APScheduler jobs over the `*_once` passes, signals, sd_notify."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from .app import App
from .errors import MailboxUnavailable

log = logging.getLogger(__name__)

FLUSH_SECONDS = 10


def sd_notify(message: str) -> None:
    """Tell systemd about our state (Type=notify); silent when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", type(exc).__name__)


def run_once(app: App) -> int:
    """`run --once`: everything waiting in the mailbox, then the outbox, then exit. Returns an exit code."""
    code = 0
    try:
        stats = app.intake.poll_once()
        log.info("intake: %d processed, %d quarantined, %d to retry", stats.processed, stats.quarantined, stats.failed)
    except MailboxUnavailable as exc:
        log.error("mailbox unavailable: %s", exc)
        code = 1
    report = asyncio.run(app.dispatcher.flush_all(app.clock()))
    log.info("outbox: %d sent, %d failed, %d deferred", report.sent, report.failed, report.deferred)
    if report.outage:
        log.error("outgoing mail unavailable: %s", report.outage)
        code = 1
    return code


class Daemon:
    def __init__(self, app: App, poll_seconds: float, watchdog_seconds: float | None = None):
        self.app = app
        self.poll_seconds = poll_seconds
        self.watchdog_seconds = watchdog_seconds
        self._stopping = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._scheduler: AsyncIOScheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mailbox_failures = 0

    # ----- jobs -------------------------------------------------------------------------------

    async def _tracked(self, job: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await job()
        except Exception:
            log.exception("job failed; it runs again at its next time")
        finally:
            self._running.discard(task)

    async def poll(self) -> None:
        if self._stopping.is_set():
            return
        try:
            stats = await asyncio.to_thread(self.app.intake.poll_once)
            self._mailbox_failures = 0
            if stats.processed or stats.quarantined:
                sd_notify(f"STATUS=processed {stats.processed}, quarantined {stats.quarantined}")
        except MailboxUnavailable as exc:
            self._mailbox_failures += 1
            log.warning("mailbox unavailable (%d in a row): %s", self._mailbox_failures, exc)
            sd_notify("STATUS=mailbox unavailable, retrying")

    async def flush(self) -> None:
        report = await self.app.dispatcher.flush_once(self.app.clock())
        if report.outage:
            sd_notify(f"STATUS=outgoing mail outage: {report.outage}")

    def kick_flush(self) -> None:
        """Called from the intake thread right after a commit: send without waiting for the timer."""
        loop, scheduler = self._loop, self._scheduler
        if loop is None or scheduler is None:
            return
        loop.call_soon_threadsafe(self._modify_now, "flush")

    def _modify_now(self, job_id: str) -> None:
        if self._scheduler is not None and not self._stopping.is_set():
            job = self._scheduler.get_job(job_id)
            if job is not None:
                job.modify(next_run_time=datetime.now(timezone.utc))

    def _watchdog(self) -> None:
        sd_notify("WATCHDOG=1")

    # ----- lifecycle --------------------------------------------------------------------------

    def _stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing the current message")
            sd_notify("STOPPING=1")
            self.app.stop.set()
            self._stopping.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop)
        scheduler = AsyncIOScheduler(
            timezone=timezone.utc,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        self._scheduler = scheduler
        now = datetime.now(timezone.utc)
        scheduler.add_job(self._tracked, "interval", args=[self.poll], seconds=self.poll_seconds, id="poll", next_run_time=now)
        scheduler.add_job(self._tracked, "interval", args=[self.flush], seconds=FLUSH_SECONDS, id="flush", next_run_time=now)
        if self.watchdog_seconds:
            scheduler.add_job(self._watchdog, "interval", seconds=self.watchdog_seconds, id="watchdog")
        scheduler.start()
        sd_notify("READY=1\nSTATUS=running")
        log.info("conduct-inbox running (poll every %ss)", self.poll_seconds)
        await self._stopping.wait()
        scheduler.shutdown(wait=False)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        log.info("stopped")


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec (WATCHDOG_USEC), when it asked for pings."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000
