"""`conduct-inbox demo`: the real daemon against a local Maildir and SQLite, no mail account needed.

It writes a demo configuration, drops a sample report into the demo mailbox, runs the daemon
once, and shows the case and the acknowledgement the reporter would receive.
"""

from __future__ import annotations

import email
import email.policy
import secrets
from pathlib import Path

from conduct_inbox.config import load_settings
from conduct_inbox.shell.engines import engine_for
from conduct_inbox.store import db

SAMPLE_REPORT = """\
From: Robin Reporter <robin@example.net>
To: conduct@example.org
Subject: Harassment at the sprint on Saturday
Message-ID: <demo-{n}@example.net>
Date: Tue, 24 Nov 2026 09:00:00 +0000
Content-Type: text/plain; charset=utf-8

Hello,

during the sprint on Saturday afternoon a participant kept making comments
about my appearance after I asked him to stop. Two others saw it.

Robin
"""

CONFIG = """\
# Demo configuration written by `conduct-inbox demo`: local Maildirs instead of IMAP and SMTP.
[mailbox]
maildir = "mailbox"        # drop .eml files into mailbox/new to report something

[smtp]
maildir = "sent"           # everything the daemon "sends" lands in sent/new

[database]
url = "sqlite:///{db}"

[committee]
address = "conduct@example.org"
name = "Demo Code of Conduct Committee"

[[committee.members]]
name = "Alice Example"
email = "alice@example.org"
chair = true

[[committee.members]]
name = "Bob Example"
email = "bob@example.org"

[[committee.members]]
name = "Carol Example"
email = "carol@example.org"

[[steering.members]]
name = "Sam Steering"
email = "sam@example.org"

[security]
token_secret_file = "token-secret"

[intake]
parse_timeout_seconds = 30
"""


def prepare(directory: Path) -> Path:
    """Create the demo folder (once) and return its config path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "config.toml"
    if not config.exists():
        # Relative secret names are read from credentials/ next to the config (config_sources).
        (directory / "credentials").mkdir(mode=0o700, exist_ok=True)
        secret = directory / "credentials" / "token-secret"
        secret.write_text(secrets.token_urlsafe(32) + "\n")
        secret.chmod(0o600)
        config.write_text(CONFIG.format(db=(directory / "cases.db").resolve()))
    for folder in ("mailbox", "sent"):
        for sub in ("new", "cur", "tmp"):
            (directory / folder / sub).mkdir(parents=True, exist_ok=True)
    return config


def run_demo(directory: Path, keep_running: bool = False) -> int:
    from conduct_inbox.adapters.maildir import deliver_to_maildir
    from conduct_inbox.shell.app import build_app
    from conduct_inbox.shell.daemon import Daemon, run_once
    from conduct_inbox.shell.views import list_cases

    config = prepare(directory)
    settings = load_settings(config)
    engine = engine_for(settings)
    db.upgrade(engine)
    sent_before = set((directory / "sent" / "new").iterdir())
    deliver_to_maildir(str(directory / "mailbox"), SAMPLE_REPORT.format(n=secrets.token_hex(8)).encode())
    print(f"Demo folder: {directory.resolve()}")
    print("A sample report was dropped into the demo mailbox; running the daemon once...\n")
    lock = db.InstanceLock(settings.database.url)
    lock.acquire()
    app = build_app(settings, engine=engine)
    try:
        code = run_once(app)
        with app.sessions() as session:
            cases = list_cases(session)
        print("Open cases:")
        for case in cases:
            print(f"  {case['ref']}  {case['status']:<12} reporter {case['reporter']}  {case['title']}")
        new_mail = sorted(set((directory / "sent" / "new").iterdir()) - sent_before)
        print(f"\nThe daemon sent {len(new_mail)} message(s) (written to {directory / 'sent' / 'new'}):")
        for path in new_mail:
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            print(f"  to {msg['X-Conduct-Envelope-To']}: {msg['Subject']}")
        ack = next(
            (p for p in new_mail if "received" in str(email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"])),
            None,
        )
        if ack is not None:
            msg = email.message_from_bytes(ack.read_bytes(), policy=email.policy.default)
            body = msg.get_body(("plain",))
            print("\nThe acknowledgement the reporter received:\n")
            print(body.get_content() if body is not None else "")
        if keep_running:
            print(f"Daemon keeps running; drop .eml files into {directory / 'mailbox' / 'new'}. Ctrl-C stops it.")
            import asyncio

            asyncio.run(Daemon(app, settings.mailbox.poll_seconds).run())
        else:
            print(f"To keep it running: conduct-inbox run --config {config}")
        return code
    finally:
        app.close()
        lock.release()
