"""Builds the running service: the App (shell/app.py) and the Daemon that drives it, together.

`conduct-inbox run` starts what this returns; the parts themselves are chosen in shell/components.py.
"""

from __future__ import annotations

from sqlalchemy import Engine

from conduct_inbox.config import Settings
from conduct_inbox.shell.app import build_app
from conduct_inbox.shell.daemon import Daemon
from conduct_inbox.shell.dispatch_worker import DispatchWorker


def build_daemon(settings: Settings, engine: Engine, watchdog_seconds: float | None = None,
                 dispatch_worker: DispatchWorker | None = None) -> Daemon:
    """The App for `settings` on `engine`, and its Daemon (which sends what the intake commits
    at once: Daemon wires the App's commit hook to its flush)."""
    app = build_app(settings, engine=engine)
    try:
        return Daemon(app, settings.mailbox.poll_seconds, watchdog_seconds, dispatch_worker=dispatch_worker)
    except BaseException:
        app.close()
        raise
