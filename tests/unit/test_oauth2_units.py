"""OAuth2 pieces that need no authorization server: configuration, the refresh margin, SASL
encodings, the credential file, error texts, reload. The token flows against a server are in
tests/adapters/test_oauth2*.py and tests/e2e/test_oauth2*.py with the local authorization server fixture."""

from __future__ import annotations

import base64
import logging
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from conduct_inbox.adapters.imap import _SaslBearer
from conduct_inbox.adapters.oauth2 import (
    CLIENT_CREDENTIALS,
    JWT_BEARER,
    REFRESH_TOKEN,
    AccessToken,
    OAuth2Config,
    TokenSource,
    _refused,
    default_scopes,
)
from conduct_inbox.adapters.oauth2_login import write_secret_file
from conduct_inbox.config import load_settings
from conduct_inbox.errors import ConfigError, TokenUnavailable
from conduct_inbox.shell.components import oauth2_config
from tests.configs import MINIMAL, problems_of, write

SECRET = "SENTINEL-CLIENT-SECRET-4417"
REFRESH = "SENTINEL-REFRESH-TOKEN-9035"

OAUTH_MINIMAL = MINIMAL.replace('password = "imap-pass"', 'auth = "oauth2"').replace(
    '[smtp]\nhost = "localhost"', '[smtp]\nhost = "localhost"\nusername = "conduct"\nauth = "oauth2"'
)


def oauth(text: str) -> str:
    return OAUTH_MINIMAL + "\n[oauth2]\n" + text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----- configuration -----------------------------------------------------------------------------


def test_oauth2_needs_no_password_and_takes_credentials_by_conventional_name(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "oauth2-client-secret").write_text(SECRET + "\n")
    (creds / "oauth2-refresh-token").write_text(REFRESH + "\n")
    settings = load_settings(write(tmp_path, oauth('provider = "microsoft"\ntenant = "t1"\nclient_id = "app"\n')), {})
    assert settings.mailbox.auth == "oauth2" and settings.smtp.auth == "oauth2"
    assert settings.oauth2.client_secret.get_secret_value() == SECRET
    assert settings.oauth2.refresh_token.get_secret_value() == REFRESH
    config = oauth2_config(settings)
    assert config.grant == REFRESH_TOKEN
    assert config.refresh_token_file == str(creds / "oauth2-refresh-token")
    assert config.username == "conduct"
    assert SECRET not in repr(config) and REFRESH not in repr(config) and SECRET not in repr(settings)


def test_relative_secret_files_from_credentials_directory(tmp_path: Path) -> None:
    systemd = tmp_path / "run-creds"
    systemd.mkdir()
    (systemd / "rt").write_text(REFRESH)
    settings = load_settings(
        write(tmp_path, oauth('provider = "generic"\nclient_id = "app"\ntoken_url = "https://idp.example/token"\n'
                              'refresh_token_file = "rt"\n')),
        {"CREDENTIALS_DIRECTORY": str(systemd)},
    )
    assert settings.oauth2.refresh_token.get_secret_value() == REFRESH
    assert settings.oauth2.refresh_token_file == str(systemd / "rt")


@pytest.mark.parametrize(
    "table, expected",
    [
        ('provider = "microsoft"\nclient_id = "app"\nclient_secret = "x"\n',
         ['oauth2.tenant: required for provider "microsoft" (the directory (tenant) id of the app registration)']),
        ('provider = "microsoft"\ntenant = "t"\nclient_secret = "x"\n',
         ['oauth2.client_id: required when mailbox.auth or smtp.auth is "oauth2" (the application (client) id)']),
        ('provider = "generic"\nclient_id = "app"\nclient_secret = "x"\n',
         ['oauth2.token_url: required for provider "generic" (the token endpoint)']),
        ('provider = "generic"\nclient_id = "app"\ntoken_url = "http://idp.example/token"\nclient_secret = "x"\n',
         ["oauth2.token_url: must be an https:// URL (http:// only for a loopback host: 127.x, ::1, localhost)"]),
        ('provider = "generic"\nclient_id = "app"\ntoken_url = "https://idp.example/token"\n',
         ["oauth2.client_secret: required for app-only access (client_credentials) without a refresh token "
          "(set client_secret_file, or run `conduct-inbox oauth login`)"]),
        ('provider = "google"\nclient_id = "app"\n',
         ['oauth2: provider "google" needs service_account_file (domain-wide delegation) or a refresh token '
          "(`conduct-inbox oauth login`)"]),
        ('provider = "google"\nservice_account = "{not json"\n',
         ["oauth2.service_account: the service account file is not JSON (download the key as JSON)"]),
        ('provider = "azure"\n', ["oauth2.provider: must be one of 'microsoft', 'google' or 'generic'"]),
    ],
)
def test_oauth2_problems_are_one_line_each(tmp_path: Path, table: str, expected: list[str]) -> None:
    assert problems_of(write(tmp_path, oauth(table))) == expected


def test_loopback_token_url_may_be_http_and_password_login_ignores_oauth2(tmp_path: Path) -> None:
    load_settings(write(tmp_path, oauth('provider = "generic"\nclient_id = "a"\ntoken_url = "http://127.0.0.1:9/t"\n'
                                        'client_secret = "s"\n')), {})
    # [oauth2] half-filled is no problem while nothing logs in with it
    settings = load_settings(write(tmp_path, MINIMAL + '\n[oauth2]\nprovider = "generic"\n'), {})
    assert not settings.uses_oauth2()


def test_smtp_oauth2_needs_a_username(tmp_path: Path) -> None:
    text = oauth('provider = "generic"\nclient_id = "a"\ntoken_url = "https://i.example/t"\nclient_secret = "s"\n')
    text = text.replace('[smtp]\nhost = "localhost"\nusername = "conduct"\n', '[smtp]\nhost = "localhost"\n')
    assert problems_of(write(tmp_path, text)) == ['smtp.auth: "oauth2" needs smtp.username (the account the token is for)']


def test_bad_oauth2_config_never_shows_a_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, oauth(f'provider = "generic"\nclient_secret = "{SECRET}"\n'
                                            f'refresh_token = "{REFRESH}"\ntoken_url = "ftp://x"\n')), {})
    text = str(info.value)
    assert SECRET not in text and REFRESH not in text


def test_default_scopes() -> None:
    assert default_scopes("microsoft", REFRESH_TOKEN) == (
        "https://outlook.office365.com/IMAP.AccessAsUser.All", "https://outlook.office365.com/SMTP.Send", "offline_access")
    assert default_scopes("microsoft", CLIENT_CREDENTIALS) == ("https://outlook.office365.com/.default",)
    assert default_scopes("google", JWT_BEARER) == ("https://mail.google.com/",)
    assert default_scopes("generic", CLIENT_CREDENTIALS) == ()


# ----- token lifetime ----------------------------------------------------------------------------


def test_refresh_margin_is_clamped_to_a_fraction_of_the_lifetime() -> None:
    hour = AccessToken("t", expires_at=3600.0, obtained_at=0.0)
    assert hour.fresh(3299.0) and not hour.fresh(3300.0)  # 5 minutes before the end
    short = AccessToken("t", expires_at=10.0, obtained_at=0.0)
    assert short.fresh(7.9) and not short.fresh(8.0)  # a fifth of 10 s, not 5 minutes: not refreshed on every use
    assert "secret-value" not in repr(AccessToken("secret-value", 1.0, 0.0))


# ----- failures in words -------------------------------------------------------------------------


def test_unreachable_token_endpoint_is_named_without_the_url_path() -> None:
    port = free_port()
    source = TokenSource(OAuth2Config("generic", client_id="a", client_secret=SECRET,
                                      token_url=f"http://127.0.0.1:{port}/tenant-secret-path/token"))
    with pytest.raises(TokenUnavailable) as info:
        source.token()
    assert str(info.value) == f"oauth2: token endpoint unreachable (connection refused by 127.0.0.1:{port})"
    assert source.requests == 1 and source.last_error is info.value


def test_unresolvable_token_host() -> None:
    source = TokenSource(OAuth2Config("generic", client_id="a", client_secret=SECRET, token_url="https://no-such-host.invalid/t"))
    with pytest.raises(TokenUnavailable, match=r"^oauth2: token endpoint unreachable \(cannot resolve no-such-host.invalid\)$"):
        source.token()


def test_provider_errors_in_words() -> None:
    assert str(_refused("invalid_grant", REFRESH_TOKEN, "generic")) == (
        "oauth2: refresh token rejected by the provider (invalid_grant); run `conduct-inbox oauth login`")
    assert str(_refused("invalid_client", CLIENT_CREDENTIALS, "microsoft")) == "oauth2: client secret refused (invalid_client)"
    assert _refused("invalid_grant", REFRESH_TOKEN, "generic").needs_login
    assert not _refused("temporarily_unavailable", REFRESH_TOKEN, "generic").needs_login


def test_no_refresh_token_in_the_file_says_what_to_do(tmp_path: Path) -> None:
    empty = tmp_path / "rt"
    empty.write_text("")
    source = TokenSource(OAuth2Config("generic", client_id="a", token_url="https://idp.example/t",
                                      refresh_token_file=str(empty)))
    with pytest.raises(TokenUnavailable, match="no refresh token; run `conduct-inbox oauth login`"):
        source.token()


def test_repr_hides_secrets() -> None:
    config = OAuth2Config("generic", client_id="a", client_secret=SECRET, refresh_token=REFRESH, token_url="https://x/t")
    assert SECRET not in repr(config) and REFRESH not in repr(config)
    assert SECRET not in repr(TokenSource(config)) and REFRESH not in repr(TokenSource(config))


# ----- SASL --------------------------------------------------------------------------------------


def test_sasl_answers_the_error_challenge_with_an_empty_line() -> None:
    xoauth2 = _SaslBearer("XOAUTH2", "conduct@example.org", "TOKEN1")
    assert xoauth2(b"") == b"user=conduct@example.org\x01auth=Bearer TOKEN1\x01\x01"
    assert xoauth2(base64.b64decode(base64.b64encode(b'{"status":"401"}'))) == b""
    bearer = _SaslBearer("OAUTHBEARER", "a,b=c@example.org", "TOKEN2")
    assert bearer(b"") == b"n,a=a=2Cb=3Dc@example.org,\x01auth=Bearer TOKEN2\x01\x01"
    assert bearer(b'{"status":"invalid_token"}') == b"\x01"
    assert "TOKEN" not in repr(bearer)


# ----- the credential file -----------------------------------------------------------------------


def test_refresh_token_file_is_written_atomically_with_mode_0600(tmp_path: Path) -> None:
    target = tmp_path / "credentials" / "oauth2-refresh-token"
    old_umask = os.umask(0)  # the most permissive umask: the file must still never be readable by others
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # every file that appears in the folder, at any moment, is 0600
        while not stop.is_set():
            try:
                for entry in os.scandir(target.parent):
                    seen.append(stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode))
            except FileNotFoundError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for n in range(50):
            write_secret_file(target, f"{REFRESH}-{n}")
    finally:
        stop.set()
        watcher.join()
        os.umask(old_umask)
    assert target.read_text() == f"{REFRESH}-49\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert seen and set(seen) == {0o600}
    assert [p.name for p in target.parent.iterdir()] == ["oauth2-refresh-token"]


def test_refresh_token_file_change_is_picked_up_at_the_next_refresh(tmp_path: Path) -> None:
    token_file = tmp_path / "rt"
    token_file.write_text("first\n")
    source = TokenSource(OAuth2Config("generic", client_id="a", token_url="https://x/t", refresh_token="first",
                                      refresh_token_file=str(token_file)))
    assert source._current_refresh_token() == "first"
    source._refresh = "rotated-by-provider"  # a provider handed out a new one: it is kept ...
    assert source._current_refresh_token() == "rotated-by-provider"
    token_file.write_text("from-oauth-login\n")  # ... until `oauth login` writes a new one
    assert source._current_refresh_token() == "from-oauth-login"


# ----- logs --------------------------------------------------------------------------------------


def test_http_and_oauth_libraries_log_nothing_even_verbose() -> None:
    from conduct_inbox.shell import logsetup

    logsetup.configure(verbose=True)
    for name in ("msal", "urllib3.connectionpool", "requests", "google.auth.transport.requests", "google.oauth2"):
        assert not logging.getLogger(name).isEnabledFor(logging.CRITICAL), name


# ----- reload ------------------------------------------------------------------------------------


def test_reload_takes_a_new_refresh_token_and_names_identity_changes_only(tmp_path: Path) -> None:
    from conduct_inbox.shell.reload import merge

    base = 'provider = "generic"\nclient_id = "a"\ntoken_url = "https://idp.example/t"\n'
    old = load_settings(write(tmp_path, oauth(base + 'refresh_token = "one"\n')), {})
    new = load_settings(write(tmp_path, oauth(base + 'refresh_token = "two"\n'), name="new.toml"), {})
    merged = merge(old, new)
    assert merged.settings.oauth2.refresh_token.get_secret_value() == "two"
    assert merged.needs_restart == []
    moved = load_settings(write(tmp_path, oauth(base.replace('"a"', '"b"') + 'refresh_token = "two"\n'), name="m.toml"), {})
    assert merge(old, moved).needs_restart == ["oauth2.client_id"]


def test_a_reloaded_refresh_token_replaces_the_shared_sources(tmp_path: Path) -> None:
    from conduct_inbox.adapters.oauth2 import forget_sources
    from conduct_inbox.shell.components import make_token_source

    forget_sources()
    base = 'provider = "generic"\nclient_id = "a"\ntoken_url = "https://idp.example/t"\n'
    first = make_token_source(load_settings(write(tmp_path, oauth(base + 'refresh_token = "one"\n')), {}))
    again = make_token_source(load_settings(write(tmp_path, oauth(base + 'refresh_token = "two"\n')), {}))
    assert first is again and first is not None
    assert first._current_refresh_token() == "two"
    forget_sources()
