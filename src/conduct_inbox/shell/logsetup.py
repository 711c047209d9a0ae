"""Logging to stderr, for the journal or a log shipper.

- Under systemd (`JOURNAL_STREAM` set: stderr is the journal) each line starts with its syslog
  priority, `<3>` error ... `<7>` debug (sd-daemon(3)), so `journalctl -p warning` works.
- `[log] format = "json"`: one JSON object per line: time, level, logger, message.
- APScheduler's per-run chatter ("Running job ...", "executed successfully") is DEBUG.

Messages are what the code logs (ids and counts, never content); a traceback is reduced to its
exception type and frames (errors.where), because exception texts can quote addresses.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import TextIO

from conduct_inbox.errors import where

#: sd-daemon(3) priorities.
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
#: Libraries that log login names or addresses at INFO/DEBUG: WARNING and above only.
QUIET = ("imapclient", "aiosmtplib", "mail.log", "alembic")
#: HTTP and OAuth2 libraries: they may log request URLs (an authorization code), bodies or headers
#: (msal logs a failed token response's text): nothing of theirs is shown, at -v neither.
SILENT = ("msal", "urllib3", "requests", "google", "google_auth_httplib2", "oauthlib", "requests_oauthlib")
#: Libraries whose INFO is routine chatter: shown as DEBUG.
CHATTY = ("apscheduler",)


def priority(levelno: int) -> int:
    """The syslog priority of a logging level (levels between the named ones round down)."""
    for level in sorted(PRIORITY, reverse=True):
        if levelno >= level:
            return PRIORITY[level]
    return 7


class Formatter(logging.Formatter):
    def __init__(self, json_lines: bool = False, journal: bool = False):
        super().__init__()
        self.json_lines = json_lines
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        failure = where(record.exc_info[1]) if record.exc_info and record.exc_info[1] else None
        if self.json_lines:
            entry = {
                "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname,
                "logger": record.name,
                "message": message,
            }
            if failure:
                entry["exception"] = failure
            line = json.dumps(entry, ensure_ascii=False)
        else:
            line = f"{record.levelname} {record.name}: {message}" + (f" [{failure}]" if failure else "")
        if self.journal:
            prefix = f"<{priority(record.levelno)}>"
            line = "\n".join(prefix + part for part in line.split("\n"))
        return line


class _Demote(logging.Filter):
    """Chatty libraries' INFO becomes DEBUG, shown only when debugging."""

    def __init__(self, threshold: int):
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name.startswith(CHATTY):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.threshold


_handler: logging.Handler | None = None


class _CurrentStderr(logging.StreamHandler[TextIO]):
    """Writes to `sys.stderr` as it is when a line is logged, not as it was at setup: a stream
    replaced since (a test's captured output, closed when the test ends) must not make a later
    line from a background thread fail with a logging error."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure(verbose: bool = False, fmt: str = "text", stream: TextIO | None = None) -> None:
    """(Re)configure the root logger: one stderr handler, our format, the journal's prefixes."""
    global _handler
    root = logging.getLogger()
    level = logging.DEBUG if verbose else logging.INFO
    if _handler is not None:
        root.removeHandler(_handler)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.setFormatter(Formatter(json_lines=fmt == "json", journal=bool(os.environ.get("JOURNAL_STREAM"))))
    handler.addFilter(_Demote(level))
    root.addHandler(handler)
    root.setLevel(level)
    _handler = handler
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in SILENT:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
