"""A Harness whose mailbox and SMTP log in with OAuth2 tokens from the tests' authorization server
(Dovecot with an oauth2 passdb, the aiosmtpd receiver requiring XOAUTH2/OAUTHBEARER)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.harness import Harness

CLIENT_SECRET = "ci-client-secret-5121"


@dataclass
class OAuthSetup:
    harness: Harness
    grant: str
    refresh_token: str = ""

    @property
    def credentials(self) -> Path:
        return self.harness.folder / "credentials"

    def write_refresh_token(self, value: str) -> None:
        """What `oauth login` leaves behind: the new refresh token in the credential file."""
        path = self.credentials / "oauth2-refresh-token"
        path.write_text(value + "\n")
        path.chmod(0o600)
        self.refresh_token = value


def with_oauth(harness: Harness, server, grant: str, *, client_secret: str = CLIENT_SECRET,
               tenant: str = "ci-tenant") -> OAuthSetup:
    """`harness` (on the OAuth Dovecot and receiver) logging in with `grant`: "generic-refresh",
    "generic-cc", "google-jwt", "google-refresh", "microsoft-cc" or "microsoft-refresh"
    (microsoft ones need the https server and REQUESTS_CA_BUNDLE). The `oauth_harness` fixture
    (tests/e2e/conftest.py) builds one."""
    dovecot, user = harness.dovecot, harness.user
    path = harness.config_path
    text = path.read_text()
    text = text.replace(f'password = "{dovecot.password}"', 'auth = "oauth2"', 1)
    text = text.replace("[smtp]\n", f'[smtp]\nusername = "{user}"\nauth = "oauth2"\n', 1)
    setup = OAuthSetup(harness, grant)
    credentials = harness.folder / "credentials"
    credentials.mkdir(mode=0o700, exist_ok=True)

    def secret_file(name: str, value: str) -> None:
        (credentials / name).write_text(value + "\n")
        (credentials / name).chmod(0o600)

    if grant == "generic-refresh":
        server.add_client("ci-app", client_secret)
        secret_file("oauth2-client-secret", client_secret)
        setup.write_refresh_token(server.issue_refresh_token("ci-app", user))
        table = f'provider = "generic"\nclient_id = "ci-app"\ntoken_url = "{server.token_url}"\n'
    elif grant == "generic-cc":
        server.add_client("ci-app", client_secret, username=user)
        secret_file("oauth2-client-secret", client_secret)
        table = f'provider = "generic"\nclient_id = "ci-app"\ntoken_url = "{server.token_url}"\n'
    elif grant == "google-jwt":
        key = server.add_service_account(allowed_subjects=[user])
        secret_file("oauth2-service-account", json.dumps(key))
        table = 'provider = "google"\n'
    elif grant == "google-refresh":
        server.add_client("g-app", client_secret)
        secret_file("oauth2-client-secret", client_secret)
        setup.write_refresh_token(server.issue_refresh_token("g-app", user))
        table = f'provider = "google"\nclient_id = "g-app"\ntoken_url = "{server.token_url}"\n'
    elif grant == "microsoft-cc":
        server.add_client("ms-app", client_secret, username=user)
        secret_file("oauth2-client-secret", client_secret)
        table = f'provider = "microsoft"\ntenant = "{tenant}"\nclient_id = "ms-app"\nauthority = "{server.base_url}"\n'
    elif grant == "microsoft-refresh":
        server.add_client("ms-public")
        setup.write_refresh_token(server.issue_refresh_token("ms-public", user))
        table = f'provider = "microsoft"\ntenant = "{tenant}"\nclient_id = "ms-public"\nauthority = "{server.base_url}"\n'
    else:
        raise ValueError(grant)
    path.write_text(text + "\n[oauth2]\n" + table)
    return setup
