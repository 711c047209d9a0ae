"""Who receives mail about a case, decided on its own: the committee, the chair, escalations and the
steering members, with recused people never among them. No server, no database."""

from __future__ import annotations

from itertools import chain, combinations

import pytest

from conduct_inbox.core import routing
from conduct_inbox.core.roster import Person, Roster

ALICE = Person("Alice Example", "alice@example.org", ("Ali",), chair=True)
BOB = Person("Bob Builder", "bob@example.org")
CAROL = Person("Carol Chen", "carol@example.org", ("CC",))
SAM = Person("Sam Steering", "sam@example.org", steering=True)
STELLA = Person("Stella Steer", "stella@example.org", steering=True)
ROSTER = Roster((ALICE, BOB, CAROL), (SAM, STELLA), quorum=2)
EVERYONE = (ALICE, BOB, CAROL, SAM, STELLA)


def names(audience: routing.Audience) -> list[str]:
    return [p.name for p in audience.recipients]


# ----- the committee ----------------------------------------------------------------------------


def test_without_recusals_the_whole_committee_and_no_steering_member_receives_it():
    audience = routing.committee(ROSTER, {})
    assert names(audience) == ["Alice Example", "Bob Builder", "Carol Chen"]
    assert not audience.steering_included and audience.excluded == ()
    assert audience.marker_line() == "To: Alice Example, Bob Builder, Carol Chen"


def test_a_member_named_in_the_report_receives_nothing_and_the_others_are_told_why():
    audience = routing.committee(ROSTER, {BOB.email: "named"})
    assert names(audience) == ["Alice Example", "Carol Chen"]
    assert audience.excluded == ((BOB, "named"),)
    assert audience.marker_line() == "To: Alice Example, Carol Chen  ·  Excluded: Bob Builder (named in the report)"


def test_a_report_about_a_member_goes_to_the_others_only():
    audience = routing.committee(ROSTER, {CAROL.email: "concerns"})
    assert CAROL not in audience.recipients
    assert "Carol Chen (the case concerns them)" in audience.marker_line()


def test_below_quorum_the_steering_members_join():
    audience = routing.committee(ROSTER, {BOB.email: "named", CAROL.email: "self"})
    assert names(audience) == ["Alice Example", "Sam Steering", "Stella Steer"]
    assert audience.steering_included
    assert "Carol Chen (recused themself)" in audience.marker_line()


def test_a_recused_chair_is_replaced_by_the_steering_members():
    audience = routing.committee(ROSTER, {ALICE.email: "concerns"})
    assert names(audience) == ["Bob Builder", "Carol Chen", "Sam Steering", "Stella Steer"]
    assert audience.steering_included


def test_a_recused_steering_member_does_not_join_either():
    audience = routing.committee(ROSTER, {ALICE.email: "concerns", SAM.email: "named"})
    assert names(audience) == ["Bob Builder", "Carol Chen", "Stella Steer"]
    assert (SAM, "named") in audience.excluded


# ----- the chair, steering and escalations -----------------------------------------------------


def test_the_chair_alone_when_not_recused():
    assert names(routing.chair(ROSTER, {BOB.email: "named"})) == ["Alice Example"]


def test_instead_of_a_recused_chair_the_steering_members():
    audience = routing.chair(ROSTER, {ALICE.email: "named"})
    assert names(audience) == ["Sam Steering", "Stella Steer"] and audience.steering_included


def test_without_a_chair_the_steering_members_decide():
    roster = Roster((BOB, CAROL), (SAM,), quorum=2)
    assert names(routing.chair(roster, {})) == ["Sam Steering"]


def test_first_escalation_reaches_the_committee_and_the_chair():
    assert names(routing.escalation(ROSTER, {}, 1)) == ["Alice Example", "Bob Builder", "Carol Chen"]


def test_first_escalation_with_the_chair_recused_reaches_the_steering_members_too():
    audience = routing.escalation(ROSTER, {ALICE.email: "concerns"}, 1)
    assert names(audience) == ["Bob Builder", "Carol Chen", "Sam Steering", "Stella Steer"]
    assert audience.steering_included


@pytest.mark.parametrize("level", [2, 3])
def test_later_escalations_go_to_the_steering_members_only(level):
    audience = routing.escalation(ROSTER, {STELLA.email: "named"}, level)
    assert names(audience) == ["Sam Steering"]


# ----- who may see a case ------------------------------------------------------------------------


def test_a_recused_member_may_not_see_the_case_the_others_and_steering_may():
    recused = {BOB.email: "concerns"}
    assert not routing.may_see(ROSTER, recused, "bob@example.org")
    assert not routing.may_see(ROSTER, recused, "Bob@Example.ORG")
    assert routing.may_see(ROSTER, recused, "alice@example.org")
    assert routing.may_see(ROSTER, recused, "SAM@example.org")  # steering may always be brought in
    assert not routing.may_see(ROSTER, {SAM.email: "named"}, "sam@example.org")
    assert not routing.may_see(ROSTER, {}, "reporter@example.net")


# ----- recused people never, whatever the combination ------------------------------------------

REASONS = ("named", "concerns", "self")
SUBSETS = list(chain.from_iterable(combinations(EVERYONE, n) for n in range(len(EVERYONE) + 1)))


@pytest.mark.parametrize("recused_people", SUBSETS, ids=lambda people: "+".join(p.email.split("@")[0] for p in people) or "nobody")
def test_no_audience_ever_holds_a_recused_person(recused_people):
    recused = {p.email: REASONS[i % len(REASONS)] for i, p in enumerate(recused_people)}
    audiences = [routing.committee(ROSTER, recused), routing.chair(ROSTER, recused), routing.steering(ROSTER, recused),
                 *(routing.escalation(ROSTER, recused, level) for level in (1, 2, 3))]
    for audience in audiences:
        assert not {p.email for p in audience.recipients} & recused.keys(), audience
        assert len(set(audience.recipients)) == len(audience.recipients), "someone would get two copies"
    for person in recused_people:
        assert not routing.may_see(ROSTER, recused, person.email)
    committee = routing.committee(ROSTER, recused)
    if recused_people and committee.recipients:
        shown = committee.marker_line()
        assert all(p.name in shown.split("Excluded:", 1)[1] for p in recused_people if p in ROSTER.members)
