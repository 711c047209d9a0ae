"""A report about a committee member never reaches that member (real Dovecot + aiosmtpd + DB)."""

from __future__ import annotations

from conduct_inbox.shell.daemon import run_once
from tests.harness import report, text_of


def test_report_naming_a_member_by_alias_excludes_them(harness, smtp_receiver):
    harness.deliver(report(body="At the meetup CC made fun of my accent in front of everyone."))
    app = harness.app()
    run_once(app)
    assert smtp_receiver.to("carol@example.org") == []
    for member in ("alice@example.org", "bob@example.org"):
        [copy] = smtp_receiver.to(member)
        first_line = text_of(copy).splitlines()[0]
        assert first_line == "To: Alice Example, Bob Builder  ·  Excluded: Carol Chen (named in the report)"


def test_report_about_the_chair_reaches_steering_not_the_chair(harness, smtp_receiver):
    harness.deliver(report(subject="About Alice Example's behaviour", body="Alice Example's comments at the sprint were hurtful."))
    app = harness.app()
    run_once(app)
    assert smtp_receiver.to("alice@example.org") == []
    assert len(smtp_receiver.to("sam@example.org")) == 1
    assert len(smtp_receiver.to("bob@example.org")) == 1


def test_follow_up_naming_a_member_recuses_them_from_then_on(harness, smtp_receiver):
    harness.deliver(report())
    app = harness.app()
    run_once(app)
    ack = smtp_receiver.to("reporter@example.net")[0]
    bob_before = len(smtp_receiver.to("bob@example.org"))
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "Robin Reporter <reporter@example.net>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: {ack.message['Subject']}"
    msg["In-Reply-To"] = ack.message["Message-ID"]
    msg["Message-ID"] = "<follow-1@example.net>"
    msg.set_content("I should add: it was bob@example.org who did it.")
    harness.deliver(msg.as_bytes())
    run_once(app)
    assert len(smtp_receiver.to("bob@example.org")) == bob_before
    assert "it was" in text_of(smtp_receiver.to("alice@example.org")[-1])
