"""OAuth2 in a running `conduct-inbox run` (real process): it renews short-lived tokens on its own,
the IDLE connection reconnects with a fresh token, and a revoked refresh token is an outage that
the status line and `health` name, until `oauth login` + SIGHUP let everything through once.
And no secret or token reaches any command's output."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, func, select

from conduct_inbox.store.models import Case, MailboxState
from tests.daemons import Notifications, Relay, conduct_inbox, finish, hangup, set_mailbox
from tests.harness import MEMBERS, report
from tests.procs import wait_until

pytestmark = pytest.mark.one_database

MAILS_PER_REPORT = 1 + len(MEMBERS)


def cli(harness, *args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "conduct_inbox.cli", *args, "--config", str(harness.config_path)],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def cases(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(Case)).scalar_one()
    finally:
        engine.dispose()


def mailbox_error(database_url: str) -> str | None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(MailboxState.last_error)).scalar()
    finally:
        engine.dispose()


def start(harness, notify: Notifications, started: list, **mailbox: object) -> subprocess.Popen[bytes]:
    set_mailbox(harness, **mailbox)
    proc = conduct_inbox(harness.config_path, "run", notify_socket=notify.path)
    started.append(proc)
    assert notify.wait_for("READY=1", 20), finish(proc, 5)[1]
    return proc


def test_idle_reconnects_with_a_fresh_token_and_short_tokens_are_renewed(
    dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness, notify, started
):
    setup = oauth_harness("generic-cc")
    h = setup.harness
    oauth_server.expires_in = 4  # the daemon must renew by itself
    proc = start(h, notify, started, poll_seconds=3600)  # new mail comes in through IDLE only
    h.deliver(report(sender="r1@example.net", body="first"))
    smtp_receiver_oauth.wait_for(MAILS_PER_REPORT, timeout=20)
    before = oauth_server.token_requests["client_credentials"]

    oauth_server.expire_access_tokens()  # the provider ends the daemon's token early ...
    dovecot_oauth.restart()  # ... and the IDLE connection drops: it must log in again
    assert wait_until(lambda: oauth_server.token_requests["client_credentials"] > before, 20)
    # The IDLE thread, logged in again, asks for a poll at once; the intake replaces its own
    # connection (dead since the restart) with a new login, so mail is taken either way.
    h.deliver(report(sender="r2@example.net", body="second"))
    try:
        smtp_receiver_oauth.wait_for(2 * MAILS_PER_REPORT, timeout=30)
    except AssertionError:
        proc.terminate()
        raise AssertionError(finish(proc)[1]) from None
    assert cases(database.url) == 2
    assert proc.poll() is None
    proc.terminate()
    code, err = finish(proc)
    assert code == 0, err
    assert "IDLE connection lost" in err
    assert "refused the OAuth2 token; trying once more with a new one" in err  # the provider ended it early
    for line in err.splitlines():  # tokens were renewed, never shown
        assert not re.search(r"\bat-[A-Za-z0-9_-]{16,}", line), line


def test_revoked_refresh_token_is_named_until_login_and_reload(
    dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness, notify, started
):
    setup = oauth_harness("generic-refresh")
    h = setup.harness
    proc = start(h, notify, started, poll_seconds=1)
    h.deliver(report(sender="r1@example.net", body="first"))
    smtp_receiver_oauth.wait_for(MAILS_PER_REPORT, timeout=20)

    oauth_server.revoke(setup.refresh_token)  # consent withdrawn: the refresh token and its access tokens
    dovecot_oauth.restart()  # sessions end; every new login needs a token
    h.deliver(report(sender="r2@example.net", body="second"))
    cause = "oauth2: refresh token rejected by the provider (invalid_grant); run `conduct-inbox oauth login`"
    assert notify.wait_for(f"STATUS=mailbox unavailable, retrying: {cause}", 30), notify.received
    assert wait_until(lambda: f"mailbox: last contact failed: {cause}" in cli(h, "health")[1], 20)
    assert cli(h, "health")[0] == 1
    assert h.folder_count("INBOX") == 1 and cases(database.url) == 1
    assert len(smtp_receiver_oauth.messages) == MAILS_PER_REPORT
    assert proc.poll() is None  # the daemon keeps running and retrying

    setup.write_refresh_token(oauth_server.issue_refresh_token("ci-app", h.user))  # `conduct-inbox oauth login`
    hangup(proc, notify)
    smtp_receiver_oauth.wait_for(2 * MAILS_PER_REPORT, timeout=30)
    assert wait_until(lambda: h.folder_count("INBOX") == 0, 10)
    assert wait_until(lambda: cli(h, "health")[0] == 0, 20), cli(h, "health")[1]
    assert cases(database.url) == 2
    assert len(smtp_receiver_oauth.messages) == 2 * MAILS_PER_REPORT  # exactly once
    proc.terminate()
    code, err = finish(proc)
    assert code == 0, err
    assert "a restart is needed" not in err  # a new refresh token applies without one


def test_no_secret_or_token_in_any_output(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    """Unique client secret; refresh and access tokens minted by the server (rt-…, at-…): none of
    them in stdout or stderr of any command, at -v too, on success and on every failure path."""
    secret = "SENTINEL-OAUTH2-CLIENT-SECRET-7731"
    setup = oauth_harness("generic-refresh", client_secret=secret)
    h = setup.harness
    refresh = setup.refresh_token
    outputs: list[str] = []

    def run(*args: str) -> int:
        code, out = cli(h, *args)
        outputs.append(out)
        return code

    h.deliver(report(body="sentinel report"))
    assert run("db", "upgrade") == 0
    assert run("check-config", "-v") == 0
    assert run("oauth", "status", "-v") == 0
    assert run("run", "--once", "-v") == 0
    relay = Relay(smtp_receiver_oauth, dovecot_oauth, h.user)  # the probe's way back into the mailbox
    try:
        assert run("check-config", "--probe", "--probe-timeout", "20", "-v") == 0
    finally:
        relay.close()
    assert "probe: a plus-addressed message came back: reply tokens will arrive" in outputs[-1]
    assert run("health", "-v") in (0, 1)
    oauth_server.expire_access_tokens()  # a refused token, then a new one
    assert run("run", "--once", "-v") == 0
    oauth_server.revoke(refresh)
    assert run("run", "--once", "-v") == 1
    assert run("oauth", "status", "-v") == 1
    assert run("check-config", "-v") == 1
    assert run("health", "-v") == 1
    oauth_server.set_mode("error500")
    assert run("oauth", "status", "-v") == 1
    oauth_server.set_mode("down")
    assert run("check-config", "-v") == 1
    oauth_server.set_mode("ok")
    setup.write_refresh_token(oauth_server.issue_refresh_token("ci-app", h.user))
    (setup.credentials / "oauth2-client-secret").write_text("SENTINEL-WRONG-SECRET-1187\n")
    assert run("check-config", "-v") == 1
    text = "\n".join(outputs)
    assert "oauth2: refresh token rejected by the provider (invalid_grant)" in text
    assert "oauth2: client secret refused (invalid_client)" in text
    assert "oauth2: ok (generic, refresh_token grant" in text
    for needle in (secret, refresh, setup.refresh_token, "SENTINEL-WRONG-SECRET-1187"):
        assert needle not in text
    assert not re.search(r"\b(at|rt|code|dc)-[A-Za-z0-9_-]{20,}", text), re.search(r"\b(at|rt|code|dc)-[A-Za-z0-9_-]{20,}", text)
    assert "Bearer" not in text and "Authorization" not in text
