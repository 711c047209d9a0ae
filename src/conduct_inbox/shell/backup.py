"""Backups of an SQLite case database, taken while the daemon runs, and restoring one.

`backup` copies the database with SQLite's online backup API (a consistent snapshot, the daemon
keeps writing) and folds the sent log's side file (`<database>-sent`) into the copy, so that a
mail the server accepted is not sent again from the copy. The copy records when it was taken
(`database_meta` "backup-taken-at"): the point from which `recovery` looks for lost reports.

`restore` puts a backup in place of the database while no daemon runs, folds in what the live
side file still holds (rows are matched by id and Message-ID, so only mail the backup knows is
marked), and marks the database "recovery pending": the next `recover` (run by the restore
command itself) fences off the case references issued since and takes the lost reports in again.

PostgreSQL has its own tools (pg_dump / pg_restore); README shows them. Then `recover` alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from conduct_inbox.config import Settings
from conduct_inbox.errors import BackupFailed, ConfigError, InstanceLocked
from conduct_inbox.shell.engines import cipher_for
from conduct_inbox.store import db
from conduct_inbox.store.sent_log import MARK_SENT, SideFileLog

TAKEN_AT = "backup-taken-at"
RECOVERY_PENDING = "recovery-pending"
COMMITTEE = "backup-committee"  # whose database: the committee address and the mailbox account


def _owner(settings: Settings) -> str:
    box = settings.mailbox
    account = f"{box.username}@{box.host}" if box.host else str(box.maildir)
    return f"{settings.committee.address.lower()} {account}"[:200]


@dataclass(frozen=True)
class BackupResult:
    path: Path
    taken_at: datetime
    folded: int  # sent-log records folded into the copy


def _database_file(settings: Settings) -> Path:
    path = db.sqlite_path(settings.database.url)
    if path is None:
        raise ConfigError([
            "database: `backup` and `restore` copy an SQLite database file; for PostgreSQL use pg_dump and "
            "pg_restore, then `conduct-inbox recover` (README, \"Backup and restore\")"
        ])
    return path


def _set_meta(engine: Engine, name: str, value: str | None) -> None:
    from sqlalchemy import delete, insert

    from conduct_inbox.store.models import DatabaseMeta

    table = DatabaseMeta.__table__
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.name == name))
        if value is not None:
            connection.execute(insert(table).values(name=name, value=value))


def _fold_side_file(engine: Engine, side_file: Path) -> int:
    """Mark as sent, in `engine`'s outbox, the mails the side file records (exact rows only)."""
    if not side_file.exists():
        return 0
    log = SideFileLog(side_file)
    try:
        records = log.unfolded()
    finally:
        log.close()
    with engine.begin() as connection:
        for row_id, (message_id, sent_at) in records.items():
            connection.execute(MARK_SENT, {"row_id": row_id, "mid": message_id, "sent": sent_at})
    return len(records)


def _copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while writers go on (they wait only per step)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst, pages=1024)
        finally:
            dst.close()
    finally:
        src.close()


def _check(path: Path) -> None:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = connection.execute("PRAGMA integrity_check").fetchone()
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise BackupFailed(f"{path} is not an SQLite database ({exc})") from None
    finally:
        connection.close()
    if not result or result[0] != "ok":
        raise BackupFailed(f"{path} failed SQLite's integrity check")
    if not {"cases", "outbox", "database_meta", "alembic_version"} <= tables:
        raise BackupFailed(f"{path} is not a conduct-inbox database")


def owned_like_their_folder(database: Path) -> None:
    """Run as root (a cron job, `sudo ... restore`), SQLite may leave the database and its side files
    (-wal, -shm, -sent, .lock) owned by root beside a daemon running as its own user, which then
    cannot open them: they get the owner of the folder they are in, as the daemon's own files have."""
    if os.geteuid() != 0:
        return
    folder = database.parent.stat()
    for path in database.parent.glob(database.name + "*"):
        info = path.lstat()
        if (info.st_uid, info.st_gid) != (folder.st_uid, folder.st_gid) and not path.is_symlink():
            os.chown(path, folder.st_uid, folder.st_gid)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(settings: Settings, dest: Path, now: datetime) -> BackupResult:
    """A consistent copy of the live database at `dest` (a file, or a folder to put it in)."""
    source = _database_file(settings)
    if not source.exists():
        raise BackupFailed(f"no database at {source} (run `conduct-inbox db upgrade` first)")
    if dest.is_dir() or str(dest).endswith(os.sep) or not dest.suffix:
        # A folder (created if absent): a dated file named for the committee too, so that several
        # committees (conduct-inbox@NAME, each with its cases.db) can back up into one folder.
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        owner = re.sub(r"[^a-z0-9.@-]+", "_", settings.committee.address.lower()).replace("@", "_at_")
        instance = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]  # one per database file
        dest = dest / f"{source.stem}-{now.strftime('%Y%m%dT%H%M%SZ')}-{owner}-{instance}{source.suffix or '.db'}"
    elif not dest.parent.is_dir():
        raise BackupFailed(f"no folder {dest.parent} for the backup")
    if dest.resolve() == source.resolve():
        raise BackupFailed("the backup must not be the database itself")
    partial = dest.with_name(dest.name + ".partial")
    partial.unlink(missing_ok=True)
    old_umask = os.umask(0o077)  # the copy holds what the database holds: readable by its owner only
    try:
        _copy(source, partial)
    finally:
        os.umask(old_umask)
    try:
        engine = db.make_engine(f"sqlite:///{partial}", cipher_for(settings))
        try:
            folded = _fold_side_file(engine, source.with_name(source.name + "-sent"))
            _set_meta(engine, TAKEN_AT, now.isoformat())
            _set_meta(engine, COMMITTEE, _owner(settings))
            # The copy itself says it needs a recovery: put in place by any means (`restore`, or a
            # plain file copy), the daemon refuses to run on it until `recover` has fenced off the
            # references issued since and taken the lost reports in again.
            _set_meta(engine, RECOVERY_PENDING, now.isoformat())
        finally:
            engine.dispose()
        # A backup is one self-contained file: no write-ahead log beside it.
        connection = sqlite3.connect(partial)
        try:
            connection.execute("PRAGMA journal_mode=DELETE")
        finally:
            connection.close()
        _check(partial)
        _fsync(partial)
        os.replace(partial, dest)
        _fsync(dest.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        owned_like_their_folder(source)
    return BackupResult(dest, now, folded)


def _backup_facts(path: Path) -> tuple[datetime | None, str | None]:
    """When the backup file was taken and whose it is, read before anything is replaced."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = dict(connection.execute("SELECT name, value FROM database_meta WHERE name IN (?, ?)", (TAKEN_AT, COMMITTEE)))
    finally:
        connection.close()
    taken = rows.get(TAKEN_AT)
    return (datetime.fromisoformat(taken) if taken else None), rows.get(COMMITTEE)


def meta_value(engine: Engine, name: str) -> str | None:
    """One fact the database records about itself (`database_meta`), if it records it."""
    from sqlalchemy import select

    from conduct_inbox.store.models import DatabaseMeta

    with engine.connect() as connection:
        value: str | None = connection.execute(select(DatabaseMeta.value).where(DatabaseMeta.name == name)).scalar()
    return value


def taken_at(engine: Engine) -> datetime | None:
    """When the backup this database was restored from (or is) was taken, if it says."""
    value = meta_value(engine, TAKEN_AT)
    return datetime.fromisoformat(value) if value else None


def require_no_pending_recovery(engine: Engine) -> None:
    """Refuse to run on a restored database whose recovery has not run: it would hand out again the
    case references issued after the backup."""
    pending = meta_value(engine, RECOVERY_PENDING)
    if pending:
        raise BackupFailed("this database was restored from a backup and its recovery has not run: "
                           "run `conduct-inbox recover` first")


def restore(settings: Settings, source: Path, *, force: bool = False) -> datetime:
    """Put the backup `source` in place of the database (no daemon may run); returns when it was taken."""
    target = _database_file(settings)
    if not source.is_file():
        raise BackupFailed(f"no backup at {source}")
    _check(source)
    when, committee = _backup_facts(source)
    if when is None:
        raise BackupFailed(f"{source} does not say when it was taken (not made by `conduct-inbox backup`)")
    if committee is not None and committee != _owner(settings) and not force:
        raise BackupFailed(f"{source} is a backup of another committee's database (its committee address or mailbox "
                           "account differs from this configuration's; --force if the mailbox was only renamed)")
    lock = db.InstanceLock(settings.database.url)
    try:
        lock.acquire()
    except InstanceLocked:
        raise BackupFailed("the daemon is running on this database: stop it first (systemctl stop conduct-inbox)") from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Through the backup API, not a file copy: the target's WAL and shared memory stay consistent.
        _copy(source, target)
        engine = db.make_engine(settings.database.url, cipher_for(settings))
        try:
            # Mail the live database recorded as sent since its last fold is not sent again.
            _fold_side_file(engine, target.with_name(target.name + "-sent"))
            _set_meta(engine, RECOVERY_PENDING, when.isoformat())
        finally:
            engine.dispose()
    finally:
        lock.release()
        owned_like_their_folder(target)
    return when
