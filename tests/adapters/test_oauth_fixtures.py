"""The OAuth2 fixtures themselves: the tests' authorization server, Dovecot and the SMTP receiver
that take its tokens, and the provider libraries (msal, google-auth) pointed at it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import secrets
import threading
import time
import urllib.parse

import aiosmtplib
import msal
import pytest
import requests
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from google.oauth2 import credentials as google_credentials
from google.oauth2 import service_account
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.fixtures.dovecot_oauth import OAuthDovecotServer
from tests.fixtures.oauth_server import OAuthServer
from tests.fixtures.smtp_receiver_oauth import OAuthSmtpReceiver

USER = "conduct@example.test"
OUTLOOK_IMAP = "https://outlook.office365.com/IMAP.AccessAsUser.All"
MESSAGE = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


def post(url: str, **data: str) -> requests.Response:
    return requests.post(url, data=data, timeout=10)


@pytest.fixture(params=["http", "https"])
def any_oauth_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> OAuthServer:
    server: OAuthServer = request.getfixturevalue("oauth_server_tls" if request.param == "https" else "oauth_server")
    if server.ca_file is not None:
        # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override a Session's `verify`.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_file))
    return server


# -- the server over plain HTTP ----------------------------------------------------------------


def test_client_credentials_token_introspects_as_the_clients_user(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("app", "secret", username=USER)
    r = post(oauth_server.token_url, grant_type="client_credentials", client_id="app", client_secret="secret",
             scope="https://outlook.office365.com/.default")
    assert r.status_code == 200
    answer = r.json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 3600 and "refresh_token" not in answer
    info = post(oauth_server.introspection_url, token=answer["access_token"]).json()
    assert info["active"] is True and info["username"] == USER
    assert info["scope"] == "https://outlook.office365.com/.default"
    assert oauth_server.token_requests == {"client_credentials": 1}
    assert oauth_server.introspections == 1


def test_client_errors_are_rfc6749_json(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("app", "secret", username=USER)
    oauth_server.add_client("public")
    wrong = post(oauth_server.token_url, grant_type="client_credentials", client_id="app", client_secret="nope")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert post(oauth_server.token_url, grant_type="client_credentials", client_id="public").json()["error"] \
        == "unauthorized_client"
    assert post(oauth_server.token_url, grant_type="password", client_id="app").json()["error"] \
        == "unsupported_grant_type"
    bogus = post(oauth_server.token_url, grant_type="refresh_token", client_id="app", client_secret="secret",
                 refresh_token="rt-unknown")
    assert bogus.status_code == 400 and bogus.json()["error"] == "invalid_grant"
    assert [r.status for r in oauth_server.requests] == [401, 400, 400, 400]
    assert "nope" not in repr(oauth_server.requests)


def test_refresh_token_grant_and_access_token_lifetime(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("app", "secret")
    rt = oauth_server.issue_refresh_token("app", USER, scope=OUTLOOK_IMAP)
    oauth_server.expires_in = 1
    answer = post(oauth_server.token_url, grant_type="refresh_token", client_id="app", client_secret="secret",
                  refresh_token=rt).json()
    assert answer["expires_in"] == 1 and answer["scope"] == OUTLOOK_IMAP and answer["refresh_token"] == rt
    assert oauth_server.introspect(answer["access_token"])["username"] == USER
    time.sleep(1.1)
    assert oauth_server.introspect(answer["access_token"]) == {"active": False}
    assert oauth_server.introspect(rt) == {"active": False}  # a refresh token opens no mailbox
    assert oauth_server.tokens_issued == {"refresh_token": 1}


def test_refresh_token_lifetime_and_rotation(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("app", "secret")
    oauth_server.refresh_expires_in = 60
    oauth_server.rotate_refresh_tokens = True
    rt = oauth_server.issue_refresh_token("app", USER)
    new = post(oauth_server.token_url, grant_type="refresh_token", client_id="app", client_secret="secret",
               refresh_token=rt).json()["refresh_token"]
    assert new != rt
    oauth_server.expire(rt)
    assert post(oauth_server.token_url, grant_type="refresh_token", client_id="app", client_secret="secret",
                refresh_token=rt).json()["error"] == "invalid_grant"
    assert "access_token" in post(oauth_server.token_url, grant_type="refresh_token", client_id="app",
                                  client_secret="secret", refresh_token=new).json()


def test_revocation_endpoint_ends_the_refresh_token_and_its_access_tokens(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("app", "secret")
    rt = oauth_server.issue_refresh_token("app", USER)
    at = post(oauth_server.token_url, grant_type="refresh_token", client_id="app", client_secret="secret",
              refresh_token=rt).json()["access_token"]
    other = oauth_server.issue_access_token("app", USER)
    assert post(oauth_server.revocation_url, token=rt).status_code == 200
    assert post(oauth_server.revocation_url, token="never-issued").status_code == 200  # RFC 7009 2.2
    refused = post(oauth_server.token_url, grant_type="refresh_token", client_id="app", client_secret="secret",
                   refresh_token=rt)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert post(oauth_server.introspection_url, token=at).json() == {"active": False}
    assert oauth_server.introspect(other)["active"] is True


def test_rejected_refresh_token_keeps_its_access_tokens(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("app", "secret")
    rt = oauth_server.issue_refresh_token("app", USER)
    at = post(oauth_server.token_url, grant_type="refresh_token", client_id="app", client_secret="secret",
              refresh_token=rt).json()["access_token"]
    oauth_server.reject_refresh_token(rt)
    assert post(oauth_server.token_url, grant_type="refresh_token", client_id="app", client_secret="secret",
                refresh_token=rt).json()["error"] == "invalid_grant"
    assert oauth_server.introspect(at)["active"] is True


def test_fault_modes_leave_introspection_up(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("app", "secret", username=USER)
    at = oauth_server.issue_access_token("app", USER)
    oauth_server.retry_after = 0
    oauth_server.set_mode("error500")
    failing = post(oauth_server.token_url, grant_type="client_credentials", client_id="app", client_secret="secret")
    assert failing.status_code == 500 and failing.json()["error"] == "server_error"
    assert failing.headers["Retry-After"] == "0"
    oauth_server.set_mode("down")
    with pytest.raises(requests.ConnectionError):
        post(oauth_server.token_url, grant_type="client_credentials", client_id="app", client_secret="secret")
    assert post(oauth_server.introspection_url, token=at).json()["active"] is True
    oauth_server.set_mode("ok")
    assert post(oauth_server.token_url, grant_type="client_credentials", client_id="app",
                client_secret="secret").status_code == 200
    assert oauth_server.token_requests == {"client_credentials": 2}  # the refused one never arrived


def test_device_flow_over_plain_http(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("public")
    flow = post(oauth_server.device_authorization_url, client_id="public", scope="offline_access").json()
    assert set(flow) >= {"device_code", "user_code", "verification_uri", "expires_in", "interval", "message"}
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": "public",
            "device_code": flow["device_code"]}
    assert post(oauth_server.token_url, **poll).json()["error"] == "authorization_pending"
    assert oauth_server.wait_for_device_flow().user_code == flow["user_code"]
    oauth_server.approve_device(flow["user_code"], USER)
    answer = post(oauth_server.token_url, **poll).json()
    assert oauth_server.introspect(answer["access_token"])["username"] == USER
    assert post(oauth_server.token_url, **poll).json()["error"] == "invalid_grant"  # used up
    assert oauth_server.token_requests == {"device_code": 3}


def test_loopback_authorization_code_grant_with_pkce(oauth_server: OAuthServer) -> None:
    oauth_server.add_client("desktop", "desktop-secret")
    received: list[dict[str, str]] = []

    class Catch(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.append(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"You may close this window.")

        def log_message(self, *args: object) -> None:
            pass

    loopback = http.server.HTTPServer(("127.0.0.1", 0), Catch)
    threading.Thread(target=loopback.handle_request, daemon=True).start()
    redirect_uri = f"http://127.0.0.1:{loopback.server_address[1]}/"
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    url = oauth_server.authorization_url + "?" + urllib.parse.urlencode({
        "response_type": "code", "client_id": "desktop", "redirect_uri": redirect_uri,
        "scope": "https://mail.google.com/", "state": "xyz", "code_challenge": challenge,
        "code_challenge_method": "S256", "access_type": "offline"})
    try:
        visit = oauth_server.visit(url, USER)
    finally:
        loopback.server_close()
    assert visit.status == 200 and visit.body == b"You may close this window."
    assert received[0]["state"] == "xyz"
    exchange = {"grant_type": "authorization_code", "code": received[0]["code"], "redirect_uri": redirect_uri,
                "client_id": "desktop", "client_secret": "desktop-secret"}
    assert post(oauth_server.token_url, **exchange, code_verifier="wrong").json()["error"] == "invalid_grant"
    answer = post(oauth_server.token_url, **exchange, code_verifier=verifier).json()
    assert answer["refresh_token"] and oauth_server.introspect(answer["access_token"])["username"] == USER
    assert post(oauth_server.token_url, **exchange, code_verifier=verifier).json()["error"] == "invalid_grant"
    declined = oauth_server.visit(url, None, follow=False)
    assert "error=access_denied" in declined.location and "state=xyz" in declined.location


# -- google-auth -----------------------------------------------------------------------------


def test_google_service_account_impersonates_with_jwt_bearer(any_oauth_server: OAuthServer) -> None:
    server = any_oauth_server
    info = server.add_service_account(allowed_subjects=[USER])
    creds = service_account.Credentials.from_service_account_info(info, scopes=["https://mail.google.com/"])
    delegated = creds.with_subject(USER)
    delegated.refresh(Request())
    assert server.introspect(delegated.token)["username"] == USER
    assert server.introspect(delegated.token)["scope"] == "https://mail.google.com/"
    with pytest.raises(RefreshError, match="unauthorized_client"):
        creds.with_subject("someone-else@example.test").refresh(Request())
    impostor = dict(server.add_service_account(), client_email=info["client_email"])  # another key
    with pytest.raises(RefreshError, match="invalid_grant"):
        service_account.Credentials.from_service_account_info(
            impostor, scopes=["https://mail.google.com/"]).with_subject(USER).refresh(Request())
    assert server.token_requests == {"jwt_bearer": 3} and server.tokens_issued == {"jwt_bearer": 1}


def test_google_user_credentials_refresh(any_oauth_server: OAuthServer) -> None:
    server = any_oauth_server
    server.add_client("desktop", "desktop-secret")
    rt = server.issue_refresh_token("desktop", USER, scope="https://mail.google.com/")
    creds = google_credentials.Credentials(
        None, refresh_token=rt, token_uri=server.token_url, client_id="desktop",
        client_secret="desktop-secret", scopes=["https://mail.google.com/"])
    creds.refresh(Request())
    assert server.introspect(creds.token)["username"] == USER and creds.expiry is not None
    server.revoke(rt)
    with pytest.raises(RefreshError, match="invalid_grant"):
        creds.refresh(Request())


# -- msal (https only) -------------------------------------------------------------------------


@pytest.fixture
def ms_server(oauth_server_tls: OAuthServer, monkeypatch: pytest.MonkeyPatch) -> OAuthServer:
    assert oauth_server_tls.ca_file is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(oauth_server_tls.ca_file))
    return oauth_server_tls


def test_msal_refuses_a_plain_http_authority(oauth_server: OAuthServer) -> None:
    with pytest.raises(ValueError, match="https"):
        msal.ConfidentialClientApplication("app", client_credential="secret",
                                           authority=oauth_server.authority("tenant"), instance_discovery=False)


def test_msal_confidential_client(ms_server: OAuthServer) -> None:
    ms_server.add_client("app", "secret", username=USER)
    app = msal.ConfidentialClientApplication(
        "app", client_credential="secret", authority=ms_server.authority("contoso.example"),
        instance_discovery=False, verify=str(ms_server.ca_file))
    result = app.acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])
    assert ms_server.introspect(result["access_token"])["username"] == USER
    rt = ms_server.issue_refresh_token("app", USER, scope=OUTLOOK_IMAP)
    result = app.acquire_token_by_refresh_token(rt, scopes=[OUTLOOK_IMAP])
    assert ms_server.introspect(result["access_token"])["username"] == USER
    assert ms_server.token_requests == {"client_credentials": 1, "refresh_token": 1}
    paths = [r.path for r in ms_server.requests]
    assert paths[0] == "/contoso.example/v2.0/.well-known/openid-configuration"
    assert set(paths[1:]) == {"/contoso.example/oauth2/v2.0/token"}
    wrong = msal.ConfidentialClientApplication(
        "app", client_credential="wrong", authority=ms_server.authority("contoso.example"),
        instance_discovery=False, verify=str(ms_server.ca_file))
    assert wrong.acquire_token_for_client(scopes=["https://outlook.office365.com/.default"])["error"] \
        == "invalid_client"


def test_msal_public_client_device_flow(ms_server: OAuthServer) -> None:
    ms_server.add_client("public")
    app = msal.PublicClientApplication("public", authority=ms_server.authority("organizations"),
                                       instance_discovery=False, verify=str(ms_server.ca_file))
    flow = app.initiate_device_flow(scopes=[OUTLOOK_IMAP])
    assert flow["user_code"] in flow["message"]
    approver = threading.Timer(0.5, lambda: ms_server.approve_device(ms_server.wait_for_device_flow().user_code, USER))
    approver.start()
    result = app.acquire_token_by_device_flow(flow)
    approver.join()
    assert ms_server.introspect(result["access_token"])["username"] == USER
    refreshed = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[OUTLOOK_IMAP])
    assert ms_server.introspect(refreshed["access_token"])["username"] == USER


# -- Dovecot with the oauth2 passdb ----------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_dovecot_accepts_active_tokens_and_refuses_others(
    dovecot_oauth: OAuthDovecotServer, oauth_server: OAuthServer, mechanism: str
) -> None:
    user = dovecot_oauth.new_user()
    oauth_server.add_client("app", "secret", username=user)
    token = post(oauth_server.token_url, grant_type="client_credentials", client_id="app",
                 client_secret="secret").json()["access_token"]
    dovecot_oauth.deliver_lmtp(user, MESSAGE)  # the password helpers still work
    with dovecot_oauth.token_client(user, token, mechanism) as c:  # type: ignore[arg-type]
        c.select_folder("INBOX")
        assert len(c.search("ALL")) == 1
    expired = oauth_server.issue_access_token("app", user)
    oauth_server.expire(expired)
    oauth_server.revoke(token)
    stranger = oauth_server.issue_access_token("app", "someone-else@example.test")
    for bad in (token, expired, stranger, "at-never-issued"):
        with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
            dovecot_oauth.token_client(user, bad, mechanism)  # type: ignore[arg-type]
    (delivered,) = dovecot_oauth.folder_messages(user)
    assert delivered.endswith(MESSAGE)


def test_dovecot_keeps_accepting_tokens_while_the_token_endpoint_is_down(
    dovecot_oauth: OAuthDovecotServer, oauth_server: OAuthServer
) -> None:
    user = dovecot_oauth.new_user()
    oauth_server.add_client("app", "secret", username=user)
    token = oauth_server.issue_access_token("app", user)
    oauth_server.set_mode("down")
    dovecot_oauth.token_client(user, token).logout()
    with pytest.raises(LoginError), IMAPClient(dovecot_oauth.host, dovecot_oauth.port, ssl=False, timeout=10) as c:
        c.login(user, token)  # a token is no password


# -- the SMTP receiver ----------------------------------------------------------------------------


def _send_xoauth2(receiver: OAuthSmtpReceiver, user: str, token: str) -> None:
    async def token_generator() -> str:
        return token

    async def send() -> None:
        kwargs = {"start_tls": False} if receiver.security == "none" else {
            "start_tls": receiver.security == "starttls", "use_tls": receiver.security == "tls",
            "tls_context": receiver.client_context}
        await aiosmtplib.send(MESSAGE, sender="a@example.test", recipients=["b@example.test"],
                              hostname=receiver.host, port=receiver.port, username=user,
                              oauth_token_generator=token_generator, **kwargs)

    asyncio.run(send())


def test_smtp_receiver_takes_xoauth2_from_aiosmtplib(
    smtp_receiver_oauth: OAuthSmtpReceiver, oauth_server: OAuthServer
) -> None:
    oauth_server.add_client("app", "secret", username=USER)
    token = oauth_server.issue_access_token("app", USER)
    _send_xoauth2(smtp_receiver_oauth, USER, token)
    assert [m.login for m in smtp_receiver_oauth.messages] == [USER]
    oauth_server.revoke(token)
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
        _send_xoauth2(smtp_receiver_oauth, USER, token)
    assert refused.value.code == 535
    with pytest.raises(aiosmtplib.SMTPAuthenticationError):
        _send_xoauth2(smtp_receiver_oauth, "someone-else@example.test", oauth_server.issue_access_token("app", USER))
    assert len(smtp_receiver_oauth.messages) == 1
    assert [(a.mechanism, a.ok) for a in smtp_receiver_oauth.auth_attempts] == [
        ("XOAUTH2", True), ("XOAUTH2", False), ("XOAUTH2", False)]


def test_smtp_receiver_oauthbearer_and_no_mail_without_auth(
    smtp_receiver_oauth: OAuthSmtpReceiver, oauth_server: OAuthServer
) -> None:
    oauth_server.add_client("app", "secret", username=USER)
    token = oauth_server.issue_access_token("app", USER)

    async def session(token: str) -> tuple[int, int]:
        async with aiosmtplib.SMTP(hostname=smtp_receiver_oauth.host, port=smtp_receiver_oauth.port,
                                   start_tls=False) as smtp:
            await smtp.ehlo()
            assert {"xoauth2", "oauthbearer"} <= set(smtp.server_auth_methods)
            assert "plain" not in smtp.server_auth_methods
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as unauthenticated:
                await smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)
            sasl = base64.b64encode(f"n,a={USER},\x01auth=Bearer {token}\x01\x01".encode())
            reply = await smtp.execute_command(b"AUTH", b"OAUTHBEARER", sasl)
            if reply.code == 334:
                assert b"invalid_token" in base64.b64decode(reply.message)
                reply = await smtp.execute_command(b"AQ==")
            else:
                await smtp.sendmail("a@example.test", ["b@example.test"], MESSAGE)
            return unauthenticated.value.code, reply.code

    assert asyncio.run(session(token)) == (530, 235)
    oauth_server.revoke(token)
    assert asyncio.run(session(token)) == (530, 535)
    assert [m.login for m in smtp_receiver_oauth.messages] == [USER]


def test_smtp_receiver_can_offer_only_oauthbearer(
    smtp_receiver_oauth: OAuthSmtpReceiver, oauth_server: OAuthServer
) -> None:
    smtp_receiver_oauth.mechanisms = ("OAUTHBEARER",)
    with pytest.raises(aiosmtplib.SMTPException, match="does not support XOAUTH2"):
        _send_xoauth2(smtp_receiver_oauth, USER, "at-whatever")


def test_smtp_receiver_over_tls(smtp_receiver_oauth_tls: OAuthSmtpReceiver, oauth_server: OAuthServer) -> None:
    oauth_server.add_client("app", "secret", username=USER)
    _send_xoauth2(smtp_receiver_oauth_tls, USER, oauth_server.issue_access_token("app", USER))
    (mail,) = smtp_receiver_oauth_tls.messages
    assert mail.tls and mail.login == USER
