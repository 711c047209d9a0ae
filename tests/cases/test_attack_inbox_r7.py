"""Seventh attack round on issue 16 (cases tier, no servers): the one rule for who receives a
case's mail and who may act on it (`routing.Exclusions.steering_works`, `cases.steering_since`)."""

from __future__ import annotations

from datetime import timedelta

from tests.case_store import Store
from tests.case_store import escalate as _escalate
from tests.case_store import mail_to as _to
from tests.mailers import ALICE, BOB, CAROL, REPORTER, SAM, reply

SECOND = "second@example.net"


def _escalated_to_sam(store: Store):
    case = store.report()
    store.now += timedelta(hours=60)
    sent = _escalate(store)
    to_sam = [m for m in sent if m.recipient == SAM and m.case_id == case.id]
    assert to_sam, [(m.recipient, m.kind) for m in sent]
    assert store.case(case.ref).steering_since is not None
    return case, to_sam[-1]


def _answered_and_closed(store: Store):
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!reply", "Dear Robin, we looked into it and decided to take no action.", case=case)
    store.command(ALICE, "!decide no-action", case=case)
    store.command(ALICE, "!close", case=case)
    assert store.case(case.ref).status == "closed"
    return case


def _second_report(store: Store):
    b = store.report(sender=SECOND, name="Sam Second", subject="Pat touched me at the party",
                     body="Pat Person touched me at the party. Please keep my name out of it.")
    store.command(ALICE, "!ack", case=b)
    store.command(ALICE, "", "Internal: Sam Second asked us to keep this from the steering committee.", case=b)
    return b


def test_a_case_merged_into_an_escalated_one_does_not_show_its_reporter_to_the_steering_member(store: Store):
    """BROKE. Sam Steering gets Sam Second's address, name and the note "Sam Second asked us to
    keep this from the steering committee" (announcement / `!history` on the merged case) after
    Alice merges the committee-only case into one escalated to Sam. cases/merge.py `_target`
    refuses only on `set(recused(source)) != set(recused(target))`, ignoring
    `Exclusions.steering_works` (target's `steering_since`), so the merged case's audience
    (routing.committee) now includes the steering members. Sam Second's report B is handled by the committee (Sam Steering does not work on it). Robin's
    report A was escalated to Sam. Alice merges B into A: Sam must not thereby learn B's reporter
    or its notes (the merge rule: refused when it would show someone excluded anything)."""
    a, escalation = _escalated_to_sam(store)
    b = _second_report(store)
    mark = store.outbox_mark()
    store.command(ALICE, f"!merge {a.ref}", case=b)
    store.take_in(reply(escalation, SAM, "!history"))
    got = "\n".join(m.subject + "\n" + m.text for m in _to(store, SAM, mark))
    shown = [w for w in (SECOND, "Sam Second", "Pat touched", "keep this from the steering") if w in got]
    assert not shown, f"Sam learns of case {b.ref} through the merge: {shown}"


def test_an_escalated_case_merged_into_a_committee_case_stays_with_the_steering_member(store: Store):
    """BROKE. Sam Steering, to whom Robin's unacknowledged report was escalated, answers his
    escalation mail with `!reply Dear Robin, ...` after Alice merged it into a committee case:
    nothing reaches Robin, and Sam gets the fixed refusal "you receive its reports as a steering
    member but do not work on it" — about the case the system escalated to him. The merge rule
    (cases/merge.py) carries recusals but not `cases.steering_since`; `!merge` by any member
    silently takes an escalated case back from the steering members. Robin's report A, unacknowledged for 60 hours, was escalated to Sam Steering, who works on it.
    Alice merges it into Sam Second's case B (same incident): Sam, handling the overdue report,
    must not be cut off silently — either the merge is refused or B carries A's escalation."""
    a, escalation = _escalated_to_sam(store)
    b = _second_report(store)
    store.command(ALICE, f"!merge {b.ref}", case=a)
    merged = store.case(a.ref).merged_into_id is not None
    mark = store.outbox_mark()
    store.take_in(reply(escalation, SAM, "!reply", "Dear Robin, the steering committee has your report and will answer this week."))
    to_robin = [m for m in _to(store, REPORTER, mark) if "steering committee has your report" in m.text]
    sam_got = [m.text[:300] for m in _to(store, SAM, mark)]
    assert not merged or (store.case(b.ref).steering_since is not None and to_robin), \
        f"A merged into B, which the steering member no longer works on: Robin got nothing, Sam got {sam_got}"


def test_reopening_a_long_closed_case_does_not_escalate_it_to_the_steering_members(store: Store):
    """HELD. A case acknowledged, answered and closed; 30 days later Alice `!reopen`s it. The next
    escalation pass must not find it twice overdue and hand it (steering_since) to Sam."""
    case = _answered_and_closed(store)
    store.now += timedelta(days=30)
    store.command(ALICE, "!reopen", case=case)
    assert store.case(case.ref).status != "closed"
    store.now += timedelta(hours=1)
    sent = _escalate(store)
    assert not [m for m in sent if m.recipient == SAM], [(m.recipient, m.kind) for m in sent]
    assert store.case(case.ref).steering_since is None


def test_a_case_excluding_the_steering_member_is_never_handed_to_him(store: Store):
    """HELD. Robin's report about "the steering chair"; Alice excludes Sam (`!concerns Sam`). Nobody
    acknowledges for 60 hours: both escalation levels pass; the case must never be handed to Sam
    (steering_since, mail, weekly overview, `!list`)."""
    from conduct_inbox.cases.chores import _overview_drafts
    case = store.report(body="The steering chair kept touching me.")
    store.command(ALICE, "!concerns Sam", case=case)
    mark = store.outbox_mark()
    store.now += timedelta(hours=30)
    _escalate(store)
    store.now += timedelta(hours=30)
    _escalate(store)
    assert not _to(store, SAM, mark), [(m.recipient, m.kind) for m in _to(store, SAM, mark)]
    with store.sessions() as session:
        drafts = _overview_drafts(session, store.inbound.ctx, store.now)
    assert not [d for d in drafts if d.recipient == SAM and case.ref in d.body]
    store.personal(SAM, "!list")
    assert case.ref not in store.latest(SAM).text


STELLA = "stella@example.org"
_WITH_STELLA = ('[[steering.members]]\nname = "Sam Steering"\nemail = "sam@example.org"\n',
                '[[steering.members]]\nname = "Sam Steering"\nemail = "sam@example.org"\n'
                '[[steering.members]]\nname = "Stella Stone"\nemail = "stella@example.org"\n')


def test_a_steering_member_who_joins_after_the_escalation_and_is_named_in_the_report_gets_nothing(
        store: Store, stores):
    """BROKE. Stella Stone, the person Robin reported, joins the steering committee after the case
    was escalated to the steering members: Robin's next mail ("She messaged me again last night.
    I am scared.") is copied to her with Robin's address, as is every escalation and note — the
    reported person reads the reporter's case. `cases.steering_since` (cases/escalate.py `_send`)
    hands the case to every steering member on the roster at routing time (cases/context.py
    `recused` -> routing.committee with `steering_works`), while the name scan that would have
    excluded her ran only at intake against the roster of that day. Robin reports Stella Stone (not on any roster then); nobody acknowledges, it is escalated
    to Sam Steering (steering_since). Stella then joins the steering committee (config change,
    restart). Robin writes again: Stella, named in the report, must get none of the case."""
    from conduct_inbox.cases.rescan import exclude_newcomers
    from tests.harness import report

    def start() -> None:  # what the daemon does at start (and after a reload) before routing mail
        with store.sessions() as session, session.begin():
            exclude_newcomers(store.inbound.ctx, session, store.now)

    start()
    case = store.report(body="Stella Stone grabbed me at the sprint dinner and would not let go.")
    store.now += timedelta(hours=60)
    _escalate(store)
    assert store.case(case.ref).steering_since is not None
    store.inbound = stores.inbound(_WITH_STELLA)
    start()
    mark = store.outbox_mark()
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="She messaged me again last night. I am scared."))
    store.now += timedelta(days=8)
    _escalate(store)
    got = [(m.kind, m.text[:200]) for m in _to(store, STELLA, mark)]
    leaked = [m.kind for m in _to(store, STELLA, mark) if "scared" in m.text or REPORTER in m.text]
    assert not got, (leaked, got)


def test_an_outsider_naming_the_chair_does_not_hand_the_case_to_the_steering_members_for_good(store: Store):
    """BROKE. After the chair is included again (quorum met, chair back), Sam Steering keeps
    receiving Robin's follow-ups ("My manager now knows too") and may act on the case for good:
    an outsider's one mail naming the chair plus one missed acknowledgement made the steering
    members' stand-in permanent. cases/escalate.py `_send` sets `cases.steering_since` on any
    level >= 1 escalation whose audience holds a steering member — including level 1 while they
    only stand in for a recused chair — whereas README says they work on a case once it was
    escalated to them (a deadline passed twice, or once when no chair is configured). Someone who knows Robin's reference writes "Alice Example was there too": Alice (chair) is
    excluded, the steering members stand in for her. Nobody acknowledges for 30 hours: one level-1
    escalation (chair configured: not "escalated to them" per README). Bob `!include Alice`,
    Carol `!confirm`s: the chair is back, quorum met. Robin's next mail must not go to Sam."""
    from tests.harness import report
    case = store.report()
    store.take_in(report(sender="nosy@example.net", name="Nosy Parker",
                         subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="Alice Example was there too."))
    assert ALICE in {r.member_email for r in store.case(case.ref).recusals if r.active}
    store.now += timedelta(hours=30)
    _escalate(store)
    store.command(BOB, "!include Alice", case=case)
    store.command(CAROL, "!confirm", case=case)
    assert ALICE not in {r.member_email for r in store.case(case.ref).recusals if r.active}
    mark = store.outbox_mark()
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="My manager now knows too; please hurry."))
    assert _to(store, ALICE, mark), "setup: Alice is back on the case"
    got = [(m.kind, m.text[:120]) for m in _to(store, SAM, mark)]
    assert not got, (store.case(case.ref).steering_since, got)


def test_after_a_reconsideration_the_reopened_case_is_the_committees_again(store: Store):
    """BROKE. After Sam's review ends (closed again) and Alice reopens the case, Sam still receives
    Robin's follow-ups ("He did it again at the meetup") and may act on it indefinitely, because
    the response reminder escalated at level 1 during the review (the steering members were in
    the committee audience only as reviewers) and cases/escalate.py `_send` then set
    `cases.steering_since`, which nothing clears. Sam Steering reconsiders Robin's closed case; the
    week passes without a response (a level-1 escalation during the review); Sam answers and
    closes it again. A day later Alice `!reopen`s it. Robin's next mail must go to the committee, not to Sam: the steering members
    work on it only while they reconsider it (README)."""
    from tests.harness import report
    case = _answered_and_closed(store)
    store.now += timedelta(days=3)
    store.personal(SAM, f"!reconsider {case.ref}")
    assert store.case(case.ref).status == "reconsideration"
    store.now += timedelta(days=7, hours=2)
    _escalate(store)
    def to_sam():
        return [m for m in store.mail_to(SAM) if m.case_id == case.id][-1]
    store.take_in(reply(to_sam(), SAM, "!reply", "Dear Robin, the steering committee upholds the decision."))
    store.take_in(reply(to_sam(), SAM, "!close"))
    assert store.case(case.ref).status == "closed", store.case(case.ref).status
    store.now += timedelta(days=1)
    store.command(ALICE, "!reopen", case=case)
    assert store.case(case.ref).status != "closed"
    mark = store.outbox_mark()
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Message from the Test Conduct Committee",
                         body="He did it again at the meetup."))
    got = [(m.kind, m.text[:120]) for m in _to(store, SAM, mark)]
    assert not got, (store.case(case.ref).steering_since, got)


def test_an_outsider_naming_the_steering_member_of_an_escalated_case_can_be_undone_with_include(store: Store):
    """HELD. Robin's report was escalated to Sam Steering (nobody acknowledged for 60 hours). Someone
    who knows the reference writes "Sam Steering was there too, he saw nothing": Sam is excluded
    automatically. README: `!include` with a second member's `!confirm` undoes an automatic
    recusal — Alice `!include Sam`, Bob `!confirm`: Sam works on the case again."""
    from tests.harness import report
    case, _escalation = _escalated_to_sam(store)
    store.take_in(report(sender="nosy@example.net", name="Nosy Parker",
                         subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="Sam Steering was there too, he saw nothing."))
    assert SAM in {r.member_email for r in store.case(case.ref).recusals if r.active}
    store.command(ALICE, "!include Sam", case=case)
    store.command(BOB, "!confirm", case=case)
    assert SAM not in {r.member_email for r in store.case(case.ref).recusals if r.active}, \
        [e.data for e in store.events("command_rejected")][-2:]


def test_a_steering_member_sent_only_the_case_report_gets_no_overview_or_list_of_it(store: Store):
    """HELD. Alice sends Robin's case to the steering members (`!steering`, a report without
    identities); the case is not escalated. Sam's weekly overview and `!list` do not list it, and
    his escalation-free `!history` on it is refused with the fixed text."""
    from conduct_inbox.cases.chores import _overview_drafts
    case = store.report(subject="Robin Reporter: Pat groped me")
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!steering", case=case)
    assert store.case(case.ref).steering_since is None
    with store.sessions() as session:
        drafts = _overview_drafts(session, store.inbound.ctx, store.now)
    assert not [d for d in drafts if d.recipient == SAM and (case.ref in d.body or "groped" in d.body)]
    store.personal(SAM, "!list")
    assert case.ref not in store.latest(SAM).text
    mark = store.outbox_mark()
    sam_report = [m for m in store.mail_to(SAM) if m.case_id == case.id][-1]
    store.take_in(reply(sam_report, SAM, "!history"))
    got = "\n".join(m.subject + m.text for m in _to(store, SAM, mark))
    assert "Robin" not in got and "groped" not in got and REPORTER not in got


def test_a_committee_case_cannot_be_merged_into_one_under_reconsideration(store: Store):
    """HELD. Sam Steering reconsiders Robin's closed case A. Alice tries to merge Sam Second's
    committee case B into A: refused (during a reconsideration only steering members merge into
    it), so Sam never sees B's reporter or notes."""
    a = _answered_and_closed(store)
    store.now += timedelta(days=1)
    store.personal(SAM, f"!reconsider {a.ref}")
    assert store.case(a.ref).status == "reconsideration"
    b = _second_report(store)
    mark = store.outbox_mark()
    store.command(ALICE, f"!merge {a.ref}", case=b)
    assert store.case(b.ref).merged_into_id is None
    got = "\n".join(m.subject + "\n" + m.text for m in _to(store, SAM, mark))
    assert SECOND not in got and "Sam Second" not in got and "keep this from the steering" not in got


def test_mail_naming_the_steering_member_of_an_escalated_case_does_not_reach_him(store: Store):
    """HELD. Robin's report was escalated to Sam Steering. Robin writes again: "Sam Steering is
    the one who covered for him." Sam is excluded by the scan before the copy goes out: he gets
    nothing of that mail, nor of the later escalations."""
    from tests.harness import report
    case, _escalation = _escalated_to_sam(store)
    mark = store.outbox_mark()
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="Sam Steering is the one who covered for him."))
    assert SAM in {r.member_email for r in store.case(case.ref).recusals if r.active}
    store.now += timedelta(days=8)
    _escalate(store)
    got = [(m.kind, m.text[:120]) for m in _to(store, SAM, mark)]
    assert not got, got


def test_a_person_new_on_the_roster_is_kept_only_from_the_open_cases_that_name_them(store: Store, stores):
    """(The fix above, directly.) The first start records the roster and excludes nobody; a
    later start with Stella added excludes her from the open case naming her, not from the other;
    a third start changes nothing."""
    from conduct_inbox.cases.rescan import exclude_newcomers

    def start() -> int:
        with store.sessions() as session, session.begin():
            return exclude_newcomers(store.inbound.ctx, session, store.now)

    naming = store.report(body="Stella Stone grabbed me at the sprint dinner.")
    other = store.report(sender="olga@example.net", name="Olga Other", subject="Noise", body="Too loud.")
    assert start() == 0
    store.inbound = stores.inbound(_WITH_STELLA)
    assert start() == 1
    assert STELLA in store.case(naming.ref).recused_members() and STELLA not in store.case(other.ref).recused_members()
    assert start() == 0
