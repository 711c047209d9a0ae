"""Microsoft 365's code path end to end: msal against the tests' authorization server over https
(Microsoft-shaped authority, openid-configuration, tenant paths), Dovecot and SMTP over OAuth2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conduct_inbox.adapters.oauth2 import forget_sources
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case
from tests.harness import MEMBERS, count, report

pytestmark = pytest.mark.one_database


@pytest.fixture
def oauth_server(oauth_server_tls, monkeypatch):
    """msal accepts only https authorities: the https server, trusted by requests."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(oauth_server_tls.ca_file))
    forget_sources()
    yield oauth_server_tls
    forget_sources()


@pytest.mark.parametrize("grant, requested", [("microsoft-cc", "client_credentials"), ("microsoft-refresh", "refresh_token")])
def test_microsoft_end_to_end(grant, requested, dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    smtp_receiver_oauth.mechanisms = ("XOAUTH2",)  # what Exchange Online offers
    setup = oauth_harness(grant, tenant="contoso")
    h = setup.harness
    h.deliver(report(body="a report to a Microsoft 365 mailbox"))
    app = h.app()
    assert run_once(app) == 0
    assert count(app, Case) == 1
    smtp_receiver_oauth.wait_for(1 + len(MEMBERS))
    assert {a.mechanism for a in smtp_receiver_oauth.auth_attempts} == {"XOAUTH2"}
    assert oauth_server.tokens_issued[requested] == 1
    token_paths = {r.path for r in oauth_server.requests if r.grant}
    assert token_paths == {"/contoso/oauth2/v2.0/token"}
    [scope] = {r.scope for r in oauth_server.requests if r.grant}
    if grant == "microsoft-cc":
        assert scope == "https://outlook.office365.com/.default"
    else:
        assert set(scope.split()) >= {"https://outlook.office365.com/IMAP.AccessAsUser.All",
                                      "https://outlook.office365.com/SMTP.Send", "offline_access"}

    done = subprocess.run([sys.executable, "-m", "conduct_inbox.cli", "check-config", "--config", str(h.config_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"oauth2: ok (microsoft, {requested} grant, valid 3600 s)" in done.stdout.splitlines()


def test_microsoft_wrong_secret_and_unknown_tenant_in_check_config(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    setup = oauth_harness("microsoft-cc", client_secret="the-right-one")
    h = setup.harness
    (setup.credentials / "oauth2-client-secret").write_text("an-old-one\n")
    done = subprocess.run([sys.executable, "-m", "conduct_inbox.cli", "check-config", "--config", str(h.config_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert "oauth2: client secret refused (invalid_client)" in lines
    assert "mailbox: not tried (no OAuth2 token, see above)" in lines
    assert "smtp: not tried (no OAuth2 token, see above)" in lines
    assert "an-old-one" not in done.stdout + done.stderr and "the-right-one" not in done.stdout + done.stderr
