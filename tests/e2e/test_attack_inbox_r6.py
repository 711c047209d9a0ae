"""Sixth attack round on issue 16, end to end over real Dovecot + aiosmtpd + the test database:
a steering member who works one case (escalated to the steering members) pulling another case
into view with `!merge`.

Each test asserts the SAFE behaviour: it fails while the attack works. Each docstring says
whether the attack HELD or BROKE when it was written.
"""

from __future__ import annotations

from conduct_inbox.shell.daemon import run_once
from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, SAM, about, cases, gmail_reply, reply, step

OTHER = "second@example.net"


def test_a_steering_member_handed_one_case_cannot_read_another_by_merging(harness, smtp_receiver):
    """BROKE. Robin's report nobody acknowledged is escalated twice: Sam Steering gets the
    second-level escalation and from then on works on it. Sam Second's unrelated report (case B)
    is acknowledged and worked by the committee (quorum met): Sam Steering does not work on B.
    From Gmail, Sam answers his escalation with `!merge B` and then `!history`: the merge is
    applied (Robin's case is closed into B, B's members get "Sam Steering merged ..."), the
    escalation record moves with it so B now counts as escalated, and the history in Sam's inbox
    holds B's reporter's name and address, report text and internal notes. cases/merge.py
    `_target` checks `routing.may_see` (every non-recused steering member), not `works_on`."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint."))
    [first] = cases(app)
    for _ in range(3):
        harness.clock.advance(hours=20)
        run_once(app)
    escalations = about(rx, SAM, first.ref)
    assert escalations, "no escalation reached the steering members"
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="Pat touched me at the party",
                              body="Pat touched me at the party. Please keep my name to the committee."))
    second = [c for c in cases(app) if c.ref != first.ref][0]
    harness.clock.advance(minutes=2)
    step(harness, app, reply(about(rx, ALICE, second.ref)[-1], ALICE, "!ack"))
    seen = len(rx.to(SAM))
    harness.clock.advance(minutes=2)
    step(harness, app, gmail_reply(escalations[-1], SAM, f"!merge {second.ref}"))
    harness.clock.advance(minutes=2)
    step(harness, app, gmail_reply(escalations[-1], SAM, "!history"))
    got = "\n".join(str(parsed(m)["Subject"]) + "\n" + text_of(m) for m in rx.to(SAM)[seen:])
    shown = [w for w in (OTHER, "Sam Second", "Pat touched", "keep my name") if w in got]
    assert not shown, f"Sam reads case {second.ref}: {shown}"


def test_a_report_whose_subject_says_physical_danger_reaches_the_committee_as_urgent(harness, smtp_receiver):
    """BROKE. Robin's report has the subject "I am in physical danger - please help" and the body
    "He followed me home from the meetup again tonight." Alice's copy arrives without URGENT, the
    acknowledgement promises 24 hours rather than one: cases/reports.py `is_urgent` never reads the
    subject."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(subject="I am in physical danger - please help",
                              body="He followed me home from the meetup again tonight."))
    [case] = cases(app)
    copies = about(rx, ALICE, case.ref)
    assert copies and "URGENT" in str(parsed(copies[0])["Subject"]), [str(parsed(m)["Subject"]) for m in copies]
