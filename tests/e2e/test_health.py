"""`conduct-inbox health` names what is wrong, in words an admin can act on."""

from __future__ import annotations

from datetime import datetime, timezone

from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import run_once
from tests.harness import report


def test_health_names_a_refused_password_for_imap_and_smtp(harness, dovecot, smtp_receiver, capsys):
    harness.clock.current = datetime.now(timezone.utc)  # `health` judges freshness by the real clock
    harness.deliver(report())
    app = harness.app()
    run_once(app)
    assert main(["health", "--config", str(harness.config_path)]) == 0
    assert "healthy" in capsys.readouterr().out

    # The SMTP password changes under us while a reply is waiting to go out, then the mailbox's.
    config = harness.config_path
    config.write_text(config.read_text().replace("[smtp]\n", '[smtp]\nusername = "conduct"\npassword = "expired"\n', 1))
    smtp_receiver.require_auth = ("conduct", "current")
    harness.deliver(report(sender="second@example.net"))
    assert run_once(harness.app()) == 1
    config.write_text(config.read_text().replace(f'password = "{dovecot.password}"', 'password = "expired"', 1))
    assert run_once(harness.app()) == 1
    assert main(["health", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "mailbox: last contact failed: IMAP login refused" in out and "expired or changed password" in out
    assert "smtp: outage" in out and "AUTH refused (535" in out and "check smtp.username" in out
