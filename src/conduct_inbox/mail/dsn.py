"""Delivery status notifications: is this a bounce, who failed, and which message of ours came back.

flufl.bounce (Mailman's detectors) finds the failed addresses; the returned original's
Message-ID comes from the message/rfc822 or text/rfc822-headers part, or from the copy an
MTA pasted into a plain-text bounce.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser

import flufl.bounce

# flufl.bounce logs a detector's exception with its traceback, whose frames may quote the bounce
# (and so the original mail): its logger says nothing of ours. Used through its public API only.
_flufl_log = logging.getLogger("flufl.bounce")
_flufl_log.propagate = False
_flufl_log.addHandler(logging.NullHandler())
_flufl_log.setLevel(logging.CRITICAL + 1)

_MACHINE_SENDERS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "mail.delivery.system"})

#: Subjects of bounces as MTAs word them (plain words, so the scan is linear).
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery status notification|delivery failure|mail delivery failed|returned mail"
    r"|failure notice|delivery has failed|nondeliverable|non-delivery|could not be delivered"
    r"|unzustellbar|non remis|mail system error",
    re.IGNORECASE,
)
_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*Message-ID:[ \t]*<([^<>\s]{1,998})>", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(r"^[ \t]*Status:[ \t]*([245])\.", re.IGNORECASE | re.MULTILINE)
_MAX_SCAN = 1_000_000  # a bounce quotes at most a little of the original; bound the work


@dataclass(frozen=True)
class DsnFacts:
    is_dsn: bool = False
    failed: tuple[str, ...] = ()
    original_message_id: str | None = None
    permanent: bool = False


def _content_type(part: Message) -> str:
    return part.get_content_type().lower()


def _shape(msg: Message, subject: str, return_path: str | None, from_address: str | None) -> tuple[bool, bool]:
    """(looks like a bounce, sent by a mail system)."""
    ctype = _content_type(msg)
    if ctype == "multipart/report":
        report_type = str(msg.get_param("report-type", "") or "").lower()
        if report_type == "delivery-status":
            return True, True
    local = (from_address or "").split("@", 1)[0]
    machine = return_path == "" or local in _MACHINE_SENDERS
    # Vacation replies also come from <>; only a bounce's own shape counts.
    shaped = (
        ctype == "multipart/report"
        or msg.get("X-Failed-Recipients") is not None
        or bool(_BOUNCE_SUBJECT.search(subject[:500]))
    )
    return machine and shaped, machine


def _detect(msg: Message) -> tuple[set[str], set[str]]:
    try:
        temporary, permanent = flufl.bounce.all_failures(msg)
    except Exception:  # a heuristic that breaks on hostile input: no failed address found
        temporary, permanent = frozenset(), frozenset()

    def clean(found: frozenset[bytes] | set[bytes]) -> set[str]:
        out = set()
        for raw in found:
            addr = raw.decode("ascii", "replace").strip().strip("<>").lower()
            if addr and "@" in addr and len(addr) <= 320 and not any(c.isspace() for c in addr):
                out.add(addr)
        return out

    return clean(temporary), clean(permanent)


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload[:_MAX_SCAN].decode("utf-8", "replace")
    return ""


def _bracketed(value: object) -> str | None:
    m = re.search(r"<([^<>\s]{1,998})>", str(value))
    return m.group(1) if m else None


def _original_message_id(msg: Message) -> str | None:
    for part in msg.walk():
        ctype = _content_type(part)
        if ctype == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                value = inner[0].get("Message-ID")
                if value and _bracketed(value):
                    return _bracketed(value)
        elif ctype == "text/rfc822-headers":
            headers = HeaderParser().parsestr(_payload_text(part))
            value = headers.get("Message-ID")
            if value and _bracketed(value):
                return _bracketed(value)
    # A plain-text bounce (Exim, qmail) pastes the original below its own text.
    for part in msg.walk():
        if not part.is_multipart() and _content_type(part) == "text/plain":
            m = _MESSAGE_ID_LINE.search(_payload_text(part))
            if m:
                return m.group(1)
    return None


def _status_permanent(msg: Message) -> bool | None:
    for part in msg.walk():
        if _content_type(part) == "message/delivery-status":
            text = part.as_string() if part.is_multipart() else _payload_text(part)
            codes = _STATUS.findall(text[:_MAX_SCAN])
            if codes:
                return "5" in codes
    return None


def analyse(msg: Message, *, subject: str, return_path: str | None, from_address: str | None) -> DsnFacts:
    """Bounce facts for a compat32-parsed message; never raises."""
    try:
        bounce, machine = _shape(msg, subject, return_path, from_address)
    except (RecursionError, LookupError, ValueError, TypeError, AttributeError):
        return DsnFacts()
    if not machine:
        return DsnFacts()
    try:
        temporary, permanent = _detect(msg)
        if not (bounce or temporary or permanent):
            return DsnFacts()  # mail-system mail, but no bounce in it (a vacation reply from <>)
        x_failed = msg.get_all("X-Failed-Recipients") or []
        for value in x_failed:
            for addr in str(value).split(","):
                addr = addr.strip().strip("<>").lower()
                if "@" in addr and not any(c.isspace() for c in addr):
                    permanent.add(addr)
        status = _status_permanent(msg)
        is_permanent = bool(permanent) if status is None else status or bool(permanent)
        failed = sorted(permanent) if permanent else sorted(temporary)
        return DsnFacts(True, tuple(failed), _original_message_id(msg), is_permanent)
    except (RecursionError, LookupError, ValueError, TypeError, AttributeError):
        return DsnFacts(is_dsn=True)
