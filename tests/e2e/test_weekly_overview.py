"""The members' weekly overview: on the configured weekday and hour in the committee's time zone,
once per week across restarts and daemons, never listing a case to a member recused from it
(real Dovecot + aiosmtpd + database; the clock is passed in)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from conduct_inbox.shell.daemon import run_once, weekly_overview_once
from conduct_inbox.store.models import Case, OutboxMessage
from tests.harness import count, parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, SAM

UTC = timezone.utc


def _configure(harness, **committee: str) -> None:
    config = harness.config_path
    lines = "".join(f'{key} = "{value}"\n' for key, value in committee.items())
    config.write_text(config.read_text().replace(
        'steering_address = "steering@example.org"\n', 'steering_address = "steering@example.org"\n' + lines, 1))


def _overviews(receiver, address: str) -> list:
    return [m for m in receiver.to(address) if "Weekly overview" in str(parsed(m)["Subject"])]


@pytest.mark.parametrize("hour_utc", [
    datetime(2026, 11, 30, 7, 0, tzinfo=UTC),  # Monday 08:00 CET (winter)
    datetime(2026, 6, 1, 6, 0, tzinfo=UTC),  # Monday 08:00 CEST (summer)
], ids=["winter", "summer"])
def test_the_overview_fires_at_monday_eight_berlin_time_once_across_a_restart(harness, smtp_receiver, hour_utc):
    _configure(harness, timezone="Europe/Berlin")
    harness.clock.current = hour_utc - timedelta(hours=3)
    app = harness.app()
    harness.deliver(report(sender="first@example.net", subject="About the sprint",
                           body="At the meetup CC made fun of my accent in front of everyone."))
    run_once(app)
    harness.clock.advance(minutes=1)
    harness.deliver(report(sender="second@example.net", subject="About the chat"))
    run_once(app)
    with app.sessions() as session:
        first, second = session.scalars(select(Case.ref).order_by(Case.id)).all()

    harness.clock.current = hour_utc - timedelta(minutes=1)
    run_once(app)
    assert _overviews(smtp_receiver, ALICE) == [], "not before the hour"

    harness.clock.current = hour_utc
    run_once(app)
    [alice] = _overviews(smtp_receiver, ALICE)
    body = text_of(alice)
    assert first in body and second in body and body.index(first) < body.index(second), "oldest first"
    assert "assignee: nobody" in body and "new" in body
    zone = "CET" if hour_utc.month == 11 else "CEST"
    due = hour_utc + timedelta(days=1)
    assert f"next due: Tue {due.day} {due:%b %Y} 05:00 {zone}" in body, "24 hours after 05:00 local, in the committee's zone"
    [carol] = _overviews(smtp_receiver, CAROL)
    assert second in text_of(carol)
    assert first not in text_of(carol) and "About the sprint" not in text_of(carol), "a recused member's overview omits that case"
    assert len(_overviews(smtp_receiver, BOB)) == 1
    assert _overviews(smtp_receiver, SAM) == [], "steering members get one only where a case is routed to them"

    # A restart later that week: nothing again.
    app.close()
    harness.clock.advance(hours=5)
    restarted = harness.app()
    run_once(restarted)
    harness.clock.advance(days=3)
    run_once(restarted)
    assert len(_overviews(smtp_receiver, ALICE)) == 1

    # The next week, at the hour: the next one (showing what changed).
    harness.clock.current = hour_utc + timedelta(days=7)
    run_once(restarted)
    assert len(_overviews(smtp_receiver, ALICE)) == 2


def test_a_daemon_down_at_the_hour_sends_the_overview_when_it_comes_back_that_week(harness, smtp_receiver):
    harness.clock.current = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # Sunday; committee time zone UTC
    app = harness.app()
    run_once(app)  # the first run on this database starts the count
    app.close()
    harness.clock.current = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # down from Sunday to Wednesday
    app = harness.app()
    run_once(app)
    [alice] = _overviews(smtp_receiver, ALICE)
    assert "No open cases you may see" in text_of(alice), "a member with nothing open is told so in a line"
    assert str(parsed(alice)["Reply-To"]).startswith("conduct+"), "answerable with !list on the personal address"
    harness.clock.current = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    run_once(app)
    assert len(_overviews(smtp_receiver, ALICE)) == 1
    harness.clock.current = datetime(2026, 12, 7, 7, 59, tzinfo=UTC)
    run_once(app)
    assert len(_overviews(smtp_receiver, ALICE)) == 1
    harness.clock.current = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    run_once(app)
    assert len(_overviews(smtp_receiver, ALICE)) == 2


def test_the_configured_weekday_and_hour_and_off(harness, smtp_receiver):
    _configure(harness, digest_weekday="friday")
    config = harness.config_path
    config.write_text(config.read_text().replace('digest_weekday = "friday"\n', 'digest_weekday = "friday"\ndigest_hour = 17\n'))
    harness.clock.current = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    app = harness.app()
    run_once(app)
    harness.clock.current = datetime(2026, 12, 4, 16, 59, tzinfo=UTC)
    run_once(app)
    assert _overviews(smtp_receiver, BOB) == []
    harness.clock.current = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    run_once(app)
    assert len(_overviews(smtp_receiver, BOB)) == 1

    config.write_text(config.read_text().replace('digest_hour = 17\n', 'digest_hour = 17\ndigest = "off"\n'))
    app.close()
    off = harness.app()
    harness.clock.current = datetime(2026, 12, 11, 18, 0, tzinfo=UTC)
    run_once(off)
    assert len(_overviews(smtp_receiver, BOB)) == 1


def test_two_daemons_racing_send_each_week_once(harness):
    harness.clock.current = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    first, second = harness.app(), harness.app()
    assert weekly_overview_once(first) == 0 and weekly_overview_once(second) == 0  # the count starts
    members = 3
    for week in range(6):
        harness.clock.current = datetime(2026, 11, 30, 8, 0, tzinfo=UTC) + timedelta(days=7 * week)
        barrier = threading.Barrier(2)
        queued: list[int] = []

        def tick(app, barrier: threading.Barrier, queued: list[int]) -> None:
            barrier.wait()
            queued.append(weekly_overview_once(app))

        threads = [threading.Thread(target=tick, args=(app, barrier, queued)) for app in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(queued) == [0, members], f"week {week}: {queued}"
    assert count(first, OutboxMessage, OutboxMessage.kind == "weekly_overview") == 6 * members
