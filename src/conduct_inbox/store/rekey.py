"""Key rotation: `conduct-inbox db rekey` moves every sealed value to the current encryption key.

The daemon runs with the new key as `security.encryption_key_file` and the old one as
`security.previous_encryption_key_file` (crypto.Keyring): it seals with the new key and opens
values under either, and lookups match both (models.SealedLookup). `rekey` then goes through
every table with sealed columns in batches of rows, each batch its own transaction:

- it reads only the first bytes of each value (enough for the key fingerprint), so values already
  under the current key cost almost nothing and a rerun after a crash continues where work is left;
- a value under the previous key, or plain (written before a key was set), is read in full for
  its row alone, sealed with the current key and written back only if it is still what was read
  (the daemon may have changed or purged it meanwhile: then its own write stands);
- a crash loses at most the batch in flight.

When nothing is left under another key, the database's recorded key fingerprint becomes the
current key's and the previous key may be removed from the configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Column, CursorResult, Engine, Table, Text, func, literal, select, type_coerce, update
from sqlalchemy.orm import Session

from conduct_inbox.errors import EncryptionError, KeyNotConfigured
from conduct_inbox.store.crypto import (
    FINGERPRINT_PREFIX_BYTES,
    FINGERPRINT_PREFIX_TEXT,
    Cipher,
    fingerprint_of,
    open_value,
    previous_of,
    seal_value,
)
from conduct_inbox.store.db import _KEY_FINGERPRINT, check_key
from conduct_inbox.store.models import Base, DatabaseMeta, _Sealed

log = logging.getLogger(__name__)

BATCH = 200


@dataclass
class Survey:
    """Sealed values by the key they are under: counts only, never a value."""

    current: int = 0
    previous: int = 0
    plain: int = 0
    #: Values under a key that is neither configured one, by fingerprint (hex).
    unknown: dict[str, int] = field(default_factory=dict)
    #: Values not yet under the current key (previous, plain or unknown), by "table.column".
    left: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return not self.left


@dataclass
class Result:
    moved: int = 0
    batches: int = 0
    #: Every table gone through (False: stopped at `max_batches`).
    finished: bool = False
    after: Survey | None = None


def _raw_tables() -> Iterator[tuple[Table, Column[Any], list[Column[Any]]]]:
    """Each table with sealed columns, as columns of their storage types (no sealing on the way)."""
    for table in Base.metadata.sorted_tables:
        sealed = [c for c in table.columns if isinstance(c.type, _Sealed)]
        if not sealed:
            continue
        (key,) = table.primary_key.columns
        yield table, key, sealed


def _sealed(column: Column[Any]) -> _Sealed:
    """The sealed type of a column _raw_tables gave."""
    kind = column.type
    assert isinstance(kind, _Sealed), column
    return kind


def _raw(column: Column[Any]) -> Any:
    """The column read and written as stored: sealed text or bytes, not opened."""
    return type_coerce(column, _sealed(column).impl_instance)


def _prefix(column: Column[Any]) -> Any:
    length = FINGERPRINT_PREFIX_TEXT if isinstance(_sealed(column).impl_instance, Text) else FINGERPRINT_PREFIX_BYTES
    return func.substr(_raw(column), 1, length, type_=_sealed(column).impl_instance).label(column.name)


def _classify(cipher: Cipher, prefix: Any) -> str:
    """"current", "previous", "plain", or the hex fingerprint of an unknown key."""
    fingerprint = fingerprint_of(prefix)
    if fingerprint is None:
        return "plain"
    if fingerprint == cipher.fingerprint:
        return "current"
    previous = previous_of(cipher)
    if previous is not None and fingerprint == previous.fingerprint:
        return "previous"
    return fingerprint.hex() or "corrupt"


def _cipher(engine: Engine) -> Cipher:
    cipher: Cipher | None = getattr(engine.dialect, "conduct_cipher", None)
    if cipher is None:
        raise KeyNotConfigured("no encryption key is configured: set security.encryption_key_file first")
    return cipher


def survey(engine: Engine, batch: int = 2000) -> Survey:
    """Count every sealed value by the key it is under, reading a few bytes of each."""
    cipher = _cipher(engine)
    result = Survey()
    for table, key, columns in _raw_tables():
        last = None
        while True:
            with engine.connect() as connection:
                query = select(key, *(_prefix(c) for c in columns)).order_by(key).limit(batch)
                if last is not None:
                    query = query.where(key > last)
                rows = connection.execute(query).all()
            for row in rows:
                for column in columns:
                    value = row._mapping[column.name]
                    if value is None:
                        continue
                    kind = _classify(cipher, value)
                    if kind == "current":
                        result.current += 1
                        continue
                    if kind in ("previous", "plain"):
                        setattr(result, kind, getattr(result, kind) + 1)
                    else:
                        result.unknown[kind] = result.unknown.get(kind, 0) + 1
                    name = f"{table.name}.{column.name}"
                    result.left[name] = result.left.get(name, 0) + 1
            if len(rows) < batch:
                break
            last = rows[-1][0]
    return result


def _refuse_unknown(cipher: Cipher, found: Survey) -> None:
    if not found.unknown:
        return
    keys = ", ".join(sorted(found.unknown))
    previous = previous_of(cipher)
    if previous is None:
        raise KeyNotConfigured(
            f"{sum(found.unknown.values())} value(s) are sealed with another key (fingerprint {keys}): set "
            "security.previous_encryption_key_file to that key, then run `conduct-inbox db rekey` again"
        )
    raise KeyNotConfigured(
        f"{sum(found.unknown.values())} value(s) are sealed with a key (fingerprint {keys}) that is neither "
        f"the current key ({cipher.fingerprint_hex}) nor the previous one ({previous.fingerprint_hex})"
    )


def rekey(engine: Engine, batch: int = BATCH, max_batches: int | None = None) -> Result:
    """Move every sealed value not under the current key to it; see the module's docstring.

    `max_batches`: stop after that many batches (a partial run, as a crash would leave it)."""
    cipher = _cipher(engine)
    check_key(engine)  # the database's key is the current or the previous one (else KeyNotConfigured)
    _refuse_unknown(cipher, survey(engine))
    result = Result()
    for table, key, columns in _raw_tables():
        last = None
        while True:
            if max_batches is not None and result.batches >= max_batches:
                log.info("rekey stopped after %d batch(es), %d value(s) moved", result.batches, result.moved)
                return result
            with Session(engine) as session, session.begin():
                query = select(key, *(_prefix(c) for c in columns)).order_by(key).limit(batch)
                if last is not None:
                    query = query.where(key > last)
                rows = session.execute(query).all()
                for row in rows:
                    todo = [c for c in columns if row._mapping[c.name] is not None
                            and _classify(cipher, row._mapping[c.name]) != "current"]
                    if todo:
                        result.moved += _move_row(session, cipher, key, row[0], todo)
            result.batches += 1
            if len(rows) < batch:
                break
            last = rows[-1][0]
        log.info("rekey: table %s done, %d value(s) moved so far", table.name, result.moved)
    result.finished = True
    result.after = survey(engine)
    if result.after.done:
        with Session(engine) as session, session.begin():
            session.merge(DatabaseMeta(name=_KEY_FINGERPRINT, value=cipher.fingerprint_hex))
    return result


def _move_row(session: Session, cipher: Cipher, key: Column[Any], row_id: Any, columns: list[Column[Any]]) -> int:
    """Seal these columns of one row with the current key; each written only if unchanged since read."""
    stored = session.execute(select(*(_raw(c).label(c.name) for c in columns)).where(key == row_id)).one()
    moved = 0
    for column in columns:
        old = stored._mapping[column.name]
        if old is None:
            continue
        if isinstance(old, memoryview):
            old = bytes(old)
        kind = _classify(cipher, old)
        if kind == "current":
            continue
        if kind not in ("previous", "plain"):
            raise EncryptionError(f"a value in {column.table.name} row {row_id} is sealed with an unknown key ({kind})")
        new = seal_value(cipher, open_value(cipher, old), deterministic=_sealed(column).deterministic)
        done = cast(CursorResult[Any], session.execute(  # an UPDATE's result is a CursorResult
            update(column.table)
            .where(key == row_id, _raw(column) == old)
            .values({column.name: _raw_value(column, new)})
        ))
        moved += done.rowcount or 0
    return moved


def _raw_value(column: Column[Any], value: Any) -> Any:
    return literal(value, type_=_sealed(column).impl_instance)
