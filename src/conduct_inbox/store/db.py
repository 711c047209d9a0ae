"""Engine and sessions for SQLite or PostgreSQL, schema migrations, and the single-instance lock."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from conduct_inbox.errors import DatabaseNotCurrent, EncryptionError, InstanceLocked, KeyNotConfigured
from conduct_inbox.store.crypto import Cipher, previous_of
from conduct_inbox.store.models import DatabaseMeta


def make_engine(url: str, cipher: Cipher | None = None, *, crash_safe_only: bool = False) -> Engine:
    """An engine that never puts statement parameters (report text, addresses) into errors or logs.

    With a cipher, the sealed columns (models.SealedBytes/SealedText/SealedLookup) are encrypted at rest:
    the cipher rides on the engine's dialect, which every column type receives.

    `crash_safe_only`: commits do not wait for the disk (SQLite synchronous=NORMAL in WAL mode,
    PostgreSQL synchronous_commit=off). They survive a crash of the daemon but a power cut may
    lose the last few; only for records whose loss costs a repeated mail (outbox.Dispatcher).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        if crash_safe_only:
            event.listen(engine, "connect", _sqlite_crash_safe_only)
    else:
        # A server that vanishes without a word (no reset) ends in an error within about half a
        # minute instead of a read that waits for ever.
        options: dict[str, Any] = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
                                   "keepalives_interval": 10, "keepalives_count": 3, "tcp_user_timeout": 30_000}
        if crash_safe_only:
            options["options"] = "-c synchronous_commit=off"
        engine = create_engine(url, hide_parameters=True, pool_pre_ping=True, connect_args=options)
    engine.dialect.conduct_cipher = cipher  # type: ignore[attr-defined]  # our attribute on the dialect: the sealed types read it at bind time
    return engine


_KEY_FINGERPRINT = "encryption_key_fingerprint"


def check_key(engine: Engine) -> None:
    """Refuse a key other than the one the database is sealed with, or no key for a sealed database.

    The first start with a key records its fingerprint (not the key); rows written before stay
    plain until `conduct-inbox db reseal`.
    """
    cipher: Cipher | None = getattr(engine.dialect, "conduct_cipher", None)
    with Session(engine) as session, session.begin():
        if not verify_key(session, cipher) and cipher is not None:
            session.add(DatabaseMeta(name=_KEY_FINGERPRINT, value=cipher.fingerprint_hex))


def verify_key(session: Session, cipher: Cipher | None) -> bool:
    """check_key without writing: raise for the wrong key or a missing one; False when the
    database has recorded no key yet."""
    row = session.get(DatabaseMeta, _KEY_FINGERPRINT)
    if row is None:
        return False
    if cipher is None:
        raise KeyNotConfigured(
            "the database is encrypted but no key is configured: set security.encryption_key_file "
            f"(or the encryption-key credential) to the key with fingerprint {row.value}"
        )
    previous = previous_of(cipher)
    if row.value != cipher.fingerprint_hex and (previous is None or row.value != previous.fingerprint_hex):
        raise KeyNotConfigured(
            f"the configured encryption key (fingerprint {cipher.fingerprint_hex}) is not the key this "
            f"database is encrypted with (fingerprint {row.value}); when rotating to a new key, set "
            "security.previous_encryption_key_file to that key until `conduct-inbox db rekey` has finished"
        )
    return True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL + synchronous=FULL: a commit we acted on survives a power cut.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def _sqlite_crash_safe_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


#: `insert` of each dialect we run on, by dialect name (both have INSERT ... ON CONFLICT).
DIALECT_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def dialect_insert(session: Session) -> Any:
    """`insert` of the session's dialect, for INSERT ... ON CONFLICT."""
    return DIALECT_INSERTS[session.get_bind().dialect.name]


class HeldConnection:
    """One connection kept across many short transactions (no pool checkout and ping for each),
    replaced by a new one once it is found broken (a server restart, say)."""

    def __init__(self, engine: Engine, autocommit: bool = False):
        self.engine = engine
        self.autocommit = autocommit
        self._connection: Connection | None = None

    def get(self) -> Connection:
        connection = self._connection
        if connection is None or connection.invalidated or connection.closed:
            self.release()
            connection = self.engine.connect()
            if self.autocommit:
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self._connection = connection
        return connection

    def release(self) -> None:
        """Give the connection back to the pool (a broken one is discarded)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a broken connection: the pool discards it
                pass


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with sessions() as session, session.begin():
        yield session


def reseal(engine: Engine, batch: int = 200) -> int:
    """Write every sealed column again, so rows stored before the key was configured get encrypted.

    Returns the number of rows rewritten. Follow with a VACUUM (retention.compact) so the old
    plain pages are gone from the file.
    """
    from sqlalchemy import select
    from sqlalchemy.orm.attributes import flag_modified

    from conduct_inbox.store.models import Base, _Sealed

    if getattr(engine.dialect, "conduct_cipher", None) is None:
        raise EncryptionError("no encryption key is configured: set security.encryption_key_file first")
    check_key(engine)
    count = 0
    for mapper in Base.registry.mappers:
        sealed = [attr.key for attr in mapper.column_attrs if isinstance(attr.columns[0].type, _Sealed)]
        if not sealed:
            continue
        model = mapper.class_
        key = mapper.primary_key[0]
        last = None
        while True:
            with Session(engine) as session, session.begin():
                query = select(model).order_by(key).limit(batch)
                if last is not None:
                    query = query.where(key > last)
                rows = session.scalars(query).all()
                for row in rows:
                    for name in sealed:
                        if getattr(row, name) is not None:
                            flag_modified(row, name)
                count += len(rows)
                if rows:
                    last = mapper.primary_key_from_instance(rows[-1])[0]
            if len(rows) < batch:
                break
    cipher = engine.dialect.conduct_cipher  # type: ignore[attr-defined]  # set by make_engine
    if previous_of(cipher) is not None:  # every value was written again with the current key
        with Session(engine) as session, session.begin():
            session.merge(DatabaseMeta(name=_KEY_FINGERPRINT, value=cipher.fingerprint_hex))
    return count


#: The newest migration. The daemon compares the database against this without importing alembic
#: (about 11 MB of a long-running process); tests/test_migrations.py checks it is the real head.
SCHEMA_HEAD = "0006"


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("conduct_inbox.migrations")))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at the migration head."""
    current, head = current_revision(engine), SCHEMA_HEAD
    if current != head:
        raise DatabaseNotCurrent(
            f"database schema is at {current or 'nothing'}, code expects {head}: run `conduct-inbox db upgrade`"
        )
    check_key(engine)


def sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix):] not in ("", ":memory:"):
        return Path(url[len(prefix):])
    return None


class InstanceLock:
    """On SQLite only one daemon may run: an exclusive lock on a file beside the database."""

    def __init__(self, url: str):
        path = sqlite_path(url)
        self.path = None if path is None else path.with_name(path.name + ".lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        if self.path is None:
            return
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InstanceLocked(
                f"another conduct-inbox daemon is already running on this SQLite database (lock {self.path})"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
