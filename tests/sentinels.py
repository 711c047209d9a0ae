"""A case lifecycle whose reporter name, address, subject and body are unique sentinel strings,
including error paths (a rejected recipient, a database error, a quarantined message), and the
places those strings must never reach."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text

from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import OutboxMessage
from tests.harness import Harness, parsed, report, text_of

NAME = "Zyxwv Sentinelname"
ADDRESS = "sentinel-addr-93@example.net"
SUBJECT = "SENTINEL-SUBJECT-5521"
BODY = "SENTINEL-BODY-8812"
SENTINELS = (NAME, ADDRESS, SUBJECT, BODY)


def sentinel_report(**overrides: Any) -> bytes:
    fields = dict(name=NAME, sender=ADDRESS, subject=SUBJECT, body=f"It happened at the sprint. {BODY}")
    fields.update(overrides)
    return report(**fields)


def with_encryption_key(harness: Harness, key: str) -> Path:
    """Point the harness config at a key file holding `key`."""
    key_file = harness.folder / "encryption.key"
    key_file.write_text(key + "\n")
    config = harness.config_path
    config.write_text(config.read_text().replace("[security]\n", f'[security]\nencryption_key_file = "{key_file}"\n', 1))
    return key_file


def member_reply(record, sender: str, subject_suffix: str, body: str) -> bytes:
    from tests.mailers import reply

    return reply(record, sender, subject_suffix, body)


def run_lifecycle(harness: Harness, receiver, close: bool = True):  # type: ignore[no-untyped-def]
    """Report, a failed delivery, a database error, a quarantined copy, notes, a reply, a decision, closing."""
    from conduct_inbox.adapters.parsing import WorkerParser
    from tests.faults import faulty_parse

    harness.parser = WorkerParser(timeout=1.0, function=faulty_parse)
    app = harness.app()
    receiver.reject_rcpt[ADDRESS] = f"550 5.1.1 <{ADDRESS}>: unknown user {NAME}"
    harness.deliver(sentinel_report())
    harness.deliver(sentinel_report(message_id="<crash-sentinel@example.net>", headers={"X-Test-Fault": "crash"}))
    for _ in range(4):
        run_once(app)
    del receiver.reject_rcpt[ADDRESS]

    # A real database fault while a follow-up is processed: the outbox table is missing for a moment.
    with app.engine.begin() as conn:
        conn.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
    from sqlalchemy import select

    from conduct_inbox.store.models import Case

    with app.sessions() as session:
        ref = session.scalars(select(Case.ref)).one()
    tag = app.settings.committee.case_tag
    harness.deliver(sentinel_report(message_id="<followup-sentinel@example.net>", subject=f"Re: [{tag} #{ref}] {SUBJECT}",
                                    body=f"More about it. {BODY}"))
    run_once(app)
    with app.engine.begin() as conn:
        conn.execute(text("ALTER TABLE outbox_away RENAME TO outbox"))
    run_once(app)
    with app.sessions() as session:
        assert session.scalars(select(Case.ref)).all() == [ref], "the follow-up joined the case"

    alice_copy = receiver.to("alice@example.org")[0]
    for suffix, body in (("!ack", "Looking at it."), ("", "Internal note about the report."),
                         ("!reply", "Thank you, we are on it."),
                         ("!party reported pat@example.net Pat Person", ""),
                         ("!decide private-reprimand target=reported", "")):
        harness.deliver(member_reply(alice_copy, "alice@example.org", suffix, body))
        run_once(app)
    if close:
        harness.deliver(member_reply(alice_copy, "alice@example.org", "!close", ""))
        run_once(app)
    return app


def alerts(app, receiver) -> list:  # type: ignore[no-untyped-def]
    """The alert mails the members received (quarantine, failed delivery...)."""
    from sqlalchemy import select

    with app.sessions() as session:
        ids = set(session.scalars(select(OutboxMessage.message_id).where(OutboxMessage.kind == "alert")))
    return [m for m in receiver.messages if str(parsed(m)["Message-ID"]).strip("<>") in ids]


def mail_text(record) -> str:  # type: ignore[no-untyped-def]
    return f"{parsed(record)['Subject']}\n{text_of(record)}"


def logged_text(records: list[logging.LogRecord]) -> str:
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in records)


def found_in(haystack: str | bytes) -> list[str]:
    """Which sentinels occur in the text or bytes (case-insensitive)."""
    if isinstance(haystack, bytes):
        haystack = haystack.decode("latin-1")
    low = haystack.lower()
    return [s for s in SENTINELS if s.lower() in low]


def database_dump(url: str) -> bytes:
    """Everything the database holds: the SQLite files' bytes, or every PostgreSQL row as text."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            chunks = []
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    chunks.extend(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in row)
            return b"\n".join(chunks)
    finally:
        engine.dispose()
