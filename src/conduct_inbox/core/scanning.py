"""The one scan that content from outside the committee passes before any member can see it.

New reports, follow-ups from parties and from unknown senders, and reports a member forwards
with `!new` all become `Scanned` here; `cases.mailer.committee_drafts` takes a sender's words and
attachments only as a `Scanned`, so no path can forward content the scan did not read. Pure:
the parser already extracted every readable text (`InboundMessage.readable`, DESIGN "Routing and
recusal"); this module decides who is named and what members are shown.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from conduct_inbox.core.recusal import detect
from conduct_inbox.core.roster import Roster
from conduct_inbox.mail.charsets import displayed
from conduct_inbox.mail.inbound import Attachment, InboundMessage
from conduct_inbox.mail.quotes import cut_at_marker

_BLANK_RUNS = re.compile(r"\n{3,}")

#: Every kind of readable text (mail.inbound.Readable.source).
#: "sender": the sender's display name, which members read in the copy ("From: Bob Builder <...>").
ALL_SOURCES = frozenset({"subject", "body", "attachment", "filename", "forwarded", "sender"})
#: `!new`: the forwarded report counts, not the forwarding member's own words.
FORWARDED_SOURCES = frozenset({"attachment", "filename", "forwarded"})
#: Follow-ups: the scan reads what members are shown (the `body` passed to `scan`: the message
#: above our own committee mail's marker), not the parser's whole text, which would include our
#: quoted committee mail and its marker line naming every member.
FOLLOWUP_SOURCES = frozenset({"subject", "attachment", "filename", "forwarded", "sender"})

#: Who may cause an automatic recusal by naming a member. The reported person may not: the
#: accused must not choose who judges them (the committee is told whom they named instead).
RECUSING_ROLES = frozenset({"reporter", "witness", "other", "unknown", "forwarded"})


@dataclass(frozen=True)
class Scanned:
    """A sender's content after the member scan: the only form in which it reaches members."""

    #: Roster addresses named anywhere a person could read (subject, every alternative, attachments,
    #: file names, forwarded messages), in roster order.
    named: tuple[str, ...]
    #: The text members are shown; it was scanned too.
    body: str = field(repr=False)
    subject: str = field(repr=False)
    attachments: tuple[Attachment, ...] = field(repr=False)


def scan(msg: InboundMessage, roster: Roster, body: str, *, sources: Collection[str] = ALL_SOURCES,
         subject: str | None = None) -> Scanned:
    """Scan what `msg` lets a person read from `sources`, and the `body` members will be shown."""
    shown_subject = displayed(msg.subject if subject is None else subject)
    texts = [r.text for r in msg.readable if r.source in sources]
    texts += [body, shown_subject]
    if "sender" in sources and msg.reporter_name:
        texts += display_name_forms(msg.reporter_name)
    named = tuple(m.email for m in detect(roster, texts))
    return Scanned(named=named, body=body, subject=shown_subject, attachments=msg.attachments)


def display_name_forms(name: str) -> list[str]:
    """A display name as written and, for Outlook's "Last, First", in reading order too."""
    last, comma, first = name.partition(",")
    return [name, f"{first.strip()} {last.strip()}"] if comma and first.strip() and last.strip() else [name]


def named_by(roster: Roster, address: str, name: str | None) -> str | None:
    """The roster member a party recorded as `address` with display `name` is: by address, or by
    their full name as the scan finds it (a private address under their own name)."""
    person = roster.person(address)
    if person is None and name:
        found = detect(roster, display_name_forms(name))
        return found[0].email if found else None
    return person.email if person is not None else None


def followup_body(msg: InboundMessage) -> str:
    """What members are shown of a follow-up: the whole message — text below a quote
    (bottom-posting), after a signature (a P.S.), and what the sender quotes (a threat they
    received, pasted as `>` lines) — then any message they forwarded; only our own committee mail
    below its marker (with the marker line naming every member) is left out."""
    text = _BLANK_RUNS.sub("\n\n", cut_at_marker(msg.text)).strip()
    parts = [text or "(the message has no text)"]
    parts += [f"----- forwarded message -----\nSubject: {f.subject}\n\n{f.text.strip()}" for f in msg.forwarded]
    return "\n\n".join(parts)


def recusing(scanned: Scanned, sender_roles: Collection[str]) -> tuple[str, ...]:
    """The members to recuse automatically: those named, unless the sender is the reported person."""
    if "reported" in sender_roles or not set(sender_roles) & RECUSING_ROLES:
        return ()
    return scanned.named
