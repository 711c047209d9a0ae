"""`check-config --probe` proves that plus-addressed mail sent through SMTP reaches the mailbox."""

from __future__ import annotations

from sqlalchemy import select

from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, InboundMessage
from tests.daemons import Relay


def test_probe_round_trip_succeeds_and_the_daemon_files_it_as_our_own(harness, dovecot, smtp_receiver, capsys):
    relay = Relay(smtp_receiver, dovecot, harness.user)
    try:
        assert main(["check-config", "--probe", "--probe-timeout", "20", "--config", str(harness.config_path)]) == 0
        assert "reply tokens will arrive" in capsys.readouterr().out
        [probe] = smtp_receiver.messages
        assert probe.rcpt_tos[0].startswith("conduct+probe-") and probe.rcpt_tos[0].endswith("@example.org")
        app = harness.app()
        run_once(app)
        with app.sessions() as session:
            assert session.scalars(select(Case)).all() == [], "the probe is not a report"
            assert session.scalars(select(InboundMessage.kind)).all() == ["own_loop"]
    finally:
        relay.close()


def test_probe_that_never_arrives_is_reported(harness, capsys):
    assert main(["check-config", "--probe", "--probe-timeout", "1", "--config", str(harness.config_path)]) == 1
    assert "did not reach the mailbox within 1 s" in capsys.readouterr().err
