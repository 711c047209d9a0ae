"""The weekly overview's calendar: the week's slot in the committee's zone, across DST and date lines."""

from datetime import datetime, timezone

import pytest

from conduct_inbox.core.weekly import claimed_week, last_slot, week_of

UTC = timezone.utc


@pytest.mark.parametrize(("now", "zone", "slot_utc"), [
    # The week DST starts in Berlin (Sunday 2026-03-29): Monday 08:00 is 07:00 UTC before, 06:00 UTC after.
    (datetime(2026, 3, 30, 5, 59, tzinfo=UTC), "Europe/Berlin", datetime(2026, 3, 23, 7, 0, tzinfo=UTC)),
    (datetime(2026, 3, 30, 6, 0, tzinfo=UTC), "Europe/Berlin", datetime(2026, 3, 30, 6, 0, tzinfo=UTC)),
    # The week it ends (Sunday 2026-10-25).
    (datetime(2026, 10, 26, 6, 59, tzinfo=UTC), "Europe/Berlin", datetime(2026, 10, 19, 6, 0, tzinfo=UTC)),
    (datetime(2026, 10, 26, 7, 0, tzinfo=UTC), "Europe/Berlin", datetime(2026, 10, 26, 7, 0, tzinfo=UTC)),
    # Monday in UTC but still Sunday evening in Los Angeles: last week's slot.
    (datetime(2026, 11, 30, 7, 0, tzinfo=UTC), "America/Los_Angeles", datetime(2026, 11, 23, 16, 0, tzinfo=UTC)),
    # Sunday in UTC but already Monday 08:00 in Auckland.
    (datetime(2026, 11, 29, 19, 0, tzinfo=UTC), "Pacific/Auckland", datetime(2026, 11, 29, 19, 0, tzinfo=UTC)),
])
def test_the_slot_is_monday_eight_local_time(now, zone, slot_utc):
    assert last_slot(now, zone, "monday", 8) == slot_utc


def test_the_slot_names_its_local_date():
    slot = last_slot(datetime(2026, 12, 2, 10, 0, tzinfo=UTC), "Europe/Berlin", "friday", 17)
    assert slot.date().isoformat() == "2026-11-27"


def test_the_week_claimed_is_the_iso_week_whatever_the_weekday():
    monday = last_slot(datetime(2026, 11, 30, 9, 0, tzinfo=UTC), "Europe/Berlin", "monday", 8)
    friday = last_slot(datetime(2026, 12, 4, 9, 0, tzinfo=UTC), "Europe/Berlin", "friday", 8)
    assert week_of(monday) == week_of(friday) == "2026-W49"
    assert week_of(last_slot(datetime(2026, 12, 7, 9, 0, tzinfo=UTC), "Europe/Berlin", "monday", 8)) == "2026-W50"
    # the slot's date an earlier version claimed names its week: no second overview on upgrade
    assert claimed_week("2026-11-30") == claimed_week("2026-W49") == "2026-W49"
