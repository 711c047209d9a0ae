"""`conduct-inbox oauth login` and `oauth status` as an admin runs them (real processes, the tests'
authorization server): the refresh token lands in the credential file with mode 0600 and is never
printed; status names the grant and the expiry, never a secret."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import threading
import time

import pytest

from tests.oauth_harness import CLIENT_SECRET

pytestmark = pytest.mark.one_database


def spawn(harness, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "CREDENTIALS_DIRECTORY"))}
    environ.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "conduct_inbox.cli", *args, "--config", str(harness.config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)


def test_login_with_device_code_writes_the_token_0600_and_status_uses_it(
    dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness
):
    setup = oauth_harness("generic-cc")
    h = setup.harness
    text = h.config_path.read_text()
    h.config_path.write_text(text + f'device_authorization_url = "{oauth_server.device_authorization_url}"\n'
                                    'refresh_token_file = "oauth2-refresh-token"\n')
    target = setup.credentials / "oauth2-refresh-token"
    assert not target.exists()

    def approve() -> None:
        flow = oauth_server.wait_for_device_flow(timeout=30)
        oauth_server.approve_device(flow.user_code, h.user)

    approver = threading.Thread(target=approve)
    approver.start()
    proc = spawn(h, "oauth", "login", "-v")
    out, err = proc.communicate(timeout=60)
    approver.join()
    assert proc.returncode == 0, err
    assert re.search(r"open http://127\.0\.0\.1:\d+/devicelogin and enter the code \w{4}-\w{4}", out)
    assert f"refresh token written to {target} (mode 0600)" in out
    token = target.read_text().strip()
    assert token.startswith("rt-") and token not in out + err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert oauth_server.introspect(token)["active"] is False  # a refresh token, not an access token

    status = spawn(h, "oauth", "status", "-v")
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    assert f"grant: refresh_token (refresh token from {target})" in out
    assert "provider: generic; used for: IMAP, SMTP" in out
    expiry = re.search(r"refresh: works; a token obtained now expires at (\S+ \S+) UTC \(after 3600 s", out)
    assert expiry, out
    for needle in (token, CLIENT_SECRET):
        assert needle not in out + err
    assert not re.search(r"\bat-[A-Za-z0-9_-]{20,}", out + err)


def test_login_with_loopback_redirect(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    setup = oauth_harness("generic-cc")
    h = setup.harness
    h.config_path.write_text(h.config_path.read_text() + f'authorization_url = "{oauth_server.authorization_url}"\n')
    proc = spawn(h, "oauth", "login", "--timeout", "30")
    assert proc.stdout is not None
    url = ""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not url:
        line = proc.stdout.readline()
        if line.startswith(oauth_server.authorization_url):
            url = line.strip()
    assert url, "no authorization URL printed"
    visit = oauth_server.visit(url, h.user)  # the admin opens it and consents
    assert visit.status == 200 and b"sign-in received" in visit.body
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    token = (setup.credentials / "oauth2-refresh-token").read_text().strip()
    assert token not in rest + err + url
    assert "code=" not in rest + err


def test_status_says_why_no_token_can_be_had(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    setup = oauth_harness("generic-refresh")
    h = setup.harness
    oauth_server.revoke(setup.refresh_token)
    proc = spawn(h, "oauth", "status")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert ("refresh: fails: oauth2: refresh token rejected by the provider (invalid_grant); "
            "run `conduct-inbox oauth login`") in out.splitlines()
    assert setup.refresh_token not in out + err


def test_oauth_commands_without_oauth2_configured(harness):
    proc = spawn(harness, "oauth", "status")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert 'config: oauth2: neither mailbox.auth nor smtp.auth is "oauth2" (with a host set)' in err
