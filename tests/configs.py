"""A minimal configuration file and the problems `load_settings` finds in one."""

from __future__ import annotations

from pathlib import Path

import pytest

from conduct_inbox.config import load_settings
from conduct_inbox.errors import ConfigError

TOKEN = "0123456789abcdef-token-secret"

MINIMAL = f"""
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
url = "sqlite:///cases.db"

[committee]
address = "conduct@example.org"

[[committee.members]]
name = "Alice Example"
email = "Alice@Example.org"
chair = true

[security]
token_secret = "{TOKEN}"
"""


def write(tmp_path: Path, text: str = MINIMAL, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ or {})
    return info.value.problems
