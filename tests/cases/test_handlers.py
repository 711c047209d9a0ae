"""Each command on a case (cases/handlers.ON_CASE), as a member sends it: a reply on their own case
token, taken in through the intake's path (classify, the desk, the handler), against SQLite and
without servers. What is asserted is what people notice: the mail written to the outbox, the
case as stored, its audit trail.

Every command type in ON_CASE has a test marked `@covers(...)`; after such a test its handler
must have applied at least once (its audit entry), and `test_every_command_on_a_case_has_a_test`
fails for a handler added without one."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from conduct_inbox.cases.handlers import ON_CASE
from conduct_inbox.core import command_types as ct
from conduct_inbox.core import tokens
from conduct_inbox.core.commands import HELP_TEXT
from conduct_inbox.store.models import Sanction
from tests.case_store import Store
from tests.harness import SECRET, parsed, report
from tests.mailers import ALICE, BOB, CAROL, PAT, REPORTER, SAM, reply

COVERED: set[type] = set()


def covers(*types: type):
    """This test applies these commands successfully at least once (checked after it ran)."""
    COVERED.update(types)
    return pytest.mark.covers(commands=types)


@pytest.fixture(autouse=True)
def _applied_what_it_covers(request: pytest.FixtureRequest, store: Store) -> Iterator[None]:
    yield
    marker = request.node.get_closest_marker("covers")
    actions = {e.action for e in store.events()}
    for command in marker.kwargs["commands"] if marker else ():
        assert ON_CASE[command].action in actions, f"{command.__name__}'s handler never applied in this test"


def test_every_command_on_a_case_has_a_test():
    missing = sorted(t.__name__ for t in set(ON_CASE) - COVERED)
    assert not missing, f"commands on a case without a test in tests/cases/test_handlers.py: {missing}"


def done_lines(mail) -> str:
    """A confirmation's or refusal's own lines (without the command list every answer carries)."""
    return mail.text.split(HELP_TEXT.splitlines()[0])[0]


# ----- acknowledging, assigning, status ----------------------------------------------------------


@covers(ct.Ack)
def test_ack_makes_the_member_assignee_and_stops_the_acknowledgement_clock(store):
    store.report()
    store.command(ALICE, "!ack")
    case = store.case()
    assert (case.status, case.assignee) == ("acknowledged", ALICE) and case.human_ack_at is not None
    assert case.next_due_at > case.created_at + timedelta(hours=24)  # past the acknowledgement deadline
    answer = store.latest(ALICE)
    assert answer.kind == "confirmation" and "acknowledged" in done_lines(answer)
    # a second !ack by another member keeps the first assignee
    store.command(BOB, "!ack")
    assert store.case().assignee == ALICE


@covers(ct.Ack)
def test_a_steering_members_ack_does_not_make_them_assignee(store):
    store.report(body="Alice Example and Bob Builder both ignored me.")  # too few members left: steering included
    assert store.case().recused_members() == {ALICE, BOB}
    store.command(SAM, "!ack")
    case = store.case()
    assert case.status == "acknowledged" and case.assignee is None


@covers(ct.Assign)
def test_assign_by_name_or_alias(store):
    store.report()
    store.command(BOB, "!assign Carol")
    assert store.case().assignee == CAROL
    store.command(BOB, "!assign Ali")  # Alice's alias
    assert store.case().assignee == ALICE
    assert "assigned to Alice Example" in done_lines(store.latest(BOB))


def test_assign_refuses_an_unknown_name_a_recused_member_and_the_steering_committee(store):
    store.report()
    store.command(ALICE, "!concerns Bob")
    for name, why in (("Nobody Known", "no committee member by that name"), ("Bob", "recused from this case"),
                      ("Sam", "no committee member by that name")):
        store.command(ALICE, f"!assign {name}")
        answer = store.latest(ALICE)
        assert answer.kind == "refusal" and why in done_lines(answer)
    assert store.case().assignee is None
    assert store.events("command_assign") == []


@covers(ct.Ack, ct.Status)
def test_status_after_ack(store):
    store.report()
    store.command(ALICE, "!status investigating")
    answer = store.latest(ALICE)
    assert answer.kind == "refusal" and "send !ack first" in done_lines(answer)
    assert store.case().status == "new"
    store.command(ALICE, "!ack !status waiting")
    assert store.case().status == "waiting"
    store.command(ALICE, "!status investigating")
    assert store.case().status == "investigating"
    changes = [(e.detail["old"], e.detail["new"]) for e in store.events("status_changed")]
    assert changes == [("new", "acknowledged"), ("acknowledged", "waiting"), ("waiting", "investigating")]


# ----- text to parties ---------------------------------------------------------------------------


@covers(ct.Reply)
def test_reply_sends_the_new_text_alone_to_the_reporter_and_a_copy_to_the_members(store):
    store.report(body="He shouted at me. REPORT-TEXT")
    mark = store.outbox_mark()
    store.command(BOB, "!reply", "Thank you, we are looking into it. REPLY-TEXT")
    [to_reporter] = [m for m in store.mail_after(mark) if m.recipient == REPORTER]
    assert to_reporter.kind == "reply" and to_reporter.audience == "reporter"
    assert "REPLY-TEXT" in to_reporter.text and "REPORT-TEXT" not in to_reporter.text
    assert "Bob" not in to_reporter.text  # parties hear from conduct@, not from a person
    assert str(to_reporter.subject).startswith("[conduct #")
    copies = {m.recipient for m in store.mail_after(mark) if m.kind == "sent_copy" and "REPLY-TEXT" in m.text}
    assert copies == {ALICE, BOB, CAROL}
    assert store.case().last_response_at is not None
    assert "reply sent to the reporter" in done_lines(store.latest(BOB))


@covers(ct.Reply)
def test_reply_sends_text_only_and_says_the_attachment_stayed_behind(store):
    store.report()
    msg = email.message_from_bytes(reply(store.copy_of(BOB), BOB, "!reply", "Our answer."), policy=email.policy.default)
    msg.add_attachment(b"%PDF-1.4 internal minutes", maintype="application", subtype="pdf", filename="minutes.pdf")
    store.take_in(msg.as_bytes())
    to_reporter = store.latest(REPORTER, "reply")
    assert "Our answer." in to_reporter.text and list(parsed(to_reporter).iter_attachments()) == []
    assert "your 1 attachment(s) were not sent" in done_lines(store.latest(BOB))


def test_reply_refused_without_text_or_repeating_an_internal_note(store):
    store.report()
    store.command(ALICE, "", "The respondent has a history of similar conduct at three events")
    mark = store.outbox_mark()
    store.command(ALICE, "!reply", "")
    assert "no text" in done_lines(store.latest(ALICE))
    store.command(ALICE, "!reply", "Hello, the respondent has a history of similar conduct at three events, so we act.")
    assert "internal note" in done_lines(store.latest(ALICE))
    store.command(ALICE, "!reply", "We are looking into it.\n\nAlice Example\nalice@example.org")
    assert "!reply" in done_lines(store.latest(ALICE)) and "reply sent" not in done_lines(store.latest(ALICE))
    assert [m.recipient for m in store.mail_after(mark)] == [ALICE] * 3  # the refusals, nothing else
    assert store.case().last_response_at is None


def test_reply_refused_repeating_the_note_a_member_wrote_beside_a_forwarded_report(store):
    """The words a member writes beside a report they forward (`!new`) are an internal note like
    any other: a `!reply` must not carry them to the reporter."""
    store.personal(CAROL, "Fwd: Something happened !new direct@example.net",
                   "FORWARD-NOTE: the person named has two earlier warnings on file from other events",
                   attach=report(sender="direct@example.net", subject="Something happened", body="It happened again."))
    assert "FORWARD-NOTE" in store.latest(ALICE, "note").text
    mark = store.outbox_mark()
    store.command(ALICE, "!reply", "Thank you. The person named has two earlier warnings on file from other events.")
    assert "internal note" in done_lines(store.latest(ALICE))
    assert all(m.recipient != "direct@example.net" for m in store.mail_after(mark))


@covers(ct.Party, ct.Send)
def test_party_then_send_to_that_role(store):
    store.report()
    store.command(ALICE, "!send witness", "Can you tell us what you saw?")
    assert "no party with that role" in done_lines(store.latest(ALICE))
    store.command(ALICE, "!party witness pat@example.net Pat Person")
    assert [(p.role, p.address, p.name) for p in store.case().parties] == [
        ("reporter", REPORTER, "Robin Reporter"), ("witness", PAT, "Pat Person")]
    mark = store.outbox_mark()
    store.command(ALICE, "!send witness", "Can you tell us what you saw? WITNESS-TEXT")
    [to_pat] = [m for m in store.mail_after(mark) if m.recipient == PAT]
    assert to_pat.audience == "party" and "WITNESS-TEXT" in to_pat.text
    assert "message sent to 1 witness party" in done_lines(store.latest(ALICE))
    assert store.case().last_response_at is None  # the reporter is still waiting for an answer


@covers(ct.Party, ct.Send)
def test_a_party_recorded_twice_gets_one_mail(store):
    store.report()
    store.command(ALICE, "!party witness pat@example.net Pat Person")
    store.command(BOB, "!party witness Pat@Example.net Pat")
    assert "witness party already recorded" in done_lines(store.latest(BOB))
    assert [p.role for p in store.case().parties] == ["reporter", "witness"]
    mark = store.outbox_mark()
    store.command(ALICE, "!send witness", "Can you tell us what you saw?")
    assert [m.recipient for m in store.mail_after(mark) if m.audience == "party"] == [PAT]
    assert "message sent to 1 witness party" in done_lines(store.latest(ALICE))


@covers(ct.Party)
def test_a_member_recorded_as_reported_party_is_recused(store):
    store.report()
    mark = store.outbox_mark()
    store.command(ALICE, "!party reported Bob+events@example.org")
    assert store.case().recused_members() == {BOB}
    mail = store.mail_after(mark)
    # Carol is told in one mail; Alice, who sent it, gets her confirmation; Bob gets nothing
    assert sorted((m.recipient, m.kind) for m in mail) == [(ALICE, "confirmation"), (CAROL, "announcement")]
    assert "Bob Builder is excluded" in store.latest(CAROL).text


# ----- urgency, spam ---------------------------------------------------------------------------


@covers(ct.Urgent, ct.NotUrgent)
def test_urgent_alerts_the_members_and_shortens_the_deadline(store):
    case = store.report()
    store.command(BOB, "!help")
    assert store.case().next_due_at == case.created_at + timedelta(hours=24)
    mark = store.outbox_mark()
    store.command(BOB, "!urgent")
    case = store.case()
    # the urgent hour runs from the moment it became urgent, never dated back to the report
    assert case.urgent and case.urgent_since is not None and case.urgent_since > case.created_at
    assert case.next_due_at == case.urgent_since + timedelta(hours=1)
    mail = store.mail_after(mark)
    # the others are alerted in one mail each, marked URGENT; Bob gets his confirmation only
    assert sorted((m.recipient, m.kind) for m in mail) == [(ALICE, "announcement"), (BOB, "confirmation"),
                                                           (CAROL, "announcement")]
    assert all("URGENT" in m.subject for m in mail if m.recipient != BOB)
    mark = store.outbox_mark()
    store.command(BOB, "!urgent")  # already urgent: no second alert
    assert not any("URGENT" in m.subject for m in store.mail_after(mark))
    store.command(BOB, "!not-urgent")
    assert not store.case().urgent
    assert "no longer urgent" in done_lines(store.latest(BOB))


@covers(ct.Spam)
def test_spam_stops_the_clocks(store):
    store.report()
    store.command(CAROL, "!spam")
    case = store.case()
    assert case.spam and case.next_due_at is None
    assert "marked as spam" in done_lines(store.latest(CAROL))


# ----- recusals ------------------------------------------------------------------------------------


@covers(ct.Concerns)
def test_concerns_recuses_that_member_who_hears_nothing_more(store):
    store.report()
    store.command(ALICE, "!ack")
    mark = store.outbox_mark()
    store.command(BOB, "!concerns Alice")
    case = store.case()
    assert case.recused_members() == {ALICE} and case.assignee is None
    # the others are told, and with the chair recused the steering committee takes her place
    assert {m.recipient for m in store.mail_after(mark)} == {BOB, CAROL, SAM}
    store.command(CAROL, "", "a note Alice must not see")
    assert all(m.recipient != ALICE for m in store.mail_after(mark))


@pytest.mark.parametrize("subject", [
    "!reply !concerns Bob", "!urgent !concerns Bob", "!steering !concerns Sam",
    "!party reported pat@example.net !decide temporary-ban until=2027-01-31 !concerns Bob",
    "!reply !party reported bob@example.org",
])
def test_mail_queued_by_earlier_commands_of_the_subject_never_reaches_the_member_it_recuses(store, subject):
    """The commands of a subject apply together: a member recused by one of them gets nothing the
    others wrote about the case, whatever their order."""
    store.report()
    mark = store.outbox_mark()
    store.command(ALICE, subject, "Thank you for telling us.")
    [recused] = store.case().recused_members()
    assert store.events("command_concerns") or store.events("command_party")
    assert [m.kind for m in store.mail_after(mark) if m.recipient == recused and m.audience != "party"] == []


def test_case_mail_not_yet_sent_is_withdrawn_when_its_member_is_recused(store):
    """In an outage mail waits in the outbox; a member recused meanwhile must not get it later."""
    store.outage = True
    store.report()
    store.command(ALICE, "", "a note for the others")
    assert {m.kind for m in store.mail_to(BOB)} == {"report", "note"}
    store.command(ALICE, "!concerns Bob")
    assert store.mail_to(BOB) == []
    assert {m.kind for m in store.mail_to(CAROL)} >= {"report", "note", "announcement"}


def test_concerns_refuses_an_unknown_name(store):
    store.report()
    store.command(ALICE, "!concerns Nobody Known")
    assert "no member by that name" in done_lines(store.latest(ALICE))
    assert store.case().recused_members() == set()


@covers(ct.Recuse)
def test_recuse_excludes_the_member_themselves(store):
    store.report()
    store.command(CAROL, "!ack")
    mark = store.outbox_mark()
    store.command(CAROL, "!recuse")
    case = store.case()
    assert case.recused_members() == {CAROL} and case.assignee is None
    # the others are told; Carol gets nothing more about the case, not even the confirmation
    assert {m.recipient for m in store.mail_after(mark)} == {ALICE, BOB}
    assert [r.reason for r in case.recusals] == ["self"]


@covers(ct.Include, ct.Confirm)
def test_include_undoes_an_automatic_recusal_once_a_second_member_confirms(store):
    store.report(body="Bob Builder was there too.")
    assert store.case().recused_members() == {BOB}
    store.command(ALICE, "!include Bob")
    assert store.case().recused_members() == {BOB}  # proposed, not yet in effect
    proposals = [m for m in store.mail() if m.kind == "include_proposal"]
    assert {m.recipient for m in proposals} == {CAROL}  # the others; Bob, still recused, hears nothing
    assert store.mail_to(BOB) == []
    store.command(ALICE, "!confirm")
    assert "a second member must confirm your own !include" in done_lines(store.latest(ALICE))
    mark = store.outbox_mark()
    store.command(CAROL, "!confirm")
    assert store.case().recused_members() == set()
    told = {m.recipient for m in store.mail_after(mark) if "is included in this case again" in m.text}
    assert told == {ALICE, BOB}


def test_include_refuses_a_recusal_by_command(store):
    store.report()
    store.command(ALICE, "!concerns Bob")
    store.command(CAROL, "!include Bob")
    assert "only an automatic recusal" in done_lines(store.latest(CAROL))
    store.command(CAROL, "!include Alice")
    assert "not recused from this case" in done_lines(store.latest(CAROL))
    assert store.case().recused_members() == {BOB}


# ----- decisions and the end of a case -----------------------------------------------------------


@covers(ct.Decide)
def test_a_decision_that_is_not_severe_takes_effect_at_once(store):
    store.report()
    store.command(ALICE, "!ack !decide no-action")
    [decision] = store.decisions()
    assert (decision.kinds, decision.status, decision.decided_by) == ("no-action", "effective", ALICE)
    assert store.case().status == "decided"


@covers(ct.Party, ct.Decide, ct.Confirm)
def test_a_severe_decision_waits_for_a_second_member(store):
    store.report()
    store.command(ALICE, "!party reported pat@example.net Pat Person")
    store.command(ALICE, "!decide temporary-ban target=reported until=2027-01-31")
    [decision] = store.decisions()
    assert decision.status == "pending" and store.case().status != "decided"
    assert {m.recipient for m in store.mail() if m.kind == "decision_proposal"} == {BOB, CAROL}
    assert "proposes the decision temporary-ban" in store.latest(BOB, "decision_proposal").text
    store.command(ALICE, "!confirm")
    assert "second member" in done_lines(store.latest(ALICE))
    store.take_in(reply(store.latest(BOB, "decision_proposal"), BOB, "!confirm"))
    [decision] = store.decisions()
    assert (decision.status, decision.confirmed_by) == ("effective", BOB)
    assert store.case().status == "decided"
    with store.sessions() as session:
        [sanction] = session.query(Sanction).all()
    assert (sanction.target_address, sanction.kind, sanction.ends_on) == (PAT, "temporary-ban", date(2027, 1, 31))


@covers(ct.Decide, ct.Confirm)
def test_a_steering_member_confirms_only_when_too_few_members_are_left(store):
    first = store.report()
    store.command(BOB, "!decide public-reprimand target=reporter")
    # Sam acts on a case only where he works on it (the steering committee stands in for missing
    # members, or it was escalated to them, or he reconsiders it); elsewhere nothing applies and
    # the answer carries nothing of the case
    sams_address = tokens.reply_address("conduct", "example.org", tokens.mint(SECRET.encode(), "case", first.ref, SAM))
    store.command(BOB, "!confirm", to=sams_address, sender=SAM)
    refusal = store.latest(SAM)
    assert "you receive its reports as a steering member but do not work on it" in done_lines(refusal)
    assert refusal.case_id is None and "Where the case stands" not in refusal.text
    second = store.report(sender="other@example.net", subject="About Alice", body="Alice Example was rude.")
    assert {m.recipient for m in store.mail() if m.case_id == second.id and m.kind == "report"} == {BOB, CAROL, SAM}
    store.command(BOB, "!decide public-reprimand target=reporter", case=second)
    store.command(SAM, "!confirm", case=second)
    assert [(d.case_id, d.status, d.confirmed_by) for d in store.decisions()] == [
        (first.id, "pending", None), (second.id, "effective", SAM)]


@covers(ct.Decide, ct.Include, ct.Confirm)
def test_confirm_with_a_decision_and_an_inclusion_waiting_asks_which_or_follows_the_mail_it_answers(store):
    store.report(body="Bob Builder was there too.")
    store.command(ALICE, "!party reported pat@example.net")
    store.command(ALICE, "!decide temporary-ban until=2027-01-31")
    store.command(ALICE, "!include Bob")  # a message of its own: each proposal is a mail of its own to answer
    store.command(CAROL, "!confirm")
    assert "send !confirm decision or !confirm include" in done_lines(store.latest(CAROL))
    assert [d.status for d in store.decisions()] == ["pending"] and store.case().recused_members() == {BOB}
    # an answer to the announcement of the decision confirms the decision, not the inclusion
    store.take_in(reply(store.latest(CAROL, "decision_proposal"), CAROL, "!confirm"))
    assert [d.status for d in store.decisions()] == ["effective"] and store.case().recused_members() == {BOB}
    store.command(CAROL, "!confirm include")
    assert store.case().recused_members() == set()


def test_decide_refuses_a_sanction_without_a_target_and_confirm_without_anything_pending(store):
    store.report()
    store.command(ALICE, "!decide private-reprimand")
    assert "needs a target party" in done_lines(store.latest(ALICE))
    store.command(ALICE, "!decide no-action target=witness")
    assert "no witness party" in done_lines(store.latest(ALICE))
    store.command(BOB, "!confirm")
    assert "nothing on this case is waiting" in done_lines(store.latest(BOB))
    assert store.decisions() == []


@covers(ct.Decide, ct.Reply, ct.Close)
def test_close_needs_a_decision_and_an_answer_to_the_reporter(store):
    store.report()
    store.command(ALICE, "!ack !close")
    assert "record a decision first" in done_lines(store.latest(ALICE))
    assert store.case().status == "new"  # the !ack went back with the refused !close
    store.command(ALICE, "!ack !decide no-action")
    store.command(ALICE, "!close")
    assert "reporter has not been answered" in done_lines(store.latest(ALICE))
    store.command(ALICE, "!reply", "We have looked into it and closed the matter.")
    mark = store.outbox_mark()
    store.command(ALICE, "!close")
    case = store.case()
    assert case.status == "closed" and case.closed_at is not None and case.next_due_at is None
    [to_steering] = [m for m in store.mail_after(mark) if m.kind == "steering_report"]
    assert to_steering.recipient == SAM
    assert REPORTER not in to_steering.text and "Robin" not in to_steering.text and "no-action" in to_steering.text
    assert all(m.recipient != REPORTER for m in store.mail_after(mark))


@covers(ct.Close, ct.Reopen)
def test_close_silent_then_reopen(store):
    store.report()
    store.command(BOB, "!reopen")
    assert "not closed or decided" in done_lines(store.latest(BOB))
    store.command(BOB, "!close silent duplicate report")
    assert store.case().status == "closed"
    assert [e.detail.get("silent") for e in store.events("status_changed")] == [True]
    store.command(BOB, "!decide no-action")
    assert "the case is closed" in done_lines(store.latest(BOB))
    store.command(BOB, "!reopen")
    case = store.case()
    assert case.status == "investigating" and case.closed_at is None and case.next_due_at is not None


@covers(ct.Steering)
def test_steering_sends_the_steering_committee_a_report_without_identities(store):
    store.report(name="Robin Reporter")
    mark = store.outbox_mark()
    store.command(CAROL, "!steering")
    [report] = [m for m in store.mail_after(mark) if m.kind == "steering_report"]
    assert report.recipient == SAM and "requested" in report.text
    assert REPORTER not in report.text and "Robin" not in report.text
    assert store.case().status == "new"


# ----- help and list ---------------------------------------------------------------------------


@covers(ct.Help, ct.List)
def test_help_and_list_on_a_case(store):
    first = store.report()
    second = store.report(sender="other@example.net", subject="Another incident", body="Carol Chen was rude.")
    store.command(CAROL, "!spam", case=first)
    store.command(BOB, "!list !help", case=second)
    answer = store.latest(BOB)
    assert answer.kind == "confirmation" and HELP_TEXT.splitlines()[1] in answer.text
    lines = done_lines(answer)
    assert second.ref in lines and first.ref not in lines  # spam is not an open case
    store.command(CAROL, "!list", case=first)
    assert second.ref not in done_lines(store.latest(CAROL))  # Carol is recused from the second


# ----- title, history, merge -------------------------------------------------------------------


@covers(ct.Title, ct.Reply)
def test_title_changes_the_committee_subject_and_never_reaches_the_reporter(store):
    store.report(subject="Harassment at the sprint", body="Carol Chen saw it.")  # Carol is recused
    mark = store.outbox_mark()
    store.command(ALICE, "!title Sprint hallway incident")
    assert store.case().title == "Sprint hallway incident"
    told = store.mail_after(mark)
    assert {m.recipient for m in told} == {ALICE, BOB}
    assert all("Sprint hallway incident" in m.subject for m in told)
    mark = store.outbox_mark()
    store.command(BOB, "!reply", "Thank you, we are looking into it.")
    to_reporter = [m for m in store.mail_after(mark) if m.recipient == REPORTER]
    assert to_reporter and all("hallway" not in m.subject and "hallway" not in m.text for m in to_reporter)
    assert "Sprint hallway incident" in store.latest(BOB).subject


@covers(ct.Ack, ct.History)
def test_history_is_sent_to_the_sender_alone(store):
    store.report()
    store.command(ALICE, "!ack")
    mark = store.outbox_mark()
    store.command(BOB, "!history")
    [answer] = store.mail_after(mark)
    assert answer.recipient == BOB and answer.kind == "confirmation"
    assert "Alice Example" in answer.text and "ack" in answer.text.lower()


@covers(ct.Merge)
def test_merge_folds_a_case_into_one_with_the_same_recusals_and_closes_it(store):
    first = store.report()
    second = store.report(sender="other@example.net", subject="The same incident", body="I saw it too.")
    store.command(ALICE, f"!merge {first.ref}", case=second)
    merged = store.case(second.ref)
    assert merged.status == "closed" and merged.merged_into_id == first.id
    assert {p.address for p in store.case(first.ref).parties} >= {REPORTER, "other@example.net"}
    assert first.ref in done_lines(store.latest(ALICE))


def test_merge_refuses_cases_that_exclude_different_members(store):
    first = store.report()
    second = store.report(sender="other@example.net", subject="About Carol", body="Carol Chen was rude.")
    assert store.case(second.ref).recused_members() == {CAROL}
    store.command(ALICE, f"!merge {first.ref}", case=second)
    answer = store.latest(ALICE)
    assert answer.kind == "refusal" and "do not exclude the same members" in done_lines(answer)
    assert store.case(second.ref).merged_into_id is None and store.case(second.ref).status != "closed"
    assert store.events("case_merged") == []


def test_merging_into_an_acknowledged_case_keeps_it_acknowledged_and_each_reporters_week(store):
    from sqlalchemy import select

    from conduct_inbox.cases.deadlines import case_clock
    from conduct_inbox.core import sla
    from conduct_inbox.store.models import Case
    older = store.report()
    store.command(ALICE, "!ack", case=older)
    store.now += timedelta(days=2)
    newer = store.report(sender="other@example.net", subject="The same incident", body="I saw it too.")
    opened = store.case(newer.ref).created_at
    store.command(ALICE, f"!merge {newer.ref}", case=older)
    with store.sessions() as session:
        case = session.scalars(select(Case).where(Case.ref == newer.ref)).one()
        due = sla.deadlines(case_clock(session, case), sla.SlaPolicy())
    merged = store.case(newer.ref)
    assert "ack" not in due and merged.human_ack_at is not None and merged.status == "acknowledged", \
        "a member acknowledged the older report: the merged case is being worked, not waiting for an !ack"
    assert due["response"] == store.case(older.ref).created_at + timedelta(days=7), "the older reporter's week stands"
    assert merged.created_at == opened, "the case's opening (its Outlook conversation) stays"


def test_a_reopened_case_is_closed_again_only_after_the_reporter_is_answered_again(store):
    store.report()
    for command, text in (("!ack", ""), ("!decide no-action", ""), ("!reply", "Dear Robin, no action."), ("!close", "")):
        store.command(ALICE, command, text)
    assert store.case().status == "closed"
    store.now += timedelta(days=10)
    store.command(ALICE, "!reopen", "New information from a witness.")
    store.command(ALICE, "!close")
    assert store.case().status != "closed" and store.latest(ALICE).kind == "refusal"
    store.command(ALICE, "!reply", "Dear Robin, we looked again: still no action.")
    store.command(ALICE, "!close")
    assert store.case().status == "closed"


def test_history_shows_an_included_member_the_notes_since_their_inclusion_not_those_of_their_exclusion(store):
    store.report(body="Carol Chen said it too.")  # Carol is excluded automatically
    store.command(ALICE, "", "NOTE-WHILE-EXCLUDED about Carol's part")
    store.command(ALICE, "!include Carol Chen")
    store.command(BOB, "!confirm")
    assert CAROL not in store.case().recused_members()
    store.command(ALICE, "", "NOTE-AFTER-INCLUSION for everyone")
    store.take_in(reply(store.latest(CAROL, "announcement"), CAROL, "!history"))
    shown = store.latest(CAROL).text
    assert "NOTE-AFTER-INCLUSION" in shown, "what was sent to her after the inclusion is hers to read again"
    assert "NOTE-WHILE-EXCLUDED" not in shown


def test_history_after_a_merge_still_hides_the_notes_of_an_exclusion_on_the_merged_case(store):
    first = store.report(body="Carol Chen said it too.")  # Carol excluded automatically
    store.command(ALICE, "", "NOTE-WHILE-EXCLUDED about Carol's part", case=first)
    store.command(ALICE, "!include Carol Chen", case=first)
    store.command(BOB, "!confirm", case=first)
    second = store.report(sender="other@example.net", subject="The same incident", body="I saw it too.")
    store.command(ALICE, f"!merge {second.ref}", case=first)
    assert store.case(first.ref).merged_into_id == second.id
    store.command(CAROL, "!history", case=second)
    assert "NOTE-WHILE-EXCLUDED" not in store.latest(CAROL).text
