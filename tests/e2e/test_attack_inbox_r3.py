"""Third attack round on issue 16, end to end over real Dovecot + aiosmtpd + the test database:
what a reported person learns from a merge, a steering member's `!reconsider` of a purged case
kept from them, `!history` after the merged-in case is purged.

Each test asserts the SAFE behaviour: it fails while the attack works. Each docstring says
whether the attack HELD or BROKE when it was written.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import run_once
from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, SAM, about, cases, personal_address, readable, reply, step

OTHER = "second@example.net"
PAT = "pat@example.net"
NAMES_SAM = "At the meetup Sam Steering made fun of my accent in front of everyone."
NAMES_CAROL = "At the meetup Carol Chen made fun of my accent in front of everyone."


def written(sender: str, to: str, subject: str, body: str = "(no text)") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    return msg.as_bytes()


def unknown_ref(ref: str) -> str:
    head, _, tail = ref.rpartition("-")
    return f"{head}-{int(tail) + 900:0{len(tail)}d}"


def _act(harness, app, rx, member: str, ref: str, suffix: str, body: str = "") -> None:
    harness.clock.advance(minutes=2)
    step(harness, app, reply(about(rx, member, ref)[0], member, suffix, body))


def test_the_reported_person_of_two_merged_reports_never_hears_the_other_cases_reference(harness, smtp_receiver):
    """BROKE. Robin reports Pat (case 1), Sam reports Pat for the same incident (case 2). Pat is
    recorded as the reported person on both and asked for their side on case 2 only: Pat knows
    case 2's reference, nothing else. Case 2 is merged into case 1; the committee's next
    `!send reported` reaches Pat with subject `[conduct #<case 1>] Message from ...`: the accused
    learns that a second, separate report about them exists. README: parties of the merged-in
    case "keep hearing under its own reference (the merge stays internal to the committee)".
    cases/merge.py _move_parties keeps the target's row for the same (role, address) and deletes
    the merged-in row, whose `known_ref` was the reference Pat knew."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint. FIRST-1"))
    harness.clock.advance(minutes=5)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint", body="Pat shoved me too. SECOND-2"))
    first, second = cases(app)
    _act(harness, app, rx, ALICE, first.ref, f"!party reported {PAT} Pat Person")
    _act(harness, app, rx, ALICE, second.ref, f"!party reported {PAT} Pat Person")
    _act(harness, app, rx, ALICE, second.ref, "!send reported", "Please tell us your side of what happened at the sprint.")
    assert rx.to(PAT) and all(first.ref not in readable(m) for m in rx.to(PAT))
    _act(harness, app, rx, BOB, second.ref, f"!merge {first.ref}")
    assert cases(app)[1].merged_into_id == first.id
    seen = len(rx.to(PAT))
    _act(harness, app, rx, ALICE, first.ref, "!send reported", "We have your answer and will be in touch soon.")
    later = rx.to(PAT)[seen:]
    assert later, "Pat got nothing"
    assert all(first.ref not in readable(m) for m in later), \
        f"the reported person hears under {first.ref}: {[str(parsed(m)['Subject']) for m in later]}"


def test_reconsider_of_a_purged_case_kept_from_a_steering_member_is_answered_as_unknown(harness, smtp_receiver):
    """BROKE. The report names Sam Steering (excluded, never had mail about it). The case is
    closed and purged (`conduct-inbox purge`, `retention.closed_case_days = 30`), its recusals with
    it. Sam writes `!reconsider REF` to his personal address: a reference that does not exist is
    answered "there is no case REF you can act on"; the purged case is opened for reconsideration,
    Sam gets its "Reconsideration opened" mail with its (overdue) due times, and the case is
    routed to him from then on (cases/steering.py reconsider: no `purged_at` check; the recusal
    that kept him out was deleted by the purge)."""
    harness.extra_config = "[retention]\nclosed_case_days = 30\n"
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body=NAMES_SAM))
    [case] = cases(app)
    assert case.recused_members() == {SAM}
    _act(harness, app, rx, ALICE, case.ref, "!close silent reported again by phone")
    assert cases(app)[0].status == "closed"
    harness.clock.advance(days=40)
    assert main(["purge", "--config", str(harness.config_path), "--at", harness.clock().isoformat()]) == 0
    assert cases(app)[0].purged_at is not None
    app = harness.app()
    run_once(app)
    ghost = unknown_ref(case.ref)

    def answers(ref: str) -> list[str]:
        seen = len(rx.to(SAM))
        harness.clock.advance(minutes=2)
        step(harness, app, written(SAM, personal_address(SAM), f"!reconsider {ref}"))
        texts = [str(parsed(m)["Subject"]) + "\n" + text_of(m) for m in rx.to(SAM)[seen:]
                 if "Weekly overview" not in str(parsed(m)["Subject"])]
        return [t.replace(ref, "REF") for t in texts]

    unknown = answers(ghost)
    kept = answers(case.ref)
    assert unknown and kept == unknown, f"unknown reference: {unknown!r}; the purged case kept from Sam: {kept!r}"
    assert cases(app)[0].status == "closed"


def _full_reply(copy, sender: str, suffix: str, body: str = "") -> bytes:
    """A member's reply as mail clients write it: References = the original's References + its Message-ID."""
    import email
    import email.policy
    msg = email.message_from_bytes(reply(copy, sender, suffix, body), policy=email.policy.default)
    original = parsed(copy)
    del msg["References"]
    msg["References"] = f"{original['References'] or ''} {original['Message-ID']}".strip()
    return msg.as_bytes()


def test_an_outsider_with_the_computed_root_message_id_cannot_cancel_a_members_commands(harness, smtp_receiver):
    """BROKE. Every committee mail about a case references the case's root Message-ID,
    `case-REF.<sha256(committee address + NUL + REF)[:20]>@domain` (mail/conversation.py
    case_root_id): public inputs only. Pat, the reported person, mails conduct@ once with that
    Message-ID and the subject `Re: [conduct #REF] !concerns Carol !ack`. Alice then answers her
    copy of the report the way every client does (References: the copy's References, then its
    Message-ID) with `!concerns Carol !ack`: she is told both were "not applied, because an
    earlier message of this thread already has it in its subject", Carol stays on the case and
    keeps receiving it, and the acknowledgement clock keeps running (cases/threads.py
    earlier_subjects takes the subject of any stored inbound message whose Message-ID the reply
    references, whoever sent it)."""
    import hashlib
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Pat Person shoved me at the sprint. FIRST-1"))
    [case] = cases(app)
    digest = hashlib.sha256(("conduct@example.org\0" + case.ref).encode()).hexdigest()[:20]
    root = f"case-{case.ref}.{digest}@example.org"
    copy = about(rx, ALICE, case.ref)[0]
    assert root in str(parsed(copy)["References"])
    msg = EmailMessage()
    msg["From"] = f"Pat Person <{PAT}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: [conduct #{case.ref}] !concerns Carol !ack"
    msg["Message-ID"] = f"<{root}>"
    msg.set_content("Just checking in.")
    harness.clock.advance(minutes=2)
    step(harness, app, msg.as_bytes())
    carol_before = len(rx.to(CAROL))
    harness.clock.advance(minutes=2)
    step(harness, app, _full_reply(copy, ALICE, "!concerns Carol !ack"))
    [after] = cases(app)
    assert CAROL in after.recused_members() and after.human_ack_at is not None, \
        "Alice's commands were cancelled: " + text_of(rx.to(ALICE)[-1])[:300]
    assert len(rx.to(CAROL)) == carol_before


def test_a_report_merged_into_an_old_spam_case_is_not_escalated_to_steering_at_once(harness, smtp_receiver):
    """BROKE. The spam filter flags a message on day 0 (no acknowledgement, no clock). On day 3
    the real report of the same incident arrives (its copy: acknowledgement due day 4); Bob
    merges it into the spam case. The daemon's run that applies the merge mails the committee
    "Overdue: Human acknowledgement overdue since" day 1 and Sam Steering "Human acknowledgement
    still overdue at Thu 26 Nov 2026 09:00 UTC (escalated to steering)" about a report minutes old
    (cases/merge.py: `created_at` becomes the spam case's, the acknowledgement clock's start)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(sender="junk@example.net", name="Junk", subject="The sprint",
                              body="Cheap tickets.", headers={"X-Spam-Flag": "YES"}))
    harness.clock.advance(days=3)
    step(harness, app, report(sender=OTHER, name="Sam Second", subject="The sprint", body="He kept making comments. SECOND-2"))
    spam, real = cases(app)
    assert spam.spam and not real.spam
    seen = len(rx.to(SAM))
    _act(harness, app, rx, BOB, real.ref, f"!merge {spam.ref}")
    assert cases(app)[1].merged_into_id == spam.id
    harness.clock.advance(minutes=1)
    run_once(app)
    assert len(rx.to(SAM)) == seen, f"to steering: {[text_of(m)[:200] for m in rx.to(SAM)[seen:]]}"
