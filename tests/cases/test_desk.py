"""The desk's decisions on committee mail (cases/desk): who may act on a case, what a refused
subject changes (nothing), notes and text beside commands. Taken in through the intake's path
against SQLite, without servers; asserted on the outbox, the case and its audit trail."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conduct_inbox.core import tokens
from conduct_inbox.core.commands import HELP_TEXT
from tests.case_store import Store
from tests.harness import SECRET
from tests.mailers import ALICE, BOB, CAROL, REPORTER, personal_address, reply

HELP_LINE = HELP_TEXT.splitlines()[0]


def unchanged(store: Store) -> bool:
    case = store.case()
    return (case.status, case.assignee, case.human_ack_at, case.urgent) == ("new", None, None, False)


def test_an_unknown_command_refuses_the_whole_subject_and_explains_with_the_command_list(store):
    store.report()
    mark = store.outbox_mark()
    store.command(ALICE, "!ack !frobnicate")
    assert unchanged(store)
    [answer] = store.mail_after(mark)
    assert (answer.recipient, answer.kind) == (ALICE, "refusal")
    assert "unknown command !frobnicate" in answer.text and HELP_LINE in answer.text
    assert [e.actor for e in store.events("command_rejected")] == [ALICE]


def test_a_misspelt_command_gets_a_suggestion(store):
    store.report()
    store.command(ALICE, "!urgnet")
    assert "did you mean !urgent?" in store.latest(ALICE).text and unchanged(store)


def test_one_refused_command_undoes_the_others_in_the_subject_and_the_text_is_not_filed(store):
    store.report()
    mark = store.outbox_mark()
    store.command(ALICE, "!assign Bob !urgent !close", "Bob should take this one.")
    assert unchanged(store)
    [answer] = store.mail_after(mark)  # no urgent alert, no note to the others
    assert answer.kind == "refusal" and "record a decision first" in answer.text
    assert "your text was not filed either" in answer.text
    assert store.events("command_assign") == [] and store.events("note_added") == []


@pytest.mark.parametrize("how", ["conduct@ directly", "a colleague's reply address", "another case's reply address"])
def test_a_from_alone_is_no_authority(store, how):
    first = store.report()
    second = store.report(sender="other@example.net", subject="Another incident")
    mark = store.outbox_mark()
    to = {"conduct@ directly": "conduct@example.org", "a colleague's reply address": store.copy_of(BOB, first).reply_to,
          "another case's reply address": store.copy_of(ALICE, second).reply_to}[how]
    store.command(ALICE, "!ack !reply", "We are on it.", case=first, to=to)
    assert unchanged(store) and store.case(first.ref).human_ack_at is None
    # the real Alice, at her roster address, learns that nothing was filed; nobody else hears of it
    [told] = store.mail_after(mark)
    assert told.recipient == ALICE and "nothing was filed" in told.text
    assert [e.detail["why"] for e in store.events("command_refused")] == ["no valid case token"]


def test_a_personal_token_on_a_case_is_refused_silently(store):
    store.report()
    mark = store.outbox_mark()
    store.command(ALICE, "!ack", to=personal_address(ALICE))
    assert unchanged(store) and store.mail_after(mark) == []
    assert [e.detail["why"] for e in store.events("command_refused")] == ["personal token used on a case"]


def test_a_recused_members_token_is_dead(store):
    store.report()
    store.command(ALICE, "!concerns Bob")
    mark = store.outbox_mark()
    store.command(BOB, "!ack !reply", "Thanks for writing.")
    store.command(BOB, "", "a note from Bob")
    assert unchanged(store) and store.mail_after(mark) == []  # not even a refusal reaches Bob
    assert len(store.events("command_refused")) == 2


def test_someone_not_on_the_roster_changes_nothing_with_a_members_reply_address(store):
    store.report()
    mark = store.outbox_mark()
    outcome = store.take_in(reply(store.copy_of(ALICE), "mallory@example.net", "!ack !reply !close", "gotcha"))
    assert unchanged(store), outcome
    assert all(m.recipient != REPORTER and m.kind != "confirmation" for m in store.mail_after(mark))


@pytest.mark.config(("[security]\n", '[security]\ntrusted_authserv_id = "mx.example.org"\n'))
def test_a_dmarc_pass_allows_notes_and_status_but_nothing_that_sends(store):
    store.report()
    auth = b"Authentication-Results: mx.example.org; dmarc=pass (p=reject) header.from=example.org\r\n"
    store.take_in(auth.replace(b"pass", b"fail") + reply(store.copy_of(ALICE), ALICE, "!ack", to="conduct@example.org"))
    assert unchanged(store)  # no pass, no token
    store.take_in(auth + reply(store.copy_of(ALICE), ALICE, "!ack", to="conduct@example.org"))
    assert store.case().human_ack_at is not None
    mark = store.outbox_mark()
    store.take_in(auth + reply(store.copy_of(ALICE), ALICE, "!reply", "text", to="conduct@example.org"))
    [answer] = store.mail_after(mark)
    assert answer.kind == "refusal" and "needs the reply address of the case mail" in answer.text
    assert store.case().last_response_at is None


def test_a_note_goes_to_the_other_members_who_may_see_the_case(store):
    store.report(body="Carol Chen said it too.")  # Carol is recused automatically
    mark = store.outbox_mark()
    store.command(ALICE, "", "INTERNAL-NOTE: two earlier warnings on file")
    notes = store.mail_after(mark)
    assert [(m.recipient, m.kind) for m in notes] == [(BOB, "note")]
    assert "INTERNAL-NOTE" in notes[0].text and "Internal note from Alice Example" in notes[0].text
    assert [e.actor for e in store.events("note_added")] == [ALICE]


def test_text_written_beside_commands_is_an_internal_note(store):
    store.report()
    mark = store.outbox_mark()
    store.command(BOB, "!ack", "I will call the reporter tomorrow.")
    mail = store.mail_after(mark)
    # one mail to each of the others: the change and the note together; Bob gets his confirmation only
    assert sorted((m.recipient, m.kind) for m in mail) == [(ALICE, "announcement"), (BOB, "confirmation"),
                                                           (CAROL, "announcement")]
    for announced in (m for m in mail if m.kind == "announcement"):
        assert "I will call the reporter tomorrow." in announced.text and "Internal note from Bob Builder" in announced.text
    confirmation = next(m for m in mail if m.kind == "confirmation")
    assert "recorded as an internal note and sent to Alice Example, Carol Chen with the announcement" in confirmation.text
    assert [e.actor for e in store.events("note_added")] == [BOB]


def test_a_command_repeated_from_the_thread_is_not_applied_again(store):
    store.report()
    first = reply(store.copy_of(BOB), BOB, "!urgent")
    store.take_in(first)
    store.command(BOB, "!not-urgent")
    # Bob answers his own earlier mail (its subject still says !urgent): a note, not a command
    store.take_in(reply(SimpleNamespace(content=first), BOB, "", "more on this", to=store.copy_of(BOB).reply_to))
    assert not store.case().urgent
    assert "not applied, because an earlier message of this thread already has it" in store.latest(BOB).text


def test_a_members_automatic_reply_is_neither_a_note_nor_a_command(store):
    store.report()
    mark = store.outbox_mark()
    store.take_in(b"Auto-Submitted: auto-replied\r\n" + reply(store.copy_of(CAROL), CAROL, "!close silent", "I am away."))
    assert unchanged(store) and store.mail_after(mark) == []
    assert len(store.events("automatic_reply_received")) == 1


def test_a_recused_member_writing_to_conduct_directly_learns_nothing_of_the_case(store):
    """Without a token the member at the roster address is told nothing was filed, unless they
    may not see the case: then the answer itself would tell them about it."""
    store.report()
    store.command(ALICE, "!concerns Bob")
    mark = store.outbox_mark()
    store.take_in(reply(store.copy_of(BOB), BOB, "!ack", "anything new?", to="conduct@example.org"))
    assert unchanged(store) and store.mail_after(mark) == []
    assert [e.detail["why"] for e in store.events("command_refused")] == ["no valid case token"]


@pytest.mark.parametrize("subject", ["!new direct@example.net", "!reconsider 2026-0001"])
def test_case_less_commands_on_a_cases_reply_address_are_refused(store, subject):
    store.report()
    store.command(ALICE, subject)
    answer = store.latest(ALICE)
    assert answer.kind == "refusal" and "cannot be used on a case" in answer.text
    assert len(store.events("case_opened")) == 1 and store.case().status == "new"


def test_a_case_token_for_a_reference_the_database_does_not_hold(store):
    store.report()
    address = tokens.reply_address("conduct", "example.org", tokens.mint(SECRET.encode(), "case", "2026-0999", ALICE))
    mark = store.outbox_mark()
    store.personal(ALICE, "Re: [conduct #2026-0999] Old case !ack", to=address)  # not in a thread we know
    [answer] = store.mail_after(mark)
    assert answer.kind == "refusal" and "there is no case 2026-0999 you can act on" in answer.text
    assert unchanged(store) and len(store.events("case_opened")) == 1  # never a new report in a member's name


@pytest.mark.parametrize("command", ["!urgent", "!concerns Carol Chen", "!assign Alice", "!status waiting"])
def test_a_command_that_changes_nothing_is_not_announced_again(store, command):
    store.report()
    store.command(BOB, "!ack")
    store.command(BOB, command)
    mark = store.outbox_mark()
    store.command(ALICE, command)  # the case already stands so: the others have been told once
    assert [(m.recipient, m.kind) for m in store.mail_after(mark)] == [(ALICE, "confirmation")]


def test_a_reply_sent_with_a_change_reaches_the_others_in_one_mail(store):
    store.report()
    store.command(BOB, "!ack")
    mark = store.outbox_mark()
    store.command(BOB, "!reply !status waiting", "We will come back to you this week. REPLY-TEXT")
    mail = store.mail_after(mark)
    others = [m for m in mail if m.recipient in (ALICE, CAROL)]
    assert sorted(m.recipient for m in others) == [ALICE, CAROL], "one mail each: the change and what was sent"
    for m in others:
        assert "REPLY-TEXT" in m.text and "status waiting" in m.text and "Bob Builder sent this to the reporter" in m.text
    # Bob keeps his own copy of what was sent, beside his confirmation
    assert sorted(m.kind for m in mail if m.recipient == BOB) == ["confirmation", "sent_copy"]


def test_a_member_never_shown_a_case_asking_about_it_gets_the_answer_an_unknown_reference_gets(store):
    case = store.report(body="Carol Chen made fun of my accent.")  # Carol never sees it
    assert store.case().recused_members() == {CAROL}
    answers = []
    for ref in (case.ref, "2026-0999"):
        mark = store.outbox_mark()
        store.personal(CAROL, f"[conduct #{ref}] anything new?", to="conduct@example.org")
        answers.append([(m.kind, m.subject, m.text.replace(ref, "REF")) for m in store.mail_after(mark)])
    hidden, unknown = answers
    assert hidden == unknown and unknown, "the hidden case must be answered as a reference that does not exist"
