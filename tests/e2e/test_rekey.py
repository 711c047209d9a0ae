"""Encryption-key rotation: the previous key still opens its values, lookups match values under
either key, `db rekey` moves everything to the new key in resumable batches (issue item 10)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import bindparam, func, select, text

from conduct_inbox.cases.acks import ACKS_SINCE as _ACKS_SINCE
from conduct_inbox.cli import main
from conduct_inbox.config import load_settings
from conduct_inbox.errors import ConfigError, EncryptionError, KeyNotConfigured
from conduct_inbox.shell.app import build_app
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.shell.engines import cipher_for, engine_for
from conduct_inbox.shell.intake import _EARLIER_COPY
from conduct_inbox.store import crypto, db, rekey
from conduct_inbox.store.models import Base, Case, InboundMessage, OutboxMessage, Party, Sanction, _Sealed
from tests.daemons import set_keys
from tests.harness import report
from tests.sentinels import ADDRESS, run_lifecycle

ORIGINAL_ID = "<rotation-original@example.net>"


#: One message, delivered again during the rotation: the same bytes (MIME boundaries included).
ORIGINAL = report(sender="original@example.net", message_id=ORIGINAL_ID,
                  attachments=[("evidence.txt", "text/plain", b"what was said")])


def sealed_models() -> list[tuple[Any, list[str]]]:
    models = []
    for mapper in Base.registry.mappers:
        names = [a.key for a in mapper.column_attrs if isinstance(a.columns[0].type, _Sealed)]
        if names:
            models.append((mapper.class_, names))
    return models


def read_everything(app: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every sealed value of every table, opened, as the daemon reads them."""
    found = {}
    with app.sessions() as session:
        for model, names in sealed_models():
            key = model.__mapper__.primary_key[0]
            rows = session.execute(select(key, *(getattr(model, n) for n in names)).order_by(key)).all()
            found[model.__tablename__] = [tuple(r) for r in rows]
    return found


def stored_fingerprints(url: str, only: str = "") -> dict[str, int]:
    """Fingerprints of the raw stored values in every sealed column (plain SQL, nothing opened)."""
    plain = db.make_engine(url)
    counts: dict[str, int] = {}
    try:
        with plain.connect() as connection:
            for model, names in sealed_models():
                if only and model.__tablename__ != only:
                    continue
                for name in names:
                    column = model.__table__.c[name]
                    for (value,) in connection.execute(text(f"SELECT {column.name} FROM {model.__tablename__}")):
                        if value is not None:
                            fingerprint = crypto.fingerprint_of(bytes(value) if isinstance(value, memoryview) else value)
                            label = "plain" if fingerprint is None else fingerprint.hex()
                            counts[label] = counts.get(label, 0) + 1
    finally:
        plain.dispose()
    return counts


def populate(harness: Any, smtp_receiver: Any) -> Any:
    """Rows in every table with sealed columns, through the daemon (and a sanction by hand)."""
    app = run_lifecycle(harness, smtp_receiver, close=False)
    harness.deliver(ORIGINAL)
    run_once(app)
    with app.sessions() as session, session.begin():
        ref = session.scalars(select(Case.ref).order_by(Case.id)).first()
        session.add(Sanction(case_ref=ref, target_address="pat@example.net", kind="ban", starts_on=date(2026, 1, 1)))
    found = read_everything(app)
    empty = [table for table, rows in found.items() if not rows]
    assert not empty, f"no rows in {empty}: the rotation would not be tested on them"
    return app


# ----- the keyring ---------------------------------------------------------------------------------


def test_a_keyring_seals_with_the_new_key_and_opens_both():
    old, new = crypto.generate_key(), crypto.generate_key()
    a = crypto.Cipher.from_text(old)
    ring = crypto.load_cipher(new, "", old)
    assert isinstance(ring, crypto.Keyring) and crypto.previous_of(ring).fingerprint == a.fingerprint
    under_a = crypto.seal_value(a, "Robin's report")
    assert crypto.open_value(ring, under_a) == "Robin's report"
    under_ring = crypto.seal_value(ring, "Robin's report")
    assert crypto.fingerprint_of(under_ring) == crypto.Cipher.from_text(new).fingerprint
    assert crypto.fingerprint_of(under_ring[: crypto.FINGERPRINT_PREFIX_TEXT]) == ring.fingerprint
    assert crypto.fingerprint_of("plain") is None
    stranger = crypto.seal_value(crypto.Cipher.from_text(crypto.generate_key()), b"bytes")
    with pytest.raises(EncryptionError, match="another key.*previous"):
        crypto.open_value(ring, stranger)
    with pytest.raises(EncryptionError, match="another key"):
        crypto.open_value(crypto.Cipher.from_text(new), under_a)  # the previous key removed too early


def test_previous_key_configuration(harness):
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    config = harness.config_path.read_text()

    def problems(security: str) -> list[str]:
        harness.config_path.write_text(config.replace("[security]\n", f"[security]\n{security}\n", 1))
        with pytest.raises(ConfigError) as caught:
            load_settings(harness.config_path, environ={})
        return caught.value.problems

    assert any(p.startswith("security.previous_encryption_key: set only with a new encryption_key")
               for p in problems(f'previous_encryption_key = "{key_a}"'))
    assert any("same key" in p for p in problems(f'encryption_key = "{key_a}"\nprevious_encryption_key = "{key_a}"'))
    assert any(p.startswith("security.previous_encryption_key:") and "keygen" in p
               for p in problems(f'encryption_key = "{key_b}"\nprevious_encryption_key = "not-a-key"'))
    assert all(key_a not in p and key_b not in p for p in problems(f'encryption_key = "{key_a}"\nprevious_encryption_key = "{key_a}"'))

    # The conventional credential name, like the other secrets.
    credentials = harness.folder / "credentials"
    credentials.mkdir()
    (credentials / "encryption-key").write_text(key_b + "\n")
    (credentials / "previous-encryption-key").write_text(key_a + "\n")
    harness.config_path.write_text(config)
    settings = load_settings(harness.config_path, environ={})
    assert settings.security.previous_encryption_key.get_secret_value() == key_a
    cipher = cipher_for(settings)
    assert isinstance(cipher, crypto.Keyring) and cipher.previous.fingerprint == crypto.Cipher.from_text(key_a).fingerprint


# ----- lookups during a rotation -------------------------------------------------------------------


def test_lookups_match_rows_under_either_key(database):
    """`==` and `in_` on a lookup column find a row sealed with the previous key: the plain
    values, literal lists and the daemon's named-parameter statements."""
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    now = datetime(2026, 11, 24, tzinfo=timezone.utc)
    old = db.make_engine(database.url, crypto.load_cipher(key_a, ""))
    with db.session_factory(old)() as session, session.begin():
        case = Case(ref="2026-0001", title="t", created_at=now, updated_at=now)
        session.add(case)
        session.flush()
        session.add(Party(case_id=case.id, role="reporter", address="robin@example.net", created_at=now))
        session.add(InboundMessage(mailbox="INBOX", uidvalidity=1, uid=1, raw=b"x", size=1, received_at=now,
                                   status="processed", message_id="<one@example.net>", sender="robin@example.net"))
        session.add(OutboxMessage(kind="ack", audience="reporter", recipient="robin@example.net",
                                  correspondent="robin@example.net", message_id="<ack@example.org>", subject="s",
                                  data=b"d", next_attempt_at=now, created_at=now))
    old.dispose()

    rotating = db.make_engine(database.url, crypto.load_cipher(key_b, "", key_a))
    only_new = db.make_engine(database.url, crypto.load_cipher(key_b, ""))
    try:
        for engine, expected in ((rotating, 1), (only_new, 0)):
            with db.session_factory(engine)() as session:
                assert len(session.scalars(select(Party.id).where(Party.address == "robin@example.net")).all()) == expected
                assert len(session.scalars(select(InboundMessage.id).where(
                    InboundMessage.message_id.in_(["<other@example.net>", "<one@example.net>"]))).all()) == expected
                assert len(session.scalars(select(InboundMessage.id).where(
                    InboundMessage.sender != "robin@example.net")).all()) == (0 if expected else 1)
                earlier = session.execute(_EARLIER_COPY, {"message_id": "<one@example.net>", "row_id": 0, "key": ""}).all()
                assert len(earlier) == expected
                with_default = select(Party.id).where(Party.address == bindparam("address", "robin@example.net"))
                assert len(session.scalars(with_default).all()) == expected
                assert len(session.scalars(with_default, {"address": "robin@example.net"}).all()) == expected
                acks = session.scalar(_ACKS_SINCE, {"correspondent": "robin@example.net", "since": now - timedelta(days=1)})
                assert acks == expected
    finally:
        rotating.dispose()
        only_new.dispose()


# ----- the whole rotation --------------------------------------------------------------------------


def test_rotation_moves_every_sealed_value_and_the_daemon_reads_throughout(harness, smtp_receiver, capsys):
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    fp_a, fp_b = (crypto.Cipher.from_text(k).fingerprint_hex for k in (key_a, key_b))
    set_keys(harness, key_a)
    app = populate(harness, smtp_receiver)
    before = read_everything(app)
    cases_before = len(before["cases"])
    harness.close()
    assert set(stored_fingerprints(harness.database_url)) == {fp_a}

    # Step 1: the new key current, the old one previous; the daemon restarts and reads everything.
    set_keys(harness, key_b, previous=key_a)
    app = harness.app()
    assert read_everything(app) == before
    # A second delivery of a report whose Message-ID is sealed with the old key is recognised.
    harness.deliver(ORIGINAL)
    run_once(app)
    with app.sessions() as session:
        assert session.scalar(select(func.count(Case.id))) == cases_before, "the repeat opened no new case"
        repeat = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert repeat.status == "duplicate"

    # Step 2: a rekey that stops after a few batches, as a crash would leave it: a mix of keys.
    partial = rekey.rekey(app.engine, batch=2, max_batches=3)
    assert not partial.finished and partial.moved > 0
    mixed = stored_fingerprints(harness.database_url)
    assert mixed.get(fp_a) and mixed.get(fp_b)
    assert rekey.survey(app.engine).previous == mixed[fp_a]
    # The daemon goes on meanwhile: it reads both keys and writes with the new one.
    expected = read_everything(app)
    harness.deliver(report(sender="meanwhile@example.net", subject="During the rotation"))
    run_once(app)
    assert {t: rows[: len(expected[t])] for t, rows in read_everything(app).items()} == expected
    with app.sessions() as session:
        assert session.scalars(select(Party.id).where(Party.address == ADDRESS)).all()
    assert main(["db", "rekey", "--check", "--config", str(harness.config_path)]) == 1
    assert "not done" in capsys.readouterr().out

    # Step 3: the rerun finishes the work; a third run has nothing to do.
    assert main(["db", "rekey", "--batch", "3", "--config", str(harness.config_path)]) == 0
    out = capsys.readouterr().out
    assert f"to the key with fingerprint {fp_b}" in out and "previous key may now be removed" in out
    assert set(stored_fingerprints(harness.database_url)) == {fp_b}
    assert main(["db", "rekey", "--config", str(harness.config_path)]) == 0
    assert capsys.readouterr().out.startswith("0 value(s) moved")
    assert main(["db", "rekey", "--check", "--config", str(harness.config_path)]) == 0
    final = read_everything(app)
    harness.close()

    # Step 4: the previous key removed: everything still reads, the database now names the new key.
    set_keys(harness, key_b)
    app = harness.app()
    assert read_everything(app) == final
    with app.sessions() as session:
        assert session.scalars(select(Party.id).where(Party.address == ADDRESS)).all()
    # The old key alone is now refused with the clear error.
    harness.close()
    set_keys(harness, key_a)
    with pytest.raises(KeyNotConfigured, match="not the key this database is encrypted with"):
        build_app(load_settings(harness.config_path, environ={}))


def test_a_rekey_that_fails_in_a_batch_loses_only_that_batch(harness, smtp_receiver, monkeypatch):
    """A failure in the middle of a batch (the second row of inbound_messages) rolls that batch
    back, including the row already written in it; the tables before stay done and a rerun
    completes the work."""
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    fp_a, fp_b = (crypto.Cipher.from_text(k).fingerprint_hex for k in (key_a, key_b))
    set_keys(harness, key_a)
    populate(harness, smtp_receiver)
    harness.close()
    set_keys(harness, key_b, previous=key_a)
    engine = engine_for(harness.settings())
    total = sum(stored_fingerprints(harness.database_url).values())

    real_move = rekey._move_row
    seen: list[Any] = []

    def failing_move(session: Any, cipher: Any, key: Any, row_id: Any, columns: Any) -> int:
        if key.table.name == "inbound_messages":
            seen.append(row_id)
            if len(seen) == 2:
                raise RuntimeError("the machine went away")
        return real_move(session, cipher, key, row_id, columns)

    monkeypatch.setattr(rekey, "_move_row", failing_move)
    with pytest.raises(RuntimeError):
        rekey.rekey(engine, batch=1000)
    inbound = stored_fingerprints(harness.database_url, only="inbound_messages")
    assert set(inbound) == {fp_a}, "the first row written in the failed batch was rolled back with it"
    partway = stored_fingerprints(harness.database_url)
    assert partway[fp_b] > 0, "the tables done before the failure stay done"
    monkeypatch.setattr(rekey, "_move_row", real_move)
    result = rekey.rekey(engine, batch=2)
    assert result.finished and result.after is not None and result.after.done
    assert result.moved == total - partway[fp_b]
    assert stored_fingerprints(harness.database_url) == {fp_b: total}
    engine.dispose()


def test_a_value_the_daemon_changes_while_rekey_runs_keeps_the_daemons_version(harness, smtp_receiver, monkeypatch):
    """Between rekey's read of a row and its write, the daemon changes a value (a purge, a new
    title): the write finds the value no longer the one it read and leaves the daemon's alone."""
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    set_keys(harness, key_a)
    populate(harness, smtp_receiver)
    harness.close()
    set_keys(harness, key_b, previous=key_a)
    app = harness.app()
    with app.sessions() as session:
        case_id, title = session.execute(select(Case.id, Case.title).order_by(Case.id)).first()

    real_seal = rekey.seal_value
    fired: list[bool] = []

    def daemon_writes_meanwhile(cipher: Any, value: Any, **kwargs: Any) -> Any:
        if value == title and not fired:  # rekey has read the old title and seals it again: the daemon is faster
            fired.append(True)
            with app.sessions() as other, other.begin():
                other.get(Case, case_id).title = "Changed meanwhile"
        return real_seal(cipher, value, **kwargs)

    monkeypatch.setattr(rekey, "seal_value", daemon_writes_meanwhile)
    result = rekey.rekey(app.engine)
    assert fired and result.after is not None and result.after.done
    with app.sessions() as session:
        assert session.get(Case, case_id).title == "Changed meanwhile"


def test_rekey_without_the_previous_key_refuses_in_one_line(harness, smtp_receiver, capsys):
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    set_keys(harness, key_a)
    populate(harness, smtp_receiver)
    harness.close()

    # The old key dropped instead of moved to previous_encryption_key_file.
    set_keys(harness, key_b)
    capsys.readouterr()
    assert main(["db", "rekey", "--config", str(harness.config_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "previous_encryption_key_file" in err

    # A database already recorded under the new key, holding a value under the old one (restored
    # from a backup, say): the rekey refuses before it moves anything; reading it is a clear error.
    set_keys(harness, key_b, previous=key_a)
    assert main(["db", "rekey", "--config", str(harness.config_path)]) == 0
    capsys.readouterr()
    stray = crypto.seal_value(crypto.Cipher.from_text(key_a), "Stray title")
    plain = db.make_engine(harness.database_url)
    with plain.begin() as connection:
        connection.execute(text("UPDATE cases SET title = :t WHERE id = (SELECT MIN(id) FROM cases)"), {"t": stray})
    plain.dispose()
    set_keys(harness, key_b)
    assert main(["db", "rekey", "--config", str(harness.config_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1 value(s) are sealed with another key" in err
    assert main(["db", "rekey", "--check", "--config", str(harness.config_path)]) == 1
    assert "1 under another key; cases.title 1" in capsys.readouterr().out
    app = harness.app()
    with app.sessions() as session, pytest.raises(EncryptionError, match="another key"):
        session.scalars(select(Case.title).order_by(Case.id)).first()


def test_reseal_during_a_rotation_also_moves_everything_to_the_new_key(harness, smtp_receiver, capsys):
    """`db reseal` writes every value again with the current key: afterwards the new key alone opens all."""
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    set_keys(harness, key_a)
    app = populate(harness, smtp_receiver)
    before = read_everything(app)
    harness.close()
    set_keys(harness, key_b, previous=key_a)
    assert main(["db", "reseal", "--config", str(harness.config_path)]) == 0
    assert set(stored_fingerprints(harness.database_url)) == {crypto.Cipher.from_text(key_b).fingerprint_hex}
    set_keys(harness, key_b)
    assert read_everything(harness.app()) == before


def test_rekey_without_a_key_says_so(harness, capsys):
    assert main(["db", "rekey", "--config", str(harness.config_path)]) == 2
    assert "no encryption key is configured" in capsys.readouterr().err
