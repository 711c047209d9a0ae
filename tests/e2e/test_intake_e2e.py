"""End to end over real Dovecot (IMAP), aiosmtpd (SMTP) and SQLite/PostgreSQL: the intake spine."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import func, select

from conduct_inbox.adapters.imap import ImapMailbox
from conduct_inbox.adapters.parsing import WorkerParser
from conduct_inbox.shell.app import build_app
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, InboundMessage, OutboxMessage, Quarantine
from tests.faults import faulty_parse
from tests.harness import MEMBERS, count, parsed, report, text_of

MEMBER_EMAILS = [m[1] for m in MEMBERS]


def count(app, model, *where):
    with app.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def cases(app):
    with app.sessions() as session:
        return session.scalars(select(Case).order_by(Case.id)).all()


def test_report_becomes_case_ack_and_member_copies(harness, smtp_receiver):
    body = "During the sprint a participant kept commenting on my appearance. UNIQUE-BODY-7731"
    harness.deliver(report(subject="Incident at the sprint UNIQUE-SUBJ-4410", body=body), flags=("\\Seen",))
    app = harness.app()
    assert run_once(app) == 0

    [case] = cases(app)
    assert re.fullmatch(r"2026-\d{4}", case.ref)
    assert case.status == "new" and case.flags == []
    smtp_receiver.wait_for(1 + len(MEMBERS))

    [ack] = smtp_receiver.to("reporter@example.net")
    ack_msg, ack_text = parsed(ack), " ".join(text_of(ack).split())
    assert ack_msg["Subject"].startswith(f"[conduct #{case.ref}]")
    assert case.ref in ack_text
    assert "24 hours" in ack_text and "one week" in ack_text
    assert "law enforcement" in ack_text and "physical danger" in ack_text.lower()
    assert "names" in ack_text.lower() and "when and where" in ack_text.lower()
    for secret in ("UNIQUE-BODY-7731", "UNIQUE-SUBJ-4410", "appearance"):
        assert secret not in ack.content.decode(errors="replace")
    assert ack_msg["Auto-Submitted"] == "auto-replied"
    assert ack_msg["From"].addresses[0].addr_spec == "conduct@example.org"
    assert re.fullmatch(r"conduct\+bounce-\d+-[a-z2-7]{20}@example\.org", ack.mail_from)  # signed VERP

    for member in MEMBER_EMAILS:
        [copy] = smtp_receiver.to(member)
        msg = parsed(copy)
        assert list(copy.rcpt_tos) == [member]
        assert [a.addr_spec for a in msg["To"].addresses] == [member]
        assert msg["Subject"] == f"[conduct #{case.ref}] Incident at the sprint UNIQUE-SUBJ-4410"
        for header in ("To", "Cc", "Reply-To", "From", "Sender"):
            assert "reporter@example.net" not in str(msg.get(header, ""))
        assert re.fullmatch(r"conduct\+[a-z2-7]{21}@example\.org", str(msg["Reply-To"]))
        text = text_of(copy)
        assert text.startswith("To: Alice Example, Bob Builder, Carol Chen")
        assert "UNIQUE-BODY-7731" in text
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["X-Auto-Response-Suppress"] == "All"

    assert harness.folder_count("INBOX") == 0
    assert harness.folder_count("Processed") == 1


UNUSUAL_SLA = """
[sla]
ack_hours = 36
urgent_ack_hours = 3
response_days = 10
"""


def _ack_text(smtp_receiver, reporter):
    [ack] = smtp_receiver.to(reporter)
    return " ".join(text_of(ack).split())


def test_ack_promises_the_configured_sla_times(harness, smtp_receiver):
    harness.extra_config = UNUSUAL_SLA
    harness.deliver(report(sender="plain@example.net", body="Someone kept interrupting me at the meetup."))
    app = harness.app()
    run_once(app)
    smtp_receiver.wait_for(1 + len(MEMBERS))
    text = _ack_text(smtp_receiver, "plain@example.net")
    assert "within 36 hours" in text
    assert "Within 10 days we will write to you" in text and "again within 10 days of each update" in text
    # No number the daemon does not keep: neither the defaults nor the urgent time.
    for stale in ("24 hours", "one week", "3 hours", "one hour", "urgent"):
        assert stale not in text
    # The committee's copy asks for the same deadline the reporter was promised.
    copy = " ".join(text_of(smtp_receiver.to("alice@example.org")[0]).split())
    assert "Please acknowledge it personally within 36 hours" in copy


def test_urgent_report_ack_promises_the_urgent_time(harness, smtp_receiver):
    harness.extra_config = UNUSUAL_SLA
    harness.deliver(report(sender="scared@example.net", body="I feel unsafe: he said he would follow me home."))
    app = harness.app()
    run_once(app)
    [case] = cases(app)
    assert case.urgent
    smtp_receiver.wait_for(1 + len(MEMBERS))
    text = _ack_text(smtp_receiver, "scared@example.net")
    assert "treating your report as urgent" in text and "within 3 hours" in text
    assert "Within 10 days we will write to you" in text
    for stale in ("36 hours", "24 hours", "one hour", "one week"):
        assert stale not in text
    copy = " ".join(text_of(smtp_receiver.to("alice@example.org")[0]).split())
    assert "within 3 hours" in copy


def test_default_sla_reads_in_words(harness, smtp_receiver):
    harness.extra_config = "[sla]\nurgent_ack_hours = 1\nresponse_days = 14\n"
    harness.deliver(report(sender="urgent@example.net", body="This is a threat to my safety."))
    app = harness.app()
    run_once(app)
    smtp_receiver.wait_for(1 + len(MEMBERS))
    text = _ack_text(smtp_receiver, "urgent@example.net")
    assert "within one hour" in text and "Within two weeks we will write" in text


def test_attachments_forwarded_and_large_ones_listed(harness, smtp_receiver):
    small = b"%PDF-1.4 small evidence " * 100
    large = b"x" * (2 * 1024 * 1024)
    harness.extra_config = ""
    harness.deliver(
        report(attachments=[("screenshot.pdf", "application/pdf", small), ("video.bin", "application/octet-stream", large)])
    )
    settings_path = harness.config_path
    settings_path.write_text(settings_path.read_text().replace("[intake]", "[intake]\nmax_forward_attachment_mb = 1"))
    app = harness.app()
    run_once(app)
    copy = smtp_receiver.to("alice@example.org")[0]
    msg = parsed(copy)
    names = [part.get_filename() for part in msg.iter_attachments()]
    assert names == ["screenshot.pdf"]
    assert next(msg.iter_attachments()).get_content() == small
    text = text_of(copy)
    assert "video.bin" in text and "not attached" in text


def test_duplicate_delivery_gives_one_case_and_one_set_of_mails(harness, smtp_receiver):
    raw = report()
    harness.deliver(raw)
    harness.deliver(raw)
    app = harness.app()
    run_once(app)
    harness.deliver(raw)  # and once more, in a later poll
    run_once(app)
    assert len(cases(app)) == 1
    assert len(smtp_receiver.messages) == 1 + len(MEMBERS)
    assert count(app, InboundMessage, InboundMessage.status == "duplicate") == 2
    assert harness.folder_count("INBOX") == 0 and harness.folder_count("Processed") == 3


def test_reused_message_id_with_different_body_is_kept_and_flagged(harness):
    harness.deliver(report(message_id="<form@example.net>", body="first report"))
    harness.deliver(report(message_id="<form@example.net>", body="second, different report", sender="other@example.net"))
    app = harness.app()
    run_once(app)
    assert len(cases(app)) == 2
    assert count(app, InboundMessage, InboundMessage.message_id_reused.is_(True)) == 1


class CrashAfterCommit(ImapMailbox):
    """Dies between the commit and the move, like a power cut would."""

    def move(self, uids, destination):
        raise KeyboardInterrupt("simulated crash")


def test_crash_between_commit_and_move_creates_nothing_new(harness, smtp_receiver, dovecot):
    harness.deliver(report())
    settings = harness.settings()
    from conduct_inbox.shell.app import build_app

    box = CrashAfterCommit(dovecot.host, dovecot.port, "none", harness.user, dovecot.password)
    crashed = build_app(settings, mailbox=box, clock=harness.clock)
    with pytest.raises(KeyboardInterrupt):
        crashed.intake.poll_once()
    crashed.close()
    assert harness.folder_count("INBOX") == 1  # still there: not moved

    app = harness.app()  # the restarted daemon
    run_once(app)
    assert len(cases(app)) == 1
    assert len(smtp_receiver.messages) == 1 + len(MEMBERS)
    harness.clock.advance(minutes=11)  # a leftover is moved once no daemon can still be about to move it
    run_once(app)
    assert len(cases(app)) == 1 and len(smtp_receiver.messages) == 1 + len(MEMBERS)
    assert harness.folder_count("INBOX") == 0 and harness.folder_count("Processed") == 1


def test_smtp_down_then_up_delivers_each_mail_once(harness, smtp_receiver):
    smtp_receiver.down()
    harness.deliver(report())
    app = harness.app()
    assert run_once(app) == 1  # outage reported
    assert count(app, OutboxMessage, OutboxMessage.status == "pending") == 1 + len(MEMBERS)
    assert count(app, OutboxMessage, OutboxMessage.status == "failed") == 0
    smtp_receiver.up()
    harness.clock.advance(seconds=0.5)  # still inside the backoff: nothing is tried
    assert asyncio.run(app.dispatcher.flush_all(harness.clock())).sent == 0
    harness.clock.advance(seconds=5)
    assert run_once(app) == 0
    smtp_receiver.wait_for(1 + len(MEMBERS))
    run_once(app)
    assert len(smtp_receiver.messages) == 1 + len(MEMBERS)
    assert count(app, OutboxMessage, OutboxMessage.status == "sent") == 1 + len(MEMBERS)


def test_auth_refused_is_an_outage_and_rows_stay_pending(harness, smtp_receiver):
    smtp_receiver.require_auth = ("conduct", "right-password")
    path = harness.config_path
    path.write_text(path.read_text().replace('[smtp]\n', '[smtp]\nusername = "conduct"\npassword = "wrong-password"\n'))
    harness.deliver(report())
    app = harness.app()
    assert run_once(app) == 1
    assert count(app, OutboxMessage, OutboxMessage.status == "pending") == 1 + len(MEMBERS)
    assert smtp_receiver.messages == []


def test_recipient_rejected_marks_that_row_failed_and_alerts(harness, smtp_receiver):
    smtp_receiver.reject_rcpt["reporter@example.net"] = "550 5.1.1 <reporter@example.net>: no such user"
    harness.deliver(report())
    app = harness.app()
    run_once(app)
    with app.sessions() as session:
        ack = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack")).one()
        assert ack.status == "failed" and ack.last_code == 550
        assert "@" not in (ack.last_error or "")
    run_once(app)  # send the alerts
    for member in MEMBER_EMAILS:
        alerts = [m for m in smtp_receiver.to(member) if "Alert" in parsed(m)["Subject"]]
        assert len(alerts) == 1
        text = text_of(alerts[0])
        assert f"outbox row {ack.id}" in text and "550" in text
        assert "reporter@example.net" not in text


def test_automatic_mail_becomes_auto_case_without_ack(harness, smtp_receiver):
    harness.deliver(report(headers={"Auto-Submitted": "auto-generated"}, subject="Form submission"))
    harness.deliver(report(headers={"List-Id": "<other.lists.example.net>"}, subject="List post", sender="l@example.net"))
    harness.deliver(report(headers={"Precedence": "bulk"}, subject="Bulk", sender="b@example.net"))
    app = harness.app()
    run_once(app)
    all_cases = cases(app)
    assert [c.flags for c in all_cases] == [["auto"], ["auto"], ["auto"]]
    assert all(c.next_due_at is None for c in all_cases)
    assert smtp_receiver.to("reporter@example.net") == []
    copies = smtp_receiver.to("alice@example.org")
    assert len(copies) == 3 and all("[auto]" in parsed(c)["Subject"] for c in copies)


def test_own_list_mail_is_a_normal_report(harness, smtp_receiver):
    path = harness.config_path
    path.write_text(path.read_text().replace("[mailbox]\n", '[mailbox]\nown_list_ids = ["conduct.groups.example.org"]\n'))
    harness.deliver(report(headers={"List-Id": "<conduct.groups.example.org>", "Precedence": "list"}))
    app = harness.app()
    run_once(app)
    [case] = cases(app)
    assert case.flags == []
    assert len(smtp_receiver.to("reporter@example.net")) == 1


def test_spam_verdict_marks_case_spam_without_ack(harness, smtp_receiver):
    harness.deliver(report(headers={"X-Spam-Flag": "YES"}))
    app = harness.app()
    run_once(app)
    [case] = cases(app)
    assert case.spam and case.next_due_at is None
    assert smtp_receiver.messages == []
    assert harness.folder_count("Processed") == 1


def test_delivery_report_for_our_row_marks_it_failed(harness, smtp_receiver):
    harness.deliver(report())
    app = harness.app()
    run_once(app)
    with app.sessions() as session:
        ack = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack")).one()
    dsn = (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: {smtp_receiver.to('reporter@example.net')[0].mail_from}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; reporter@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{ack.message_id}>\r\nSubject: {ack.subject}\r\n"
        "--B--\r\n"
    ).encode()
    harness.deliver(dsn)
    run_once(app)
    assert len(cases(app)) == 1  # machine mail is never a case
    with app.sessions() as session:
        assert session.get(OutboxMessage, ack.id).status == "failed"
        assert session.scalars(select(InboundMessage.status).where(InboundMessage.kind == "bounce")).one() == "machine"
    alerts = [m for m in smtp_receiver.to("bob@example.org") if "Alert" in parsed(m)["Subject"]]
    assert len(alerts) == 1


def test_unmatched_delivery_report_is_stored_not_a_case(harness, smtp_receiver):
    dsn = (
        "From: postmaster@mx.example.net\r\nTo: conduct@example.org\r\nSubject: failure notice\r\n"
        "Message-ID: <dsn-2@mx.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        "Final-Recipient: rfc822; someone@example.net\r\nAction: failed\r\nStatus: 5.0.0\r\n--B--\r\n"
    ).encode()
    harness.deliver(dsn)
    app = harness.app()
    run_once(app)
    assert cases(app) == []
    assert count(app, InboundMessage, InboundMessage.status == "machine") == 1
    assert smtp_receiver.messages == []
    assert harness.folder_count("Processed") == 1


def test_our_own_mail_coming_back_is_dropped(harness, smtp_receiver):
    harness.deliver(report())
    app = harness.app()
    run_once(app)
    ack = smtp_receiver.to("reporter@example.net")[0]
    before = len(smtp_receiver.messages)
    harness.deliver(ack.content)  # e.g. a forwarding loop delivers our acknowledgement to us
    run_once(app)
    assert len(cases(app)) == 1
    assert len(smtp_receiver.messages) == before
    assert count(app, InboundMessage, InboundMessage.status == "dropped") == 1


@pytest.mark.timeout(90)
def test_crashing_and_hanging_messages_are_quarantined_and_do_not_block(harness, smtp_receiver):
    harness.parser = WorkerParser(timeout=1.0, function=faulty_parse)
    harness.deliver(report(headers={"X-Test-Fault": "hang"}, sender="h@example.net"))
    harness.deliver(report(headers={"X-Test-Fault": "crash"}, sender="c@example.net"))
    harness.deliver(report(headers={"X-Test-Fault": "die"}, sender="d@example.net"))
    harness.deliver(report(sender="fine@example.net"))
    app = harness.app()
    run_once(app)
    assert len(cases(app)) == 1  # the good report went through on the first pass
    assert len(smtp_receiver.to("fine@example.net")) == 1
    run_once(app)
    run_once(app)
    assert count(app, Quarantine) == 3
    assert count(app, InboundMessage, InboundMessage.status == "quarantined") == 3
    assert harness.folder_count("Quarantine") == 3 and harness.folder_count("INBOX") == 0
    with app.sessions() as session:
        raws = session.scalars(select(InboundMessage.raw).where(InboundMessage.status == "quarantined")).all()
    assert all(b"X-Test-Fault" in raw for raw in raws)  # kept unchanged
    run_once(app)
    alerts = [m for m in smtp_receiver.to("carol@example.org") if "Alert" in parsed(m)["Subject"]]
    assert len(alerts) == 3
    for alert in alerts:
        text = text_of(alert)
        assert "quarantine" in text and "@example.net" not in text


def test_dmarc_fail_seen_by_our_server_marks_the_case_spam(harness, smtp_receiver):
    path = harness.config_path
    path.write_text(path.read_text().replace("[security]\n", '[security]\ntrusted_authserv_id = "mx.example.org"\n'))
    ours = "mx.example.org; spf=fail; dmarc=fail (p=reject) header.from=bank.example"
    forged = "mx.evil.example; dmarc=fail header.from=example.net"  # not our server: ignored
    harness.deliver(report(sender="alerts@bank.example", subject="Verify your account", headers={"Authentication-Results": ours}))
    harness.deliver(report(sender="real@example.net", subject="A real report", headers={"Authentication-Results": forged}))
    app = harness.app()
    run_once(app)
    spam = {c.title: c.spam for c in cases(app)}
    assert spam == {"Verify your account": True, "A real report": False}
    assert smtp_receiver.to("alerts@bank.example") == [] and len(smtp_receiver.to("real@example.net")) == 1


def test_connections_cut_mid_pass_cost_no_attempt_and_no_report(harness, database):
    """PostgreSQL drops the intake's connections between two messages (as a restart does): the
    pass goes on over new ones, and no message is charged an attempt for it."""
    if database.backend != "postgresql":
        pytest.skip("a server-side disconnect")
    from sqlalchemy import create_engine, text

    for i in range(3):
        harness.deliver(report(sender=f"cut{i}@example.net"))
    admin = create_engine(database.url, isolation_level="AUTOCOMMIT")
    commits = []

    def cut_connections() -> None:  # in the intake thread, right after a report's commit
        commits.append(1)
        if len(commits) == 1:
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND pid <> pg_backend_pid()"))

    app = build_app(harness.settings(), clock=harness.clock, on_commit=cut_connections)
    harness.apps.append(app)
    stats = app.intake.poll_once()
    admin.dispose()

    assert stats.processed == 3 and stats.failed == 0 and stats.quarantined == 0
    with app.sessions() as session:
        rows = session.scalars(select(InboundMessage)).all()
        assert sorted((r.status, r.attempts) for r in rows) == [("processed", 1)] * 3
