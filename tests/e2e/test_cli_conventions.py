"""The command line's conventions (issue 14): --config anywhere, --version, help for every
argument, bad configuration files as one line per problem (exit 2, never a traceback),
read-only commands without secrets they do not use."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conduct_inbox
from conduct_inbox.cli import build_parser, main

CONSOLE_SCRIPT = Path(sys.executable).parent / "conduct-inbox"
TOKEN = "0123456789abcdef-token-secret"


def config_text(db: Path, chair: str = "true") -> str:
    return f"""
[mailbox]
host = "127.0.0.1"
port = 1143
security = "none"
username = "conduct"
password = "imap-pass"

[smtp]
host = "localhost"
port = 1025
security = "none"

[database]
url = "sqlite:///{db}"

[committee]
address = "conduct@example.org"

[[committee.members]]
name = "Zoë Example"
email = "zoe@example.org"
chair = {chair}

[security]
token_secret = "{TOKEN}"
"""


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory without config.toml, and no $CONDUCT_INBOX_CONFIG."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("CONDUCT_INBOX_CONFIG", raising=False)
    return cwd


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's --version and usage errors
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


# ----- item 2: CLI conventions -------------------------------------------------------------------


@pytest.mark.parametrize("where", ["before", "between", "after"])
def test_config_is_accepted_before_or_after_the_subcommand(tmp_path: Path, elsewhere: Path, where: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path / "cases.db"))
    argv = {
        "before": ["--config", str(config), "db", "upgrade"],
        "between": ["db", "--config", str(config), "upgrade"],
        "after": ["db", "upgrade", "--config", str(config)],
    }[where]
    code, out, err = run(*argv)
    assert code == 0, err
    assert "database at revision" in out and (tmp_path / "cases.db").exists()
    code, out, err = run("--config", str(config), "cases", "list", "--json")
    assert (code, out.strip()) == (0, "[]"), err


def test_version_is_the_installed_distributions() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out.strip() == f"conduct-inbox {conduct_inbox.__version__}"
    assert importlib.metadata.version("conduct-inbox") == conduct_inbox.__version__
    result = subprocess.run([str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"conduct-inbox {conduct_inbox.__version__}"


def _parsers(parser: argparse.ArgumentParser, path: str = "conduct-inbox"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest for choice in action._choices_actions if choice.help}
            for name, child in action.choices.items():
                assert name in helped, f"{path} {name}: no help text"
                yield from _parsers(child, f"{path} {name}")


def test_every_argument_has_help_text() -> None:
    seen = 0
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{path} {action.option_strings or action.dest}: no help"
            seen += 1
        parser.format_help()
    assert seen > 40


# ----- item 3: config robustness -----------------------------------------------------------------

BAD_CONFIGS = {
    # name: (bytes of the file, what the one problem line says)
    "latin1": (lambda db: config_text(db).encode("latin-1"), "line 21 is not UTF-8 text"),
    "wrong type": (lambda db: config_text(db, chair='"yes"').encode(), "committee.members[0].chair: must be true or false"),
    "missing table": (lambda db: config_text(db).split("[committee]")[0].encode() + b"[security]\ntoken_secret = \"" + TOKEN.encode() + b"\"\n",
                      "committee: the [committee] table is missing"),
    "syntax": (lambda db: config_text(db).replace("port = 1143", "port = = 1143").encode(), "invalid TOML: Invalid value (at line 4, column 8)"),
}


def _problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_file_is_one_line_exit_2_in_process(tmp_path: Path, elsewhere: Path, name: str) -> None:
    content, expected = BAD_CONFIGS[name]
    config = tmp_path / "config.toml"
    config.write_bytes(content(tmp_path / "cases.db"))
    code, out, err = run("cases", "list", "--config", str(config))
    assert code == 2
    lines = _problem_lines(err)
    assert len(lines) == 1 and lines[0].startswith("config: ") and expected in lines[0], err
    assert "Traceback" not in err and "imap-pass" not in err and TOKEN not in err


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_bad_config_file_is_one_line_exit_2_from_the_console_script(tmp_path: Path, name: str) -> None:
    content, expected = BAD_CONFIGS[name]
    config = tmp_path / "config.toml"
    config.write_bytes(content(tmp_path / "cases.db"))
    env = {k: v for k, v in os.environ.items() if k not in ("CONDUCT_INBOX_CONFIG", "JOURNAL_STREAM")}
    result = subprocess.run([str(CONSOLE_SCRIPT), "--config", str(config), "health"], capture_output=True,
                            text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 2
    lines = _problem_lines(result.stderr)
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_utf8_bom_is_accepted(tmp_path: Path, elsewhere: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b"\xef\xbb\xbf" + config_text(tmp_path / "cases.db").encode())
    assert run("--config", str(config), "db", "upgrade")[0] == 0
    code, out, err = run("--config", str(config), "members")
    assert code == 0 and "Zoë Example <zoe@example.org>" in out, err
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    result = subprocess.run([str(CONSOLE_SCRIPT), "--config", str(config), "health"], capture_output=True,
                            text=True, timeout=60, env=env)
    assert "config:" not in result.stderr and "Traceback" not in result.stderr


def test_boolean_from_the_environment_is_a_word(tmp_path: Path) -> None:
    from conduct_inbox.config import load_settings
    from conduct_inbox.errors import ConfigError

    config = tmp_path / "config.toml"
    config.write_text(config_text(tmp_path / "cases.db"))
    assert load_settings(config, {"CONDUCT_INBOX_MAILBOX__IDLE": "false"}).mailbox.idle is False
    assert load_settings(config, {"CONDUCT_INBOX_MAILBOX__IDLE": "TRUE"}).mailbox.idle is True
    with pytest.raises(ConfigError) as info:
        load_settings(config, {"CONDUCT_INBOX_MAILBOX__IDLE": "maybe"})
    assert info.value.problems == ["CONDUCT_INBOX_MAILBOX__IDLE: must be true or false (environment)"]


def test_network_failures_are_said_in_words_without_secrets(tmp_path: Path, elsewhere: Path) -> None:
    """check-config against a port nobody listens on, a name that does not resolve, and a
    PostgreSQL server that is not there: what happened in words, never a class name or a secret."""
    import socket

    with socket.socket() as probe:  # a free port: bound, then closed
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(tmp_path / "cases.db")
        .replace("port = 1143", f"port = {free}")
        .replace('host = "localhost"\nport = 1025\nsecurity = "none"',
                 'host = "smtp.example.invalid"\nport = 587\nsecurity = "starttls"\nusername = "u"\npassword = "smtp-pass"')
        .replace(f'url = "sqlite:///{tmp_path / "cases.db"}"', f'url = "postgresql+psycopg://conduct:db-pass@127.0.0.1:{free}/cases"')
    )
    code, out, err = run("check-config", "--config", str(config))
    assert code == 1
    assert f"mailbox: IMAP connection failed: connection refused by 127.0.0.1:{free}" in err
    assert "smtp: SMTP connect failed: cannot resolve smtp.example.invalid" in err
    assert f"database: connection refused by 127.0.0.1:{free}" in err
    for secret in ("imap-pass", "smtp-pass", "db-pass", TOKEN):
        assert secret not in out + err
    assert "Error" not in err and "Traceback" not in err


# ----- item 6: read-only commands need no secrets they do not use ---------------------------------


def test_read_only_commands_run_without_mail_passwords_or_token_secret(tmp_path: Path, elsewhere: Path) -> None:
    secrets = tmp_path / "secrets"  # named in the config, never created
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(tmp_path / "cases.db")
        .replace('password = "imap-pass"', f'password_file = "{secrets / "imap-password"}"')
        .replace('security = "none"\n\n[database]', f'security = "none"\nusername = "conduct"\npassword_file = "{secrets / "smtp-password"}"\n\n[database]')
        .replace(f'token_secret = "{TOKEN}"', f'token_secret_file = "{secrets / "token-secret"}"')
    )
    assert run("--config", str(config), "db", "upgrade")[0] == 0
    for argv in (["cases", "list"], ["cases", "list", "--json"], ["report", "--since", "2026-01-01"], ["sanctions"],
                 ["escalations"], ["purge", "--dry-run"], ["health"]):
        code, out, err = run("--config", str(config), *argv)
        assert "config:" not in err and "Traceback" not in err, (argv, err)
        assert code == (1 if argv == ["health"] else 0), (argv, out, err)  # health: no poll yet
    # Commands that do use them still say which one is missing.
    for argv in (["members"], ["purge"], ["check-config"]):
        code, _, err = run("--config", str(config), *argv)
        assert code == 2 and "token_secret_file: cannot read" in err, (argv, err)
