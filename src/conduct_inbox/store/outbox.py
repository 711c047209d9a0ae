"""Transactional outbox: mail is written as rows in the transaction that causes it, then dispatched.

A row's Message-ID is fixed when it is written; its envelope sender is the signed VERP address
`<local>+bounce-<row id>-<mac>@<domain>` (tokens.bounce_address), so a bounce finds its row and
nobody can forge one for it. Without a token secret (nothing to sign with) the envelope sender is
the plain committee address and no delivery report fails a row. Rows are claimed for a batch
(`claimed_until`), so two dispatchers never send the same row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, case, func, insert, null, or_, select, type_coerce, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, defer

from conduct_inbox.core import tokens
from conduct_inbox.core.party_mail import check_outward
from conduct_inbox.errors import EncryptionError, MailUnavailable
from conduct_inbox.mail.addresses import canonical_address
from conduct_inbox.mail.compose import Draft, Sender, build
from conduct_inbox.ports import BatchResult, Clock, DeliveryResult, Outcome, OutgoingMail
from conduct_inbox.ports import Sender as Transport
from conduct_inbox.store.db import dialect_insert, session_factory
from conduct_inbox.store.models import Case, OutboxMessage, ServiceState
from conduct_inbox.store.sent_log import MARK_SENT, sent_log_for

log = logging.getLogger(__name__)

_outbox = OutboxMessage.__table__

CLAIM = timedelta(minutes=10)
#: A claimed mail larger than this (a report copy with its attachments, say) is read from the
#: outbox only when its turn in the batch comes, not with the claim: a batch then holds one large
#: mail per SMTP connection in memory, not all of them.
READ_WITH_CLAIM = 256 * 1024
#: Drafts whose attachments add up to more than this are built and written one at a time, each
#: attachment base64-encoded once for all of them: the daemon holds one large copy at a time.
WRITE_ONE_BY_ONE = 256 * 1024
#: A recipient that keeps answering 4xx is given up on after this long, and the committee alerted.
DEFER_LIMIT = timedelta(days=3)


#: A claimed row's bytes, or NULL for a large one (read when its turn comes, `Dispatcher._fetcher`).
_DATA_IF_SMALL = type_coerce(
    case((func.length(OutboxMessage.data) <= READ_WITH_CLAIM, OutboxMessage.data), else_=null()), OutboxMessage.data.type
)


#: The claimed row's case reference, in the claim's own statement (for the "sent" log line).
_CASE_REF = select(Case.ref).where(Case.id == OutboxMessage.case_id).scalar_subquery()
#: What a claimed row is loaded as: the row without its subject (sealed: decrypting it would be
#: work for nothing), its bytes through _DATA_IF_SMALL, and its case reference.
_CLAIMED = select(OutboxMessage, _DATA_IF_SMALL, _CASE_REF).options(defer(OutboxMessage.data), defer(OutboxMessage.subject))
#: Why a row whose stored mail fails to decrypt (altered, or corrupt on disk) fails for good.
UNREADABLE = "stored mail cannot be decrypted"


#: Kinds of automatic answer rate-limited per correspondent: their rows record it (`correspondent`).
RATE_LIMITED_KINDS = frozenset({"ack"})


def new_message_id(domain: str) -> str:
    return f"{uuid.uuid4().hex}@{domain}"


def verp_address(sender: Sender, row_id: int, message_id: str, secret: bytes = b"") -> str:
    """The envelope sender of outbox row `row_id` (holding mail `message_id`): signed VERP, or the plain address without a secret
    (or where the signed local part would pass the 64 characters of RFC 5321: a very long committee
    local part; such mail still goes out, and only an SMTP-time refusal can fail it)."""
    if not secret:
        return sender.address
    local, domain = sender.address.split("@", 1)
    try:
        return tokens.bounce_address(local, domain, secret, row_id, message_id)
    except ValueError:
        return sender.address


def enqueue(
    session: Session,
    draft: Draft,
    sender: Sender,
    now: datetime,
    case_id: int | None = None,
    inbound_id: int | None = None,
) -> None:
    """Write one outgoing mail in the caller's transaction; nothing is sent until it commits."""
    enqueue_all(session, [draft], sender, now, case_id, inbound_id)


def enqueue_all(
    session: Session,
    drafts: Sequence[Draft],
    sender: Sender,
    now: datetime,
    case_id: int | None = None,
    inbound_id: int | None = None,
    correspondent: str | None = None,
) -> None:
    """Write outgoing mails in the caller's transaction, in one INSERT (rows in the drafts' order);
    one by one when they carry large attachments (WRITE_ONE_BY_ONE). Rows of RATE_LIMITED_KINDS
    record their recipient's canonical address; `correspondent` (canonical) is recorded on the
    others, for the mail about a correspondent's tripped rate limit."""
    for draft in drafts:
        check_outward(draft)
    encoded: dict[int, bytes] = {}  # each attachment's base64 part, shared by the drafts carrying it

    def row(draft: Draft) -> dict[str, object]:
        message_id = new_message_id(sender.domain)
        return {
            "case_id": case_id, "inbound_id": inbound_id, "kind": draft.kind, "audience": draft.audience,
            "recipient": draft.recipient.lower(),
            "correspondent": canonical_address(draft.recipient) if draft.kind in RATE_LIMITED_KINDS else correspondent,
            "message_id": message_id, "subject": draft.subject,
            "data": build(draft, sender, message_id, now, encoded), "status": "pending", "attempts": 0,
            "next_attempt_at": now, "created_at": now,
        }

    # Plain INSERTs, visible to the rest of the transaction at once; the ids are not needed here.
    connection = session.connection()
    attached = {id(a): len(a.content) for d in drafts for a in d.attachments}
    if sum(attached.values()) > WRITE_ONE_BY_ONE:
        for draft in drafts:
            connection.execute(insert(_outbox), [row(draft)])
    elif drafts:
        connection.execute(insert(_outbox), [row(draft) for draft in drafts])


@dataclass(frozen=True)
class Backoff:
    """Seconds before the next attempt, doubling per failure: [smtp] retry_initial_seconds and
    retry_max_seconds (their defaults are in config.py)."""

    initial: float
    maximum: float

    def delay(self, failures: int) -> timedelta:
        return timedelta(seconds=min(self.maximum, self.initial * 2 ** max(0, failures - 1)))


@dataclass(frozen=True)
class FlushReport:
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    outage: str | None = None


#: Called (in the same transaction) for every row that failed for good; enqueues the alert.
FailureHook = Callable[[Session, OutboxMessage, datetime], None]


class Dispatcher:
    """Sends due outbox rows in batches (each over the transport's connections) and records what happened."""

    def __init__(
        self,
        engine: Engine,
        transport: Transport,
        sender: Sender,
        on_failure: FailureHook,
        backoff: Backoff,
        batch_size: int,  # [smtp] batch_size
        verp_secret: bytes = b"",
    ):
        #: Ideally an engine made with db.make_engine(crash_safe_only=True): losing one of these
        #: commits to a power cut only repeats a send attempt, and there is one per mail.
        self.engine = engine
        self.sessions = session_factory(engine)
        self.transport = transport
        self.sender = sender
        self.on_failure = on_failure
        self.backoff = backoff
        self.batch_size = batch_size
        #: Signs each row's VERP envelope sender (the current token secret); empty: no VERP.
        self.verp_secret = verp_secret
        #: Rows the server accepted whose "sent" could not be written (database down): written
        #: first thing at the next flush. They stay claimed meanwhile, so nobody sends them again.
        self._unrecorded: dict[int, tuple[str, datetime]] = {}
        #: Where each accepted mail is recorded at once (sent_log), on the event loop.
        self._sent_log = sent_log_for(engine)

    def close(self) -> None:
        self._sent_log.close()

    def _fold(self) -> None:
        """Move records from the sent log's side file (SQLite) into the outbox, before claiming."""
        held = self._sent_log.unfolded()
        if held:
            with self.sessions() as session, session.begin():
                self._update_sent(session, held)
            self._sent_log.forget(held)

    def _claim(self, now: datetime) -> tuple[list[OutgoingMail], dict[int, str], dict[int, str | None]]:
        """Due rows, claimed for this batch; their Message-IDs and their case references by row id."""
        with self.sessions() as session, session.begin():
            state = session.get(ServiceState, "smtp")
            if state is not None and state.retry_at is not None and state.retry_at > now:
                return [], {}, {}  # in an outage: wait for the backoff to run out
            due = (
                OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
            )
            query = _CLAIMED.where(*due).order_by(OutboxMessage.id).limit(self.batch_size).with_for_update(skip_locked=True)
            try:
                rows = list(session.execute(query).all())
            except EncryptionError:
                rows = self._claim_readable(session, due, now)
            for row, _, _ in rows:
                row.claimed_until = now + CLAIM
            mails = [
                OutgoingMail(r.id, verp_address(self.sender, r.id, r.message_id, self.verp_secret), r.recipient, data,
                             None if data is not None else self._fetcher(r.id))
                for r, data, _ in rows
            ]
            return mails, {r.id: r.message_id for r, _, _ in rows}, {r.id: ref for r, _, ref in rows}

    def _claim_readable(self, session: Session, due: tuple[Any, ...], now: datetime) -> list[Any]:
        """The claim, row by row, after a stored mail could not be decrypted (altered or corrupt):
        such a row fails for good, with an alert (ids only); the others go out as usual, so one
        bad row does not hold up all outgoing mail."""
        ids = session.scalars(
            select(OutboxMessage.id).where(*due).order_by(OutboxMessage.id).limit(self.batch_size)
            .with_for_update(skip_locked=True)
        ).all()
        rows: list[Any] = []
        for row_id in ids:
            try:
                rows += session.execute(
                    _CLAIMED.where(OutboxMessage.id == row_id).execution_options(populate_existing=True)
                ).all()
            except EncryptionError:
                row = session.get(
                    OutboxMessage, row_id, populate_existing=True,
                    options=[defer(OutboxMessage.recipient), defer(OutboxMessage.subject), defer(OutboxMessage.data)],
                )
                assert row is not None
                row.status, row.last_error, row.claimed_until = "failed", UNREADABLE, None
                log.error("outbox row %d failed for good: its stored mail cannot be decrypted", row_id)
                self.on_failure(session, row, now)
        return rows

    def _fetcher(self, row_id: int) -> Callable[[], Awaitable[bytes]]:
        """Reads a large mail's bytes when the transport comes to it (in a thread: no stalled loop)."""

        async def fetch() -> bytes:
            return await asyncio.to_thread(self._content, row_id)

        return fetch

    def _content(self, row_id: int) -> bytes:
        try:
            with self.sessions() as session:
                data = session.scalar(select(OutboxMessage.data).where(OutboxMessage.id == row_id))
        except EncryptionError:
            raise MailUnavailable(UNREADABLE) from None  # the row fails, with an alert; the batch goes on
        if data is None:
            raise LookupError(f"outbox row {row_id} is gone")
        return data

    async def flush_once(self, now: datetime) -> FlushReport:
        """One batch: claim due rows, send them, record each outcome. Returns what happened.

        Each accepted mail is recorded as sent before the next is handed over, so a crash or a
        database outage repeats at most the one mail in flight. Claiming and recording the batch
        run in a worker thread (a commit waiting on the disk must not stall the event loop); the
        record of each accepted mail is one short statement, made on the loop (sent_log)."""
        if self._unrecorded:
            held = dict(self._unrecorded)
            await asyncio.to_thread(self._mark_sent, held)  # raises while the database is still down
            for row_id in held:
                self._unrecorded.pop(row_id, None)
        await asyncio.to_thread(self._fold)
        mails, message_ids, case_refs = await asyncio.to_thread(self._claim, now)
        if not mails:
            return FlushReport()
        recorded: set[int] = set()

        async def on_result(row_id: int, result: DeliveryResult) -> None:
            if result.outcome is not Outcome.SENT:
                return  # refusals and deferrals are recorded with the batch
            _log_sent(row_id, case_refs[row_id])
            try:
                # On the loop (see sent_log): the next mail waits for this record in any case.
                self._sent_log.record(row_id, message_ids[row_id], now)
            except (SQLAlchemyError, sqlite3.Error):  # the database, or the SQLite side file
                self._unrecorded[row_id] = (message_ids[row_id], now)
                raise  # end the batch: the rest stays claimed and unsent
            recorded.add(row_id)

        try:
            result = await self.transport.send_batch(mails, on_result=on_result)
        except Exception:
            # The batch ended early (a record or a read failed: the database). The rows the server
            # did not accept go back at once, if the database lets us, rather than when their
            # claim runs out; one accepted but not recorded stays claimed until it is recorded.
            waiting = [m.row_id for m in mails if m.row_id not in recorded and m.row_id not in self._unrecorded]
            with contextlib.suppress(SQLAlchemyError, sqlite3.Error):
                await asyncio.to_thread(self._unclaim, waiting, now + CLAIM)
            raise
        finally:
            self._sent_log.release()
        rest = [m for m in mails if m.row_id not in recorded]
        for mail in rest:  # accepted by a transport that did not report it as it went
            if (outcome := result.results.get(mail.row_id)) is not None and outcome.outcome is Outcome.SENT:
                _log_sent(mail.row_id, case_refs[mail.row_id])
        report = await asyncio.to_thread(self._record, rest, result, now)
        await asyncio.to_thread(self._fold)
        return FlushReport(report.sent + len(recorded), report.failed, report.deferred, report.outage)

    def _unclaim(self, row_ids: list[int], claimed_until: datetime) -> None:
        """Hand back rows this batch claimed (`claimed_until` tells our claim from a later one's)."""
        with self.sessions() as session, session.begin():
            for start in range(0, len(row_ids), 500):
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(row_ids[start : start + 500]), OutboxMessage.status == "pending",
                           OutboxMessage.claimed_until == claimed_until)
                    .values(claimed_until=None)
                    .execution_options(synchronize_session=False)
                )

    def _mark_sent(self, rows: dict[int, tuple[str, datetime]]) -> None:
        """Record accepted mail whose record failed earlier (the database was down)."""
        with self.sessions() as session, session.begin():
            self._update_sent(session, rows)

    @staticmethod
    def _update_sent(session: Session, rows: dict[int, tuple[str, datetime]]) -> None:
        session.execute(MARK_SENT, [{"row_id": row_id, "mid": mid, "sent": at} for row_id, (mid, at) in rows.items()])

    async def flush_due(self, clock: Clock, ending: Callable[[], bool] = lambda: False) -> FlushReport:
        """Batches until nothing is due (a full batch means there may be more), the outgoing side
        is down, or `ending()` says to stop after the batch under way. Returns the totals."""
        total = FlushReport()
        while True:
            report = await self.flush_once(clock())
            total = FlushReport(
                total.sent + report.sent, total.failed + report.failed, total.deferred + report.deferred, report.outage
            )
            if report.outage or ending() or report.sent + report.failed + report.deferred < self.batch_size:
                return total

    async def flush_all(self, now: datetime, max_batches: int = 1000) -> FlushReport:
        """Batches until nothing is due or the outgoing side is down (used by `run --once`)."""
        total = FlushReport()
        for _ in range(max_batches):
            report = await self.flush_once(now)
            total = FlushReport(
                total.sent + report.sent, total.failed + report.failed, total.deferred + report.deferred, report.outage
            )
            if report.outage or report.sent + report.failed + report.deferred == 0:
                break
        return total

    def _record(self, mails: list[OutgoingMail], result: BatchResult, now: datetime) -> FlushReport:
        sent_ids = [m.row_id for m in mails if (o := result.results.get(m.row_id)) and o.outcome is Outcome.SENT]
        others = [m.row_id for m in mails if m.row_id not in set(sent_ids)]
        failed = deferred = 0
        with self.sessions() as session, session.begin():
            # The common case in bulk: one UPDATE for every row that was sent.
            for start in range(0, len(sent_ids), 500):
                chunk = sent_ids[start : start + 500]
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(chunk))
                    .values(status="sent", sent_at=now, claimed_until=None, attempts=OutboxMessage.attempts + 1,
                            last_code=250, last_error=None)
                    .execution_options(synchronize_session=False)
                )
            rows = session.scalars(
                select(OutboxMessage).options(defer(OutboxMessage.data)).where(OutboxMessage.id.in_(others))
            ).all() if others else []
            for row in rows:
                outcome = result.results.get(row.id)
                row.claimed_until = None
                if outcome is None:
                    continue  # not attempted: the batch stopped at an outage; stays pending
                row.attempts += 1
                row.last_code = outcome.code
                row.last_error = outcome.reason[:200] or None
                if outcome.outcome is Outcome.REJECTED or now - row.created_at > DEFER_LIMIT:
                    row.status = "failed"
                    failed += 1
                    log.warning("outbox row %d failed for good (code %s)", row.id, outcome.code)
                    self.on_failure(session, row, now)
                else:
                    row.next_attempt_at = now + self.backoff.delay(row.attempts)
                    deferred += 1
            self._record_service_state(session, result.outage, now)
        if result.outage:
            log.warning("outgoing mail outage: %s; %d rows wait", result.outage, len(mails) - len(result.results))
        return FlushReport(len(sent_ids), failed, deferred, result.outage)

    def _record_service_state(self, session: Session, outage: str | None, now: datetime) -> None:
        # Two daemons may record their first batch at once: create the row without a race, then lock it.
        session.execute(dialect_insert(session)(ServiceState).values(name="smtp", failures=0).on_conflict_do_nothing(index_elements=["name"]))
        state = session.get(ServiceState, "smtp", with_for_update=True, populate_existing=True)
        assert state is not None
        if outage is None:
            state.last_ok_at, state.outage_since, state.outage_reason = now, None, None
            state.failures, state.retry_at = 0, None
        else:
            state.failures = (state.failures or 0) + 1
            state.outage_since = state.outage_since or now
            state.outage_reason = outage[:200]
            state.retry_at = now + self.backoff.delay(state.failures)


def _log_sent(row_id: int, case_ref: str | None) -> None:
    """One line per mail the SMTP server accepted: ids only, never an address or a subject."""
    log.info("outbox row %d sent (case %s)", row_id, case_ref or "-")


def mark_failed(session: Session, row_id: int, reason: str, now: datetime, on_failure: FailureHook) -> bool:
    """A DSN reported this row undeliverable: mark it failed (once) and alert. True if it was ours.

    Only a row already handed to the server (`sent_at` set) can fail this way: nothing inbound
    cancels mail not yet sent. The caller has checked the DSN (signed VERP, the row's recipient).
    """
    failed = cast(CursorResult[Any], session.execute(  # an UPDATE's result is a CursorResult
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.sent_at.is_not(None), OutboxMessage.status != "failed")
        .values(status="failed", last_error=reason[:200])
        .execution_options(synchronize_session=False)
    )).rowcount
    if not failed:
        return session.scalar(select(OutboxMessage.id).where(OutboxMessage.id == row_id, OutboxMessage.sent_at.is_not(None))) is not None
    row = session.get(OutboxMessage, row_id, populate_existing=True, options=[defer(OutboxMessage.data)])
    assert row is not None
    on_failure(session, row, now)
    return True
