"""Where the dispatcher records each mail the server accepted, before the next can be accepted.

The record is made on the event loop, with no thread hop per mail: the next mail waits for it in
any case, and the dispatch worker's loop serves nothing else that could not wait one round trip.

PostgreSQL: one autocommitted UPDATE of the outbox row, on a connection held for the batch (row
locks: the intake's transactions do not get in its way).

SQLite allows one writer at a time, and the intake's transactions would hold every record up
(SQLite's busy handler then sleeps for milliseconds per mail). There each record goes to a small
side file beside the database, `<database>-sent` (SQLite too, rows of ids and times only), and the
dispatcher folds it into the outbox after each batch and before it claims anything again. Both
kinds of record commit without waiting for the disk: they survive a crash of the daemon, and a
power cut can at worst repeat a mail.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, bindparam, update
from sqlalchemy.exc import OperationalError

from conduct_inbox.store.db import HeldConnection, sqlite_path
from conduct_inbox.store.models import OutboxMessage

_outbox = OutboxMessage.__table__
#: The longest a record may take on PostgreSQL before it is given up as a database error.
RECORD_TIMEOUT = "30s"
#: One accepted mail recorded as sent (once: a row folded in twice is counted once). The row is
#: named by id and Message-ID, so a stale side file (beside a restored database, say) cannot mark
#: another mail as sent.
MARK_SENT = (
    update(_outbox)
    .where(_outbox.c.id == bindparam("row_id"), _outbox.c.message_id == bindparam("mid"), _outbox.c.status == "pending")
    .values(status="sent", sent_at=bindparam("sent"), claimed_until=None, attempts=_outbox.c.attempts + 1,
            last_code=250, last_error=None)
)


class DirectLog:
    """Records straight into the outbox (PostgreSQL, or an SQLite database with no file)."""

    def __init__(self, engine: Engine):
        self._connection = HeldConnection(engine, autocommit=True)  # for a batch

    def _get(self) -> Connection:
        connection = self._connection.get()
        if connection.dialect.name == "postgresql" and not connection.info.get("record_timeout"):
            # The record runs on the event loop: one stuck on a lock must end in an error, not hold
            # the loop. Set once per server connection (`info` lives as long as it does); in the
            # dispatch worker only the dispatcher uses this engine.
            connection.exec_driver_sql(f"SET statement_timeout = '{RECORD_TIMEOUT}'")
            connection.info["record_timeout"] = True
        return connection

    def record(self, row_id: int, message_id: str, at: datetime) -> None:
        for attempt in (1, 2):
            try:
                self._get().execute(MARK_SENT, {"row_id": row_id, "mid": message_id, "sent": at})
                return
            except OperationalError as exc:
                self.release()
                if not exc.connection_invalidated or attempt == 2:
                    raise
                # The held connection broke (a server restart): once more on a new one.
            except Exception:
                self.release()
                raise

    def release(self) -> None:
        """End of a batch: give the connection back."""
        self._connection.release()

    def unfolded(self) -> dict[int, tuple[str, datetime]]:
        return {}  # every record is in the outbox already

    def forget(self, row_ids: Iterable[int]) -> None:
        pass

    def close(self) -> None:
        self.release()


class SideFileLog:
    """Records into `<database>-sent` (SQLite); `unfolded`/`forget` let the dispatcher fold them in.

    A record is a few microseconds: a local file, synchronous=NORMAL (no fsync but at the rare
    checkpoint)."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # recorded on one thread, folded on another

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            # Only this process writes here: a wait means trouble, and it would hold up the event loop.
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # survives a crash of the daemon; see module doc
            db.execute(
                "CREATE TABLE IF NOT EXISTS sent (row_id INTEGER PRIMARY KEY, message_id TEXT NOT NULL, sent_at TEXT NOT NULL)"
            )
            self._db = db
        return self._db

    def record(self, row_id: int, message_id: str, at: datetime) -> None:
        with self._lock:
            self._connect().execute("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", (row_id, message_id, at.isoformat()))

    def release(self) -> None:
        pass  # the side file stays open: nothing else writes to it

    def unfolded(self) -> dict[int, tuple[str, datetime]]:
        """Recorded mails not yet in the outbox: row id -> (Message-ID, time sent)."""
        if self._db is None and not self.path.exists():
            return {}
        with self._lock:
            rows = self._connect().execute("SELECT row_id, message_id, sent_at FROM sent").fetchall()
        return {row_id: (message_id, datetime.fromisoformat(at)) for row_id, message_id, at in rows}

    def forget(self, row_ids: Iterable[int]) -> None:
        ids = list(row_ids)
        with self._lock:
            db = self._connect()
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                db.execute(f"DELETE FROM sent WHERE row_id IN ({','.join('?' * len(chunk))})", chunk)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def sent_log_for(engine: Engine) -> DirectLog | SideFileLog:
    """The side file for an SQLite database file (beside it, as the instance lock is); direct
    records otherwise."""
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    return DirectLog(engine) if path is None else SideFileLog(path.with_name(path.name + "-sent"))
