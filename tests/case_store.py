"""The case store without servers, for the middle tier (tests/cases): an SQLite database at head,
the case services built from a configuration as the daemon builds them (`components.make_inbound`),
and mail taken in the way the intake takes it (parse, `Inbound.facts`, `classify`,
`Inbound.apply`, one transaction per message). What it sends is read from the outbox: each row
as its recipient would read it (`Mail`), so a member answers on the reply address of the mail
they got, as in the end-to-end tests, but without Dovecot or aiosmtpd.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import make_msgid
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import selectinload

from conduct_inbox.cases.inbound import Inbound, dedupe_key
from conduct_inbox.config import load_settings
from conduct_inbox.core.classify import classify
from conduct_inbox.mail.parse import parse
from conduct_inbox.shell.components import make_inbound
from conduct_inbox.store import db
from conduct_inbox.store.models import Case, Decision, Event, InboundMessage, OutboxMessage
from tests.harness import parsed, report, text_of, write_config
from tests.mailers import personal_address, reply

START = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Mail:
    """One outbox row as its recipient reads it (`content` is the built message, so
    tests.harness.parsed/text_of and tests.mailers.reply read it as a received mail)."""

    id: int
    case_id: int | None
    kind: str
    audience: str
    recipient: str
    subject: str
    content: bytes

    @cached_property
    def text(self) -> str:
        return text_of(self)

    @property
    def reply_to(self) -> str:
        return str(parsed(self)["Reply-To"] or "")


class Store:
    """One fresh database and the case services of one configuration."""

    def __init__(self, engine: Engine, inbound: Inbound):
        self.engine = engine
        self.sessions = db.session_factory(engine)
        self.inbound = inbound
        self.now = START
        self._uid = 0
        #: False: the outbox is sent after each message, as the dispatcher does within seconds;
        #: True: mail waits in the outbox (an SMTP outage).
        self.outage = False

    # ----- taking mail in ----------------------------------------------------------------------

    def take_in(self, raw: bytes) -> str:
        """One message through the intake's path, committed; returns the outcome the log shows."""
        self._uid += 1
        self.now += timedelta(minutes=1)
        msg = parse(raw, case_tag=self.inbound.options.case_tag)
        with self.sessions() as session, session.begin():
            row = InboundMessage(mailbox="cases-tier", uidvalidity=1, uid=self._uid, raw=raw, size=len(raw),
                                 received_at=self.now, attempts=1, status="pending")
            session.add(row)
            session.flush()
            facts = self.inbound.facts(session, msg)
            row.message_id, row.body_hash = msg.message_id, msg.body_hash
            if msg.message_id:
                row.dedupe_key = dedupe_key(msg.message_id, msg.body_hash)
            result = classify(msg, facts, self.inbound.policy)
            outcome = self.inbound.apply(session, row, msg, result, self.now)
        if not self.outage:
            self.dispatched()
        return outcome

    def report(self, **fields: Any) -> Case:
        """A report (tests.harness.report's fields) taken in; returns its case."""
        self.take_in(report(**fields))
        with self.sessions() as session:
            return session.scalars(select(Case).order_by(Case.id.desc()).limit(1)).one()

    def command(self, member: str, suffix: str, body: str = "", *, case: Case | None = None, sender: str | None = None,
                **options: Any) -> str:
        """`member` answers their copy of the case's report with `suffix` after its subject
        (tests.mailers.reply's options: to=, subject=); `sender`: someone else sends it as their own."""
        return self.take_in(reply(self.copy_of(member, case), sender or member, suffix, body, **options))

    def personal(self, member: str, subject: str, body: str = "", *, attach: bytes | None = None, to: str | None = None) -> str:
        """`member` writes to their personal reply address (or `to`): case-less commands; `attach`:
        a forwarded message."""
        msg = EmailMessage()
        msg["From"] = member
        msg["To"] = to or personal_address(member)
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="example.org")
        msg.set_content(body or "(no text)")
        if attach is not None:
            msg.add_attachment(email.message_from_bytes(attach, policy=email.policy.default))
        return self.take_in(msg.as_bytes())

    def dispatched(self) -> None:
        """Every pending outbox row sent, as the dispatcher records it."""
        with self.sessions() as session, session.begin():
            session.execute(update(OutboxMessage).where(OutboxMessage.status == "pending")
                            .values(status="sent", sent_at=self.now, attempts=1))

    # ----- what happened -----------------------------------------------------------------------

    def mail(self, *where: Any) -> list[Mail]:
        """Outbox rows, oldest first."""
        with self.sessions() as session:
            rows = session.scalars(select(OutboxMessage).where(*where).order_by(OutboxMessage.id)).all()
            return [Mail(r.id, r.case_id, r.kind, r.audience, r.recipient, r.subject, r.data) for r in rows]

    def mail_to(self, address: str, kind: str | None = None) -> list[Mail]:
        return [m for m in self.mail(OutboxMessage.recipient == address.lower()) if kind is None or m.kind == kind]

    def latest(self, address: str, kind: str | None = None) -> Mail:
        return self.mail_to(address, kind)[-1]

    def mail_after(self, mark: int) -> list[Mail]:
        """The mail written since `mark` (`outbox_mark()`)."""
        return self.mail(OutboxMessage.id > mark)

    def outbox_mark(self) -> int:
        with self.sessions() as session:
            return session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)) or 0

    def copy_of(self, member: str, case: Case | None = None) -> Mail:
        """The member's copy of the case's report (the newest case's by default)."""
        case_id = (case or self.case()).id
        return self.mail(OutboxMessage.recipient == member, OutboxMessage.kind == "report", OutboxMessage.case_id == case_id)[0]

    def case(self, ref: str | None = None) -> Case:
        """A case as stored now (the newest by default), parties and recusals loaded."""
        query = select(Case).options(selectinload(Case.recusals), selectinload(Case.parties))
        query = query.where(Case.ref == ref) if ref else query.order_by(Case.id.desc()).limit(1)
        with self.sessions() as session:
            return session.scalars(query).one()

    def events(self, action: str | None = None) -> list[Event]:
        with self.sessions() as session:
            query = select(Event).order_by(Event.id)
            return list(session.scalars(query.where(Event.action == action) if action else query))

    def decisions(self) -> list[Decision]:
        with self.sessions() as session:
            return list(session.scalars(select(Decision).order_by(Decision.id)))


# ----- building stores: the schema once per run, a copy per test -----------------------------


class Stores:
    """Makes stores for one test run: the migrations run once, each store gets a copy."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ci-cases-"))
        template = self.folder / "template.db"
        engine = db.make_engine(f"sqlite:///{template}")
        db.upgrade(engine)
        engine.dispose()
        self.template = template
        self._inbounds: dict[tuple[tuple[str, str], ...], Inbound] = {}
        self._made = 0
        self._compiled: dict[Any, Any] = {}

    def inbound(self, *edits: tuple[str, str]) -> Inbound:
        """The case services of the tests' configuration (tests.harness.write_config), each
        (old, new) of `edits` replaced in its text."""
        if edits not in self._inbounds:
            folder = Path(tempfile.mkdtemp(prefix="cfg-", dir=self.folder))
            path = write_config(folder, database_url=f"sqlite:///{self.template}",
                                mailbox={"host": "127.0.0.1", "port": 9, "security": "none", "username": "u", "password": "p"},
                                smtp={"host": "127.0.0.1", "port": 9, "security": "none"})
            text = path.read_text()
            for old, new in edits:
                assert old in text, old
                text = text.replace(old, new, 1)
            path.write_text(text)
            self._inbounds[edits] = make_inbound(load_settings(path, environ={}))
        return self._inbounds[edits]

    @contextmanager
    def store(self, *edits: tuple[str, str]) -> Iterator[Store]:
        """A store on a fresh copy of the database, removed afterwards."""
        self._made += 1
        path = self.folder / f"cases-{self._made}.db"
        shutil.copyfile(self.template, path)
        engine = db.make_engine(f"sqlite:///{path}")
        try:
            # The stores share compiled SQL (the engine's own cache would start cold every test).
            yield Store(engine.execution_options(compiled_cache=self._compiled), self.inbound(*edits))
        finally:
            engine.dispose()
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# ----- helpers the attack files share -------------------------------------------------------------


def mail_to(store: Store, address: str, mark: int) -> list:
    """What `address` was sent since `mark`."""
    return [m for m in store.mail_after(mark) if m.recipient == address]


def headers(mail) -> str:
    """The header block of a mail as sent."""
    return mail.content.decode("utf-8", "replace").split("\n\n", 1)[0]


def clock(store: Store, ref: str) -> dict:
    """The case's running deadlines as the escalations see them (`sla.deadlines`)."""
    from sqlalchemy import select

    from conduct_inbox.cases.deadlines import case_clock
    from conduct_inbox.core import sla
    from conduct_inbox.store.models import Case
    with store.sessions() as session:
        case = session.scalars(select(Case).where(Case.ref == ref)).one()
        return sla.deadlines(case_clock(session, case), sla.SlaPolicy())


def escalate(store: Store) -> list:
    """One escalation run at the store's `now`; the mail it sent."""
    from conduct_inbox.cases.escalate import escalate_once
    from conduct_inbox.core import sla
    mark = store.outbox_mark()
    escalate_once(store.sessions, store.inbound.ctx, sla.SlaPolicy(), store.now)
    store.dispatched()
    return store.mail_after(mark)
