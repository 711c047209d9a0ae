"""Configuration: one TOML file, `CONDUCT_INBOX_<SECTION>__<KEY>` overrides, secrets from files.

`load_settings()` layers the TOML file, the environment and secret files into a plain dict,
then validates it into `Settings`. Every problem is collected and raised at once as a
`ConfigError` with one line per problem ("mailbox.port: must be an integer between 1 and
65535"). Problem lines name keys and file paths, never values: a value may be a secret, a
webhook URL with a token in it, or a database URL with a password.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from conduct_inbox.config_sources import (
    CONFIG_ENV,
    SECRETS,
    apply_environment,
    format_errors,
    read_secrets,
    read_toml,
    resolve_maildirs,
)
from conduct_inbox.core.commands import DECISIONS
from conduct_inbox.core.roster import Roster
from conduct_inbox.core.sla import SlaPolicy
from conduct_inbox.errors import ConfigError, EncryptionError
from conduct_inbox.store.crypto import parse_key

DEFAULT_CONFIG = "config.toml"

# The decisions the policy allows (one list, in command_types.py); `committee.severe_decisions` must be a subset.

_PORT_MSG = "must be an integer between 1 and 65535"
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_CASE_TAG_RE = re.compile(r"^[a-z0-9-]+$")
_DB_URL_PREFIXES = ("sqlite:///", "postgresql://", "postgresql+psycopg://")


class _Problems(ValueError):
    """Several problems from one validator; each line is "relative-key<TAB>message"."""

    def __init__(self, pairs: list[tuple[str, str]]):
        super().__init__("\n".join(f"{key}\t{msg}" for key, msg in pairs))


def _int_range(lo: int, hi: int | None, msg: str) -> Any:
    """A before-validator accepting an integer (or digit string from the environment) in range."""

    def check(value: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(msg)
        if value < lo or (hi is not None and value > hi):
            raise ValueError(msg)
        return value

    return BeforeValidator(check)


def _address(value: Any) -> str:
    """Validate a bare mail address and return it lowercased."""
    if not isinstance(value, str) or not _ADDRESS_RE.match(value.strip()):
        raise ValueError("must be a mail address like name@example.org")
    value = value.strip().lower()
    if ".." in value or value.startswith(".") or ".@" in value or "@." in value:
        raise ValueError("must be a mail address like name@example.org")
    return value


Port = Annotated[int, _int_range(1, 65535, _PORT_MSG)]
PositiveInt = Annotated[int, _int_range(1, None, "must be a positive integer")]
NonNegativeInt = Annotated[int, _int_range(0, None, "must be an integer, 0 or more")]
Address = Annotated[str, BeforeValidator(_address)]
Security = Literal["tls", "starttls", "none"]
Auth = Literal["password", "oauth2"]
#: true or false only: pydantic's lax mode would read `chair = "yes"` (or "no"!) as a boolean.
Bool = Annotated[bool, Strict()]


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: the only hosts allowed without TLS."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Section(BaseModel):
    """A config table: unknown keys are errors so that typos do not go unnoticed."""

    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


#: Every secret; `load_settings(secrets=...)` reads only some (read-only commands need few).
ALL_SECRETS = frozenset(f"{section}.{key}" for section, key, _, _ in SECRETS)


#: The secrets the current load_settings() reads. A context variable, not pydantic's validation
#: context: BaseSettings has its own __init__, and pydantic then drops the context on the way.
_SECRETS_WANTED: ContextVar[frozenset[str]] = ContextVar("secrets_wanted", default=ALL_SECRETS)


def _wanted(info: ValidationInfo, secret: str) -> bool:
    """Whether this load reads `secret` ("section.key"); an unread secret is not required."""
    return secret in _SECRETS_WANTED.get()


def _check_security(value: str, info: ValidationInfo) -> str:
    """Plain-text connections are allowed only to a loopback host."""
    host = info.data.get("host")
    if value == "none" and host and not is_loopback(host):
        raise ValueError('"none" is allowed only for a loopback host (127.x, ::1, localhost)')
    return value


def _check_host_or_maildir(value: str, info: ValidationInfo) -> str:
    """Demo mode uses a local Maildir; otherwise a server host is needed."""
    if "host" in info.data and not info.data["host"] and not value:
        raise ValueError("set host (a server) or maildir (a local Maildir, demo mode)")
    return value


class Mailbox(_Section):
    """The conduct@ mailbox, read over IMAP (or a local Maildir in demo mode)."""

    host: str = ""
    port: Port = 993
    security: Security = "tls"
    username: str = ""
    #: password: LOGIN with the password; oauth2: SASL XOAUTH2/OAUTHBEARER with a token from [oauth2].
    auth: Auth = "password"
    password: SecretStr = SecretStr("")
    password_file: str = ""
    folder: str = "INBOX"
    processed_folder: str = "Processed"
    quarantine_folder: str = "Quarantine"
    poll_seconds: PositiveInt = 30
    idle: Bool = True
    own_list_ids: list[str] = []
    timeout_seconds: PositiveInt = 30
    maildir: str = ""

    _security = field_validator("security")(_check_security)
    _maildir = field_validator("maildir")(_check_host_or_maildir)

    @field_validator("username")
    @classmethod
    def _username(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("host") and not value:
            raise ValueError("required when mailbox.host is set")
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if info.data.get("auth") == "oauth2":
            return value
        if info.data.get("host") and not value.get_secret_value() and _wanted(info, "mailbox.password"):
            raise ValueError("required when mailbox.host is set (set password_file or password)")
        return value

    @field_validator("folder", "processed_folder", "quarantine_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


class Smtp(_Section):
    """Outgoing mail over SMTP (or written to a local Maildir in demo mode)."""

    host: str = ""
    port: Port = 587
    security: Security = "starttls"
    username: str = ""
    #: password: AUTH with the password (when username is set); oauth2: XOAUTH2/OAUTHBEARER.
    auth: Auth = "password"
    password: SecretStr = SecretStr("")
    password_file: str = ""
    timeout_seconds: PositiveInt = 30
    retry_initial_seconds: PositiveInt = 30
    retry_max_seconds: PositiveInt = 3600
    batch_size: PositiveInt = 200
    #: Connections one large batch is sent over at once (mail is still accepted one at a time).
    connections: PositiveInt = 2
    maildir: str = ""

    _security = field_validator("security")(_check_security)
    _maildir = field_validator("maildir")(_check_host_or_maildir)

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str, info: ValidationInfo) -> str:
        if value == "oauth2" and info.data.get("host") and not info.data.get("username"):
            raise ValueError('"oauth2" needs smtp.username (the account the token is for)')
        return value

    @field_validator("password")
    @classmethod
    def _password(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        username = info.data.get("username")
        if info.data.get("auth") == "oauth2":
            return value
        if info.data.get("host") and username and not value.get_secret_value() and _wanted(info, "smtp.password"):
            raise ValueError("required when smtp.username is set (set password_file or password)")
        if info.data.get("host") and username == "" and value.get_secret_value():
            raise ValueError("set smtp.username too, or remove the password")
        return value

    @field_validator("retry_max_seconds")
    @classmethod
    def _retry_max(cls, value: int, info: ValidationInfo) -> int:
        initial = info.data.get("retry_initial_seconds")
        if initial is not None and value < initial:
            raise ValueError("must be at least smtp.retry_initial_seconds")
        return value


def _url_problem(url: str) -> str | None:
    """OAuth2 endpoints: https, or plain http to a loopback host only (as with security = "none")."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return None
    if parts.scheme == "http" and parts.hostname:
        return "must be an https:// URL (http:// only for a loopback host: 127.x, ::1, localhost)"
    return "must be an https:// URL"


class OAuth2(_Section):
    """The one OAuth2 identity used where mailbox.auth or smtp.auth is "oauth2"."""

    provider: Literal["microsoft", "google", "generic"] = "microsoft"
    #: microsoft: the directory (tenant) id.
    tenant: str = ""
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    client_secret_file: str = ""
    refresh_token: SecretStr = SecretStr("")
    refresh_token_file: str = ""
    #: google: the service-account JSON key (read from service_account_file).
    service_account: SecretStr = SecretStr("")
    service_account_file: str = ""
    #: generic: the token endpoint; google: overrides https://oauth2.googleapis.com/token.
    token_url: str = ""
    scopes: list[str] = []
    #: microsoft: the authority host (national clouds); default https://login.microsoftonline.com.
    authority: str = ""
    #: google / generic: the authorization endpoint `oauth login` opens (google has a default).
    authorization_url: str = ""
    #: generic: the device authorization endpoint (RFC 8628) `oauth login` uses, if any.
    device_authorization_url: str = ""

    @field_validator("token_url", "authority", "authorization_url", "device_authorization_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value:
            problem = _url_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        if any(not scope.strip() or " " in scope.strip() for scope in value):
            raise ValueError("each scope must be one non-empty word")
        return [scope.strip() for scope in value]

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not text:
            return value
        try:
            info = json.loads(text)
        except ValueError:
            raise ValueError("the service account file is not JSON (download the key as JSON)") from None
        if not isinstance(info, dict) or info.get("type") != "service_account" or not info.get("client_email") or not info.get("private_key"):
            raise ValueError("the service account file is not a service-account key (type, client_email, private_key)")
        return value

    def uses_refresh_token(self) -> bool:
        return bool(self.refresh_token.get_secret_value() or self.refresh_token_file)


def _oauth2_problems(oauth2: OAuth2, info: ValidationInfo) -> list[tuple[str, str]]:
    """What an OAuth2 login needs of [oauth2], as (relative key, problem) pairs."""
    problems: list[tuple[str, str]] = []
    secrets_known = _wanted(info, "oauth2.refresh_token") and _wanted(info, "oauth2.client_secret")
    jwt = oauth2.provider == "google" and (oauth2.service_account.get_secret_value() or oauth2.service_account_file)
    if oauth2.provider == "microsoft" and not oauth2.tenant.strip():
        problems.append(("tenant", "required for provider \"microsoft\" (the directory (tenant) id of the app registration)"))
    if not oauth2.client_id.strip() and not (jwt and not oauth2.uses_refresh_token()):
        problems.append(("client_id", "required when mailbox.auth or smtp.auth is \"oauth2\" (the application (client) id)"))
    if oauth2.provider == "generic" and not oauth2.token_url:
        problems.append(("token_url", "required for provider \"generic\" (the token endpoint)"))
    if oauth2.service_account_file and oauth2.provider != "google":
        problems.append(("service_account_file", "only for provider \"google\""))
    if not secrets_known:
        return problems
    if oauth2.provider == "google" and not jwt and not oauth2.uses_refresh_token():
        problems.append(("", "provider \"google\" needs service_account_file (domain-wide delegation) "
                             "or a refresh token (`conduct-inbox oauth login`)"))
    elif not oauth2.uses_refresh_token() and not jwt and not oauth2.client_secret.get_secret_value():
        problems.append(("client_secret", "required for app-only access (client_credentials) without a refresh token "
                                          "(set client_secret_file, or run `conduct-inbox oauth login`)"))
    elif oauth2.provider == "google" and oauth2.uses_refresh_token() and not oauth2.client_secret.get_secret_value():
        problems.append(("client_secret", "required with a Google refresh token (the OAuth client's secret)"))
    return problems


class Database(_Section):
    """Where cases live: SQLite by default, PostgreSQL in production."""

    url: str = "sqlite:////var/lib/conduct-inbox/cases.db"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(_DB_URL_PREFIXES):
            raise ValueError("must start with sqlite:///, postgresql:// or postgresql+psycopg://")
        return value


class Member(_Section):
    """A roster entry: committee or steering member."""

    name: str
    email: Address
    aliases: list[str] = []
    chair: Bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        if any(not alias.strip() for alias in value):
            raise ValueError("aliases must not be empty strings")
        return [alias.strip() for alias in value]


def _duplicate_emails(members: list[Member], prefix: str, seen: set[str]) -> list[tuple[str, str]]:
    """Problems for members whose email already appeared (in `seen`, which is updated)."""
    problems = []
    for index, member in enumerate(members):
        if member.email in seen:
            problems.append((f"{prefix}[{index}].email", "the same email is listed twice on the roster"))
        seen.add(member.email)
    return problems


class Committee(_Section):
    """The committee: its address (the From of all our mail), roster and rules."""

    address: Address
    name: str = "Code of Conduct Committee"
    steering_address: str = ""
    case_tag: str = "conduct"
    quorum: PositiveInt = Roster.quorum
    severe_decisions: list[str] = ["public-reprimand", "temporary-ban", "permanent-ban"]
    auto_ack_alert_hours: PositiveInt = SlaPolicy.auto_ack_alert_hours
    #: Mail anonymous statistics (the last 12 months) to steering_address every this many months; 0: never.
    statistics_every_months: NonNegativeInt = 0
    #: IANA time zone in which committee mail states due times and the weekly overview is sent.
    timezone: str = "UTC"
    #: "changes": a command that changes a case is announced to the other non-recused members.
    announce: Literal["changes", "none"] = "changes"
    #: "weekly": each member gets an overview of the open cases they may see on digest_weekday at digest_hour.
    digest: Literal["weekly", "off"] = "weekly"
    digest_weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = "monday"
    digest_hour: Annotated[int, Field(ge=0, le=23)] = 8
    members: list[Member]

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone name such as Europe/Berlin or UTC") from None
        return value

    @field_validator("address")
    @classmethod
    def _no_plus(cls, value: str) -> str:
        if "+" in value.split("@")[0]:
            raise ValueError('must not contain "+": we add +token and +bounce to it')
        return value

    @field_validator("steering_address")
    @classmethod
    def _steering_address(cls, value: str) -> str:
        return _address(value) if value else value

    @field_validator("case_tag")
    @classmethod
    def _case_tag(cls, value: str) -> str:
        if not _CASE_TAG_RE.match(value):
            raise ValueError("must be lowercase letters, digits and hyphens ([a-z0-9-]+)")
        return value

    @field_validator("severe_decisions")
    @classmethod
    def _severe(cls, value: list[str]) -> list[str]:
        if any(item not in DECISIONS for item in value):
            raise ValueError("each must be one of " + ", ".join(DECISIONS))
        return value

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[Member]) -> list[Member]:
        problems: list[tuple[str, str]] = []
        if not value:
            problems.append(("", "at least one committee member is required"))
        if sum(member.chair for member in value) > 1:
            problems.append(("", "at most one member may be chair"))
        problems += _duplicate_emails(value, "", set())
        if problems:
            raise _Problems(problems)
        return value

    @property
    def local_part(self) -> str:
        """The part of committee.address before the @ (e.g. "conduct")."""
        return self.address.rsplit("@", 1)[0]

    @property
    def domain(self) -> str:
        """The domain of committee.address (e.g. "example.org")."""
        return self.address.rsplit("@", 1)[1]

    @property
    def chair(self) -> Member | None:
        """The committee member marked chair, if any."""
        return next((member for member in self.members if member.chair), None)


class Steering(_Section):
    """The steering committee: escalations, case reports, reconsideration."""

    members: list[Member] = []

    @field_validator("members")
    @classmethod
    def _members(cls, value: list[Member]) -> list[Member]:
        problems = [
            (f"[{index}].chair", "only committee members can be chair")
            for index, member in enumerate(value)
            if member.chair
        ]
        problems += _duplicate_emails(value, "", set())
        if problems:
            raise _Problems(problems)
        return value


class Intake(_Section):
    """How inbound mail is taken in."""

    spam_header: str = "X-Spam-Flag"
    spam_value: str = "YES"
    max_forward_attachment_mb: PositiveInt = 10
    max_attempts: PositiveInt = 3
    parse_timeout_seconds: PositiveInt = 30
    ack_limit_per_address: PositiveInt = 5
    ack_limit_window_hours: PositiveInt = 24


class Sla(_Section):
    """The policy's promises, as deadlines and escalation steps."""

    # The defaults live in core/sla.py (SlaPolicy), beside the rules that use them.
    ack_hours: PositiveInt = SlaPolicy.ack_hours
    urgent_ack_hours: PositiveInt = SlaPolicy.urgent_ack_hours
    second_level_hours: PositiveInt = SlaPolicy.second_level_hours
    urgent_second_level_hours: PositiveInt = SlaPolicy.urgent_second_level_hours
    response_days: PositiveInt = SlaPolicy.response_days
    reminder_hours_before: PositiveInt = SlaPolicy.reminder_hours_before
    urgent_phrases: list[str] = list(SlaPolicy.urgent_phrases)
    urgent_webhook_url: str = ""
    #: Members are reminded this many days before a sanction ends (0: no reminders).
    sanction_reminder_days: NonNegativeInt = 14

    @field_validator("urgent_phrases")
    @classmethod
    def _phrases(cls, value: list[str]) -> list[str]:
        if any(not phrase.strip() for phrase in value):
            raise ValueError("phrases must not be empty strings (they would match every report)")
        return value

    @field_validator("urgent_webhook_url")
    @classmethod
    def _webhook(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL, or empty")
        return value


class Retention(_Section):
    """How long closed cases' contents are kept."""

    closed_case_days: NonNegativeInt = 730


class Templates(_Section):
    """Mail texts: a folder whose files override the shipped templates by file name."""

    #: Relative to the config file's folder (load_settings resolves it); empty: shipped templates only.
    dir: str = ""

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        if value and not Path(value).is_dir():
            raise ValueError(f"{value} is not a folder")
        return value


class SecurityConfig(_Section):
    """Reply-token secrets, trusted DMARC results, encryption at rest."""

    token_secret: SecretStr = SecretStr("")
    token_secret_file: str = ""
    previous_token_secret: SecretStr = SecretStr("")
    previous_token_secret_file: str = ""
    trusted_authserv_id: str = ""
    encryption_key: SecretStr = SecretStr("")
    encryption_key_file: str = ""
    #: The key being rotated away from: values sealed with it stay readable until `db rekey` is done.
    previous_encryption_key: SecretStr = SecretStr("")
    previous_encryption_key_file: str = ""

    @field_validator("token_secret")
    @classmethod
    def _token_secret(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        secret = value.get_secret_value()
        if not secret and not _wanted(info, "security.token_secret"):
            return value
        if not secret:
            raise ValueError("required (set token_secret_file, or the token-secret credential)")
        if len(secret.encode()) < 16:
            raise ValueError("must be at least 16 bytes long")
        return value

    @field_validator("encryption_key")
    @classmethod
    def _encryption_key(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value():
            try:
                parse_key(value.get_secret_value())
            except EncryptionError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("previous_encryption_key")
    @classmethod
    def _previous_encryption_key(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        previous = value.get_secret_value()
        if not previous:
            return value
        try:
            key = parse_key(previous)
        except EncryptionError as exc:
            raise ValueError(str(exc)) from None
        current = info.data.get("encryption_key")
        if current is None:  # the current key is itself invalid: reported there
            return value
        if not current.get_secret_value():
            raise ValueError("set only with a new encryption_key (during a key rotation)")
        if parse_key(current.get_secret_value()) == key:
            raise ValueError("is the same key as encryption_key (the previous key is the one rotated away from)")
        return value

    @field_validator("previous_token_secret")
    @classmethod
    def _previous(cls, value: SecretStr) -> SecretStr:
        if value.get_secret_value() and len(value.get_secret_value().encode()) < 16:
            raise ValueError("must be at least 16 bytes long")
        return value


class Log(_Section):
    """How log lines look on stderr (the journal under systemd)."""

    #: text: "LEVEL logger: message"; json: one object per line (time, level, logger, message).
    format: Literal["text", "json"] = "text"


class Metrics(_Section):
    """Prometheus metrics from `conduct-inbox run` (counts and times, never content)."""

    #: "127.0.0.1:9464" or "[::1]:9464"; empty: no metrics endpoint.
    listen: str = ""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        host, sep, port = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            host = ""  # an IPv6 address needs brackets
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError('must be an IP address and a port, such as "127.0.0.1:9464" or "[::1]:9464"') from None
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError('must end in a port between 1 and 65535, such as "127.0.0.1:9464"')
        return value


class Settings(BaseSettings):
    """The whole configuration; build it with `load_settings()`."""

    # load_settings() does the layering itself (its environ is a parameter, and unknown
    # environment keys are reported), so constructing Settings reads nothing implicitly.
    model_config = SettingsConfigDict(extra="forbid", validate_default=True, frozen=True)

    mailbox: Mailbox
    smtp: Smtp
    oauth2: OAuth2 = OAuth2()
    database: Database = Database()
    committee: Committee
    steering: Steering = Steering()
    intake: Intake = Intake()
    sla: Sla = Sla()
    retention: Retention = Retention()
    templates: Templates = Templates()
    security: SecurityConfig
    log: Log = Log()
    metrics: Metrics = Metrics()

    _config_path: Path | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit values: the environment and files are merged by load_settings()."""
        return (init_settings,)

    @field_validator("oauth2")
    @classmethod
    def _oauth2(cls, value: OAuth2, info: ValidationInfo) -> OAuth2:
        mailbox, smtp = info.data.get("mailbox"), info.data.get("smtp")
        used = (mailbox is not None and mailbox.host and mailbox.auth == "oauth2") or (
            smtp is not None and smtp.host and smtp.auth == "oauth2"
        )
        if used:
            problems = _oauth2_problems(value, info)
            if problems:
                raise _Problems(problems)
        return value

    def uses_oauth2(self) -> bool:
        """Whether the mailbox or SMTP logs in with OAuth2."""
        return bool((self.mailbox.host and self.mailbox.auth == "oauth2") or (self.smtp.host and self.smtp.auth == "oauth2"))

    @field_validator("steering")
    @classmethod
    def _unique_across(cls, value: Steering, info: ValidationInfo) -> Steering:
        committee = info.data.get("committee")
        if committee is not None:
            seen = {member.email for member in committee.members}
            problems = _duplicate_emails(value.members, "members", seen)
            if problems:
                raise _Problems([(key, "also listed as a committee member") for key, _ in problems])
        return value

    @property
    def config_path(self) -> Path | None:
        """The file these settings were loaded from, if any."""
        return self._config_path

    def all_members(self) -> list[Member]:
        """Committee members, then steering members."""
        return [*self.committee.members, *self.steering.members]

    def member_by_email(self, addr: str) -> Member | None:
        """The roster entry for an address (case-insensitive), or None."""
        addr = addr.strip().lower()
        return next((member for member in self.all_members() if member.email == addr), None)

    def is_steering(self, member: Member) -> bool:
        """True when the member is on the steering committee rather than the committee."""
        return any(other.email == member.email for other in self.steering.members)


_SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation  # type: ignore[misc]  # every field of Settings is a section model (checked in tests)
    for name, field in Settings.model_fields.items()
}


def _resolve_templates_dir(data: dict[str, Any], config_dir: Path) -> None:
    """`templates.dir` is relative to the config file's folder, not the working directory."""
    table = data.get("templates")
    if isinstance(table, dict) and isinstance(table.get("dir"), str) and table["dir"].strip():
        table["dir"] = str((config_dir / Path(table["dir"].strip()).expanduser()).resolve())


def _missing_tables(problems: list[str], absent: list[str]) -> list[str]:
    """One line for a required table that is not there at all, instead of one per key in it."""
    for section in absent:
        inside = [line for line in problems if line.startswith((f"{section}.", f"{section}:"))]
        if inside:
            problems = [line for line in problems if line not in inside]
            problems.append(f"{section}: the [{section}] table is missing")
    return problems


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    secrets: frozenset[str] = ALL_SECRETS,
) -> Settings:
    """Read, layer and validate the configuration; raise ConfigError listing every problem.

    `secrets` names the secrets to read ("security.encryption_key", ...): the others stay empty
    and are not required, so a read-only command runs without the mail passwords."""
    environ = os.environ if environ is None else environ
    config_path = Path(path if path is not None else environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    data = read_toml(config_path)
    problems: list[str] = []
    absent = [section for section in _SECTIONS if section not in data]
    for section in _SECTIONS:
        data.setdefault(section, {})
    problems += apply_environment(data, environ, _SECTIONS)
    problems += read_secrets(data, config_path.parent, environ.get("CREDENTIALS_DIRECTORY", ""), secrets)
    resolve_maildirs(data, config_path.parent)
    _resolve_templates_dir(data, config_path.parent)
    try:
        wanted = _SECRETS_WANTED.set(secrets)
        try:
            settings = Settings.model_validate(data)
        finally:
            _SECRETS_WANTED.reset(wanted)
    except ValidationError as exc:
        problems += _missing_tables(format_errors(exc), [section for section in absent if not data[section]])
    if problems:
        raise ConfigError(problems)
    settings._config_path = config_path.resolve()
    return settings
