"""Takes mail from the mailbox into the case store: nothing lost, nothing done twice.

For each message: record an attempt (committed), parse it under a time limit, classify it,
apply it in one transaction, and only then move it out of the intake folder. A message that
fails or hangs `max_attempts` times is quarantined (raw kept) and the committee alerted.
A message already recorded as done (crash between commit and move) is only moved.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, case, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from conduct_inbox.adapters.parsing import ParseFailed, ParseTimeout
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.inbound import Inbound, dedupe_key
from conduct_inbox.core.classify import Policy, classify
from conduct_inbox.errors import MailboxUnavailable, where
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.ports import Clock, Destination, Mailbox
from conduct_inbox.store.db import DIALECT_INSERTS, HeldConnection, session_factory
from conduct_inbox.store.models import InboundMessage, MailboxState

log = logging.getLogger(__name__)

#: The quarantine reason when our own code raised, as opposed to the parser failing on bad input:
#: a bug in conduct-inbox, which the committee's alert and the hostile-input drill must tell apart.
INTERNAL_ERROR = "internal error in conduct-inbox, not a fault of the message"

_inbound = InboundMessage.__table__

# The statements run for every message, built once: building one (and its cache key) costs
# more CPU than sending it.
_THIS_UID = (_inbound.c.mailbox == bindparam("this_mailbox"), _inbound.c.uidvalidity == bindparam("this_uidvalidity"),
             _inbound.c.uid == bindparam("this_uid"))
#: The first attempt, as one statement; nothing when the message is known already.
_FIRST_ATTEMPT = {
    name: insert_of(_inbound).on_conflict_do_nothing(index_elements=["mailbox", "uidvalidity", "uid"]).returning(_inbound.c.id)
    for name, insert_of in DIALECT_INSERTS.items()
}
#: Counted by the database, and only while still pending: a daemon whose UPDATE waited for
#: another's row lock must not go on with a message that is done now.
_NEXT_ATTEMPT = (
    update(_inbound).where(*_THIS_UID, _inbound.c.status == "pending")
    .values(attempts=_inbound.c.attempts + 1).returning(_inbound.c.id, _inbound.c.attempts)
)
_ATTEMPTS = select(_inbound.c.attempts).where(*_THIS_UID)
#: The row of a message about to be applied, locked (another daemon on it: no row).
_LOCK_PENDING = select(InboundMessage).where(InboundMessage.id == bindparam("row_id")).with_for_update(skip_locked=True)
#: One look at earlier messages with this Message-ID: the same one again (its key matches;
#: listed first), or a different one reusing the ID.
_EARLIER_COPY = (
    select(InboundMessage.id, InboundMessage.case_id, InboundMessage.dedupe_key)
    .where(InboundMessage.message_id == bindparam("message_id"), InboundMessage.id != bindparam("row_id"),
           InboundMessage.status != "pending")
    .order_by(case((InboundMessage.dedupe_key == bindparam("key"), 0), else_=1))
    .limit(1)
)

#: An earlier message with this text (recovery after a restore, for messages without a Message-ID).
_SAME_TEXT = (
    select(InboundMessage.id, InboundMessage.case_id, InboundMessage.dedupe_key)
    .where(InboundMessage.body_hash == bindparam("body_hash"), InboundMessage.sender == bindparam("sender"),
           InboundMessage.id != bindparam("row_id"), InboundMessage.status != "pending")
    .limit(1)
)

FETCH_CHUNK = 50
#: A message done in the database but still in the intake folder is moved by whoever polls only
#: after this long: until then the daemon that processed it (another one, perhaps) moves it itself.
LEFTOVER_AFTER = timedelta(minutes=10)
_FOLDERS: tuple[Destination, ...] = ("processed", "quarantine")
DONE: dict[str, Destination] = {"processed": "processed", "duplicate": "processed", "machine": "processed", "dropped": "processed",
        "quarantined": "quarantine"}


@dataclass
class IntakeStats:
    processed: int = 0
    quarantined: int = 0
    failed: int = 0
    moved_only: int = 0
    outcomes: list[str] = field(default_factory=list)


@dataclass
class _Prepared:
    """A message whose attempt is recorded and whose parse is under way (None: nothing to parse)."""

    uid: int
    row_id: int | None
    attempts: int
    parsing: Future[Parsed] | None


class Intake:
    def __init__(
        self,
        engine: Engine,
        mailbox: Mailbox,
        inbound: Inbound,
        policy: Policy,
        parser: Callable[[bytes], Parsed],
        clock: Clock,
        max_attempts: int,  # [intake] max_attempts
        stop: threading.Event | None = None,
        on_commit: Callable[[], None] | None = None,
        attempt_engine: Engine | None = None,
    ):
        self.engine = engine
        self.sessions = session_factory(engine)
        #: Where attempts are counted before parsing. Their commits need not wait for the disk
        #: (db.make_engine(crash_safe_only=True)): the message stays in the intake folder until its
        #: case is committed durably, so a power cut can only cost one extra attempt.
        self.attempt_engine = attempt_engine or engine
        #: Connections held for one pass (released at its end), so that each message does not check one
        #: out of the pool (and ping the server) twice.
        self._connection = HeldConnection(engine)
        #: Counting attempts: each statement commits on its own.
        self._attempt_connection = HeldConnection(self.attempt_engine, autocommit=True)
        self.mailbox = mailbox
        self.inbound = inbound
        self.policy = policy
        #: The case services handed over by a reload (`use_inbound`), taken up before the next message.
        self._next_inbound: Inbound | None = None
        self._next_lock = threading.Lock()
        self.parser = parser
        self.clock = clock
        self.max_attempts = max_attempts
        self.stop = stop or threading.Event()
        self.on_commit = on_commit or (lambda: None)
        self._uidvalidity: int | None = None
        #: One parse ahead of the message being applied; the parser itself runs one at a time.
        self._parsing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conduct-inbox-parse")

    def use_inbound(self, inbound: Inbound) -> None:
        """From any thread: apply `inbound` (and its policy) from the next message on; the
        message under way, if any, ends with the one it started with."""
        with self._next_lock:
            self._next_inbound = inbound

    def _take_next_inbound(self) -> None:
        with self._next_lock:
            inbound, self._next_inbound = self._next_inbound, None
        if inbound is not None:
            self.inbound, self.policy = inbound, inbound.policy

    def close(self) -> None:
        """End the background parse thread (after the parse under way, if any)."""
        self._parsing.shutdown(wait=True, cancel_futures=True)

    # ----- one pass ---------------------------------------------------------------------------

    def poll_once(self) -> IntakeStats:
        """Process everything in the intake folder once. Raises MailboxUnavailable if it cannot be read."""
        try:
            return self._pass()
        finally:
            self._release()

    def _pass(self) -> IntakeStats:
        stats = IntakeStats()
        try:
            uidvalidity, uids = self._connected_uids()
        except MailboxUnavailable as exc:
            self._uidvalidity = None
            _record_contact(self.sessions, self.mailbox.identity, None, str(exc), self.clock())
            raise
        _record_contact(self.sessions, self.mailbox.identity, uidvalidity, None, self.clock())
        with self._session() as session:
            known, done_at = _known(session, self.mailbox.identity, uidvalidity, uids)
        stale = self.clock() - LEFTOVER_AFTER
        for folder in _FOLDERS:
            leftover = [
                uid for uid in uids
                if DONE.get(known.get(uid, "")) == folder and ((at := done_at.get(uid)) is None or at <= stale)
            ]
            if leftover:  # committed before a crash, never moved: move now, do nothing else
                self._move(leftover, folder)
                stats.moved_only += len(leftover)
        todo = [uid for uid in uids if uid not in known or known[uid] == "pending"]
        for start in range(0, len(todo), FETCH_CHUNK):
            if self.stop.is_set():
                break
            chunk = todo[start : start + FETCH_CHUNK]
            raws = self._fetch(chunk)
            done: dict[Destination, list[int]] = {folder: [] for folder in _FOLDERS}
            waiting = [(uid, raws.pop(uid)) for uid in chunk if uid in raws]  # absent: another daemon moved it
            del raws
            current = self._prepare(uidvalidity, *waiting.pop(0), stats) if waiting else None
            while current is not None:
                # The next message is parsed (in the worker, on another core) while this one is applied.
                following = None
                if waiting and not self.stop.is_set():
                    following = self._prepare(uidvalidity, *waiting.pop(0), stats)
                destination = self._complete(current, stats)
                if destination:
                    done[destination].append(current.uid)
                current = following
            for folder, moved in done.items():
                if moved:
                    self._move(moved, folder)
        return stats

    def _connected_uids(self) -> tuple[int, list[int]]:
        """The intake folder's UIDs, on the connection kept from the last pass if it still works:
        one the server closed meanwhile (a restart, a NAT dropping an idle connection) is replaced
        at once, not after a failed pass and a poll interval. Returns (UIDVALIDITY, UIDs)."""
        if self._uidvalidity is not None:
            try:
                return self._uidvalidity, self.mailbox.uids()
            except MailboxUnavailable:
                self._uidvalidity = None
                log.info("mailbox connection lost since the last pass: connecting again")
        self._uidvalidity = uidvalidity = self.mailbox.connect()
        return uidvalidity, self.mailbox.uids()

    # ----- connections held for a pass ----------------------------------------------------------

    def _session(self) -> Session:
        """A session on the pass's connection (a fresh one if the last was lost, e.g. a server restart)."""
        return self.sessions(bind=self._connection.get())

    def _release(self) -> None:
        self._connection.release()
        self._attempt_connection.release()

    def _fetch(self, uids: list[int]) -> dict[int, bytes]:
        try:
            return self.mailbox.fetch(uids)
        except MailboxUnavailable:
            self._uidvalidity = None
            raise

    def _move(self, uids: list[int], destination: Destination) -> None:
        try:
            self.mailbox.move(uids, destination)
        except MailboxUnavailable:
            self._uidvalidity = None
            raise

    # ----- one message ------------------------------------------------------------------------

    def _prepare(self, uidvalidity: int, uid: int, raw: bytes, stats: IntakeStats) -> _Prepared:
        """Record the attempt (committed before parsing), then start parsing in the background."""
        try:
            row_id, attempts = self._record_attempt(uidvalidity, uid, raw)
        except OperationalError as exc:
            if not exc.connection_invalidated:
                raise
            row_id, attempts = self._record_attempt(uidvalidity, uid, raw)  # on a new connection
        if row_id is None or attempts > self.max_attempts:
            return _Prepared(uid, row_id, attempts, None)
        return _Prepared(uid, row_id, attempts, self._parsing.submit(self.parser, raw))

    def _complete(self, job: _Prepared, stats: IntakeStats) -> Destination | None:
        """Returns the folder to move the message to once done, or None to leave it for a retry."""
        uid, row_id, attempts = job.uid, job.row_id, job.attempts
        self._take_next_inbound()  # between messages: a reload applies from this one on
        if row_id is None:
            return None  # another daemon holds it
        if job.parsing is None:  # too many attempts
            if not self._quarantine(row_id, "too many attempts"):
                return None  # another daemon finished it meanwhile
            stats.quarantined += 1
            return "quarantine"
        try:
            parsed = job.parsing.result()
        except ParseTimeout:
            return self._failed(row_id, attempts, "parser time limit exceeded", stats)
        except ParseFailed as exc:
            return self._failed(row_id, attempts, f"parser failed ({exc.kind})", stats)
        reconnected = False
        for _ in range(3):
            try:
                outcome = self._apply(row_id, parsed)
                break
            except IntegrityError:
                # A racing daemon committed the same report first: try again, it is now a duplicate.
                log.info("inbound #%d: concurrent insert, retrying", row_id)
            except OperationalError as exc:
                if exc.connection_invalidated and not reconnected:
                    # The pass's connection broke (a server restart, say): once more on a new one,
                    # without counting it against the message.
                    reconnected = True
                    log.info("inbound #%d: database connection lost, retrying on a new one", row_id)
                    continue
                log.warning("inbound #%d: database error %s", row_id, type(exc.orig).__name__)
                return self._failed(row_id, attempts, "database error", stats)
            except Exception as exc:  # a bug must not stop the loop or lose the message
                log.error("inbound #%d: processing failed: %s", row_id, where(exc))
                return self._failed(row_id, attempts, f"{INTERNAL_ERROR} ({type(exc).__name__})", stats)
        else:
            return self._failed(row_id, attempts, "repeated conflicts", stats)
        if outcome is None:
            return None
        log.info("inbound #%d (uid %d): %s", row_id, uid, outcome)
        stats.processed += 1
        stats.outcomes.append(outcome)
        self.on_commit()
        return "processed"

    def _record_attempt(self, uidvalidity: int, uid: int, raw: bytes) -> tuple[int | None, int]:
        """Store the raw message (first time) and count the attempt, committed before parsing.

        Each statement commits on its own (autocommit); each is atomic, and together they are
        safe against a second daemon doing the same (ON CONFLICT, and counting only while pending)."""
        now = self.clock()
        connection = self._attempt_connection.get()
        row_id = connection.execute(
            _FIRST_ATTEMPT[connection.dialect.name],
            {"mailbox": self.mailbox.identity, "uidvalidity": uidvalidity, "uid": uid, "raw": raw, "size": len(raw),
             "received_at": now, "attempts": 1, "status": "pending", "message_id_reused": False},
        ).scalar_one_or_none()
        if row_id is not None:
            return row_id, 1
        this_uid = {"this_mailbox": self.mailbox.identity, "this_uidvalidity": uidvalidity, "this_uid": uid}
        counted = connection.execute(_NEXT_ATTEMPT, this_uid).first()
        if counted is not None:
            return counted.id, counted.attempts
        attempts = connection.execute(_ATTEMPTS, this_uid).scalar_one_or_none()
        return None, attempts or 0  # another daemon finished it (or holds it)

    def _apply(self, row_id: int, parsed: Parsed) -> str | None:
        now = self.clock()
        with self._session() as session, session.begin():
            row = session.scalars(_LOCK_PENDING, {"row_id": row_id}).first()
            if row is None or row.status != "pending":
                return None  # another daemon is on it, or finished it
            message_id = parsed.message_id[:998] if parsed.message_id else None
            earlier = None
            key: str | None = None
            if parsed.message_id:
                key = dedupe_key(parsed.message_id, parsed.body_hash)
                earlier = session.execute(_EARLIER_COPY, {"message_id": message_id, "row_id": row.id, "key": key}).first()
            if not parsed.message_id and self.inbound.options.recovering:
                # Taken in again after a restore: without a Message-ID, the same text from the same sender is the same message.
                sender = (parsed.reporter_address or parsed.from_address or "")[:320] or None
                earlier = session.execute(_SAME_TEXT, {"body_hash": parsed.body_hash, "sender": sender, "row_id": row.id}).first()
                key = earlier.dedupe_key if earlier is not None else None
            if earlier is not None and earlier.dedupe_key == key:
                row.message_id, row.body_hash = message_id, parsed.body_hash
                row.status, row.kind, row.duplicate_of_id, row.processed_at = "duplicate", "duplicate", earlier.id, now
                row.case_id = earlier.case_id
                event(session, earlier.case_id, "system", "duplicate_delivery", now, inbound_id=row.id, original_id=earlier.id)
                return f"repeated delivery of inbound #{earlier.id}: nothing new"
            facts = self.inbound.facts(session, parsed)  # queried before the row changes: one UPDATE for all
            row.message_id, row.body_hash = message_id, parsed.body_hash
            if parsed.message_id:
                row.message_id_reused = earlier is not None
                row.dedupe_key = key  # claimed at the next flush: a racing copy fails there
            result = classify(parsed, facts, self.policy)
            outcome = self.inbound.apply(session, row, parsed, result, now)
            if row.message_id_reused:
                event(session, row.case_id, "system", "message_id_reused", now, inbound_id=row.id)
                outcome += " (Message-ID reused by a different message: flagged)"
            return outcome

    def _failed(self, row_id: int, attempts: int, reason: str, stats: IntakeStats) -> Destination | None:
        log.warning("inbound #%d: attempt %d failed: %s", row_id, attempts, reason)
        with self._session() as session, session.begin():
            row = session.get(InboundMessage, row_id)
            if row is not None:
                row.error = reason[:200]
        if attempts >= self.max_attempts:
            if not self._quarantine(row_id, reason):
                return None  # another daemon finished it meanwhile
            stats.quarantined += 1
            return "quarantine"
        stats.failed += 1
        return None

    def _quarantine(self, row_id: int, reason: str) -> bool:
        """Quarantine a message still pending (under its row lock); False if another daemon finished it."""
        now = self.clock()
        with self._session() as session, session.begin():
            row = session.get(InboundMessage, row_id, with_for_update=True, populate_existing=True)
            if row is None or row.status != "pending":
                return False
            self.inbound.quarantine(session, row, reason, now)
        log.warning("inbound #%d quarantined: %s", row_id, reason)
        self.on_commit()
        return True


def _known(session: Session, mailbox: str, uidvalidity: int, uids: list[int]) -> tuple[dict[int, str], dict[int, datetime | None]]:
    """Status and time done (processed_at) of the UIDs already recorded."""
    found: dict[int, str] = {}
    done_at: dict[int, datetime | None] = {}
    for start in range(0, len(uids), 500):
        rows = session.execute(
            select(InboundMessage.uid, InboundMessage.status, InboundMessage.processed_at).where(
                InboundMessage.mailbox == mailbox,
                InboundMessage.uidvalidity == uidvalidity,
                InboundMessage.uid.in_(uids[start : start + 500]),
            )
        )
        for uid, status, processed_at in rows:
            found[uid], done_at[uid] = status, processed_at
    return found, done_at


def _record_contact(
    sessions: Callable[..., Session], mailbox: str, uidvalidity: int | None, error: str | None, now: datetime
) -> None:
    """The mailbox's last contact (for `status` and health): when, with which UIDVALIDITY, what failed."""
    try:
        with sessions() as session, session.begin():
            state = session.get(MailboxState, mailbox)
            if state is None:
                state = MailboxState(mailbox=mailbox)
                session.add(state)
            state.last_attempt_at = now
            state.uidvalidity = uidvalidity
            state.last_error = error[:200] if error else None
            if error is None:
                state.last_ok_at = now
    except IntegrityError:
        pass  # a second daemon recorded it at the same moment
