"""Second attack round on issue 16's fixes, end to end over real Dovecot + aiosmtpd + the test
database: hidden cases answered as unknown references, withdrawal of queued mail listing a case,
`!merge` and the clocks it keeps, copies folded into announcements.

Each test asserts the SAFE behaviour: it fails while the attack works. Each docstring says
whether the attack HELD or BROKE when it was written.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import make_msgid

from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import run_once
from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, REPORTER, about, cases, latest, personal_address, readable, reply, step

UTC = timezone.utc
OTHER = "second@example.net"
NAMES_CAROL = "At the meetup Carol Chen made fun of my accent in front of everyone."


def written(sender: str, to: str, subject: str, body: str = "Is there anything about this?") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    return msg.as_bytes()


def followup(ref: str, body: str, sender: str = REPORTER) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Robin Reporter <{sender}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: [conduct #{ref}] Your report has been received"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg.set_content(body)
    return msg.as_bytes()


def unknown_ref(ref: str) -> str:
    head, _, tail = ref.rpartition("-")
    return f"{head}-{int(tail) + 900:0{len(tail)}d}"


def escalations_at(harness, capsys, at: datetime) -> list[dict]:
    capsys.readouterr()
    assert main(["escalations", "--config", str(harness.config_path), "--at", at.isoformat(), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ----- (a) hidden cases answered as unknown references ---------------------------------------------


def test_personal_address_with_a_hidden_cases_tag_gets_the_unknown_reference_answer(harness, smtp_receiver):
    """BROKE. Carol is named in the report: excluded from the start, she never had mail about it.
    Writing to her own personal reply address with a subject `[conduct #REF]`, she is answered
    "there is no case REF you can act on" for a reference that does not exist, but gets silence for
    the hidden case (core/admission.py admit: "personal token used on a case" → Way.REFUSE, never
    answered), so the difference tells her that the case exists and is kept from her."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body=NAMES_CAROL))
    [case] = cases(app)
    assert case.recused_members() == {CAROL} and not rx.to(CAROL)
    ghost = unknown_ref(case.ref)
    harness.clock.advance(minutes=5)
    step(harness, app, written(CAROL, personal_address(CAROL), f"[conduct #{ghost}] what is this?"))
    assert f"there is no case {ghost}" in text_of(latest(rx, CAROL))
    seen = len(rx.to(CAROL))
    harness.clock.advance(minutes=5)
    step(harness, app, written(CAROL, personal_address(CAROL), f"[conduct #{case.ref}] what is this?"))
    answers = rx.to(CAROL)[seen:]
    assert answers and f"there is no case {case.ref}" in text_of(answers[-1]), \
        "a hidden case's reference on a personal address gets silence where an unknown one is answered"


def test_a_merged_hidden_cases_reference_is_answered_without_naming_the_case_it_went_into(harness, smtp_receiver):
    """BROKE. Carol is named in two reports of one incident (excluded from both from the start).
    Case 2 is merged into case 1. Carol writes to conduct@ about case 2's reference: she is told
    "there is no case <case 1's reference> you can act on", i.e. the reference of the case it was
    merged into (cases/desk.py handle passes `case.ref`, the merge target's after
    merge.resolve, to personal.no_such_case instead of the reference she wrote)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body=NAMES_CAROL))
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, subject="The meetup", body="Carol Chen laughed at me too."))
    first, second = cases(app)
    assert first.recused_members() == second.recused_members() == {CAROL}
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, second.ref)[0], ALICE, f"!merge {first.ref}"))
    first, second = cases(app)
    assert second.merged_into_id == first.id and not rx.to(CAROL)
    harness.clock.advance(minutes=5)
    step(harness, app, written(CAROL, "conduct@example.org", f"[conduct #{second.ref}] what is this?"))
    answers = rx.to(CAROL)
    assert answers, "no answer (silence differs from the unknown-reference answer)"
    text = readable(answers[-1])
    assert first.ref not in text, f"the answer about {second.ref} names the case it was merged into, {first.ref}"


# ----- (c) queued mail listing a case -----------------------------------------------------------------


def test_a_list_answer_on_one_cases_mail_queued_in_an_outage_never_lists_a_case_the_reader_is_then_excluded_from(
        harness, smtp_receiver):
    """BROKE. Carol sends `!list` on case 1's mail while the SMTP server is down: the answer (a
    confirmation of case 1) lists case 2 too. Before it goes out, the reporter of case 2 names
    Carol (automatic exclusion). Queued mail listing case 2 is withdrawn only when it has no case
    (cases/recusals.py withdraw_unsent: `case_id IS NULL`): this one belongs to case 1, so it goes
    out naming case 2 and its subject to a member excluded from it."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(sender="olga@example.net", subject="Noise at the party", body="Too loud. FIRST-1"))
    harness.clock.advance(minutes=5)
    step(harness, app, report(subject="Comments at the sprint", body="Someone kept making comments. SECOND-2"))
    first, second = cases(app)
    carol_first = about(rx, CAROL, first.ref)[0]
    seen = len(rx.to(CAROL))
    rx.down()
    try:
        harness.clock.advance(minutes=5)
        step(harness, app, reply(carol_first, CAROL, "!list"))
        harness.clock.advance(minutes=5)
        step(harness, app, followup(second.ref, "I forgot: Carol Chen was standing right next to him."))
        first, second = cases(app)
        assert second.recused_members() == {CAROL}
    finally:
        rx.up()
    for _ in range(3):
        harness.clock.advance(minutes=30)
        run_once(app)
    new = rx.to(CAROL)[seen:]
    assert all(first.ref in str(parsed(m)["Subject"]) for m in new), [str(parsed(m)["Subject"]) for m in new]
    leaked = [m for m in new if second.ref in readable(m) or "Comments at the sprint" in readable(m)]
    assert not leaked, f"Carol, excluded from case {second.ref}, received the !list answer naming it: " + text_of(leaked[-1])[:600]


# ----- (b) merge and the clocks ---------------------------------------------------------------------------


def test_merging_an_acknowledged_automatic_case_into_an_unacknowledged_one_keeps_the_response_due(
        harness, smtp_receiver, capsys):
    """BROKE. Two automatic mails become `[auto]` cases. Bob `!ack`s case 2: its response is due
    a week later (an automatic mail somebody acknowledged promised a response, README). Case 2 is
    merged into case 1, which nobody acknowledged: `escalations --at` a week and a day later lists
    nothing for the merged case; its clock is gone (core/sla.py merged keeps last_response_at but
    the target has no human_ack_at, and an `[auto]` case without one runs no clock)."""
    rx = smtp_receiver
    app = harness.app()
    auto = {"Auto-Submitted": "auto-generated"}
    step(harness, app, report(sender="forms@example.net", subject="Form 1", body="Form one.", headers=auto))
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender="forms2@example.net", subject="Form 2", body="Form two.", headers=auto))
    first, second = cases(app)
    assert first.auto and second.auto
    harness.clock.advance(minutes=5)
    acked_at = harness.clock()
    step(harness, app, reply(about(rx, BOB, second.ref)[0], BOB, "!ack"))
    before = [e for e in escalations_at(harness, capsys, acked_at + timedelta(days=8)) if e["ref"] == second.ref]
    assert any(e["rule"] == "response" for e in before), before
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, second.ref)[0], ALICE, f"!merge {first.ref}"))
    first, second = cases(app)
    assert second.merged_into_id == first.id
    after = [e for e in escalations_at(harness, capsys, acked_at + timedelta(days=8)) if e["ref"] == first.ref]
    assert any(e["rule"] == "response" and e["level"] >= 1 for e in after), \
        "the response promised after case 2's !ack is due nowhere once case 2 is merged"


def test_an_acknowledgement_escalation_sent_for_a_merged_case_is_not_sent_again(harness, smtp_receiver):
    """BROKE. Nobody acknowledges case 1 within 24 hours: the escalation goes out. Reporter 2
    writes; case 1 is merged into case 2, which then counts from case 1's report, so its
    acknowledgement deadline is the one already escalated. The next tick escalates it again to
    the committee and the chair (escalations fire once, README): EscalationFired rows stay with
    case 1 (cases/merge.py merge does not move them)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    harness.clock.advance(hours=25)
    run_once(app)
    escalated = [m for m in rx.to(ALICE) if "acknowledgement overdue" in text_of(m)]
    assert len(escalated) == 1
    step(harness, app, report(sender=OTHER, subject="The sprint", body="I saw him interrupt her. SECOND-2"))
    first, second = cases(app)
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, first.ref)[0], ALICE, f"!merge {second.ref}"))
    first, second = cases(app)
    assert first.merged_into_id == second.id
    for _ in range(2):
        harness.clock.advance(minutes=10)
        run_once(app)
    again = [m for m in rx.to(ALICE) if "acknowledgement overdue" in text_of(m)]
    assert len(again) == 1, f"the acknowledgement escalation went out {len(again)} times for one deadline"


# ----- (e) the reporters of a merged case ----------------------------------------------------------------


def test_the_second_reporter_of_a_merged_case_never_learns_the_first_cases_reference(harness, smtp_receiver):
    """BROKE. Sam reports the incident Robin reported earlier; Sam's acknowledgement carries case
    2's reference. Case 2 is merged into case 1 and Alice answers Sam with `!reply ADDRESS`. Sam's
    answer comes under case 1's reference (cases/mailer.py send_to_party: `case.ref` of the merge
    target): Sam learns that a separate, earlier case about the incident exists, i.e. that someone
    else reported it, though the reporter is to be told nothing of a merge."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint", body="Same thing to me. SECOND-2"))
    first, second = cases(app)
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, second.ref)[0], ALICE, f"!merge {first.ref}"))
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, first.ref)[-1], ALICE, f"!reply {OTHER}", "Dear Sam, we are on it."))
    to_sam = rx.to(OTHER)
    assert len(to_sam) >= 2 and "we are on it" in text_of(to_sam[-1])
    assert not any(first.ref in readable(m) for m in to_sam), \
        f"the second reporter received case 1's reference {first.ref}: {parsed(to_sam[-1])['Subject']}"


# ----- (d) copies folded into announcements ------------------------------------------------------------


def test_a_reply_copy_never_reaches_a_member_excluded_by_the_same_message_nor_survives_a_refusal(
        harness, smtp_receiver):
    """HELD. Alice sends `!reply !concerns Bob` with a text: the reporter gets it, the copy is
    folded into the one announcement, which Bob (excluded by that very message) does not get. Then
    `!reply !assign Nobody`: the refused command takes the reply, its copy and the announcement
    back; nothing reaches the reporter or the others."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    [case] = cases(app)
    alice = about(rx, ALICE, case.ref)[0]
    bob_before = len(rx.to(BOB))
    harness.clock.advance(minutes=5)
    step(harness, app, reply(alice, ALICE, "!reply !concerns Bob Builder", "Thank you, we are on it. COPYTEXT-1"))
    assert any("COPYTEXT-1" in text_of(m) for m in rx.to(REPORTER))
    assert any("COPYTEXT-1" in text_of(m) for m in rx.to(CAROL))
    assert not any("COPYTEXT-1" in readable(m) for m in rx.to(BOB)[bob_before:])
    reporter_before, carol_before = len(rx.to(REPORTER)), len(rx.to(CAROL))
    harness.clock.advance(minutes=5)
    step(harness, app, reply(alice, ALICE, "!reply !assign Nobody Atall", "Second text. COPYTEXT-2"))
    assert len(rx.to(REPORTER)) == reporter_before
    assert not any("COPYTEXT-2" in readable(m) for m in rx.to(CAROL)[carol_before:])
    assert not any("COPYTEXT-2" in readable(m) for m in rx.to(BOB))


# ----- (a) continued: merges and purges change the answer ---------------------------------------------


def test_a_hidden_case_merged_into_one_the_member_saw_is_still_answered_as_unknown(harness, smtp_receiver):
    """BROKE. Carol saw case 1, then its reporter named her (excluded after seeing it). Case 2
    names her from the start. Mail from Carol about case 2's reference is answered "there is no
    case"; after case 2 is merged into case 1 the same mail gets silence (cases/desk.py handle:
    `_had_mail_about` asks about the merge target), and silence is never the answer to a
    reference that does not exist: case 2 exists."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(subject="Comments at the sprint", body="Someone kept making comments. FIRST-1"))
    [first] = cases(app)
    assert about(rx, CAROL, first.ref)
    harness.clock.advance(minutes=5)
    step(harness, app, followup(first.ref, "I forgot: Carol Chen was standing right next to him."))
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, subject="The sprint", body="Carol Chen laughed at me too. SECOND-2"))
    first, second = cases(app)
    assert first.recused_members() == second.recused_members() == {CAROL}
    seen = len(rx.to(CAROL))
    harness.clock.advance(minutes=5)
    step(harness, app, written(CAROL, "conduct@example.org", f"[conduct #{second.ref}] what is this?"))
    assert f"there is no case {second.ref}" in text_of(rx.to(CAROL)[-1]) and len(rx.to(CAROL)) == seen + 1
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, second.ref)[0], ALICE, f"!merge {first.ref}"))
    assert cases(app)[1].merged_into_id == first.id
    seen = len(rx.to(CAROL))
    harness.clock.advance(minutes=5)
    step(harness, app, written(CAROL, "conduct@example.org", f"[conduct #{second.ref}] what is this, again?"))
    answers = rx.to(CAROL)[seen:]
    assert answers and f"there is no case {second.ref}" in text_of(answers[-1]), \
        "after the merge the same question about the hidden case gets silence"


def test_a_purged_case_kept_from_a_member_is_answered_as_unknown(harness, smtp_receiver):
    """BROKE. Carol is named in the report (never had mail). The case is closed silently and
    purged after the retention period (`conduct-inbox purge`): its recusals go with it. Carol's
    mail about its reference is then answered "answer your own copy of the case mail", not "there
    is no case": she learns a case with that reference existed (cases/desk.py handle:
    Way.NOT_OWN_ADDRESS and routing.may_see on a purged case without recusals)."""
    harness.extra_config = "[retention]\nclosed_case_days = 30\n"
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body=NAMES_CAROL))
    [case] = cases(app)
    assert case.recused_members() == {CAROL}
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, case.ref)[0], ALICE, "!close silent reported again by phone"))
    assert cases(app)[0].status == "closed"
    harness.clock.advance(days=40)
    assert main(["purge", "--config", str(harness.config_path), "--at", harness.clock().isoformat()]) == 0
    assert cases(app)[0].purged_at is not None
    app = harness.app()
    run_once(app)  # housekeeping of the 40 days (the weekly overview) before the question
    seen = len(rx.to(CAROL))
    step(harness, app, written(CAROL, "conduct@example.org", f"[conduct #{case.ref}] what is this?"))
    answers = [m for m in rx.to(CAROL)[seen:] if "Weekly overview" not in str(parsed(m)["Subject"])]
    assert answers and f"there is no case {case.ref}" in text_of(answers[-1]), \
        "a purged case kept from Carol: " + (text_of(answers[-1])[:300] if answers else "silence")


# ----- (b)/(e) two reporters in one case ----------------------------------------------------------------


def test_answering_one_reporter_of_a_merged_case_keeps_the_other_reporters_week(harness, smtp_receiver, capsys):
    """BROKE. Robin reports on day 0, Sam on day 1 (promised a response by day 8). Case 2 is
    merged into case 1; on day 2 Alice answers Robin alone (`!reply ADDRESS`). `escalations --at`
    day 8 + 1 hour lists no overdue response: the merged case's clock restarted at Robin's answer
    (cases/handlers.py reply sets last_response_at for the case, whichever reporter it was)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    harness.clock.advance(days=1)
    sam_at = harness.clock()
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint", body="Same thing to me. SECOND-2"))
    first, second = cases(app)
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, second.ref)[0], ALICE, f"!merge {first.ref}"))
    harness.clock.advance(days=1)
    step(harness, app, reply(about(rx, ALICE, first.ref)[-1], ALICE, f"!reply {REPORTER}", "Dear Robin, we are on it."))
    assert "we are on it" in text_of(rx.to(REPORTER)[-1])
    assert not any("we are on it" in text_of(m) for m in rx.to(OTHER))
    promised = sam_at + timedelta(days=7, hours=1)
    overdue = [e for e in escalations_at(harness, capsys, promised) if e["rule"] == "response" and e["level"] >= 1]
    assert overdue, f"no response overdue at {promised} although Sam, promised a response by then, was never answered"


def test_a_merged_case_is_not_closed_while_one_of_its_reporters_was_never_answered(harness, smtp_receiver):
    """BROKE. After `!merge`, the committee decides, answers Robin alone and sends `!close`: the
    case closes and Sam never hears anything (cases/decisions.py close checks only that
    `last_response_at` is set, which answering either reporter does)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint", body="Same thing to me. SECOND-2"))
    first, second = cases(app)
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, second.ref)[0], ALICE, f"!merge {first.ref}"))
    for command, text in (("!ack", ""), ("!decide no-action", ""),
                          (f"!reply {REPORTER}", "Dear Robin, we decided to take no action."), ("!close", "")):
        harness.clock.advance(minutes=5)
        step(harness, app, reply(about(rx, ALICE, first.ref)[-1], ALICE, command, text))
    first, _ = cases(app)
    heard = [m for m in rx.to(OTHER) if "Message from" in str(parsed(m)["Subject"])]
    assert first.status != "closed" or heard, "closed with `!close` while its second reporter was never answered"


def test_merging_a_report_into_a_spam_case_keeps_its_deadlines(harness, smtp_receiver, capsys):
    """BROKE. Case 1 is marked `!spam`; a real report (case 2) is merged into it. `escalations
    --at` a week and a day after the report lists nothing: the merged case keeps the spam flag,
    whose clocks are stopped (cases/merge.py merge keeps target.spam; core/sla.py _candidates)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(sender="junk@example.net", name="Junk", subject="Cheap pills", body="Buy now."))
    [junk] = cases(app)
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, junk.ref)[0], ALICE, "!spam"))
    harness.clock.advance(minutes=5)
    reported_at = harness.clock()
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint", body="He kept making comments."))
    junk, real = cases(app)
    harness.clock.advance(minutes=5)
    step(harness, app, reply(about(rx, ALICE, real.ref)[0], ALICE, f"!merge {junk.ref}"))
    assert cases(app)[1].merged_into_id == junk.id
    overdue = [e for e in escalations_at(harness, capsys, reported_at + timedelta(days=8))
               if e["rule"] in ("ack", "response") and e["level"] >= 1]
    assert overdue, "a real report merged into a spam case: nothing is ever due for it"


def test_a_retagged_reply_on_a_visible_cases_mail_tells_hidden_references_from_unknown_ones(harness, smtp_receiver):
    """BROKE. Carol answers her own copy of case 1 with `!list`, the subject's tag changed. With a
    reference that does not exist the mail acts on case 1 through its In-Reply-To (cases/inbound.py
    _case_for falls back to the thread) and she gets case 1's confirmation; with case 2's reference,
    kept from her, she gets "there is no case 2" (cases/desk.py handle): the answers differ, so
    retagging tells her which references are cases kept from her."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(sender="olga@example.net", subject="Noise at the party", body="Too loud. FIRST-1"))
    harness.clock.advance(minutes=5)
    step(harness, app, report(body=NAMES_CAROL))
    first, hidden = cases(app)
    assert hidden.recused_members() == {CAROL}
    ghost = unknown_ref(hidden.ref)
    carol_first = about(rx, CAROL, first.ref)[0]
    answers = {}
    for ref in (hidden.ref, ghost):
        seen = len(rx.to(CAROL))
        harness.clock.advance(minutes=5)
        step(harness, app, reply(carol_first, CAROL, subject=f"Re: [conduct #{ref}] Noise at the party !list"))
        got = rx.to(CAROL)[seen:]
        answers[ref] = [(str(parsed(m)["Subject"]) + text_of(m)).replace(ref, "REF") for m in got]
    assert answers[hidden.ref] == answers[ghost], \
        f"hidden: {answers[hidden.ref][0][:160]!r} / unknown: {answers[ghost][0][:160]!r}"
