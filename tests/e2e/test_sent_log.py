"""Recording accepted mail at once: on PostgreSQL in the outbox, on SQLite in a side file folded in later.

Real Dovecot, aiosmtpd receiver and databases (both backends); a crash is stood in for by records
left behind in the side file, as a killed daemon leaves them (tests/drills/test_drill_crash.py kills for real).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from conduct_inbox.store.models import OutboxMessage
from conduct_inbox.store.outbox import CLAIM
from conduct_inbox.store.sent_log import DirectLog, SideFileLog, sent_log_for
from tests.harness import MEMBERS, parsed, report


def _outbox(app) -> list[OutboxMessage]:
    with app.sessions() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all())


def test_sqlite_records_in_a_side_file_and_postgresql_in_the_outbox(harness, database):
    app = harness.app()
    log = sent_log_for(app.crash_safe_engine)
    if database.backend == "sqlite":
        assert isinstance(log, SideFileLog)
        assert log.path == Path(app.engine.url.database + "-sent")
    else:
        assert isinstance(log, DirectLog)
    log.close()


def test_every_accepted_mail_ends_sent_in_the_outbox_and_the_side_file_empty(harness, database, smtp_receiver):
    for i in range(5):
        harness.deliver(report(sender=f"person{i}@example.net"))
    app = harness.app()
    app.intake.poll_once()
    report_ = asyncio.run(app.dispatcher.flush_all(harness.clock()))

    assert report_.sent == 5 * (1 + len(MEMBERS))
    rows = _outbox(app)
    assert Counter(r.status for r in rows) == {"sent": len(rows)}
    assert all(r.sent_at is not None and r.attempts == 1 and r.last_code == 250 for r in rows)
    assert app.dispatcher._sent_log.unfolded() == {}
    assert len(smtp_receiver.wait_for(len(rows))) == len(rows)


def test_records_left_by_a_crash_are_folded_in_before_anything_is_claimed_again(harness, database, smtp_receiver):
    harness.deliver(report(sender="crash@example.net"))
    app = harness.app()
    app.intake.poll_once()
    rows = _outbox(app)
    assert len(rows) == 1 + len(MEMBERS)
    # The daemon claimed the batch, the server accepted two mails, both were recorded, then it died.
    with app.sessions() as session, session.begin():
        for row in session.scalars(select(OutboxMessage)):
            row.claimed_until = harness.clock() + CLAIM
    accepted = {rows[0].id: (rows[0].message_id, harness.clock()), rows[1].id: (rows[1].message_id, harness.clock())}
    if database.backend == "sqlite":
        log = SideFileLog(Path(app.engine.url.database + "-sent"))
        for row_id, (mid, at) in accepted.items():
            log.record(row_id, mid, at)
        log.close()
    else:
        log = DirectLog(app.crash_safe_engine)
        for row_id, (mid, at) in accepted.items():
            log.record(row_id, mid, at)
        log.close()

    restarted = harness.app()  # a new daemon, once the claim has run out
    harness.clock.advance(seconds=CLAIM.total_seconds() + 60)
    sent = asyncio.run(restarted.dispatcher.flush_all(harness.clock())).sent

    assert sent == len(rows) - 2  # only the mails never accepted go out
    got = smtp_receiver.wait_for(len(rows) - 2)
    assert sorted(r.rcpt_tos[0] for r in got) == sorted(row.recipient for row in rows[2:])
    after = {r.id: r for r in _outbox(restarted)}
    assert all(after[r.id].status == "sent" for r in rows)
    for row_id in accepted:
        assert after[row_id].attempts == 1 and after[row_id].sent_at is not None
    assert restarted.dispatcher._sent_log.unfolded() == {}


def _one_report_queued_on_sqlite(harness, database, sender: str):
    """SQLite only (the side file): one report taken in, its mail queued. The app and its first outbox row."""
    if database.backend != "sqlite":
        pytest.skip("the side file exists on SQLite only")
    harness.deliver(report(sender=sender))
    app = harness.app()
    app.intake.poll_once()
    return app, _outbox(app)[0]


def test_a_record_folded_twice_counts_once(harness, database):
    app, first = _one_report_queued_on_sqlite(harness, database, "twice@example.net")
    log = app.dispatcher._sent_log
    log.record(first.id, first.message_id, harness.clock())
    app.dispatcher._fold()
    log.record(first.id, first.message_id, harness.clock() + timedelta(minutes=1))  # a crash between fold and forget
    app.dispatcher._fold()
    row = next(r for r in _outbox(app) if r.id == first.id)
    assert (row.status, row.attempts) == ("sent", 1)


def test_a_stale_record_does_not_mark_another_mail_sent(harness, database, smtp_receiver):
    """A side file left beside a restored database names rows by id and Message-ID: a row with that
    id but another Message-ID is not marked sent (its mail still goes out)."""
    app, first = _one_report_queued_on_sqlite(harness, database, "stale@example.net")
    app.dispatcher._sent_log.record(first.id, "someone-else@example.org", harness.clock())
    sent = asyncio.run(app.dispatcher.flush_all(harness.clock())).sent
    assert sent == 1 + len(MEMBERS)
    assert smtp_receiver.to("stale@example.net")



def test_a_record_stuck_on_postgresql_ends_in_an_error_not_a_held_event_loop(harness, database):
    """The record runs on the dispatcher's event loop: its connection bounds every statement."""
    if database.backend != "postgresql":
        pytest.skip("SQLite records go to a local side file")
    app = harness.app()
    log = DirectLog(app.crash_safe_engine)
    try:
        log.record(0, "nothing@example.org", harness.clock())  # names no row: changes nothing
        connection = log._get()
        assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "30s"
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    finally:
        log.close()


def test_large_copies_are_read_one_at_a_time_and_reach_every_member_intact(harness, database, smtp_receiver):
    """Copies over outbox.READ_WITH_CLAIM are read from the outbox when their turn comes, not with
    the claim; what arrives is the attachment as the reporter sent it."""
    video = bytes(range(256)) * 1600  # 400 KB: its copies are over READ_WITH_CLAIM
    harness.deliver(report(sender="large@example.net", attachments=[("clip.mp4", "video/mp4", video)]))
    app = harness.app()
    app.intake.poll_once()
    claimed, _, _ = app.dispatcher._claim(harness.clock())
    large = [m for m in claimed if m.data is None]
    assert len(large) == len(MEMBERS) and all(m.fetch is not None for m in large)  # the ack is small
    harness.clock.advance(seconds=CLAIM.total_seconds() + 60)  # the claim above runs out

    sent = asyncio.run(app.dispatcher.flush_all(harness.clock())).sent

    assert sent == 1 + len(MEMBERS)
    for member in (m[1] for m in MEMBERS):
        (got,) = smtp_receiver.to(member)
        (attachment,) = parsed(got).iter_attachments()
        assert attachment.get_filename() == "clip.mp4" and attachment.get_payload(decode=True) == video
    assert Counter(r.status for r in _outbox(app)) == {"sent": 1 + len(MEMBERS)}


def test_a_failed_record_keeps_its_mail_claimed_and_hands_the_unsent_rest_back_at_once(harness, database, smtp_receiver):
    """The database gone for a moment while a mail is recorded (a fault stood in for: it must hit
    that one statement). The batch stops; the accepted mail stays claimed until it is recorded, so
    it is not sent again; the mails not yet sent are handed back at once, so the acknowledgements
    among them do not wait ten minutes for their claim to run out."""
    for i in range(3):
        harness.deliver(report(sender=f"blip{i}@example.net"))
    app = harness.app()
    app.intake.poll_once()
    total = len(_outbox(app))
    log = app.dispatcher._sent_log
    real, calls = log.record, []

    def flaky(row_id, message_id, at):
        calls.append(row_id)
        if len(calls) == 3:
            raise OperationalError("UPDATE outbox", {}, ConnectionError("server closed the connection"))
        real(row_id, message_id, at)

    log.record = flaky
    with pytest.raises(OperationalError):
        asyncio.run(app.dispatcher.flush_all(harness.clock()))
    log.record = real

    after = {r.id: r for r in _outbox(app)}
    for accepted in calls:  # recorded (on SQLite perhaps still in the side file), or not: kept from a resend
        assert after[accepted].status == "sent" or after[accepted].claimed_until is not None
    unsent = [r for r in after.values() if r.id not in calls]
    assert len(unsent) == total - 3 and all(r.status == "pending" and r.claimed_until is None for r in unsent)

    sent = asyncio.run(app.dispatcher.flush_all(harness.clock())).sent  # the same moment: no claim waited out

    assert sent == total - 3
    smtp_receiver.wait_for(total)
    assert len(smtp_receiver.messages) == total  # every mail once: none lost, none twice
    assert Counter(r.status for r in _outbox(app)) == {"sent": total}
