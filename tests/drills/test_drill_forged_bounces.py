"""Attack drills: forged delivery reports, and acknowledgements multiplied by +tags.

An outsider who read DESIGN.md knows our VERP format and sends delivery reports (DSNs) to
guessable `conduct+bounce-<n>@` addresses: they must neither cancel mail not yet sent (a
reporter's acknowledgement, the committee's copies) nor fail mail already delivered (a flood of
alerts). Only a DSN on a correctly signed VERP address, for a row already handed to the server,
that names the row's own recipient fails a row. And `victim+1@ ... victim+40@` is one
correspondent for the acknowledgement limit.

Real Dovecot (IMAP), aiosmtpd and SQLite/PostgreSQL.
"""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import select

from conduct_inbox.core import tokens
from conduct_inbox.mail.addresses import canonical_address
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, InboundMessage, OutboxMessage
from tests.harness import MEMBERS, SECRET, Harness, count, deliver_all, delivery_report, parsed, report

MEMBER_EMAILS = [m[1] for m in MEMBERS]
REPORTER = "reporter@example.net"
WRONG_MAC = "a" * 20


def signed(row_id: int, message_id: str) -> str:
    """The signed VERP address of outbox row `row_id` holding the mail `message_id`."""
    return tokens.bounce_address("conduct", "example.org", SECRET.encode(), row_id, message_id)


def tampered(address: str) -> str:
    """The address with the last character of its MAC changed."""
    local, domain = address.split("@")
    return local[:-1] + ("b" if local[-1] != "b" else "c") + "@" + domain


def alerts_sent(receiver, before: int = 0) -> list:
    return [m for m in receiver.messages[before:] if "Alert" in str(parsed(m)["Subject"])]


def test_forged_bounces_cannot_cancel_mail_not_yet_sent(harness, smtp_receiver):
    """The report is taken in, its acknowledgement and copies wait in the outbox; before the
    dispatcher runs, DSNs arrive for every row: the old unsigned format, a signed-looking address
    with a wrong MAC, and even a correctly signed one (a row's address may leak). All name the
    row's own recipient. Nothing is cancelled: every mail goes out, and no alert."""
    harness.deliver(report(sender=REPORTER))
    app = harness.app()
    app.intake.poll_once()
    with app.sessions() as session:
        rows = session.execute(select(OutboxMessage.id, OutboxMessage.recipient, OutboxMessage.message_id)).all()
    assert len(rows) == 1 + len(MEMBERS) and count(app, OutboxMessage, OutboxMessage.status == "pending") == len(rows)
    forged = []
    for row_id, recipient, message_id in rows:
        for to in (f"conduct+bounce-{row_id}@example.org", f"conduct+bounce-{row_id}-{WRONG_MAC}@example.org",
                   f"CONDUCT+BOUNCE-{row_id}@EXAMPLE.ORG", signed(row_id, message_id)):
            forged.append(delivery_report(to, recipient, message_id))
    # Guesses beyond the rows that exist yet (the next case's mail) change nothing either.
    forged += [delivery_report(f"conduct+bounce-{i}@example.org", REPORTER) for i in range(len(rows) + 1, len(rows) + 9)]
    deliver_all(harness, forged)
    assert run_once(app) == 0
    run_once(app)

    assert sorted(r for m in smtp_receiver.messages for r in m.rcpt_tos) == sorted([REPORTER, *MEMBER_EMAILS])
    assert alerts_sent(smtp_receiver) == []
    with app.sessions() as session:
        assert Counter(session.scalars(select(OutboxMessage.status)).all()) == {"sent": len(rows)}
        assert Counter(session.execute(select(InboundMessage.kind, InboundMessage.status)
                                       .where(InboundMessage.case_id.is_(None))).all()) == {("machine", "machine"): len(forged)}
    assert count(app, Case) == 1


def reported(harness: Harness):
    harness.deliver(report(sender=REPORTER))
    app = harness.app()
    assert run_once(app) == 0
    assert len(harness.receiver.messages) == 1 + len(MEMBERS)
    with app.sessions() as session:
        ack = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "ack")).one()
        copy = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "report").limit(1)).one()
    return app, ack, copy


def test_forged_bounces_for_sent_mail_fail_nothing(harness, smtp_receiver):
    """Mail already delivered: DSNs with a bad or missing MAC, a correctly signed one naming another
    recipient, or one for another row's address, fail nothing and alert nobody."""
    app, ack, copy = reported(harness)
    before = len(smtp_receiver.messages)
    assert smtp_receiver.to(REPORTER)[0].mail_from == signed(ack.id, ack.message_id)
    forged = [
        delivery_report(f"conduct+bounce-{ack.id}@example.org", REPORTER, ack.message_id),  # old, unsigned format
        delivery_report(f"conduct+bounce-{ack.id}-{WRONG_MAC}@example.org", REPORTER, ack.message_id),  # wrong MAC
        delivery_report(tampered(signed(ack.id, ack.message_id)), REPORTER),  # one character of the MAC changed
        delivery_report(signed(ack.id, ack.message_id), "someone.else@example.net"),  # signed, names another recipient
        delivery_report(signed(ack.id, ack.message_id), copy.recipient),  # signed, names a member (another row's recipient)
        delivery_report(signed(copy.id, copy.message_id), REPORTER),  # the member's row, naming the reporter
        delivery_report("conduct@example.org", REPORTER, ack.message_id),  # our Message-ID, but no signed VERP
    ]
    deliver_all(harness, forged)
    run_once(app)
    run_once(app)
    assert smtp_receiver.messages[before:] == []
    with app.sessions() as session:
        assert Counter(session.scalars(select(OutboxMessage.status)).all()) == {"sent": 1 + len(MEMBERS)}
        kinds = Counter(session.scalars(select(InboundMessage.kind).where(InboundMessage.case_id.is_(None))).all())
    assert kinds == {"machine": len(forged)}
    assert count(app, Case) == 1


def test_genuine_bounce_on_the_signed_address_fails_its_row_and_alerts_once(harness, smtp_receiver):
    app, ack, _ = reported(harness)
    before = len(smtp_receiver.messages)
    verp = smtp_receiver.to(REPORTER)[0].mail_from  # where the receiving side sends its DSN
    # Mail systems may fold the local part's case; the recipient may come back in another case.
    deliver_all(harness, [delivery_report(verp, REPORTER.upper(), ack.message_id), delivery_report(verp.upper(), REPORTER)])
    run_once(app)
    run_once(app)
    new = smtp_receiver.messages[before:]
    assert sorted(r for m in new for r in m.rcpt_tos) == sorted(MEMBER_EMAILS)
    assert len(alerts_sent(smtp_receiver, before)) == len(MEMBERS)
    with app.sessions() as session:
        assert session.get(OutboxMessage, ack.id).status == "failed"
        assert Counter(session.scalars(select(InboundMessage.kind).where(InboundMessage.case_id.is_(None))).all()) == {"bounce": 2}


@pytest.mark.timeout(240)
def test_plus_tags_and_case_do_not_multiply_acknowledgements(harness, smtp_receiver):
    """40 reports from victim+1@ ... victim+40@ (some in upper case): one inbox, at most 5
    acknowledgements, one alert about the limit."""
    senders = [f"victim+{n}@example.net" if n % 3 else f"Victim+{n}@EXAMPLE.net" for n in range(1, 41)]
    senders[4] = "VICTIM@example.net"
    deliver_all(harness, [report(sender=s, subject=f"Report {n}") for n, s in enumerate(senders)])
    app = harness.app()
    assert run_once(app) == 0
    run_once(app)
    to_victim = [m for m in smtp_receiver.messages
                 if any(r.lower().split("+")[0].split("@")[0] == "victim" for r in m.rcpt_tos)]
    assert 1 <= len(to_victim) <= 5
    assert all("received" in str(parsed(m)["Subject"]) for m in to_victim)
    limit_alerts = [m for m in alerts_sent(smtp_receiver) if m.rcpt_tos == (MEMBER_EMAILS[0],)]
    assert len(limit_alerts) == 1
    assert count(app, Case) == 40


@pytest.mark.parametrize("address, canonical", [
    ("victim@example.net", "victim@example.net"),
    ("Victim+7@EXAMPLE.net", "victim@example.net"),
    ("victim+a+b@example.net", "victim@example.net"),
    (" VICTIM+@example.net ", "victim@example.net"),
    ("+only@example.net", "+only@example.net"),  # no local part left without the tag: kept whole
    ("not-an-address", "not-an-address"),
])
def test_canonical_correspondent(address, canonical):
    assert canonical_address(address) == canonical


def test_envelope_sender_is_signed_or_plain():
    from conduct_inbox.mail.compose import Sender
    from conduct_inbox.store.outbox import verp_address

    key = SECRET.encode()
    assert verp_address(Sender("conduct@example.org", "C"), 7, "m7@example.org", key) == signed(7, "m7@example.org")
    assert verp_address(Sender("conduct@example.org", "C"), 7, "m7@example.org") == "conduct@example.org"  # no secret: no VERP
    long_local = "x" * 40 + "@example.org"  # the signed local part would pass 64 characters
    assert verp_address(Sender(long_local, "C"), 7, "m7@example.org", key) == long_local
