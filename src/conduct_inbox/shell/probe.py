"""`check-config --probe`: send ourselves a plus-addressed message and wait for it in the mailbox.

Reply tokens live in the +suffix of our address (`conduct+<token>@`), so a mail system that drops
or rewrites plus-addresses would silently break every committee command. The probe proves the
round trip. It carries our loop header, so a running daemon files it as our own mail (no case).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import make_msgid

from conduct_inbox.mail.compose import Draft, Sender, build
from conduct_inbox.ports import Mailbox, Outcome, OutgoingMail
from conduct_inbox.ports import Sender as Transport


def probe(
    committee_address: str,
    committee_name: str,
    mailbox: Mailbox,
    transport: Transport,
    timeout: float,
    *,
    poll_seconds: float = 1.0,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """None when the probe came back within `timeout` seconds, else what went wrong.
    `mailbox` must be connected."""
    local, _, domain = committee_address.rpartition("@")
    recipient = f"{local}+probe-{secrets.token_hex(6)}@{domain}"
    message_id = make_msgid(idstring="probe", domain=domain)
    draft = Draft(
        kind="probe", audience="member", recipient=recipient, subject="conduct-inbox delivery probe",
        body="A test message from `conduct-inbox check-config --probe`. It needs no action.",
    )
    data = build(draft, Sender(committee_address, committee_name), message_id.strip("<>"), datetime.now(timezone.utc))
    batch = asyncio.run(transport.send_batch([OutgoingMail(0, committee_address, recipient, data)]))
    if batch.outage:
        return f"probe: could not send ({batch.outage})"
    result = batch.results.get(0)
    if result is None or result.outcome is not Outcome.SENT:
        return f"probe: the SMTP server refused {recipient} ({result.code if result else 'no answer'})"
    deadline = monotonic() + timeout
    while True:
        if mailbox.contains(message_id):
            return None
        if monotonic() >= deadline:
            return (f"probe: sent to {recipient} but it did not reach the mailbox within {timeout:.0f} s; "
                    "reply tokens need plus-addresses delivered to this mailbox")
        sleep(poll_seconds)
