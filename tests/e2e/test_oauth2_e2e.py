"""End to end over OAuth2: Dovecot with an oauth2 passdb, the aiosmtpd receiver requiring
XOAUTH2/OAUTHBEARER, the tests' authorization server and the real intake and dispatcher. Each
grant; tokens refreshed between and during passes (the server's request counts show it); a revoked
refresh token and a provider that is down are outages that lose and repeat nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select

from conduct_inbox.adapters.oauth2 import forget_sources, shared_source
from conduct_inbox.shell.components import oauth2_config
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, OutboxMessage
from tests.harness import MEMBERS, count, report

pytestmark = pytest.mark.one_database

MAILS_PER_REPORT = 1 + len(MEMBERS)  # the acknowledgement and one copy per member


@pytest.fixture(autouse=True)
def fresh_token_sources():
    forget_sources()
    yield
    forget_sources()


class FakeClock:
    def __init__(self) -> None:
        self.now = 2_000_000.0

    def __call__(self) -> float:
        return self.now


def login_of(mail) -> str:
    login = mail.login
    return login.decode() if isinstance(login, bytes) else str(login)


def health(harness) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "conduct_inbox.cli", "health", "--config", str(harness.config_path)],
                          capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def statuses(app) -> list[str]:
    with app.sessions() as session:
        return sorted(session.scalars(select(OutboxMessage.status)).all())


@pytest.mark.parametrize("grant, smtp_mechanisms", [
    ("generic-refresh", ("XOAUTH2", "OAUTHBEARER")),
    ("generic-cc", ("XOAUTH2",)),
    ("google-jwt", ("OAUTHBEARER",)),
    ("google-refresh", ("XOAUTH2", "OAUTHBEARER")),
])
def test_each_grant_end_to_end(grant, smtp_mechanisms, dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    smtp_receiver_oauth.mechanisms = smtp_mechanisms
    setup = oauth_harness(grant)
    h = setup.harness
    h.deliver(report(subject="OAuth2 report", body="It happened at the sprint."))
    app = h.app()
    assert run_once(app) == 0
    assert count(app, Case) == 1
    smtp_receiver_oauth.wait_for(MAILS_PER_REPORT)
    assert {login_of(mail) for mail in smtp_receiver_oauth.messages} == {h.user}
    attempts = smtp_receiver_oauth.auth_attempts
    assert attempts and all(a.ok for a in attempts)
    assert {a.mechanism for a in attempts} == ({"OAUTHBEARER"} if "OAUTHBEARER" in smtp_mechanisms else {"XOAUTH2"})
    assert h.folder_count("INBOX") == 0 and h.folder_count("Processed") == 1
    assert statuses(app) == ["sent"] * MAILS_PER_REPORT
    # one token for the mailbox and SMTP: the cache is shared
    assert sum(oauth_server.tokens_issued.values()) == 1
    assert oauth_server.tokens_issued[{"generic-refresh": "refresh_token", "generic-cc": "client_credentials",
                                       "google-jwt": "jwt_bearer", "google-refresh": "refresh_token"}[grant]] == 1


def test_tokens_are_refreshed_between_and_during_passes(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    setup = oauth_harness("generic-refresh")
    h = setup.harness
    clock = FakeClock()
    shared_source(oauth2_config(h.settings()), clock=clock)
    h.deliver(report(sender="r1@example.net", body="first"))
    app = h.app()
    assert run_once(app) == 0
    assert oauth_server.token_requests["refresh_token"] == 1

    # Between passes: the token's time runs out (by our clock): the next use fetches a new one.
    clock.now += 3600 - 200
    h.deliver(report(sender="r2@example.net", body="second"))
    assert run_once(app) == 0
    assert oauth_server.token_requests["refresh_token"] == 2

    # During a pass: the provider ends every token early; SMTP refuses the cached one, gets a new
    # one once, and the mail goes out.
    oauth_server.expire_access_tokens()
    h.deliver(report(sender="r3@example.net", body="third"))
    assert run_once(app) == 0
    assert oauth_server.token_requests["refresh_token"] == 3
    assert [a.ok for a in smtp_receiver_oauth.auth_attempts].count(False) == 1

    # A new IMAP connection (another process, a reconnect) with a token the server ended: refused,
    # renewed once, logged in.
    oauth_server.expire_access_tokens()
    h.deliver(report(sender="r4@example.net", body="fourth"))
    second = h.app()
    assert second.intake.poll_once().processed == 1
    assert oauth_server.token_requests["refresh_token"] == 4
    assert count(app, Case) == 4
    smtp_receiver_oauth.wait_for(3 * MAILS_PER_REPORT)
    clock.now += 10  # a fresh token is used as it is
    assert run_once(app) == 0 and oauth_server.token_requests["refresh_token"] == 4
    assert len(smtp_receiver_oauth.messages) == 4 * MAILS_PER_REPORT
    assert h.folder_count("INBOX") == 0 and h.folder_count("Processed") == 4


def test_revoked_refresh_token_is_an_outage_then_everything_goes_through_once(
    dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness
):
    setup = oauth_harness("generic-refresh")
    h = setup.harness
    h.deliver(report(sender="r1@example.net", body="first"))
    app = h.app()
    assert app.intake.poll_once().processed == 1  # recorded, its mail queued, not sent yet
    oauth_server.revoke(setup.refresh_token)  # and, with it, the access tokens it gave
    h.deliver(report(sender="r2@example.net", body="second"))

    restarted = h.app()  # new connections, as after a restart or a dropped connection
    for _ in range(3):  # the daemon retries; nothing changes meanwhile
        assert run_once(restarted) == 1
        assert h.folder_count("INBOX") == 1 and h.folder_count("Processed") == 1
        assert count(app, Case) == 1
        assert statuses(app) == ["pending"] * MAILS_PER_REPORT
        assert smtp_receiver_oauth.messages == []
    code, out = health(h)
    cause = "oauth2: refresh token rejected by the provider (invalid_grant); run `conduct-inbox oauth login`"
    assert code == 1
    assert f"mailbox: last contact failed: {cause}" in out.splitlines()
    assert any(line.startswith("smtp: outage since ") and line.endswith(cause) for line in out.splitlines()), out
    assert "check smtp.username and the password" not in out

    setup.write_refresh_token(oauth_server.issue_refresh_token("ci-app", h.user))  # `oauth login`
    h.clock.advance(seconds=5)  # the outbox's backoff after the outage runs out
    assert run_once(restarted) == 0
    assert count(app, Case) == 2
    smtp_receiver_oauth.wait_for(2 * MAILS_PER_REPORT)
    assert run_once(restarted) == 0
    ids = [mail.message_id for mail in smtp_receiver_oauth.messages] if hasattr(
        smtp_receiver_oauth.messages[0], "message_id") else None
    assert len(smtp_receiver_oauth.messages) == 2 * MAILS_PER_REPORT
    if ids is not None:
        assert len(set(ids)) == len(ids)
    assert statuses(app) == ["sent"] * (2 * MAILS_PER_REPORT)
    assert h.folder_count("INBOX") == 0 and h.folder_count("Processed") == 2
    assert "oauth2" not in health(h)[1]  # (the harness's clock is not today's: health's staleness aside)


def test_provider_down_or_failing_is_an_outage(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    setup = oauth_harness("generic-cc")
    h = setup.harness
    h.deliver(report(body="waits for the provider"))
    app = h.app()
    oauth_server.set_mode("down")
    assert run_once(app) == 1
    code, out = health(h)
    assert code == 1
    assert (f"mailbox: last contact failed: oauth2: token endpoint unreachable "
            f"(connection refused by 127.0.0.1:{oauth_server.port})") in out.splitlines()
    oauth_server.set_mode("error500")
    assert run_once(app) == 1
    assert "mailbox: last contact failed: oauth2: token endpoint failed (server_error)" in health(h)[1].splitlines()
    assert h.folder_count("INBOX") == 1 and count(app, Case) == 0
    oauth_server.set_mode("ok")
    assert run_once(app) == 0
    assert count(app, Case) == 1
    h.clock.advance(seconds=5)  # no outbox backoff was started: nothing was due during the outage
    assert run_once(app) == 0
    smtp_receiver_oauth.wait_for(MAILS_PER_REPORT)
    assert h.folder_count("INBOX") == 0


def test_wrong_user_for_the_token_is_refused_by_the_mailbox(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    """An app allowed some other mailbox: the token is fine, the mailbox refuses it (twice: once
    more with a fresh token), and the error says which step failed."""
    setup = oauth_harness("generic-cc")
    h = setup.harness
    oauth_server.add_client("ci-app", "ci-client-secret-5121", username="someone-else@example.test")
    app = h.app()
    assert run_once(app) == 1
    code, out = health(h)
    assert "mailbox: last contact failed: IMAP login refused: the mailbox refused the OAuth2 token" in out
    assert oauth_server.token_requests["client_credentials"] == 2


def test_smtp_xoauth2_refused_token_is_renewed_once(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    smtp_receiver_oauth.mechanisms = ("XOAUTH2",)  # aiosmtplib's own XOAUTH2
    setup = oauth_harness("generic-cc")
    h = setup.harness
    h.deliver(report(body="queued, then sent with a renewed token"))
    app = h.app()
    assert app.intake.poll_once().processed == 1
    oauth_server.expire_access_tokens()
    assert run_once(app) == 0
    smtp_receiver_oauth.wait_for(MAILS_PER_REPORT)
    assert [(a.mechanism, a.ok) for a in smtp_receiver_oauth.auth_attempts][:2] == [("XOAUTH2", False), ("XOAUTH2", True)]
    assert oauth_server.token_requests["client_credentials"] == 2


def test_smtp_server_without_oauth_mechanisms_is_an_outage(dovecot_oauth, smtp_receiver_oauth, oauth_server, database, oauth_harness):
    smtp_receiver_oauth.mechanisms = ("PLAIN", "LOGIN")  # basic authentication only
    setup = oauth_harness("generic-cc")
    h = setup.harness
    h.deliver(report(body="stays queued"))
    app = h.app()
    assert run_once(app) == 1
    assert statuses(app) == ["pending"] * MAILS_PER_REPORT
    assert "SMTP AUTH impossible: the server offers neither XOAUTH2 nor OAUTHBEARER for OAuth2" in health(h)[1]
