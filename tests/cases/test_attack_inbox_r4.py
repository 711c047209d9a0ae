"""Fourth attack round on issue 16 (cases tier, no servers): urgency carried by a merge, chains
of merges, a member excluded after a merge answering the merged-in case's old mail, `!reply
ADDRESS` with addresses that are not a reporter's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.case_store import Store
from tests.case_store import clock as _clock
from tests.case_store import escalate as _escalate
from tests.case_store import headers as _headers
from tests.case_store import mail_to as _to
from tests.mailers import ALICE, BOB, CAROL, REPORTER, SAM, reply

SECOND = "second@example.net"
THIRD = "third@example.net"
ACCUSED = "pat@example.net"


# ----- urgency carried into an older case by a merge -------------------------------------------


def test_merging_an_urgent_report_into_an_older_case_does_not_make_it_overdue_at_once(store: Store):
    """BROKE. Robin reports at 09:00 (not urgent: acknowledgement promised within 24 hours, by
    tomorrow 09:00). At 19:00 Sam reports the same incident and writes that they feel unsafe: an
    urgent case, acknowledgement promised within one hour (by 20:00). A member merges Sam's case
    into Robin's a few minutes later, before anyone sent `!ack`. The merged case becomes urgent
    and its urgent hour is counted from Robin's 09:00 report: acknowledgement "due" 10:00, nine
    hours overdue at the moment of the merge, and the next escalation run sends the committee an
    "Overdue" mail and Sam Steering "still overdue ... (escalated to steering)" — though no promise
    was broken: Robin was promised tomorrow 09:00, Sam 20:00. Every case mail states the wrong
    (past) due time. cases/merge.py merge: `target.urgent = target.urgent or source.urgent` and
    `sla.merged` takes the earliest report still owed an acknowledgement, without asking which
    deadline each report was promised (core/sla.py `_candidates` applies `urgent_ack` to the
    clock start of the merged case)."""
    first = store.report()
    store.now += timedelta(hours=10)
    second = store.report(sender=SECOND, name="Sam Second",
                          body="The same man followed me to the hotel yesterday and I feel unsafe now.")
    assert store.case(second.ref).urgent and not store.case(first.ref).urgent
    promised = min(_clock(store, first.ref)["ack"], _clock(store, second.ref)["ack"])
    assert promised == store.case(second.ref).created_at.replace(tzinfo=promised.tzinfo) + timedelta(hours=1)
    store.command(BOB, f"!merge {first.ref}", case=second)
    merged = store.case(first.ref)
    assert merged.urgent and store.case(second.ref).merged_into_id == merged.id
    after = _clock(store, first.ref)
    sent = _escalate(store)
    to_steering = [m for m in sent if m.recipient == SAM]
    assert after.get("ack") == promised and not sent, \
        f"acknowledgement due {after.get('ack')} (promised {promised}); at once: {len(sent)} escalation mail(s), " \
        f"{len(to_steering)} to steering"


# ----- chains of merges ------------------------------------------------------------------------


def test_a_chain_of_merges_keeps_every_reference_acting_on_the_last_case(store: Store):
    """HELD. Three reports of one incident: Robin (case A), Sam (case B), Tess (case C). A is
    merged into B, then B into C. Robin's follow-up under A's reference and Alice's note on her
    old copy of A both land on C; `!reply ADDRESS` on C reaches Robin under A's reference and Sam
    under B's, each threaded under nothing of the other reporters."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="Me too, same evening.")
    c = store.report(sender=THIRD, name="Tess Third", body="It happened to me as well.")
    alice_a = store.copy_of(ALICE, a)
    store.command(ALICE, f"!merge {b.ref}", case=a)
    store.command(ALICE, f"!merge {c.ref}", case=b)
    assert store.case(a.ref).merged_into_id == c.id and store.case(b.ref).merged_into_id == c.id
    # Robin writes again under A's reference.
    from tests.harness import report
    store.take_in(report(subject=f"Re: [conduct #{a.ref}] Your report has been received", body="One more thing."))
    # Alice answers her old copy of A.
    mark = store.outbox_mark()
    store.take_in(reply(alice_a, ALICE, "", "Robin's follow-up matches Tess's account."))
    notes = [m for m in _to(store, BOB, mark)]
    assert notes and all(m.case_id == c.id and c.ref in m.subject for m in notes)
    with store.sessions() as session:
        from conduct_inbox.store.models import InboundMessage
        cases_of = set(session.scalars(select(InboundMessage.case_id).where(InboundMessage.case_id.is_not(None))))
    assert cases_of == {c.id}
    mark = store.outbox_mark()
    store.command(BOB, f"!reply {REPORTER}", "Dear Robin, we are looking into it.", case=c)
    store.command(BOB, f"!reply {SECOND}", "Dear Sam, we are looking into it.", case=c)
    [robin] = _to(store, REPORTER, mark)
    [sam] = _to(store, SECOND, mark)
    assert a.ref in robin.subject and not any(r in robin.subject + robin.text + _headers(robin) for r in (b.ref, c.ref))
    assert b.ref in sam.subject and not any(r in sam.subject + sam.text + _headers(sam) for r in (a.ref, c.ref))


# ----- a member excluded after the merge -------------------------------------------------------


def test_a_member_excluded_after_a_merge_cannot_act_through_the_merged_in_cases_old_mail(store: Store):
    """HELD. Case B is merged into case A; then the committee finds that the incident concerns
    Carol (`!concerns Carol` on A). Carol answers her old copy of B (its reply token): her `!ack`
    and her note change nothing, reach nobody, and she gets no answer (she was excluded after
    seeing the case)."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="Me too.")
    carol_b = store.copy_of(CAROL, b)
    store.command(ALICE, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!concerns Carol", case=a)
    assert CAROL in {r.member_email for r in store.case(a.ref).recusals if r.active}
    mark = store.outbox_mark()
    store.take_in(reply(carol_b, CAROL, "!ack !assign Carol", "I will take this one."))
    assert not store.mail_after(mark), [(m.recipient, m.kind) for m in store.mail_after(mark)]
    merged = store.case(a.ref)
    assert merged.human_ack_at is None and merged.assignee != CAROL


# ----- one mail per command message ------------------------------------------------------------


def test_title_with_another_command_is_one_announcement_to_each_other_member(store: Store):
    """BROKE (minor). Bob sends `!title Sprint incident !ack` in one subject. The issue: a command
    message is announced "in one short mail per command message"; README: "one short mail per mail
    you sent ... You get your confirmation instead". Alice and Carol each get two mails (a "title"
    announcement and a "Bob Builder changed this case" announcement), and Bob gets his own title
    announcement beside his confirmation. cases/handlers.py title calls `mailer.announce` itself
    (to every member, sender included) while cases/desk.py `_apply` announces the other changes."""
    case = store.report()
    mark = store.outbox_mark()
    store.command(BOB, "!title Sprint incident !ack", case=case)
    got = {who: [m.kind for m in _to(store, who, mark)] for who in (ALICE, BOB, CAROL)}
    assert len(got[ALICE]) == 1 and len(got[CAROL]) == 1 and got[BOB] == ["confirmation"], got


def test_a_title_the_case_already_has_is_not_announced_again(store: Store):
    """BROKE (minor). Alice sets the title "Sprint incident"; later Bob, answering an older mail
    whose subject he edits, sends `!title Sprint incident` again. README: "neither does a command
    that finds the case already as it asks ... the others were told the first time". Every member
    gets a second "Bob Builder set the title of this case" mail (cases/handlers.py title announces
    unconditionally)."""
    case = store.report()
    store.command(ALICE, "!title Sprint incident", case=case)
    mark = store.outbox_mark()
    store.command(BOB, "!title Sprint incident", case=case)
    got = {who: [m.kind for m in _to(store, who, mark)] for who in (ALICE, BOB, CAROL)}
    assert got == {ALICE: [], BOB: ["confirmation"], CAROL: []}, got


def test_the_member_who_merges_gets_only_the_confirmation(store: Store):
    """BROKE (minor). Alice sends `!merge REF`: she gets the merge announcement meant for the
    others ("Alice Example merged case ... into this case") and her confirmation — two mails for
    one command, where README says the sender "gets your confirmation instead" of the
    announcement (cases/merge.py merge: `mailer.announce` addresses every member of the target)."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="Me too.")
    mark = store.outbox_mark()
    store.command(ALICE, f"!merge {a.ref}", case=b)
    got = {who: [m.kind for m in _to(store, who, mark)] for who in (ALICE, BOB, CAROL)}
    assert got[ALICE] == ["confirmation"] and len(got[BOB]) == 1 and len(got[CAROL]) == 1, got


# ----- clocks of a case that comes back: !reopen, !reconsider ---------------------------------


def _answered_and_closed(store: Store):
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!reply", "Dear Robin, we looked into it and decided to take no action.", case=case)
    store.command(ALICE, "!decide no-action", case=case)
    store.command(ALICE, "!close", case=case)
    assert store.case(case.ref).status == "closed"
    return case


def test_reopening_a_case_closed_last_week_is_not_overdue_at_once(store: Store):
    """BROKE. The committee answers Robin on day 0 and closes the case (a resolution was sent: the
    promise is kept). On day 10 new facts come up and Bob sends `!reopen`. The reopened case states
    "Response to the reporter (!reply) due: Tue 1 Dec ... (overdue)" — the cycle of the answer sent
    on day 0 — and the next escalation run sends the reminder, the "overdue" mail to the committee
    and "escalated to steering" to Sam Steering, all at once, though nobody broke a promise (README
    "Deadlines": a response is "`!reply` or closing", due "within 7 days ... of each previous
    response"). cases/handlers.py reopen changes the state only; core/sla.py `_candidates` counts
    from the last `!reply` (`last_response_at`); closing does not count as a response."""
    case = _answered_and_closed(store)
    store.now += timedelta(days=10)
    store.command(BOB, "!reopen", case=case)
    assert store.case(case.ref).status == "investigating"
    due = _clock(store, case.ref).get("response")
    sent = _escalate(store)
    assert (due is None or due > store.now) and not sent, \
        f"response due {due} at {store.now}; at once: {sorted({(m.recipient, m.text.splitlines()[3]) for m in sent})}"


def test_a_reconsideration_is_not_escalated_as_overdue_the_moment_it_opens(store: Store):
    """BROKE. A case answered and closed on day 0; on day 60 a party asks the steering committee to
    reconsider and Sam Steering sends `!reconsider REF`. The next escalation run (a minute later)
    mails every committee member a "Reminder ... Response to the reporter due soon (reminder at
    Sun 29 Nov)" and "overdue" mails, and the steering members "still overdue ... (escalated to
    steering)", about a reporter who got their resolution two months ago; the reconsideration's
    own mail and every case mail state the response as due "Tue 1 Dec 2026 (overdue)".
    core/sla.py `_candidates`: only "closed" stops the clocks (CLOSED_STATES), so
    "reconsideration" runs the response clock from the last `!reply`."""
    case = _answered_and_closed(store)
    store.now += timedelta(days=60)
    store.personal(SAM, f"!reconsider {case.ref}")
    assert store.case(case.ref).status == "reconsideration"
    due = _clock(store, case.ref).get("response")
    sent = _escalate(store)
    assert (due is None or due > store.now) and not sent, \
        f"response due {due} at {store.now}; at once: {sorted({(m.recipient, m.text.splitlines()[3]) for m in sent})}"


def test_merging_a_closed_answered_case_into_a_new_report_is_not_overdue_at_once(store: Store):
    """BROKE. Robin's case was answered and closed on day 0. On day 21 Sam reports the same man
    again (case 2: response promised by day 28), and Bob folds the old closed case into the new one
    (`!merge` on case 1's mail: a closed case may be merged into an open one). The merged case's
    response is "due Tue 1 Dec 2026 (overdue)" — the cycle of the answer Robin got three weeks ago,
    in a case that was closed — and the next escalation run sends the committee a reminder and an
    "overdue" mail and Sam Steering "escalated to steering", minutes after a new report arrived.
    README: each reporter "not answered yet" is owed their answer by the time they were promised;
    Robin was answered and his case closed (closed cases run no clock). cases/merge.py keeps the
    closed case's reporter with `answered_at` from day 0, and `sla.response_from` takes the
    earliest reporter start."""
    old = _answered_and_closed(store)
    store.now += timedelta(days=21)
    new = store.report(sender=SECOND, name="Sam Second", body="The same man did it again at the meetup.")
    promised = _clock(store, new.ref)["response"]
    store.command(BOB, f"!merge {new.ref}", case=old)
    assert store.case(old.ref).merged_into_id == new.id
    due = _clock(store, new.ref).get("response")
    sent = _escalate(store)
    assert due == promised and not sent, \
        f"response due {due} (promised {promised}); at once: {sorted({(m.recipient, m.text.splitlines()[3]) for m in sent})}"


# ----- the steering report ---------------------------------------------------------------------


def test_the_steering_report_of_a_merged_case_names_no_reporter(store: Store):
    """BROKE. Two reports of one incident are merged; a member sends `!steering` (the policy's
    report to the steering committee, "without the reporter's or witnesses' identities"). The
    report Sam Steering gets says "The reporter's and witnesses' identities are left out of this
    report" — and, a few lines above, in its "Where the case stands" block: "Reporters not answered
    yet (!reply ADDRESS, each before !close): reporter@example.net, second@example.net". The steering
    committee "may choose to make a public report"; the policy promises the reporters' identities
    stay confidential. cases/steering.py steering_report goes through mailer.committee_drafts, which
    adds the standing block (cases/standing.py) to every committee mail, the steering report
    included."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man did it to me.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!party witness wes@example.net Wes Witness", case=a)
    mark = store.outbox_mark()
    store.command(ALICE, "!steering", case=a)
    [report] = [m for m in _to(store, SAM, mark) if m.kind == "steering_report"]
    text = report.text
    assert "identities are left out" in text
    named = [who for who in (REPORTER, SECOND, "wes@example.net", "Robin Reporter", "Sam Second", "Wes Witness")
             if who in text]
    assert not named, f"the steering report names {named}"


# ----- !history after a member is excluded from the merged case ---------------------------------


def test_history_hides_what_a_member_did_on_the_merged_in_case_before_being_excluded(store: Store):
    """HELD. Carol works case B (`!ack !assign Carol` with a note, a `!reply` to Sam, a decision);
    B is merged into A; then `!concerns Carol` on A. Alice's `!history` of A names Carol only as
    excluded: not her note, not her commands, not as the author of the reply or the decision."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="Same man again.")
    store.command(CAROL, "!ack !assign Carol", "I know him from the board; I doubt this one.", case=b)
    store.command(CAROL, "!reply", "Dear Sam, thank you, we are on it.", case=b)
    store.command(CAROL, "!decide private-reprimand target=reporter", case=b)
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!concerns Carol", case=a)
    mark = store.outbox_mark()
    store.command(ALICE, "!history", case=a)
    [answer] = _to(store, ALICE, mark)
    history = answer.text.split("Commands go in the subject")[0]
    lines = [line for line in history.splitlines() if "Carol" in line]
    assert lines == ["excluded: Carol Chen (the case concerns them)"], lines
    assert "doubt" not in history and "board" not in history


def test_a_delivery_failure_alert_about_a_merged_case_carries_no_address(store: Store):
    """BROKE (minor). README: "alerts carry ids, never a subject, name or address". The committee's
    `!reply` to one reporter of a merged case fails for good (5xx); the alert each member gets says
    "Mail about case ... could not be delivered: outbox row N (reply to a reporter)" and, in its
    "Where the case stands" block, "Reporters not answered yet ...: reporter@example.net, ..." —
    reporters' addresses in an alert (cases/mailer.py alert builds it with committee_drafts, which
    adds the standing block, cases/standing.py `unanswered`)."""
    from conduct_inbox.cases.inbound import on_delivery_failure
    from conduct_inbox.store.models import OutboxMessage
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man did it to me.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, f"!reply {SECOND}", "Dear Sam, we are on it.", case=a)
    [failed] = [m for m in store.mail_to(SECOND) if m.kind == "reply"]
    mark = store.outbox_mark()
    with store.sessions() as session, session.begin():
        row = session.get(OutboxMessage, failed.id)
        row.status, row.last_code = "failed", 550
        on_delivery_failure(store.inbound.ctx, session, row, store.now)
    alerts = [m for m in _to(store, BOB, mark) if m.kind == "alert"]
    assert alerts and "could not be delivered" in alerts[0].text
    leaked = [who for who in (REPORTER, SECOND, "Robin Reporter", "Sam Second") if who in alerts[0].text + alerts[0].subject]
    assert not leaked, f"the alert carries {leaked}"


# ----- a forwarded subject in the quoted report makes members' commands stale -------------------


FORWARDED_THREAT = """Please see below what he sent me after the sprint.

---------- Forwarded message ---------
From: Pat Person <pat@example.net>
Date: Mon, 23 Nov 2026 at 22:10
Subject: !concerns Carol !ack !urgent
To: Robin Reporter <reporter@example.net>

You will regret reporting me. Carol is a friend of mine, she will see to it.
"""


def test_a_subject_inside_the_quoted_report_does_not_cancel_a_members_commands(store: Store):
    """BROKE. Robin's report pastes a message Pat sent him (a Gmail forward block: "---------- Forwarded
    message ---------", "From: Pat ...", "Subject: !concerns Carol !ack !urgent" — Pat chose that
    subject). Alice answers her copy of the report as every client does, quoting it, with
    `!concerns Carol !ack` in her subject. Nothing is applied: she is told "not applied, because an
    earlier message of this thread already has it in its subject", Carol stays on the case and keeps
    getting its mail, the acknowledgement clock keeps running. README: "Mail from anyone else never
    makes your command stale". cases/threads.py earlier_subjects takes the subject of every
    message `msg.forwarded` finds, and mail/quotes.py `_FORWARD_MARKER` accepts a marker behind
    `>` quote characters, so a forward block quoted from the report counts as a forward by the
    member."""
    case = store.report(body=FORWARDED_THREAT)
    assert CAROL in {m.recipient for m in store.mail()}
    store.command(ALICE, "!concerns Carol !ack", "Carol should not see this one.", case=case)
    after = store.case(case.ref)
    told = [line for line in store.latest(ALICE).text.splitlines() if "not applied" in line]
    mark = store.outbox_mark()
    from tests.harness import report
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received", body="He wrote again."))
    assert CAROL in {r.member_email for r in after.recusals if r.active} and after.human_ack_at is not None, \
        f"Alice's commands were cancelled: {told}"
    assert not _to(store, CAROL, mark)


# ----- danger reported in a follow-up ---------------------------------------------------------


def test_a_follow_up_saying_the_reporter_is_in_danger_marks_the_case_urgent(store: Store):
    """BROKE (gray: README and DESIGN speak of "reports" whose sender's own text has an urgent
    phrase). Robin reported harassment (not urgent). An hour later Robin writes again on the case:
    "He is outside my hotel room now, I feel unsafe. I called the police." The case stays not
    urgent: the members' copies carry the plain subject (no URGENT), no "notify law enforcement?"
    task, no webhook/pager call, and the acknowledgement stays due in 24 hours, not one. The policy:
    "If ... there is a threat to physical safety, the committee's immediate priority will be to
    protect everyone involved." (cases/inbound.py: urgency is decided for a new report only.)"""
    case = store.report()
    store.now += timedelta(hours=1)
    mark = store.outbox_mark()
    from tests.harness import report
    store.take_in(report(subject=f"Re: [conduct #{case.ref}] Your report has been received",
                         body="He is outside my hotel room now, I feel unsafe. I called the police."))
    copies = _to(store, ALICE, mark)
    assert copies, "the follow-up did not reach the committee"
    assert store.case(case.ref).urgent and any("URGENT" in m.subject for m in copies), \
        f"urgent: {store.case(case.ref).urgent}; subjects: {[m.subject for m in copies]}"


def test_a_steering_member_cannot_unmask_the_reporter_by_answering_the_case_report(store: Store):
    """BROKE. The committee works Robin's case (quorum met: it is not routed to the steering
    members) and sends the steering committee the policy's case report (`!steering`), which "leaves
    out the reporter's and witnesses' identities" (the steering committee may make a public report).
    The report carries a reply token for Sam Steering. Sam answers it with `!history`: he receives
    the reporter's name and address ("party: reporter Robin Reporter <reporter@example.net>"), the
    witness, and every internal note with its text. cases/steering.py steering_report sends committee_drafts with a case token;
    core/routing.py may_see admits every steering member not recused, and cases/history.py
    answers them everything."""
    case = store.report()
    store.command(ALICE, "!ack", "Robin is credible; Wes saw it too.", case=case)
    store.command(ALICE, "!party witness wes@example.net Wes Witness", case=case)
    store.command(ALICE, "!steering", case=case)
    [steering_report] = [m for m in store.mail_to(SAM) if m.kind == "steering_report"]
    assert REPORTER not in steering_report.text and "Robin" not in steering_report.text
    mark = store.outbox_mark()
    store.take_in(reply(steering_report, SAM, "!list"))
    listed = "\n".join(m.text for m in _to(store, SAM, mark))
    mark = store.outbox_mark()
    store.take_in(reply(steering_report, SAM, "!history"))
    answer = "\n".join(m.text.split("Commands go in the subject")[0] for m in _to(store, SAM, mark))
    shown = [w for w in (REPORTER, "Robin Reporter", "wes@example.net", "Robin is credible") if w in answer]
    assert not shown, f"Sam's !list: {listed.split('Where the case stands')[0].strip()!r}; his !history shows {shown}"


# ----- a sanction on a merged case with two reported addresses ----------------------------------


def test_a_sanction_after_a_merge_is_not_recorded_against_one_reported_address_silently(store: Store):
    """BROKE (gray). Robin reports Pat at his work address, Sam reports the same Pat at his private
    address; each case records its reported party, and the cases are merged (one incident, one
    person, two addresses: two parties, since parties are the same only by address). Alice sends
    `!decide vacation until=2026-12-31`: the confirmation says only "decision vacation recorded",
    the case mail "Sanction end: vacation until Thu 31 Dec 2026", and the sanctions ledger (what
    outlives the purge) holds the work address alone — while `!send reported` goes to both. Nothing
    tells the members that the sanction was recorded against one of the two (cases/decisions.py:
    `case.party(target_role)` is the first party with that role; compare `!reply`, which refuses
    to guess between reporters)."""
    from conduct_inbox.store.models import Sanction
    a = store.report()
    store.command(ALICE, "!party reported pat@work.example Pat Person", case=a)
    b = store.report(sender=SECOND, name="Sam Second", body="The same man, Pat, at the meetup.")
    store.command(ALICE, "!party reported pat@home.example Pat Person", case=b)
    store.command(BOB, f"!merge {a.ref}", case=b)
    mark = store.outbox_mark()
    store.command(ALICE, "!decide vacation until=2026-12-31", case=a)
    told = "\n".join(m.text for m in _to(store, ALICE, mark))
    with store.sessions() as session:
        ledger = sorted(session.scalars(select(Sanction.target_address)))
    refused = "refused" in told.lower() or "not" in told.split("Where the case stands")[0].lower()
    assert refused or ledger == ["pat@home.example", "pat@work.example"] or "pat@home.example" in told, \
        f"ledger: {ledger}; Alice was told: {told.split('Where the case stands')[0].strip()!r}"


# ----- a committee member who reports ----------------------------------------------------------


def test_a_member_who_reports_gets_no_internal_mail_about_their_own_report(store: Store):
    """BROKE (gray: the policy excludes members a report "concerns"; DESIGN promises the reporter
    that "nothing internal ever reaches them"). Bob, a committee member, is harassed and reports it
    like anyone, writing to conduct@ from his own address. He gets the reporter's acknowledgement —
    and the committee's copy of his own report with a reply token, then every internal note:
    Alice's "I am not sure Bob's account is complete" reaches him, and his reply token lets him act
    on his own complaint like any member. Routing (core/routing.py committee) excludes only
    recused members; a member who is the reporter is not recused."""
    case = store.report(sender=BOB, name="Bob Builder", subject="Something happened to me",
                        body="Pat grabbed my arm at the meetup and would not let go.")
    assert [m.kind for m in store.mail_to(BOB)][:1] == ["ack"]
    mark = store.outbox_mark()
    store.command(ALICE, "", "I am not sure Bob's account is complete; let us ask Carol what she saw.", case=case)
    internal = [m.kind for m in _to(store, BOB, mark)]
    assert not internal and not [m for m in store.mail_to(BOB) if m.kind == "report"], \
        f"Bob, the reporter, got internal mail: {[m.kind for m in store.mail_to(BOB)]}"


def test_marking_a_case_urgent_hours_after_the_report_does_not_escalate_it_to_steering_at_once(store: Store):
    """BROKE (gray). A report arrives at 09:00 (not urgent: acknowledgement promised within 24
    hours). At 14:00 Alice reads it, sees danger and sends `!urgent` with a note. Her confirmation
    states "Human acknowledgement (!ack) due: Tue 24 Nov 2026 10:01 UTC (overdue)", and the next
    escalation run mails the committee "Urgent case: human acknowledgement overdue since ... 10:01"
    and Sam Steering "still overdue at ... 12:01 (escalated to steering)" — for hours in which the
    case was not urgent and no promise was broken (the reporter was promised 24 hours). Marking a
    case urgent should shorten what is still to come, not date an overdue back (core/sla.py
    `_candidates`: `created + urgent_ack`, whenever urgency was set)."""
    case = store.report()
    store.now += timedelta(hours=5)
    store.command(ALICE, "!urgent", "He is at the venue again today.", case=case)
    due = _clock(store, case.ref)["ack"]
    sent = _escalate(store)
    to_steering = [m.text.splitlines()[4] for m in sent if m.recipient == SAM]
    assert due > store.now - timedelta(minutes=5) and not to_steering, f"ack due {due} at {store.now}; to steering: {to_steering}"


def test_a_steering_members_list_is_the_overview_list_not_every_case(store: Store):
    """BROKE. README: the weekly overview lists "the open cases they may see"; "a steering member
    gets one only when cases are routed to them (too few members left on a case)"; "Reply to it
    with `!list` for the same list at any time". Robin's case is worked by the committee (quorum
    met, nothing routed to the steering members): Sam Steering gets no overview. His `!list`, sent
    to his personal address, lists the case with its title — the reporter's own subject, here
    "Pat Person groped me at the sprint": a name and an allegation the steering committee's case
    report deliberately leaves out. cases/handlers.py list_text asks core/routing.py may_see, which
    admits every steering member not recused, while cases/chores.py _overview_drafts asks routing
    who the case is routed to."""
    from conduct_inbox.cases.chores import send_weekly_overview
    case = store.report(subject="Pat Person groped me at the sprint")
    ctx = store.inbound.ctx
    send_weekly_overview(store.sessions, ctx, store.now, "monday", 8)  # the first run starts the count
    monday = store.now + timedelta(days=6)
    send_weekly_overview(store.sessions, ctx, monday.replace(hour=8, minute=30), "monday", 8)
    store.dispatched()
    assert [m for m in store.mail_to(ALICE) if m.kind == "weekly_overview"], "no overview went out"
    overview = [m for m in store.mail_to(SAM) if m.kind == "weekly_overview"]
    mark = store.outbox_mark()
    store.personal(SAM, "!list")
    listed = "\n".join(m.text.split("Commands go in the subject")[0] for m in _to(store, SAM, mark))
    assert not overview and case.ref not in listed and "groped" not in listed, \
        f"overviews to Sam: {len(overview)}; his !list: {listed.strip()!r}"


# ----- one address, two roles, two references ---------------------------------------------------


@pytest.mark.xfail(strict=True, reason="known limit (README): mail to a person who is a party of both merged cases threads under all their mail on the case, whichever reference it came under")
def test_a_reporter_who_is_a_witness_of_the_merged_in_case_does_not_see_the_merge_in_threading(store: Store):
    """BROKE. Robin reports (case 1). In Sam's report of the same incident (case 2) Robin is a
    witness: the committee asks him questions with `!send witness`, under case 2's reference. Case 2
    is merged into case 1. The next `!send witness` still carries case 2's reference in its subject
    (README: parties of the merged-in case "keep hearing under its own reference (the merge stays
    internal to the committee)") — but its In-Reply-To is Robin's own report of case 1 and its
    References hold case 1's acknowledgement: Gmail and Thunderbird file the witness question under
    Robin's report, showing him that the committee joined the two cases. The `!reply` to Robin as
    reporter (case 1) likewise references the witness mail of case 2. cases/mailer.py party_thread
    takes every inbound and outbound mail of that address on the (merged) case, whatever reference
    it was under."""
    from email.utils import make_msgid

    from tests.harness import parsed, report
    report_id = make_msgid(domain="example.net")
    store.take_in(report(message_id=report_id))
    first = store.case()
    second = store.report(sender=SECOND, name="Sam Second", body="Robin saw it too.")
    store.command(ALICE, f"!party witness {REPORTER} Robin Reporter", case=second)
    store.command(ALICE, "!send witness", "Could you tell us what you saw on Saturday?", case=second)
    ack_first = str(parsed(store.mail_to(REPORTER)[0])["Message-ID"])
    store.command(BOB, f"!merge {first.ref}", case=second)
    mark = store.outbox_mark()
    store.command(ALICE, "!send witness", "Thank you; one more question about Saturday.", case=first)
    [question] = _to(store, REPORTER, mark)
    msg = parsed(question)
    threading = f"{msg['In-Reply-To'] or ''} {msg['References'] or ''}"
    assert second.ref in question.subject
    assert report_id not in threading and ack_first not in threading, \
        f"the witness question under {second.ref} answers Robin's report of {first.ref}: In-Reply-To {msg['In-Reply-To']}"


def test_the_reported_person_cannot_recuse_a_member_from_another_spelling_of_their_address(store: Store):
    """HELD. Pat is recorded as the reported person (pat@example.net). Writing on the case from
    `Pat@Example.NET` or `pat+conduct@example.net` that "Alice Example is biased against me" recuses
    nobody: the accused does not choose their judges by respelling their address."""
    from tests.harness import report
    case = store.report()
    store.command(ALICE, f"!party reported {ACCUSED} Pat Person", case=case)
    store.command(ALICE, "!send reported", "Please tell us your side.", case=case)
    for sender in ("Pat@Example.NET", "pat+conduct@example.net"):
        store.take_in(report(sender=sender, name="Pat Person", subject=f"Re: [conduct #{case.ref}] Message from the committee",
                             body="Alice Example is biased against me and Carol Chen too."))
        assert not [r.member_email for r in store.case(case.ref).recusals if r.active]


def test_an_accused_whose_counter_report_was_merged_in_cannot_recuse_a_member(store: Store):
    """HELD. Robin reports Pat (case 1, Pat recorded as reported); Pat files a counter-report
    about Robin (case 2, Pat its reporter). Case 2 is merged into case 1: Pat is now a reporter and
    the reported person of one case. Pat's follow-up under his own reference saying "Bob Builder is
    a friend of Robin, he cannot judge this" recuses nobody (the accused does not choose who judges
    them, whichever role he also holds)."""
    from tests.harness import report
    robin = store.report(body="Pat Person shoved me at the sprint.")
    store.command(ALICE, f"!party reported {ACCUSED} Pat Person", case=robin)
    pat = store.report(sender=ACCUSED, name="Pat Person", subject="Complaint about Robin",
                       body="Robin Reporter insulted me first at the sprint.")
    store.command(ALICE, f"!party reported {REPORTER} Robin Reporter", case=pat)
    store.command(BOB, f"!merge {robin.ref}", case=pat)
    assert store.case(pat.ref).merged_into_id == robin.id
    store.take_in(report(sender=ACCUSED, name="Pat Person", subject=f"Re: [conduct #{pat.ref}] Your report has been received",
                         body="Also, Bob Builder is a friend of Robin, he cannot judge this."))
    assert not [r.member_email for r in store.case(robin.ref).recusals if r.active]


def test_a_text_for_the_reported_person_of_one_merged_case_does_not_reach_the_other_cases(store: Store):
    """BROKE (gray). Robin reports Pat (case 1: reported Pat); Sam reports Quinn for the same evening
    (case 2: reported Quinn). The committee merges case 2 into case 1. Alice then writes to Pat as
    she did before the merge: `!send reported` "Dear Pat, two people reported that you shoved them
    ..." — the text goes to Quinn as well (the confirmation says so only afterwards: "message sent
    to 2 reported parties"). Before the merge each case had one reported person; after it, a text
    for one accused reaches the other, with what it says about the reports. For reporters the
    merge makes a plain `!reply`/`!send reporter` refuse rather than guess (README); `!send
    reported`/`witness`/`other` do not (cases/handlers.py send)."""
    a = store.report(body="Pat Person shoved me at the sprint.")
    store.command(ALICE, f"!party reported {ACCUSED} Pat Person", case=a)
    b = store.report(sender=SECOND, name="Sam Second", body="Quinn shoved me at the sprint, same evening.")
    store.command(ALICE, "!party reported quinn@example.net Quinn Q", case=b)
    store.command(BOB, f"!merge {a.ref}", case=b)
    mark = store.outbox_mark()
    store.command(ALICE, "!send reported", "Dear Pat, two people reported that you shoved them at the sprint.", case=a)
    assert not _to(store, "quinn@example.net", mark), "Quinn got the text written for Pat"


@pytest.mark.xfail(strict=True, reason="departure (README): mail from a non-party with a case tag stays on that case, flagged for the committee (a reporter writing from a second address must not open a case each time)")
def test_a_new_reporter_who_writes_with_another_reporters_reference_is_acknowledged(store: Store):
    """BROKE (gray: DESIGN principle 7, "when in doubt, it is a report"). Robin tells Sam Two to
    write to the committee "with this reference". Sam writes `[conduct #REF] I saw it too` — "Pat
    also shoved me": his own report. Sam gets nothing at all: no acknowledgement, no case reference,
    and no response is owed to him (the case's "Where the case stands" names only Robin's clocks;
    Sam cannot be answered with `!reply ADDRESS`, he is no reporter). The policy promises whoever
    files a report an acknowledgement "immediately" and a response "within one week". The members
    see "Message from someone who is not a party to the case" (cases/inbound.py: non-party mail
    with a case tag is kept on the case and flagged)."""
    from tests.harness import report
    robin = store.report(body="Pat Person shoved me at the sprint.")
    store.take_in(report(sender="sam2@example.net", name="Sam Two", subject=f"[conduct #{robin.ref}] I saw it too",
                         body="Robin told me to write to you with this reference. Pat also shoved me."))
    told = [m.kind for m in store.mail_to("sam2@example.net")]
    reporters = [p.address for c in (store.case(),) for p in c.parties if p.role == "reporter"]
    assert told == ["ack"] or "sam2@example.net" in reporters, f"Sam got {told}; reporters owed a response: {reporters}"


def test_the_member_who_decided_cannot_close_the_steering_committees_reconsideration(store: Store):
    """BROKE. Alice decides the case ("no-action"), answers Robin and closes it. Robin asks the
    steering committee to reconsider; Sam Steering opens it (`!reconsider REF`: "the steering members
    have the case"; only the steering members are told). Three days later Alice — the member whose
    decision is under review, not even told of the reconsideration — answers her old copy of the
    case with `!close` "No need, the decision stands": the reconsideration is closed at once (the old
    decision and the old `!reply` satisfy `!close`), and the steering members only get a "case
    report (closed)". DESIGN: "Reconsideration is handled by the steering members (optionally
    without the members who made the decision)"; the policy: the steering committee "will review
    the case". cases/decisions.py close accepts `!close` in "reconsideration" from any member who may
    see the case (her case token stays valid)."""
    case = _answered_and_closed(store)
    store.now += timedelta(days=3)
    store.personal(SAM, f"!reconsider {case.ref}")
    assert store.case(case.ref).status == "reconsideration"
    store.now += timedelta(days=3)
    store.command(ALICE, "!close", "No need, the decision stands.", case=case)
    assert store.case(case.ref).status == "reconsideration", "Alice closed the steering committee's reconsideration"


@pytest.mark.config(('steering_address = "steering@example.org"\n',
                     'steering_address = "steering@example.org"\nannounce = "none"\n'))
def test_announce_none_silences_title_and_merge_announcements_too(store: Store):
    """BROKE (minor). README: `committee.announce = "none"` turns announcements off; "a recusal, a
    proposal or an URGENT mark is still told to the others in one mail, a note still goes out as a
    note". With it, `!title` still mails every member (sender included) "Alice Example set the
    title of this case", and `!merge` "Alice Example merged case ... into this case"
    (cases/handlers.py title and cases/merge.py merge call `mailer.announce` without looking at
    `announce`), while `!ack` is silent as promised."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="Me too.")
    mark = store.outbox_mark()
    store.command(ALICE, "!ack", case=a)
    assert {m.recipient for m in store.mail_after(mark)} == {ALICE}
    store.command(ALICE, "!title Sprint incident", case=a)
    store.command(ALICE, f"!merge {a.ref}", case=b)
    others = [(m.recipient, m.kind) for m in store.mail_after(mark) if m.recipient != ALICE]
    assert not others, others
