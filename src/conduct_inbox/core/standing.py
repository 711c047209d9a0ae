"""Where a case stands, as every committee mail about it says: its next due times in the
committee's time zone and the commands that make sense in its current state. Pure: the caller
gathers the facts (`cases.standing`), the due times come from `sla.deadlines`, the very rules
the escalations run on, so a copy never promises a time the escalations do not keep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo

from conduct_inbox.core import states

#: The heading of the block (tests and README refer to it).
HEADING = "Where the case stands"


@dataclass(frozen=True)
class Standing:
    """The facts of one case the block needs."""

    ref: str
    status: str
    urgent: bool = False
    spam: bool = False
    auto: bool = False
    acknowledged: bool = False  # a member has sent !ack
    assignee: str | None = None  # the assignee's name
    has_reporter: bool = True
    several_reporters: bool = False  # a merge joined reports of different reporters
    #: How many reporters, and how many of them were never answered (`!close` waits for every
    #: one). Counts only: the block also goes to the steering committee and into alerts.
    reporters: int = 1
    unanswered: int = 0
    #: `sla.deadlines(...)`: "ack" and "response" when those clocks run.
    due: Mapping[str, datetime] = field(default_factory=dict)
    #: (decision, its last day) of decisions that are pending or in force and end on a date.
    sanctions_end: Sequence[tuple[str, date]] = ()
    decision_pending: bool = False  # a severe decision waits for !confirm
    decided: bool = False  # a decision is in force
    now: datetime | None = None  # when given, a due time already past says "overdue"


def moment(value: datetime, zone: tzinfo) -> str:
    """A due time as members read it: `Wed 2 Dec 2026 14:00 CET` in the committee's zone."""
    local = value.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M} {local.tzname() or ''}".rstrip()


def day(value: date) -> str:
    return f"{value:%a} {value.day} {value:%b %Y}"


def _late(s: Standing, clock: str) -> str:
    return " (overdue)" if s.now is not None and s.due[clock] <= s.now else ""


def due_lines(s: Standing, zone: tzinfo) -> list[str]:
    """The case's clocks, one line each; a line that says no clock runs when none does."""
    if s.spam:
        return ["No deadlines: the case is flagged as spam and no clock runs."]
    if s.status == states.CLOSED:
        out = ["No deadlines: the case is closed."]
    elif s.auto and not s.acknowledged:
        out = ["No deadline yet: automatic mail starts no clock. Once a member sends !ack, the reporter "
               "is owed a response."]
    else:
        out = []
        if "ack" in s.due:
            out.append(f"Human acknowledgement (!ack) due: {moment(s.due['ack'], zone)}{_late(s, 'ack')}")
        if "response" in s.due:
            out.append(f"Response to the reporter (!reply) due: {moment(s.due['response'], zone)}{_late(s, 'response')}")
        if not out:
            out.append("No deadline runs at the moment.")
    if s.several_reporters and s.unanswered and s.status != states.CLOSED:
        out.append(f"Reporters not answered yet: {s.unanswered} of {s.reporters} (each needs a !reply ADDRESS "
                   "before !close; !history lists them)")
    for kind, last in s.sanctions_end:
        out.append(f"Sanction end: {kind} until {day(last)}")
    return out


def commands(s: Standing) -> list[str]:
    """The commands that make sense in the case's current state, most likely first."""
    reply = (["!reply ADDRESS"] if s.several_reporters else ["!reply"]) if s.has_reporter else []
    if s.spam:
        return ["!history"]
    if s.status == states.CLOSED:
        return ["!reopen", "!history"]
    if s.status == states.NEW:
        out = ["!ack", "!assign NAME"] + ([] if s.urgent else ["!urgent"]) + ["!spam"] + reply
        return out
    if s.status == states.DECIDED or s.decided or s.decision_pending:
        return (["!confirm"] if s.decision_pending else []) + reply + ["!close"]
    out = reply + ["!status waiting" if s.status == states.INVESTIGATING else "!status investigating"]
    if s.assignee is None:
        out.append("!assign NAME")
    return out + ["!decide VALUE", "!close silent REASON"]


def lines(s: Standing, zone: tzinfo) -> list[str]:
    """The whole block: heading, state, due times, suggested commands."""
    state = s.status + (", urgent" if s.urgent else "") + (", automatic mail" if s.auto else "")
    who = f"assigned to {s.assignee}" if s.assignee else "nobody assigned"
    return [
        f"{HEADING} (case {s.ref}): {state}; {who}.",
        *due_lines(s, zone),
        "Commands now: " + " ".join(commands(s)) + "  (!help lists all)",
    ]
