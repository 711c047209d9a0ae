"""`inspect` with a configuration classifies as the daemon would (database, reply tokens), writes
nothing and sends nothing; without one it says the result is from the message content alone."""

from __future__ import annotations

import contextlib
import io
import json
from email.message import EmailMessage
from email.utils import make_msgid

from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Event, InboundMessage, OutboxMessage
from tests.harness import SECRET, count, report
from tests.mailers import reply, the_case


def inspect(path, *extra: str) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", str(path), "--json", *extra]) == 0
    text = out.getvalue()
    assert SECRET not in text
    return json.loads(text)


def rows(app) -> tuple[int, int, int]:
    return count(app, InboundMessage), count(app, OutboxMessage), count(app, Event)


def test_inspect_with_config_classifies_as_the_daemon_would(harness, smtp_receiver, tmp_path, monkeypatch):
    monkeypatch.delenv("CONDUCT_INBOX_CONFIG", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./config.toml here
    app = harness.app()
    harness.deliver(report(body="He shouted at me at the sprint."))
    run_once(app)
    case = the_case(app)
    alice_copy = smtp_receiver.to("alice@example.org")[0]
    ack = smtp_receiver.to("reporter@example.net")[0]
    before, mails_before = rows(app), len(smtp_receiver.messages)
    config = str(harness.config_path)

    member = tmp_path / "member.eml"
    member.write_bytes(reply(alice_copy, "alice@example.org", "!ack", "On it."))
    info = inspect(member, "--config", config)
    assert info["classification"] == "committee"
    assert info["basis"].startswith("database and reply tokens")

    follow = tmp_path / "followup.eml"
    follow.write_bytes(reply(ack, "reporter@example.net", "", "One more thing.",
                             subject=f"Re: [conduct #{case.ref}] Harassment at the sprint"))
    assert inspect(follow, "--config", config)["classification"] == "followup"

    webform = tmp_path / "webform.eml"
    msg = EmailMessage()
    msg["From"] = "Web Form <form@webform.example.net>"
    msg["To"] = "conduct+webform@example.org"
    msg["Subject"] = "A report from the form"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg.set_content("Someone was rude in the chat.")
    webform.write_bytes(msg.as_bytes())
    assert inspect(webform, "--config", config)["classification"] == "new_report"

    # The default lookup ($CONDUCT_INBOX_CONFIG) finds the configuration too.
    monkeypatch.setenv("CONDUCT_INBOX_CONFIG", config)
    assert inspect(member)["classification"] == "committee"
    monkeypatch.delenv("CONDUCT_INBOX_CONFIG")

    # Nothing written, nothing sent.
    assert rows(app) == before and len(smtp_receiver.messages) == mails_before

    # Without a configuration: content alone, and said so.
    alone = inspect(member)
    assert alone["classification"] != "committee"
    assert alone["basis"].startswith("message content alone")


def test_inspect_with_an_unusable_config_says_content_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CONDUCT_INBOX_CONFIG", raising=False)
    config = tmp_path / "config.toml"
    config.write_text('[committee]\naddress = "nope"\n')
    mail = tmp_path / "m.eml"
    mail.write_bytes(report())
    info = inspect(mail, "--config", str(config))
    assert info["classification"] == "new_report"
    assert info["basis"].startswith("message content alone (configuration not usable")
