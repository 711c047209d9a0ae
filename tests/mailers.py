"""Mail the tests write as committee members, reporters and outsiders, and how they read the
result: replies that quote our mail, the one case, the latest mail to an address. Shared by the
end-to-end tests and the drills, so no test module imports another."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from conduct_inbox.core import tokens
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case
from tests.harness import SECRET, parsed, report, text_of

REPORTER = "reporter@example.net"
ALICE, BOB, CAROL, SAM = "alice@example.org", "bob@example.org", "carol@example.org", "sam@example.org"
PAT = "pat@example.net"


def reply(to_record, sender: str, subject_suffix: str = "", body: str = "", *, to: str | None = None, subject: str | None = None) -> bytes:
    """A member's reply to one of our mails, quoting it, as a mail client would."""
    original = parsed(to_record)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to or str(original["Reply-To"])
    msg["Subject"] = subject if subject is not None else f"Re: {original['Subject']} {subject_suffix}".strip()
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["In-Reply-To"] = original["Message-ID"]
    msg["References"] = original["Message-ID"]
    quoted = "\n".join("> " + line for line in text_of(to_record).splitlines())
    msg.set_content(f"{body}\n\nOn Tue, Conduct wrote:\n{quoted}\n")
    return msg.as_bytes()


def client_reply(to_record, sender: str, subject_suffix: str, text: str) -> bytes:
    """A member's plain-text reply whose body is exactly `text` (the client's own quoting included)."""
    original = parsed(to_record)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = str(original["Reply-To"])
    msg["Subject"] = f"Re: {original['Subject']} {subject_suffix}".strip()
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["In-Reply-To"] = original["Message-ID"]
    msg["References"] = original["Message-ID"]
    msg.set_content(text)
    return msg.as_bytes()


def latest(receiver, address: str, kind_word: str | None = None):
    mails = receiver.to(address)
    if kind_word:
        mails = [m for m in mails if kind_word in text_of(m) or kind_word in str(parsed(m)["Subject"])]
    return mails[-1]


def got(receiver, address: str, word: str) -> bool:
    """Whether any mail that reached `address` says `word` (other mail, e.g. an announcement, may come later)."""
    return any(word in text_of(m) for m in receiver.to(address))


def the_case(app) -> Case:
    with app.sessions() as session:
        return session.scalars(select(Case).options(selectinload(Case.recusals), selectinload(Case.parties))).one()


def cases(app) -> list[Case]:
    """Every case, oldest first, with recusals and parties loaded."""
    with app.sessions() as session:
        return list(session.scalars(select(Case).options(selectinload(Case.recusals), selectinload(Case.parties))
                                    .order_by(Case.id)))


def readable(record) -> str:
    """Everything a recipient's client can show: every header and every text part, decoded."""
    msg = parsed(record)
    parts = [f"{k}: {v}" for k, v in msg.items()]
    for part in msg.walk():
        if not part.is_multipart() and part.get_content_maintype() == "text":
            parts.append(part.get_content())
    return "\n".join(parts)


def about(receiver, member: str, ref: str) -> list:
    """The mail `member` received with case `ref`'s tag in its subject."""
    return [m for m in receiver.to(member) if f"#{ref}]" in str(parsed(m)["Subject"])]


def step(harness, app, raw: bytes) -> None:
    harness.deliver(raw)
    run_once(app)


def personal_address(member: str) -> str:
    return tokens.reply_address("conduct", "example.org", tokens.mint(SECRET.encode(), "personal", None, member))


def opened(harness, raw: bytes | None = None):
    """A report delivered and processed; returns (app, case, alice's copy)."""
    app = harness.app()
    step(harness, app, raw or report())
    return app, the_case(app), harness.receiver.to(ALICE)[0]


def gmail_reply(original, sender: str, suffix: str, body: str = "") -> bytes:
    """Gmail's reply: the whole References chain, the subject with Re:, the quote with `>`."""
    msg = parsed(original)
    out = EmailMessage()
    out["From"] = sender
    out["To"] = str(msg["Reply-To"])
    out["Subject"] = f"Re: {msg['Subject']} {suffix}".strip()
    out["Message-ID"] = make_msgid(domain="gmail.example")
    out["In-Reply-To"] = msg["Message-ID"]
    out["References"] = " ".join(x for x in (str(msg["References"] or ""), str(msg["Message-ID"])) if x)
    quoted = "\n".join("> " + line for line in text_of(original).splitlines())
    out.set_content(f"{body}\n\nOn Thu, 3 Dec 2026 at 10:00, Conduct <conduct@example.org> wrote:\n{quoted}\n")
    return out.as_bytes()
