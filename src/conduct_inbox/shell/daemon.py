"""The long-running service: APScheduler jobs over the `*_once` passes, the IDLE thread, signals, sd_notify."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError

from conduct_inbox.cases import chores
from conduct_inbox.cases.deadlines import sla_policy
from conduct_inbox.cases.escalate import escalate_once
from conduct_inbox.cases.rescan import exclude_newcomers
from conduct_inbox.errors import ConfigError, MailboxUnavailable, where
from conduct_inbox.ports import Mailbox
from conduct_inbox.shell import retention
from conduct_inbox.shell.app import App
from conduct_inbox.shell.dispatch_worker import DispatchWorker

log = logging.getLogger(__name__)

FLUSH_SECONDS = 10
ESCALATE_SECONDS = 60
HOUSEKEEPING_SECONDS = 3600  # retention purge, digests, sanction reminders
#: One IDLE lasts at most this long before it is re-issued (NATs drop idle connections).
IDLE_SECONDS = 9 * 60
#: Reconnect backoff of the IDLE connection.
IDLE_BACKOFF_INITIAL = 1.0
IDLE_BACKOFF_MAX = 60.0


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
    """`run --once`: the mailbox, then due escalations, then the outbox, then exit. Returns an exit code."""
    code = 0
    try:
        stats = app.intake.poll_once()
        log.info("intake: %d processed, %d quarantined, %d to retry", stats.processed, stats.quarantined, stats.failed)
    except MailboxUnavailable as exc:
        log.error("mailbox unavailable: %s", exc)
        code = 1
    try:
        sent = escalate_once(app.sessions, app.inbound.ctx, sla_policy(app.settings), app.clock())
        log.info("escalations: %d sent", sent)
        chores.post_urgent_webhooks(app.sessions, app.settings.sla.urgent_webhook_url, app.clock())
        weekly_overview_once(app)
    except SQLAlchemyError as exc:
        log.error("escalation pass failed: %s", type(exc).__name__)
        code = 1
    try:
        report = asyncio.run(app.dispatcher.flush_all(app.clock()))
    except SQLAlchemyError as exc:
        log.error("outbox flush failed: %s", type(exc).__name__)
        return 1
    log.info("outbox: %d sent, %d failed, %d deferred", report.sent, report.failed, report.deferred)
    if report.outage:
        log.error("outgoing mail unavailable: %s", report.outage)
        code = 1
    return code


def weekly_overview_once(app: App) -> int:
    """The members' weekly overview when its hour has come this week (once, across daemons); mails queued."""
    committee = app.settings.committee
    if committee.digest != "weekly":
        return 0
    return chores.send_weekly_overview(app.sessions, app.inbound.ctx, app.clock(), committee.digest_weekday, committee.digest_hour)


def _expected_skips(record: logging.LogRecord) -> bool:
    """A tick while the job still runs is skipped by design (max_instances=1; a kick reruns it)."""
    return "maximum number of running instances" not in record.getMessage()


def housekeeping_once(app: App) -> None:
    """The hourly chores: the spam digest (daily), sanction reminders, statistics, and the retention purge
    (with its own mailbox connection, not the intake's)."""
    now = app.clock()
    chores.send_spam_digest(app.sessions, app.inbound.ctx, now)
    chores.remind_sanctions_ending(app.sessions, app.inbound.ctx, now, app.settings.sla.sanction_reminder_days)
    committee = app.settings.committee
    chores.send_statistics(app.sessions, app.inbound.ctx, committee.steering_address, committee.statistics_every_months, now)
    days = app.settings.retention.closed_case_days
    if days > 0:
        mailbox = app.open_mailbox()
        try:
            mailbox.connect()
            result = retention.purge_all(app.sessions, mailbox, app.clock(), days)
        except MailboxUnavailable as exc:
            log.warning("retention purge postponed, mailbox unavailable: %s", exc)
        else:
            if not result.plan.empty:
                retention.compact(app.engine)
        finally:
            mailbox.close()


class Daemon:
    def __init__(self, app: App, poll_seconds: float, watchdog_seconds: float | None = None, idle: bool | None = None,
                 dispatch_worker: DispatchWorker | None = None):
        self.app = app
        #: Sends the outbox from a process of its own (`conduct-inbox run`); None: in this process.
        self.dispatch_worker = dispatch_worker
        self.poll_seconds = poll_seconds
        self.watchdog_seconds = watchdog_seconds
        box = app.settings.mailbox
        #: IDLE needs an IMAP server; a Maildir (demo) is polled.
        self.idle = bool(box.idle and box.host) if idle is None else idle
        self.policy = sla_policy(app.settings)
        self._stopping = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._scheduler: AsyncIOScheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mailbox_failures = 0
        self._idle_thread: threading.Thread | None = None
        self._idle_box: Mailbox | None = None
        # What the intake just committed is sent now, not at the next flush tick (after the App's own hook).
        before = app.intake.on_commit

        def after_commit() -> None:
            before()
            self.kick_flush()

        app.intake.on_commit = after_commit
        self._idle_lock = threading.Lock()

    # ----- jobs -------------------------------------------------------------------------------

    async def _tracked(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        """Run a job; if it was asked for again while running, run it once more right after."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        self._busy.add(name)
        try:
            while True:
                self._again.discard(name)
                try:
                    await job()
                except Exception as exc:
                    log.error("job %s failed (%s); it runs again at its next time", name, where(exc))
                if name not in self._again or self._stopping.is_set():
                    break
        finally:
            self._busy.discard(name)
            self._running.discard(task)

    async def poll(self) -> None:
        if self._stopping.is_set():
            return
        try:
            stats = await asyncio.to_thread(self.app.intake.poll_once)
            self._mailbox_failures = 0
            if stats.processed or stats.quarantined:
                sd_notify(f"STATUS=processed {stats.processed}, quarantined {stats.quarantined}")
                self._run_soon("flush")
        except MailboxUnavailable as exc:
            self._mailbox_failures += 1
            log.warning("mailbox unavailable (%d in a row): %s", self._mailbox_failures, exc)
            sd_notify(f"STATUS=mailbox unavailable, retrying: {exc}")

    async def flush(self) -> None:
        """Send batches until the outbox has nothing due (a full batch means there may be more)."""
        worker = self.dispatch_worker
        if worker is not None:
            for report in worker.reports():
                if report.outage:
                    sd_notify(f"STATUS=outgoing mail outage: {report.outage}")
            if not self._stopping.is_set():
                worker.kick()
            return
        report = await self.app.dispatcher.flush_due(self.app.clock, self._stopping.is_set)
        if report.outage:
            sd_notify(f"STATUS=outgoing mail outage: {report.outage}")

    async def escalate(self) -> None:
        if self._stopping.is_set():
            return
        sent = await asyncio.to_thread(escalate_once, self.app.sessions, self.app.inbound.ctx, self.policy, self.app.clock())
        await asyncio.to_thread(chores.post_urgent_webhooks, self.app.sessions, self.app.settings.sla.urgent_webhook_url,
                                self.app.clock())
        sent += await asyncio.to_thread(weekly_overview_once, self.app)
        if sent:
            log.info("escalations: %d sent", sent)
            self._run_soon("flush")

    async def housekeeping(self) -> None:
        if self._stopping.is_set():
            return
        await asyncio.to_thread(housekeeping_once, self.app)
        self._run_soon("flush")

    def kick_flush(self) -> None:
        """Called from the intake thread right after a commit: send without waiting for the timer."""
        self._kick("flush")

    def kick_poll(self) -> None:
        """Called from the IDLE thread when mail arrived: poll now rather than at the next tick."""
        self._kick("poll")

    def _kick(self, job_id: str) -> None:
        loop, scheduler = self._loop, self._scheduler
        if loop is None or scheduler is None:
            return
        try:
            loop.call_soon_threadsafe(self._run_soon, job_id)
        except RuntimeError:
            pass  # the loop has closed: we are stopping

    def _run_soon(self, job_id: str) -> None:
        """Run a job now; if it is running, run it again once it is done (on the loop thread)."""
        if self._scheduler is None or self._stopping.is_set():
            return
        if job_id in self._busy:
            self._again.add(job_id)
            return
        job = self._scheduler.get_job(job_id)
        if job is not None:
            job.modify(next_run_time=datetime.now(timezone.utc))

    def _watchdog(self) -> None:
        sd_notify("WATCHDOG=1")

    # ----- IMAP IDLE --------------------------------------------------------------------------

    def _idle_loop(self) -> None:
        """Own connection, IDLE in a loop, poll on news; reconnect with backoff; end on stop."""
        stop = self.app.stop
        delay = IDLE_BACKOFF_INITIAL
        while not stop.is_set():
            box: Mailbox | None = None
            try:
                box = self.app.open_mailbox()
                with self._idle_lock:
                    self._idle_box = box
                if stop.is_set():
                    break
                box.connect()
                has_capability = getattr(box, "has_capability", None)
                if has_capability is not None and not has_capability("IDLE"):
                    log.info("the IMAP server has no IDLE: polling every %ss only", self.poll_seconds)
                    return
                self.kick_poll()  # anything that arrived while we were not listening
                while not stop.is_set():
                    if box.wait_for_mail(IDLE_SECONDS):
                        self.kick_poll()
                    delay = IDLE_BACKOFF_INITIAL  # the connection works
            except MailboxUnavailable as exc:
                if stop.is_set():
                    break
                log.warning("IDLE connection lost (%s); reconnecting in %.0f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, IDLE_BACKOFF_MAX)
            except Exception as exc:  # a library bug must not end new-mail notices for good
                if stop.is_set():
                    break
                log.error("IDLE failed (%s); reconnecting in %.0f s", where(exc), delay)
                stop.wait(delay)
                delay = min(delay * 2, IDLE_BACKOFF_MAX)
            finally:
                with self._idle_lock:
                    self._idle_box = None
                if box is not None:
                    box.close()

    def _start_idle(self) -> None:
        thread = threading.Thread(target=self._idle_loop, name="conduct-inbox-idle", daemon=True)
        self._idle_thread = thread
        thread.start()

    def _stop_idle(self) -> None:
        thread = self._idle_thread
        if thread is None:
            return
        with self._idle_lock:
            box = self._idle_box
        if box is not None:
            box.interrupt()
        thread.join(timeout=10)
        if thread.is_alive():
            log.warning("IDLE thread did not end in time; leaving it behind")
        self._idle_thread = None

    # ----- lifecycle --------------------------------------------------------------------------

    def _stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: finishing the current message")
            sd_notify("STOPPING=1")
            self.app.stop.set()
            self._stopping.set()

    def reload(self) -> bool:
        """SIGHUP, on the event loop: read the configuration file again. Valid: its live parts
        (reload.py) apply from the next message on; invalid: the running configuration stays and
        each problem is logged. Returns whether the new configuration applies."""
        from conduct_inbox.shell.reload import reload_settings

        if self._stopping.is_set():
            return False
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}\nSTATUS=reloading the configuration")
        try:
            try:
                reloaded = reload_settings(self.app.settings)
            except ConfigError as exc:
                for problem in exc.problems:  # one line each; they name keys, never values
                    log.error("reload refused, the running configuration stays: %s", problem)
                return False
            except Exception as exc:  # never let a reload end the daemon
                log.error("reload failed (%s); the running configuration stays", where(exc))
                return False
            settings = reloaded.settings
            self.app.reconfigure(settings)
            check_roster(self.app)
            self.policy = sla_policy(settings)
            if self.dispatch_worker is not None:
                self.dispatch_worker.reconfigure(settings)
            if reloaded.needs_restart:
                log.warning("reload: a restart is needed for changes to %s; they do not apply yet",
                            ", ".join(reloaded.needs_restart))
            roster = self.app.inbound.roster
            log.info("configuration reloaded: %d committee members, %d steering members, quorum %d",
                     len(roster.members), len(roster.steering), roster.quorum)
            return True
        finally:
            sd_notify("READY=1\nSTATUS=running")

    def request_reload(self) -> None:
        """Reload from any thread (what SIGHUP does)."""
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self.reload)
            except RuntimeError:
                pass  # stopped

    def request_stop(self) -> None:
        """Stop gracefully, from any thread (what SIGTERM does)."""
        loop = self._loop
        if loop is None:
            self.app.stop.set()
            return
        try:
            loop.call_soon_threadsafe(self._stop)
        except RuntimeError:
            pass  # already stopped

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self._stop)
        self._loop.add_signal_handler(signal.SIGHUP, self.reload)
        logging.getLogger("apscheduler.scheduler").addFilter(_expected_skips)
        scheduler = AsyncIOScheduler(
            timezone=timezone.utc,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )
        self._scheduler = scheduler
        await asyncio.to_thread(check_roster, self.app)  # before the first message is routed
        now = datetime.now(timezone.utc)
        jobs = (("poll", self.poll, self.poll_seconds), ("flush", self.flush, FLUSH_SECONDS),
                ("escalate", self.escalate, ESCALATE_SECONDS), ("housekeeping", self.housekeeping, HOUSEKEEPING_SECONDS))
        for name, job, seconds in jobs:
            # next_run_time=now: each runs at start too, which also catches up a missed tick once.
            scheduler.add_job(self._tracked, "interval", args=[name, job], seconds=seconds, id=name, next_run_time=now)
        if self.watchdog_seconds:
            scheduler.add_job(self._watchdog, "interval", seconds=self.watchdog_seconds, id="watchdog")
        if self.dispatch_worker is not None:
            self.dispatch_worker.start()
        scheduler.start()
        if self.idle:
            self._start_idle()
        sd_notify("READY=1\nSTATUS=running")
        log.info("conduct-inbox running (poll every %ss%s)", self.poll_seconds, ", IMAP IDLE" if self.idle else "")
        await self._stopping.wait()
        # Let running jobs finish (the intake stops after its current message); shutting the
        # scheduler down first would cancel them mid-way.
        scheduler.pause()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        scheduler.shutdown(wait=False)
        await asyncio.to_thread(self._stop_idle)
        if self.dispatch_worker is not None:
            await asyncio.to_thread(self.dispatch_worker.stop)
        log.info("stopped")


def check_roster(app: App) -> None:
    """People new on the roster are kept from the open cases that concern them, before any more
    mail is routed (cases/rescan.py): at start and after a reload."""
    try:
        with app.sessions() as session, session.begin():
            changed = exclude_newcomers(app.inbound.ctx, session, app.clock())
        if changed:
            log.info("roster: %d open case(s) kept from people new on the roster", changed)
    except Exception as exc:  # never let it stop the daemon; the next start or reload tries again
        log.error("roster check against the open cases failed (%s)", where(exc))


def watchdog_interval() -> float | None:
    """Half of systemd's WatchdogSec (WATCHDOG_USEC), when it asked for pings."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return None
    return int(usec) / 2_000_000
