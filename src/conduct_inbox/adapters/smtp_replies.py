"""SMTP failures in words: a reply as its code and enhanced status code, a transport failure as
what failed and why (never anything the server wrote: replies often quote addresses)."""

from __future__ import annotations

import re
import ssl

import aiosmtplib

from conduct_inbox.adapters.neterrors import in_words

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def reply_status(code: int, message: str) -> str:
    """`550 5.1.1` from a reply: the code and its enhanced status code, nothing the server wrote."""
    match = _ENHANCED.match(message or "")
    return f"{code} {match.group(1)}" if match else str(code)


def connection_reason(what: str, exc: BaseException, host: str = "", port: int | None = None) -> str:
    """A short reason for a transport-level failure: in words when we know them, else the error class."""
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPException) and exc.__cause__ else exc
    words = in_words(exc, host, port) if host else None
    if words:
        return f"SMTP {what} failed: {words}"
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return f"SMTP {what} timed out"
    if isinstance(cause, ssl.SSLError):
        return f"SMTP TLS failed during {what} ({type(cause).__name__})"
    return f"SMTP {what} failed ({type(cause).__name__})"
