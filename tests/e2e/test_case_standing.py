"""What members see of a case in every mail (issue 16): its due times in the committee's time
zone, the same moments the escalations keep; texts that match the case's clocks; mail to the
reporter threaded under their own real mail only; committee mail threaded per case.

Over Dovecot and aiosmtpd, on SQLite and PostgreSQL; time moves with the harness clock.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import housekeeping_once, run_once
from tests.harness import parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, REPORTER, personal_address, reply, step, the_case

BERLIN = ZoneInfo("Europe/Berlin")
STAMP = r"(\w{3} \d{1,2} \w{3} \d{4} \d\d:\d\d [A-Z]+)"
ACK_DUE = re.compile(r"Human acknowledgement \(!ack\) due: " + STAMP)
RESPONSE_DUE = re.compile(r"Response to the reporter \(!reply\) due: " + STAMP)
#: Any due time as the mail writes it, e.g. "Wed 25 Nov 2026 10:00 CET".
ANY_TIME = re.compile(r"\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun) \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d")


def in_berlin(harness) -> None:
    """The committee's time zone: Europe/Berlin (CET in November)."""
    path = harness.config_path
    text = path.read_text()
    path.write_text(text.replace('name = "Test Conduct Committee"', 'name = "Test Conduct Committee"\ntimezone = "Europe/Berlin"'))


def moment(text: str) -> datetime:
    """A due time as a mail states it, back to an aware datetime."""
    stamp, zone_name = text.rsplit(" ", 1)
    value = datetime.strptime(stamp, "%a %d %b %Y %H:%M").replace(tzinfo=BERLIN)
    assert value.tzname() == zone_name
    return value


def block_of(text: str) -> str:
    """The "where the case stands" block of a mail."""
    start = text.index("Where the case stands")
    return text[start:text.index("Commands now:", start)]


def moment_utc(text: str) -> datetime:
    stamp, zone_name = text.rsplit(" ", 1)
    assert zone_name == "UTC"
    return datetime.strptime(stamp, "%a %d %b %Y %H:%M").replace(tzinfo=ZoneInfo("UTC"))


def escalations_at(harness, capsys, at: datetime) -> list[dict]:
    assert main(["escalations", "--config", str(harness.config_path), "--at", at.isoformat(), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def copies(receiver, address: str, word: str) -> list:
    return [m for m in receiver.to(address) if word in text_of(m) or word in str(parsed(m)["Subject"])]


def test_copy_states_the_due_times_the_escalations_keep(harness, smtp_receiver, capsys):
    in_berlin(harness)
    app = harness.app()
    step(harness, app, report())
    t0 = harness.clock()
    ref = the_case(app).ref
    [copy] = copies(smtp_receiver, ALICE, "New report")
    text = text_of(copy)
    ack_due, response_due = moment(ACK_DUE.search(text)[1]), moment(RESPONSE_DUE.search(text)[1])
    assert ACK_DUE.search(text)[1].endswith(" CET")
    # The sentence asking for the acknowledgement says when, and it is the same moment.
    assert f"within 24 hours, that is by {ACK_DUE.search(text)[1]}" in " ".join(text.split())
    assert "Commands now: !ack !assign NAME !urgent !spam !reply" in text
    assert text.index("Where the case stands") < text.index("----- report -----")  # near the top

    # `escalations --at`: nothing a minute before either moment, the escalation at it.
    assert [e for e in escalations_at(harness, capsys, ack_due - timedelta(minutes=1)) if e["rule"] == "ack"] == []
    [level1] = [e for e in escalations_at(harness, capsys, ack_due) if e["rule"] == "ack"]
    assert (level1["ref"], level1["level"]) == (ref, 1) and datetime.fromisoformat(level1["due_at"]) == ack_due
    responses = [e for e in escalations_at(harness, capsys, response_due) if e["rule"] == "response"]
    assert [(e["level"], datetime.fromisoformat(e["due_at"])) for e in responses][-1] == (1, response_due)
    assert not [e for e in escalations_at(harness, capsys, response_due - timedelta(minutes=1))
                if e["rule"] == "response" and e["level"] == 1]

    # The escalation mail at that moment states the same due time, and so does its block.
    harness.clock.current = ack_due
    run_once(app)
    [overdue] = [m for m in smtp_receiver.to(ALICE) if "Overdue: case" in text_of(m)]
    assert f"Due: {ACK_DUE.search(text)[1]}" in text_of(overdue)
    assert parsed(overdue)["Subject"] == parsed(copy)["Subject"]  # one conversation
    assert f"Human acknowledgement (!ack) due: {ACK_DUE.search(text)[1]} (overdue)" in text_of(overdue)

    # After !ack, the confirmation drops the acknowledgement clock and keeps the response one.
    step(harness, app, reply(copies(smtp_receiver, BOB, "New report")[0], BOB, "!ack"))
    [done] = copies(smtp_receiver, BOB, "done.")
    done_text = text_of(done)
    assert not ACK_DUE.search(done_text)
    assert moment(RESPONSE_DUE.search(done_text)[1]) == response_due
    [suggested] = re.findall(r"Commands now: ([^\r\n]+)", done_text)
    assert "assigned to Bob Builder" in done_text and "!reply" in suggested and "!ack" not in suggested
    assert t0 < ack_due < response_due


def test_auto_copy_names_no_due_time_and_a_report_copy_always_does(harness, smtp_receiver):
    app = harness.app()
    step(harness, app, report(sender="form@example.net", subject="Form submission", headers={"Auto-Submitted": "auto-generated"}))
    step(harness, app, report(sender="plain@example.net", subject="At the meetup"))
    step(harness, app, report(sender="urgent@example.net", subject="Help", body="I feel unsafe, he said he would follow me."))
    [auto, plain, urgent] = copies(smtp_receiver, ALICE, "New report")
    auto_text = " ".join(text_of(auto).split())
    assert auto_text.count("[auto]") == 1 and "no clock runs" in auto_text
    # Nothing in the [auto] copy contradicts that: no due time, no "promised" time.
    assert not ANY_TIME.search(text_of(auto).split("Received:")[0]) and not ACK_DUE.search(auto_text)
    assert "no clock" in block_of(text_of(auto)) and not ANY_TIME.search(block_of(text_of(auto)))
    assert not RESPONSE_DUE.search(auto_text)
    assert "within" not in auto_text and "promised" not in auto_text
    assert "No automatic acknowledgement was sent (automatic mail)" in auto_text
    for copy in (plain, urgent):
        text = text_of(copy)
        assert ACK_DUE.search(text) and RESPONSE_DUE.search(text) and "no clock runs" not in text
    assert "Commands now: !ack !assign NAME !spam !reply" in text_of(urgent)  # already urgent
    # `!ack` starts the [auto] case's response clock (and only that one), as the copy said.
    harness.clock.advance(hours=3)
    bob_auto = copies(smtp_receiver, BOB, "New report")[0]
    step(harness, app, reply(bob_auto, BOB, "!ack"))
    [done] = copies(smtp_receiver, BOB, "done.")
    block = block_of(text_of(done))
    assert not ACK_DUE.search(block)
    assert moment_utc(RESPONSE_DUE.search(block)[1]) == harness.clock() + timedelta(days=7)


def test_spam_gets_no_copy_and_the_digest_says_what_works(harness, smtp_receiver):
    app = harness.app()
    step(harness, app, report(sender="spam@example.net", subject="Cheap watches", headers={"X-Spam-Flag": "YES"}))
    case = the_case(app)
    assert case.spam and case.next_due_at is None
    assert copies(smtp_receiver, ALICE, "New report") == [] and smtp_receiver.to("spam@example.net") == []
    # The digest says how to turn a false positive into a case, and that way works: its reply
    # address is the member's personal command address, where `!new` opens a case.
    housekeeping_once(app)
    run_once(app)
    [digest] = [m for m in smtp_receiver.to(ALICE) if "Spam digest" in str(parsed(m)["Subject"])]
    digest_text = " ".join(text_of(digest).split())
    assert "no deadlines run" in digest_text and "!new REPORTER-ADDRESS" in digest_text
    assert not ANY_TIME.search(digest_text.split("received", 1)[0])
    assert str(parsed(digest)["Reply-To"]) == personal_address(ALICE)
    forward = report(sender=ALICE, name="Alice Example", subject="!new spam@example.net noack",
                     body="The report set aside as spam was real: someone followed them at the sprint.")
    forward = forward.replace(b"To: conduct@example.org", f"To: {parsed(digest)['Reply-To']}".encode())
    step(harness, app, forward)
    assert len(copies(smtp_receiver, BOB, "New report")) == 1


def test_a_case_marked_spam_states_no_due_time_and_escalates_never(harness, smtp_receiver, capsys):
    app = harness.app()
    step(harness, app, report(sender="real@example.net", subject="At the meetup"))
    [copy] = copies(smtp_receiver, ALICE, "New report")
    ack_due = moment_utc(ACK_DUE.search(text_of(copy))[1])
    step(harness, app, reply(copies(smtp_receiver, BOB, "New report")[0], BOB, "!spam"))
    [done] = copies(smtp_receiver, BOB, "done.")
    text = text_of(done)
    assert "flagged as spam and no clock runs" in text
    # It claims nothing the daemon does not do: a follow-up still reaches the members, marked so.
    assert "nothing more is sent" not in text
    ref = the_case(app).ref
    step(harness, app, report(sender="real@example.net", subject=f"Re: [conduct #{ref}] Your report has been received",
                              body="Did you get my report?"))
    [followup] = copies(smtp_receiver, ALICE, "Follow-up from a party")
    assert "flagged as spam and no clock runs" in block_of(text_of(followup))
    assert not ANY_TIME.search(block_of(text_of(followup)))
    assert not ANY_TIME.search(text) and "due" not in text.lower().replace("no deadlines", "")
    assert escalations_at(harness, capsys, ack_due + timedelta(days=30)) == []


def test_reply_threads_under_the_report_never_under_an_automatic_reply(harness, smtp_receiver):
    app = harness.app()
    step(harness, app, report(message_id="<report-1@example.net>"))
    [ack] = smtp_receiver.to(REPORTER)
    assert parsed(ack)["In-Reply-To"] == "<report-1@example.net>"
    ref = the_case(app).ref
    # The reporter's out-of-office answers our acknowledgement.
    step(harness, app, report(subject=f"Auto: [conduct #{ref}] Your report has been received", message_id="<ooo-1@example.net>",
                              body="I am away until Monday.",
                              headers={"Auto-Submitted": "auto-replied", "In-Reply-To": parsed(ack)["Message-ID"]}))
    copy = copies(smtp_receiver, ALICE, "New report")[0]
    step(harness, app, reply(copy, ALICE, "!reply", body="We have read your report and are looking into it."))
    to_reporter = [m for m in smtp_receiver.to(REPORTER) if "looking into it" in text_of(m)]
    [answer] = to_reporter
    msg = parsed(answer)
    assert msg["In-Reply-To"] == "<report-1@example.net>"
    seen = {str(parsed(m)["Message-ID"]) for m in smtp_receiver.to(REPORTER)} | {"<report-1@example.net>"}
    refs = str(msg["References"]).split()
    assert "<ooo-1@example.net>" not in refs and set(refs) <= seen and refs[0] == "<report-1@example.net>"
    assert msg["Thread-Index"] is None and msg["Thread-Topic"] is None

    # A real follow-up from the reporter: the next reply threads under it.
    step(harness, app, report(subject=f"Re: [conduct #{ref}] Message from the Test Conduct Committee",
                              message_id="<followup-1@example.net>", body="One more thing: it happened twice."))
    copy = copies(smtp_receiver, ALICE, "Follow-up")[-1]
    step(harness, app, reply(copy, ALICE, "!reply", body="Thank you, noted."))
    [second] = [m for m in smtp_receiver.to(REPORTER) if "Thank you, noted." in text_of(m)]
    second_msg = parsed(second)
    assert second_msg["In-Reply-To"] == "<followup-1@example.net>"
    seen = {str(parsed(m)["Message-ID"]) for m in smtp_receiver.to(REPORTER)} | {"<report-1@example.net>", "<followup-1@example.net>"}
    assert set(str(second_msg["References"]).split()) <= seen


def test_forwarded_report_ack_references_nothing_the_reporter_has_not_seen(harness, smtp_receiver):
    app = harness.app()
    forward = report(sender=ALICE, name="Alice Example", subject="!new pat@example.net",
                     message_id="<alice-internal@example.org>", body="Pat told me at the sprint that someone followed them.")
    forward = forward.replace(b"To: conduct@example.org", f"To: {personal_address(ALICE)}".encode())
    step(harness, app, forward)
    [ack] = smtp_receiver.to("pat@example.net")
    msg = parsed(ack)
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert b"alice-internal" not in ack.content


def test_committee_mail_threads_per_case(harness, smtp_receiver):
    app = harness.app()
    step(harness, app, report())
    case = the_case(app)
    [copy] = copies(smtp_receiver, ALICE, "New report")
    bob_copy = copies(smtp_receiver, BOB, "New report")[0]
    step(harness, app, reply(bob_copy, BOB, "", body="I know the people involved; I will read it tonight."))  # a note
    step(harness, app, reply(copy, ALICE, "!ack"))
    mails = smtp_receiver.to(ALICE)
    assert len(mails) >= 3
    heads = [parsed(m) for m in mails]
    roots = {str(h["References"]).split()[0] for h in heads}
    assert len(roots) == 1 and case.ref in next(iter(roots))
    indexes = {base64.b64decode(str(h["Thread-Index"]))[:22] for h in heads}
    assert len(indexes) == 1
    assert {str(h["Thread-Topic"]) for h in heads} == {f"[conduct #{case.ref}] Harassment at the sprint"}
    assert {str(h["Subject"]) for h in heads[1:]} == {f"[conduct #{case.ref}] Harassment at the sprint"}
    # Each later mail answers the last one this member received about the case.
    for earlier, later in zip(heads, heads[1:]):
        assert later["In-Reply-To"] == earlier["Message-ID"]
    # Bob's copies never reference Alice's (what each member got is theirs alone).
    alice_ids = {str(h["Message-ID"]) for h in heads}
    for mail in smtp_receiver.to(BOB):
        assert not alice_ids & set(str(parsed(mail)["References"]).split())
    # The announcement of `!urgent` (URGENT in its subject) joins the same conversation.
    step(harness, app, reply(bob_copy, BOB, "!urgent"))
    [alert] = [m for m in smtp_receiver.to(CAROL) if "URGENT" in str(parsed(m)["Subject"])]
    assert f"#{case.ref}]" in str(parsed(alert)["Subject"])
    assert str(parsed(alert)["References"]).split()[0] == next(iter(roots))
    # Nothing of the committee's conversation reaches the reporter.
    for mail in smtp_receiver.to(REPORTER):
        assert next(iter(roots)) not in str(parsed(mail)["References"] or "")
