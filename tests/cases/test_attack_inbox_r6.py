"""Sixth attack round on issue 16 (cases tier, no servers): what a steering member who works one
case (escalated to the steering members) can reach of other cases, and other round-5 fixes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.case_store import Store
from tests.case_store import escalate as _escalate
from tests.case_store import mail_to as _to
from tests.mailers import ALICE, BOB, CAROL, REPORTER, SAM, reply

SECOND = "second@example.net"


def _escalated_to_sam(store: Store):
    """Robin's report nobody acknowledged for 60 hours: escalated to the committee, then to the
    steering members, who from then on work on it. Returns (case, Sam's escalation mail)."""
    case = store.report()
    store.now += timedelta(hours=60)
    sent = _escalate(store)
    to_sam = [m for m in sent if m.recipient == SAM and m.case_id == case.id]
    assert to_sam, [(m.recipient, m.kind) for m in sent]
    return case, to_sam[-1]


# ----- a steering member working one case reaching another --------------------------------------


def test_a_steering_member_working_one_case_cannot_merge_it_into_a_case_they_do_not_work(store: Store):
    """BROKE. Robin's report (case A) was escalated to the steering members: Sam Steering works on
    it. Sam Second's unrelated report (case B) is handled normally by the committee (quorum met,
    acknowledged): Sam Steering does not work on B and would get the one fixed refusal for anything
    he sent about it. He answers his escalation of A with `!merge B`: the merge is applied (A is
    closed into B; B's committee is told "Sam Steering merged ..."), his confirmation comes with
    B's title and standing block, and because the escalation record moves with A, B now counts as
    escalated: Sam works on B and `!history` on A's old token shows him B's whole timeline (Sam
    Second's report, address, notes). Any steering member handed one case can pull every other
    case with the same exclusions into view. cases/merge.py `_target` admits a target the sender
    `routing.may_see` (every non-recused steering member), not one they `works_on`."""
    a, escalation = _escalated_to_sam(store)
    b = store.report(sender=SECOND, name="Sam Second", subject="Pat touched me at the party",
                     body="Pat Person touched me at the party. Please keep my name out of it.")
    store.command(ALICE, "!ack", case=b)
    store.command(ALICE, "", "Internal: Sam Second asked us to keep this from the steering committee.", case=b)
    mark = store.outbox_mark()
    store.take_in(reply(escalation, SAM, f"!merge {b.ref}"))
    store.take_in(reply(escalation, SAM, "!history"))
    got = "\n".join(m.subject + "\n" + m.text for m in _to(store, SAM, mark))
    shown = [w for w in (SECOND, "Sam Second", "Pat touched", "keep this from the steering") if w in got]
    assert not shown, f"Sam learns of case {b.ref}: {shown}"
    assert store.case(a.ref).merged_into_id is None, "Sam's !merge was applied to a case he does not work on"


# ----- recusals outliving a purge ----------------------------------------------------------------


def _purged_case_concerning_bob(store: Store):
    """Robin's report about "the sprint's organiser" (no name): Alice excludes Bob by hand
    (`!concerns Bob`, announced), closes it; two years later the purge removes its contents."""
    from conduct_inbox.shell.retention import purge_all
    case = store.report(body="The sprint's organiser kept touching me.")
    store.command(ALICE, "!concerns Bob", case=case)
    assert BOB in {r.member_email for r in store.case(case.ref).recusals if r.active}
    store.command(ALICE, "!close silent Robin withdrew the report", case=case)
    store.now += timedelta(days=800)
    purge_all(store.sessions, None, store.now, 730)
    return case


def test_a_report_under_a_purged_reference_forwarded_with_new_is_kept_from_the_member_it_concerned(store: Store):
    """BROKE. Robin's case concerned Bob (excluded by `!concerns Bob`) and was purged after two
    years; README: "mail written later under a purged case's reference is a new report, and it is
    kept from the same members". Robin writes again under his old reference "He did it again" —
    but to Alice directly (the policy invites reports to any one member), and Alice forwards it
    with `!new reporter@example.net` on her personal address, as README says. The new case does
    not exclude Bob: he gets the copy of the report (Robin's name, address and text) with a reply
    token. cases/reports.py `open_forwarded_case` never calls `recusals.carry_over` (only
    `open_reported_case` does, from the subject of the mail to conduct@), and does not look at
    the forwarded message's own case tag."""
    from tests.harness import report
    old = _purged_case_concerning_bob(store)
    direct = report(subject=f"Re: [conduct #{old.ref}] Your report has been received", body="He did it again last night.")
    mark = store.outbox_mark()
    store.personal(ALICE, "Fwd: a report sent to me !new reporter@example.net", "Robin wrote to me directly.", attach=direct)
    new = store.case()
    assert new.ref != old.ref
    assert not _to(store, BOB, mark), [(m.kind, m.subject) for m in _to(store, BOB, mark)]


# ----- members who are parties -------------------------------------------------------------------


def test_a_member_recorded_as_reported_under_a_private_address_and_full_name_is_excluded(store: Store):
    """BROKE. Robin's report is about "one of the sprint organisers"; Robin later tells Alice it was Bob,
    who used his private address at the sprint. Alice records him as README says, `!party reported
    bob.builder@gmail.com Bob Builder` — his full name as on the roster. README: "A committee or
    steering member who is a party of a case is excluded from it: ... who is recorded with
    `!party` in any role." Bob must be excluded and get nothing more about the case (the
    announcement of his own recording included). He is not excluded: he gets the announcement
    "reported party recorded" naming himself, then Carol's note "he is scared of Bob", and keeps a
    working reply token (he could `!include`, `!decide no-action`, `!close`). cases/handlers.py
    `party` recuses only `roster.person(c.address)` and never matches `c.name` against the roster
    (the full-name rule README applies to reporters' From names is not applied here)."""
    case = store.report(body="One of the sprint organisers cornered me.")
    store.command(ALICE, "!ack", case=case)
    mark = store.outbox_mark()
    store.command(ALICE, "!party reported bob.builder@gmail.com Bob Builder", case=case)
    store.command(CAROL, "", "Carol: I spoke to Robin, he is scared of Bob.", case=case)
    assert BOB in {r.member_email for r in store.case(case.ref).recusals if r.active}
    assert not _to(store, BOB, mark), [(m.kind, m.text[:300]) for m in _to(store, BOB, mark)]


# ----- what a steering member not working a case learns from its reference ---------------------


def _merged_with_a_steering_report(store: Store):
    """Sam Second's report (B) is the same incident as Robin's (A); the committee sends the
    steering members B's case report (`!steering`: no identities) and then merges B into A, which
    stays open and handled by the committee (quorum met): Sam Steering works on neither."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man did it to me.")
    store.command(ALICE, "!ack", case=b)
    store.command(ALICE, "!steering", case=b)
    store.command(BOB, f"!merge {a.ref}", case=b)
    assert store.case(b.ref).merged_into_id == a.id
    return a, b


def test_reconsider_of_a_merged_reference_does_not_tell_a_steering_member_where_it_went(store: Store):
    """BROKE. B was merged into A (open, worked by the committee). Sam Steering, who knows only B's
    reference (from its case report), writes `!reconsider B` on his personal address. The answer
    is "!reconsider: case A is investigating, not closed": he learns that B was merged, into which
    case (the reference of another reporter's case he never had mail about) and its state — for
    any reference, open or merged, of any case not kept from him. README: the steering member's
    answer "carries nothing of the case", and a merge "stays internal to the committee".
    cases/steering.py `reconsider` resolves the merge before deciding and names `case.ref` and
    `case.status` in its refusal."""
    a, b = _merged_with_a_steering_report(store)
    mark = store.outbox_mark()
    store.personal(SAM, f"!reconsider {b.ref}")
    got = "\n".join(m.subject + "\n" + m.text for m in _to(store, SAM, mark))
    assert got, "no answer"
    assert a.ref not in got, got[:800]


def test_the_fixed_refusal_to_a_steering_member_does_not_name_the_case_a_report_was_merged_into(store: Store):
    """BROKE. Same merge. Sam Steering answers B's case report (his reply token for B) with
    `!history`. He gets the fixed refusal — "case A: you receive its reports as a steering member
    but do not work on it" — which names A, the case B was merged into: a reference he never had
    mail about, telling him another report of the same incident exists. cases/desk.py `handle`
    words the refusal with `case.ref` of the resolved (merge target) case, not the reference he
    wrote."""
    a, b = _merged_with_a_steering_report(store)
    report_mail = [m for m in store.mail_to(SAM) if m.kind == "steering_report"][-1]
    assert a.ref not in report_mail.subject + report_mail.text
    mark = store.outbox_mark()
    store.take_in(reply(report_mail, SAM, "!history"))
    got = "\n".join(m.subject + "\n" + m.text for m in _to(store, SAM, mark))
    assert got, "no answer"
    assert a.ref not in got, got[:800]


# ----- danger written on a running case -----------------------------------------------------------


def test_a_reporter_writing_of_danger_through_a_web_form_reaches_the_committee_as_urgent(store: Store):
    """BROKE. Robin reported through the project's web form, which fronts conduct@ and marks its
    mail `Auto-Submitted: auto-generated` (README: "a web form or a group may send real reports
    with them"; the report became an `[auto]` case the committee acknowledged). Two days later
    Robin uses the form again, under his case tag: "He found my home address and says he will come
    tonight. I am in physical danger." The message joins the case as an "automatic reply" with
    no copy to anyone: the case is not urgent, nobody is told, no law-enforcement task is opened.
    README: "anyone writing of danger on a running case makes it urgent ... the committee is told
    at once with URGENT in the subject" and "Automatic-mail markers stop only the automatic
    answer, never the record". cases/inbound.py `_auto_followup` files the message without
    `_urgency` and without forwarding it (the own text of an out-of-office answer carries no
    urgent phrase, so checking it would cost nothing)."""
    from tests.harness import report
    form = {"Auto-Submitted": "auto-generated", "X-Mailer": "ProjectWebForm 2.1"}
    store.take_in(report(headers=form, subject="Web form report: harassment at the sprint"))
    case = store.case()
    assert "auto" in (case.flags or "") or case.auto, "precondition: an [auto] case"
    store.command(ALICE, "!ack", case=case)
    store.now += timedelta(days=2)
    mark = store.outbox_mark()
    store.take_in(report(headers=form, subject=f"Web form report: [conduct #{case.ref}] follow-up",
                         body="He found my home address and says he will come tonight. I am in physical danger."))
    assert store.case(case.ref).urgent, "the case did not become urgent"
    assert _to(store, ALICE, mark) and _to(store, BOB, mark), [(m.recipient, m.kind) for m in store.mail_after(mark)]


# ----- a steering member who works a case ------------------------------------------------------


def test_a_steering_member_the_case_was_escalated_to_gets_the_reporters_next_mail(store: Store):
    """BROKE. Nobody acknowledged Robin's report for 60 hours: it was escalated to the steering
    members, and README says "The second level (steering) hands the case to the steering members:
    from then on they work on it". Robin then writes again ("It happened again this morning").
    The follow-up copy goes to Alice, Bob and Carol — the committee that let the deadline pass
    twice — and not to Sam Steering, who now has the case; nor do the committee's later
    announcements and notes. He works on a case he hears nothing of unless he asks `!history`.
    cases/mailer.py routes follow-ups, notes and announcements through `routing.committee`,
    which adds steering members only for quorum or a recused chair, never for `works_on`'s
    escalated case."""
    case, _ = _escalated_to_sam(store)
    mark = store.outbox_mark()
    from tests.harness import report
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="It happened again this morning."))
    got = [m for m in _to(store, SAM, mark) if m.case_id == case.id]
    assert got and "happened again" in got[-1].text, [(m.recipient, m.kind) for m in store.mail_after(mark)]


def test_a_steering_member_the_case_was_escalated_to_can_act_and_read_it(store: Store):
    """HELD. After the second-level escalation Sam Steering answers his escalation mail with
    `!ack !history`: applied, and the history shows Robin's report."""
    case, escalation = _escalated_to_sam(store)
    mark = store.outbox_mark()
    store.take_in(reply(escalation, SAM, "!ack !history"))
    assert store.case(case.ref).human_ack_at is not None
    got = "\n".join(m.text for m in _to(store, SAM, mark))
    assert "Robin Reporter" in got or REPORTER in got, got[:600]


@pytest.mark.xfail(strict=True, reason="known limit (README): nothing on a case flagged as spam is urgent; a danger message there waits for the daily digest")
def test_danger_written_on_a_case_wrongly_flagged_as_spam_makes_it_urgent(store: Store):
    """BROKE. Robin's first mail was flagged by the upstream filter (`X-Spam-Flag: YES`): a spam
    case, no acknowledgement. Robin, hearing nothing, writes again under the tag — this mail is not
    flagged — "He is outside my door, I am in physical danger." The members get a plain follow-up
    copy: the case is not urgent, no URGENT subject, no law-enforcement task, no webhook. README:
    a later message on a running case whose sender writes of danger makes it urgent, "never a
    message flagged as spam" — this message is not flagged; the exclusion is read as "never on a
    case flagged as spam". cases/reports.py `is_urgent` returns False whenever `case.spam`."""
    from tests.harness import report
    store.take_in(report(headers={"X-Spam-Flag": "YES"}, subject="help"))
    case = store.case()
    assert case.spam
    mark = store.outbox_mark()
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] help",
                         body="Did you get my mail? He is outside my door, I am in physical danger."))
    assert store.case(case.ref).urgent, "not urgent"
    assert any("URGENT" in m.subject for m in _to(store, ALICE, mark)), [m.subject for m in _to(store, ALICE, mark)]


# ----- a member who reports from another address ---------------------------------------------------


def test_a_member_reporting_from_a_work_address_shown_last_name_first_is_excluded(store: Store):
    """BROKE. Bob Builder reports harassment from his employer's Outlook account, whose directory
    shows him as "Builder, Bob" (Exchange's usual "Last, First" display name): From: "Builder, Bob"
    <bbuilder@corp.example>. README: a member "who reports (from their roster address, or from
    another address under their full name ...)" is excluded and hears as a reporter does. Bob is
    not excluded: he receives the committee's copy of his own report with a reply token, and from
    then on its internal notes about him as the reporter. core/scanning.py / core/recusal.py match
    the full name only in roster order."""
    from tests.harness import report
    mark = store.outbox_mark()
    store.take_in(report(sender="bbuilder@corp.example", name='"Builder, Bob"',  # quoted, as Outlook writes it
                         body="Someone at the sprint kept following me to my hotel."))
    case = store.case()
    assert BOB in {r.member_email for r in store.case(case.ref).recusals if r.active}
    assert not [m for m in _to(store, BOB, mark) if m.kind != "ack"], [m.kind for m in _to(store, BOB, mark)]


# ----- a steering member forwarding a report -----------------------------------------------------------


def test_a_steering_member_who_forwards_a_report_with_new_is_told_it_was_filed(store: Store):
    """BROKE. A victim wrote to Sam Steering directly (the policy lets reporters pick whom they
    trust); Sam forwards it on his personal address with `!new victim@example.net`, as README
    says members and steering members can. The case is opened, the victim acknowledged, the
    committee gets copies — and Sam gets nothing at all: no confirmation, no reference, no
    refusal. DESIGN: commands "do exactly what they say or are refused with a clear answer"; a
    forwarder who hears nothing forwards again (a second case, a second acknowledgement to the
    victim) or tells the victim nothing was received. A committee member is answered by the copy
    of the report; a steering member, who since round 5 does not work on the case, by nothing.
    cases/reports.py `open_forwarded_case` sends no confirmation to the forwarding member."""
    from tests.harness import report
    mark = store.outbox_mark()
    store.personal(SAM, "Fwd: report !new victim@example.net", "Got this directly.",
                   attach=report(sender="victim@example.net", body="Pat hit me at the meetup."))
    case = store.case()
    got = _to(store, SAM, mark)
    assert got and any(case.ref in m.subject + m.text for m in got), [(m.recipient, m.kind) for m in store.mail_after(mark)]


# ----- per-reporter response clocks ------------------------------------------------------------------


def test_answering_one_reporter_twice_leaves_the_other_reporters_week_standing(store: Store):
    """HELD. Robin's and, an hour later, Sam Second's reports are merged. Alice answers Robin on
    day 3 and again on day 6 (`!reply reporter@example.net`): Sam Second was never answered, so
    the response is overdue one week after his report and the escalation fires then."""
    a = store.report()
    store.now += timedelta(hours=1)
    b = store.report(sender=SECOND, name="Sam Second", body="Same man.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!ack", case=a)
    store.now += timedelta(days=3)
    store.command(ALICE, f"!reply {REPORTER}", "Dear Robin, we are looking into it.", case=a)
    store.now += timedelta(days=3)
    store.command(ALICE, f"!reply {REPORTER}", "Dear Robin, still looking.", case=a)
    store.now += timedelta(days=1, hours=3)
    sent = _escalate(store)
    assert [m for m in sent if m.kind == "escalation" and m.recipient == ALICE], [(m.recipient, m.kind) for m in sent]


def test_a_member_recorded_as_reported_can_answer_the_committees_question(store: Store):
    """HELD. Bob is recorded as the reported party (`!party reported bob@example.org`) and is
    asked for his account with `!send reported`. He answers that mail from his roster address:
    the answer joins the case as a party's follow-up and reaches Alice and Carol, not him."""
    case = store.report(body="One of the organisers cornered me.")
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!party reported bob@example.org Bob Builder", case=case)
    store.command(ALICE, "!send reported", "Dear Bob, a report was made about your conduct. Please tell us your account.",
                  case=case)
    party_mail = store.latest(BOB)
    assert party_mail.audience == "party"
    mark = store.outbox_mark()
    store.take_in(reply(party_mail, BOB, "", "I never cornered anyone. I was at the hotel all evening."))
    kinds = {(m.recipient, m.kind) for m in store.mail_after(mark)}
    assert (ALICE, "followup") in kinds and (CAROL, "followup") in kinds and not _to(store, BOB, mark), kinds


def test_notes_from_a_members_exclusion_stay_hidden_after_a_merge(store: Store):
    """HELD. Robin's report names Bob Builder (Bob excluded); Alice notes "Bob has done this
    before"; Bob is included again (`!include Bob`, Carol `!confirm`). The case is then merged into
    Sam Second's (neither excludes anyone now, so the merge is allowed): Bob's `!history` of the
    merged case does not show the note written while he was excluded."""
    a = store.report(body="Bob Builder said something odd near me, not sure it matters.")
    store.command(ALICE, "", "N1: Robin told me privately Bob has done this before.", case=a)
    store.command(ALICE, "!include Bob", case=a)
    store.command(CAROL, "!confirm", case=a)
    assert not [r for r in store.case(a.ref).recusals if r.active]
    b = store.report(sender=SECOND, name="Sam Second", body="Something happened at the sprint.")
    store.command(ALICE, f"!merge {b.ref}", case=a)
    assert store.case(a.ref).merged_into_id == b.id
    mark = store.outbox_mark()
    store.command(BOB, "!history", case=b)
    got = "\n".join(m.text for m in _to(store, BOB, mark))
    assert "history" in got and "done this before" not in got


# ----- a committee without a chair -----------------------------------------------------------------


@pytest.mark.config(("chair = true", "chair = false"))
def test_without_a_chair_the_steering_member_asked_to_ack_can_ack(store: Store):
    """BROKE. A committee with no member marked `chair` (the roster allows it; DESIGN: "The
    chair" means the chair unless recused, else the steering members). Robin's report, subject
    "Robin Reporter: Pat Person groped me", is not acknowledged within 24 h: the first-level
    escalation goes to the committee "and the chair", i.e. also to Sam Steering — with the
    reporter's subject, the standing block, a reply token and "Please acknowledge it by replying
    to this message with !ack" ("Steering committee members receive this too: the chair ...
    cannot act on this case"). Sam does so: he gets the fixed refusal "you receive its reports as
    a steering member but do not work on it". Either he should not have been sent the case's
    subject (he does not work on it), or he works on it: both cannot hold. core/routing.py
    `escalation` adds `chair()`'s steering members at level 1; `works_on` counts only
    `committee()` (which sees no recused chair) and level-2 escalations."""
    case = store.report(subject="Robin Reporter: Pat Person groped me")
    store.now += timedelta(hours=25)
    sent = _escalate(store)
    to_sam = [m for m in sent if m.recipient == SAM and m.case_id == case.id]
    assert to_sam and "!ack" in to_sam[-1].text, [(m.recipient, m.kind) for m in sent]
    store.take_in(reply(to_sam[-1], SAM, "!ack"))
    assert store.case(case.ref).human_ack_at is not None, "Sam, asked to !ack, was refused"


# ----- danger written in the subject -----------------------------------------------------------------


def test_a_report_whose_subject_says_physical_danger_is_urgent(store: Store):
    """BROKE. Robin writes the subject "I am in physical danger - please help" and, in the body,
    "He followed me home from the meetup again tonight." The case is not urgent: the members get
    a plain copy, the acknowledgement promises 24 hours, the law-enforcement task is not opened,
    the urgent webhook is not called. The subject is the sender's own text (a reporter in a hurry
    writes it there; phones show it first). cases/reports.py `is_urgent` checks
    `msg.own_text or msg.text` and never `msg.subject`."""
    from tests.harness import report
    store.take_in(report(subject="I am in physical danger - please help",
                         body="He followed me home from the meetup again tonight."))
    assert store.case().urgent


def test_a_follow_up_whose_subject_says_police_makes_the_running_case_urgent(store: Store):
    """BROKE. On Robin's acknowledged case he answers the acknowledgement with the subject "Re:
    [conduct #REF] Your report has been received - he threatened me, I called the police" and
    the body "See subject." The case stays not urgent; the copy has no URGENT. README: a later
    message on a running case whose sender writes of danger makes it urgent. cases/inbound.py
    `_urgency` -> cases/reports.py `is_urgent` ignores the subject."""
    from tests.harness import report
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received - he threatened me, "
                                 "I called the police", body="See subject."))
    assert store.case(case.ref).urgent


# ----- the steering report when a steering member reports -------------------------------------------

TWO_STEERING = ('email = "sam@example.org"\n',
                'email = "sam@example.org"\n\n[[steering.members]]\nname = "Tess Steering"\nemail = "tess@example.org"\n')
TESS = "tess@example.org"


@pytest.mark.config(TWO_STEERING)
def test_the_steering_report_does_not_name_a_steering_member_who_reported(store: Store):
    """BROKE. Two steering members, Sam and Tess. Sam Steering reports being shoved at the sprint,
    from his roster address: he is the reporter, excluded from the case (round 5). The committee
    works it and sends the steering committee the case report (`!steering`), which "leaves out
    the reporter's and witnesses' identities" (the steering committee may publish it). Tess, who
    does not work on the case, reads its first line: "To: Tess Steering · Excluded: Sam Steering
    (the case concerns them)" — the reporter's identity, in the one mail built to withhold it.
    cases/steering.py `steering_report` renders `routing.steering(...).marker_line()`, which lists
    excluded steering members with their reason (a reporting member is recused as "concerns")."""
    case = store.report(sender=SAM, name="Sam Steering", body="Pat shoved me at the sprint.")
    assert SAM in {r.member_email for r in store.case(case.ref).recusals if r.active}
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!steering", case=case)
    reports = [m for m in store.mail_to(TESS) if m.kind == "steering_report"]
    assert reports
    assert "Sam Steering" not in reports[-1].text and SAM not in reports[-1].text, reports[-1].text[:300]


def test_a_report_under_a_merged_purged_reference_is_kept_from_a_member_excluded_after_the_merge(store: Store):
    """BROKE. Sam Second's report (B) is merged into Robin's (A). Later Robin tells the committee
    the man is Carol's partner: Alice sends `!concerns Carol` on A (the case B now is). A is
    closed and, two years on, purged with B. Sam Second writes again under B's reference, the one
    he knows ("He is back at the meetups"): a new report — and Carol, whom the case concerned,
    gets its copy with his name, address and text. README: mail written later under a purged
    case's reference "is kept from the same members". cases/recusals.py `carry_over` copies the
    recusals of the case whose reference was written (B, whose own recusal rows stopped at the
    merge), not those of the case B had become part of."""
    from conduct_inbox.shell.retention import purge_all
    from tests.harness import report
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man followed me too.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!concerns Carol", case=a)
    store.command(ALICE, "!close silent the man left the project", case=a)
    store.now += timedelta(days=800)
    purge_all(store.sessions, None, store.now, 730)
    mark = store.outbox_mark()
    store.take_in(report(sender=SECOND, name="Sam Second", subject=f"Re: [conduct #{b.ref}] Your report has been received",
                         body="He is back at the meetups."))
    assert _to(store, ALICE, mark), "the report reached nobody"
    assert not _to(store, CAROL, mark), [(m.kind, m.subject) for m in _to(store, CAROL, mark)]


@pytest.mark.xfail(strict=True, reason="known limit (README): an [auto] case runs no clock until !ack, urgent or not (the members are told at once)")
def test_an_auto_case_made_urgent_by_its_reporters_own_mail_is_escalated_when_nobody_acks(store: Store):
    """BROKE. Robin's report came through the web form (`Auto-Submitted`): an `[auto]` case, no
    clock until a member sends `!ack`. Two hours later Robin writes from his own mail client under
    the tag, a real person's mail with no automatic marker: "He is outside my house. I am in
    physical danger." The case becomes urgent and the members get one URGENT copy — and then
    nothing: no acknowledgement due, no reminder, no escalation to the chair or the steering
    members, ever, however long nobody answers. DESIGN: urgent cases' human acknowledgement is
    due within the hour and "Overdue -> all non-recused members and the chair; ... -> steering
    members"; only spam and closed cases have no clocks. cases/deadlines.py / core/sla.py keep an
    `auto` case clockless until `!ack` even once a human wrote of danger on it."""
    from tests.harness import report
    store.take_in(report(headers={"Auto-Submitted": "auto-generated"}, subject="Web form report"))
    case = store.case()
    store.now += timedelta(hours=2)
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Web form report",
                         body="He is outside my house. I am in physical danger."))
    assert store.case(case.ref).urgent
    store.now += timedelta(hours=3)
    sent = _escalate(store)
    assert [m for m in sent if m.kind == "escalation"], "an urgent case nobody acknowledged was never escalated"


def test_a_report_a_member_sent_from_a_private_address_and_forwarded_with_new_excludes_them(store: Store):
    """HELD. Bob Builder wrote his report to Alice from his private address (From: Bob Builder
    <bob.b@gmail.com>); Alice forwards it with `!new bob.b@gmail.com`. Bob is excluded (his name
    in the forwarded From) and gets no copy; only the acknowledgement reaches his private address."""
    from tests.harness import report
    mark = store.outbox_mark()
    store.personal(ALICE, "Fwd: !new bob.b@gmail.com", "Forwarding as asked.",
                   attach=report(sender="bob.b@gmail.com", name="Bob Builder",
                                 body="Someone at the meetup followed me to my hotel."))
    assert BOB in {r.member_email for r in store.case().recusals if r.active}
    assert not _to(store, BOB, mark)


# ----- reconsideration ------------------------------------------------------------------------------


def _answered_and_closed(store: Store):
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!reply", "Dear Robin, we looked into it and decided to take no action.", case=case)
    store.command(ALICE, "!decide no-action", case=case)
    store.command(ALICE, "!close", case=case)
    assert store.case(case.ref).status == "closed"
    return case


def test_a_member_can_recuse_themself_during_a_reconsideration(store: Store):
    """BROKE. Sam Steering reconsiders Robin's closed case. Bob learns that the reported man is
    his brother-in-law and answers the reconsideration mail with `!recuse` ("I have a conflict,
    please keep me out"). Refused: "!recuse: the case is under reconsideration by the steering
    committee, which alone acts on it until it is closed again" — and Bob keeps receiving the
    committee's mail on the case (notes, follow-ups from Robin) for as long as the review lasts.
    Withdrawing oneself changes nothing of the decision under review; README keeps the
    committee's notes and `!history` during a reconsideration but not the one command that
    protects the reporter from a conflicted member. cases/handlers.py `run` refuses every
    `changes_case` command from non-steering members during a reconsideration."""
    case = _answered_and_closed(store)
    store.now += timedelta(days=3)
    store.personal(SAM, f"!reconsider {case.ref}")
    assert store.case(case.ref).status == "reconsideration"
    store.command(BOB, "!recuse", "I have a conflict, please keep me out.", case=case)
    assert BOB in {r.member_email for r in store.case(case.ref).recusals if r.active}


def test_the_reporters_mail_during_a_reconsideration_reaches_the_steering_members(store: Store):
    """BROKE. Sam Steering reconsiders Robin's closed case; during the review only the steering
    members act on it. Robin answers under his reference with his motivation ("The decision
    ignored the second incident; here is what happened"). The copy goes to Alice, Bob and Carol —
    the members whose decision is under review and who may not act on it — and not to Sam, who
    alone decides. cases/inbound.py `_followup` -> reports.forward_to_committee routes through
    `routing.committee`, which includes steering members only for quorum or a recused chair,
    never for a reconsideration (`routing.works_on` does)."""
    from tests.harness import report
    case = _answered_and_closed(store)
    store.now += timedelta(days=3)
    store.personal(SAM, f"!reconsider {case.ref}")
    mark = store.outbox_mark()
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Message from the Test Conduct Committee",
                         body="The decision ignored the second incident; here is what happened."))
    got = [m for m in _to(store, SAM, mark) if "second incident" in m.text]
    assert got, [(m.recipient, m.kind) for m in store.mail_after(mark)]


def test_the_response_reminder_during_a_reconsideration_reaches_the_steering_members_who_alone_can_reply(store: Store):
    """BROKE. Sam Steering reconsiders Robin's closed case: Robin is owed a response within a week
    from then (README), and only the steering members may `!reply` (the committee is refused
    during a reconsideration). Five and a half days later the reminder goes to Alice, Bob and
    Carol — who cannot act on it — and not to Sam; at the week's end the "Overdue" escalation
    again goes only to them. The one person who can keep the promise is told only a day after
    it was broken (level 2). cases/escalate.py addresses reminders and level-1 escalations with
    `routing.escalation(level=1)`, i.e. the committee and the chair, regardless of who works on
    the case."""
    case = _answered_and_closed(store)
    store.now += timedelta(days=3)
    store.personal(SAM, f"!reconsider {case.ref}")
    store.now += timedelta(days=5, hours=12)
    sent = _escalate(store)
    assert sent, "no reminder at all"
    assert [m for m in sent if m.recipient == SAM], [(m.recipient, m.kind) for m in sent]


def test_an_html_only_follow_up_writing_of_danger_with_a_non_breaking_space_makes_the_case_urgent(store: Store):
    """HELD. Robin's acknowledged case; his phone's client sends an HTML-only follow-up,
    "He is back.<br>I am in physical&nbsp;danger.": the case becomes urgent."""
    from email.message import EmailMessage
    from email.utils import make_msgid
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    msg = EmailMessage()
    msg["From"], msg["To"] = f"Robin Reporter <{REPORTER}>", "conduct@example.org"
    msg["Subject"], msg["Message-ID"] = f"Re: [conduct #{case.ref}] Your report", make_msgid(domain="example.net")
    msg.set_content("<div>He is back.<br>I am in physical&nbsp;danger.</div>", subtype="html")
    store.take_in(msg.as_bytes())
    assert store.case(case.ref).urgent


@pytest.mark.config(("[security]\n", '[security]\ntrusted_authserv_id = "mx.example.org"\n'))
def test_a_dmarc_pass_lets_no_steering_member_act_on_a_case_they_only_got_a_report_of(store: Store):
    """HELD. Sam Steering got Robin's case report (`!steering`), not the case. He writes to plain
    conduct@ with an aligned DMARC pass, "[conduct #REF] !ack !urgent", and a note: nothing is
    applied, no note is filed, and his answer carries neither the reporter nor the case's subject."""
    from email.message import EmailMessage
    from email.utils import make_msgid
    case = store.report(subject="Robin Reporter: Pat groped me")
    store.command(ALICE, "!steering", case=case)
    msg = EmailMessage()
    msg["From"], msg["To"] = SAM, "conduct@example.org"
    msg["Subject"], msg["Message-ID"] = f"[conduct #{case.ref}] !ack !urgent", make_msgid(domain="example.org")
    msg.set_content("Steering here: please treat this as urgent.")
    raw = b"Authentication-Results: mx.example.org; dmarc=pass (p=reject) header.from=example.org\r\n" + msg.as_bytes()
    mark = store.outbox_mark()
    store.take_in(raw)
    after = store.case(case.ref)
    assert after.human_ack_at is None and not after.urgent
    assert not [m for m in store.mail_after(mark) if m.recipient != SAM]
    got = "\n".join(m.subject + m.text for m in _to(store, SAM, mark))
    assert "Robin" not in got and "groped" not in got and REPORTER not in got


@pytest.mark.xfail(strict=True, reason="departure (README): a member's mail with a case tag is committee mail, never a report in their name; about a purged case they are told there is no such case (a report goes without the tag, or with !new)")
def test_a_member_who_reported_writing_again_under_the_purged_reference_is_a_new_report(store: Store):
    """BROKE. Bob Builder, a committee member, reported Pat from his roster address two years ago
    (he was the reporter, excluded from his own case). The case was closed and purged. Bob answers
    his old acknowledgement, "Re: [conduct #REF] Your report has been received": "Pat did it again
    yesterday." Nothing is filed: no case, no acknowledgement, no copy to Alice or Carol; Bob gets
    "Nothing was changed. - there is no case REF you can act on" and the command list. README:
    mail written later under a purged case's reference "is a new report"; a member who reports
    "hears as a reporter does". cases/inbound.py `_case_for` drops a purged case for every sender
    and, for a member sender, treats the reference as unknown committee mail (cases/desk.py ->
    personal.unknown_case) instead of a report."""
    from conduct_inbox.shell.retention import purge_all
    from tests.harness import report
    case = store.report(sender=BOB, name="Bob Builder", body="Pat groped me at the sprint.")
    assert BOB in {r.member_email for r in store.case(case.ref).recusals if r.active}
    store.command(ALICE, "!close silent handled with Bob", case=case)
    store.now += timedelta(days=800)
    purge_all(store.sessions, None, store.now, 730)
    mark = store.outbox_mark()
    store.take_in(report(sender=BOB, name="Bob Builder", subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="Pat did it again yesterday."))
    assert _to(store, ALICE, mark) and _to(store, CAROL, mark), [(m.recipient, m.kind) for m in store.mail_after(mark)]


def test_the_second_escalation_of_a_case_the_steering_member_reported_reaches_someone(store: Store):
    """BROKE. Sam Steering (the only steering member) reports being shoved, from his roster
    address: he is the reporter and excluded. Nobody acknowledges. After 24 h the committee gets
    "Overdue"; after another 24 h the second level is due — its audience, the steering members
    not excluded, is empty: the escalation is recorded as sent (event `escalation_sent`) and no
    mail goes anywhere, no alert says so. The promise is broken a second time and nobody is told.
    cases/escalate.py records the level even when `routing.escalation(level=2)` has no recipients."""
    store.report(sender=SAM, name="Sam Steering", body="Pat shoved me at the sprint.")
    store.now += timedelta(hours=25)
    assert _escalate(store)
    store.now += timedelta(hours=25)
    sent = _escalate(store)
    assert [m for m in sent if m.recipient != SAM], "the second-level escalation reached nobody"
