"""The outbox dispatcher in a process of its own, started and kicked by the daemon.

Intake and dispatch meet only in the database (the outbox is transactional), and both are busy
Python: in one process they take turns at the interpreter lock, and each SMTP round trip or
commit waits for the other's turn to end. In its own process the dispatcher sends while the
intake applies. What it sends, how it records each mail, and its outage handling are exactly
`outbox.Dispatcher`'s; only where it runs differs.

The daemon (`DispatchWorker`) sends "flush" when it has committed new mail and "stop" when it
stops; the worker also flushes every `FLUSH_SECONDS` on its own, and answers each flush with its
`outbox.FlushReport` (counts and the outage reason, no addresses). If the daemon dies the worker
ends its current batch (the unsent rows are released at once, not after the claim runs out) and
exits.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Literal

from conduct_inbox.shell.engines import cipher_for
from conduct_inbox.store.outbox import FlushReport

log = logging.getLogger(__name__)

FLUSH_SECONDS = 10
#: How often the worker checks that the daemon is still there; once it is gone, the batch under
#: way may take this long beyond the SMTP timeout before the worker ends regardless.
PARENT_CHECK_SECONDS = 0.5
ORPHAN_GRACE_SECONDS = 5.0


# ----- the worker process -----------------------------------------------------------------------


def _watch_parent(parent: int, orphaned: threading.Event, grace: float) -> None:
    """Tell the loop when the daemon is gone (it ends after the batch under way); end the
    process if that takes longer than `grace`."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    orphaned.set()
    time.sleep(grace)
    os._exit(0)


def serve(settings: Any, conn: Connection, log_level: int) -> None:
    """The worker's main: build a dispatcher from `settings`, then serve kicks."""
    # Ctrl-C reaches the whole process group and systemd's stop every process of the service: the
    # daemon decides when we stop ("stop", or its own end), so that no batch is cut off mid-mail.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from conduct_inbox.shell.logsetup import configure

    configure(log_level <= logging.DEBUG, getattr(getattr(settings, "log", None), "format", "text"))
    orphaned = threading.Event()
    grace = settings.smtp.timeout_seconds + ORPHAN_GRACE_SECONDS
    threading.Thread(target=_watch_parent, args=(os.getppid(), orphaned, grace), name="parent-watch", daemon=True).start()

    from conduct_inbox.shell.components import make_context, make_dispatcher
    from conduct_inbox.store import db

    engine = db.make_engine(settings.database.url, cipher_for(settings), crash_safe_only=True)
    dispatcher = make_dispatcher(settings, engine, make_context(settings))
    conn.send("ready")
    try:
        asyncio.run(_serve(dispatcher, conn, orphaned))
    finally:
        dispatcher.close()
        engine.dispose()
        conn.close()


async def _serve(dispatcher: Any, conn: Connection, orphaned: threading.Event) -> None:
    from datetime import datetime, timezone

    loop = asyncio.get_running_loop()
    kicked = asyncio.Event()
    reloaded: list[Any] = []  # settings from a reload, applied between batches
    stopping = False
    started = False  # nothing is sent before the daemon's first kick (it may yet refuse to run)

    def on_message() -> None:
        nonlocal stopping, started
        try:
            while conn.poll():
                item = conn.recv()
                if isinstance(item, tuple) and item[:1] == ("settings",):
                    reloaded.append(item[1])
                    continue
                if item == "stop":
                    stopping = True
                started = True
                kicked.set()
        except (EOFError, OSError):  # the daemon is gone
            stopping = True
            kicked.set()

    async def notice_orphaned() -> None:
        while not orphaned.is_set():
            await asyncio.sleep(PARENT_CHECK_SECONDS)
        kicked.set()  # wake the loop: it ends (after the batch under way, if any)

    watch = asyncio.create_task(notice_orphaned())
    loop.add_reader(conn.fileno(), on_message)
    while not stopping and not orphaned.is_set():
        try:
            await asyncio.wait_for(kicked.wait(), FLUSH_SECONDS if started else None)
        except TimeoutError:
            pass
        kicked.clear()
        if stopping or orphaned.is_set():
            break
        if reloaded:
            from conduct_inbox.shell.components import delivery_hooks, make_context, make_token_source

            make_token_source(reloaded[-1])  # a new refresh token or client secret applies
            # the roster told of delivery failures, and the From of our mail, as reloaded
            dispatcher.sender, dispatcher.on_failure = delivery_hooks(make_context(reloaded[-1]))
            reloaded.clear()
        try:
            report = await dispatcher.flush_due(lambda: datetime.now(timezone.utc), lambda: stopping or orphaned.is_set())
        except Exception as exc:  # a database outage, say: try again at the next kick or tick
            from conduct_inbox.errors import where

            log.error("outbox flush failed (%s); it runs again at its next time", where(exc))
            continue
        try:
            conn.send(report)
        except (BrokenPipeError, OSError):
            break
    loop.remove_reader(conn.fileno())
    watch.cancel()


# ----- the daemon's side ------------------------------------------------------------------------


class DispatchWorker:
    """The daemon's handle on the worker process: start, kick, restart if it died, stop.

    With `fork_first`, the first start forks the caller, which must not have opened anything yet
    nor started threads (`conduct-inbox run` starts it first thing): the worker then shares the
    daemon's loaded code instead of loading its own (about 60 MB less). Other starts (restarts,
    from a daemon with threads and open connections that a fork would copy) run a fresh
    interpreter."""

    def __init__(self, settings: Any, log_level: int | None = None, fork_first: bool = False):
        self.settings = settings
        self.log_level = logging.getLogger().getEffectiveLevel() if log_level is None else log_level
        forkable = "fork" in multiprocessing.get_all_start_methods()
        self._first_start: Literal["fork", "spawn"] = "fork" if fork_first and forkable else "spawn"
        self._process: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def connection(self) -> Connection | None:
        return self._conn

    def start(self) -> None:
        """Start the worker process (nothing if it runs already)."""
        if self.alive():
            return
        method, self._first_start = self._first_start, "spawn"
        if self._conn is not None:  # the pipe to a worker that died
            self._conn.close()
            self._conn = None
        context = multiprocessing.get_context("fork") if method == "fork" else multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=serve, args=(self.settings, child_end, self.log_level), name="conduct-inbox-dispatch", daemon=True
        )
        if method == "fork":
            # What is loaded by now (modules, classes, settings) lives as long as the process:
            # frozen, the collector never visits it, so its pages stay shared by the two
            # processes (a collection writes to every object it looks at, copying its page).
            gc.freeze()
        process.start()
        child_end.close()
        self._process, self._conn = process, parent_end

    def wait_ready(self, timeout: float = 60) -> bool:
        """Wait until the worker has built its dispatcher (start-up imports take a moment)."""
        conn = self._conn
        deadline = time.monotonic() + timeout
        while conn is not None and self.alive() and time.monotonic() < deadline:
            if conn.poll(0.05):
                if conn.recv() == "ready":  # the first thing the worker sends
                    return True
        return False

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def kick(self) -> None:
        """Ask for a flush now; restart the worker first if it died."""
        with self._lock:
            if not self.alive():
                if self._process is not None:
                    log.warning("the dispatch worker ended (exit %s); starting it again", self._process.exitcode)
                self.start()
            assert self._conn is not None
            try:
                self._conn.send("flush")
            except (BrokenPipeError, OSError):
                pass  # it is ending; the next kick restarts it

    def reconfigure(self, settings: Any) -> None:
        """Reloaded settings: the worker applies them before its next batch (and a restarted
        worker starts with them)."""
        with self._lock:
            self.settings = settings
            if self._conn is not None and self.alive():
                try:
                    self._conn.send(("settings", settings))
                except (BrokenPipeError, OSError):
                    pass  # it is ending; a restart reads self.settings

    def reports(self) -> list[FlushReport]:
        """The flush reports the worker sent since the last call (never blocks)."""
        found: list[FlushReport] = []
        conn = self._conn
        try:
            while conn is not None and conn.poll():
                item = conn.recv()
                if isinstance(item, FlushReport):
                    found.append(item)
        except (EOFError, OSError):
            pass
        return found

    def stop(self, timeout: float | None = None) -> None:
        """Let the worker finish its batch and exit; kill it if it does not."""
        with self._lock:
            process, conn = self._process, self._conn
            self._process = self._conn = None
        if process is None:
            return
        if conn is not None:
            try:
                conn.send("stop")
            except (BrokenPipeError, OSError):
                pass
        # Its batch under way ends first: as long as an SMTP timeout, and a little more.
        process.join(timeout if timeout is not None else self.settings.smtp.timeout_seconds + ORPHAN_GRACE_SECONDS)
        if process.is_alive():
            log.warning("the dispatch worker did not stop in time; ending it")
            process.kill()
            process.join(5)
        if conn is not None:
            conn.close()
