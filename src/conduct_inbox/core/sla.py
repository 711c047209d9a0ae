"""Deadlines of a case and the escalations due at `now`: pure rules over plain data.

The policy's promises become three clocks per case (none for spam-flagged or closed cases):

- human acknowledgement (`!ack`): due `ack_hours` after the report (urgent: `urgent_ack_hours`);
  the automatic acknowledgement does not stop it. Overdue → level 1 (committee + chair); still
  overdue `second_level_hours` later (urgent: `urgent_second_level_hours`) → level 2 (steering).
  Auto-flagged cases have no acknowledgement clock: they wait until a member `!ack`s them.
- response to the reporter (`!reply` or closing): due `response_days` after the cycle start
  (the last response, else the report; for auto-flagged cases, else the `!ack`). A level 0
  reminder comes `reminder_hours_before` earlier, then the same ladder as above. Keys carry the
  cycle start, so every response starts fresh escalations.
- the automatic acknowledgement still unsent `auto_ack_alert_hours` after it was queued → one
  level 1 alert.

Every escalation has a key unique per case, level and cycle; the caller records sent keys in
the database and passes them back in `CaseClock.fired`, so each fires once, also after a missed
tick (`due` then returns every level now due). Nothing here reads the clock or the database.
Datetimes must be timezone-aware (as the case store returns them); results are in UTC.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

CLOSED_STATES = frozenset({"closed"})  # "decided" still owes the reporter a response


@dataclass(frozen=True)
class SlaPolicy:
    """The configurable promises, in whole hours and days; the defaults follow the reporting
    policy and are the configuration's defaults too (config.Sla reads them from here)."""

    ack_hours: int = 24
    urgent_ack_hours: int = 1
    second_level_hours: int = 24
    urgent_second_level_hours: int = 2
    response_days: int = 7
    reminder_hours_before: int = 48
    auto_ack_alert_hours: int = 1
    urgent_phrases: tuple[str, ...] = (
        "physical danger", "unsafe", "threat", "police", "self-harm", "suicide",
    )


@dataclass(frozen=True)
class CaseClock:
    """The facts of one case that the rules need."""

    case_id: int
    ref: str
    status: str  # new|acknowledged|investigating|waiting|decided|closed|reconsideration
    urgent: bool
    spam: bool
    auto: bool
    created_at: datetime
    human_ack_at: datetime | None
    last_response_at: datetime | None
    auto_ack_pending_since: datetime | None  # unsent automatic acknowledgement, queued since
    fired: frozenset[str]  # escalation keys already sent for this case
    urgent_since: datetime | None = None  # marked urgent after the report: the urgent hour runs from then


@dataclass(frozen=True)
class Escalation:
    """One alert that is due; `description` is content-free (no names, addresses or text)."""

    case_id: int
    ref: str
    key: str
    rule: str  # "ack" | "response" | "auto_ack_unsent"
    level: int  # 0 reminder, 1 committee + chair, 2 steering
    due_at: datetime
    description: str


@dataclass(frozen=True)
class _Steps:
    """A policy's durations as timedeltas, computed once per policy."""

    ack: timedelta
    urgent_ack: timedelta
    second: timedelta
    urgent_second: timedelta
    response: timedelta
    reminder_before: timedelta
    auto_ack_alert: timedelta


@lru_cache(maxsize=16)
def _steps(policy: SlaPolicy) -> _Steps:
    return _Steps(
        ack=timedelta(hours=policy.ack_hours),
        urgent_ack=timedelta(hours=policy.urgent_ack_hours),
        second=timedelta(hours=policy.second_level_hours),
        urgent_second=timedelta(hours=policy.urgent_second_level_hours),
        response=timedelta(days=policy.response_days),
        reminder_before=timedelta(hours=policy.reminder_hours_before),
        auto_ack_alert=timedelta(hours=policy.auto_ack_alert_hours),
    )


# A candidate escalation before its key and text are built: (due_at, rule, level, anchor).
# The anchor is the cycle start for the response rule (part of the key), else the clock start.
_Candidate = tuple[datetime, str, int, datetime]


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the SLA rules")
    return value


def _candidates(case: CaseClock, steps: _Steps) -> list[_Candidate]:
    """Every escalation of the case's current clocks, fired or not, in level order per rule."""
    if case.spam or case.status in CLOSED_STATES:
        return []
    out: list[_Candidate] = []
    second = steps.urgent_second if case.urgent else steps.second
    if case.auto_ack_pending_since is not None:
        since = _aware(case.auto_ack_pending_since)
        out.append((since + steps.auto_ack_alert, "auto_ack_unsent", 1, since))
    if case.auto:
        if case.human_ack_at is None:
            return out  # no clock until a member has looked at it
        start = _aware(case.human_ack_at)
        if case.last_response_at is not None:
            start = max(start, _aware(case.last_response_at))
    else:
        created = _aware(case.created_at)
        if case.human_ack_at is None:
            ack_due = created + steps.ack
            if case.urgent:  # shortens what is still to come; never dates an overdue back
                ack_due = min(ack_due, _aware(case.urgent_since or created) + steps.urgent_ack)
            out.append((ack_due, "ack", 1, created))
            out.append((ack_due + second, "ack", 2, created))
        start = created if case.last_response_at is None else _aware(case.last_response_at)
    response_due = start + steps.response
    if steps.reminder_before > timedelta(0):
        out.append((max(start, response_due - steps.reminder_before), "response", 0, start))
    out.append((response_due, "response", 1, start))
    out.append((response_due + second, "response", 2, start))
    return out


def _stamp(value: datetime) -> str:
    """A cycle start as it appears in keys: UTC to the second, stable across backends."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def human(value: datetime) -> str:
    """A moment as the descriptions state it (UTC; mail puts the committee's zone in its place)."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _key(rule: str, level: int, anchor: datetime, urgent: bool = False) -> str:
    if rule == "ack":
        # Urgent and plain acknowledgement deadlines differ: `!not-urgent` after the urgent hour
        # was escalated gives a new deadline (24 hours), which must escalate in its turn.
        return f"ack:{level}:urgent" if urgent else f"ack:{level}"
    if rule == "response":
        return f"response:{'reminder' if level == 0 else level}:{_stamp(anchor)}"
    return "auto_ack_unsent"


def _description(rule: str, level: int, due_at: datetime, urgent: bool) -> str:
    when = human(due_at)
    if rule == "auto_ack_unsent":
        text = f"automatic acknowledgement still unsent at {when}"
    elif rule == "ack":
        text = (f"human acknowledgement overdue since {when}" if level == 1
                else f"human acknowledgement still overdue at {when} (escalated to steering)")
    elif level == 0:
        text = f"response to the reporter due soon (reminder at {when})"
    elif level == 1:
        text = f"response to the reporter overdue since {when}"
    else:
        text = f"response to the reporter still overdue at {when} (escalated to steering)"
    return f"urgent case: {text}" if urgent else text


def _has_fired(case: CaseClock, key: str) -> bool:
    """Whether the escalation `key` was sent. The plain acknowledgement escalation of a level also
    counts for the urgent one (a case marked urgent after its plain deadline escalated is announced
    as urgent anyway, and a key recorded before urgency was part of it stays fired)."""
    return key in case.fired or (key.endswith(":urgent") and key.removesuffix(":urgent") in case.fired)


def due(cases: Iterable[CaseClock], now: datetime, policy: SlaPolicy) -> list[Escalation]:
    """Every escalation due at `now` (due_at <= now) not yet in its case's `fired`, by due_at."""
    _aware(now)
    steps = _steps(policy)
    found: list[Escalation] = []
    for case in cases:
        for due_at, rule, level, anchor in _candidates(case, steps):
            if due_at > now:
                continue
            key = _key(rule, level, anchor, case.urgent)
            if _has_fired(case, key):
                continue
            found.append(
                Escalation(case.case_id, case.ref, key, rule, level, due_at,
                           _description(rule, level, due_at, case.urgent))
            )
    found.sort(key=lambda e: (e.due_at, e.case_id, e.level, e.key))
    return found


def next_due_at(case: CaseClock, policy: SlaPolicy) -> datetime | None:
    """The earliest due_at of the case's unfired escalations (for cases.next_due_at), else None."""
    pending = [
        due_at
        for due_at, rule, level, anchor in _candidates(case, _steps(policy))
        if not _has_fired(case, _key(rule, level, anchor, case.urgent))
    ]
    return min(pending, default=None)


def own_start(case: CaseClock) -> datetime | None:
    """Where a reporter waiting since the case began is owed their response from: the report, or
    for an automatic case the first human acknowledgement (None: no response clock runs yet, as
    for a spam case)."""
    if case.spam:
        return None
    return case.human_ack_at if case.auto else _aware(case.created_at)


def reporter_start(answered: datetime | None, waiting: datetime | None) -> datetime | None:
    """Where one reporter's response clock runs from: the later of the last answer to them and the
    start of their current wait (a merge, a reopening); None: since the case began."""
    known = [_aware(t) for t in (answered, waiting) if t is not None]
    return max(known) if known else None


def still_owed(answered: datetime | None, waiting: datetime | None) -> bool:
    """Whether a reporter is still owed an answer: never answered, or waiting again since (a
    reopening, a merge of their closed case) — `!close` waits for them."""
    return answered is None or (waiting is not None and _aware(waiting) > _aware(answered))


def response_from(reporters: Iterable[tuple[datetime | None, datetime | None]]) -> datetime | None:
    """The case's response clock start (its `last_response_at`) from each reporter's
    (answered_at, waiting_since): the reporter waiting longest is owed first, so answering one
    reporter of a merged case leaves another's promise standing. None (the clock runs from the
    case's start) while a reporter waits since the case began, or the case has no reporter."""
    starts = [reporter_start(answered, waiting) for answered, waiting in reporters]
    if not starts or None in starts:
        return None
    return min(s for s in starts if s is not None)


def merged(target: CaseClock, source: CaseClock,
           now: datetime) -> tuple[datetime, datetime | None, bool, datetime | None]:
    """(clocks start, human_ack_at, auto, urgent_since) of `target` once `source` is merged into it.

    A member acknowledged either case: the merged case is acknowledged (by the earlier). Else the
    acknowledgement is owed by the earliest report still owed one (an automatic, spam or closed
    case promised none), and an urgent report keeps its own urgent hour (`urgent_since`). Else,
    when the merged case is a real one, the member's merge is its first human look. Automatic only
    if both were. (Each reporter keeps their own response clock: `own_start`, `response_from`.)"""
    both = (target, source)
    auto = target.auto and source.auto
    urgent = [_aware(c.urgent_since or c.created_at) for c in both if c.urgent]
    urgent_since = min(urgent) if urgent else None
    acks = [_aware(c.human_ack_at) for c in both if c.human_ack_at is not None]
    if acks:
        return _aware(target.created_at), min(acks), auto, urgent_since
    owed = [_aware(c.created_at) for c in both if not c.auto and not c.spam and c.status not in CLOSED_STATES]
    if owed:
        return min(owed), None, auto, urgent_since
    real = not auto and not (target.spam and source.spam)
    return _aware(target.created_at), now if real else None, auto, urgent_since


def deadlines(case: CaseClock, policy: SlaPolicy) -> dict[str, datetime]:
    """The running promises of a case for display: "ack", "response", "auto_ack" when they apply."""
    names = {"ack": "ack", "response": "response", "auto_ack_unsent": "auto_ack"}
    return {
        names[rule]: due_at
        for due_at, rule, level, _anchor in _candidates(case, _steps(policy))
        if level == 1
    }


_WORD = re.compile(r"\w+")


def _fold(text: str) -> str:
    """Case- and accent-insensitive form: decompose, drop combining marks, casefold."""
    if text.isascii():  # nothing to decompose (most reports): skip the per-character pass
        return text.casefold()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=8)
def _phrase_index(phrases: tuple[str, ...]) -> dict[str, list[tuple[str, ...]]]:
    """Folded phrases as word tuples, indexed by their first word."""
    index: dict[str, list[tuple[str, ...]]] = {}
    for phrase in phrases:
        words = tuple(_WORD.findall(_fold(phrase)))
        if words:  # a phrase without words would match everything
            index.setdefault(words[0], []).append(words)
    return index


def is_urgent_text(own_text: str, phrases: Sequence[str]) -> bool:
    """Whether the sender's own (unquoted) text contains a phrase as whole words.

    Matching ignores case and accents and treats any run of non-word characters as a word
    gap, so "self-harm" also matches "Self harm". Time is linear in the text (for a fixed
    phrase list): the text is split into words once and each word looks up its phrases.
    Quoted text must be removed by the caller.
    """
    index = _phrase_index(tuple(phrases))
    if not index:
        return False
    words = _WORD.findall(_fold(own_text))
    for i, word in enumerate(words):
        for phrase in index.get(word, ()):
            if tuple(words[i:i + len(phrase)]) == phrase:
                return True
    return False
