"""Where a case stands (core.standing): due times in the committee's zone, taken from the same
rules the escalations run on (core.sla), and the commands that make sense in each state; the
committee's conversation headers (mail.conversation)."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from conduct_inbox.core import sla, standing, states
from conduct_inbox.core.party_mail import OutwardDraft
from conduct_inbox.mail import conversation
from conduct_inbox.mail.compose import Draft, Sender, build

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
BERLIN = ZoneInfo("Europe/Berlin")
POLICY = sla.SlaPolicy()


def clock(**changes) -> sla.CaseClock:
    values = dict(case_id=1, ref="2026-0007", status=states.NEW, urgent=False, spam=False, auto=False, created_at=T0,
                  human_ack_at=None, last_response_at=None, auto_ack_pending_since=None, fired=frozenset())
    values.update(changes)
    return sla.CaseClock(**values)


def facts(c: sla.CaseClock, **changes) -> standing.Standing:
    due = {k: v for k, v in sla.deadlines(c, POLICY).items() if k in ("ack", "response")}
    values = dict(ref=c.ref, status=c.status, urgent=c.urgent, spam=c.spam, auto=c.auto,
                  acknowledged=c.human_ack_at is not None, due=due)
    values.update(changes)
    return standing.Standing(**values)


def text(s: standing.Standing, zone=BERLIN) -> str:
    return "\n".join(standing.lines(s, zone))


def test_moments_are_in_the_committees_zone_with_its_abbreviation():
    assert standing.moment(T0, BERLIN) == "Tue 24 Nov 2026 10:00 CET"
    assert standing.moment(datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc), BERLIN) == "Wed 1 Jul 2026 14:00 CEST"
    assert standing.moment(T0, ZoneInfo("UTC")) == "Tue 24 Nov 2026 09:00 UTC"


def test_a_new_report_states_the_moments_the_escalations_fire():
    c = clock()
    out = text(facts(c))
    [ack] = [e for e in sla.due([c], T0.replace(day=25), POLICY) if e.rule == "ack"]
    assert f"Human acknowledgement (!ack) due: {standing.moment(ack.due_at, BERLIN)}" in out
    response = max(e.due_at for e in sla.due([c], T0.replace(month=12, day=1), POLICY) if e.rule == "response")
    assert f"Response to the reporter (!reply) due: {standing.moment(response, BERLIN)}" in out
    assert "Commands now: !ack !assign NAME !urgent !spam !reply " in out


def test_auto_spam_and_closed_cases_state_no_due_time():
    for c, says in ((clock(auto=True), "automatic mail starts no clock"), (clock(spam=True), "flagged as spam"),
                    (clock(status=states.CLOSED, human_ack_at=T0), "the case is closed")):
        out = text(facts(c))
        assert says in out and " due: " not in out and "2026 " not in out.split("\n", 1)[1]


def test_an_acknowledged_auto_case_runs_the_response_clock():
    out = text(facts(clock(auto=True, human_ack_at=T0, status=states.ACKNOWLEDGED)))
    assert "Human acknowledgement" not in out and "Response to the reporter (!reply) due: Tue 1 Dec 2026 10:00 CET" in out


@pytest.mark.parametrize(("changes", "expected"), [
    ({"status": states.NEW, "urgent": True}, "!ack !assign NAME !spam !reply"),
    ({"status": states.INVESTIGATING, "assignee": "Bob"}, "!reply !status waiting !decide VALUE !close silent REASON"),
    ({"status": states.WAITING}, "!reply !status investigating !assign NAME !decide VALUE !close silent REASON"),
    ({"status": states.ACKNOWLEDGED, "assignee": "Bob"}, "!reply !status investigating !decide VALUE !close silent REASON"),
    ({"status": states.DECIDED, "decision_pending": True}, "!confirm !reply !close"),
    ({"status": states.DECIDED, "decided": True}, "!reply !close"),
    ({"status": states.CLOSED}, "!reopen !history"),
    ({"status": states.NEW, "has_reporter": False}, "!ack !assign NAME !urgent !spam"),
])
def test_suggested_commands_follow_the_state(changes, expected):
    s = standing.Standing(ref="2026-0007", **{"status": states.NEW, **changes})
    assert " ".join(standing.commands(s)) == expected


def test_a_sanction_end_is_stated():
    s = standing.Standing(ref="2026-0007", status=states.DECIDED, decided=True,
                          sanctions_end=[("temporary-ban", date(2026, 12, 31))])
    assert "Sanction end: temporary-ban until Thu 31 Dec 2026" in text(s)


def test_committee_conversation_headers_are_stable_per_case_and_never_go_outward():
    root = conversation.case_root_id("2026-0007", "example.org", "conduct@example.org")
    assert root == conversation.case_root_id("2026-0007", "example.org", "conduct@example.org")
    assert root != conversation.case_root_id("2026-0008", "example.org", "conduct@example.org")
    index = conversation.thread_index(root, T0)
    assert len(base64.b64decode(index)) == 22 and base64.b64decode(index)[0] == 1
    draft = Draft(kind="note", audience="member", recipient="alice@example.org", subject="[conduct #2026-0007] Title",
                  body="x", references=(root,), thread_topic="[conduct #2026-0007] Title", thread_index=index)
    raw = build(draft, Sender("conduct@example.org", "Conduct"), "m1@example.org", T0).decode()
    assert f"Thread-Index: {index}\r\n" in raw and "Thread-Topic: [conduct #2026-0007] Title\r\n" in raw
    with pytest.raises(ValueError):
        OutwardDraft(kind="reply", audience="reporter", recipient="r@example.net", body="x", case_tag="conduct",
                     ref="2026-0007", thread_index=index)


def test_a_due_time_already_past_says_overdue():
    c = clock()
    ack_due = sla.deadlines(c, POLICY)["ack"]
    assert "(overdue)" not in text(facts(c, now=ack_due.replace(hour=8)))
    late = text(facts(c, now=ack_due))
    assert f"Human acknowledgement (!ack) due: {standing.moment(ack_due, BERLIN)} (overdue)" in late
    assert "Response to the reporter (!reply) due: Tue 1 Dec 2026 10:00 CET\n" in late


def test_a_case_with_several_reporters_suggests_naming_one_and_says_who_waits():
    s = standing.Standing(ref="2026-0007", status="investigating", acknowledged=True, several_reporters=True,
                          reporters=2, unanswered=1)
    assert "!reply ADDRESS" in standing.commands(s) and "!reply" not in standing.commands(s)
    assert ("Reporters not answered yet: 1 of 2 (each needs a !reply ADDRESS before !close; !history lists them)"
            in standing.lines(s, BERLIN))
    everyone_answered = standing.lines(replace(s, unanswered=0), BERLIN)
    assert not any("not answered" in line for line in everyone_answered)
