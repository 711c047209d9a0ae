"""Log lines (issue 14, item 7): syslog priority prefixes for the journal, JSON lines, and
APScheduler's chatter at DEBUG; the real command in a subprocess, the dispatch worker too."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conduct_inbox.shell import logsetup

CONSOLE_SCRIPT = Path(sys.executable).parent / "conduct-inbox"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    if logsetup._handler is not None:
        root.removeHandler(logsetup._handler)
        logsetup._handler = None
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit(stream: io.StringIO) -> list[str]:
    log = logging.getLogger("conduct_inbox.test")
    log.debug("debug line")
    log.info("info line")
    log.warning("warning line")
    log.error("error line")
    logging.getLogger("apscheduler.executors.default").info('Running job "escalations" (scheduled at ...)')
    return stream.getvalue().splitlines()


def test_journal_lines_carry_their_syslog_priority(restore_logging, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    stream = io.StringIO()
    logsetup.configure(verbose=True, stream=stream)
    assert _emit(stream) == [
        "<7>DEBUG conduct_inbox.test: debug line",
        "<6>INFO conduct_inbox.test: info line",
        "<4>WARNING conduct_inbox.test: warning line",
        "<3>ERROR conduct_inbox.test: error line",
        '<7>DEBUG apscheduler.executors.default: Running job "escalations" (scheduled at ...)',
    ]


def test_without_the_journal_no_prefix_and_scheduler_chatter_hidden(restore_logging, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    stream = io.StringIO()
    logsetup.configure(verbose=False, stream=stream)
    assert _emit(stream) == [
        "INFO conduct_inbox.test: info line",
        "WARNING conduct_inbox.test: warning line",
        "ERROR conduct_inbox.test: error line",
    ]


def test_json_lines(restore_logging, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    stream = io.StringIO()
    logsetup.configure(verbose=False, fmt="json", stream=stream)
    try:
        raise ValueError("robin@example.net wrote something")
    except ValueError:
        logging.getLogger("conduct_inbox.test").exception("failed")
    lines = _emit(stream)
    entries = [json.loads(line) for line in lines]
    assert [set(e) for e in entries[1:]] == [{"time", "level", "logger", "message"}] * 3
    assert entries[0]["level"] == "ERROR" and entries[0]["exception"].startswith("ValueError at test_logs.py:")
    assert "robin" not in stream.getvalue()  # an exception's text never reaches the log
    assert [e["level"] for e in entries[1:]] == ["INFO", "WARNING", "ERROR"]
    assert entries[1]["time"].endswith("+00:00") and entries[1]["logger"] == "conduct_inbox.test"


def _demo_config(tmp_path: Path, fmt: str) -> Path:
    """A demo-mode config (local Maildirs); its database upgraded."""
    for folder in ("inbox", "sent"):
        for sub in ("cur", "new", "tmp"):
            (tmp_path / folder / sub).mkdir(parents=True, exist_ok=True)
    config = tmp_path / "config.toml"
    config.write_text(f"""
[mailbox]
maildir = "inbox"
[smtp]
maildir = "sent"
[database]
url = "sqlite:///{tmp_path / 'cases.db'}"
[committee]
address = "conduct@example.org"
[[committee.members]]
name = "Alice Example"
email = "alice@example.org"
[security]
token_secret = "0123456789abcdef-token-secret"
[log]
format = "{fmt}"
""")
    subprocess.run([str(CONSOLE_SCRIPT), "--config", str(config), "db", "upgrade"], check=True, capture_output=True, timeout=60)
    return config


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_daemon_logs_for_the_journal(tmp_path, fmt):
    config = _demo_config(tmp_path, fmt)
    env = {**os.environ, "JOURNAL_STREAM": "8:12345"}
    env.pop("CONDUCT_INBOX_CONFIG", None)
    result = subprocess.run([str(CONSOLE_SCRIPT), "run", "--once", "--config", str(config)],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines, "run --once logs at least one line"
    for line in lines:
        assert line[:3] in ("<3>", "<4>", "<6>"), line
        if fmt == "json":
            assert set(json.loads(line[3:])) >= {"time", "level", "logger", "message"}


def test_the_dispatch_worker_logs_the_same_way(tmp_path):
    """serve() (the dispatch worker's main, in its own process) sets up logging as configured."""
    config = _demo_config(tmp_path, "json")
    script = f"""
import logging, multiprocessing
from conduct_inbox.config import load_settings
from conduct_inbox.shell.dispatch_worker import serve
settings = load_settings({str(config)!r}, {{}})
parent, child = multiprocessing.Pipe()
parent.send("stop")
serve(settings, child, logging.INFO)
logging.getLogger("conduct_inbox.shell.dispatch_worker").warning("worker line")
"""
    env = {**os.environ, "JOURNAL_STREAM": "8:12345"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith(("<6>{", "<4>{", "<3>{")) for line in lines), lines
    assert json.loads(lines[-1][3:])["message"] == "worker line"
