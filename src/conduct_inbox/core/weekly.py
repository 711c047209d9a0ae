"""The weekly overview's calendar: which week's overview is due at a moment, in the committee's
time zone (so "Monday 08:00" stays 08:00 local across daylight saving time).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def last_slot(now: datetime, zone: str, weekday: str, hour: int) -> datetime:
    """The latest moment at or before `now` that is `weekday` at `hour`:00 in `zone` (aware).

    Its local date names the week: an overview is due when the last one sent was for an earlier
    slot, so a daemon down at the hour sends it when it comes back that week, and only once."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    day = local.date() - timedelta(days=(local.weekday() - WEEKDAYS.index(weekday)) % 7)
    slot = datetime.combine(day, time(hour), tzinfo=tz)
    if slot > now:
        slot = datetime.combine(day - timedelta(days=7), time(hour), tzinfo=tz)
    return slot



def week_of(slot: date) -> str:
    """`2026-W49`: the ISO week (Monday to Sunday, local) a slot falls in. The week, not the slot's
    date, is what is claimed: an admin who moves the overview from Monday to Friday does not get
    a second one that week."""
    year, week, _ = slot.isocalendar()
    return f"{year}-W{week:02d}"


def claimed_week(value: str) -> str:
    """The week a stored claim names: `2026-W49`, or the slot's date an earlier version stored."""
    return value if "-W" in value else week_of(date.fromisoformat(value))
