"""The App: everything a daemon pass needs, built once from Settings (shell/components.py's parts)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from conduct_inbox.adapters.parsing import InlineParser, WorkerParser
from conduct_inbox.cases.inbound import Inbound
from conduct_inbox.config import Settings
from conduct_inbox.ports import Mailbox
from conduct_inbox.ports import Sender as Transport
from conduct_inbox.shell.components import delivery_hooks, make_dispatcher, make_inbound, make_mailbox, make_token_source, utcnow
from conduct_inbox.shell.engines import engine_for
from conduct_inbox.shell.intake import Intake
from conduct_inbox.store import db
from conduct_inbox.store.outbox import Dispatcher


@dataclass
class App:
    """Everything a daemon pass needs, built once."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    inbound: Inbound
    intake: Intake
    dispatcher: Dispatcher
    clock: Callable[[], datetime]
    stop: threading.Event = field(default_factory=threading.Event)
    #: The same database, committing without waiting for the disk (db.make_engine(crash_safe_only=True)).
    crash_safe_engine: Engine | None = None

    def reconfigure(self, settings: Settings) -> None:
        """Use reloaded settings (reload.merge: the parts fixed at start unchanged) from the next
        message on: new case services (roster, token checks, templates, SLA times) for the intake,
        escalations, chores and this process's dispatcher."""
        inbound = make_inbound(settings)
        make_token_source(settings)  # a new refresh token or client secret (reload.merge) applies
        self.settings, self.inbound = settings, inbound
        self.intake.use_inbound(inbound)
        self.dispatcher.sender, self.dispatcher.on_failure = delivery_hooks(inbound.ctx)

    def open_mailbox(self) -> Mailbox:
        """A new connection to the mailbox (housekeeping and the IDLE watch each use their own)."""
        return make_mailbox(self.settings)

    def close(self) -> None:
        self.intake.close()
        self.dispatcher.close()
        self.intake.parser.close()  # type: ignore[attr-defined]
        self.intake.mailbox.close()
        if self.crash_safe_engine is not None:
            self.crash_safe_engine.dispose()
        self.engine.dispose()


def build_app(
    settings: Settings,
    *,
    mailbox: Mailbox | None = None,
    transport: Transport | None = None,
    clock: Callable[[], datetime] = utcnow,
    parser: Callable[[bytes], object] | None = None,
    engine: Engine | None = None,
    on_commit: Callable[[], None] | None = None,
) -> App:
    engine = engine or engine_for(settings)
    db.check_key(engine)
    # For writes whose loss to a power cut costs a repeated attempt, never a report: the attempt
    # counter before parsing, and everything the dispatcher records (one commit per mail).
    crash_safe_engine = db.make_engine(
        engine.url.render_as_string(hide_password=False), getattr(engine.dialect, "conduct_cipher", None),
        crash_safe_only=True,
    )
    sessions = db.session_factory(engine)
    inbound = make_inbound(settings)
    stop = threading.Event()
    if parser is None:
        timeout = settings.intake.parse_timeout_seconds
        # Attachments too big to forward come back without their content (size and hash only).
        limit = settings.intake.max_forward_attachment_mb * 1024 * 1024
        parser = (
            WorkerParser(timeout, settings.committee.case_tag, max_attachment_bytes=limit)
            if timeout
            else InlineParser(settings.committee.case_tag, max_attachment_bytes=limit)
        )
    intake = Intake(
        engine,
        mailbox or make_mailbox(settings),
        inbound,
        inbound.policy,
        parser,  # type: ignore[arg-type]
        clock,
        max_attempts=settings.intake.max_attempts,
        stop=stop,
        on_commit=on_commit,
        attempt_engine=crash_safe_engine,
    )
    dispatcher = make_dispatcher(settings, crash_safe_engine, inbound.ctx, transport)
    return App(settings, engine, sessions, inbound, intake, dispatcher, clock, stop, crash_safe_engine)
