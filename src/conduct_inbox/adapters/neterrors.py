"""Network failures in words an admin can act on: "cannot resolve imap.example.org",
"connection refused by 127.0.0.1:1993", rather than an exception's class name.

Only the host and port we dialled (configuration, not secrets) and fixed phrases are used:
never the exception's own text, which may quote a login name or a server's reply."""

from __future__ import annotations

import errno
import socket
import ssl


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes / contexts (libraries wrap socket errors in their own)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def in_words(exc: BaseException, host: str, port: int | None) -> str | None:
    """What went wrong reaching host:port, or None when it is not a network failure we know."""
    where = f"{host}:{port}" if port else host
    for cause in _chain(exc):
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve {host}"
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {where}"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the TLS certificate of {where} is not trusted ({cause.verify_message or 'verification failed'})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS with {where} failed (is the port and security setting right?)"
        if isinstance(cause, TimeoutError | socket.timeout):
            return f"no answer from {where} (timed out)"
        if isinstance(cause, ConnectionResetError | BrokenPipeError | EOFError):
            return f"connection closed by {where}"
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"{where} is unreachable (no route)"
    return None


#: libpq's words (psycopg passes them on) and ours; the rest of its text may quote the user name.
_LIBPQ = (
    ("could not translate host name", "cannot resolve {host}"),
    ("Name or service not known", "cannot resolve {host}"),
    ("Connection refused", "connection refused by {where}"),
    ("timeout expired", "no answer from {where} (timed out)"),
    ("password authentication failed", "login refused by {where}: check the user name and password in database.url"),
    ("does not exist", "{where} has no such database or role"),
    ("unable to open database file", "cannot open the SQLite file (does its folder exist and is it writable?)"),
)


def database_in_words(exc: BaseException, url: str) -> str:
    """A database connection failure in words; never the URL's password or the server's text."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        host, port = parsed.host or "localhost", parsed.port or (5432 if parsed.drivername.startswith("postgresql") else None)
    except Exception:
        host, port = "the database", None
    where = f"{host}:{port}" if port else host
    text = " ".join(str(cause) for cause in _chain(exc))
    for needle, words in _LIBPQ:
        if needle in text:
            return words.format(host=host, where=where)
    return in_words(exc, host, port) or f"cannot connect ({type(exc).__name__})"
