"""Fifth attack round on issue 16 (cases tier, no servers): what a steering member can do and
learn through the reply token of a steering report, the reconsideration rule bypassed through a
merge, and what the "Where the case stands" block and escalations carry to the steering members."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.case_store import Store
from tests.case_store import clock as _clock
from tests.case_store import escalate as _escalate
from tests.case_store import mail_to as _to
from tests.mailers import ALICE, BOB, CAROL, REPORTER, SAM, gmail_reply, reply

SECOND = "second@example.net"
ACCUSED = "pat@example.net"


def _steering_report(store: Store, case) -> object:
    return [m for m in store.mail_to(SAM) if m.kind == "steering_report" and m.case_id == case.id][-1]


def _merged_decided_half_answered(store: Store):
    """Robin's and Sam Second's reports of one incident, merged; a decision taken; Robin answered,
    Sam Second not yet; the committee sends the steering committee the case report."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man did it to me.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!ack", case=a)
    store.command(ALICE, "!decide no-action", case=a)
    store.command(ALICE, f"!reply {REPORTER}", "Dear Robin, we looked into it and decided to take no action.", case=a)
    store.command(ALICE, "!steering", case=a)
    return a


# ----- a steering member acting through the steering report's reply token ----------------------


def test_a_steering_member_cannot_learn_the_reporters_from_a_close_refusal(store: Store):
    """BROKE. Robin's and Sam Second's reports of one incident are merged; the committee decides,
    answers Robin, and sends the steering committee the policy's case report (`!steering`), which
    "leaves out the reporter's and witnesses' identities" (the steering committee may publish it).
    Sam Steering does not work the case (quorum met; since round 4 his `!history` and `!list` are
    refused for that reason) — but the report carries his reply token for the case, and steering
    members "can act by email like members". He answers it with `!close`: the refusal he gets
    reads "!close: not every reporter of this case has been answered yet (second@example.net:
    !reply ADDRESS)" — a reporter's address, which the case report, the standing block (counts
    only) and the !history refusal all withhold from him. cases/decisions.py close names the
    waiting reporters in its Refused text; cases/desk.py `_apply` sends refusals to anyone
    `routing.may_see` admits (every steering member not recused), not only those who
    `routing.works_on` the case."""
    a = _merged_decided_half_answered(store)
    report_mail = _steering_report(store, a)
    assert REPORTER not in report_mail.text and SECOND not in report_mail.text
    mark = store.outbox_mark()
    store.take_in(reply(report_mail, SAM, "!close"))
    got = "\n".join(m.subject + "\n" + m.text for m in _to(store, SAM, mark))
    shown = [w for w in (REPORTER, SECOND, "Robin Reporter", "Sam Second") if w in got]
    assert not shown, f"Sam's answer names {shown}: {got[:600]!r}"


def test_a_steering_member_cannot_probe_who_reported_with_reply_address(store: Store):
    """BROKE. Same merged case, same steering report (no identities). Sam Steering suspects Sam
    Second reported and answers the report with `!reply second@example.net` and a short text:
    for a wrong guess he gets "!reply: no reporter of this case has that address" (refusal), for
    the right one a confirmation and the sent copy — and the text actually goes to the reporter
    from conduct@. The answer is an oracle for "did X report this?" available to anyone on the
    steering roster outside the case (`!decide ... target=ADDRESS` and `!send ROLE ADDRESS` answer
    the same way for any party). cases/handlers.py reply/send and cases/decisions.py decide
    refuse with "no ... has that address"; nothing checks `routing.works_on` for acting
    commands on a case the steering member only got a report of."""
    a = _merged_decided_half_answered(store)
    report_mail = _steering_report(store, a)
    answers = {}
    for guess in ("nobody@example.net", SECOND):
        mark = store.outbox_mark()
        store.take_in(reply(report_mail, SAM, f"!reply {guess}", "Dear reporter, a question from the steering committee."))
        answers[guess] = ([m.kind for m in _to(store, SAM, mark)], [m.kind for m in _to(store, guess, mark)])
    assert answers["nobody@example.net"] == answers[SECOND], answers


# ----- the reconsideration rule and merges -----------------------------------------------------


def _answered_and_closed(store: Store):
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!reply", "Dear Robin, we looked into it and decided to take no action.", case=case)
    store.command(ALICE, "!decide no-action", case=case)
    store.command(ALICE, "!close", case=case)
    assert store.case(case.ref).status == "closed"
    return case


def test_a_committee_member_cannot_merge_a_case_into_one_under_reconsideration(store: Store):
    """BROKE. Alice decided and closed Robin's case; Sam Steering opens a reconsideration (README,
    round 4 fix: "during a reconsideration only steering members change the case"; the members
    are refused with "the case is under reconsideration by the steering committee, which alone
    acts on it"). Sam Second then reports the same man; Bob (a committee member, not steering)
    answers the new case's copy with `!merge REF` of the reconsidered case: accepted. The case
    under review gets a new reporter, messages, notes, a response clock and possibly Bob's
    assignee, and the merge announcement tells the steering members after the fact.
    cases/handlers.py run checks `call.case.status == RECONSIDERATION` only for the case the
    command is sent on (the merge's source), and cases/merge.py `_target` accepts any open
    target (reconsideration counts as open)."""
    case = _answered_and_closed(store)
    store.now += timedelta(days=3)
    store.personal(SAM, f"!reconsider {case.ref}")
    assert store.case(case.ref).status == "reconsideration"
    other = store.report(sender=SECOND, name="Sam Second", body="He did the same to me; the decision was wrong.")
    store.command(BOB, f"!merge {case.ref}", case=other)
    assert store.case(other.ref).merged_into_id is None, "Bob changed the case under reconsideration by a merge"


# ----- escalations to the steering committee ---------------------------------------------------


@pytest.mark.xfail(strict=True, reason="departure (README): an escalation to the steering members hands them the case (they then work on it), so it carries the case subject like any committee mail")
def test_an_escalation_to_the_steering_committee_carries_no_reporters_subject(store: Store):
    """BROKE. Robin's report has the subject "Robin Reporter: Pat Person groped me at the sprint".
    Nobody acknowledges it; the acknowledgement is escalated to the committee, then to the
    steering members (who do not work the case: quorum met). Sam Steering's escalation mail has
    the subject "[conduct #REF] Robin Reporter: Pat Person groped me at the sprint" — the
    reporter's name, the accused's name and the allegation, which the steering committee's case
    report deliberately leaves out ("Case report for the steering committee", identities left
    out) and which round 4 removed from the steering members' `!list`; the escalation's own text
    ends "This message carries only references and ids". cases/escalate.py builds
    level-2 escalations with mailer.committee_drafts and `context.subject` (the case title) like
    any committee mail."""
    store.report(subject="Robin Reporter: Pat Person groped me at the sprint")
    store.now += timedelta(hours=60)
    sent = _escalate(store)
    to_sam = [m for m in sent if m.recipient == SAM]
    assert to_sam, [(m.recipient, m.kind) for m in sent]
    shown = [w for w in ("Robin", "groped", "Pat Person") for m in to_sam if w in m.subject + m.text]
    assert not shown, f"escalation to steering shows {sorted(set(shown))}: {[m.subject for m in to_sam]}"


# ----- a committee member who reports ------------------------------------------------------------


def test_a_member_who_reports_can_write_again_about_their_own_report(store: Store):
    """HELD. Bob, a committee member, reports from his roster address and is excluded from his own
    case. He answers the acknowledgement from the same address (no token: a reporter's follow-up);
    it is not taken as a member's tokenless mail and dropped: the committee gets the follow-up."""
    from tests.harness import report
    case = store.report(sender=BOB, name="Bob Builder", subject="Something happened to me",
                        body="Pat grabbed my arm at the meetup and would not let go.")
    assert BOB in {r.member_email for r in store.case(case.ref).recusals if r.active}
    [ack] = [m for m in store.mail_to(BOB) if m.kind == "ack"]
    mark = store.outbox_mark()
    store.take_in(report(sender=BOB, name="Bob Builder", subject=f"Re: {ack.subject}",
                         body="He did it again today at the office, and he threatened me."))
    to_alice = _to(store, ALICE, mark)
    assert to_alice and any("threatened" in m.text for m in to_alice), \
        f"Bob's follow-up reached nobody: {[(m.recipient, m.kind) for m in store.mail_after(mark)]}"


def test_a_member_who_reports_from_a_private_address_gets_no_copy_of_their_own_report(store: Store):
    """BROKE (gray). Bob Builder, a committee member, reports harassment from his private address
    ("Bob Builder <bob.private@gmail.example>"), as many people do for a personal matter. His
    full name is in the From line every member's copy shows; README: "full names ... found
    anywhere a person could read in a report recuse that member automatically", and round 4 made
    a member who reports "hear as a reporter". Bob gets the committee's copy of his own report
    with a reply token, and from then on every internal note about his complaint and the power
    to act on it (`!decide`, `!close`). The scan (core/scanning.py) reads subject, text,
    attachments and forwards but not the sender's display name; the reporter exclusion
    (cases/reports.py) matches the roster by address only."""
    case = store.report(sender="bob.private@gmail.example", name="Bob Builder", subject="Something happened to me",
                        body="Pat grabbed my arm at the meetup and would not let go.")
    copies = [m for m in store.mail_to(BOB) if m.case_id == case.id]
    assert not copies, f"Bob got {[m.kind for m in copies]} of his own report"


def test_a_report_a_member_forwards_with_new_excludes_the_member_who_reported(store: Store):
    """HELD. Bob told Alice by mail; Alice forwards his mail with `!new bob@example.org`: Bob is the
    reporter, excluded from the case, and Alice's note about his account does not reach him."""
    from tests.harness import report
    raw = report(sender=BOB, name="Bob Builder", subject="Something happened to me",
                 body="Pat grabbed my arm at the meetup and would not let go.")
    store.personal(ALICE, f"!new {BOB}", "Bob asked me to pass this on.", attach=raw)
    case = store.case()
    excluded = {r.member_email for r in case.recusals if r.active}
    mark = store.outbox_mark()
    store.command(ALICE, "", "I am not sure Bob's account is complete.", case=case)
    assert BOB in excluded and not _to(store, BOB, mark), (excluded, [m.kind for m in _to(store, BOB, mark)])


# ----- clocks of a merged case brought back -------------------------------------------------------


def _merged_both_answered_closed(store: Store):
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man did it to me.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!ack", case=a)
    store.command(ALICE, "!decide no-action", case=a)
    store.command(ALICE, f"!reply {REPORTER}", "Dear Robin, we decided to take no action.", case=a)
    store.command(ALICE, f"!reply {SECOND}", "Dear Sam, we decided to take no action.", case=a)
    store.command(ALICE, "!close", case=a)
    assert store.case(a.ref).status == "closed"
    return a


def test_reopening_a_merged_case_owes_each_reporter_a_week_from_the_reopening(store: Store):
    """HELD. A merged case (Robin, Sam Second), both answered, decided and closed. Day 10 Bob
    sends `!reopen`; day 11 he answers Robin. Sam Second's response is due a week from the
    reopening, not overdue, and no escalation goes out."""
    a = _merged_both_answered_closed(store)
    store.now += timedelta(days=10)
    reopened = store.now
    store.command(BOB, "!reopen", case=a)
    store.now += timedelta(days=1)
    store.command(BOB, f"!reply {REPORTER}", "Dear Robin, new facts came up; we are looking again.", case=a)
    due = _clock(store, a.ref).get("response")
    sent = _escalate(store)
    assert due is not None and due >= reopened + timedelta(days=7) - timedelta(minutes=5) and not sent, \
        f"response due {due} (reopened {reopened}); escalations: {[(m.recipient, m.kind) for m in sent]}"


def test_a_reopened_merged_case_is_not_closed_again_before_every_reporter_was_answered(store: Store):
    """BROKE (gray). Same merged case, reopened on day 10 because of new facts; Bob writes to Robin
    about them (day 11) and sends `!close` on day 12: accepted, though Sam Second, the other
    reporter, never heard that the case was reopened nor what came of it — the response line of
    every case mail still showed "Response to the reporter (!reply) due" for him (his week from
    the reopening) up to the `!close`. README: "`!close` is refused, naming who, until every
    reporter was answered"; "A closed case brought back ... owes its reporters a response within 7
    days from then". cases/decisions.py close looks at `answered_at is None`, and the answers
    from before the first closing still count after `!reopen` (the clock is reset, the
    per-reporter answered marks are not)."""
    a = _merged_both_answered_closed(store)
    store.now += timedelta(days=10)
    store.command(BOB, "!reopen", case=a)
    store.now += timedelta(days=1)
    store.command(BOB, f"!reply {REPORTER}", "Dear Robin, new facts came up; we are looking again.", case=a)
    store.now += timedelta(days=1)
    store.command(BOB, "!close", case=a)
    assert store.case(a.ref).status != "closed", "closed again without answering Sam Second after the reopening"


def test_reconsidering_a_merged_case_is_not_overdue_at_once(store: Store):
    """HELD. A merged case whose two reporters were answered and which was closed is reconsidered
    30 days later: no response is overdue and nothing is escalated at once."""
    a = _merged_both_answered_closed(store)
    store.now += timedelta(days=30)
    store.personal(SAM, f"!reconsider {a.ref}")
    assert store.case(a.ref).status == "reconsideration"
    due = _clock(store, a.ref).get("response")
    sent = _escalate(store)
    assert (due is None or due > store.now) and not sent, f"response due {due}; sent {[(m.recipient, m.kind) for m in sent]}"


# ----- urgency from a party's follow-up ---------------------------------------------------------


def test_an_urgent_follow_up_hours_after_the_report_counts_its_hour_from_then(store: Store):
    """HELD. Five hours after a plain report, Robin writes "I feel unsafe": the case turns urgent
    and its acknowledgement is due within the hour from the follow-up, not overdue at once."""
    from tests.harness import report
    case = store.report()
    store.now += timedelta(hours=5)
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="He is outside my hotel room now, I feel unsafe."))
    assert store.case(case.ref).urgent
    due = _clock(store, case.ref)["ack"]
    sent = _escalate(store)
    assert due > store.now - timedelta(minutes=5) and not sent, f"ack due {due} at {store.now}; sent {[(m.recipient, m.kind) for m in sent]}"


def test_an_urgent_follow_up_by_the_merged_in_reporter_counts_its_hour_from_then(store: Store):
    """HELD. Same, from the reporter of a merged-in case writing under their own reference."""
    from tests.harness import report
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man did it to me.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.now += timedelta(hours=6)
    store.take_in(report(sender=SECOND, name="Sam Second", subject=f"Re: [conduct #{b.ref}] Your report has been received",
                         body="He is outside my hotel room now, I feel unsafe."))
    assert store.case(a.ref).urgent
    due = _clock(store, a.ref)["ack"]
    sent = _escalate(store)
    assert due > store.now - timedelta(minutes=5) and not sent, f"ack due {due} at {store.now}; sent {[(m.recipient, m.kind) for m in sent]}"


# ----- `!reply ADDRESS` as a member types it ---------------------------------------------------


@pytest.mark.parametrize("typed", ["Second@Example.NET", "<second@example.net>"])
def test_reply_address_as_a_member_types_it_reaches_that_reporter(store: Store, typed: str):
    """HELD. `!reply ADDRESS` with the address in capitals or in angle brackets reaches that
    reporter, and only them."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man did it to me.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    mark = store.outbox_mark()
    store.command(ALICE, f"!reply {typed}", "Dear Sam, thank you, we are on it.", case=a)
    assert [m.kind for m in _to(store, SECOND, mark)] == ["reply"] and not _to(store, REPORTER, mark), \
        [(m.recipient, m.kind) for m in store.mail_after(mark)]


# ----- `!urgent` again after `!not-urgent` ------------------------------------------------------


def test_marking_a_case_urgent_a_second_time_counts_the_hour_from_the_second_mark(store: Store):
    """HELD. `!urgent` at 11:00, `!not-urgent` at 11:30, `!urgent` again at 19:30: the urgent hour
    runs from the second mark (or the 24 hours promised), nothing is overdue at once."""
    case = store.report()
    store.now += timedelta(hours=2)
    store.command(ALICE, "!urgent", case=case)
    store.now += timedelta(minutes=30)
    store.command(BOB, "!not-urgent", "Talked to Robin by phone, he is safe at home.", case=case)
    store.now += timedelta(hours=8)
    store.command(ALICE, "!urgent", "He is being followed again.", case=case)
    due = _clock(store, case.ref)["ack"]
    sent = _escalate(store)
    assert due > store.now - timedelta(minutes=5) and not sent, \
        f"ack due {due} at {store.now}; sent {[(m.recipient, m.text.splitlines()[3:5]) for m in sent]}"


def test_an_urgent_hour_already_escalated_does_not_make_a_second_mark_overdue(store: Store):
    """HELD. The first urgent hour passed and was escalated; `!not-urgent`; five hours later
    `!urgent` again: the acknowledgement is due from the new mark, not overdue."""
    case = store.report()
    store.now += timedelta(hours=2)
    store.command(ALICE, "!urgent", case=case)
    store.now += timedelta(hours=3)
    assert _escalate(store)
    store.command(BOB, "!not-urgent", "Talked to Robin by phone, he is safe at home.", case=case)
    store.now += timedelta(hours=5)
    store.command(ALICE, "!urgent", "He is being followed again.", case=case)
    due = _clock(store, case.ref)["ack"]
    assert due > store.now - timedelta(minutes=5), f"ack due {due} at {store.now}"


# ----- committee.announce = "none" ---------------------------------------------------------------


@pytest.mark.config(('steering_address = "steering@example.org"\n',
                     'steering_address = "steering@example.org"\nannounce = "none"\n'))
def test_announce_none_still_tells_the_others_of_an_exclusion_and_an_urgent_mark(store: Store):
    """HELD. With `committee.announce = "none"`, `!concerns Carol !urgent` is still told to Bob
    (README: "a recusal, a proposal or an URGENT mark is still told"), never to Carol, and Alice
    gets her confirmation only."""
    case = store.report()
    mark = store.outbox_mark()
    store.command(ALICE, "!concerns Carol !urgent", case=case)
    got = {who: [m.kind for m in _to(store, who, mark)] for who in (ALICE, BOB, CAROL)}
    assert got[BOB] and not got[CAROL] and got[ALICE] == ["confirmation"], got


# ----- a reporter added by hand to an old case --------------------------------------------------


def test_a_reporter_added_by_hand_to_an_answered_case_is_not_overdue_at_once(store: Store):
    """HELD. Robin was answered on day 0; on day 3 Alice adds his work address as a second reporter
    (`!party reporter`): no response is overdue at once and nothing is escalated."""
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!reply", "Dear Robin, thank you; we are looking into it.", case=case)
    store.now += timedelta(days=3)
    store.command(ALICE, "!party reporter robin.work@example.net Robin Reporter", "Robin writes from work now.", case=case)
    due = _clock(store, case.ref).get("response")
    sent = _escalate(store)
    assert (due is None or due > store.now) and not sent, \
        f"response due {due} at {store.now}; sent {[(m.recipient, m.text.splitlines()[3:5]) for m in sent]}"


# ----- the reporting member brought back with !include ------------------------------------------


def test_a_member_who_reported_cannot_be_included_back_into_their_own_case(store: Store):
    """HELD. Bob reported; his exclusion from his own case is not an automatic one: `!include Bob` and
    a second member's `!confirm` do not bring him back, and Alice's note does not reach him."""
    case = store.report(sender=BOB, name="Bob Builder", subject="Something happened to me",
                        body="Pat grabbed my arm at the meetup and would not let go.")
    store.command(ALICE, "!include Bob", case=case)
    store.command(CAROL, "!confirm", case=case)
    mark = store.outbox_mark()
    store.command(ALICE, "", "I am not sure Bob's account is complete.", case=case)
    assert not _to(store, BOB, mark), f"Bob, the reporter, got {[m.kind for m in _to(store, BOB, mark)]}"


# ----- another member's applied commands do not make mine stale ---------------------------------


def test_answering_an_announcement_applies_a_command_the_announced_member_had_sent(store: Store):
    """HELD. Bob's `!status waiting` was applied and announced to Alice; later the status went back to
    investigating. Alice answers Bob's old announcement with `!status waiting`: applied (Bob's
    subject, which she never saw, does not make her command stale)."""
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.command(BOB, "!status waiting", "Waiting for Robin's answer.", case=case)
    announcement = [m for m in store.mail_to(ALICE) if m.case_id == case.id][-1]
    store.command(ALICE, "!status investigating", "Robin answered.", case=case)
    assert store.case(case.ref).status == "investigating"
    store.now += timedelta(days=1)
    store.take_in(reply(announcement, ALICE, "!status waiting", "Asked Robin again."))
    assert store.case(case.ref).status == "waiting", store.latest(ALICE).text[:400]


# ----- `!decide target=ADDRESS` and `!send ROLE ADDRESS` as typed ----------------------------------


def test_decide_and_send_with_an_address_in_capitals_find_the_party(store: Store):
    """HELD. After a merge with two reported parties, `!send reported Pat@Home.Example` and `!decide
    private-reprimand target=Pat@Home.Example` find pat@home.example."""
    a = store.report()
    store.command(ALICE, "!party reported pat@work.example Pat Person", case=a)
    b = store.report(sender=SECOND, name="Sam Second", body="The same man, Pat, at the meetup.")
    store.command(ALICE, "!party reported pat@home.example Pat Person", case=b)
    store.command(BOB, f"!merge {a.ref}", case=b)
    mark = store.outbox_mark()
    store.command(ALICE, "!send reported Pat@Home.Example", "Dear Pat, please tell us your side.", case=a)
    assert [m.recipient for m in store.mail_after(mark) if m.audience == "party"] == ["pat@home.example"]
    store.command(ALICE, "!decide private-reprimand target=Pat@Home.Example", case=a)
    assert store.decisions(), store.latest(ALICE).text[:300]


# ----- retention of merged cases ----------------------------------------------------------------


def test_purging_a_merged_case_purges_the_case_merged_into_it(store: Store):
    """HELD. A case merged into another is purged with it in one purge run: nothing of its title (the
    reporter's subject) survives."""
    from conduct_inbox.shell.retention import purge_all
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", subject="Pat Person groped me", body="Same man.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!close silent duplicate of an old matter", case=a)
    store.now += timedelta(days=800)
    purge_all(store.sessions, None, store.now, 730)
    left = {c: (store.case(c).purged_at is not None, store.case(c).title) for c in (a.ref, b.ref)}
    assert all(p and not t for p, t in left.values()), left


# ----- a command sent again later in the thread -------------------------------------------------


def test_marking_a_case_urgent_again_after_a_colleague_unmarked_it_applies(store: Store):
    """HELD. Alice marks the case `!urgent` from Gmail; Bob unmarks it (`!not-urgent`); three hours
    later Alice answers Bob's announcement (Gmail's whole References chain, which holds her own
    earlier `!urgent` mail) with `!urgent` again: applied, not taken as stale."""
    case = store.report()
    store.take_in(gmail_reply(store.copy_of(ALICE, case), ALICE, "!urgent", "He is at the venue."))
    assert store.case(case.ref).urgent
    store.take_in(gmail_reply(store.latest(BOB), BOB, "!not-urgent", "Robin is safe at home, spoke to him."))
    assert not store.case(case.ref).urgent
    announcement = store.latest(ALICE)
    store.now += timedelta(hours=3)
    store.take_in(gmail_reply(announcement, ALICE, "!urgent", "He followed Robin home after all."))
    assert store.case(case.ref).urgent, store.latest(ALICE).text[:500]


def test_answering_the_steering_report_does_not_return_the_reporters_subject(store: Store):
    """BROKE. The steering committee's case report has the fixed subject "[conduct #REF] Case
    report for the steering committee" and leaves identities out. Sam Steering (not working the
    case) answers it with `!help`: the answer's subject is "[conduct #REF] Robin Reporter: Pat
    Person groped me at the sprint" — the reporter's own subject with his name, the accused's and
    the allegation (the answer's "Where the case stands" block adds the assignee). Any command or
    note does the same (confirmations, refusals). cases/mailer.py reply_to_member builds every
    answer with `context.subject` (the case title) for anyone `routing.may_see` admits."""
    case = store.report(subject="Robin Reporter: Pat Person groped me at the sprint")
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!steering", case=case)
    report_mail = _steering_report(store, case)
    assert "Robin" not in report_mail.subject + report_mail.text
    mark = store.outbox_mark()
    store.take_in(reply(report_mail, SAM, "!help"))
    got = _to(store, SAM, mark)
    assert got, "Sam got no answer"
    shown = sorted({w for m in got for w in ("Robin", "groped", "Pat Person") if w in m.subject + m.text})
    assert not shown, f"Sam's answer shows {shown}: {[m.subject for m in got]}"


# ----- our own acknowledgement quoted back is not the reporter's urgency ------------------------


def _outlook_follow_up(ack, sender: str, name: str, text: str) -> bytes:
    """Outlook (desktop, plain text): the reply on top, then a line, a From/Sent/To/Subject header
    and the original text unquoted (no `>`)."""
    from email.message import EmailMessage
    from email.utils import make_msgid

    from tests.harness import parsed, text_of
    msg = parsed(ack)
    out = EmailMessage()
    out["From"] = f"{name} <{sender}>"
    out["To"] = "conduct@example.org"
    out["Subject"] = f"RE: {msg['Subject']}"
    out["Message-ID"] = make_msgid(domain="outlook.example")
    out["In-Reply-To"] = msg["Message-ID"]
    out["References"] = " ".join(x for x in (str(msg["References"] or ""), str(msg["Message-ID"])) if x)
    out["Thread-Topic"] = str(msg["Subject"])
    original = text_of(ack)
    out.set_content(f"{text}\n\n________________________________\nFrom: Test Conduct Committee <conduct@example.org>\n"
                    f"Sent: Tuesday, November 24, 2026 9:01 AM\nTo: {name} <{sender}>\nSubject: {msg['Subject']}\n\n{original}\n")
    return out.as_bytes()


@pytest.mark.parametrize("client", ["outlook", "gmail"])
def test_a_follow_up_quoting_our_acknowledgement_does_not_make_the_case_urgent(store: Store, client: str):
    """HELD. Our acknowledgement says "IF ANYONE IS IN PHYSICAL DANGER ..." ("physical danger" is
    an urgent phrase). Robin answers it from Outlook (original below a From/Sent header, not
    quoted with `>`) or Gmail with a harmless follow-up: the case does not turn urgent."""
    case = store.report()
    [ack] = [m for m in store.mail_to(REPORTER) if m.kind == "ack"]
    assert "PHYSICAL DANGER" in ack.text.upper()
    store.now += timedelta(hours=2)
    if client == "outlook":
        raw = _outlook_follow_up(ack, REPORTER, "Robin Reporter", "Thanks. The witness was Wes, he saw it all.")
    else:
        raw = gmail_reply(ack, REPORTER, "", "Thanks. The witness was Wes, he saw it all.")
    mark = store.outbox_mark()
    store.take_in(raw)
    copies = _to(store, ALICE, mark)
    assert copies and not store.case(case.ref).urgent and not any("URGENT" in m.subject for m in copies), \
        f"urgent: {store.case(case.ref).urgent}; {[m.subject for m in copies]}"


def test_a_threat_written_after_the_case_was_closed_reaches_the_committee_as_urgent(store: Store):
    """HELD. Two days after the case was closed Robin writes "Pat is waiting outside my hotel now,
    I feel unsafe": the members' copy carries URGENT in its subject."""
    from tests.harness import report
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!reply", "Dear Robin, we spoke with Pat and consider the matter resolved.", case=case)
    store.command(ALICE, "!decide private-reprimand", case=case)
    store.command(ALICE, "!close", case=case)
    store.now += timedelta(days=2)
    mark = store.outbox_mark()
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Message from the Test Conduct Committee",
                         body="Pat is waiting outside my hotel now, I feel unsafe."))
    copies = _to(store, ALICE, mark)
    assert copies and any("URGENT" in m.subject for m in copies), \
        f"{[(m.kind, m.subject) for m in copies]}; urgent={store.case(case.ref).urgent}"


def test_a_colleague_added_as_a_reporter_gets_no_internal_mail(store: Store):
    """BROKE (gray). Robin reports that Pat shoved him "and a colleague of yours". Bob, that
    colleague, saw it; Alice records him: `!party witness bob@example.org Bob Builder` (the attack
    as written used `!party reporter`, which the grammar refuses). Bob is now a reporter of the case (`!close` waits for a `!reply`
    to him) and still a member on it: Carol's note "I doubt Bob's version" goes straight to him,
    and his token still acts on his own complaint. Round 4's rule — "a committee member who
    reports is recused from their own case (they hear as a reporter)" — is applied when a case
    opens (cases/reports.py open_case, open_forwarded_case: recusals.recuse_reporting_member),
    not when a member becomes a reporter by `!party reporter` (cases/handlers.py party)."""
    case = store.report(body="Pat shoved me and a colleague of yours at the sprint.")
    assert BOB not in {r.member_email for r in store.case(case.ref).recusals if r.active}
    store.command(ALICE, f"!party witness {BOB} Bob Builder", "Bob saw it too.", case=case)
    mark = store.outbox_mark()
    store.command(CAROL, "", "I doubt Bob's version.", case=case)
    assert not _to(store, BOB, mark), f"Bob, now a reporter, got {[m.kind for m in _to(store, BOB, mark)]}"


def test_a_witness_not_yet_recorded_writing_of_danger_with_the_case_tag_reaches_the_committee_as_urgent(store: Store):
    """BROKE (gray: README speaks of "a party's follow-up"). Robin gives Wes, a witness the
    committee has not recorded yet, his case reference. Three hours later Wes writes with it:
    "Pat just threatened Robin again, Robin is in physical danger." The members get a plain
    "Message from someone who is not a party" copy: no URGENT subject, the case stays not urgent
    (no law-enforcement task, no webhook, acknowledgement still due in 24 hours). DESIGN's "when in
    doubt" rule and the policy's "threat to physical safety ... immediate priority" argue for the
    urgent path whoever writes it (cases/inbound.py checks urgency for reports and parties'
    follow-ups only)."""
    from tests.harness import report
    case = store.report()
    store.now += timedelta(hours=3)
    mark = store.outbox_mark()
    store.take_in(report(sender="wes@example.net", name="Wes Witness", subject=f"[conduct #{case.ref}] about Robin",
                         body="Robin gave me this reference. Pat just threatened Robin again, Robin is in physical danger."))
    copies = _to(store, ALICE, mark)
    assert copies and (store.case(case.ref).urgent or any("URGENT" in m.subject for m in copies)), \
        f"{[(m.kind, m.subject) for m in copies]}; urgent={store.case(case.ref).urgent}"


def test_a_reporter_writing_under_a_merged_and_purged_reference_is_answered(store: Store):
    """BROKE. Sam Second's report was merged into Robin's case, which was closed; two years later
    the retention purge removed both cases' contents. Sam writes again under his old reference
    ("He did it again last night": a new incident). He gets no acknowledgement, no clock runs
    (the message joins the purged, closed case: no human acknowledgement or response is owed,
    nothing escalates), and the members get a bare "[conduct #REF]" follow-up copy of a case
    whose history they can no longer read (`!history` on a purged case is refused). A new
    report that silently promises nothing. cases/inbound.py: a case tag resolves to the case row
    (merge.resolve) whatever its purge state; the same happens for a plain purged case."""
    from conduct_inbox.shell.retention import purge_all
    from tests.harness import report
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="Same man.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!close silent duplicate of an old matter", case=a)
    store.now += timedelta(days=800)
    purge_all(store.sessions, None, store.now, 730)
    mark = store.outbox_mark()
    store.take_in(report(sender=SECOND, name="Sam Second", subject=f"Re: [conduct #{b.ref}] Your report has been received",
                         body="He did it again last night."))
    assert [m.kind for m in _to(store, SECOND, mark)] == ["ack"] and _to(store, ALICE, mark), \
        [(m.recipient, m.kind) for m in store.mail_after(mark)]


def test_a_follow_up_to_a_purged_case_never_reaches_the_member_it_concerned(store: Store):
    """BROKE. Robin's report named Carol Chen ("Carol Chen kept touching me at the sprint"): Carol
    was excluded automatically and never heard of the case. It was closed; two years later the
    retention purge deleted its contents — recusals included (README: "parties, recusals, title"
    go). Robin then writes under his old reference "She did it again last night." The follow-up
    copy goes to every member, Carol included, as "Message from someone who is not a party to the
    case ... From: Robin Reporter <reporter@example.net>": the accused member learns who reported
    her, with the case's reference, Robin's text and a reply token. shell/retention.py purge deletes Recusal
    rows; cases/inbound.py files the follow-up on the purged case and routing.committee finds
    nobody recused."""
    from conduct_inbox.shell.retention import purge_all
    from tests.harness import report
    case = store.report(body="Carol Chen kept touching me at the sprint.")
    assert CAROL in {r.member_email for r in store.case(case.ref).recusals if r.active}
    assert not [m for m in store.mail_to(CAROL) if m.case_id == case.id]
    store.command(ALICE, "!close silent Robin withdrew the report", case=case)
    store.now += timedelta(days=800)
    purge_all(store.sessions, None, store.now, 730)
    from tests.harness import report
    mark = store.outbox_mark()
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received", body="She did it again last night."))
    assert _to(store, ALICE, mark), "the follow-up reached nobody"
    assert not _to(store, CAROL, mark), f"Carol got {[m.kind for m in _to(store, CAROL, mark)]} about the case concerning her"


# ----- a real report misflagged as spam ----------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="known limit (README): a message flagged as spam is never urgent; a danger message on a spam case waits for the daily digest")
def test_a_danger_follow_up_on_a_case_flagged_as_spam_reaches_the_committee_at_once(store: Store):
    """BROKE (gray: README and cases/reports.py is_urgent say "never on spam"). Robin's report is
    misflagged by the upstream filter (`X-Spam-Flag: YES`): no acknowledgement, so he has no
    reference. Two hours later he writes again, "Pat is outside my door now, I feel unsafe", and
    the filter flags that too. Nothing reaches any member: both messages wait for the next daily
    spam digest, no URGENT mail, no webhook, no law-enforcement task. The urgent phrases are the
    one signal that could lift a false positive out of the digest at once."""
    from tests.harness import report
    case = store.report(subject="About the meetup", body="Pat keeps messaging me at night.", headers={"X-Spam-Flag": "YES"})
    assert store.case(case.ref).spam
    store.now += timedelta(hours=2)
    mark = store.outbox_mark()
    store.take_in(report(subject="About the meetup", body="I wrote before. Pat is outside my door now, I feel unsafe.",
                         headers={"X-Spam-Flag": "YES"}))
    copies = [m for m in store.mail_after(mark) if m.recipient in (ALICE, BOB, CAROL)]
    assert copies and any("URGENT" in m.subject for m in copies), \
        f"to members at once: {[(m.recipient, m.kind, m.subject) for m in copies]}"


# ----- alerts carry no title -----------------------------------------------------------------------


def test_a_delivery_failure_alert_carries_no_title(store: Store):
    """HELD. README: "alerts carry ids, never a subject, name or address". The `!reply` to Robin
    (subject "Pat Person groped me at the sprint") fails for good: the alert shows neither the
    title nor a name."""
    from conduct_inbox.cases.inbound import on_delivery_failure
    from conduct_inbox.store.models import OutboxMessage
    case = store.report(subject="Pat Person groped me at the sprint")
    store.command(ALICE, "!reply", "Dear Robin, we are on it.", case=case)
    [failed] = [m for m in store.mail_to(REPORTER) if m.kind == "reply"]
    mark = store.outbox_mark()
    with store.sessions() as session, session.begin():
        row = session.get(OutboxMessage, failed.id)
        row.status, row.last_code = "failed", 550
        on_delivery_failure(store.inbound.ctx, session, row, store.now)
    alerts = [m for m in _to(store, BOB, mark) if m.kind == "alert"]
    assert alerts
    shown = [w for w in ("groped", "Pat Person", "Robin") for m in alerts if w in m.subject + m.text]
    assert not shown, f"the alert shows {shown}: {alerts[0].subject!r}"
