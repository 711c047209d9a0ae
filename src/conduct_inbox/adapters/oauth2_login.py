"""`conduct-inbox oauth login`: get a refresh token interactively and store it (mode 0600).

- microsoft: the device code flow through msal (`PublicClientApplication.initiate_device_flow`):
  a URL and a code are printed, the admin signs in as the mailbox in any browser;
- google (and generic with `authorization_url`): the authorization code flow with PKCE and a
  loopback redirect (RFC 8252): a listener on 127.0.0.1, the URL to open is printed;
- generic with `device_authorization_url`: the device flow of RFC 8628 as plain requests.

Nothing printed or logged here contains a secret, a token or an authorization code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

from conduct_inbox.adapters.oauth2 import TokenSource
from conduct_inbox.adapters.oauth2_config import GOOGLE_AUTH_URL, GOOGLE_TOKEN_URL, REFRESH_TOKEN, OAuth2Config, default_scopes
from conduct_inbox.adapters.oauth2_errors import _error_code, _refused
from conduct_inbox.adapters.oauth2_http import token_request
from conduct_inbox.adapters.secret_files import write_secret_file  # noqa: F401 (oauth login writes with it)
from conduct_inbox.errors import TokenUnavailable

Say = Callable[[str], None]


def login(config: OAuth2Config, say: Say, *, timeout: float = 300.0, port: int = 0) -> str:
    """Run the interactive flow for `config` and return the refresh token. Raises TokenUnavailable."""
    scopes = config.scopes or default_scopes(config.provider, REFRESH_TOKEN)
    if config.provider == "microsoft":
        return _microsoft_device_flow(config, scopes, say, timeout)
    if config.provider == "google" or config.authorization_url:
        return _loopback_flow(config, scopes, say, timeout, port)
    if config.device_authorization_url:
        return _device_flow(config, scopes, say, timeout)
    raise TokenUnavailable(
        "oauth2: provider \"generic\" needs oauth2.device_authorization_url (device code login) or "
        "oauth2.authorization_url (browser login) for `oauth login`; or put a refresh token obtained "
        "otherwise into the refresh-token file"
    )


def _microsoft_device_flow(config: OAuth2Config, scopes: tuple[str, ...], say: Say, timeout: float) -> str:
    source = TokenSource(config)
    wanted = [scope for scope in scopes if scope not in ("openid", "profile", "offline_access")]
    failure: TokenUnavailable | None = None
    try:
        app = source.msal_app(public=True)
        flow = app.initiate_device_flow(scopes=wanted)
        if "user_code" not in flow:
            raise _refused(_error_code(flow.get("error")), REFRESH_TOKEN, "microsoft")
        say(f"To sign in, open {flow.get('verification_uri', 'https://microsoft.com/devicelogin')} "
            f"and enter the code {flow['user_code']}")
        say("Sign in as the mailbox's user (or an account with access to it); waiting ...")
        flow["expires_at"] = min(float(flow.get("expires_at", time.time() + timeout)), time.time() + timeout)
        result = app.acquire_token_by_device_flow(flow)
    except TokenUnavailable:
        raise
    except ValueError:
        failure = TokenUnavailable("oauth2: the Microsoft authority refused the tenant's configuration (check oauth2.tenant)")
    except Exception as exc:
        from conduct_inbox.adapters.oauth2_errors import _unexpected

        failure = _unexpected(exc, config.authority_url)
    if failure is not None:
        raise failure
    if not isinstance(result, dict) or not isinstance(result.get("refresh_token"), str):
        code = _error_code(result.get("error") if isinstance(result, dict) else None)
        raise TokenUnavailable(f"oauth2: the sign-in did not complete ({code})")
    return result["refresh_token"]


def _device_flow(config: OAuth2Config, scopes: tuple[str, ...], say: Say, timeout: float) -> str:
    """RFC 8628 against a generic provider."""
    import requests

    session = requests.Session()
    data = {"scope": " ".join(scopes)} if scopes else {}
    started = token_request(session, config.device_authorization_url, data, config.client_id, config.client_secret,
                            config.timeout)
    if "error" in started or not isinstance(started.get("device_code"), str):
        raise TokenUnavailable(f"oauth2: device code request refused ({_error_code(started.get('error'))})")
    say(f"To sign in, open {started.get('verification_uri_complete') or started.get('verification_uri')} "
        f"and enter the code {started.get('user_code', '')}")
    interval = max(1.0, float(started.get("interval", 5)))
    deadline = time.monotonic() + min(timeout, float(started.get("expires_in", timeout)))
    while time.monotonic() < deadline:
        body = token_request(
            session, config.token_url,
            {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": started["device_code"]},
            config.client_id, config.client_secret, config.timeout,
        )
        if isinstance(body.get("refresh_token"), str):
            return body["refresh_token"]
        error = _error_code(body.get("error"))
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            if "access_token" in body:
                raise TokenUnavailable("oauth2: the provider gave no refresh token (add the offline_access scope?)")
            raise TokenUnavailable(f"oauth2: the sign-in did not complete ({error})")
        time.sleep(interval)
    raise TokenUnavailable("oauth2: the sign-in did not complete in time")


class _Redirect(BaseHTTPRequestHandler):
    """Receives the one redirect; the page shown says nothing of the code."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        query = parse_qs(urlsplit(self.path).query)
        server = cast(_RedirectServer, self.server)
        state = (query.get("state") or [""])[0]
        if ("code" in query or "error" in query) and hmac.compare_digest(state, server.state):
            server.result = {key: values[0] for key, values in query.items() if values}
            server.done.set()
            text = b"conduct-inbox: sign-in received. You can close this window."
            self.send_response(200)
        else:
            text = b"conduct-inbox: waiting for the sign-in redirect."
            self.send_response(404)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: Any) -> None:  # the request line carries the code
        pass


class _RedirectServer(HTTPServer):
    """The loopback server: its handler leaves the redirect's query parameters in `result`."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Redirect)
        self.result: dict[str, str] = {}
        self.done = threading.Event()
        #: Only a redirect carrying this state ends the wait: another local process cannot end (or
        #: spoil) the admin's sign-in by calling the loopback address first.
        self.state = secrets.token_urlsafe(16)


def _loopback_flow(config: OAuth2Config, scopes: tuple[str, ...], say: Say, timeout: float, port: int) -> str:
    """Authorization code with PKCE (RFC 7636) and a loopback redirect (RFC 8252 section 7.3)."""
    import requests

    server = _RedirectServer(port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = server.state
        params = {
            "client_id": config.client_id, "redirect_uri": redirect_uri, "response_type": "code",
            "scope": " ".join(scopes), "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
            "access_type": "offline", "prompt": "consent",
        }
        if config.username:
            params["login_hint"] = config.username
        base = config.authorization_url or GOOGLE_AUTH_URL
        say("Open this address in a browser on this machine and sign in as the mailbox's user:")
        say(f"{base}{'&' if '?' in base else '?'}{urlencode(params)}")
        say(f"waiting for the redirect to {redirect_uri} ...")
        if not server.done.wait(timeout):
            raise TokenUnavailable("oauth2: the sign-in did not complete in time")
        result = server.result
    finally:
        server.shutdown()
        server.server_close()
    if result.get("state") != state:
        raise TokenUnavailable("oauth2: the redirect's state does not match (not our sign-in); try again")
    if "code" not in result:
        raise TokenUnavailable(f"oauth2: the sign-in was refused ({_error_code(result.get('error'))})")
    body = token_request(
        requests.Session(), config.token_url or GOOGLE_TOKEN_URL,
        {"grant_type": "authorization_code", "code": result["code"], "redirect_uri": redirect_uri,
         "code_verifier": verifier},
        config.client_id, config.client_secret, config.timeout,
    )
    if "error" in body:
        raise _refused(_error_code(body.get("error")), "authorization_code", config.provider)
    if not isinstance(body.get("refresh_token"), str):
        raise TokenUnavailable("oauth2: the provider gave no refresh token (consent with offline access needed)")
    return body["refresh_token"]
