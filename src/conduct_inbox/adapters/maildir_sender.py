"""Demo-mode sender: instead of SMTP, each outgoing mail becomes a file in a local Maildir.

The envelope (VERP sender and recipient) is kept in prepended `X-Conduct-Envelope-*`
headers so a person reading the folder sees who would have received what.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from conduct_inbox.errors import MailUnavailable
from conduct_inbox.ports import BatchResult, DeliveryResult, Outcome, OutgoingMail, ResultHook

log = logging.getLogger(__name__)

_counter = itertools.count()


def _unique_name() -> str:
    """A Maildir file name unique across processes and calls (time, pid, counter, host)."""
    now = time.time_ns()
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    return f"{now // 10**9}.M{(now // 1000) % 10**6}P{os.getpid()}Q{next(_counter)}.{host}"


def _line_ending(data: bytes) -> bytes:
    """The line ending the message itself uses, so the prepended headers match it."""
    first = data.find(b"\n")
    return b"\r\n" if first > 0 and data[first - 1 : first] == b"\r" else b"\n"


class MaildirSender:
    """Writes outgoing mail into PATH/new (implements `ports.Sender`); every row is SENT."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    async def send_batch(self, mails: Sequence[OutgoingMail], on_result: ResultHook | None = None) -> BatchResult:
        """Deliver each mail as one file; a folder that cannot be written is an outage."""
        results: dict[int, DeliveryResult] = {}
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            for mail in mails:
                if any(c in addr for addr in (mail.envelope_from, mail.recipient) for c in "\r\n"):
                    results[mail.row_id] = DeliveryResult(
                        Outcome.REJECTED, None, "invalid envelope address"
                    )
                    continue
                try:
                    data = await mail.content()
                except MailUnavailable as exc:
                    results[mail.row_id] = DeliveryResult(Outcome.REJECTED, None, str(exc))
                    continue
                self._write(mail, data)
                results[mail.row_id] = DeliveryResult(Outcome.SENT)
                if on_result is not None:
                    await on_result(mail.row_id, results[mail.row_id])
        except OSError as exc:
            reason = f"Maildir not writable ({type(exc).__name__})"
            log.warning("outgoing Maildir outage after %d rows: %s", len(results), reason)
            return BatchResult(results, outage=reason)
        return BatchResult(results)

    def _write(self, mail: OutgoingMail, data: bytes) -> None:
        """Write to tmp/, fsync, then rename into new/ so readers never see half a file."""
        eol = _line_ending(data)
        header = (
            b"X-Conduct-Envelope-From: <" + mail.envelope_from.encode() + b">" + eol
            + b"X-Conduct-Envelope-To: <" + mail.recipient.encode() + b">" + eol
        )
        name = _unique_name()
        tmp = self.path / "tmp" / name
        with open(tmp, "xb") as f:
            f.write(header + data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.path / "new" / name)
        log.debug("outbox row %d: written to Maildir", mail.row_id)
