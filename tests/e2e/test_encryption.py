"""Encryption at rest: sealed columns, key checks, `db reseal`, and a database file without the sentinels."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from conduct_inbox.cli import main
from conduct_inbox.config import load_settings
from conduct_inbox.errors import ConfigError, EncryptionError
from conduct_inbox.shell.app import build_app
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.shell.engines import engine_for
from conduct_inbox.store import crypto, db
from conduct_inbox.store.models import Case, InboundMessage, Party
from tests.sentinels import (
    ADDRESS,
    BODY,
    SUBJECT,
    alerts,
    database_dump,
    found_in,
    logged_text,
    mail_text,
    run_lifecycle,
    sentinel_report,
    with_encryption_key,
)

# ----- the cipher ---------------------------------------------------------------------------------


def test_sealed_values_open_only_with_their_key():
    cipher = crypto.Cipher.from_text(crypto.generate_key())
    other = crypto.Cipher.from_text(crypto.generate_key())
    sealed = crypto.seal_value(cipher, "Robin's report")
    assert isinstance(sealed, str) and "Robin" not in sealed
    assert crypto.open_value(cipher, sealed) == "Robin's report"
    assert crypto.seal_value(cipher, "same") != crypto.seal_value(cipher, "same")  # random nonce
    with pytest.raises(EncryptionError, match="another key"):
        crypto.open_value(other, sealed)
    with pytest.raises(EncryptionError, match="no key is configured"):
        crypto.open_value(None, sealed)
    assert crypto.open_value(None, "written before encryption") == "written before encryption"


def test_lookup_values_seal_the_same_so_equality_queries_work():
    cipher = crypto.Cipher.from_text(crypto.generate_key())
    one = crypto.seal_value(cipher, "robin@example.net", deterministic=True)
    assert one == crypto.seal_value(cipher, "robin@example.net", deterministic=True)
    assert one != crypto.seal_value(cipher, "robyn@example.net", deterministic=True)
    assert crypto.open_value(cipher, one) == "robin@example.net"


def test_altered_ciphertext_is_an_error_not_garbage():
    cipher = crypto.Cipher.from_text(crypto.generate_key())
    sealed = bytearray(crypto.seal_value(cipher, b"raw message bytes"))  # type: ignore[arg-type]
    sealed[-1] ^= 1
    with pytest.raises(EncryptionError, match="altered or is corrupt"):
        crypto.open_value(cipher, bytes(sealed))


def test_keygen_prints_a_usable_key(capsys):
    assert main(["keygen"]) == 0
    key = capsys.readouterr().out.strip()
    assert len(crypto.parse_key(key)) == 32


def test_a_malformed_key_file_is_a_config_error(harness):
    key_file = with_encryption_key(harness, "not-a-key")
    with pytest.raises(ConfigError) as caught:
        load_settings(harness.config_path, environ={})
    assert any("encryption_key" in p and "keygen" in p for p in caught.value.problems)
    key_file.unlink()
    with pytest.raises(ConfigError) as caught:
        load_settings(harness.config_path, environ={})
    assert any("encryption" in p for p in caught.value.problems)


# ----- the whole daemon with a key ----------------------------------------------------------------


def test_with_a_key_the_database_holds_no_report_contents(harness, smtp_receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="conduct_inbox")
    with_encryption_key(harness, crypto.generate_key())
    app = run_lifecycle(harness, smtp_receiver, close=False)

    # The daemon works as before: it reads back what it sealed.
    with app.sessions() as session:
        case = session.scalars(select(Case).order_by(Case.id)).first()
        assert case is not None and SUBJECT in case.title
        assert ADDRESS in session.scalars(select(Party.address).where(Party.address == ADDRESS)).all()
        assert any(BODY in (m.body_text or "") for m in session.scalars(select(InboundMessage)))
    assert any(BODY in mail_text(m) for m in smtp_receiver.to("bob@example.org"))

    app.close()
    dump = database_dump(harness.database_url)
    assert b"pat@example.net" not in dump  # party addresses are sealed too
    assert found_in(dump) == []
    assert found_in(logged_text(caplog.records)) == []
    assert alerts(app, smtp_receiver), "the error paths ran and alerted the committee"
    assert all(found_in(mail_text(m)) == [] for m in alerts(app, smtp_receiver))


def test_another_key_or_no_key_is_refused_with_a_clear_error(harness, smtp_receiver, capsys):
    with_encryption_key(harness, crypto.generate_key())
    harness.deliver(sentinel_report())
    run_once(harness.app())
    harness.close()

    with_encryption_key(harness, crypto.generate_key())  # a second key line replaces nothing: rewrite
    config = harness.config_path
    lines = [line for line in config.read_text().splitlines() if not line.startswith("encryption_key_file")]
    other = harness.folder / "other.key"
    other.write_text(crypto.generate_key())
    config.write_text("\n".join(lines).replace("[security]", f'[security]\nencryption_key_file = "{other}"', 1))
    with pytest.raises(EncryptionError, match="not the key this database is encrypted with"):
        build_app(load_settings(config, environ={}))
    assert main(["cases", "list", "--config", str(config)]) == 1
    assert "not the key" in capsys.readouterr().err

    config.write_text("\n".join(lines))
    with pytest.raises(EncryptionError, match="database is encrypted but no key is configured"):
        build_app(load_settings(config, environ={}))


def test_reseal_encrypts_rows_written_before_the_key(harness, smtp_receiver, capsys):
    harness.deliver(sentinel_report())
    run_once(harness.app())
    harness.close()
    assert found_in(database_dump(harness.database_url)), "without a key the contents are plain"

    with_encryption_key(harness, crypto.generate_key())
    assert main(["db", "reseal", "--config", str(harness.config_path)]) == 0
    assert "row(s) written again" in capsys.readouterr().out
    assert found_in(database_dump(harness.database_url)) == []
    app = harness.app()
    with app.sessions() as session:
        assert SUBJECT in session.scalars(select(Case.title)).first()


def test_reseal_without_a_key_says_so(harness, capsys):
    assert main(["db", "reseal", "--config", str(harness.config_path)]) == 1
    assert "no encryption key is configured" in capsys.readouterr().err


def test_engine_for_uses_the_configured_key(harness):
    with_encryption_key(harness, crypto.generate_key())
    engine = engine_for(harness.settings())
    assert engine.dialect.conduct_cipher is not None  # type: ignore[attr-defined]
    engine.dispose()


@pytest.mark.parametrize("size", ["small", "large"])
def test_one_corrupt_outgoing_mail_fails_alone_with_an_alert_and_the_rest_go_out(harness, smtp_receiver, size):
    """A stored mail that no longer decrypts (altered, or bit rot) must not hold up all outgoing
    mail behind it: that row fails for good, the committee is alerted (row id only), the others
    are sent. A small mail is read with the claim, a large one when its turn comes."""
    from sqlalchemy import text

    from conduct_inbox.store.models import OutboxMessage
    from tests.harness import MEMBERS, report

    with_encryption_key(harness, crypto.generate_key())
    video = [("clip.mp4", "video/mp4", bytes(range(256)) * 1600)] if size == "large" else []  # over READ_WITH_CLAIM
    harness.deliver(report(sender="corrupt@example.net", attachments=video))
    app = harness.app()
    app.intake.poll_once()
    plain = db.make_engine(harness.database_url)  # plain SQL: the stored bytes as they are
    with plain.begin() as connection:
        rows = connection.execute(text("SELECT id, data FROM outbox ORDER BY id")).all()
        assert len(rows) == 1 + len(MEMBERS)
        bad_id, sealed = rows[1][0], bytes(rows[1][1])  # a member's copy, after the acknowledgement
        assert crypto.is_sealed(sealed)
        altered = sealed[:-1] + bytes([sealed[-1] ^ 1])
        connection.execute(text("UPDATE outbox SET data = :data WHERE id = :id"), {"data": altered, "id": bad_id})
    plain.dispose()

    import asyncio

    report_ = asyncio.run(app.dispatcher.flush_all(harness.clock()))

    with app.sessions() as session:
        statuses = dict(session.execute(select(OutboxMessage.id, OutboxMessage.status).where(OutboxMessage.kind != "alert")).all())
        alert_rows = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "alert")).all()
        reason = session.scalar(select(OutboxMessage.last_error).where(OutboxMessage.id == bad_id))
    assert reason == "stored mail cannot be decrypted"
    assert statuses == {row_id: ("failed" if row_id == bad_id else "sent") for row_id, _ in rows}
    assert smtp_receiver.to("corrupt@example.net"), "the acknowledgement went out"
    assert alert_rows and {a.status for a in alert_rows} == {"sent"}
    assert report_.sent == len(rows) - 1 + len(alert_rows)
    texts = [mail_text(m) for m in alerts(app, smtp_receiver)]
    assert texts and all(f"outbox row {bad_id}" in t and "corrupt@example.net" not in t for t in texts)
