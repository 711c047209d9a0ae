"""Attacks on issue 14 items 8-10 (reload, backup/restore/recover, key rotation), as an adversary
and as an unlucky admin. Each test fails if the product is broken; known breaks are xfail(strict)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from conduct_inbox import cli
from conduct_inbox.core import tokens
from conduct_inbox.shell.backup import backup, restore
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.shell.recovery import recover
from conduct_inbox.store import crypto, db
from conduct_inbox.store.models import Case
from tests.daemons import CAROL as CAROL_ENTRY
from tests.daemons import Notifications, conduct_inbox, finish, hangup, processed, set_keys, set_mailbox  # noqa: F401
from tests.daemons import start as start_daemon
from tests.daemons import stop as stop_daemon
from tests.harness import SECRET, parsed, report, text_of
from tests.mailers import reply

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
EARLY, LATE, STUCK, NEWER = "early@example.net", "late@example.net", "stuck@example.net", "newer@example.net"


@pytest.fixture
def sqlite_only(database):
    if not database.url.startswith("sqlite"):
        pytest.skip("backup and restore copy an SQLite file")


def stop(harness, app) -> None:
    app.close()
    harness.apps.remove(app)


def cases(app) -> list[Case]:
    with app.sessions() as session:
        found = list(session.scalars(select(Case).options(selectinload(Case.parties), selectinload(Case.recusals))
                                     .order_by(Case.id)))
        session.expunge_all()
        return found


def reporters(app) -> dict[str, str]:
    return {c.ref: c.party("reporter").address for c in cases(app) if c.party("reporter") is not None}


def take_backup(harness, tmp_path: Path) -> Path:
    return backup(harness.settings(), tmp_path / "backup.db", harness.clock()).path


def restore_and_recover(harness, backup_file: Path):
    harness.clock.advance(hours=1)
    restore(harness.settings(), backup_file)
    result = recover(harness.settings(), harness.clock)
    app = harness.app()
    run_once(app)
    return app, result


def personal_address(member: str) -> str:
    return tokens.reply_address("conduct", "example.org", tokens.mint(SECRET.encode(), "personal", None, member))


def with_text(receiver, address: str, needle: str) -> list:
    return [m for m in receiver.to(address) if needle in text_of(m)]


# ----- backup / restore / recover ------------------------------------------------------------------


def test_report_waiting_in_inbox_since_before_the_backup_is_recovered(harness, smtp_receiver, sqlite_only, tmp_path):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    # The daemon was down for days; the nightly backup went on. A report has waited in INBOX since.
    with harness.dovecot.client(harness.user) as client:
        client.append("INBOX", report(sender=STUCK, body="STUCK-REPORT-TEXT"), msg_time=harness.clock() - timedelta(days=3))
    backup_file = take_backup(harness, tmp_path)
    harness.clock.advance(hours=2)
    run_once(app)  # the daemon is back: the stuck report becomes a case and is acknowledged
    assert len(smtp_receiver.to(STUCK)) == 1
    assert STUCK in reporters(app).values()
    stop(harness, app)

    app, _ = restore_and_recover(harness, backup_file)
    assert STUCK in reporters(app).values(), "a report processed after the backup was lost by the restore"


def test_backup_copied_into_place_by_hand_cannot_reissue_lost_references(harness, smtp_receiver, sqlite_only, tmp_path):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT"))
    run_once(app)
    late_copy = with_text(smtp_receiver, ALICE, "LATE-REPORT-TEXT")[0]
    assert "2026-0002" in str(parsed(late_copy)["Subject"])
    stop(harness, app)

    database = db.sqlite_path(harness.settings().database.url)
    for suffix in ("", "-wal", "-shm", "-sent"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(backup_file, database)  # the admin's restore: a copy, as for any SQLite file

    config = str(harness.config_path)
    harness.deliver(report(sender=NEWER, body="NEWER-REPORT-TEXT"))
    code = cli.main(["--config", config, "run", "--once"])
    if code == 0:
        harness.deliver(reply(late_copy, ALICE, "!close silent lost", "Closing."))
        cli.main(["--config", config, "run", "--once"])
    app = harness.app()
    by_ref = {c.ref: c for c in cases(app)}
    newer = [c for c in by_ref.values() if c.party("reporter") and c.party("reporter").address == NEWER]
    assert all(c.status != "closed" for c in by_ref.values()), "a lost-stretch command closed another case"
    assert not newer or newer[0].ref != "2026-0002", "a reference of the lost stretch was issued again"


@pytest.mark.xfail(strict=True, reason="!concerns Carol sent in the lost stretch is 'not replayed' by recovery, and the "
                   "recovered case is routed to Carol again: the reporter's lost-stretch follow-up, which Carol never saw "
                   "while recused, is forwarded to her (a concerned member reads new case content) and she holds a token")
def test_concerns_in_the_lost_stretch_keeps_that_member_out_after_recovery(harness, smtp_receiver, sqlite_only, tmp_path):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT about someone on the committee."))
    run_once(app)
    late_copy = with_text(smtp_receiver, ALICE, "LATE-REPORT-TEXT")[0]
    harness.deliver(reply(late_copy, ALICE, "!concerns Carol Chen", "This is about Carol."))
    run_once(app)
    late_ack = smtp_receiver.to(LATE)[0]
    harness.deliver(reply(late_ack, LATE, "", "LATE-FOLLOWUP-SECRET more details.", to="conduct@example.org"))
    run_once(app)
    assert with_text(smtp_receiver, BOB, "LATE-FOLLOWUP-SECRET"), "the follow-up reached the committee"
    assert not with_text(smtp_receiver, CAROL, "LATE-FOLLOWUP-SECRET"), "Carol is recused in the lost stretch"
    stop(harness, app)

    app, _ = restore_and_recover(harness, backup_file)
    assert not with_text(smtp_receiver, CAROL, "LATE-FOLLOWUP-SECRET"), \
        "after recovery the member the case concerns received the follow-up she was kept out of"


@pytest.mark.xfail(strict=True, reason="a report a member brought in with !new in the lost stretch is 'committee mail', "
                   "not replayed by recovery: the report is not recorded again (no case for its reporter); resending "
                   "!new without noack would acknowledge the reporter a second time")
def test_report_forwarded_with_new_in_the_lost_stretch_is_recovered(harness, smtp_receiver, sqlite_only, tmp_path):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    forwarded = EmailMessage()
    forwarded["From"] = "Direct Reporter <direct@example.net>"
    forwarded["To"] = ALICE
    forwarded["Subject"] = "Something happened at the meetup"
    forwarded["Message-ID"] = make_msgid(domain="example.net")
    forwarded.set_content("FORWARDED-REPORT-TEXT: he followed me to the hotel.")
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = personal_address(ALICE)
    msg["Subject"] = "!new direct@example.net"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("This came to me directly.")
    msg.add_attachment(forwarded)
    harness.deliver(msg.as_bytes())
    run_once(app)
    assert "direct@example.net" in reporters(app).values()
    assert len(smtp_receiver.to("direct@example.net")) == 1
    stop(harness, app)

    app, _ = restore_and_recover(harness, backup_file)
    assert "direct@example.net" in reporters(app).values(), "a report of the lost stretch was not recorded again"
    assert len(smtp_receiver.to("direct@example.net")) == 1


def test_reporter_reply_to_lost_acknowledgement_gets_no_second_ack(harness, smtp_receiver, sqlite_only, tmp_path):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT"))
    run_once(app)
    late_ack = smtp_receiver.to(LATE)[0]
    assert "2026-0002" in str(parsed(late_ack)["Subject"])
    stop(harness, app)

    app, result = restore_and_recover(harness, backup_file)
    recovered = result.new_cases[0]
    harness.clock.advance(hours=1)
    harness.deliver(reply(late_ack, LATE, "", "LATE-FOLLOWUP-TEXT one more thing.", to="conduct@example.org"))
    run_once(app)
    assert with_text(smtp_receiver, BOB, "LATE-FOLLOWUP-TEXT"), "the follow-up was lost"
    assert len(smtp_receiver.to(LATE)) == 1, "the reporter got a second acknowledgement"
    assert [c.ref for c in cases(app) if c.party("reporter") and c.party("reporter").address == LATE] == [recovered]


def test_reporter_follow_up_in_the_lost_stretch_reaches_the_recovered_case(harness, smtp_receiver, sqlite_only, tmp_path):
    """The lost stretch: a report, then its reporter's follow-up on the lost reference. Both are recovered,
    the follow-up with the report (not as a third case), and nothing is acknowledged twice."""
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT"))
    run_once(app)
    late_ack = smtp_receiver.to(LATE)[0]
    harness.deliver(reply(late_ack, LATE, "", "LOST-FOLLOWUP-TEXT", to="conduct@example.org"))
    run_once(app)
    stop(harness, app)
    app, _ = restore_and_recover(harness, backup_file)
    assert len(smtp_receiver.to(LATE)) == 1, "the reporter got a second acknowledgement"
    late_cases = [c.ref for c in cases(app) if c.party("reporter") and c.party("reporter").address == LATE]
    assert len(late_cases) == 1, f"the lost follow-up became a case of its own: {late_cases}"


def test_ack_pending_at_backup_time_is_not_sent_twice(harness, smtp_receiver, sqlite_only, tmp_path):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    app.intake.poll_once()  # recorded; its acknowledgement waits in the outbox
    backup_file = take_backup(harness, tmp_path)
    run_once(app)
    assert len(smtp_receiver.to(EARLY)) == 1
    harness.deliver(report(sender=LATE))
    run_once(app)  # the daemon goes on: the next batch folds the sent log
    stop(harness, app)
    app, _ = restore_and_recover(harness, backup_file)
    assert len(smtp_receiver.to(EARLY)) == 1, "the reporter was acknowledged twice"


def test_member_mail_about_a_lost_reference_without_token_is_not_a_new_report(harness, smtp_receiver, sqlite_only,
                                                                              tmp_path):
    """Bob answers a lost-stretch copy to conduct@ (not the Reply-To token), DMARC-authenticated: it must not open a
    case of its own (with an acknowledgement to Bob and the quoted report sent round as new)."""
    path = harness.config_path
    path.write_text(path.read_text().replace("[security]\n", '[security]\ntrusted_authserv_id = "mx.example.org"\n'))
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT"))
    run_once(app)
    late_copy = with_text(smtp_receiver, BOB, "LATE-REPORT-TEXT")[0]
    stop(harness, app)
    app, _ = restore_and_recover(harness, backup_file)
    before = len(cases(app))
    bob_before = len(smtp_receiver.to(BOB))
    raw = reply(late_copy, BOB, "", "I think we should talk to the reporter.", to="conduct@example.org")
    raw = b"Authentication-Results: mx.example.org; dmarc=pass (p=reject) header.from=example.org\r\n" + raw
    harness.deliver(raw)
    run_once(app)
    assert len(cases(app)) == before, "a member's note on a lost reference opened a new case"
    assert not [m for m in smtp_receiver.to(BOB)[bob_before:] if "LATE-REPORT-TEXT" in text_of(m)], \
        "the quoted report went round again as a new report"


def without_message_id(raw: bytes) -> bytes:
    head, _, body = raw.partition(b"\n\n")
    return b"\n".join(line for line in head.split(b"\n") if not line.lower().startswith(b"message-id:")) + b"\n\n" + body


def test_identical_short_reports_without_message_id_from_two_people_are_both_recovered(harness, smtp_receiver,
                                                                                      sqlite_only, tmp_path):
    app = harness.app()
    body = "Please call me back, it is about the sprint."
    harness.deliver(without_message_id(report(sender=EARLY, body=body)))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    harness.deliver(without_message_id(report(sender=LATE, body=body, name="Another Person")))
    run_once(app)
    assert set(reporters(app).values()) == {EARLY, LATE}
    stop(harness, app)
    app, _ = restore_and_recover(harness, backup_file)
    assert LATE in reporters(app).values(), "the second reporter's report was lost in the recovery"


# ----- encryption at rest and key rotation -----------------------------------------------------------



def test_backup_after_reseal_holds_no_plaintext(harness, smtp_receiver, sqlite_only, tmp_path, capsys):
    """Reports stored before encryption was switched on, then `db reseal`: a backup holds none of their text."""
    app = harness.app()
    harness.deliver(report(sender="plainer@example.net", subject="PLAIN-SUBJECT-WORDS", body="PLAIN-BODY-SENTINEL-TEXT"))
    run_once(app)
    stop(harness, app)
    key = crypto.generate_key()
    set_keys(harness, key)
    assert cli.main(["--config", str(harness.config_path), "db", "reseal"]) == 0
    app = harness.app()
    harness.deliver(report(sender="sealed@example.net", body="SEALED-BODY-SENTINEL-TEXT"))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    data = backup_file.read_bytes()
    for needle in (b"PLAIN-BODY-SENTINEL", b"PLAIN-SUBJECT-WORDS", b"plainer@example.net", b"SEALED-BODY-SENTINEL",
                   b"sealed@example.net"):
        assert needle not in data, f"{needle!r} in clear in the backup"


def test_old_key_backup_restored_after_the_rotation_finished(harness, smtp_receiver, sqlite_only, tmp_path, capsys):
    """README: 'The old key also opens every database backup made before the rotation'. A backup under key A,
    the rotation to B finished and A removed, then the disk dies: restore with B alone says what to do in one line
    (no traceback, no half-restored database the daemon runs on); with A as the previous key it works, and the
    lost stretch's report (sealed with B) comes back."""
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    set_keys(harness, key_a)
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    stop(harness, app)
    set_keys(harness, key_b, previous=key_a)
    assert cli.main(["--config", str(harness.config_path), "db", "rekey"]) == 0
    set_keys(harness, key_b)
    app = harness.app()
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT"))
    run_once(app)
    stop(harness, app)
    capsys.readouterr()

    config = str(harness.config_path)
    code = cli.main(["--config", config, "restore", str(backup_file)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err, err
    assert "previous_encryption_key" in err.strip().splitlines()[-1], err
    # The daemon does not run on it meanwhile.
    assert cli.main(["--config", config, "run", "--once"]) != 0
    set_keys(harness, key_b, previous=key_a)
    code = cli.main(["--config", config, "recover"])
    assert code == 0, capsys.readouterr().err
    app = harness.app()
    run_once(app)
    assert LATE in reporters(app).values()
    assert len(smtp_receiver.to(LATE)) == 1
    assert cli.main(["--config", config, "db", "rekey"]) == 0


def test_mail_queued_under_the_old_key_is_sent_once_after_the_restart_with_the_new_key(harness, smtp_receiver,
                                                                                      sqlite_only):
    """SMTP down during step 3 of the rotation: rows sealed with key A are sent by the daemon on key B (+A); the
    sent log (Message-ID compared sealed) must mark them sent, or they go out again."""
    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    set_keys(harness, key_a)
    app = harness.app()
    smtp_receiver.down()
    try:
        harness.deliver(report(sender=EARLY))
        run_once(app)
    finally:
        smtp_receiver.up()
    assert smtp_receiver.to(EARLY) == []
    stop(harness, app)
    set_keys(harness, key_b, previous=key_a)
    app = harness.app()
    harness.clock.advance(minutes=30)
    run_once(app)
    assert len(smtp_receiver.to(EARLY)) == 1
    harness.clock.advance(hours=1)
    run_once(app)
    harness.deliver(report(sender=LATE))
    harness.clock.advance(hours=1)
    run_once(app)
    assert len(smtp_receiver.to(EARLY)) == 1, "a mail queued under the old key was sent twice"
    # rekey, then a restart on B alone: still nothing repeats
    stop(harness, app)
    assert cli.main(["--config", str(harness.config_path), "db", "rekey"]) == 0
    set_keys(harness, key_b)
    app = harness.app()
    harness.clock.advance(hours=1)
    run_once(app)
    assert len(smtp_receiver.to(EARLY)) == 1


def test_reporter_follow_up_by_reply_mid_rotation_joins_the_case(harness, smtp_receiver):
    """The reporter answers the acknowledgement sent under key A (threaded by In-Reply-To only: their client dropped
    the subject tag) while half the rows are moved to B: the follow-up joins the case, no new case, no second ack."""
    from conduct_inbox.store import rekey as rekey_mod

    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    set_keys(harness, key_a)
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    for i in range(6):
        harness.deliver(report(sender=f"filler{i}@example.net"))
    run_once(app)
    ack = smtp_receiver.to(EARLY)[0]
    stop(harness, app)
    set_keys(harness, key_b, previous=key_a)
    app = harness.app()
    rekey_mod.rekey(app.engine, batch=1, max_batches=4)  # interrupted midway
    harness.deliver(reply(ack, EARLY, subject="Re: my report", body="FOLLOWUP-MID-ROTATION", to="conduct@example.org"))
    run_once(app)
    assert len(cases(app)) == 7, "the follow-up opened a new case"
    assert len(smtp_receiver.to(EARLY)) == 1
    assert with_text(smtp_receiver, BOB, "FOLLOWUP-MID-ROTATION")


# ----- logs of the admin commands ------------------------------------------------------------------------


def test_backup_restore_recover_rekey_print_no_content_address_or_secret_even_verbose(harness, smtp_receiver,
                                                                                      sqlite_only, tmp_path):
    import subprocess
    import sys

    key_a, key_b = crypto.generate_key(), crypto.generate_key()
    set_keys(harness, key_a)
    app = harness.app()
    harness.deliver(report(sender=EARLY, subject="SUBJECT-SENTINEL", body="BODY-SENTINEL Carol Chen did it."))
    run_once(app)
    config = str(harness.config_path)

    def conduct(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "conduct_inbox.cli", "-v", "--config", config, *args],
                              capture_output=True, timeout=120, check=False)
        return done.stdout.decode() + done.stderr.decode()

    out = conduct("backup", str(tmp_path))
    backup_file = next(tmp_path.glob("*.db"))
    harness.deliver(report(sender=LATE, subject="LATE-SUBJECT-SENTINEL", body="LATE-BODY-SENTINEL, ask Bob Builder."))
    harness.deliver(reply(smtp_receiver.to(ALICE)[0], ALICE, "!ack", "NOTE-SENTINEL"))
    run_once(app)
    stop(harness, app)
    out += conduct("restore", str(backup_file))
    out += conduct("recover")
    set_keys(harness, key_b, previous=key_a)
    out += conduct("db", "rekey", "--batch", "2")
    out += conduct("db", "rekey", "--check")
    assert "recovery" in out and "moved" in out, out
    for needle in ("SENTINEL", "example.net", "alice@", "bob@", "carol@", "Carol Chen", "Bob Builder", SECRET,
                   key_a, key_b, "Traceback"):
        assert needle not in out, f"{needle!r} printed:\n{out}"


# ----- PostgreSQL: the daemon started before `recover` ----------------------------------------------------


def test_postgresql_daemon_started_before_recover_cannot_reuse_lost_references(harness, smtp_receiver, database,
                                                                               tmp_path):
    import subprocess

    if database.url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")
    if shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    plain_url = database.url.replace("postgresql+psycopg://", "postgresql://")
    dump = tmp_path / "cases.dump"
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    subprocess.run(["pg_dump", "--format=custom", f"--file={dump}", plain_url], check=True)
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT"))
    run_once(app)
    late_copy = with_text(smtp_receiver, ALICE, "LATE-REPORT-TEXT")[0]
    stop(harness, app)
    database.engine.dispose()
    subprocess.run(["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={plain_url}", str(dump)], check=True)
    config = str(harness.config_path)
    harness.deliver(report(sender=NEWER, body="NEWER-REPORT-TEXT"))
    code = cli.main(["--config", config, "run", "--once"])
    if code == 0:
        harness.deliver(reply(late_copy, ALICE, "!close silent lost", "Closing."))
        cli.main(["--config", config, "run", "--once"])
    app = harness.app()
    assert all(c.status != "closed" for c in cases(app)), "a lost-stretch command closed another case"


# ----- mail moved out of the processed folder by hand ------------------------------------------------------


def test_processed_mail_filed_away_by_hand_cannot_make_lost_references_reusable(harness, smtp_receiver, sqlite_only,
                                                                               tmp_path):
    from tests.harness import deliver_all

    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    deliver_all(harness, [report(sender=f"r{i}@example.net", body=f"REPORT-{i:02d}-TEXT") for i in range(52)])
    run_once(app)
    refs = {c.ref: c.party("reporter").address for c in cases(app)}
    assert "2026-0052" in refs
    copy_0052 = next(m for m in smtp_receiver.to(ALICE) if "2026-0052" in str(parsed(m)["Subject"]))
    stop(harness, app)
    with harness.dovecot.client(harness.user) as client:  # a member files the processed mail away
        client.create_folder("Archive")
        client.select_folder("Processed")
        client.move(client.search(["ALL"]), "Archive")

    app, _ = restore_and_recover(harness, backup_file)
    harness.deliver(report(sender=NEWER, body="NEWER-REPORT-TEXT"))
    run_once(app)
    harness.deliver(reply(copy_0052, ALICE, "!close silent lost", "Closing."))
    run_once(app)
    now = cases(app)
    assert all(c.status != "closed" for c in now), "a lost-stretch command closed another case"
    newer = [c.ref for c in now if c.party("reporter") and c.party("reporter").address == NEWER]
    assert newer and newer[0] not in refs, f"lost reference {newer} issued again"


# ----- backup while a real daemon writes heavily, restore, recover ---------------------------------------



def test_backups_taken_while_the_daemon_writes_restore_to_one_case_and_one_ack_per_reporter(
        harness, smtp_receiver, sqlite_only, tmp_path, started):  # noqa: F811
    import signal
    import threading
    import time

    from tests.procs import wait_until

    set_mailbox(harness, poll_seconds=1)
    config = str(harness.config_path)
    # No NOTIFY_SOCKET: the tests' collector is not drained while we wait, and sd_notify's send blocks
    # when its queue is full.
    proc = conduct_inbox(harness.config_path, "run")
    started.append(proc)
    harness.deliver(report(sender="first@example.net"))
    assert wait_until(lambda: smtp_receiver.to("first@example.net"), 30), "the daemon did not start"
    senders = [f"heavy{i:02d}@example.net" for i in range(30)]

    def feed() -> None:
        for sender in senders:
            harness.deliver(report(sender=sender, body=f"HEAVY report from {sender}"))
            time.sleep(0.15)

    feeder = threading.Thread(target=feed)
    feeder.start()
    backups = []
    while feeder.is_alive():
        dest = tmp_path / f"b{len(backups):02d}.db"
        assert cli.main(["--config", config, "backup", str(dest)]) == 0
        backups.append(dest)
        time.sleep(0.2)
    feeder.join()
    all_acked = wait_until(lambda: all(smtp_receiver.to(s) for s in senders), 60)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    code, err = finish(proc, 90)
    took = time.monotonic() - t0
    assert took < 20, f"SIGTERM took {took:.0f}s (acked all: {all_acked})\n{err[-1500:]}"
    assert all_acked, (f"not acknowledged: {[s for s in senders if not smtp_receiver.to(s)]}; "
                       f"INBOX {harness.folder_count('INBOX')} Processed {harness.folder_count('Processed')} "
                       f"Quarantine {harness.folder_count('Quarantine')}\n{err[-3000:]}")
    assert code == 0, err
    assert len(backups) >= 3
    # The newest backup first; then the admin restores an older one, then the oldest (restore twice, and more).
    for chosen in (backups[-1], backups[len(backups) // 2], backups[0]):
        assert cli.main(["--config", config, "restore", str(chosen)]) == 0
        assert cli.main(["--config", config, "run", "--once"]) == 0
    app = harness.app()
    per_reporter: dict[str, int] = {}
    for c in cases(app):
        address = c.party("reporter").address if c.party("reporter") else None
        per_reporter[address] = per_reporter.get(address, 0) + 1
    assert all(per_reporter.get(s) == 1 for s in senders), {s: per_reporter.get(s) for s in senders}
    twice = [s for s in senders if len(smtp_receiver.to(s)) != 1]
    assert not twice, f"acknowledged {[len(smtp_receiver.to(s)) for s in twice]} times: {twice}"


# ----- README's cron backup and restore run as root beside a service-owned database ----------------------


def test_backup_and_restore_as_root_leave_the_database_owned_by_the_service_user(harness, smtp_receiver, sqlite_only,
                                                                                 tmp_path):
    """README runs `backup` from root's crontab and `sudo ... restore` (the disk died: no database file), while the
    service runs as its own user (DynamicUser, StateDirectory). Every file beside the database must stay the
    service's, or `systemctl start conduct-inbox` cannot open its database after the restore."""
    import os

    service_uid = 65534
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    stop(harness, app)
    database = db.sqlite_path(harness.settings().database.url)
    folder = database.parent

    def chown_all() -> None:
        os.chown(folder, service_uid, service_uid)
        for path in folder.iterdir():
            os.chown(path, service_uid, service_uid)

    def not_the_services() -> list[str]:
        return sorted(f"{p.name} uid {p.stat().st_uid}" for p in folder.iterdir() if p.stat().st_uid != service_uid)

    chown_all()
    backups = tmp_path / "backups"
    backups.mkdir()
    assert cli.main(["--config", str(harness.config_path), "backup", str(backups)]) == 0
    assert not_the_services() == [], "the nightly root backup left root-owned files beside the database"
    backup_file = next(backups.iterdir())
    for suffix in ("", "-wal", "-shm", "-sent", "-sent-wal", "-sent-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)  # the disk died
    assert cli.main(["--config", str(harness.config_path), "restore", str(backup_file)]) == 0
    left = not_the_services()
    assert left == [], f"after README's restore the service cannot write its own database: {left}"


def test_readme_cron_backup_into_a_folder_that_does_not_exist_yet(harness, smtp_receiver, sqlite_only, tmp_path):
    """README's cron line writes `backup /var/backups/conduct-inbox` and nothing in README creates that folder: the
    first night must not write one undated file named like the folder (overwritten every night, never matched by
    the cron line's own `find -name 'cases-*.db'`, and not the dated file the restore example names)."""
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    dest = tmp_path / "conduct-inbox"
    code = cli.main(["--config", str(harness.config_path), "backup", str(dest)])
    assert code != 0 or dest.is_dir(), "the backup became a file named like the backup folder"


# ----- reload: a removed member ------------------------------------------------------------------------------



def test_member_removed_by_reload_loses_dmarc_and_personal_commands_too(
        harness, smtp_receiver, notify, started, database):  # noqa: F811
    """After SIGHUP removes Carol: her DMARC-passed note about the case (no token) is not committee mail, and her
    personal address no longer lists the open cases (a `!list` would show her the case titles)."""
    path = harness.config_path
    path.write_text(path.read_text().replace("[security]\n", '[security]\ntrusted_authserv_id = "mx.example.org"\n'))
    proc = start_daemon(harness, notify, started)
    harness.deliver(report(subject="TITLE-SENTINEL at the sprint", body="Someone shouted at me."))
    from tests.procs import wait_until

    assert wait_until(lambda: smtp_receiver.to(CAROL), 15)
    carol_copy = smtp_receiver.to(CAROL)[0]
    harness.config_path.write_text(harness.config_path.read_text().replace(CAROL_ENTRY, ""))
    hangup(proc, notify)
    before = len(smtp_receiver.messages)
    note = reply(carol_copy, CAROL, "", "CAROL-DMARC-NOTE after removal", to="conduct@example.org")
    harness.deliver(b"Authentication-Results: mx.example.org; dmarc=pass (p=reject) header.from=example.org\r\n" + note)
    listing = EmailMessage()
    listing["From"] = CAROL
    listing["To"] = personal_address(CAROL)
    listing["Subject"] = "!list"
    listing["Message-ID"] = make_msgid(domain="example.org")
    listing.set_content("")
    harness.deliver(listing.as_bytes())
    assert processed(harness, 3)
    stop_daemon(proc)
    later = smtp_receiver.messages[before:]
    to_carol = [m for m in later if CAROL in m.rcpt_tos]
    assert not any("TITLE-SENTINEL" in text_of(m) or "TITLE-SENTINEL" in str(parsed(m)["Subject"]) for m in to_carol), \
        "the removed member was shown the case"
    with database.sessions() as session:
        from conduct_inbox.store.models import Event

        noted = session.scalars(select(Event).where(Event.actor == CAROL)).all()
        assert not [e for e in noted if e.action not in ("command_rejected",)], [e.action for e in noted]


def test_interrupted_rekey_then_old_key_removed_or_wrong_previous_key_refuses_to_run(harness, smtp_receiver, capsys):
    """A rekey stopped midway; then the admin removes the old key too early, or names the wrong file as the previous
    key: `run` refuses in one line (exit 2), touches no mail (nothing quarantined, nothing moved), and once the right
    previous key is back everything is read and the rekey finishes."""
    from conduct_inbox.store import rekey as rekey_mod

    key_a, key_b, key_c = crypto.generate_key(), crypto.generate_key(), crypto.generate_key()
    set_keys(harness, key_a)
    app = harness.app()
    for i in range(5):
        harness.deliver(report(sender=f"r{i}@example.net"))
    run_once(app)
    stop(harness, app)
    set_keys(harness, key_b, previous=key_a)
    app = harness.app()
    rekey_mod.rekey(app.engine, batch=1, max_batches=3)
    stop(harness, app)
    config = str(harness.config_path)
    harness.deliver(report(sender=NEWER, body="NEWER-REPORT-TEXT"))
    for current, previous in ((key_b, ""), (key_b, key_c)):
        set_keys(harness, current, previous=previous)
        capsys.readouterr()
        code = cli.main(["--config", config, "run", "--once"])
        err = capsys.readouterr().err.strip()
        assert code in (1, 2), (code, err)  # (1 here; `db rekey` says 2 for the same problem)
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert key_a not in err and key_b not in err and key_c not in err
        assert harness.folder_count("INBOX") == 1 and harness.folder_count("Quarantine") == 0
        assert cli.main(["--config", config, "db", "rekey"]) == 2
    set_keys(harness, key_b, previous=key_a)
    assert cli.main(["--config", config, "run", "--once"]) == 0
    assert harness.folder_count("INBOX") == 0 and len(smtp_receiver.to(NEWER)) == 1
    assert cli.main(["--config", config, "db", "rekey"]) == 0
    set_keys(harness, key_b)
    assert cli.main(["--config", config, "db", "rekey", "--check"]) == 0


def test_lost_stretch_report_naming_a_member_keeps_them_out_after_recovery(harness, smtp_receiver, sqlite_only,
                                                                           tmp_path):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    harness.deliver(report(sender=LATE, body="NAMING-SENTINEL: Bob Builder cornered me at the sprint."))
    run_once(app)
    assert with_text(smtp_receiver, ALICE, "NAMING-SENTINEL") and not with_text(smtp_receiver, BOB, "NAMING-SENTINEL")
    stop(harness, app)
    app, result = restore_and_recover(harness, backup_file)
    assert len(with_text(smtp_receiver, ALICE, "NAMING-SENTINEL")) == 2  # the recovered copy
    assert not with_text(smtp_receiver, BOB, "NAMING-SENTINEL"), "the named member received the recovered report"
    recovered = next(c for c in cases(app) if c.ref == result.new_cases[0])
    assert BOB in {r.member_email for r in recovered.recusals}


def test_encrypted_backup_needs_its_key(harness, smtp_receiver, sqlite_only, tmp_path, capsys):
    """An encrypted database's backup restored where no key (or another key) is configured: refused in words, never
    garbage or plaintext; with the key it opens."""
    key = crypto.generate_key()
    set_keys(harness, key)
    app = harness.app()
    harness.deliver(report(sender=EARLY, body="ENCRYPTED-SENTINEL"))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    stop(harness, app)
    config = str(harness.config_path)
    for other in ("", crypto.generate_key()):
        set_keys(harness, other) if other else harness.config_path.write_text("\n".join(
            line for line in harness.config_path.read_text().splitlines() if not line.startswith("encryption_key_file")))
        capsys.readouterr()
        code = cli.main(["--config", config, "restore", str(backup_file)])
        out = capsys.readouterr()
        assert code != 0 and "Traceback" not in out.err and "ENCRYPTED-SENTINEL" not in out.out + out.err, out
        assert cli.main(["--config", config, "run", "--once"]) != 0
    set_keys(harness, key)
    capsys.readouterr()
    assert cli.main(["--config", config, "recover"]) == 0
    app = harness.app()
    assert [c.party("reporter").address for c in cases(app)] == [EARLY]


@pytest.mark.xfail(strict=True, reason="the reported person's answer to a lost-stretch !send (subject names the fenced "
                   "reference) becomes a NEW REPORT with them as reporter: all three members they name are recused "
                   "(the accused chooses their judges after a restore) and they are acknowledged as a reporter")
def test_reported_persons_answer_to_lost_stretch_mail_cannot_recuse_the_committee(harness, smtp_receiver, sqlite_only,
                                                                                  tmp_path):
    pat = "pat@example.net"
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    backup_file = take_backup(harness, tmp_path)
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT Pat Person shouted at me."))
    run_once(app)
    late_copy = with_text(smtp_receiver, ALICE, "LATE-REPORT-TEXT")[0]
    harness.deliver(reply(late_copy, ALICE, "!party reported pat@example.net Pat Person"))
    run_once(app)
    harness.deliver(reply(late_copy, ALICE, "!send reported", "Please tell us your side of what happened at the sprint."))
    run_once(app)
    [to_pat] = smtp_receiver.to(pat)
    stop(harness, app)
    app, _ = restore_and_recover(harness, backup_file)
    harness.deliver(reply(to_pat, pat, body="Alice Example, Bob Builder and Carol Chen are all biased against me. "
                                              "PAT-ANSWER", to="conduct@example.org"))
    run_once(app)
    recused = {r.member_email for c in cases(app) for r in c.recusals}
    assert not recused, f"the reported person recused {sorted(recused)}"
    assert len(smtp_receiver.to(pat)) == 1, "the reported person was acknowledged as a reporter"


def test_refused_restore_of_a_hand_made_copy_leaves_the_live_database_alone(harness, smtp_receiver, sqlite_only,
                                                                           tmp_path, capsys):
    import sqlite3

    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    database = db.sqlite_path(harness.settings().database.url)
    hand_copy = tmp_path / "by-hand.db"
    source, target = sqlite3.connect(database), sqlite3.connect(hand_copy)
    source.backup(target)  # `sqlite3 cases.db ".backup by-hand.db"`
    source.close()
    target.close()
    harness.deliver(report(sender=LATE, body="LATE-REPORT-TEXT"))
    run_once(app)
    stop(harness, app)
    config = str(harness.config_path)
    assert cli.main(["--config", config, "restore", str(hand_copy)]) == 1
    assert "not made by" in capsys.readouterr().err
    app = harness.app()
    assert LATE in reporters(app).values(), "the refused restore replaced the live database anyway"
    stop(harness, app)
    assert cli.main(["--config", config, "run", "--once"]) == 0 or LATE in reporters(harness.app()).values()


# ----- several committees on one host (item 11) and their backups --------------------------------------------


@pytest.fixture
def other_committee(dovecot, smtp_receiver, tmp_path):
    from tests.harness import Harness

    folder = tmp_path / "other"
    folder.mkdir()
    other = Harness(dovecot, smtp_receiver, f"sqlite:///{folder}/cases.db", dovecot.new_user())
    assert cli.main(["--config", str(other.config_path), "db", "upgrade"]) == 0
    yield other
    other.close()


def test_two_committees_backing_up_into_one_folder_keep_both(harness, other_committee, smtp_receiver, sqlite_only,
                                                            tmp_path):
    for h in (harness, other_committee):
        app = h.app()
        h.deliver(report(sender=EARLY))
        run_once(app)
    folder = tmp_path / "backups"
    folder.mkdir()
    now = harness.clock()
    first = backup(harness.settings(), folder, now).path
    second = backup(other_committee.settings(), folder, now).path
    assert first != second and first.exists() and second.exists(), "one committee's backup replaced the other's"


def test_restore_refuses_another_committees_backup(harness, other_committee, smtp_receiver, sqlite_only, tmp_path):
    app = harness.app()
    harness.deliver(report(sender=EARLY))
    run_once(app)
    stop(harness, app)
    other = other_committee.app()
    other_committee.deliver(report(sender="other-committee-reporter@example.net"))
    run_once(other)
    theirs = backup(other_committee.settings(), tmp_path / "theirs.db", other_committee.clock()).path
    code = cli.main(["--config", str(harness.config_path), "restore", str(theirs)])
    app = harness.app()
    assert code != 0 and EARLY in reporters(app).values(), "another committee's database was restored in place of ours"
