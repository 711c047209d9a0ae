"""The committee works a case by email, over real Dovecot + aiosmtpd + SQLite/PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import select

from conduct_inbox.core import tokens
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, Decision, Event, Sanction
from tests.harness import SECRET, parsed, report, text_of
from tests.mailers import latest, reply, step, the_case


def test_full_lifecycle_by_email(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He shouted at me at the sprint. REPORT-TEXT-1"))
    case = the_case(app)
    alice_copy = rx.to("alice@example.org")[0]

    # !ack and a status change in one subject
    step(harness, app, reply(alice_copy, "alice@example.org", "!ack !status investigating", "On it."))
    case = the_case(app)
    assert case.status == "investigating" and case.assignee == "alice@example.org" and case.human_ack_at is not None
    confirmation = latest(rx, "alice@example.org")
    assert "acknowledged" in text_of(confirmation) and "status investigating" in text_of(confirmation)

    # a plain note goes to the other members only
    before_reporter = len(rx.to("reporter@example.net"))
    step(harness, app, reply(alice_copy, "alice@example.org", "", "INTERNAL-NOTE: the person named has two earlier warnings on file"))
    for other in ("bob@example.org", "carol@example.org"):
        assert "INTERNAL-NOTE" in text_of(latest(rx, other))
    assert all("INTERNAL-NOTE" not in text_of(m) for m in rx.to("alice@example.org"))

    # !reply from Bob, quoting history that contains the internal note: only his new text goes out
    bob_note = latest(rx, "bob@example.org", "INTERNAL-NOTE")
    step(harness, app, reply(bob_note, "bob@example.org", "!reply", "Thank you for your report. We are looking into it. REPLY-TEXT-2"))
    to_reporter = rx.to("reporter@example.net")
    assert len(to_reporter) == before_reporter + 1
    sent = text_of(to_reporter[-1])
    assert "REPLY-TEXT-2" in sent and "INTERNAL-NOTE" not in sent and "REPORT-TEXT-1" not in sent
    assert parsed(to_reporter[-1])["From"].addresses[0].addr_spec == "conduct@example.org"
    assert "REPLY-TEXT-2" in text_of(latest(rx, "carol@example.org"))  # members get a copy of what was sent
    assert the_case(app).last_response_at is not None

    # a member replies to that copy with a plain note: nothing reaches the reporter
    copy_of_reply = latest(rx, "carol@example.org", "REPLY-TEXT-2")
    step(harness, app, reply(copy_of_reply, "carol@example.org", "", "Good answer."))
    assert len(rx.to("reporter@example.net")) == before_reporter + 1

    # the reporter follows up (replying to our answer): it joins the case and goes to the committee
    ours = rx.to("reporter@example.net")[-1]
    follow = reply(ours, "reporter@example.net", "", "One more thing: it happened again today. FOLLOWUP-3", to="conduct@example.org")
    step(harness, app, follow)
    assert "FOLLOWUP-3" in text_of(latest(rx, "bob@example.org"))
    assert len(rx.to("reporter@example.net")) == before_reporter + 1

    # parties, a severe decision pending until a second member confirms
    step(harness, app, reply(alice_copy, "alice@example.org", "!party reported pat@example.net Pat Person"))
    step(harness, app, reply(alice_copy, "alice@example.org", "!decide temporary-ban target=reported until=2027-01-31"))
    with app.sessions() as session:
        assert session.scalars(select(Decision.status)).one() == "pending"
        assert session.scalars(select(Sanction)).all() == []
    # the proposer cannot confirm their own decision
    step(harness, app, reply(alice_copy, "alice@example.org", "!confirm"))
    assert "second member" in text_of(latest(rx, "alice@example.org"))
    carol_copy = rx.to("carol@example.org")[0]
    step(harness, app, reply(carol_copy, "carol@example.org", "!confirm"))
    with app.sessions() as session:
        assert session.scalars(select(Decision.status)).one() == "effective"
        [sanction] = session.scalars(select(Sanction)).all()
        assert (sanction.target_address, sanction.kind, str(sanction.ends_on)) == ("pat@example.net", "temporary-ban", "2027-01-31")
    assert the_case(app).status == "decided"

    # !send reported: only the new text goes to the reported person
    step(harness, app, reply(alice_copy, "alice@example.org", "!send reported", "You are banned until 31 January. BAN-NOTICE-4"))
    [to_pat] = rx.to("pat@example.net")
    assert "BAN-NOTICE-4" in text_of(to_pat) and "REPORT-TEXT-1" not in text_of(to_pat)
    assert "INTERNAL-NOTE" not in text_of(to_pat)

    # the ledger and the case file show it
    import contextlib
    import io
    import json

    from conduct_inbox.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sanctions", "--json", "--all", "--config", str(harness.config_path)]) == 0
    assert json.loads(out.getvalue()) == [{"case": case.ref, "target": "pat@example.net", "kind": "temporary-ban",
                                           "scope": "all spaces", "starts_on": "2026-11-24", "ends_on": "2027-01-31"}]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["cases", "show", case.ref, "--json", "--config", str(harness.config_path)]) == 0
    shown = json.loads(out.getvalue())
    assert {p["role"] for p in shown["parties"]} == {"reporter", "reported"}
    assert [(d["kinds"], d["status"], d["confirmed_by"]) for d in shown["decisions"]] == [
        (["temporary-ban"], "effective", "carol@example.org")
    ]
    assert any(e["action"] == "command_confirm" and e["actor"] == "carol@example.org" for e in shown["events"])

    # close: steering report without the reporter's identity
    step(harness, app, reply(alice_copy, "alice@example.org", "!close"))
    assert the_case(app).status == "closed"
    steering = [m for m in rx.to("sam@example.org") if "steering committee" in str(parsed(m)["Subject"])]
    assert len(steering) == 1
    report_text = text_of(steering[0])
    assert "reporter@example.net" not in report_text and "Robin" not in report_text
    assert "temporary-ban" in report_text

    # reconsideration by a steering member on their personal token
    personal = tokens.reply_address("conduct", "example.org", tokens.mint(SECRET.encode(), "personal", None, "sam@example.org"))
    msg = EmailMessage()
    msg["From"] = "sam@example.org"
    msg["To"] = personal
    msg["Subject"] = f"!reconsider {case.ref}"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("The reported person asked us to reconsider.")
    step(harness, app, msg.as_bytes())
    assert the_case(app).status == "reconsideration"
    with app.sessions() as session:
        assert session.scalars(select(Decision.status)).one() == "effective"  # the decision stays on record
        actions = session.scalars(select(Event.action).where(Event.case_id == case.id)).all()
    for action in ("command_ack", "command_reply", "command_decide", "command_confirm", "command_close", "status_changed"):
        assert action in actions


def test_reply_refused_when_empty_or_leaking_a_note(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report())
    alice_copy = rx.to("alice@example.org")[0]
    step(harness, app, reply(alice_copy, "alice@example.org", "", "The respondent has a history of similar conduct at three events"))
    reporter_before = len(rx.to("reporter@example.net"))
    step(harness, app, reply(alice_copy, "alice@example.org", "!reply", ""))
    assert "no text" in text_of(latest(rx, "alice@example.org"))
    leaked = "Hello, the respondent has a history of similar conduct at three events, so we act."
    step(harness, app, reply(alice_copy, "alice@example.org", "!reply", leaked))
    assert "internal note" in text_of(latest(rx, "alice@example.org"))
    assert len(rx.to("reporter@example.net")) == reporter_before


def test_bad_commands_change_nothing_and_explain(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report())
    alice_copy = rx.to("alice@example.org")[0]
    step(harness, app, reply(alice_copy, "alice@example.org", "!ack !frobnicate"))
    assert the_case(app).status == "new"
    answer = text_of(latest(rx, "alice@example.org"))
    assert "frobnicate" in answer and "!help" in answer
    # an illegal transition rolls back the whole subject
    step(harness, app, reply(alice_copy, "alice@example.org", "!assign Bob !close"))
    case = the_case(app)
    assert case.assignee is None and case.status == "new"


def test_spoofing_has_no_effect(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report())
    step(harness, app, report(sender="other@example.net", subject="Another incident"))
    with app.sessions() as session:
        first, second = session.scalars(select(Case).order_by(Case.id)).all()
    alice_first = rx.to("alice@example.org")[0]
    bob_first = rx.to("bob@example.org")[0]
    alice_second = rx.to("alice@example.org")[1]
    sent_before = len(rx.messages)

    # forged From, no token
    step(harness, app, reply(alice_first, "alice@example.org", "!ack", to="conduct@example.org"))
    # another member's token
    step(harness, app, reply(bob_first, "alice@example.org", "!ack"))
    # another case's token
    step(harness, app, reply(alice_second, "alice@example.org", "!ack", subject=f"Re: [conduct #{first.ref}] x !ack"))
    # a personal token used for a case command
    personal = tokens.reply_address("conduct", "example.org", tokens.mint(SECRET.encode(), "personal", None, "alice@example.org"))
    step(harness, app, reply(alice_first, "alice@example.org", "!ack", to=personal))
    # a reporter's subject containing !reply
    step(harness, app, report(subject=f"Re: [conduct #{first.ref}] !reply !close", body="hello"))

    with app.sessions() as session:
        for case in session.scalars(select(Case)):
            assert case.status == "new" and case.human_ack_at is None
    # nothing went to the reporters; the reporter's follow-up went to the committee only; the
    # three mails that claim to be alice's about a case without her token for it (no token,
    # another member's, another case's) are refused, and alice, at her roster address, is told
    # why each time; the personal token on a case is refused silently
    assert len(rx.to("reporter@example.net")) == 1
    assert len(rx.messages) == sent_before + 3 + 3
    assert sum("nothing was filed" in text_of(m) for m in rx.to("alice@example.org")) == 3


def test_recused_members_token_is_dead(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report())
    alice_copy = rx.to("alice@example.org")[0]
    bob_copy = rx.to("bob@example.org")[0]
    step(harness, app, reply(alice_copy, "alice@example.org", "!concerns Bob Builder"))
    assert "bob@example.org" in the_case(app).recused_members()
    bob_before = len(rx.to("bob@example.org"))
    step(harness, app, reply(bob_copy, "bob@example.org", "!ack"))
    step(harness, app, reply(alice_copy, "alice@example.org", "", "a note Bob must not see"))
    assert the_case(app).human_ack_at is None
    assert len(rx.to("bob@example.org")) == bob_before


def test_dmarc_pass_allows_status_but_never_reply(harness, smtp_receiver):
    rx = smtp_receiver
    path = harness.config_path
    path.write_text(path.read_text().replace("[security]\n", '[security]\ntrusted_authserv_id = "mx.example.org"\n'))
    app = harness.app()
    step(harness, app, report())
    copy = rx.to("alice@example.org")[0]
    auth = "Authentication-Results: mx.example.org; dmarc=pass (p=reject) header.from=example.org\r\n"
    raw = reply(copy, "alice@example.org", "!ack", to="conduct@example.org")
    without_pass = raw.replace(b"From: alice@example.org", b"From: alice@example.org\r\n" + auth.replace("pass", "fail").encode().rstrip())
    step(harness, app, without_pass)
    assert the_case(app).human_ack_at is None  # no DMARC pass, no token: not a command
    # addressed to plain conduct@ with the case tag: DMARC pass authenticates !ack (DESIGN)
    step(harness, app, auth.encode() + reply(copy, "alice@example.org", "!ack", to="conduct@example.org"))
    assert the_case(app).human_ack_at is not None
    reporter_before = len(rx.to("reporter@example.net"))
    raw = reply(copy, "alice@example.org", "!reply", "text").replace(
        str(parsed(copy)["Reply-To"]).encode(), b"conduct+aaaaaaaaaaaaaaaaaaaaa@example.org"
    )
    step(harness, app, auth.encode() + raw)
    assert len(rx.to("reporter@example.net")) == reporter_before


def test_new_forwarded_report_with_concerns(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    personal = tokens.reply_address("conduct", "example.org", tokens.mint(SECRET.encode(), "personal", None, "carol@example.org"))
    inner = report(sender="direct@example.net", subject="Something happened", body="Bob Builder was rude to me. FORWARDED-5")
    msg = EmailMessage()
    msg["From"] = "carol@example.org"
    msg["To"] = personal
    msg["Subject"] = "Fwd: Something happened !new direct@example.net !concerns Alice Example"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Forwarding a report sent to me directly.")
    msg.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))
    step(harness, app, msg.as_bytes())
    case = the_case(app)
    assert case.forwarded_by == "carol@example.org"
    assert case.party("reporter").address == "direct@example.net"
    assert case.recused_members() == {"alice@example.org", "bob@example.org"}
    assert rx.to("alice@example.org") == [] and rx.to("bob@example.org") == []
    assert "FORWARDED-5" in text_of(rx.to("carol@example.org")[0])
    assert len(rx.to("direct@example.net")) == 1  # acknowledged


def test_urgent_spam_list_help_and_reopen(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report())
    copy = rx.to("bob@example.org")[0]
    step(harness, app, reply(copy, "bob@example.org", "!urgent"))
    case = the_case(app)
    assert case.urgent and case.next_due_at <= case.created_at + timedelta(hours=1)  # urgent deadlines are short
    assert any("URGENT" in str(parsed(m)["Subject"]) for m in rx.to("carol@example.org"))
    step(harness, app, reply(copy, "bob@example.org", "!list !help"))
    answer = text_of(latest(rx, "bob@example.org"))
    assert case.ref in answer and "!reply" in answer
    step(harness, app, reply(copy, "bob@example.org", "!close silent duplicate report"))
    assert the_case(app).status == "closed" and the_case(app).next_due_at is None
    step(harness, app, reply(copy, "bob@example.org", "!reopen"))
    assert the_case(app).status == "investigating" and the_case(app).next_due_at is not None
    step(harness, app, reply(copy, "bob@example.org", "!spam"))
    case = the_case(app)
    assert case.spam and case.next_due_at is None


def test_acknowledgements_are_rate_limited_per_address(harness, smtp_receiver):
    app = harness.app()
    for n in range(7):
        harness.deliver(report(subject=f"report {n}", body=f"text {n}"))
    run_once(app)
    with app.sessions() as session:
        assert len(session.scalars(select(Case)).all()) == 7  # every report is a case
    assert len(smtp_receiver.to("reporter@example.net")) == 5  # intake.ack_limit_per_address
    limit_alerts = [m for m in smtp_receiver.to("alice@example.org") if "Alert" in str(parsed(m)["Subject"])]
    assert len(limit_alerts) == 1  # a tripped limit alerts once
