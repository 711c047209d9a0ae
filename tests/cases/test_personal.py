"""Case-less commands on a member's personal reply address (cases/personal): `!help`, `!list`,
`!new` (a report forwarded to a member), `!reconsider`, and what is refused there. Taken in
through the intake's path against SQLite, without servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conduct_inbox.cases.personal import PERSONAL
from conduct_inbox.core import command_types as ct
from conduct_inbox.core.commands import HELP_TEXT
from tests.case_store import Store
from tests.harness import report
from tests.mailers import ALICE, BOB, CAROL, SAM, personal_address

HELP_LINE = HELP_TEXT.splitlines()[0]
COVERED: set[type] = set()


def covers(*types: type):
    """This test applies these personal-address commands (checked after it ran: they applied)."""
    COVERED.update(types)
    return pytest.mark.covers(commands=types)


@pytest.fixture(autouse=True)
def _applied_what_it_covers(request: pytest.FixtureRequest, store: Store) -> Iterator[None]:
    yield
    if request.node.get_closest_marker("covers"):
        assert store.events("personal_commands"), "no personal-address command applied in this test"


def test_every_personal_address_command_has_a_test():
    missing = sorted(t.__name__ for t in set(PERSONAL) - COVERED)
    assert not missing, f"personal-address commands without a test in tests/cases/test_personal.py: {missing}"


def own_lines(mail) -> str:
    return mail.text.split(HELP_LINE)[0]


@covers(ct.Help)
def test_help_answers_with_the_command_list(store):
    store.personal(BOB, "!help")
    [answer] = store.mail()
    assert (answer.recipient, answer.kind, answer.case_id) == (BOB, "confirmation", None)
    assert answer.subject == "[conduct] Your commands" and HELP_LINE in answer.text
    assert answer.reply_to == personal_address(BOB)


@covers(ct.List)
def test_list_shows_the_open_cases_the_member_may_see(store):
    seen = store.report()
    about_carol = store.report(sender="other@example.net", subject="About Carol", body="Carol Chen was rude.")
    closed = store.report(sender="third@example.net", subject="Third")
    store.command(ALICE, "!close silent duplicate", case=closed)
    store.personal(CAROL, "!list")
    lines = own_lines(store.latest(CAROL, "confirmation"))
    assert seen.ref in lines and about_carol.ref not in lines and closed.ref not in lines
    store.personal(BOB, "!list")
    assert about_carol.ref in own_lines(store.latest(BOB, "confirmation"))


def test_list_with_no_open_cases(store):
    store.personal(ALICE, "!list")
    assert "(none)" in own_lines(store.latest(ALICE))


#: A report sent to a member directly, which they forward with `!new`.
INNER = report(sender="direct@example.net", subject="Something happened", body="Bob Builder was rude to me. FORWARDED-TEXT")


def test_new_opens_a_case_for_a_forwarded_report(store):
    store.personal(CAROL, "Fwd: Something happened !new direct@example.net", "Sent to me directly at the sprint.", attach=INNER)
    case = store.case()
    assert case.forwarded_by == CAROL and case.party("reporter").address == "direct@example.net"
    assert case.recused_members() == {BOB}  # named in the forwarded report
    copies = {m.recipient: m for m in store.mail_to(ALICE) + store.mail_to(CAROL) if m.kind == "report"}
    assert set(copies) == {ALICE, CAROL} and "FORWARDED-TEXT" in copies[ALICE].text
    assert store.mail_to(BOB) == []
    assert [m.kind for m in store.mail_to("direct@example.net")] == ["ack"]
    # Carol's own words beside the forward are an internal note to the others
    assert "Sent to me directly" in store.latest(ALICE, "note").text


def test_new_with_concerns_and_urgent_recuses_before_anything_is_sent(store):
    store.personal(CAROL, "Fwd: x !new direct@example.net noack !concerns Alice !urgent", attach=INNER)
    case = store.case()
    assert case.recused_members() == {ALICE, BOB} and case.urgent
    assert store.mail_to(ALICE) == [] and store.mail_to("direct@example.net") == []  # noack
    assert {m.recipient for m in store.mail() if m.kind == "report"} == {CAROL, SAM}  # the chair is recused


def test_new_refused_with_other_commands_or_an_unknown_member(store):
    store.personal(CAROL, "Fwd: x !new direct@example.net !assign Bob", attach=INNER)
    assert "!new takes only !concerns and !urgent" in own_lines(store.latest(CAROL))
    store.personal(CAROL, "Fwd: x !new direct@example.net !concerns Nobody Known", attach=INNER)
    assert "no case was opened" in own_lines(store.latest(CAROL))
    assert [m.kind for m in store.mail()] == ["refusal", "refusal"]


def test_a_case_command_on_the_personal_address_needs_a_case(store):
    store.personal(ALICE, "!ack")
    [answer] = store.mail()
    assert answer.kind == "refusal" and "!ack needs a case: reply to that case's mail" in answer.text


def test_a_reference_the_database_does_not_hold(store):
    store.personal(ALICE, "Re: [conduct #2026-0999] !ack")
    assert "there is no case 2026-0999 you can act on" in own_lines(store.latest(ALICE))


def test_someone_elses_personal_address_is_refused_silently(store):
    store.personal(BOB, "!list", to=personal_address(ALICE))
    assert store.mail() == []
    assert [e.detail["why"] for e in store.events("command_refused")] == ["no valid personal token"]


@covers(ct.Reconsider)
def test_reconsider_is_for_steering_members_on_a_closed_case(store: Store):
    case = store.report()
    store.personal(SAM, f"!reconsider {case.ref}")
    assert "cannot be reconsidered now (only a closed case can)" in own_lines(store.latest(SAM))
    store.command(ALICE, "!close silent withdrawn")
    store.personal(ALICE, f"!reconsider {case.ref}")
    assert "only steering committee members" in own_lines(store.latest(ALICE))
    assert store.case().status == "closed"
    store.personal(SAM, f"!reconsider {case.ref}", "The reported person asked us to reconsider.")
    assert store.case().status == "reconsideration"
    assert any(m.kind == "reconsideration" and m.recipient == SAM for m in store.mail())
