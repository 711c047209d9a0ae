"""Fourth attack round on issue 16, end to end over real Dovecot + aiosmtpd + the test database:
the steering report of a merged case, the clocks of a case that comes back (`!reopen`, a merge of
an urgent report), as `escalations --at` and the daemon's own escalation run show them.

Each test asserts the SAFE behaviour: it fails while the attack works. Each docstring says
whether the attack HELD or BROKE when it was written.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import run_once
from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, REPORTER, SAM, about, cases, reply, step

OTHER = "second@example.net"


def _act(harness, app, rx, member: str, ref: str, suffix: str, body: str = "") -> None:
    harness.clock.advance(minutes=2)
    step(harness, app, reply(about(rx, member, ref)[0], member, suffix, body))


def escalations_at(harness, capsys, at: datetime) -> list[dict]:
    capsys.readouterr()
    assert main(["escalations", "--config", str(harness.config_path), "--at", at.isoformat(), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_steering_report_of_a_merged_case_names_no_reporter(harness, smtp_receiver):
    """BROKE. Robin and Sam report one incident; the cases are merged and Alice sends `!steering`.
    The mail Sam Steering receives says "The reporter's and witnesses' identities are left out of
    this report" and, above it, "Reporters not answered yet (!reply ADDRESS, each before !close):
    reporter@example.net, second@example.net" (the standing block cases/standing.py adds to every
    committee mail, cases/steering.py steering_report included)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint."))
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint", body="Pat shoved me too."))
    first, second = cases(app)
    _act(harness, app, rx, BOB, second.ref, f"!merge {first.ref}")
    assert cases(app)[1].merged_into_id == first.id
    seen = len(rx.to(SAM))
    _act(harness, app, rx, ALICE, first.ref, "!steering")
    reports = [m for m in rx.to(SAM)[seen:] if "Case report for the steering committee" in str(parsed(m)["Subject"])]
    assert reports, "no steering report"
    text = text_of(reports[-1])
    assert "identities are left out" in text
    named = [who for who in (REPORTER, OTHER, "Robin Reporter", "Sam Second") if who in text]
    assert not named, f"the steering report names {named}"


def test_a_case_reopened_after_closing_is_not_escalated_to_steering_at_once(harness, smtp_receiver, capsys):
    """BROKE. The committee answers Robin and closes the case on day 0 (a resolution: the promise
    is kept). On day 10 Bob sends `!reopen`. The very daemon run that applies it mails the
    committee a reminder and an "Overdue" mail and Sam Steering "Overdue: case ..." (level 2,
    "escalated to steering"), and Bob's own confirmation states "Response to the reporter (!reply) due: ... (overdue)". README: a response
    is "`!reply` or closing", due within 7 days "of each previous response"
    (cases/handlers.py reopen; core/sla.py counts from `last_response_at`, the last `!reply`)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint."))
    [case] = cases(app)
    _act(harness, app, rx, ALICE, case.ref, "!ack")
    _act(harness, app, rx, ALICE, case.ref, "!reply", "Dear Robin, we spoke with Pat; we take no further action.")
    _act(harness, app, rx, ALICE, case.ref, "!decide no-action")
    _act(harness, app, rx, ALICE, case.ref, "!close")
    assert cases(app)[0].status == "closed"
    harness.clock.advance(days=10)
    run_once(app)
    seen = len(rx.to(SAM))
    _act(harness, app, rx, BOB, case.ref, "!reopen")
    assert cases(app)[0].status == "investigating"
    harness.clock.advance(minutes=1)
    due = escalations_at(harness, capsys, harness.clock() + timedelta(minutes=1))
    run_once(app)
    to_steering = [text_of(m).splitlines()[3] for m in rx.to(SAM)[seen:]]
    assert not due and not to_steering, f"escalations --at: {[(e.get('rule'), e.get('level')) for e in due]}; to steering: {to_steering}"


def test_an_urgent_report_merged_into_an_older_case_is_not_escalated_to_steering_at_once(harness, smtp_receiver, capsys):
    """BROKE. Robin reports at 09:00 (not urgent; acknowledgement promised by tomorrow 09:00). At
    19:00 Sam reports the same man and feels unsafe (urgent: acknowledgement promised by 20:00;
    the committee got the URGENT copy). Bob merges Sam's case into Robin's at once, before anyone
    acknowledged. The merged case is urgent and its hour is counted from Robin's 09:00 report
    (acknowledgement "overdue since 10:00", escalated to steering since 12:00): the daemon run that
    applies the merge mails Sam Steering "Overdue: case ... (URGENT)" while no promise was broken
    (cases/merge.py: `target.urgent = target.urgent or source.urgent` on the older clock start)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint."))
    harness.clock.advance(hours=10)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint",
                              body="Pat followed me to my hotel tonight and I feel unsafe."))
    first, second = cases(app)
    assert second.urgent and not first.urgent
    seen = len(rx.to(SAM))
    _act(harness, app, rx, BOB, second.ref, f"!merge {first.ref}")
    assert cases(app)[1].merged_into_id == first.id
    harness.clock.advance(minutes=1)
    due = escalations_at(harness, capsys, harness.clock() + timedelta(minutes=1))
    run_once(app)
    to_steering = [text_of(m).splitlines()[3] for m in rx.to(SAM)[seen:]]
    assert not due and not to_steering, f"escalations --at: {[(e.get('rule'), e.get('level')) for e in due]}; to steering: {to_steering}"


FORWARDED_THREAT = """Please see below what he sent me after the sprint.

---------- Forwarded message ---------
From: Pat Person <pat@example.net>
Date: Mon, 23 Nov 2026 at 22:10
Subject: !concerns Carol !ack
To: Robin Reporter <reporter@example.net>

You will regret reporting me. Carol is a friend of mine.
"""


def _thunderbird_reply(copy, sender: str, suffix: str, text: str) -> bytes:
    """Thunderbird's reply: the whole References chain, "On ... wrote:" and the copy quoted with "> "."""
    import email
    import email.policy
    original = parsed(copy)
    quoted = "\n".join(">" + (" " + line if line else "") for line in text_of(copy).splitlines())
    body = f"{text}\n\nOn 24/11/2026 09:01, Test Conduct Committee wrote:\n{quoted}\n"
    msg = email.message_from_bytes(reply(copy, sender, suffix, body), policy=email.policy.default)
    del msg["References"]
    msg["References"] = f"{original['References'] or ''} {original['Message-ID']}".strip()
    return msg.as_bytes()


def test_a_subject_in_a_forward_pasted_into_the_report_cannot_cancel_a_recusal(harness, smtp_receiver):
    """BROKE. Robin's report pastes Pat's message to him as a Gmail forward block whose "Subject:"
    line Pat wrote: `!concerns Carol !ack`. Alice answers her copy from Thunderbird (quoting it,
    full References) with `!concerns Carol !ack` in the subject: she is told both were "not
    applied, because an earlier message of this thread already has it in its subject"; Carol stays
    on the case and gets Robin's next follow-up. The accused chose a subject that keeps his friend
    on the committee handling his case (cases/threads.py earlier_subjects reads `msg.forwarded`,
    which mail/quotes.py finds behind `>` quote marks too)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body=FORWARDED_THREAT))
    [case] = cases(app)
    assert rx.to(CAROL)
    harness.clock.advance(minutes=2)
    step(harness, app, _thunderbird_reply(about(rx, ALICE, case.ref)[0], ALICE, "!concerns Carol !ack",
                                          "Carol should not see this one."))
    carol_before = len(rx.to(CAROL))
    harness.clock.advance(minutes=2)
    step(harness, app, report(subject=f"Re: [conduct #{case.ref}] Your report has been received", body="He wrote again."))
    [after] = cases(app)
    told = [line for m in rx.to(ALICE) for line in text_of(m).splitlines() if "not applied" in line]
    assert CAROL in after.recused_members() and after.human_ack_at is not None, f"Alice was told: {told}"
    assert len(rx.to(CAROL)) == carol_before


def test_a_steering_member_answering_the_case_report_with_history_gets_no_identities(harness, smtp_receiver):
    """BROKE. The committee works Robin's case (not routed to the steering members) and sends the
    policy's report to the steering committee (`!steering`): "The reporter's and witnesses'
    identities are left out of this report". Sam Steering answers that mail with `!history` in the
    subject and receives "party: reporter Robin Reporter <reporter@example.net>", the witness's
    address and every internal note with its text (core/routing.py may_see admits any steering
    member not recused; cases/steering.py gives the report a case reply token)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint."))
    [case] = cases(app)
    _act(harness, app, rx, ALICE, case.ref, "!ack", "Robin is credible; Wes saw it too.")
    _act(harness, app, rx, ALICE, case.ref, "!party witness wes@example.net Wes Witness")
    _act(harness, app, rx, ALICE, case.ref, "!steering")
    reports = [m for m in rx.to(SAM) if "Case report for the steering committee" in str(parsed(m)["Subject"])]
    assert reports and REPORTER not in text_of(reports[-1])
    seen = len(rx.to(SAM))
    harness.clock.advance(minutes=2)
    step(harness, app, reply(reports[-1], SAM, "!history"))
    answer = "\n".join(text_of(m).split("Commands go in the subject")[0] for m in rx.to(SAM)[seen:])
    shown = [w for w in (REPORTER, "Robin Reporter", "wes@example.net", "Robin is credible") if w in answer]
    assert not shown, f"Sam's !history shows {shown}"
