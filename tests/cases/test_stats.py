"""Anonymous statistics (`conduct-inbox report`): counts below 5 hidden, complementary suppression,
spam apart, and nothing that identifies a person or a case in the output."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduct_inbox.cases.stats import MARKER, STATUSES, CaseFacts, aggregate, collect, render_text, suppress, to_json
from conduct_inbox.core.commands import DECISIONS
from conduct_inbox.store.models import Case, Decision, Party

T = 5


def cells(*values: int) -> list[tuple[str, int]]:
    return [(f"c{i}", v) for i, v in enumerate(values)]


def hidden(published: list[tuple[str, int | None]]) -> set[str]:
    return {label for label, value in published if value is None}


def candidates(published: list[tuple[str, int | None]], total: int | None) -> list[tuple[int, ...]]:
    """Every full table an attacker who knows the rule finds consistent with what was published."""
    holes = [i for i, (_, v) in enumerate(published) if v is None]
    if total is None:
        return []  # not used with a hidden total
    rest = total - sum(v for _, v in published if v is not None)
    found: list[tuple[int, ...]] = []

    def fill(i: int, left: int, values: list[int]) -> None:
        if i == len(holes) - 1:
            values = [*values, left]
            table = [v for _, v in published]
            for hole, value in zip(holes, values):
                table[hole] = value
            if suppress(cells(*table), T) == (published, total):
                found.append(tuple(values))
            return
        for value in range(left + 1):
            fill(i + 1, left - value, [*values, value])

    if holes:
        fill(0, rest, [])
    return found


# ----- suppression -------------------------------------------------------------------------------


def test_one_small_cell_forces_the_next_smallest_to_be_hidden_too():
    published, total = suppress(cells(2, 9, 7, 30))
    assert published == [("c0", None), ("c1", 9), ("c2", None), ("c3", 30)]
    assert total == 48
    # Total minus the shown cells gives 9, which splits between the two hidden cells many ways.
    assert {a for a, _ in candidates(published, total)} >= {1, 2, 3, 4}


def test_the_complement_goes_on_while_the_small_count_could_still_be_worked_out():
    # Hiding 1 and the first 5 alone: their sum is 6, the 5 can be no larger than the shown 5, so 1.
    published, total = suppress(cells(1, 5, 5, 20))
    assert hidden(published) == {"c0", "c1", "c2"} and total == 31
    assert len({c[0] for c in candidates(published, total)}) >= 2


def test_two_small_cells_protect_each_other():
    published, total = suppress(cells(1, 3, 10, 12))
    assert published == [("c0", None), ("c1", None), ("c2", 10), ("c3", 12)] and total == 26


def test_a_total_below_five_is_hidden_with_all_its_cells():
    assert suppress(cells(1, 2, 1)) == ([("c0", None), ("c1", None), ("c2", None)], None)
    assert suppress(cells(3)) == ([("c0", None)], None)
    assert suppress([]) == ([], None)


def test_all_small_cells_are_hidden_and_a_large_enough_total_is_shown():
    assert suppress(cells(2, 2, 3, 0)) == ([("c0", None), ("c1", None), ("c2", None), ("c3", None)], 7)


def test_counts_of_five_and_more_are_shown_as_they_are():
    assert suppress({"a": 5, "b": 12, "c": 7}) == ([("a", 5), ("b", 12), ("c", 7)], 24)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=4))
def test_no_small_count_can_be_worked_out_from_what_is_published(values):
    published, total = suppress(cells(*values))
    for (_, shown), value in zip(published, values):
        assert shown is None or (shown == value and value >= T)  # shown cells are exact, never small
    if total is None:
        assert all(v is None for _, v in published)  # no total: nothing in the table is shown
        return
    assert total == sum(values)
    assert len(hidden(published)) != 1 or not any(0 < v < T for v in values)  # a lone hidden zero harms nobody
    options = candidates(published, total)
    assert tuple(v for (_, s), v in zip(published, values) if s is None) in options or not hidden(published)
    holes = [i for i, (_, v) in enumerate(published) if v is None]
    for position, i in enumerate(holes):
        if 0 < values[i] < T:  # a zero reveals nobody; any other small count must stay uncertain
            assert len({option[position] for option in options}) >= 2, (values, published)


# ----- aggregation and output --------------------------------------------------------------------


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(hour=12, tzinfo=timezone.utc)


def test_tables_count_cases_by_month_status_and_decision_with_spam_apart():
    cases = (
        [CaseFacts(at("2026-01-10"), "investigating", False)] * 6
        + [CaseFacts(at("2026-01-20"), "closed", False, ("private-reprimand",))] * 5
        + [CaseFacts(at("2026-03-03"), "closed", False, ("temporary-ban", "apology-request"))] * 2
        + [CaseFacts(at("2026-02-01"), "new", True)] * 7  # spam
        + [CaseFacts(at("2025-12-31"), "closed", False)] * 9  # before the period
    )
    stats = aggregate(cases, since=date(2026, 1, 1), until=date(2026, 3, 31), today=date(2026, 6, 1))
    assert [(label, c.count) for label, c in stats.by_month.rows] == [("2026-01", 11), ("2026-02", None), ("2026-03", None)]
    assert stats.by_month.total.count == 13
    statuses = dict((label, c.count) for label, c in stats.by_status.rows)
    assert list(statuses) == list(STATUSES)
    assert statuses["investigating"] == 6 and statuses["closed"] == 7 and statuses["new"] is None
    decisions = dict((label, c.count) for label, c in stats.by_decision.rows)
    assert list(decisions) == list(DECISIONS)
    assert decisions["private-reprimand"] == 5 and decisions["temporary-ban"] is None
    assert stats.by_decision.total.count == 9  # 5 + 2 + 2: a decision with two values counts under each
    assert stats.spam.count == 7


def test_text_shows_hidden_counts_as_x_and_json_as_null_marked_suppressed():
    cases = [CaseFacts(at("2026-01-10"), "investigating", False)] * 9 + [CaseFacts(at("2026-02-11"), "waiting", False)] * 2
    cases += [CaseFacts(at("2026-01-12"), "new", True)] * 3
    stats = aggregate(cases, since=date(2026, 1, 1), until=date(2026, 2, 28), today=date(2026, 6, 1))
    text = render_text(stats)
    lines = {line.split()[0]: line.split()[-1] for line in text.splitlines() if line.startswith("  ")}
    assert lines["2026-02"] == MARKER == "x"
    assert lines["2026-01"] == MARKER  # the complement: otherwise 11 - 9 gives February away
    assert lines["investigating"] == "9"  # here the other hidden statuses (0 and 2) protect each other
    assert lines["waiting"] == MARKER and lines["new"] == MARKER
    assert "Spam (not counted above): x" in text
    assert "hidden: fewer than 5" in text
    assert "2" not in "".join(v for v in lines.values())  # the small count appears nowhere
    data = to_json(stats)
    json.dumps(data)  # serialisable as it is
    months = data["cases_by_month"]
    assert months["rows"] == [{"label": "2026-01", "count": None, "suppressed": True},
                              {"label": "2026-02", "count": None, "suppressed": True}]
    assert months["total"] == {"count": 11, "suppressed": False}
    status = {row["label"]: row for row in data["cases_by_status"]["rows"]}
    assert status["waiting"] == {"label": "waiting", "count": None, "suppressed": True}
    assert status["investigating"] == {"label": "investigating", "count": 9, "suppressed": False}
    assert data["spam"] == {"count": None, "suppressed": True}
    assert (data["since"], data["until"], data["threshold"]) == ("2026-01-01", "2026-02-28", 5)


def test_months_without_cases_are_listed_up_to_today():
    stats = aggregate([CaseFacts(at("2026-01-05"), "new", False)] * 5, since=date(2025, 11, 15), until=None,
                      today=date(2026, 2, 3))
    assert [label for label, _ in stats.by_month.rows] == ["2025-11", "2025-12", "2026-01", "2026-02"]


# ----- from the database -------------------------------------------------------------------------


def test_report_from_the_database_counts_and_identifies_nobody(database):
    refs = count(1)
    secrets: list[str] = []

    def add(session, day: str, status: str = "investigating", spam: bool = False, decisions=()) -> None:
        n = next(refs)
        ref, name, address, title = f"2026-{n:04d}", f"Person Number{n}", f"person{n}@example.net", f"Incident {n} at the sprint"
        secrets.extend([ref, name, address, title])
        case = Case(ref=ref, title=title, status=status, spam=spam, auto=False, urgent=False, unverified=False,
                    created_at=at(day), updated_at=at(day))
        session.add(case)
        session.flush()
        session.add(Party(case_id=case.id, role="reporter", address=address, name=name, created_at=at(day)))
        for kinds, state in decisions:
            session.add(Decision(case_id=case.id, kinds=kinds, status=state, decided_by="alice@example.org",
                                 target_role="reported", target_address=f"target{n}@example.net", created_at=at(day)))
            session.flush()

    with database.sessions() as session, session.begin():
        for _ in range(6):
            add(session, "2026-03-02")
        for _ in range(5):  # decided twice: the second (latest) effective decision counts
            add(session, "2026-04-09", "closed", decisions=[("no-action", "effective"), ("private-reprimand", "effective")])
        add(session, "2026-04-10", "decided", decisions=[("permanent-ban", "pending")])  # not effective yet
        for _ in range(5):
            add(session, "2026-03-15", "new", spam=True)
        add(session, "2026-02-28")  # before the period
        add(session, "2026-05-01")  # after it

    with database.sessions() as session:
        stats = collect(session, since=date(2026, 3, 1), until=date(2026, 4, 30), today=date(2026, 6, 1))
    assert [(label, c.count) for label, c in stats.by_month.rows] == [("2026-03", 6), ("2026-04", 6)]
    statuses = {label: c.count for label, c in stats.by_status.rows}
    assert statuses["investigating"] == 6 and statuses["closed"] == 5 and statuses["decided"] is None
    assert stats.by_status.total.count == 12
    decisions = {label: c.count for label, c in stats.by_decision.rows}
    assert decisions["private-reprimand"] == 5 and decisions["no-action"] is None and decisions["permanent-ban"] is None
    assert stats.spam.count == 5

    outputs = [render_text(stats), json.dumps(to_json(stats))]
    for output in outputs:
        assert "@" not in output
        for secret in secrets:
            assert secret not in output and secret.lower() not in output.lower()


def test_report_command_prints_text_and_json(harness_config, capsys):
    from conduct_inbox.cli import main

    assert main(["report", "--since", "2026-01-01", "--until", "2026-12-31", "--config", harness_config]) == 0
    text = capsys.readouterr().out
    assert "2026-01" in text and "2026-12" in text
    assert main(["report", "--since", "2026-01-01", "--json", "--config", harness_config]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), dict)
    assert main(["report", "--since", "next week", "--config", harness_config]) == 2
    assert main(["report", "--since", "2026-05-01", "--until", "2026-04-01", "--config", harness_config]) == 2


@pytest.fixture
def harness_config(database, tmp_path):
    """A configuration naming the test database; `report` reads only the database, so the mailbox
    is a local Maildir and no mail server is needed."""
    from tests.harness import write_config

    path = write_config(tmp_path, database_url=database.url, mailbox={"maildir": str(tmp_path / "Maildir")},
                        smtp={"host": "127.0.0.1", "port": 2525, "security": "none"})
    return str(path)
