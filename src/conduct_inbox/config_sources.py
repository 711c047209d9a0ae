"""Where configuration values come from, before validation: the TOML file, the environment and
secret files (systemd credentials). Plain dicts in, plain dicts and problem lines out; problem
lines name keys and paths, never values."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

from pydantic import BaseModel, ValidationError

from conduct_inbox.errors import ConfigError

ENV_PREFIX = "CONDUCT_INBOX_"
CONFIG_ENV = "CONDUCT_INBOX_CONFIG"
#: Where relative secret files and conventional credential names are found without
#: $CREDENTIALS_DIRECTORY: this folder next to the config file.
CREDENTIALS_FOLDER = "credentials"

# (section, inline key, file key, conventional systemd credential name)
SECRETS = (
    ("mailbox", "password", "password_file", "imap-password"),
    ("smtp", "password", "password_file", "smtp-password"),
    ("security", "token_secret", "token_secret_file", "token-secret"),
    ("security", "previous_token_secret", "previous_token_secret_file", "previous-token-secret"),
    ("security", "encryption_key", "encryption_key_file", "encryption-key"),
    ("security", "previous_encryption_key", "previous_encryption_key_file", "previous-encryption-key"),
    ("oauth2", "client_secret", "client_secret_file", "oauth2-client-secret"),
    ("oauth2", "refresh_token", "refresh_token_file", "oauth2-refresh-token"),
    ("oauth2", "service_account", "service_account_file", "oauth2-service-account"),
)


def credentials_base(config_dir: Path, credentials_dir: str) -> Path:
    """Where relative secret files and conventional credential names are looked up."""
    return Path(credentials_dir) if credentials_dir else config_dir / CREDENTIALS_FOLDER


def secret_path(config_dir: Path, credentials_dir: str, file_name: str, credential: str) -> Path:
    """The file a secret is read from (or written to, by `oauth login`): `file_name` (relative
    ones under the credentials base), else the conventional credential name there."""
    base = credentials_base(config_dir, credentials_dir)
    return base / Path(file_name).expanduser() if file_name else base / credential


def read_toml(path: Path) -> dict[str, Any]:
    """Parse the config file; a missing, unreadable, non-UTF-8 or malformed file is one problem.

    A UTF-8 byte order mark (Windows editors write one) is accepted."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"config file {path}: not found (use --config or {CONFIG_ENV})"]) from None
    except OSError as exc:
        raise ConfigError([f"config file {path}: cannot read ({exc.strerror})"]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"config file {path}: line {line} is not UTF-8 text (save the file as UTF-8)"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's messages name the position and what was expected, never the text there.
        raise ConfigError([f"config file {path}: invalid TOML: {exc}"]) from None


_BOOLEAN_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False, "on": True, "off": False}


def apply_environment(data: dict[str, Any], environ: Mapping[str, str], sections: Mapping[str, type[BaseModel]]) -> list[str]:
    """Override TOML values with CONDUCT_INBOX_<SECTION>__<KEY> variables (case-insensitive)."""
    problems = []
    for name, raw in sorted(environ.items()):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or "__" not in upper:
            continue  # e.g. CONDUCT_INBOX_CONFIG
        parts = upper[len(ENV_PREFIX):].lower().split("__")
        model = sections.get(parts[0])
        if len(parts) != 2 or model is None or parts[1] not in model.model_fields:
            problems.append(f"{name}: unknown key (environment)")
            continue
        section, key = parts
        value: Any = raw
        annotation = model.model_fields[key].annotation
        if annotation is bool:  # TOML booleans are strict (config.Bool); the environment has only words
            if raw.strip().lower() not in _BOOLEAN_WORDS:
                problems.append(f"{name}: must be true or false (environment)")
                continue
            value = _BOOLEAN_WORDS[raw.strip().lower()]
        elif get_origin(annotation) is list:
            try:
                value = json.loads(raw)
            except ValueError:
                problems.append(f"{name}: must be a JSON list (environment)")
                continue
        if isinstance(data.get(section), dict):
            data[section][key] = value
    return problems


def read_secrets(
    data: dict[str, Any], config_dir: Path, credentials_dir: str, wanted: frozenset[str] | None = None
) -> list[str]:
    """Fill each secret from its *_file, or from its conventional credential name;
    with `wanted` ("section.key" names), only those secrets are read.

    A relative *_file, and a conventional name (imap-password, token-secret, ...) used when both
    the secret and its *_file are empty, are looked up in $CREDENTIALS_DIRECTORY when systemd sets
    it, else in the `credentials/` folder next to the config file (/etc/conduct-inbox/credentials/
    for /etc/conduct-inbox/config.toml): the same config works under systemd and from a shell."""
    problems = []
    base = credentials_base(config_dir, credentials_dir)
    for section, key, file_key, credential in SECRETS:
        if wanted is not None and f"{section}.{key}" not in wanted:
            continue
        table = data.get(section)
        if not isinstance(table, dict):
            continue
        inline, file_name = table.get(key, ""), table.get(file_key, "")
        if not isinstance(file_name, str) or (inline and not isinstance(inline, str)):
            continue  # the type error is reported by validation
        if inline and file_name:
            problems.append(f"{section}.{key}: set either {key} or {file_key}, not both")
            continue
        if inline:
            continue
        if file_name:
            secret_path = base / Path(file_name).expanduser()
        elif (base / credential).is_file():
            secret_path = base / credential
        else:
            continue
        try:
            secret = secret_path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            problems.append(f"{section}.{file_key}: cannot read {secret_path} ({exc.strerror})")
            continue
        except UnicodeDecodeError:
            problems.append(f"{section}.{file_key}: {secret_path} is not UTF-8 text")
            continue
        table[key] = secret
        table[file_key] = str(secret_path)
    return problems


def resolve_maildirs(data: dict[str, Any], config_dir: Path) -> None:
    """A relative demo-mode Maildir is relative to the config file, not the working directory."""
    for section in ("mailbox", "smtp"):
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get("maildir"), str) and table["maildir"]:
            table["maildir"] = str(config_dir / Path(table["maildir"]).expanduser())


_FRIENDLY = {
    "missing": "required",
    "extra_forbidden": "unknown key",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
}


def format_errors(exc: ValidationError) -> list[str]:
    """One line per pydantic error, from its location and message only (never its input)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
        for relative, message in _messages(error):
            key = _join_key(loc.lstrip("."), relative)
            lines.append(f"{key}: {message}" if key else message)
    return lines


def _messages(error: Any) -> list[tuple[str, str]]:
    """(relative key, message) pairs for one pydantic error; _Problems may carry several."""
    if error["type"] == "literal_error":
        return [("", "must be one of " + error.get("ctx", {}).get("expected", ""))]
    if error["type"] in _FRIENDLY:
        return [("", _FRIENDLY[error["type"]])]
    text = error["msg"].removeprefix("Value error, ")
    pairs = []
    for line in text.split("\n"):
        relative, _, message = line.rpartition("\t")
        pairs.append((relative, message))
    return pairs


def _join_key(loc: str, relative: str) -> str:
    """Join a location and a relative key: "a.b" + "[0].c" or "c"."""
    if not relative or not loc:
        return loc or relative
    return f"{loc}{relative}" if relative.startswith("[") else f"{loc}.{relative}"
