"""Attacks on issue 16 (announcements, !merge, !title, !history, weekly overview, threading, the
"where the case stands" block), end to end over real Dovecot + aiosmtpd + the test database.

Each test asserts the SAFE behaviour: it fails when the attack works. Every test says in its
docstring whether the attack HELD or BROKE when it was written; every one that broke is fixed
(the fix is named in the commit that made it pass). A recused member who had mail about the case
before the exclusion still gets silence when writing about it (test_desk): an answer would tell
them of the exclusion.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import select

from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import run_once
from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, PAT, REPORTER, SAM, about, cases, latest, readable, reply, step

UTC = timezone.utc
OTHER = "second@example.net"
RESPONSE_DUE = re.compile(r"Response to the reporter \(!reply\) due: (\w{3} \d{1,2} \w{3} \d{4} \d\d:\d\d) UTC")


# ----- helpers -------------------------------------------------------------------------------------


def overviews(rx, address: str) -> list:
    return [m for m in rx.to(address) if "Weekly overview" in str(parsed(m)["Subject"])]


def escalations_at(harness, capsys, at: datetime) -> list[dict]:
    capsys.readouterr()
    assert main(["escalations", "--config", str(harness.config_path), "--at", at.isoformat(), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def followup(ref: str, body: str, sender: str = REPORTER, headers: dict[str, str] | None = None,
             in_reply_to: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Robin Reporter <{sender}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: [conduct #{ref}] Your report has been received"
    msg["Message-ID"] = make_msgid(domain="example.net")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(body)
    return msg.as_bytes()


# ----- 1. !history after !merge: notes of an included member's exclusion ----------------------------


def test_history_after_merge_hides_notes_written_while_the_reader_was_excluded(harness, smtp_receiver):
    """BROKE. Carol is named in report S (excluded automatically); Alice writes a note on S while
    Carol is out; Carol is included again (!include + !confirm). On S her !history leaves the note
    out (the product's own rule). S is then merged into T (no active exclusion on either, so the
    merge is allowed): on T, Carol's !history shows the note written while she was excluded,
    because the exclusion window lived on S's (inactive) recusal row, which the merge does not move."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="At the meetup CC made fun of my accent in front of everyone. FIRST-1"))
    [s] = cases(app)
    assert s.recused_members() == {CAROL}
    alice_s = about(rx, ALICE, s.ref)[0]
    harness.clock.advance(minutes=10)
    step(harness, app, reply(alice_s, ALICE, "", "Carol must not see this: she was there that night. SECRETNOTE-S"))
    harness.clock.advance(minutes=10)
    step(harness, app, reply(alice_s, ALICE, "!include Carol Chen"))
    proposal = latest(rx, BOB, "proposes to include")
    harness.clock.advance(minutes=10)
    step(harness, app, reply(proposal, BOB, "!confirm"))
    harness.clock.advance(minutes=10)
    [s] = cases(app)
    assert s.recused_members() == set(), "Carol is included again"
    carol_s = about(rx, CAROL, s.ref)[-1]
    assert not any("SECRETNOTE-S" in readable(m) for m in rx.to(CAROL))

    # Baseline: on S itself, Carol's history leaves out the note of her exclusion.
    step(harness, app, reply(carol_s, CAROL, "!history"))
    baseline = text_of(latest(rx, CAROL))
    assert "the history of this case" in baseline and "SECRETNOTE-S" not in baseline

    # A second report, the same incident; S is merged into it.
    harness.clock.advance(minutes=10)
    step(harness, app, report(sender=OTHER, subject="The meetup", body="Something happened at the meetup. SECOND-2"))
    s, t = cases(app)
    harness.clock.advance(minutes=10)
    step(harness, app, reply(alice_s, ALICE, f"!merge {t.ref}"))
    harness.clock.advance(minutes=10)
    s, t = cases(app)
    assert s.merged_into_id == t.id, "the merge was accepted (no active exclusion on either case)"

    step(harness, app, reply(about(rx, CAROL, t.ref)[0], CAROL, "!history"))
    history = text_of(latest(rx, CAROL))
    assert "the history of this case" in history
    assert "SECRETNOTE-S" not in history, "a note written while Carol was excluded reached her through !history after a merge"
    assert not any("SECRETNOTE-S" in readable(m) for m in rx.to(CAROL))


# ----- 2. weekly overview queued in an SMTP outage, then the member is recused ----------------------


def test_overview_queued_in_an_outage_never_lists_a_case_to_a_member_recused_before_it_goes_out(harness, smtp_receiver):
    """BROKE. The overview is queued at Monday 08:00 while the SMTP server is down. Before it can
    go out, the reporter's follow-up names Carol (automatic recusal). Case mail still queued for a
    member just recused is withdrawn (recusals.withdraw_unsent), but the overview has no case_id,
    so it is not: Carol gets a list naming the case, its status, assignee and next due time."""
    rx = smtp_receiver
    harness.clock.current = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # Sunday
    app = harness.app()
    run_once(app)  # the count starts
    step(harness, app, report(subject="About the sprint", body="Someone kept making comments. FIRST-1"))
    [case] = cases(app)
    assert about(rx, CAROL, case.ref), "Carol saw the report before she was excluded"

    rx.down()
    try:
        harness.clock.current = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # Monday 08:00 UTC
        run_once(app)
        assert overviews(rx, CAROL) == []
        harness.clock.advance(minutes=10)
        step(harness, app, followup(case.ref, "I forgot: CC was standing right next to him. FOLLOWUP-2"))
        [case] = cases(app)
        assert case.recused_members() == {CAROL}
    finally:
        rx.up()
    harness.clock.advance(minutes=30)
    run_once(app)
    harness.clock.advance(minutes=30)
    run_once(app)
    assert overviews(rx, ALICE), "the overview did go out once the server was back"
    for mail in overviews(rx, CAROL):
        body = text_of(mail)
        assert case.ref not in body and "About the sprint" not in body, \
            "a member recused before the overview went out still got it listing the case"
    assert not any("FOLLOWUP-2" in readable(m) for m in rx.to(CAROL))


# ----- 3. !merge of an older case into a newer one and the first reporter's promised week -----------


def test_merging_an_older_report_keeps_its_reporters_response_deadline(harness, smtp_receiver, capsys):
    """BROKE (policy promise). Reporter 1 writes on day 0 (promised a response within a week, by day
    7); reporter 2 writes about the same incident on day 3. The committee merges case 1 into case 2
    on day 4. The merged case's response clock restarts from case 2's report (day 10): the block
    in the members' mail and `escalations --at` no longer hold the week promised to reporter 1,
    and no escalation fires on day 7 (merge.merge keeps target.created_at as the cycle start)."""
    rx = smtp_receiver
    app = harness.app()
    t0 = harness.clock()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    [first] = cases(app)
    # acknowledged at once (a case left unacknowledged for two days goes to the steering members,
    # and a committee case is not merged with theirs)
    step(harness, app, reply(about(rx, BOB, first.ref)[0], BOB, "!ack"))
    harness.clock.advance(days=3)
    step(harness, app, report(sender=OTHER, subject="The sprint", body="I saw him interrupt her at the sprint. SECOND-2"))
    first, second = cases(app)
    step(harness, app, reply(about(rx, BOB, second.ref)[0], BOB, "!ack"))
    harness.clock.advance(days=1)
    step(harness, app, reply(about(rx, ALICE, first.ref)[0], ALICE, f"!merge {second.ref}"))
    first, second = cases(app)
    assert first.merged_into_id == second.id
    promised = t0 + timedelta(days=7)
    announcement = latest(rx, BOB, "merged case")
    due = RESPONSE_DUE.search(text_of(announcement))
    assert due is not None, text_of(announcement)
    stated = datetime.strptime(due[1], "%a %d %b %Y %H:%M").replace(tzinfo=UTC)
    assert stated <= promised, f"the merged case says the response is due {stated}, after the week promised to reporter 1 ({promised})"
    fired = [e for e in escalations_at(harness, capsys, promised) if e["rule"] == "response" and e["level"] >= 1]
    assert fired, "no escalation when the week promised to the first reporter is over"


# ----- 4. threading after a merge: never the reporter's auto-reply, never committee Message-IDs ------


def test_reply_after_merge_threads_under_the_reporters_real_mail_only(harness, smtp_receiver):
    """HELD. The same reporter writes twice (two cases); their out-of-office answers the first
    acknowledgement; a member writes notes. After the merge, a !reply threads under the reporter's
    latest real mail and references nothing but the reporter's real mail and our mail to them."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    harness.clock.advance(hours=1)
    step(harness, app, report(subject="Again", body="It happened again the next day. SECOND-2"))
    first, second = cases(app)
    first_ack = next(m for m in rx.to(REPORTER) if f"#{first.ref}]" in str(parsed(m)["Subject"]))
    oof = followup(first.ref, "I am away until Monday.", headers={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"},
                   in_reply_to=str(parsed(first_ack)["Message-ID"]))
    step(harness, app, oof)
    step(harness, app, reply(about(rx, ALICE, first.ref)[0], ALICE, "", "Same person as the other case. NOTE-3"))
    step(harness, app, reply(about(rx, ALICE, first.ref)[0], ALICE, f"!merge {second.ref}"))
    harness.clock.advance(hours=1)
    step(harness, app, reply(about(rx, ALICE, second.ref)[0], ALICE, "!reply", "We are looking into both of your mails. OUT-4"))
    out = latest(rx, REPORTER)
    assert "OUT-4" in text_of(out)
    reporter_ids = set()
    for m in rx.to(REPORTER):
        reporter_ids.add(str(parsed(m)["Message-ID"]).strip())
    with app.sessions() as session:
        from conduct_inbox.store.models import InboundMessage
        theirs = session.execute(select(InboundMessage.message_id, InboundMessage.kind, InboundMessage.sender)
                                 .order_by(InboundMessage.id)).all()
    real = [f"<{mid.strip('<>')}>" for mid, kind, sender in theirs if sender == REPORTER and kind in ("new_report", "followup")]
    oof_id = str(parsed_bytes(oof)["Message-ID"]).strip()
    refs = str(parsed(out)["References"] or "").split()
    assert str(parsed(out)["In-Reply-To"]).strip() == real[-1]
    assert oof_id not in refs and oof_id != str(parsed(out)["In-Reply-To"]).strip()
    allowed = set(real) | reporter_ids
    assert set(refs) <= allowed, f"references beyond the reporter's own thread: {set(refs) - allowed}"
    for m in rx.to(REPORTER):
        body = readable(m)
        assert "Where the case stands" not in body and "NOTE-3" not in body and "Commands now" not in body
        assert parsed(m)["Thread-Topic"] is None


def parsed_bytes(raw: bytes):
    import email
    import email.policy
    return email.message_from_bytes(raw, policy=email.policy.default)


# ----- 5. outsider forging commands with a member's From: -------------------------------------------


def test_outsider_with_a_members_from_cannot_merge_title_or_announce(harness, smtp_receiver):
    """HELD. An outsider who has read DESIGN.md writes as Alice (forged From:) to conduct@ and to
    conduct+<guess>@ with the case tag and !merge / !title / !ack: nothing changes, no member but
    Alice (at her roster address) hears of it, and the reporter hears nothing."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    step(harness, app, report(sender=OTHER, subject="Other", body="Something else entirely. SECOND-2"))
    first, second = cases(app)
    before = {a: len(rx.to(a)) for a in (BOB, CAROL, SAM, REPORTER, OTHER)}
    for to in ("conduct@example.org", "conduct+aaaaaaaaaaaaaaaaaaaa@example.org"):
        for cmds in (f"!merge {second.ref}", "!title Pwned SUBJECTX", "!ack !assign Bob"):
            msg = EmailMessage()
            msg["From"] = "Alice Example <alice@example.org>"
            msg["To"] = to
            msg["Subject"] = f"Re: [conduct #{first.ref}] Harassment at the sprint {cmds}"
            msg["Message-ID"] = make_msgid(domain="evil.example")
            msg.set_content("forged")
            step(harness, app, msg.as_bytes())
    first, second = cases(app)
    assert (first.merged_into_id, first.status, first.title) == (None, "new", "Harassment at the sprint")
    for a, n in before.items():
        new = rx.to(a)[n:]
        assert not any("changed this case" in text_of(m) or "Pwned" in readable(m) or "merged" in text_of(m) for m in new), a


# ----- 6. the block's due time after !not-urgent, and `escalations --at` ----------------------------

ACK_DUE = re.compile(r"Human acknowledgement \(!ack\) due: (\w{3} \d{1,2} \w{3} \d{4} \d\d:\d\d) UTC")


def test_block_after_not_urgent_matches_escalations_at(harness, smtp_receiver, capsys):
    """BROKE (minor). An urgent report (ack due in 1 h) is not acknowledged; at the hour the level 1
    escalation fires (key "ack:1", which does not carry the deadline). A member then sends
    !not-urgent without !ack: the block of their confirmation says the acknowledgement is due 24 h
    after the report, but `escalations --at` that moment lists nothing for it (the key has fired),
    and the next thing that does come is the level 2 escalation to steering a day later
    (core/sla.py: _key("ack", ...) vs deadlines())."""
    rx = smtp_receiver
    app = harness.app()
    t0 = harness.clock()
    step(harness, app, report(body="I feel unsafe, he said he would follow me home."))
    [case] = cases(app)
    assert case.urgent
    harness.clock.advance(hours=1)
    run_once(app)
    assert any("Overdue: case" in text_of(m) for m in rx.to(ALICE)), "the urgent ack escalation fired"
    harness.clock.advance(minutes=10)
    step(harness, app, reply(rx.to(ALICE)[0], ALICE, "!not-urgent"))
    block = text_of(latest(rx, ALICE, "no longer urgent"))
    stated = ACK_DUE.search(block)
    assert stated is not None, block
    due = datetime.strptime(stated[1], "%a %d %b %Y %H:%M").replace(tzinfo=UTC)
    assert due == t0 + timedelta(hours=24)
    listed = [e for e in escalations_at(harness, capsys, due) if e["rule"] == "ack" and e["ref"] == case.ref]
    assert any(datetime.fromisoformat(e["due_at"]) == due for e in listed), \
        f"the block says the acknowledgement is due {due}, `escalations --at` then lists {listed}"


# ----- 7. weekly overview: a second one in the same week after the weekday is changed ----------------


def test_overview_fires_once_in_a_week_when_the_weekday_is_changed(harness, smtp_receiver):
    """BROKE (gray: needs an admin's config change). The overview went out on Monday; the admin
    moves it to Friday (reload/restart): a second overview goes out that Friday, in the same
    week (chores.send_weekly_overview stores the slot's date, and Friday's date is later)."""
    rx = smtp_receiver
    harness.clock.current = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    app = harness.app()
    run_once(app)
    harness.clock.current = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    run_once(app)
    assert len(overviews(rx, BOB)) == 1
    app.close()
    config = harness.config_path
    config.write_text(config.read_text().replace(
        'steering_address = "steering@example.org"\n', 'steering_address = "steering@example.org"\ndigest_weekday = "friday"\n', 1))
    app = harness.app()
    harness.clock.current = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)  # Friday of the same week
    run_once(app)
    assert len(overviews(rx, BOB)) == 1, "a second weekly overview in one week"


# ----- 8. does the answer to a member's mail about a ref reveal that a hidden case exists? -----------


def _plain(sender: str, to: str, subject: str, body: str = "Just a question.") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    return msg.as_bytes()


def _answers(rx, member: str, before: int) -> list[str]:
    return [re.sub(r"20\d\d-\d{4}", "REF", text_of(m).split("Commands go in")[0]) for m in rx.to(member)[before:]]


def test_mail_about_a_hidden_case_is_answered_as_no_such_case(harness, smtp_receiver):
    """BROKE. DESIGN ("Authenticating commands"): mail that claims to be a member without a token
    "if answered at all, is answered exactly as 'no such case' would be". Carol, excluded from
    case B (the report names her), writes from her own address to conduct@ with B's tag: silence
    (desk: Way.NOT_OWN_ADDRESS, answered only when she may see the case). The same mail with a
    reference that does not exist gets "there is no case ... you can act on" (Way.UNKNOWN_CASE).
    So the answer tells a recused member which references are cases kept from her (cases about
    her), as distinct from unknown ones; with !merge the answers are the same (that held)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    step(harness, app, report(sender=OTHER, subject="About a member", body="At the meetup CC made fun of my accent. SECOND-2"))
    a, b = cases(app)
    assert b.recused_members() == {CAROL}

    # !merge on her own case A's token: hidden B and an unknown ref are answered alike (held).
    carol_a = about(rx, CAROL, a.ref)[0]
    n = len(rx.to(CAROL))
    step(harness, app, reply(carol_a, CAROL, f"!merge {b.ref}"))
    step(harness, app, reply(carol_a, CAROL, "!merge 2026-0999"))
    hidden_merge, unknown_merge = _answers(rx, CAROL, n)
    assert hidden_merge == unknown_merge

    # Plain mail to conduct@ with the tag, as a member who lost her copy would write.
    n = len(rx.to(CAROL))
    step(harness, app, _plain(CAROL, "conduct@example.org", f"[conduct #{b.ref}] question"))
    hidden = _answers(rx, CAROL, n)
    n = len(rx.to(CAROL))
    step(harness, app, _plain(CAROL, "conduct@example.org", "[conduct #2026-0999] question"))
    unknown = _answers(rx, CAROL, n)
    assert hidden == unknown, f"hidden case answered {hidden!r}, unknown reference answered {unknown!r}"
    assert not any("SECOND-2" in readable(m) or "About a member" in readable(m) for m in rx.to(CAROL))


# ----- 9. !history: a recused member's note written from another spelling of their address -----------


def test_history_hides_the_notes_of_a_recused_member_written_from_a_plus_address(harness, smtp_receiver):
    """BROKE. Bob's mail client sends as bob+conduct@example.org (a plus-address the roster maps to
    Bob: his token and From are accepted). He writes a note; later the case turns out to concern
    him (!concerns Bob). The issue: !history shows "nothing about recused members' own actions
    beyond that they were recused". Alice's history still shows Bob's note, because
    history.timeline compares the note's raw sender with the recused addresses (events are
    hidden: their actor is the roster address)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    [case] = cases(app)
    bob_copy, alice_copy = rx.to(BOB)[0], rx.to(ALICE)[0]
    harness.clock.advance(minutes=5)
    step(harness, app, reply(bob_copy, "Bob Builder <bob+conduct@example.org>", "", "I know him from the sprint. BOBNOTE-1"))
    assert any("BOBNOTE-1" in text_of(m) for m in rx.to(CAROL)), "the note from the plus-address was accepted as Bob's"
    harness.clock.advance(minutes=5)
    step(harness, app, reply(alice_copy, ALICE, "!concerns Bob Builder", "Bob organised that sprint."))
    harness.clock.advance(minutes=5)
    step(harness, app, reply(alice_copy, ALICE, "!history"))
    history = text_of(latest(rx, ALICE, "history of this case"))
    assert "excluded: Bob Builder" in history
    assert "BOBNOTE-1" not in history, "a recused member's own note is shown in !history"


# ----- 10. the [spam] digest's subject counts cases hidden from its reader ----------------------------


def test_spam_digest_counts_only_what_its_reader_may_see(harness, smtp_receiver):
    """BROKE (minor). Two reports are set aside as spam; one names Carol (she is excluded from it).
    Carol's digest lists one, but its subject says "2 message(s) set aside": she learns that a
    spam-flagged report kept from her exists (chores._spam_digest counts every case in the
    shared subject; the weekly overview counts per reader)."""
    from conduct_inbox.shell.daemon import housekeeping_once
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(sender="spam1@example.net", subject="Cheap watches", headers={"X-Spam-Flag": "YES"}))
    step(harness, app, report(sender="spam2@example.net", subject="About the meetup", headers={"X-Spam-Flag": "YES"},
                              body="At the meetup CC made fun of my accent in front of everyone."))
    first, second = cases(app)
    assert first.spam and second.spam and second.recused_members() == {CAROL}
    housekeeping_once(app)
    run_once(app)
    [alice] = [m for m in rx.to(ALICE) if "Spam digest" in str(parsed(m)["Subject"])]
    [carol] = [m for m in rx.to(CAROL) if "Spam digest" in str(parsed(m)["Subject"])]
    assert second.ref in text_of(alice) and second.ref not in text_of(carol) and first.ref in text_of(carol)
    assert "About the meetup" not in readable(carol)
    assert "1 message" in str(parsed(carol)["Subject"]), f"Carol's digest subject: {parsed(carol)['Subject']}"


# ----- 11. a pending !include survives a follow-up that names the member again ------------------------


def test_include_proposed_before_a_followup_naming_the_member_again_cannot_be_confirmed_after_it(harness, smtp_receiver):
    """BROKE (the merge rule's twin). Carol is named in the report (excluded automatically); Alice
    proposes !include Carol. The reporter then writes a follow-up that names Carol again, with a new
    allegation. merge._move_recusals voids a pending !include when new content joins the case ("no
    inclusion proposed before the merge may be confirmed after it"), but recusals.recuse_named does
    not (Carol is already excluded, so nothing changes): Bob's !confirm of the old proposal lets Carol
    back into a case whose latest mail accuses her."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="At the meetup CC made fun of my accent in front of everyone. FIRST-1"))
    [case] = cases(app)
    assert case.recused_members() == {CAROL}
    harness.clock.advance(minutes=5)
    step(harness, app, reply(rx.to(ALICE)[0], ALICE, "!include Carol Chen", "CC is a common nickname; probably not our Carol."))
    proposal = latest(rx, BOB, "proposes to include")
    harness.clock.advance(minutes=5)
    ack = rx.to(REPORTER)[0]
    step(harness, app, followup(case.ref, "I meant Carol Chen from your committee: CC also threatened me afterwards. FOLLOWUP-2",
                                in_reply_to=str(parsed(ack)["Message-ID"])))
    assert any("FOLLOWUP-2" in text_of(m) for m in rx.to(BOB))
    harness.clock.advance(minutes=5)
    step(harness, app, reply(proposal, BOB, "!confirm"))
    [case] = cases(app)
    assert case.recused_members() == {CAROL}, "an !include proposed before the follow-up that names her again was confirmed after it"
    assert not any("FOLLOWUP-2" in readable(m) or "FIRST-1" in readable(m) for m in rx.to(CAROL))


# ----- 12. attacks that held: !title through a merge; a title carrying another case's tag -------------


def test_title_survives_no_path_to_the_reporter_through_a_merge_and_cannot_retarget_replies(harness, smtp_receiver):
    """HELD. A committee title on case S (with another case's tag and command-like words in it) is
    merged into T; T's reporter (the same person) gets a !reply, the reported party a !send, the
    reporter writes a follow-up: no mail outside the committee carries the title, and a member's
    note answering the title announcement lands on the case the mail is about, never on the case
    whose tag the title tried to carry (Carol is excluded from that one)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    step(harness, app, report(subject="More", body="And again at the sprint dinner. SECOND-2"))
    step(harness, app, report(sender=OTHER, subject="Meetup", body="At the meetup CC made fun of my accent. THIRD-3"))
    s, t, other = cases(app)
    assert other.recused_members() == {CAROL}
    step(harness, app, reply(about(rx, ALICE, s.ref)[0], ALICE,
                             f"!title Sprint TITLEX [conduct #{other.ref}] close silent x"))
    [s, t, other] = cases(app)
    assert other.ref not in str(s.title) and "TITLEX" in str(s.title)
    announcement = latest(rx, BOB, "title set")
    assert str(parsed(announcement)["Subject"]).startswith(f"[conduct #{s.ref}]")
    assert f"#{other.ref}" not in str(parsed(announcement)["Subject"])
    step(harness, app, reply(announcement, BOB, "", "Noted the title. BOBNOTE-5"))
    assert not any("BOBNOTE-5" in readable(m) for m in rx.to(CAROL) if f"#{other.ref}]" in str(parsed(m)["Subject"]))
    step(harness, app, reply(about(rx, ALICE, s.ref)[0], ALICE, f"!merge {t.ref}"))
    step(harness, app, reply(about(rx, ALICE, t.ref)[0], ALICE, f"!party reported {PAT} Pat Person"))
    step(harness, app, reply(about(rx, ALICE, t.ref)[0], ALICE, "!reply", "We are looking into it. OUT-1"))
    step(harness, app, reply(about(rx, ALICE, t.ref)[0], ALICE, "!send reported", "Please stop. OUT-2"))
    step(harness, app, followup(t.ref, "Thanks. FOLLOWUP-3"))
    outside = rx.to(REPORTER) + rx.to(PAT) + rx.to(OTHER)
    assert any("OUT-1" in readable(m) for m in outside) and any("OUT-2" in readable(m) for m in outside)
    for mail in outside:
        body = readable(mail)
        assert "TITLEX" not in body and "Sprint" not in body and "Where the case stands" not in body
        assert "Alice" not in body and "Bob" not in body and "Carol" not in body


# ----- 13. held: an announcement queued in the same batch as a recusal never reaches the recused -----


def test_announcement_queued_before_a_recusal_in_the_same_batch_never_reaches_the_member(harness, smtp_receiver):
    """HELD. Bob's !ack (announced to Alice and Carol) and the reporter's follow-up naming Carol sit in
    the mailbox together and are processed in one pass, the !ack first: the announcement queued for
    Carol is withdrawn when the follow-up excludes her (recusals.withdraw_unsent)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He kept interrupting me at the sprint. FIRST-1"))
    [case] = cases(app)
    carol_before = len(rx.to(CAROL))
    harness.deliver(reply(rx.to(BOB)[0], BOB, "!ack", "I will call the reporter. BOBNOTE-6"))
    harness.deliver(followup(case.ref, "CC was standing next to him the whole time. FOLLOWUP-7"))
    run_once(app)
    [case] = cases(app)
    assert case.recused_members() == {CAROL} and case.human_ack_at is not None
    assert rx.to(CAROL)[carol_before:] == [], "mail about the case reached Carol after she was excluded"
    assert any("BOBNOTE-6" in text_of(m) for m in rx.to(ALICE))
