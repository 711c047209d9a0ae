"""Builds a real daemon (config file, database, Dovecot mailbox, aiosmtpd receiver) for end-to-end tests."""

from __future__ import annotations

import email
import email.policy
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from conduct_inbox.config import Settings, load_settings
from conduct_inbox.shell.app import App, build_app

SECRET = "test-token-secret-0123456789abcdef"
MEMBERS = [
    ("Alice Example", "alice@example.org", ["Ali"], True),
    ("Bob Builder", "bob@example.org", [], False),
    ("Carol Chen", "carol@example.org", ["CC"], False),
]
STEERING = [("Sam Steering", "sam@example.org")]


def write_config(folder: Path, *, database_url: str, mailbox: dict[str, Any], smtp: dict[str, Any], extra: str = "",
                 intake: dict[str, Any] | None = None) -> Path:
    def section(values: dict[str, Any]) -> str:
        lines = []
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value}")
            elif isinstance(value, list):
                lines.append(f"{key} = {value!r}".replace("'", '"'))
            else:
                lines.append(f'{key} = "{value}"')
        return "\n".join(lines)

    members = "\n".join(
        f'[[committee.members]]\nname = "{n}"\nemail = "{e}"\naliases = {a!r}\nchair = {"true" if c else "false"}\n'.replace("'", '"')
        for n, e, a, c in MEMBERS
    )
    steering = "\n".join(f'[[steering.members]]\nname = "{n}"\nemail = "{e}"\n' for n, e in STEERING)
    text = f"""
[mailbox]
{section(mailbox)}

[smtp]
{section(smtp)}

[database]
url = "{database_url}"

[committee]
address = "conduct@example.org"
name = "Test Conduct Committee"
steering_address = "steering@example.org"

{members}
{steering}

[security]
token_secret = "{SECRET}"

[intake]
{section({'parse_timeout_seconds': 5, **(intake or {})})}

{extra}
"""
    path = folder / "config.toml"
    path.write_text(text)
    return path


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime | None = None):
        self.current = start or datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


@dataclass
class Harness:
    """A daemon wired to a private Dovecot user and an aiosmtpd receiver."""

    dovecot: Any
    receiver: Any
    database_url: str
    user: str
    clock: Clock = field(default_factory=Clock)
    extra_config: str = ""
    parser: Any = None
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ci-h-")))
    apps: list[App] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        """The config file, written on first use; tests may edit it before building an app."""
        path = self.folder / "config.toml"
        if path.exists():
            return path
        return write_config(
            self.folder,
            database_url=self.database_url,
            mailbox={"host": self.dovecot.host, "port": self.dovecot.port, "security": "none", "username": self.user,
                     "password": self.dovecot.password, "poll_seconds": 1},
            smtp={"host": "127.0.0.1", "port": self.receiver.port, "security": "none", "retry_initial_seconds": 1,
                  "retry_max_seconds": 2},
            extra=self.extra_config,
        )

    def settings(self) -> Settings:
        return load_settings(self.config_path, environ={})

    def app(self) -> App:
        app = build_app(self.settings(), clock=self.clock, parser=self.parser)
        self.apps.append(app)
        return app

    def deliver(self, raw: bytes, flags: tuple[str, ...] = ()) -> int:
        return self.dovecot.append(self.user, raw, flags=flags)

    def folder_count(self, folder: str) -> int:
        return len(self.dovecot.folder_messages(self.user, folder))

    def close(self) -> None:
        for app in self.apps:
            app.close()


def maildir_app(folder: Path, database_url: str, receiver: Any, *, clock: Any = None, mailbox: dict[str, Any] | None = None,
                smtp: dict[str, Any] | None = None, intake: dict[str, Any] | None = None, **build: Any) -> App:
    """A daemon reading a local Maildir (`folder`/Maildir) instead of Dovecot and sending to
    `receiver`: for tests that feed thousands of messages or start many short-lived daemons. The
    caller closes it; `build` goes to build_app (parser=, on_commit=)."""
    config = write_config(
        folder,
        database_url=database_url,
        mailbox={"maildir": str(folder / "Maildir"), **(mailbox or {})},
        smtp={"host": "127.0.0.1", "port": receiver.port, "security": "none", **(smtp or {})},
        intake=intake,
    )
    return build_app(load_settings(config, environ={}), clock=clock if clock is not None else Clock(), **build)


def report(
    sender: str = "reporter@example.net",
    subject: str = "Harassment at the sprint",
    body: str = "Someone kept making comments after I asked them to stop.",
    name: str = "Robin Reporter",
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
    attachments: list[tuple[str, str, bytes]] = (),  # type: ignore[assignment]
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="example.net")
    msg["Date"] = "Tue, 24 Nov 2026 08:59:00 +0000"
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    for filename, ctype, content in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def parsed(record: Any) -> email.message.EmailMessage:
    return email.message_from_bytes(record.content, policy=email.policy.default)


def text_of(record: Any) -> str:
    body = parsed(record).get_body(("plain",))
    return body.get_content() if body is not None else ""


def count(app: App, model: Any, *where: Any) -> int:
    """Rows of `model` matching `where` in the app's database."""
    with app.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def deliver_all(harness: Harness, raws: list[bytes]) -> None:
    """Put many messages into the harness mailbox at once (MULTIAPPEND, 50 at a time)."""
    with harness.dovecot.client(harness.user) as client:
        for start in range(0, len(raws), 50):
            client.multiappend("INBOX", raws[start : start + 50])


def delivery_report(to: str, recipient: str, message_id: str = "unknown@example.org") -> bytes:
    """A well-formed DSN, as an MTA (or an attacker) would send it, to `to` (a bounce address)
    saying mail to `recipient` failed; `message_id` is the failed mail's, in its headers part."""
    return (
        "Return-Path: <>\r\n"
        f"Delivered-To: {to}\r\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_msgid(domain='mx.example.net')}\r\n"
        "Date: Tue, 24 Nov 2026 09:10:00 +0000\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery to the following recipient failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{message_id}>\r\nSubject: [conduct] a mail of ours\r\n"
        "--B--\r\n"
    ).encode()
