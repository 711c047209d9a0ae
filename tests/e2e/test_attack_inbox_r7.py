"""Seventh attack round on issue 16, end to end over real Dovecot + aiosmtpd + the test database:
the one rule for who receives a case's mail (`cases.steering_since`, `routing.Exclusions`).

Each test asserts the SAFE behaviour: it fails while the attack works. Each docstring says
whether the attack HELD or BROKE when it was written.
"""

from __future__ import annotations

from conduct_inbox.shell.daemon import run_once
from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, SAM, about, cases, reply, step

OTHER = "second@example.net"


def test_a_committee_case_merged_into_an_escalated_one_is_not_shown_to_the_steering_member(harness, smtp_receiver):
    """BROKE. Robin's report nobody acknowledged is escalated twice: Sam Steering works on it.
    Sam Second's report (case B) is acknowledged by Alice, who notes "Sam Second asked us to keep
    this from the steering committee". Alice then merges B into Robin's case (`!merge A`): Sam's
    inbox receives B's reporter's name and address and the note (merge announcement / later
    mail). cases/merge.py `_target` refuses only when `set(recused(source)) != set(recused(target))`
    and ignores `Exclusions.steering_works` (the target's `steering_since`)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint."))
    [first] = cases(app)
    for _ in range(3):
        harness.clock.advance(hours=20)
        run_once(app)
    assert about(rx, SAM, first.ref), "no escalation reached the steering members"
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="Pat touched me at the party",
                              body="Pat touched me at the party. Please keep my name to the committee."))
    second = [c for c in cases(app) if c.ref != first.ref][0]
    harness.clock.advance(minutes=2)
    step(harness, app, reply(about(rx, ALICE, second.ref)[-1], ALICE, "!ack",
                             "Sam Second asked us to keep this from the steering committee."))
    seen = len(rx.to(SAM))
    harness.clock.advance(minutes=2)
    step(harness, app, reply(about(rx, ALICE, second.ref)[-1], ALICE, f"!merge {first.ref}"))
    harness.clock.advance(minutes=2)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject=f"Re: [conduct #{second.ref}] Your report",
                              body="He came to my table again tonight."))
    got = "\n".join(str(parsed(m)["Subject"]) + "\n" + text_of(m) for m in rx.to(SAM)[seen:])
    shown = [w for w in (OTHER, "Sam Second", "Pat touched", "keep this from the steering", "my table again") if w in got]
    assert not shown, f"Sam reads case {second.ref}: {shown}"
