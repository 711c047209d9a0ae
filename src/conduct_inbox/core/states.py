"""The case states (DESIGN "Cases, parties, decisions") and the moves between them, as data.

`new` → `acknowledged` (`!ack`) → `investigating` ⇄ `waiting` → `decided` → `closed`;
`closed` → `reconsideration` (`!reconsider`) → `closed`; `!reopen` returns to `investigating`.
"""

from __future__ import annotations

NEW = "new"
ACKNOWLEDGED = "acknowledged"
INVESTIGATING = "investigating"
WAITING = "waiting"
DECIDED = "decided"
CLOSED = "closed"
RECONSIDERATION = "reconsideration"

#: Every state, in the order a case usually passes through them.
ALL = (NEW, ACKNOWLEDGED, INVESTIGATING, WAITING, DECIDED, RECONSIDERATION, CLOSED)
#: States of a case still being worked (`!list`; clocks run only on these).
OPEN = frozenset(ALL) - {CLOSED}

#: `!status investigating|waiting` is possible from these states.
STATUS_SETTABLE_FROM = frozenset({ACKNOWLEDGED, INVESTIGATING, WAITING, RECONSIDERATION})
#: `!reopen` (to investigating) is possible from these states.
REOPENABLE_FROM = frozenset({CLOSED, DECIDED, RECONSIDERATION})
#: `!reconsider` opens a reconsideration of a case in this state only.
RECONSIDERABLE_FROM = frozenset({CLOSED})

#: The moves the commands make: (from, command) → to. A state not listed for a command keeps
#: its state (e.g. `!ack` on an investigating case) or is refused (see the *_FROM sets above).
TRANSITIONS: dict[tuple[str, str], str] = {
    (NEW, "ack"): ACKNOWLEDGED,
    **{(s, "status investigating"): INVESTIGATING for s in STATUS_SETTABLE_FROM},
    **{(s, "status waiting"): WAITING for s in STATUS_SETTABLE_FROM},
    **{(s, "reopen"): INVESTIGATING for s in REOPENABLE_FROM},
    **{(s, "decision"): DECIDED for s in OPEN},
    **{(s, "close"): CLOSED for s in OPEN},
    (CLOSED, "reconsider"): RECONSIDERATION,
}


def is_open(state: str) -> bool:
    return state != CLOSED


def after_decision(state: str) -> str:
    """A decision taking effect makes an open case `decided`; a closed one stays closed."""
    return state if state == CLOSED else DECIDED
