"""Configuration: the TOML contract, environment overrides, secret files, and clear problems."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from conduct_inbox.config import Settings, load_settings
from conduct_inbox.core.recusal import common_word_aliases
from conduct_inbox.errors import ConfigError
from tests.configs import MINIMAL, TOKEN, problems_of, write

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.toml"
def test_example_file_loads_with_its_documented_values(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "imap").write_text("imap-secret\n")
    (secrets / "smtp").write_text("smtp-secret\n")
    (secrets / "token").write_text(TOKEN + "\n")
    environ = {
        "CONDUCT_INBOX_MAILBOX__PASSWORD_FILE": str(secrets / "imap"),
        "CONDUCT_INBOX_SMTP__PASSWORD_FILE": str(secrets / "smtp"),
        "CONDUCT_INBOX_SECURITY__TOKEN_SECRET_FILE": str(secrets / "token"),
    }
    settings = load_settings(EXAMPLE, environ)

    assert settings.mailbox.host == "imap.example.org"
    assert (settings.mailbox.port, settings.mailbox.security) == (993, "tls")
    assert settings.mailbox.password.get_secret_value() == "imap-secret"
    assert settings.smtp.password.get_secret_value() == "smtp-secret"
    assert settings.security.token_secret.get_secret_value() == TOKEN
    assert settings.security.encryption_key.get_secret_value() == ""
    assert (settings.smtp.port, settings.smtp.security, settings.smtp.batch_size) == (587, "starttls", 200)
    assert settings.database.url == "sqlite:////var/lib/conduct-inbox/cases.db"
    assert (settings.committee.local_part, settings.committee.domain) == ("conduct", "example.org")
    assert settings.committee.severe_decisions == ["public-reprimand", "temporary-ban", "permanent-ban"]
    assert settings.committee.chair is not None and settings.committee.chair.name == "Alice Example"
    assert [m.email for m in settings.all_members()] == [
        "alice@example.org", "bob@example.org", "carol@example.org", "sam@example.org"]
    assert settings.member_by_email(" SAM@example.org") is settings.steering.members[0]
    assert settings.is_steering(settings.steering.members[0])
    assert settings.member_by_email("mallory@example.org") is None
    assert (settings.sla.ack_hours, settings.sla.response_days, settings.retention.closed_case_days) == (24, 7, 730)
    assert (settings.intake.max_attempts, settings.intake.ack_limit_per_address) == (3, 5)
    assert settings.config_path == EXAMPLE
    # The secret never shows in the settings' repr (e.g. in a traceback or a debug log).
    assert "imap-secret" not in repr(settings) and TOKEN not in repr(settings)


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    for section, field in Settings.model_fields.items():
        model = field.annotation
        assert f"[{section}]" in text or f"[[{section}.members]]" in text
        for key in model.model_fields:  # type: ignore[union-attr]
            if key != "members":
                assert f"\n{key} =" in text or f"\n# {key} =" in text, f"{section}.{key} undocumented"
    for key in ("name", "email", "aliases", "chair"):
        assert f"\n{key} =" in text


def test_minimal_config_gets_the_design_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), {})
    assert settings.committee.members[0].email == "alice@example.org"
    assert settings.committee.case_tag == "conduct" and settings.committee.quorum == 2
    assert settings.mailbox.processed_folder == "Processed" and settings.mailbox.idle is True
    assert settings.smtp.retry_max_seconds == 3600 and settings.committee.auto_ack_alert_hours == 1
    assert settings.steering.members == []
    assert settings.sla.urgent_phrases[0] == "physical danger"


def test_environment_overrides_with_double_underscore_nesting(tmp_path: Path) -> None:
    environ = {
        "CONDUCT_INBOX_MAILBOX__PORT": "2143",
        "conduct_inbox_committee__case_tag": "coc",  # case-insensitive names
        "CONDUCT_INBOX_MAILBOX__IDLE": "false",
        "CONDUCT_INBOX_SLA__URGENT_PHRASES": '["Polizei", "police"]',
        "CONDUCT_INBOX_STEERING__MEMBERS": '[{"name": "Sam S", "email": "Sam@example.org"}]',
        "CONDUCT_INBOX_CONFIG": "ignored-here.toml",
        "UNRELATED": "x",
    }
    settings = load_settings(write(tmp_path), environ)
    assert settings.mailbox.port == 2143 and settings.mailbox.idle is False
    assert settings.committee.case_tag == "coc"
    assert settings.sla.urgent_phrases == ["Polizei", "police"]
    assert settings.steering.members[0].email == "sam@example.org"


def test_unknown_environment_key_is_a_problem(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path), {"CONDUCT_INBOX_MAILBOX__HOTS": "x", "CONDUCT_INBOX_NOPE__A": "1"})
    assert problems == ["CONDUCT_INBOX_MAILBOX__HOTS: unknown key (environment)",
                        "CONDUCT_INBOX_NOPE__A: unknown key (environment)"]


def test_config_path_from_environment_then_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = write(tmp_path, name="elsewhere.toml")
    assert load_settings(None, {"CONDUCT_INBOX_CONFIG": str(other)}).config_path == other
    monkeypatch.chdir(tmp_path)
    write(tmp_path)
    assert load_settings(None, {}).config_path == tmp_path / "config.toml"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    problems = problems_of(tmp_path / "absent.toml")
    assert len(problems) == 1 and "absent.toml: not found" in problems[0]


def test_secret_files_relative_to_the_credentials_folder_next_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "token").write_text(TOKEN + "\r\n")
    (tmp_path / "token").write_text("not-this-one-but-long-enough\n")  # the config's own folder is not searched
    text = MINIMAL.replace(f'token_secret = "{TOKEN}"', 'token_secret_file = "token"')
    settings = load_settings(write(tmp_path, text), {})
    assert settings.security.token_secret.get_secret_value() == TOKEN
    assert settings.security.token_secret_file == str(tmp_path / "credentials" / "token")


def test_conventional_names_from_the_credentials_folder_without_systemd(tmp_path: Path) -> None:
    # What README's install steps do: keygen > /etc/conduct-inbox/credentials/token-secret, then a shell.
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "token-secret").write_text(TOKEN + "\n")
    (tmp_path / "credentials" / "smtp-password").write_text("smtp-from-the-folder\n")
    text = (MINIMAL.replace(f'token_secret = "{TOKEN}"', "")
            .replace('security = "none"\n\n[database]', 'security = "none"\nusername = "conduct"\n\n[database]'))
    settings = load_settings(write(tmp_path, text), {})
    assert settings.security.token_secret.get_secret_value() == TOKEN
    assert settings.smtp.password.get_secret_value() == "smtp-from-the-folder"
    # With $CREDENTIALS_DIRECTORY set, only that directory counts.
    creds = tmp_path / "creds"
    creds.mkdir()
    problems = problems_of(write(tmp_path, text), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert any(p.startswith("security.token_secret: required") for p in problems), problems


def test_credentials_directory_resolves_relative_files_and_conventional_names(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "my-token").write_text(TOKEN + "\n")
    (creds / "smtp-password").write_text("smtp-from-systemd\n")
    (creds / "previous-token-secret").write_text("an-older-secret-of-enough-length\n")
    text = (MINIMAL.replace(f'token_secret = "{TOKEN}"', 'token_secret_file = "my-token"')
            .replace('security = "none"\n\n[database]', 'security = "none"\nusername = "conduct"\n\n[database]'))
    settings = load_settings(write(tmp_path, text), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert settings.security.token_secret.get_secret_value() == TOKEN
    assert settings.smtp.password.get_secret_value() == "smtp-from-systemd"
    assert settings.security.previous_token_secret.get_secret_value() == "an-older-secret-of-enough-length"
    # The inline IMAP password wins over nothing: a conventional credential never overrides a set value.
    assert settings.mailbox.password.get_secret_value() == "imap-pass"


def test_unreadable_secret_file_names_key_and_path(tmp_path: Path) -> None:
    text = MINIMAL.replace(f'token_secret = "{TOKEN}"', 'token_secret_file = "/nonexistent/token"')
    problems = problems_of(write(tmp_path, text))
    assert problems[0] == "security.token_secret_file: cannot read /nonexistent/token (No such file or directory)"


def test_inline_and_file_secret_together_is_a_problem(tmp_path: Path) -> None:
    text = MINIMAL.replace('password = "imap-pass"', 'password = "imap-pass"\npassword_file = "pw"')
    (tmp_path / "pw").write_text("other")
    problems = problems_of(write(tmp_path, text))
    assert problems == ["mailbox.password: set either password or password_file, not both"]


def test_bad_config_lists_every_problem_and_no_secret(tmp_path: Path) -> None:
    bad = """
[mailbox]
hots = "imap.example.org"
host = "imap.example.org"
port = 70000
security = "plain"
username = "conduct"
password = "very-secret-imap-password"

[smtp]
host = "smtp.example.org"
port = "smtp"
security = "none"
username = "conduct"
password = "very-secret-smtp-password"

[database]
url = "mysql://root:db-secret-password@db/x"

[committee]
address = "not an address"
case_tag = "Conduct!"
quorum = 0
severe_decisions = ["public-reprimand", "exile"]

[[committee.members]]
name = "Alice"
email = "alice@example.org"
chair = true

[[committee.members]]
name = "Bob"
email = "bob@"
chair = true

[[steering.members]]
name = "Alice again"
email = "ALICE@example.org"
chair = true

[sla]
ack_hours = 0
response_days = -1
urgent_webhook_url = "ftp://hooks.example.org/webhook-secret-token"

[retention]
closed_case_days = -5

[security]
token_secret = "short-secret"
"""
    problems = problems_of(write(tmp_path, bad))
    assert problems == [
        "mailbox.port: must be an integer between 1 and 65535",
        "mailbox.security: must be one of 'tls', 'starttls' or 'none'",
        "mailbox.hots: unknown key",
        "smtp.port: must be an integer between 1 and 65535",
        'smtp.security: "none" is allowed only for a loopback host (127.x, ::1, localhost)',
        "database.url: must start with sqlite:///, postgresql:// or postgresql+psycopg://",
        "committee.address: must be a mail address like name@example.org",
        "committee.case_tag: must be lowercase letters, digits and hyphens ([a-z0-9-]+)",
        "committee.quorum: must be a positive integer",
        "committee.severe_decisions: each must be one of no-action, private-reprimand, public-reprimand,"
        " vacation, temporary-ban, permanent-ban, apology-request",
        "committee.members[1].email: must be a mail address like name@example.org",
        "steering.members[0].chair: only committee members can be chair",
        "sla.ack_hours: must be a positive integer",
        "sla.response_days: must be a positive integer",
        "sla.urgent_webhook_url: must be an http:// or https:// URL, or empty",
        "retention.closed_case_days: must be an integer, 0 or more",
        "security.token_secret: must be at least 16 bytes long",
    ]
    message = str(ConfigError(problems))
    for secret in ("very-secret", "db-secret-password", "webhook-secret-token", "short-secret", "input_value"):
        assert secret not in message


def test_roster_rules(tmp_path: Path) -> None:
    roster = """
[[committee.members]]
name = "Bob"
email = "bob@example.org"
chair = true

[[committee.members]]
name = "Bob Twin"
email = "BOB@example.org"

[[steering.members]]
name = "Alice Steering"
email = "alice@example.org"
"""
    problems = problems_of(write(tmp_path, MINIMAL + roster))
    assert problems == [
        "committee.members: at most one member may be chair",
        "committee.members[2].email: the same email is listed twice on the roster",
    ]
    no_members = MINIMAL.split("[[committee.members]]")[0] + '[security]\ntoken_secret = "' + TOKEN + '"\n'
    assert problems_of(write(tmp_path, no_members)) == ["committee.members: required"]


def test_steering_member_may_not_repeat_a_committee_member(tmp_path: Path) -> None:
    text = MINIMAL + '[[steering.members]]\nname = "A"\nemail = "alice@example.org"\n'
    assert problems_of(write(tmp_path, text)) == ["steering.members[0].email: also listed as a committee member"]


def test_unknown_key_and_section_are_caught(tmp_path: Path) -> None:
    text = MINIMAL.replace('host = "127.0.0.1"', 'hots = "127.0.0.1"\nhost = "127.0.0.1"') + "\n[retension]\ndays = 1\n"
    text = text.replace('email = "Alice@Example.org"', 'email = "alice@example.org"\nalias = ["Al"]')
    assert problems_of(write(tmp_path, text)) == [
        "mailbox.hots: unknown key",
        "committee.members[0].alias: unknown key",
        "retension: unknown key",
    ]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_plaintext_allowed_to_loopback(tmp_path: Path, host: str) -> None:
    text = MINIMAL.replace('host = "127.0.0.1"', f'host = "{host}"')
    assert load_settings(write(tmp_path, text), {}).mailbox.host == host


@pytest.mark.parametrize("host", ["imap.example.org", "10.0.0.1", "128.0.0.1", "localhost.example.org"])
def test_plaintext_refused_to_other_hosts(tmp_path: Path, host: str) -> None:
    text = MINIMAL.replace('host = "127.0.0.1"', f'host = "{host}"')
    assert problems_of(write(tmp_path, text)) == [
        'mailbox.security: "none" is allowed only for a loopback host (127.x, ::1, localhost)']


def test_demo_mode_maildirs_relative_to_config(tmp_path: Path) -> None:
    text = (MINIMAL.replace('host = "127.0.0.1"', 'host = ""\nmaildir = "demo/in"')
            .replace('host = "localhost"', 'host = ""\nmaildir = "demo/out"'))
    settings = load_settings(write(tmp_path, text), {})
    assert settings.mailbox.maildir == str(tmp_path / "demo/in")
    assert settings.smtp.maildir == str(tmp_path / "demo/out")
    neither = MINIMAL.replace('host = "localhost"', 'host = ""')
    assert problems_of(write(tmp_path, neither)) == [
        "smtp.maildir: set host (a server) or maildir (a local Maildir, demo mode)"]


def test_missing_token_secret_and_login(tmp_path: Path) -> None:
    text = MINIMAL.replace(f'token_secret = "{TOKEN}"', "").replace('password = "imap-pass"', "")
    assert problems_of(write(tmp_path, text)) == [
        "mailbox.password: required when mailbox.host is set (set password_file or password)",
        "security.token_secret: required (set token_secret_file, or the token-secret credential)",
    ]


def test_invalid_toml_is_one_clear_problem(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, "[mailbox\nhost = 1"))
    assert len(problems) == 1 and "invalid TOML" in problems[0]


def test_common_word_aliases_are_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace('chair = true', 'chair = true\naliases = ["Will", "Ali", "Mark Example", "Hope"]')
    settings = load_settings(write(tmp_path, text), {})
    assert common_word_aliases(settings) == ["Will", "Hope"]


def test_example_is_valid_toml_for_other_tools() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    assert data["committee"]["members"][0]["chair"] is True


def test_committee_time_zone_announcements_and_weekly_overview(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), {})
    committee = settings.committee
    assert (committee.timezone, committee.announce, committee.digest) == ("UTC", "changes", "weekly")
    assert (committee.digest_weekday, committee.digest_hour) == ("monday", 8)
    environ = {"CONDUCT_INBOX_COMMITTEE__TIMEZONE": "Europe/Berlin", "CONDUCT_INBOX_COMMITTEE__DIGEST": "off"}
    assert load_settings(write(tmp_path), environ).committee.timezone == "Europe/Berlin"
    problems = problems_of(write(tmp_path), {"CONDUCT_INBOX_COMMITTEE__TIMEZONE": "Mars/Olympus",
                                             "CONDUCT_INBOX_COMMITTEE__DIGEST_HOUR": "24",
                                             "CONDUCT_INBOX_COMMITTEE__ANNOUNCE": "all"})
    assert any(p.startswith("committee.timezone: must be an IANA time zone") for p in problems), problems
    assert any(p.startswith("committee.digest_hour") for p in problems), problems
    assert any(p.startswith("committee.announce") for p in problems), problems
