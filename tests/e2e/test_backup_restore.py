"""Backup while the daemon runs, restore an older backup, recover what came after: no report lost,
no second acknowledgement, and nothing issued in the lost stretch can address another case or mail.

Real Dovecot + aiosmtpd + SQLite (`backup`/`restore` copy an SQLite file; PostgreSQL has
pg_dump, and `recover` alone, tested at the end)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from conduct_inbox import cli
from conduct_inbox.shell.backup import BackupFailed, backup, require_no_pending_recovery, restore
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.shell.recovery import recover
from conduct_inbox.store.models import Case, Event, InboundMessage, OutboxMessage
from tests.harness import count, delivery_report, parsed, report, text_of
from tests.mailers import reply

ALICE, BOB = "alice@example.org", "bob@example.org"
EARLY, LATE, AFTER = "early@example.net", "late@example.net", "after@example.net"


@pytest.fixture
def sqlite_only(database):
    if not database.url.startswith("sqlite"):
        pytest.skip("backup and restore copy an SQLite file (PostgreSQL: pg_dump, see README)")


def acks_to(receiver, address: str) -> list:
    return [m for m in receiver.to(address) if "acknowledg" in text_of(m).lower() or "received" in text_of(m).lower()]


def refs(app) -> list[str]:
    with app.sessions() as session:
        return list(session.scalars(select(Case.ref).order_by(Case.id)))


def alerts(receiver, address: str, before: int = 0) -> list:
    return [m for m in receiver.to(address)[before:] if "Alert" in str(parsed(m)["Subject"])]


def lost_stretch(harness, smtp_receiver, tmp_path: Path, take_backup=None):
    """One report before the backup, then a backup, then a report, a member's command and a
    follow-up that only the lost stretch knows. Returns the backup file and the mail of the stretch."""
    app = harness.app()
    harness.deliver(report(sender=EARLY, body="First report, before the backup."))
    run_once(app)
    early_copy = smtp_receiver.to(ALICE)[0]
    if take_backup is None:
        dest = backup(harness.settings(), tmp_path / "backup.db", harness.clock()).path
    else:
        dest = take_backup()
    harness.clock.advance(hours=2)
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT after the backup."))
    run_once(app)
    late_copy = smtp_receiver.to(ALICE)[-1]
    assert "LATE-REPORT-TEXT" in text_of(late_copy)
    harness.deliver(reply(late_copy, ALICE, "!ack", "Taking this."))
    run_once(app)
    early_ack = smtp_receiver.to(EARLY)[0]
    harness.deliver(reply(early_ack, EARLY, "", "A follow-up: EARLY-FOLLOWUP-TEXT").replace(
        f"From: {EARLY}".encode(), f"From: Early Reporter <{EARLY}>".encode()))
    run_once(app)
    assert refs(app) == ["2026-0001", "2026-0002"]
    app.close()
    harness.apps.remove(app)
    return dest, early_copy, late_copy


def test_restore_recovers_reports_without_a_second_ack_and_fences_the_lost_stretch(harness, smtp_receiver, sqlite_only, tmp_path):
    backup_file, early_copy, late_copy = lost_stretch(harness, smtp_receiver, tmp_path)
    late_ack = smtp_receiver.to(LATE)
    assert len(late_ack) == 1
    alerts_before = len(smtp_receiver.to(BOB))

    harness.clock.advance(hours=1)
    restore(harness.settings(), backup_file)
    with pytest.raises(BackupFailed, match="recover"):  # the daemon will not run before the recovery
        app = harness.app()
        require_no_pending_recovery(app.engine)
    result = recover(harness.settings(), harness.clock)
    app = harness.app()
    run_once(app)

    # The late report is a case again, under a reference the lost stretch cannot have used.
    now_refs = refs(app)
    assert now_refs[0] == "2026-0001" and len(now_refs) == 2
    assert now_refs[1] not in ("2026-0002", "2026-0003") and result.new_cases == [now_refs[1]]
    with app.sessions() as session:
        late_case = session.scalars(select(Case).where(Case.ref == now_refs[1])).one()
        assert late_case.party("reporter").address == LATE
        # its text reached the committee again, the follow-up joined case 0001 again, the !ack was not replayed
        assert late_case.status == "new"
        followups = session.scalars(select(Event).where(Event.action == "followup_received")).all()
        assert len(followups) == 1
        assert count(app, InboundMessage, InboundMessage.status == "dropped") >= 1
    assert len(smtp_receiver.to(LATE)) == 1, "the reporter got a second acknowledgement"
    copies = [m for m in smtp_receiver.to(BOB) if "LATE-REPORT-TEXT" in text_of(m)]
    assert len(copies) == 2 and "recovered after a database restore" in text_of(copies[-1])
    summary = alerts(smtp_receiver, BOB, alerts_before)
    assert len(summary) == 1 and now_refs[1] in text_of(summary[0]) and "not carried out again: 1" in text_of(summary[0])
    assert "LATE-REPORT-TEXT" not in text_of(summary[0])

    # Alice answers the lost stretch's copy of 2026-0002: refused as an unknown case, the committee told once.
    sent = len(smtp_receiver.messages)
    harness.deliver(reply(late_copy, ALICE, "!status investigating", "Any news?"))
    run_once(app)
    harness.deliver(reply(late_copy, ALICE, "!close", "Closing."))
    run_once(app)
    new = smtp_receiver.messages[sent:]
    assert not any(now_refs[1] in str(parsed(m)["Subject"]) for m in new), "a lost-stretch reference acted on another case"
    told = [m for m in new if "2026-0002" in text_of(m) and "restore" in text_of(m) and BOB in m.rcpt_tos]
    assert len(told) == 1, "the committee must be told once about mail for a lost reference"
    with app.sessions() as session:
        assert session.scalars(select(Case.status).where(Case.ref == now_refs[1])).one() == "new"

    # A new report gets a fresh reference and its acknowledgement, as always.
    harness.deliver(report(sender=AFTER, body="A new report after the restore."))
    run_once(app)
    assert refs(app)[-1] > now_refs[1] and len(smtp_receiver.to(AFTER)) == 1

    # A late delivery report for the lost stretch's acknowledgement fails no mail of today.
    harness.deliver(delivery_report(late_ack[0].mail_from, LATE, str(parsed(late_ack[0])["Message-ID"])))
    run_once(app)
    assert count(app, OutboxMessage, OutboxMessage.status == "failed") == 0

    # Running the recovery again changes nothing.
    again = recover(harness.settings(), harness.clock)
    assert again.new_cases == [] and again.fenced == {}


def test_backup_command_and_restore_command(harness, smtp_receiver, sqlite_only, tmp_path, capsys):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    folder = tmp_path / "backups"
    folder.mkdir()
    assert cli.main(["--config", str(harness.config_path), "backup", str(folder)]) == 0
    files = list(folder.iterdir())
    assert len(files) == 1 and files[0].stat().st_mode & 0o077 == 0  # readable by its owner only
    assert "backup written to" in capsys.readouterr().out
    # Restoring while the daemon holds its lock is refused.
    from conduct_inbox.store import db

    lock = db.InstanceLock(harness.settings().database.url)
    lock.acquire()
    try:
        assert cli.main(["--config", str(harness.config_path), "restore", str(files[0])]) == 1
        assert "stop it first" in capsys.readouterr().err
    finally:
        lock.release()
    app.close()
    harness.apps.remove(app)
    assert cli.main(["--config", str(harness.config_path), "restore", str(files[0])]) == 0
    out = capsys.readouterr().out
    assert "database restored" in out and "will not be issued again" in out
    assert cli.main(["--config", str(harness.config_path), "restore", str(tmp_path / "nothing.db")]) == 1


def test_backup_of_postgresql_points_to_pg_dump(harness, database, tmp_path, capsys):
    if database.url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    assert cli.main(["--config", str(harness.config_path), "backup", str(tmp_path)]) == 2
    assert "pg_dump" in capsys.readouterr().err


def test_postgresql_pg_dump_pg_restore_then_recover(harness, smtp_receiver, database, tmp_path):
    """README's PostgreSQL procedure, as written: pg_dump, pg_restore --clean, recover."""
    import shutil
    import subprocess

    if database.url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    plain_url = database.url.replace("postgresql+psycopg://", "postgresql://")
    dump = tmp_path / "cases.dump"

    def take_backup() -> Path:
        subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", plain_url], check=True)
        return dump

    _, _, late_copy = lost_stretch(harness, smtp_receiver, tmp_path, take_backup)
    database.engine.dispose()
    subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={plain_url}", str(dump)], check=True)
    assert cli.main(["--config", str(harness.config_path), "recover"]) == 0
    app = harness.app()
    run_once(app)
    now_refs = refs(app)
    assert now_refs[0] == "2026-0001" and len(now_refs) == 2 and now_refs[1] != "2026-0002"
    assert len(smtp_receiver.to(LATE)) == 1, "the reporter got a second acknowledgement"
    sent = len(smtp_receiver.messages)
    harness.deliver(reply(late_copy, ALICE, "!close", "Closing."))
    run_once(app)
    assert not any(now_refs[1] in str(parsed(m)["Subject"]) for m in smtp_receiver.messages[sent:])
