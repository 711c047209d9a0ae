"""The `[sla]` times as a reporter reads them: the acknowledgement promises exactly these.

A promise to a reporter is a number the daemon keeps (sla.py runs the same clocks), so every
text that states a time to a reporter or party takes it from here, never from a template's
literal: "24 hours", "one hour", "one week", "10 days".
"""

from __future__ import annotations

from dataclasses import dataclass

_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


def _count(value: float, unit: str) -> str:
    return f"one {unit}" if value == 1 else f"{value:g} {unit}s"


def hours_text(hours: float) -> str:
    """24 -> "24 hours", 1 -> "one hour", 0.5 -> "30 minutes"."""
    if hours <= 0:
        raise ValueError("a promised time must be positive")
    if not float(hours).is_integer() and float(hours * 60).is_integer() and hours < 1:
        return _count(hours * 60, "minute")
    return _count(hours, "hour")


def days_text(days: float) -> str:
    """7 -> "one week", 14 -> "two weeks", 10 -> "10 days", 1 -> "one day"."""
    if days <= 0:
        raise ValueError("a promised time must be positive")
    if float(days).is_integer() and days % 7 == 0:
        weeks = int(days // 7)
        return f"{_WORDS[weeks]} week{'s' if weeks > 1 else ''}" if weeks in _WORDS else f"{weeks} weeks"
    return _count(days, "day")


@dataclass(frozen=True)
class Promises:
    """The times promised to a reporter (from `[sla]`)."""

    ack_hours: float = 24
    urgent_ack_hours: float = 1
    response_days: float = 7

    def ack_hours_for(self, urgent: bool) -> float:
        return self.urgent_ack_hours if urgent else self.ack_hours

    def context(self, urgent: bool) -> dict[str, object]:
        """Template variables: `ack_time` ("24 hours"; the urgent time for an urgent case),
        `response_time` ("one week"), their numbers `ack_hours`, `response_days`, and `urgent`."""
        hours = self.ack_hours_for(urgent)
        return {
            "urgent": urgent,
            "ack_time": hours_text(hours),
            "ack_hours": hours,
            "response_time": days_text(self.response_days),
            "response_days": self.response_days,
        }
