"""Fifth attack round on issue 16, end to end over real Dovecot + aiosmtpd + the test database:
a steering member outside the case reading reporters' addresses from what the daemon answers to
the case report's reply token; what escalations to the steering members carry.

Each test asserts the SAFE behaviour: it fails while the attack works. Each docstring says
whether the attack HELD or BROKE when it was written.
"""

from __future__ import annotations

import pytest

from conduct_inbox.shell.daemon import run_once
from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, BOB, REPORTER, SAM, about, cases, gmail_reply, reply, step

OTHER = "second@example.net"


def _act(harness, app, rx, member: str, ref: str, suffix: str, body: str = "") -> None:
    harness.clock.advance(minutes=2)
    step(harness, app, reply(about(rx, member, ref)[-1], member, suffix, body))


def test_a_steering_member_answering_the_case_report_with_close_learns_no_reporter(harness, smtp_receiver):
    """BROKE. Robin and Sam Second report one incident; Bob merges the cases; Alice decides, answers
    Robin (`!reply reporter@example.net`) and sends the steering committee the case report
    (`!steering`, "identities are left out"). Sam Steering (not working the case: quorum met)
    answers the report from Gmail with `!close`: the refusal in his inbox reads "!close: not every
    reporter of this case has been answered yet (second@example.net: !reply ADDRESS)".
    cases/decisions.py close names waiting reporters; cases/desk.py answers any steering member
    `routing.may_see` admits."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint."))
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint", body="Pat shoved me too."))
    first, second = cases(app)
    _act(harness, app, rx, BOB, second.ref, f"!merge {first.ref}")
    _act(harness, app, rx, ALICE, first.ref, "!ack")
    _act(harness, app, rx, ALICE, first.ref, "!decide no-action")
    _act(harness, app, rx, ALICE, first.ref, f"!reply {REPORTER}", "Dear Robin, we decided to take no action.")
    _act(harness, app, rx, ALICE, first.ref, "!steering")
    reports = [m for m in rx.to(SAM) if "Case report for the steering committee" in str(parsed(m)["Subject"])]
    assert reports and OTHER not in text_of(reports[-1]) and REPORTER not in text_of(reports[-1])
    seen = len(rx.to(SAM))
    harness.clock.advance(minutes=2)
    step(harness, app, gmail_reply(reports[-1], SAM, "!close"))
    got = "\n".join(str(parsed(m)["Subject"]) + "\n" + text_of(m) for m in rx.to(SAM)[seen:])
    assert got, "Sam got no answer at all"
    shown = [w for w in (REPORTER, OTHER, "Robin Reporter", "Sam Second") if w in got]
    assert not shown, f"Sam's answer names {shown}"


@pytest.mark.xfail(strict=True, reason="departure (README): an escalation to the steering members hands them the case (they then work on it), so it carries the case subject like any committee mail")
def test_an_escalation_to_the_steering_members_carries_no_reporters_subject(harness, smtp_receiver):
    """BROKE. Robin's subject is "Robin Reporter: Pat Person groped me at the sprint". Nobody
    acknowledges; two days later the daemon's escalation run mails Sam Steering (who does not work
    the case) with that subject: the reporter's name, the accused's name and the allegation.
    The escalation's own text ends "This message carries only references and ids".
    cases/escalate.py uses the committee subject (the case title) for level-2 escalations."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(subject="Robin Reporter: Pat Person groped me at the sprint"))
    seen = len(rx.to(SAM))
    for _ in range(3):
        harness.clock.advance(hours=20)
        run_once(app)
    to_sam = rx.to(SAM)[seen:]
    assert to_sam, "no escalation reached the steering members"
    shown = sorted({w for m in to_sam for w in ("Robin", "groped", "Pat Person")
                    if w in str(parsed(m)["Subject"]) + text_of(m)})
    assert not shown, f"Sam's escalation shows {shown}: {[str(parsed(m)['Subject']) for m in to_sam]}"


@pytest.mark.harness(extra_config="[retention]\nclosed_case_days = 30\n")
def test_a_follow_up_to_a_purged_case_about_a_member_never_reaches_that_member(harness, smtp_receiver):
    """BROKE. Robin reports Carol Chen by name: Carol is excluded and hears nothing. The committee
    closes the case (`!close silent`); 31 days later the daemon's housekeeping purges it
    (`retention.closed_case_days = 30`), recusals included. Robin writes again under his reference,
    "She did it again last night": Carol's inbox gets the follow-up copy ("Message from someone who
    is not a party to the case ... From: Robin Reporter <reporter@example.net>") — the accused
    member learns who reported her, with the reference and a reply token (shell/retention.py
    deletes Recusal rows; the follow-up joins the purged case, whose audience then excludes
    nobody)."""
    from conduct_inbox.shell.daemon import housekeeping_once
    from tests.mailers import CAROL
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Carol Chen kept touching me at the sprint."))
    [case] = cases(app)
    assert not about(rx, CAROL, case.ref)
    _act(harness, app, rx, ALICE, case.ref, "!close silent Robin withdrew the report")
    harness.clock.advance(days=31)
    housekeeping_once(app)
    assert cases(app)[0].purged_at is not None
    harness.clock.advance(minutes=5)
    step(harness, app, report(subject=f"Re: [conduct #{case.ref}] Your report has been received",
                              body="She did it again last night."))
    assert about(rx, ALICE, case.ref), "the follow-up reached nobody"
    got = [str(parsed(m)["Subject"]) for m in about(rx, CAROL, case.ref)]
    assert not got, f"Carol got {got}: {[text_of(m)[:300] for m in about(rx, CAROL, case.ref)]}"
