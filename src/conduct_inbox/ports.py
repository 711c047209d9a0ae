"""The I/O boundaries: what the layers below the shell know of the adapters (shell/components.py
builds the adapters from Settings and passes them in).

- `Mailbox`: where reports arrive. adapters/imap.py (IMAP), adapters/maildir.py (a local Maildir,
  for the demo and tests). Used by the shell (intake, IDLE in the daemon, retention, recovery, probe).
- `Sender`: where outgoing mail goes, a batch per connection. adapters/smtp.py (SMTP submission),
  adapters/maildir_sender.py (files). store/outbox.py hands it `OutgoingMail` and records the
  `DeliveryResult`s; an outage of the whole batch is `BatchResult.outage`, not an exception, and
  a mail whose stored bytes cannot be read raises errors.MailUnavailable from `content()`.
- `Clock`: the current time, read by the shell's loops and the outbox flush; cases/ and core/ are
  given `now` instead.

The parser process (adapters/parsing.py) is a plain callable, raw bytes to mail.parse.InboundMessage,
and the OAuth2 token source (adapters/oauth2.py) is used only inside the IMAP and SMTP adapters:
neither needs a protocol here. ports.py imports nothing of the project (it sits with errors.py at
the bottom of the layers); tests pass fakes or real loopback servers.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

Destination = Literal["processed", "quarantine"]


@dataclass(frozen=True)
class MailCopy:
    """How to find a message we processed again: its Message-ID (if any), size and SHA-256."""

    message_id: str | None
    size: int
    sha256: str


class Mailbox(Protocol):
    """Where reports arrive: an IMAP folder, or a local Maildir for the demo."""

    #: Stable identity of the intake folder, stored with every message ("imap://host:port/INBOX"; never a username: it is logged).
    identity: str

    def connect(self) -> int:
        """(Re)connect, select the intake folder, create the processed and quarantine folders
        if absent; return the folder's UIDVALIDITY. Raises MailboxUnavailable."""
        ...

    def uids(self) -> list[int]:
        """Every UID in the intake folder, seen or not, ascending."""
        ...

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        """Raw messages by UID, fetched with BODY.PEEK[] (never sets \\Seen). Missing UIDs are absent."""
        ...

    def move(self, uids: Sequence[int], destination: Destination) -> None:
        """Move messages out of the intake folder (UID MOVE, or COPY + \\Deleted + UID EXPUNGE)."""
        ...

    def contains(self, message_id: str) -> bool:
        """Whether a message with this Message-ID is in the intake, processed or quarantine folder."""
        ...

    def delete_copies(self, copies: Sequence[MailCopy]) -> int:
        """Delete for good the copies of these messages kept in the processed and quarantine folders
        (retention); return how many were deleted. Only a byte-identical message is deleted."""
        ...

    def wait_for_mail(self, timeout: float) -> bool:
        """Block up to `timeout` seconds (IMAP IDLE where supported); True if new mail may be there."""
        ...

    def interrupt(self) -> None:
        """From another thread: make a blocked wait_for_mail return now (the daemon is stopping)."""
        ...

    def close(self) -> None:
        ...


@dataclass(frozen=True)
class OutgoingMail:
    """One outbox row ready to hand to SMTP: one envelope recipient, the exact bytes to send.

    A large mail comes with `data` None and a `fetch` that reads its bytes when its turn comes,
    so that a batch holds one large mail per connection in memory, not all of them."""

    row_id: int
    envelope_from: str
    recipient: str
    data: bytes | None
    fetch: Callable[[], Awaitable[bytes]] | None = None

    async def content(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.fetch is not None, "an outgoing mail without data has a fetch"
        return await self.fetch()


class Outcome(enum.Enum):
    SENT = "sent"
    REJECTED = "rejected"  # permanent (5xx) refusal of this recipient or its data
    DEFERRED = "deferred"  # temporary (4xx) refusal of this recipient only


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    #: SMTP reply code and a sanitised reason (no addresses), for the audit trail.
    code: int | None = None
    reason: str = ""


@dataclass
class BatchResult:
    """What happened to a batch: results for the rows attempted; `outage` set if the batch stopped early."""

    results: dict[int, DeliveryResult]
    outage: str | None = None


#: Called by a Sender with each row's final result. The Sender may start the next row's envelope
#: (MAIL FROM, RCPT TO) while the hook runs, but hands over no further content before the hook is
#: done; an exception from the hook ends the batch.
ResultHook = Callable[[int, DeliveryResult], Awaitable[None]]


class Sender(Protocol):
    """Hands outbox rows to the outgoing mail system, one connection per batch."""

    async def send_batch(self, mails: Sequence[OutgoingMail], on_result: ResultHook | None = None) -> BatchResult:
        ...


#: The current time, timezone-aware UTC: shell.components.utcnow in the daemon, a settable fake in tests.
Clock = Callable[[], datetime]
