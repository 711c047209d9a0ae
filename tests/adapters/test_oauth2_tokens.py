"""Token sources against the tests' own OAuth2 server (tests/fixtures/oauth_server.py): each grant
through the library production uses (msal for Microsoft, google-auth for Google, plain RFC 6749 for
generic), the in-memory cache and its refresh margin on an injected clock, invalidation, faults in
words, and `oauth login`'s three interactive flows."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from conduct_inbox.adapters.oauth2 import CLIENT_CREDENTIALS, JWT_BEARER, REFRESH_TOKEN, OAuth2Config, TokenSource
from conduct_inbox.adapters.oauth2_login import login
from conduct_inbox.errors import TokenUnavailable

USER = "conduct@example.test"
SECRET = "client-secret-0042"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tls_env(oauth_server_tls, monkeypatch):
    """msal needs https; requests (under msal and google-auth) trusts the server's CA."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(oauth_server_tls.ca_file))
    return oauth_server_tls


def generic(server, **values) -> OAuth2Config:
    return OAuth2Config("generic", client_id="ci-app", token_url=server.token_url, username=USER, **values)


# ----- each grant -----------------------------------------------------------------------------------


def test_generic_refresh_token_grant_is_cached_until_the_margin(oauth_server) -> None:
    oauth_server.add_client("ci-app", SECRET)
    refresh = oauth_server.issue_refresh_token("ci-app", USER)
    clock = FakeClock()
    source = TokenSource(generic(oauth_server, client_secret=SECRET, refresh_token=refresh), clock=clock)
    assert source.grant == REFRESH_TOKEN
    first = source.token()
    assert oauth_server.introspect(first)["username"] == USER
    assert source.token() == first and oauth_server.token_requests["refresh_token"] == 1
    clock.now += 3600 - 301  # still more than the 5-minute margin left
    assert source.token() == first and oauth_server.token_requests["refresh_token"] == 1
    clock.now += 2
    second = source.token()
    assert second != first and oauth_server.token_requests["refresh_token"] == 2
    source.invalidate(first)  # an old token refused: the current one stays
    assert source.token() == second and oauth_server.token_requests["refresh_token"] == 2
    source.invalidate(second)
    assert source.token() not in (first, second) and oauth_server.token_requests["refresh_token"] == 3


def test_short_lived_tokens_are_not_fetched_on_every_use(oauth_server) -> None:
    oauth_server.add_client("ci-app", SECRET)
    oauth_server.expires_in = 10
    clock = FakeClock()
    source = TokenSource(generic(oauth_server, client_secret=SECRET,
                                 refresh_token=oauth_server.issue_refresh_token("ci-app", USER)), clock=clock)
    token = source.token()
    clock.now += 7
    assert source.token() == token and oauth_server.token_requests["refresh_token"] == 1
    clock.now += 1.5
    assert source.token() != token and oauth_server.token_requests["refresh_token"] == 2


def test_generic_client_credentials_and_public_refresh(oauth_server) -> None:
    oauth_server.add_client("ci-app", SECRET, username=USER)
    source = TokenSource(generic(oauth_server, client_secret=SECRET))
    assert source.grant == CLIENT_CREDENTIALS
    assert oauth_server.introspect(source.token())["username"] == USER
    oauth_server.add_client("public-app")
    refresh = oauth_server.issue_refresh_token("public-app", USER)
    public = TokenSource(OAuth2Config("generic", client_id="public-app", token_url=oauth_server.token_url,
                                      refresh_token=refresh))
    assert oauth_server.introspect(public.token())["active"]


def test_microsoft_client_credentials_through_msal(tls_env) -> None:
    server = tls_env
    server.add_client("ms-app", SECRET, username=USER)
    config = OAuth2Config("microsoft", client_id="ms-app", tenant="contoso-tenant", authority=server.base_url,
                          client_secret=SECRET, username=USER)
    source = TokenSource(config)
    token = source.token()
    info = server.introspect(token)
    assert info["username"] == USER and info["scope"] == "https://outlook.office365.com/.default"
    paths = {record.path for record in server.requests}
    assert "/contoso-tenant/oauth2/v2.0/token" in paths
    assert "/contoso-tenant/v2.0/.well-known/openid-configuration" in paths
    source.invalidate(token)
    assert source.token() != token and server.token_requests["client_credentials"] == 2


def test_microsoft_refresh_token_through_msal_public_and_confidential(tls_env) -> None:
    server = tls_env
    server.add_client("ms-public")
    refresh = server.issue_refresh_token("ms-public", USER)
    source = TokenSource(OAuth2Config("microsoft", client_id="ms-public", tenant="t1", authority=server.base_url,
                                      refresh_token=refresh, username=USER))
    assert server.introspect(source.token())["username"] == USER
    [record] = [r for r in server.requests if r.grant == "refresh_token"]
    assert set(record.scope.split()) >= {"https://outlook.office365.com/IMAP.AccessAsUser.All",
                                         "https://outlook.office365.com/SMTP.Send", "offline_access"}
    server.add_client("ms-conf", SECRET)
    refresh = server.issue_refresh_token("ms-conf", USER)
    conf = TokenSource(OAuth2Config("microsoft", client_id="ms-conf", tenant="t1", authority=server.base_url,
                                    client_secret=SECRET, refresh_token=refresh, username=USER))
    assert server.introspect(conf.token())["active"]


def test_microsoft_faults_in_words(tls_env) -> None:
    server = tls_env
    server.add_client("ms-app", SECRET, username=USER)
    wrong = TokenSource(OAuth2Config("microsoft", client_id="ms-app", tenant="t1", authority=server.base_url,
                                     client_secret="not-the-secret", username=USER))
    with pytest.raises(TokenUnavailable) as info:
        wrong.token()
    assert str(info.value) == "oauth2: client secret refused (invalid_client)"
    server.add_client("ms-public")
    refresh = server.issue_refresh_token("ms-public", USER)
    server.revoke(refresh)
    revoked = TokenSource(OAuth2Config("microsoft", client_id="ms-public", tenant="t1", authority=server.base_url,
                                       refresh_token=refresh, username=USER))
    with pytest.raises(TokenUnavailable) as info:
        revoked.token()
    assert str(info.value) == ("oauth2: refresh token rejected by the provider (invalid_grant); "
                               "run `conduct-inbox oauth login`")
    server.set_mode("error500")
    server.retry_after = 0
    with pytest.raises(TokenUnavailable, match=r"^oauth2: token endpoint failed \(HTTP 500\)$"):
        revoked.token()
    server.set_mode("down")
    with pytest.raises(TokenUnavailable) as info:
        revoked.token()
    assert str(info.value) == f"oauth2: token endpoint unreachable (connection refused by 127.0.0.1:{server.port})"


def test_google_service_account_impersonates_the_mailbox_user(oauth_server, tmp_path: Path) -> None:
    import json

    key = oauth_server.add_service_account(allowed_subjects=[USER])
    source = TokenSource(OAuth2Config("google", service_account=json.dumps(key), username=USER))
    assert source.grant == JWT_BEARER
    info = oauth_server.introspect(source.token())
    assert info["username"] == USER and info["scope"] == "https://mail.google.com/"
    other = TokenSource(OAuth2Config("google", service_account=json.dumps(key), username="someone@example.test"))
    with pytest.raises(TokenUnavailable, match=r"^oauth2: this client may not use the jwt_bearer grant \(unauthorized_client\)$"):
        other.token()


def test_google_refresh_token_through_google_auth(oauth_server) -> None:
    oauth_server.add_client("g-app", SECRET)
    refresh = oauth_server.issue_refresh_token("g-app", USER)
    source = TokenSource(OAuth2Config("google", client_id="g-app", client_secret=SECRET, refresh_token=refresh,
                                      token_url=oauth_server.token_url, username=USER))
    assert oauth_server.introspect(source.token())["username"] == USER
    oauth_server.reject_refresh_token(refresh)
    source.invalidate()
    with pytest.raises(TokenUnavailable, match="refresh token rejected by the provider \\(invalid_grant\\)"):
        source.token()


def test_generic_faults_in_words(oauth_server) -> None:
    oauth_server.add_client("ci-app", SECRET)
    refresh = oauth_server.issue_refresh_token("ci-app", USER)
    source = TokenSource(generic(oauth_server, client_secret="wrong", refresh_token=refresh))
    with pytest.raises(TokenUnavailable, match=r"^oauth2: client secret refused \(invalid_client\)$"):
        source.token()
    source = TokenSource(generic(oauth_server, client_secret=SECRET, refresh_token=refresh))
    oauth_server.set_mode("error500")
    with pytest.raises(TokenUnavailable, match=r"^oauth2: token endpoint failed \(server_error\)$"):
        source.token()
    oauth_server.set_mode("down")
    with pytest.raises(TokenUnavailable, match=r"^oauth2: token endpoint unreachable \(connection refused by 127\.0\.0\.1:\d+\)$"):
        source.token()
    oauth_server.set_mode("ok")
    assert source.token()


def test_concurrent_callers_share_one_request(oauth_server) -> None:
    oauth_server.add_client("ci-app", SECRET, username=USER)
    source = TokenSource(generic(oauth_server, client_secret=SECRET))
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(source.token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(tokens)) == 1 and oauth_server.token_requests["client_credentials"] == 1


# ----- oauth login -------------------------------------------------------------------------------


def _approve_when_asked(server, username: str) -> threading.Thread:
    def approve() -> None:
        flow = server.wait_for_device_flow(timeout=20)
        server.approve_device(flow.user_code, username)

    thread = threading.Thread(target=approve)
    thread.start()
    return thread


def test_login_microsoft_device_code(tls_env) -> None:
    server = tls_env
    server.add_client("ms-public")
    lines: list[str] = []
    approver = _approve_when_asked(server, USER)
    refresh = login(OAuth2Config("microsoft", client_id="ms-public", tenant="t1", authority=server.base_url,
                                 username=USER), lines.append, timeout=30)
    approver.join()
    assert re.search(r"open https://127\.0\.0\.1:\d+/devicelogin and enter the code [A-Z0-9]{4}-[A-Z0-9]{4}", lines[0])
    assert refresh not in " ".join(lines)
    again = TokenSource(OAuth2Config("microsoft", client_id="ms-public", tenant="t1", authority=server.base_url,
                                     refresh_token=refresh, username=USER))
    assert server.introspect(again.token())["username"] == USER


def test_login_generic_device_code(oauth_server) -> None:
    oauth_server.add_client("ci-app", SECRET)
    approver = _approve_when_asked(oauth_server, USER)
    lines: list[str] = []
    refresh = login(generic(oauth_server, client_secret=SECRET,
                            device_authorization_url=oauth_server.device_authorization_url), lines.append, timeout=30)
    approver.join()
    assert refresh.startswith("rt-") and refresh not in " ".join(lines)


def test_login_google_loopback_redirect(oauth_server) -> None:
    oauth_server.add_client("g-app", SECRET)
    lines: list[str] = []
    config = OAuth2Config("google", client_id="g-app", client_secret=SECRET, token_url=oauth_server.token_url,
                          authorization_url=oauth_server.authorization_url, username=USER)
    visit: dict[str, object] = {}

    def user() -> None:  # opens the printed URL and consents
        while not any(line.startswith(oauth_server.authorization_url) for line in lines):
            threading.Event().wait(0.01)
        url = next(line for line in lines if line.startswith(oauth_server.authorization_url))
        visit["result"] = oauth_server.visit(url, USER)

    browser = threading.Thread(target=user)
    browser.start()
    refresh = login(config, lines.append, timeout=30)
    browser.join()
    assert visit["result"].status == 200  # type: ignore[attr-defined]
    assert refresh not in " ".join(lines) and "code=" not in " ".join(lines)
    source = TokenSource(OAuth2Config("google", client_id="g-app", client_secret=SECRET, refresh_token=refresh,
                                      token_url=oauth_server.token_url, username=USER))
    assert oauth_server.introspect(source.token())["scope"] == "https://mail.google.com/"


def test_login_generic_without_endpoints_explains() -> None:
    with pytest.raises(TokenUnavailable, match="device_authorization_url"):
        login(OAuth2Config("generic", client_id="a", token_url="https://x/t"), print)


def test_provider_error_descriptions_and_odd_codes_never_reach_the_message(oauth_server) -> None:
    oauth_server.add_client("ci-app", SECRET)
    refresh = oauth_server.issue_refresh_token("ci-app", USER)
    oauth_server.reject_refresh_token(refresh, error="invalid_grant", description=f"SENTINEL-DESC {USER} {refresh}")
    source = TokenSource(generic(oauth_server, client_secret=SECRET, refresh_token=refresh))
    with pytest.raises(TokenUnavailable) as info:
        source.token()
    assert "SENTINEL" not in str(info.value) and USER not in str(info.value) and refresh not in str(info.value)
    other = oauth_server.issue_refresh_token("ci-app", USER)
    oauth_server.reject_refresh_token(other, error="<b>Contact evil@example.net</b>")
    odd = TokenSource(generic(oauth_server, client_secret=SECRET, refresh_token=other))
    with pytest.raises(TokenUnavailable, match=r"^oauth2: token request failed \(unexpected error\)$"):
        odd.token()


def test_a_service_account_may_not_send_its_assertion_over_plain_http_elsewhere(oauth_server) -> None:
    import json

    key = dict(oauth_server.add_service_account(allowed_subjects=[USER]), token_uri="http://idp.example.net/token")
    source = TokenSource(OAuth2Config("google", service_account=json.dumps(key), username=USER))
    with pytest.raises(TokenUnavailable, match="token_uri must be an https:// URL"):
        source.token()
    assert oauth_server.token_requests == {}
