"""The weekly overview's calendar: which week's overview is due at a moment, in the committee's
time zone (so "Monday 08:00" stays 08:00 local across daylight saving time).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
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

