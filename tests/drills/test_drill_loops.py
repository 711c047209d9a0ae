"""Mail-loop drills: our own acknowledgement coming back, vacation responders answering it, a
bounce storm on our VERP address, and a member's out-of-office answering a case mail. None of
them may make the daemon send anything, except one alert to the committee for the one mail that
really failed.

Real Dovecot (IMAP), aiosmtpd and SQLite/PostgreSQL; each step is a `run --once` pass
(intake, escalations, outbox), so "nothing sent" is what the SMTP receiver saw.
"""

from __future__ import annotations

from collections import Counter
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from conduct_inbox.core import tokens
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, InboundMessage, OutboxMessage
from tests.harness import MEMBERS, SECRET, Harness, count, deliver_all, delivery_report, parsed, report

MEMBER_EMAILS = [m[1] for m in MEMBERS]
REPORTER = "reporter@example.net"


def reported(harness: Harness):
    """One report, acknowledged and copied to the committee; returns (app, the ack's outbox row)."""
    harness.deliver(report(sender=REPORTER))
    app = harness.app()
    assert run_once(app) == 0
    assert len(harness.receiver.messages) == 1 + len(MEMBERS)
    with app.sessions() as session:
        ack = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack")).one()
        case = session.scalars(select(Case)).one()
    return app, ack, case


def nothing_more_sent(app, harness: Harness, before: int) -> None:
    run_once(app)  # a second pass: anything queued by the first is sent now
    extra = [f"{m.rcpt_tos[0]}: {parsed(m)['Subject']}" for m in harness.receiver.messages[before:]]
    assert extra == [], f"{len(extra)} mails sent"
    assert count(app, OutboxMessage, OutboxMessage.status == "pending") == 0
    assert count(app, Case) == 1


def test_own_acknowledgement_sent_back_to_us_sends_nothing(harness, smtp_receiver):
    app, ack, _ = reported(harness)
    before = len(smtp_receiver.messages)
    [mail] = smtp_receiver.to(REPORTER)
    copy = next(m for m in smtp_receiver.messages if m.rcpt_tos == (MEMBER_EMAILS[0],))
    # A forward on the reporter's side, and a member's filter, send our own mails back to conduct@.
    harness.deliver(mail.content)
    harness.deliver(copy.content)
    run_once(app)
    nothing_more_sent(app, harness, before)
    assert count(app, InboundMessage, InboundMessage.status == "dropped") == 2


def test_own_mail_back_without_its_loop_header_is_known_by_its_message_id(harness, smtp_receiver):
    """A forwarder that strips unknown headers: our Message-ID (in our domain) still gives it away."""
    app, ack, _ = reported(harness)
    before = len(smtp_receiver.messages)
    [mail] = smtp_receiver.to(REPORTER)
    stripped = b"\r\n".join(line for line in mail.content.split(b"\r\n")
                             if not line.lower().startswith(b"x-conduct-inbox-loop:"))
    assert b"X-Conduct-Inbox-Loop" not in stripped
    harness.deliver(stripped)
    run_once(app)
    nothing_more_sent(app, harness, before)
    assert count(app, InboundMessage, InboundMessage.status == "dropped") == 1


def vacation_reply(ack: OutboxMessage, case: Case, headers: dict[str, str], to: str = "conduct@example.org") -> bytes:
    lines = [
        f"From: Robin Reporter <{REPORTER}>",
        f"To: {to}",
        f"Subject: Out of office: [conduct #{case.ref}] Your report has been received",
        f"Message-ID: {make_msgid(domain='example.net')}",
        f"In-Reply-To: <{ack.message_id}>",
        f"References: <{ack.message_id}>",
        "Date: Tue, 24 Nov 2026 09:05:00 +0000",
        *(f"{k}: {v}" for k, v in headers.items()),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "I am away until Monday and will read your message when I am back.",
        "",
    ]
    return "\r\n".join(lines).encode()


RESPONDERS = [
    pytest.param({"Auto-Submitted": "auto-replied"}, id="auto-submitted"),
    pytest.param({"Precedence": "bulk"}, id="precedence-bulk"),
    pytest.param({"Precedence": "junk"}, id="precedence-junk"),
    pytest.param({"X-Autoreply": "yes"}, id="x-autoreply"),
    pytest.param({"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All",
                  "X-MS-Exchange-Inbox-Rules-Loop": REPORTER}, id="outlook"),
]


@pytest.mark.parametrize("headers", RESPONDERS)
def test_vacation_reply_to_the_acknowledgement_sends_nothing(harness, smtp_receiver, headers):
    app, ack, case = reported(harness)
    before = len(smtp_receiver.messages)
    harness.deliver(vacation_reply(ack, case, headers))
    run_once(app)
    nothing_more_sent(app, harness, before)
    with app.sessions() as session:
        row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert (row.status, row.case_id) == ("processed", case.id)  # kept with the case, as evidence
        assert session.get(OutboxMessage, ack.id).status == "sent"


def test_vacation_reply_to_our_verp_envelope_sender_is_not_a_bounce(harness, smtp_receiver):
    """RFC 3834 responders answer the envelope sender: our VERP address, with an empty Return-Path."""
    app, ack, case = reported(harness)
    before = len(smtp_receiver.messages)
    verp = smtp_receiver.to(REPORTER)[0].mail_from
    assert verp == tokens.bounce_address("conduct", "example.org", SECRET.encode(), ack.id, ack.message_id)
    raw = vacation_reply(ack, case, {"Auto-Submitted": "auto-replied"}, to=verp)
    harness.deliver(b"Return-Path: <>\r\nDelivered-To: " + verp.encode() + b"\r\n" + raw)
    run_once(app)
    nothing_more_sent(app, harness, before)
    with app.sessions() as session:
        assert session.get(OutboxMessage, ack.id).status == "sent"  # not taken for a failed delivery


def dsn(row_id: int, message_id: str, recipient: str) -> bytes:
    """A DSN to the row's signed VERP address (its envelope sender), naming `recipient`."""
    return delivery_report(tokens.bounce_address("conduct", "example.org", SECRET.encode(), row_id, message_id), recipient, message_id)


@pytest.mark.timeout(120)
def test_bounce_storm_gives_one_alert_and_nothing_else(harness, smtp_receiver):
    app, ack, case = reported(harness)
    before = len(smtp_receiver.messages)
    deliver_all(harness, [dsn(ack.id, ack.message_id, REPORTER) for _ in range(100)])
    run_once(app)
    run_once(app)

    new = smtp_receiver.messages[before:]
    assert sorted(r for m in new for r in m.rcpt_tos) == sorted(MEMBER_EMAILS), [parsed(m)["Subject"] for m in new]
    assert all("Alert" in parsed(m)["Subject"] for m in new)  # one alert, to each member once
    with app.sessions() as session:
        assert session.get(OutboxMessage, ack.id).status == "failed"
        statuses = Counter(session.scalars(
            select(InboundMessage.status).where(InboundMessage.kind == "bounce")).all())
        assert statuses == {"machine": 100}
        alerts = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "alert")).all()
    assert count(app, Case) == 1

    # The alerts bounce too (a member's mailbox is full): that alerts nobody again.
    deliver_all(harness, [dsn(a.id, a.message_id, a.recipient) for a in alerts for _ in range(10)])
    run_once(app)
    nothing_more_sent(app, harness, before + len(MEMBERS))
    assert count(app, OutboxMessage, OutboxMessage.kind == "alert", OutboxMessage.status == "failed") == len(MEMBERS)


def test_member_out_of_office_answering_a_case_mail_sends_nothing(harness, smtp_receiver):
    app, _, case = reported(harness)
    before = len(smtp_receiver.messages)
    [copy] = smtp_receiver.to(MEMBER_EMAILS[0])
    message = parsed(copy)
    reply = (
        f"From: {MEMBERS[0][0]} <{MEMBER_EMAILS[0]}>\r\n"
        f"To: {message['Reply-To']}\r\n"
        f"Subject: Automatic reply: {message['Subject']}\r\n"
        f"Message-ID: {make_msgid(domain='example.org')}\r\n"
        f"In-Reply-To: {message['Message-ID']}\r\n"
        "Date: Tue, 24 Nov 2026 09:06:00 +0000\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "I am on leave until 1 December; for urgent matters contact the chair.\r\n"
    ).encode()
    harness.deliver(reply)
    run_once(app)
    nothing_more_sent(app, harness, before)
    with app.sessions() as session:
        row = session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc())).first()
        assert row.status == "processed" and row.case_id == case.id
