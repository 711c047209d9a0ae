"""Builds the exact bytes of an outgoing mail from a draft. Pure: ids and dates are passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.headerregistry import Address
from email.policy import SMTP
from email.utils import format_datetime

from .parse import LOOP_HEADER


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Draft:
    """One message to one recipient, before it gets its Message-ID and outbox row."""

    kind: str  # ack | report | alert | note | followup | ...
    audience: str  # reporter | member | steering | party
    recipient: str
    subject: str
    body: str
    recipient_name: str | None = None
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()
    #: "auto-replied" for acknowledgements, "auto-generated" for everything else we send.
    auto_submitted: str = "auto-generated"


@dataclass(frozen=True)
class Sender:
    address: str
    name: str

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]


def _address(addr: str, name: str | None) -> Address:
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def build(draft: Draft, sender: Sender, message_id: str, date: datetime) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(sender.address, sender.name)
    msg["To"] = _address(draft.recipient, draft.recipient_name)
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{message_id}>"
    if draft.reply_to:
        msg["Reply-To"] = draft.reply_to
    if draft.in_reply_to:
        msg["In-Reply-To"] = f"<{draft.in_reply_to}>"
    refs = [r for r in draft.references if r]
    if draft.in_reply_to and draft.in_reply_to not in refs:
        refs.append(draft.in_reply_to)
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs[-20:])
    msg["Auto-Submitted"] = draft.auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = sender.domain
    msg.set_content(draft.body, charset="utf-8", cte="quoted-printable")
    for att in draft.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(
            att.content, maintype=maintype or "application", subtype=subtype or "octet-stream", filename=att.filename
        )
    return msg.as_bytes()
