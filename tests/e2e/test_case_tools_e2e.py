"""`!merge`, `!title` and `!history` as members use them, over real Dovecot + aiosmtpd + SQLite/PostgreSQL:
a merge never shows a member anything they are excluded from, a committee title never reaches a
reporter or a party, and a history shows its reader only what they may see."""

from __future__ import annotations

import contextlib
import io
import json
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import func, select

from conduct_inbox.cli import main
from conduct_inbox.core import tokens
from conduct_inbox.store.models import Event, InboundMessage
from tests.harness import SECRET, parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, PAT, REPORTER, cases, latest, reply, step


def readable(record) -> str:
    """What the recipient can read: the decoded subject and every text part."""
    msg = parsed(record)
    parts = [str(msg["Subject"])]
    for part in msg.walk():
        if not part.is_multipart() and part.get_content_maintype() == "text":
            parts.append(part.get_content())
    return "\n".join(parts)


def copy_of(rx, member: str, ref: str):
    """The first mail `member` got about case `ref`."""
    return next(m for m in rx.to(member) if f"#{ref}]" in str(parsed(m)["Subject"]))


def forged_token_mail(member: str, ref: str, subject: str, body: str = "") -> bytes:
    """Mail from `member` on their own (validly signed) token for case `ref`, as if they had it."""
    msg = EmailMessage()
    msg["From"] = member
    msg["To"] = tokens.reply_address("conduct", "example.org", tokens.mint(SECRET.encode(), "case", ref, member))
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body or "see subject")
    return msg.as_bytes()


# ----- !merge -------------------------------------------------------------------------------------


def test_merge_refused_when_recusals_differ_and_for_cases_the_sender_cannot_act_on(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="Someone kept interrupting me at the sprint. FIRST-1"))
    step(harness, app, report(subject="The sprint again", body="At the sprint CC laughed when it happened. SECOND-2"))
    first, second = cases(app)
    assert second.recused_members() == {CAROL} and first.recused_members() == set()
    bob_before, reporter_before = len(rx.to(BOB)), len(rx.to(REPORTER))

    step(harness, app, reply(copy_of(rx, ALICE, first.ref), ALICE, f"!merge {second.ref}"))
    refusal = text_of(latest(rx, ALICE))
    assert "do not exclude the same members" in refusal and "Nothing was merged" in refusal
    # Carol's own copy of the first case, answered with a merge into a case she is excluded from:
    # the answer is the one for a case that does not exist.
    step(harness, app, reply(copy_of(rx, CAROL, first.ref), CAROL, f"!merge {second.ref}"))
    hidden = text_of(latest(rx, CAROL))
    step(harness, app, reply(copy_of(rx, CAROL, first.ref), CAROL, "!merge 2099-0999"))
    unknown = text_of(latest(rx, CAROL))
    assert "there is no such case that you can merge into" in hidden and second.ref not in hidden
    assert hidden == unknown
    step(harness, app, reply(copy_of(rx, ALICE, first.ref), ALICE, f"!merge {first.ref}"))
    assert "cannot be merged into itself" in text_of(latest(rx, ALICE))

    assert [(c.status, c.merged_into_id) for c in cases(app)] == [("new", None), ("new", None)]
    assert len(rx.to(BOB)) == bob_before  # refusals go to the sender alone
    assert len(rx.to(REPORTER)) == reporter_before
    assert not any("SECOND-2" in readable(m) for m in rx.to(CAROL))


def test_merge_with_the_same_recusals_moves_everything_and_old_tokens_act_on_the_target(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="At the sprint CC saw him push me. FIRST-1"))
    step(harness, app, report(subject="Forgot to say", body="Writing again about the sprint; CC was there. SECOND-2"))
    first, second = cases(app)
    assert first.recused_members() == second.recused_members() == {CAROL}
    bob_first = copy_of(rx, BOB, first.ref)
    step(harness, app, reply(copy_of(rx, ALICE, first.ref), ALICE, "", "Looks like the same incident. NOTE-3"))
    reporter_before = len(rx.to(REPORTER))

    step(harness, app, reply(copy_of(rx, ALICE, first.ref), ALICE, f"!merge {second.ref}"))
    merged, target = cases(app)
    assert (merged.status, merged.merged_into_id, merged.closed_at is not None) == ("closed", target.id, True)
    assert target.status == "new" and target.recused_members() == {CAROL}
    assert [p.role for p in target.parties] == ["reporter"]  # the same reporter, once
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(InboundMessage).where(InboundMessage.case_id == merged.id)) == 0
        assert session.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.case_id == target.id, InboundMessage.kind == "note")) == 1
        assert "case_merged" in session.scalars(select(Event.action).where(Event.case_id == target.id)).all()
    confirmation = latest(rx, ALICE)
    assert f"#{target.ref}]" in str(parsed(confirmation)["Subject"]) and "merged into case" in text_of(confirmation)
    assert f"merged case {merged.ref} into this case" in text_of(latest(rx, BOB))
    assert len(rx.to(REPORTER)) == reporter_before  # the reporter is told nothing
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["cases", "show", merged.ref, "--json", "--config", str(harness.config_path)]) == 0
    shown = json.loads(out.getvalue())
    assert (shown["status"], shown["merged_into"], shown["messages"], shown["parties"]) == ("closed", target.ref, [], [])

    # Bob answers his copy of the merged case, on its token: the command acts on the target.
    step(harness, app, reply(bob_first, BOB, "!ack !title Sprint push"))
    merged, target = cases(app)
    assert target.human_ack_at is not None and target.assignee == BOB and target.title == "Sprint push"
    assert merged.human_ack_at is None and merged.status == "closed"
    assert f"#{target.ref}]" in str(parsed(latest(rx, BOB))["Subject"])

    # The reporter answers the acknowledgement of the merged case: it joins the target.
    first_ack = next(m for m in rx.to(REPORTER) if f"#{merged.ref}]" in str(parsed(m)["Subject"]))
    step(harness, app, reply(first_ack, REPORTER, "", "One more detail. FOLLOWUP-4", to="conduct@example.org"))
    with app.sessions() as session:
        row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert (row.kind, row.case_id) == ("followup", target.id)
    assert "FOLLOWUP-4" in text_of(latest(rx, ALICE))

    # Carol, excluded from both, on a validly signed token of the merged case: nothing happens, and
    # she is answered as for a reference that does not exist (naming neither the target nor the merge).
    before = len(rx.messages)
    step(harness, app, forged_token_mail(CAROL, merged.ref, f"Re: [conduct #{merged.ref}] x !status investigating"))
    assert cases(app)[1].status == target.status and len(rx.messages) == before + 1
    [answer] = rx.to(CAROL)
    assert f"there is no case {merged.ref} you can act on" in text_of(answer) and target.ref not in text_of(answer)


# ----- !title -------------------------------------------------------------------------------------


def test_committee_title_never_reaches_the_reporter_or_a_party(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(subject="What happened on Tuesday"))
    [case] = cases(app)
    alice_copy = rx.to(ALICE)[0]
    step(harness, app, reply(alice_copy, ALICE, "!title Sprint incident TITLEWORD!reply"))
    [case] = cases(app)
    assert case.title == "Sprint incident TITLEWORD reply"
    announcement = latest(rx, BOB)
    assert str(parsed(announcement)["Subject"]) == f"[conduct #{case.ref}] Sprint incident TITLEWORD reply"

    # Bob answers the announcement under the new title with a note: it is a note, nothing is sent out.
    reporter_before = len(rx.to(REPORTER))
    step(harness, app, reply(announcement, BOB, "", "Agreed on the title."))
    assert len(rx.to(REPORTER)) == reporter_before
    assert "Agreed on the title." in text_of(latest(rx, CAROL))

    step(harness, app, reply(alice_copy, ALICE, f"!party reported {PAT} Pat Person"))
    step(harness, app, reply(alice_copy, ALICE, "!reply", "Thank you; we are looking into it. OUT-1"))
    step(harness, app, reply(alice_copy, ALICE, "!send reported", "Please stop. OUT-2"))
    follow = reply(rx.to(REPORTER)[-1], REPORTER, "", "Thanks. FOLLOWUP-3", to="conduct@example.org")
    step(harness, app, follow)
    step(harness, app, reply(latest(rx, REPORTER), REPORTER, "", "And one more. FOLLOWUP-4", to="conduct@example.org"))

    outside = rx.to(REPORTER) + rx.to(PAT)
    assert any("OUT-1" in readable(m) for m in outside) and any("OUT-2" in readable(m) for m in outside)
    for mail in outside:
        assert "TITLEWORD" not in readable(mail) and "Sprint incident" not in readable(mail)
        assert "Tuesday" not in str(parsed(mail)["Subject"])
    # Every committee mail since carries the committee's title.
    for member in (ALICE, BOB, CAROL):
        assert "TITLEWORD" in str(parsed(latest(rx, member))["Subject"])


# ----- !history -----------------------------------------------------------------------------------


def test_history_shows_the_sender_only_what_they_may_see(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report())
    [case] = cases(app)
    alice_copy, bob_copy, carol_copy = rx.to(ALICE)[0], rx.to(BOB)[0], rx.to(CAROL)[0]
    step(harness, app, reply(bob_copy, BOB, "", "I know the person well. BOBNOTE-1"))
    step(harness, app, reply(bob_copy, BOB, "!ack !urgent"))
    step(harness, app, reply(alice_copy, ALICE, "", "Let us hear the venue first. ALICENOTE-2"))
    step(harness, app, reply(alice_copy, ALICE, "!concerns Bob Builder"))
    step(harness, app, reply(carol_copy, CAROL, "!reply", "We are looking into it. REPLYTEXT-3"))
    step(harness, app, reply(carol_copy, CAROL, "!decide no-action"))
    bob_before, carol_before = len(rx.to(BOB)), len(rx.to(CAROL))

    step(harness, app, reply(alice_copy, ALICE, "!history"))
    history = text_of(latest(rx, ALICE))
    assert "the history of this case" in history
    for shown in ("ALICENOTE-2", "Alice Example: !concerns", "Carol Chen: !reply", "mail to the reporter (reply)",
                  "Carol Chen: !decide", "decision: no-action (effective; by Carol Chen)", "report received",
                  "excluded: Bob Builder (the case concerns them)", "party: reporter Robin Reporter <reporter@example.net>"):
        assert shown in history, shown
    for hidden in ("BOBNOTE-1", "Bob Builder: !ack", "Bob Builder: !urgent", "I know the person"):
        assert hidden not in history, hidden
    assert len(rx.to(CAROL)) == carol_before  # to the sender only
    assert len(rx.to(BOB)) == bob_before

    # Bob, excluded, asks on his old token: nothing, not even a refusal.
    step(harness, app, reply(bob_copy, BOB, "!history"))
    assert len(rx.to(BOB)) == bob_before
    assert not any("REPLYTEXT-3" in readable(m) or "history of this case" in readable(m) for m in rx.to(BOB))


def test_merge_keeps_the_stronger_of_two_exclusions(harness, smtp_receiver):
    """A member excluded by hand from one case and only automatically from the other stays excluded
    by hand: `!include` cannot bring them back into what the other case holds."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="At the sprint CC was there when it happened. FIRST-1"))
    step(harness, app, report(subject="Another thing", body="Something else happened. SECOND-2"))
    first, second = cases(app)
    step(harness, app, reply(copy_of(rx, ALICE, second.ref), ALICE, "!concerns Carol Chen"))
    first, second = cases(app)
    assert first.recused_members() == second.recused_members() == {CAROL}
    carol_before = len(rx.to(CAROL))
    step(harness, app, reply(copy_of(rx, ALICE, second.ref), ALICE, f"!merge {first.ref}"))
    merged, target = sorted(cases(app), key=lambda c: c.id != second.id)
    assert merged.merged_into_id == target.id == first.id
    [recusal] = [r for r in target.recusals if r.member_email == CAROL]
    assert (recusal.active, recusal.automatic) == (True, False)
    step(harness, app, reply(copy_of(rx, BOB, first.ref), BOB, "!include Carol Chen"))
    assert "only an automatic recusal" in text_of(latest(rx, BOB))
    assert len(rx.to(CAROL)) == carol_before
    assert not any("FIRST-1" in readable(m) for m in rx.to(CAROL))
