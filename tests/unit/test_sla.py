"""The SLA rules: which escalations a committee gets, when, and only once."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduct_inbox.core.sla import CaseClock, SlaPolicy, deadlines, due, is_urgent_text, merged, next_due_at, own_start, response_from

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
POLICY = SlaPolicy()
H = timedelta(hours=1)
D = timedelta(days=1)


def case(**changes) -> CaseClock:
    base = CaseClock(
        case_id=7, ref="2026-0007", status="new", urgent=False, spam=False, auto=False,
        created_at=T0, human_ack_at=None, last_response_at=None,
        auto_ack_pending_since=None, fired=frozenset(),
    )
    return replace(base, **changes)


def keys(c: CaseClock, now: datetime) -> list[str]:
    return [e.key for e in due([c], now, POLICY)]


def fire(c: CaseClock, now: datetime) -> CaseClock:
    """What the daemon does on a tick: send what is due and record its keys."""
    return replace(c, fired=c.fired | {e.key for e in due([c], now, POLICY)})


# --- human acknowledgement ------------------------------------------------------------

def test_ack_escalates_to_committee_after_24h_then_to_steering_24h_later():
    c = case()
    assert keys(c, T0 + 24 * H - timedelta(seconds=1)) == []
    [first] = due([c], T0 + 24 * H, POLICY)
    assert (first.key, first.rule, first.level, first.due_at) == ("ack:1", "ack", 1, T0 + 24 * H)
    assert first.description == "human acknowledgement overdue since 2026-11-24 10:00 UTC"
    c = fire(c, T0 + 24 * H)
    assert keys(c, T0 + 48 * H - timedelta(seconds=1)) == []
    [second] = due([c], T0 + 48 * H, POLICY)
    assert (second.key, second.level, second.due_at) == ("ack:2", 2, T0 + 48 * H)


def test_urgent_ack_is_due_in_one_hour_and_reaches_steering_two_hours_later():
    c = case(urgent=True)
    assert keys(c, T0 + 59 * timedelta(minutes=1)) == []
    assert keys(c, T0 + H) == ["ack:1:urgent"]
    assert keys(c, T0 + 3 * H) == ["ack:1:urgent", "ack:2:urgent"]
    assert due([c], T0 + H, POLICY)[0].description.startswith("urgent case: ")
    assert deadlines(c, POLICY)["ack"] == T0 + H


def test_human_ack_stops_the_ack_clock_but_the_automatic_acknowledgement_does_not():
    assert keys(case(auto_ack_pending_since=None), T0 + 25 * H) == ["ack:1"]
    acked = case(status="acknowledged", human_ack_at=T0 + 2 * H)
    assert keys(acked, T0 + 4 * D) == []
    assert "ack" not in deadlines(acked, POLICY)


def test_an_escalation_fires_once_only():
    c = fire(case(), T0 + 25 * H)
    assert c.fired == {"ack:1"}
    assert keys(c, T0 + 26 * H) == []


# --- response to the reporter ---------------------------------------------------------

def test_response_reminder_two_days_before_then_overdue_then_steering():
    c = case(status="investigating", human_ack_at=T0 + H)
    assert keys(c, T0 + 5 * D - timedelta(seconds=1)) == []
    [reminder] = due([c], T0 + 5 * D, POLICY)
    assert (reminder.rule, reminder.level) == ("response", 0)
    assert reminder.key == "response:reminder:2026-11-23T10:00:00Z"
    c = fire(c, T0 + 5 * D)
    [overdue] = due([c], T0 + 7 * D, POLICY)
    assert (overdue.key, overdue.level) == ("response:1:2026-11-23T10:00:00Z", 1)
    assert overdue.description == "response to the reporter overdue since 2026-11-30 10:00 UTC"
    c = fire(c, T0 + 7 * D)
    assert keys(c, T0 + 8 * D - timedelta(seconds=1)) == []
    assert keys(c, T0 + 8 * D) == ["response:2:2026-11-23T10:00:00Z"]


def test_urgent_response_reaches_steering_on_the_urgent_ladder():
    c = case(urgent=True, human_ack_at=T0 + H)
    assert [e.level for e in due([c], T0 + 7 * D + 2 * H, POLICY)] == [0, 1, 2]


def test_a_response_starts_a_new_cycle_with_fresh_escalations():
    c = fire(case(human_ack_at=T0 + H), T0 + 7 * D)  # reminder and level 1 sent
    replied = replace(c, last_response_at=T0 + 7 * D + 3 * H)
    assert keys(replied, T0 + 8 * D) == []  # the old cycle's level 2 no longer comes
    assert deadlines(replied, POLICY)["response"] == T0 + 14 * D + 3 * H
    assert keys(replied, T0 + 14 * D + 3 * H) == ["response:reminder:2026-11-30T13:00:00Z",
                                                  "response:1:2026-11-30T13:00:00Z"]


def test_decided_and_waiting_cases_still_owe_the_reporter_a_response():
    for status in ("waiting", "decided", "reconsideration"):
        c = case(status=status, human_ack_at=T0 + H, last_response_at=T0 + 2 * D)
        assert keys(c, T0 + 9 * D) == ["response:reminder:2026-11-25T10:00:00Z",
                                        "response:1:2026-11-25T10:00:00Z"]


def test_missed_tick_gives_every_level_now_due_each_once():
    c = case()
    late = T0 + 30 * D  # the daemon was down for a month
    found = due([c], late, POLICY)
    assert sorted(e.key for e in found) == sorted([
        "ack:1", "ack:2", "response:reminder:2026-11-23T10:00:00Z",
        "response:1:2026-11-23T10:00:00Z", "response:2:2026-11-23T10:00:00Z",
    ])
    assert [e.due_at for e in found] == sorted(e.due_at for e in found)
    assert keys(fire(c, late), late + H) == []


# --- no clocks ------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [{"status": "closed"}, {"spam": True}])
def test_closed_and_spam_cases_have_no_clocks(changes):
    c = case(auto_ack_pending_since=T0, **changes)
    assert due([c], T0 + 60 * D, POLICY) == []
    assert next_due_at(c, POLICY) is None
    assert deadlines(c, POLICY) == {}


def test_auto_flagged_case_has_no_clock_until_acked_then_only_the_response_clock():
    c = case(auto=True)
    assert keys(c, T0 + 60 * D) == []
    assert next_due_at(c, POLICY) is None
    acked = replace(c, human_ack_at=T0 + 10 * D, status="acknowledged")
    assert deadlines(acked, POLICY) == {"response": T0 + 17 * D}
    assert keys(acked, T0 + 17 * D) == ["response:reminder:2026-12-03T10:00:00Z",
                                        "response:1:2026-12-03T10:00:00Z"]


# --- automatic acknowledgement --------------------------------------------------------

def test_unsent_automatic_acknowledgement_alerts_once_after_an_hour():
    c = case(human_ack_at=T0 + 5 * timedelta(minutes=1), auto_ack_pending_since=T0)
    assert keys(c, T0 + 59 * timedelta(minutes=1)) == []
    [alert] = due([c], T0 + H, POLICY)
    assert (alert.key, alert.rule, alert.level) == ("auto_ack_unsent", "auto_ack_unsent", 1)
    assert keys(fire(c, T0 + H), T0 + 2 * H) == []
    assert keys(replace(c, auto_ack_pending_since=None), T0 + 2 * H) == []  # sent meanwhile


# --- shape of the answer --------------------------------------------------------------

def test_due_sorts_across_cases_and_next_due_at_tracks_the_earliest_unfired():
    a = case(case_id=1, ref="2026-0001", created_at=T0 + H)
    b = case(case_id=2, ref="2026-0002", created_at=T0)
    found = due([a, b], T0 + 26 * H, POLICY)
    assert [(e.ref, e.key) for e in found] == [("2026-0002", "ack:1"), ("2026-0001", "ack:1")]
    assert next_due_at(b, POLICY) == T0 + 24 * H
    assert next_due_at(fire(b, T0 + 24 * H), POLICY) == T0 + 48 * H


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        due([case()], datetime(2026, 12, 1), POLICY)
    with pytest.raises(ValueError):
        next_due_at(case(created_at=datetime(2026, 12, 1)), POLICY)


def test_keys_are_stable_across_time_zones_and_sub_second_noise():
    cet = timezone(timedelta(hours=1))
    start = T0 + D
    a = case(human_ack_at=T0, last_response_at=start)
    b = case(human_ack_at=T0, last_response_at=start.astimezone(cet) + timedelta(microseconds=5))
    assert keys(a, T0 + 10 * D) == keys(b, T0 + 10 * D) != []


def test_nothing_is_due_over_many_acknowledged_cases():
    # The routine pass's time target over 100,000 cases is in benchmarks/scale.py.
    cases = [case(case_id=i, created_at=T0 - timedelta(minutes=i % 600), human_ack_at=T0)
             for i in range(100_000)]
    assert due(cases, T0 + H, POLICY) == []


# --- consistency (property) -----------------------------------------------------------

moments = st.integers(min_value=0, max_value=40 * 24 * 60).map(lambda m: T0 + timedelta(minutes=m))


@st.composite
def clocks(draw) -> CaseClock:
    c = case(
        status=draw(st.sampled_from(["new", "acknowledged", "investigating", "waiting",
                                     "decided", "closed", "reconsideration"])),
        urgent=draw(st.booleans()), spam=draw(st.booleans()), auto=draw(st.booleans()),
        created_at=draw(moments),
    )
    after = moments.map(lambda m: c.created_at + (m - T0))
    c = replace(c,
                human_ack_at=draw(st.none() | after),
                last_response_at=draw(st.none() | after),
                auto_ack_pending_since=draw(st.none() | st.just(c.created_at)))
    every = sorted(e.key for e in due([c], c.created_at + 200 * D, POLICY))
    return replace(c, fired=frozenset(draw(st.lists(st.sampled_from(every)) if every else st.just([]))))


@settings(max_examples=400, deadline=None)
@given(clocks(), moments)
def test_due_is_non_empty_exactly_when_next_due_at_has_passed(c, now):
    found = due([c], now, POLICY)
    upcoming = next_due_at(c, POLICY)
    assert bool(found) == (upcoming is not None and upcoming <= now)
    assert all(e.due_at <= now and e.key not in c.fired for e in found)
    if found:
        assert found[0].due_at == upcoming
    assert due([replace(c, fired=c.fired | {e.key for e in found})], now, POLICY) == []


# --- urgency phrases ------------------------------------------------------------------

PHRASES = SlaPolicy().urgent_phrases + ("sécurité", "Lebensgefahr")


@pytest.mark.parametrize("text, urgent", [
    ("I feel unsafe at the meetups.", True),
    ("Unsafe. That is how it felt.", True),
    ("He drove unsafely.", False),
    ("We talked about physical\n  danger.", True),
    ("There was PHYSICAL DANGER", True),
    ("a threat", True),
    ("The threatened ban", False),
    ("thoughts of self harm", True),
    ("Self-Harm", True),
    ("Je crains pour ma securite", True),
    ("Je crains pour ma SÉCURITÉ", True),
    ("Je crains pour ma se\u0301curite\u0301", True),  # decomposed accents
    ("es bestand lebensgefahr", True),
    ("the policeman was nice", False),
    ("", False),
])
def test_is_urgent_text(text, urgent):
    assert is_urgent_text(text, PHRASES) is urgent


def test_is_urgent_text_ignores_empty_phrases_and_runs_in_linear_time():
    assert is_urgent_text("anything", ["", " - "]) is False
    huge = "self " * 400_000 + "harmless"  # (its time: benchmarks/linear.py)
    assert is_urgent_text(huge, ["self harm", "self self self self harm"]) is False


def _clock(created: datetime, *, ack: datetime | None = None, response: datetime | None = None, auto: bool = False) -> CaseClock:
    return CaseClock(case_id=1, ref="2026-0001", status="investigating", urgent=False, spam=False, auto=auto,
                     created_at=created, human_ack_at=ack, last_response_at=response, auto_ack_pending_since=None,
                     fired=frozenset())


MERGED_AT = T0 + 10 * D


def _reporter_of(case: CaseClock) -> tuple[datetime | None, datetime | None]:
    """(answered_at, waiting_since) of a case's one reporter as a merge holds it (cases/merge.py):
    a case that promised nothing (automatic, nobody acknowledged; spam) starts its reporter's
    wait at the merge (a human look)."""
    return case.last_response_at, None if case.last_response_at else (own_start(case) or MERGED_AT)


def _merge(target: CaseClock, source: CaseClock) -> CaseClock:
    clocks_from, ack, auto, urgent_since = merged(target, source, MERGED_AT)
    return replace(target, created_at=clocks_from, human_ack_at=ack, auto=auto, spam=target.spam and source.spam,
                   urgent=target.urgent or source.urgent, urgent_since=urgent_since,
                   last_response_at=response_from([_reporter_of(target), _reporter_of(source)]))


@pytest.mark.parametrize(("target", "source", "due_from"), [
    # an older report merged into a newer one: its reporter's week still counts from their report
    (_clock(T0 + 3 * D, ack=T0 + 3 * D), _clock(T0, ack=T0), T0),
    # the older reporter was answered on day 2, the newer not yet: the clock runs from day 2
    (_clock(T0 + 3 * D, ack=T0 + 3 * D), _clock(T0, ack=T0, response=T0 + 2 * D), T0 + 2 * D),
    # both answered: from the earlier answer (the reporter answered first is owed the next one first)
    (_clock(T0 + 3 * D, ack=T0 + 3 * D, response=T0 + 5 * D), _clock(T0, ack=T0, response=T0 + 2 * D), T0 + 2 * D),
    # an automatic mail nobody acknowledged promises nothing: the target's own clock stands
    (_clock(T0 + 3 * D, ack=T0 + 3 * D), _clock(T0, auto=True), T0 + 3 * D),
])
def test_a_merged_case_keeps_the_earliest_response_promise(target, source, due_from):
    assert deadlines(_merge(target, source), POLICY)["response"] == due_from + POLICY.response_days * D


def test_the_acknowledgement_is_owed_by_the_earliest_report_still_owed_one():
    newer, older = _clock(T0 + 3 * D), _clock(T0)
    assert deadlines(_merge(newer, older), POLICY)["ack"] == T0 + 24 * H  # both owed: the older one first
    acked = _merge(newer, _clock(T0, ack=T0 + H))
    assert acked.human_ack_at == T0 + H and "ack" not in deadlines(acked, POLICY)  # a member is on it already
    for promised_nothing in (_clock(T0, auto=True), replace(_clock(T0), spam=True)):
        assert deadlines(_merge(newer, promised_nothing), POLICY)["ack"] == T0 + 3 * D + 24 * H
        assert deadlines(_merge(promised_nothing, newer), POLICY)["ack"] == T0 + 3 * D + 24 * H
    form, spam = _merge(_clock(T0, auto=True), _clock(T0 + D, auto=True)), replace(_clock(T0), spam=True)
    assert form.auto and form.human_ack_at is None  # still automatic mail only: no clock until !ack
    assert _merge(spam, replace(spam, created_at=T0 + D)).human_ack_at is None  # spam and spam: still spam
    looked_at = _merge(spam, _clock(T0 + D, auto=True))  # neither promised anything, the case is real now
    assert looked_at.human_ack_at == MERGED_AT and "ack" not in deadlines(looked_at, POLICY)
    urgent_later = replace(_clock(T0 + 6 * H), urgent=True)  # due at T0 + 7 h, the older one at T0 + 24 h
    assert deadlines(_merge(_clock(T0), urgent_later), POLICY)["ack"] == T0 + 7 * H
    closed = replace(_clock(T0), status="closed")  # a closed case is owed no acknowledgement any more
    assert deadlines(_merge(newer, closed), POLICY)["ack"] == T0 + 3 * D + 24 * H


def test_marking_a_case_urgent_later_shortens_what_is_still_to_come_and_dates_nothing_back():
    later = replace(_clock(T0), urgent=True, urgent_since=T0 + 5 * H)
    assert deadlines(later, POLICY)["ack"] == T0 + 6 * H
    assert deadlines(replace(later, urgent_since=T0 + 30 * H), POLICY)["ack"] == T0 + 24 * H  # never later than promised
    assert deadlines(replace(later, urgent_since=None), POLICY)["ack"] == T0 + H  # urgent from the report


def test_a_reporters_clock_runs_from_their_last_answer_or_their_current_wait_whichever_is_later():
    assert response_from([(T0 + 2 * D, T0 + 9 * D)]) == T0 + 9 * D  # answered, then the case was reopened
    assert response_from([(T0 + 9 * D, T0 + 2 * D)]) == T0 + 9 * D  # waiting since a merge, then answered


def test_answering_one_reporter_of_a_merged_case_leaves_the_others_promise():
    robin, sam = (None, T0), (None, T0 + D)  # waiting since their reports, day 0 and day 1
    assert response_from([robin, sam]) == T0
    assert response_from([(T0 + 2 * D, None), sam]) == T0 + D  # Robin answered: Sam is owed first
    assert response_from([(T0 + 2 * D, None), (T0 + 3 * D, None)]) == T0 + 2 * D
    assert response_from([(None, None), (T0 + 3 * D, None)]) is None  # one waits since the case began
    assert response_from([]) is None


def test_no_longer_urgent_after_the_urgent_hour_escalated_the_plain_deadline_escalates_in_its_turn():
    c = fire(case(urgent=True), T0 + H)
    plain = replace(c, urgent=False)
    assert deadlines(plain, POLICY)["ack"] == T0 + 24 * H
    assert keys(plain, T0 + 23 * H) == [] and keys(plain, T0 + 24 * H) == ["ack:1"]


def test_a_plain_acknowledgement_escalation_also_counts_for_the_urgent_one():
    plain_fired = replace(fire(case(), T0 + 24 * H), urgent=True)  # (or recorded before urgency was in the key)
    assert keys(plain_fired, T0 + 25 * H) == ["ack:2:urgent"]  # the second level, not the first again
