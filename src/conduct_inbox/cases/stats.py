"""Anonymous statistics for `conduct-inbox report --since DATE [--until DATE] [--json]`.

Counts only: cases by month opened, cases by status, decisions by value, and a separate spam
total. No reference, name, address, title or text is read, let alone shown. Spam cases are left
out of every table and counted in `spam` alone. A case's decision is its latest effective one;
a decision with two values (`!decide private-reprimand,apology-request`) counts under each, so
the decisions table's total is the sum of its rows, not a number of cases.

Statistical disclosure control, applied to every table before anything leaves `collect`:

- primary suppression: every count below `THRESHOLD` (5), zero included, is hidden;
- complementary suppression: a table whose total is shown and in which exactly one cell is
  hidden gets its smallest other cell hidden too (ties: the first in the table's order), so
  the hidden count cannot be worked out as total minus the shown cells; and further ones, as
  long as a reader who knows this rule could still narrow the small count down to one value
  (cells 1, 5, 5, 20: hiding the first 5 alone leaves 1 as the only possibility);
- a total below the threshold is hidden (and then all its cells are too).

Hidden cells that add up to 0 (total minus the shown cells) are all 0; that reveals nobody.

Hidden cells look the same whether they were hidden for being small or to protect another cell:
marking them differently would narrow the small one down (a cell known to be 5 or more next to
one known to be under 5, with their sum known, can leave a single possibility). Because a cell
hidden to protect another may itself be 5 or more, the text marker is `x`, not `<5`; the legend
printed with the text says so.

The cases-by-month and cases-by-status tables share one total (the non-spam cases in the
period); both tables hide it under the same rule, so neither reveals it when the other hides it.
The protection is per table: combining several reports over overlapping periods can still narrow
counts down, so publish one period per report.

JSON shape (`to_json`), every count as an object so that a hidden one is explicit::

    {"since": "2026-01-01", "until": "2026-12-31", "threshold": 5,
     "cases_by_month": {"title": "Cases by month opened",
                        "rows": [{"label": "2026-01", "count": 7, "suppressed": false},
                                 {"label": "2026-02", "count": null, "suppressed": true}, ...],
                        "total": {"count": 12, "suppressed": false}},
     "cases_by_status": {...same shape...},
     "decisions": {...same shape...},
     "spam": {"count": null, "suppressed": true}}

`collect` only reads (two SELECTs, counts and decision values only); `aggregate`, `suppress`,
`render_text` and `to_json` are pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.core import states
from conduct_inbox.core.commands import DECISIONS
from conduct_inbox.store.models import Case, Decision

THRESHOLD = 5
MARKER = "x"
#: Case states in workflow order; a state not listed here (a newer version's) is counted after them.
STATUSES = states.ALL


@dataclass(frozen=True)
class Cell:
    """One published count; `count` is None when it is suppressed."""

    count: int | None

    @property
    def suppressed(self) -> bool:
        return self.count is None


@dataclass(frozen=True)
class Table:
    title: str
    rows: tuple[tuple[str, Cell], ...]
    total: Cell


@dataclass(frozen=True)
class Stats:
    """What may be published: every count already passed through `suppress`."""

    since: date
    until: date | None
    threshold: int
    by_month: Table
    by_status: Table
    by_decision: Table
    spam: Cell


@dataclass(frozen=True)
class CaseFacts:
    """The only facts about a case the statistics use."""

    created_at: datetime
    status: str
    spam: bool
    decisions: tuple[str, ...] = ()


# ----- suppression (pure) -------------------------------------------------------------------------


def suppress(
    counts: Mapping[str, int] | Sequence[tuple[str, int]], threshold: int = THRESHOLD
) -> tuple[list[tuple[str, int | None]], int | None]:
    """(label, count or None) per cell in the given order, and the total or None. See the module doc."""
    cells = list(counts.items()) if isinstance(counts, Mapping) else list(counts)
    total = sum(count for _, count in cells)
    hidden = {i for i, (_, count) in enumerate(cells) if count < threshold}
    total_shown = total >= threshold
    if total_shown and hidden:
        # Hide the smallest other cells while a small count could still be worked out: one hidden
        # cell is its total minus the rest, and two small ones can pin each other down (4 + 4 = 8).
        while not _ambiguous(cells, hidden, total, threshold):
            others = sorted((count, i) for i, (_, count) in enumerate(cells) if i not in hidden)
            if not others:
                total_shown = False  # nothing left to hide but the total itself
                break
            hidden.add(others[0][1])
    published = [(label, None if i in hidden else count) for i, (label, count) in enumerate(cells)]
    return published, total if total_shown else None


def _ambiguous(cells: list[tuple[str, int]], hidden: set[int], total: int, threshold: int) -> bool:
    """Whether each small hidden cell still has two or more possible values.

    The reader is assumed to know even how many hidden cells are small (below the threshold) and
    how many are complements (at least the threshold, at most the smallest shown non-zero cell),
    and that all hidden cells add up to the total minus the shown ones.
    """
    if not any(0 < cells[i][1] < threshold for i in hidden):
        return True  # only zeros are hidden: "nobody" identifies nobody
    shown = [count for i, (_, count) in enumerate(cells) if i not in hidden]
    rest = total - sum(shown)
    small = sum(1 for i in hidden if cells[i][1] < threshold)
    complements = len(hidden) - small
    bound = min(shown, default=rest)  # a complement was the smallest cell not hidden
    low = complements * threshold
    high = complements * bound + (small - 1) * (threshold - 1)
    possible = [p for p in range(threshold) if low <= rest - p <= high]
    return len(possible) >= 2


def _table(title: str, counts: Sequence[tuple[str, int]], threshold: int) -> Table:
    cells, total = suppress(counts, threshold)
    return Table(title, tuple((label, Cell(count)) for label, count in cells), Cell(total))


def _months(first: date, last: date) -> list[str]:
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _ordered(counter: Counter[str], known: Iterable[str]) -> list[tuple[str, int]]:
    known = list(known)
    extra = sorted(k for k in counter if k not in known)
    return [(label, counter.get(label, 0)) for label in [*known, *extra]]


def aggregate(
    cases: Iterable[CaseFacts], since: date, until: date | None, today: date, threshold: int = THRESHOLD
) -> Stats:
    """Count and suppress. `cases` should already be those opened in the period; others are ignored."""
    end = until or today
    months: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    spam = 0
    for case in cases:
        opened = case.created_at.astimezone(timezone.utc).date()
        if opened < since or opened > end:
            continue
        if case.spam:
            spam += 1
            continue
        months[f"{opened.year:04d}-{opened.month:02d}"] += 1
        statuses[case.status] += 1
        for value in dict.fromkeys(case.decisions):  # a value twice in one decision counts once
            decisions[value] += 1
    month_labels = _months(since, max(end, since))
    return Stats(
        since=since,
        until=until,
        threshold=threshold,
        by_month=_table("Cases by month opened", _ordered(months, month_labels), threshold),
        by_status=_table("Cases by status", _ordered(statuses, STATUSES), threshold),
        by_decision=_table("Decisions (a decision with two values counts under each)",
                           _ordered(decisions, DECISIONS), threshold),
        spam=Cell(spam if spam >= threshold else None),
    )


# ----- the one read query -------------------------------------------------------------------------


def collect(session: Session, since: date, until: date | None = None, *, today: date | None = None,
            threshold: int = THRESHOLD) -> Stats:
    """Statistics of the cases opened from `since` to `until` (both inclusive, UTC; no `until`: up to today)."""
    start = datetime.combine(since, time(), timezone.utc)
    query = select(Case.id, Case.created_at, Case.status, Case.spam).where(Case.created_at >= start)
    if until is not None:
        query = query.where(Case.created_at < datetime.combine(until + timedelta(days=1), time(), timezone.utc))
    rows = session.execute(query).all()
    latest: dict[int, str] = {}
    effective = (
        select(Decision.case_id, Decision.kinds)
        .where(Decision.status == "effective", Decision.case_id.in_(select(query.subquery().c.id)))
        .order_by(Decision.id)
    )
    for case_id, kinds in session.execute(effective):
        latest[case_id] = kinds  # ordered by id: the last one wins
    facts = [
        CaseFacts(created_at, status, bool(spam), tuple(k for k in latest.get(case_id, "").split(",") if k))
        for case_id, created_at, status, spam in rows
    ]
    return aggregate(facts, since, until, today or datetime.now(timezone.utc).date(), threshold)


# ----- output (pure) ------------------------------------------------------------------------------


def _show(cell: Cell) -> str:
    return MARKER if cell.count is None else str(cell.count)


def render_text(stats: Stats) -> str:
    period = f"{stats.since.isoformat()} to {stats.until.isoformat() if stats.until else 'today'}"
    lines = [
        f"Cases opened {period} (spam not included)",
        f"{MARKER} = hidden: fewer than {stats.threshold}, or hidden so that such a count cannot be worked out",
    ]
    for table in (stats.by_month, stats.by_status, stats.by_decision):
        width = max([len(label) for label, _ in table.rows] + [len("total")])
        lines += ["", table.title]
        lines += [f"  {label:<{width}}  {_show(cell):>5}" for label, cell in table.rows]
        lines.append(f"  {'total':<{width}}  {_show(table.total):>5}")
    lines += ["", f"Spam (not counted above): {_show(stats.spam)}"]
    return "\n".join(lines) + "\n"


def _cell_json(cell: Cell) -> dict[str, Any]:
    return {"count": cell.count, "suppressed": cell.suppressed}


def _table_json(table: Table) -> dict[str, Any]:
    return {
        "title": table.title,
        "rows": [{"label": label, **_cell_json(cell)} for label, cell in table.rows],
        "total": _cell_json(table.total),
    }


def to_json(stats: Stats) -> dict[str, Any]:
    return {
        "since": stats.since.isoformat(),
        "until": stats.until.isoformat() if stats.until else None,
        "threshold": stats.threshold,
        "cases_by_month": _table_json(stats.by_month),
        "cases_by_status": _table_json(stats.by_status),
        "decisions": _table_json(stats.by_decision),
        "spam": _cell_json(stats.spam),
    }
