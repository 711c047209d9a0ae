"""Attacks on what issue 16 added (announcements, the weekly overview, threading, !title,
!history, !merge), as a member, reporter or outsider would try them, on the cases tier.

Each was found working and is fixed: a pending `!include` does not survive a merge; a text to
"the reporter" of a case holding several reporters is refused."""

from __future__ import annotations

from tests.case_store import Store
from tests.mailers import ALICE, BOB, CAROL, REPORTER, reply


def test_a_pending_include_does_not_carry_a_member_into_a_case_merged_in_afterwards(store: Store):
    # Case 1: Bob is merely named; Alice proposes to include him again (for case 1's content).
    first = store.report(body="Bob Builder was at the table too, he saw nothing.")
    assert store.case(first.ref).recused_members() == {BOB}
    store.command(ALICE, "!include Bob", case=first)
    # Case 2: the same incident from a second reporter, naming Bob as the one who did it.
    second = store.report(sender="second@example.net", name="Sam Second",
                          body="It was Bob Builder who kept making the comments. Please do not tell him it was me.")
    assert store.case(second.ref).recused_members() == {BOB}
    # Same exclusions on both: the merge is accepted.
    store.command(CAROL, f"!merge {first.ref}", case=second)
    assert store.case(second.ref).merged_into_id == first.id
    mark = store.outbox_mark()
    # Carol confirms the include Alice proposed before case 2 was part of case 1.
    store.command(CAROL, "!confirm", case=first)
    # The union of recusals: Bob, excluded from case 2, must stay excluded from what it became.
    assert BOB in store.case(first.ref).recused_members()
    assert not [m for m in store.mail_after(mark) if m.recipient == BOB]


def test_a_reply_to_the_second_reporters_follow_up_never_reaches_the_first_reporter(store: Store):
    first = store.report()
    second = store.report(sender="second@example.net", name="Sam Second", body="The same thing happened to me.")
    ack = store.mail_to("second@example.net")[-1]
    store.command(CAROL, f"!merge {first.ref}", case=second)
    # Sam writes again about what happened to them; the follow-up joins case 1.
    store.take_in(reply(ack, "second@example.net", "", "Also, he took my badge. Please keep this between us."))
    follow_up = store.latest(ALICE, "followup")
    assert "second@example.net" in follow_up.text
    mark = store.outbox_mark()
    # Alice answers Sam's follow-up, as the copy invites her to.
    store.take_in(reply(follow_up, ALICE, "!reply", "Dear Sam, we will look into what happened to your badge."))
    # Sam's matter must not go to Robin: to Sam, or refused asking which reporter is meant.
    assert not [m for m in store.mail_after(mark) if m.recipient == REPORTER]


def test_a_case_holding_two_reporters_answers_the_one_the_member_names(store: Store):
    first = store.report()
    second = store.report(sender="second@example.net", name="Sam Second", body="The same thing happened to me.")
    store.command(CAROL, f"!merge {first.ref}", case=second)
    mark = store.outbox_mark()
    store.command(ALICE, "!reply", "Dear Sam, thank you.", case=first)
    assert store.latest(ALICE).kind == "refusal" and "!reply ADDRESS" in store.latest(ALICE).text
    store.command(ALICE, "!reply second@example.net", "Dear Sam, thank you.", case=first)
    to_parties = [m for m in store.mail_after(mark) if m.audience in ("reporter", "party")]
    assert [(m.recipient, m.kind) for m in to_parties] == [("second@example.net", "reply")]
    # an address that is no reporter of the case sends nothing, to anyone
    mark = store.outbox_mark()
    store.command(ALICE, "!reply someone@example.net", "Hello.", case=first)
    assert store.latest(ALICE).kind == "refusal"
    assert not [m for m in store.mail_after(mark) if m.audience in ("reporter", "party")]


def test_a_list_of_cases_queued_for_a_member_is_withdrawn_when_they_are_excluded_from_one(store: Store):
    case = store.report(subject="About the sprint")
    store.outage = True  # the SMTP server is down: what is queued waits
    mark = store.outbox_mark()
    store.personal(CAROL, "!list")  # (the weekly overview and the spam digest list cases alike)
    [listing] = store.mail_after(mark)
    assert case.ref in listing.text
    ack = store.mail_to(REPORTER)[0]
    store.take_in(reply(ack, REPORTER, "", "I forgot: Carol Chen was standing right next to him."))
    assert CAROL in store.case().recused_members()
    assert not [m for m in store.mail_to(CAROL) if case.ref in m.text and m.id > mark], \
        "a list naming the case still waits for the member now excluded from it"


def test_an_include_proposed_before_new_mail_naming_the_member_again_cannot_be_confirmed(store: Store):
    store.report(body="Carol Chen was at the table too.")
    assert store.case().recused_members() == {CAROL}
    store.command(ALICE, "!include Carol Chen", "Probably not relevant.")
    ack = store.mail_to(REPORTER)[0]
    store.take_in(reply(ack, REPORTER, "", "I meant Carol Chen from your committee: she threatened me afterwards."))
    store.command(BOB, "!confirm")
    assert store.case().recused_members() == {CAROL}


def test_history_hides_the_note_a_recused_member_wrote_from_another_spelling_of_their_address(store: Store):
    store.report()
    store.command(BOB, "", "I know him from the sprint. BOBNOTE-1", sender="Bob Builder <bob+conduct@example.org>")
    store.command(ALICE, "!concerns Bob Builder")
    store.command(ALICE, "!history")
    assert "BOBNOTE-1" not in store.latest(ALICE).text
