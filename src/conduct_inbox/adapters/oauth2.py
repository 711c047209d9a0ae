"""OAuth2 access tokens for the mailbox and SMTP logins: one token source per configured identity.

Grants, in order (DESIGN "Configuration"):
- refresh_token, when a refresh token is configured (`conduct-inbox oauth login` wrote it);
- JWT bearer, for a Google service account with domain-wide delegation, impersonating the mailbox;
- client_credentials otherwise (app-only access: Microsoft's IMAP.AccessAsApp / SMTP.SendAsApp).

Microsoft goes through `msal`, Google through `google-auth`, `generic` through a plain RFC 6749
token request (`requests`). Nothing here signs a JWT by hand.

Tokens are cached in memory and fetched again when less than the refresh margin is left (at most
`MAX_MARGIN_SECONDS`, at most `MARGIN_FRACTION` of the token's lifetime, so short-lived tokens are
not fetched on every use), and after `invalidate()` (the server refused the token). One source is
shared by the intake, the IDLE thread and the SMTP sender: a lock makes concurrent callers wait for
one request rather than each making their own.

The identity (`OAuth2Config`, grants, providers' URLs and scopes) is in oauth2_config.py; the
wording of failures in oauth2_errors.py. Failures raise `TokenUnavailable`, one line starting
with "oauth2: " that names the cause in words
and the provider's error code (a fixed vocabulary), never a secret, a token, the provider's error
description or a library's exception text. The libraries' own loggers are silenced (`SILENT`): msal
logs response bodies on errors, urllib3 logs URLs.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from conduct_inbox.adapters.oauth2_config import (
    CLIENT_CREDENTIALS,
    GOOGLE_TOKEN_URL,
    JWT_BEARER,
    REFRESH_TOKEN,
    OAuth2Config,
    default_scopes,
    url_problem,
)
from conduct_inbox.adapters.oauth2_errors import _error_code, _refused, _unexpected, _words_for_network
from conduct_inbox.adapters.oauth2_http import no_redirects_session, token_request, without_redirects
from conduct_inbox.adapters.secret_files import write_secret_file
from conduct_inbox.errors import TokenUnavailable

log = logging.getLogger(__name__)

#: Loggers of the HTTP and OAuth2 libraries: they may log request URLs, response bodies or
#: headers (msal logs a failed response's text), so nothing of theirs is shown, at -v neither.
SILENT = ("msal", "urllib3", "requests", "google", "google_auth_httplib2", "oauthlib", "requests_oauthlib")
for _name in SILENT:
    logging.getLogger(_name).setLevel(logging.CRITICAL + 1)

#: Scopes msal adds by itself and refuses to be given.
_MSAL_RESERVED = frozenset({"openid", "profile", "offline_access"})

#: Refresh this long before expiry at most ...
MAX_MARGIN_SECONDS = 300.0
#: ... and at most this fraction of the token's lifetime.
MARGIN_FRACTION = 0.2
#: When the provider says nothing about the lifetime.
DEFAULT_LIFETIME_SECONDS = 3600.0



@dataclass(frozen=True)
class AccessToken:
    value: str = field(repr=False)
    #: clock() time when it expires, and when it was obtained.
    expires_at: float
    obtained_at: float

    @property
    def lifetime(self) -> float:
        return max(0.0, self.expires_at - self.obtained_at)

    def fresh(self, now: float) -> bool:
        margin = min(MAX_MARGIN_SECONDS, MARGIN_FRACTION * self.lifetime)
        return now < self.expires_at - margin


@dataclass(frozen=True)
class _Obtained:
    token: str = field(repr=False)
    expires_in: float
    refresh_token: str = field(default="", repr=False)




class TokenSource:
    """Access tokens for one identity (see the module docstring). Thread-safe."""

    def __init__(
        self,
        config: OAuth2Config,
        *,
        clock: Callable[[], float] = time.time,
        session: Any = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.RLock()
        self._token: AccessToken | None = None
        #: The refresh token in use (a provider may hand out a new one at each refresh) and the
        #: file's contents when last read (a change there is a new `oauth login`: it wins).
        self._refresh = config.refresh_token
        self._file_value = config.refresh_token
        self._warned_unsaved = False
        self._session = without_redirects(session) if session is not None else None
        #: Token requests made (successful or not): for `oauth status` and tests.
        self.requests = 0
        self.last_error: TokenUnavailable | None = None

    def __repr__(self) -> str:
        return f"TokenSource({self._config.provider}, {self.grant})"

    @property
    def config(self) -> OAuth2Config:
        return self._config

    @property
    def grant(self) -> str:
        return self._config.grant

    @property
    def username(self) -> str:
        return self._config.username

    def current(self) -> AccessToken | None:
        """The cached token, if any (for `oauth status`: its times, never its value)."""
        return self._token

    def token(self) -> str:
        """A valid access token: the cached one, or a new one. Raises TokenUnavailable."""
        with self._lock:
            now = self._clock()
            if self._token is not None and self._token.fresh(now):
                return self._token.value
            self._token = None
            try:
                obtained = self._obtain()
            except TokenUnavailable as exc:
                self.last_error = exc
                log.warning("%s", exc)
                raise
            self.last_error = None
            if obtained.refresh_token and obtained.refresh_token != self._refresh:
                self._refresh = obtained.refresh_token
                self._save_rotated(obtained.refresh_token)
            lifetime = obtained.expires_in if obtained.expires_in > 0 else DEFAULT_LIFETIME_SECONDS
            self._token = AccessToken(obtained.token, now + lifetime, now)
            log.info("oauth2: new access token (%s grant), valid %d s", self.grant, int(lifetime))
            return obtained.token

    def invalidate(self, token: str | None = None) -> None:
        """The server refused `token` (or the cached one): the next `token()` asks for a new one.
        A token already replaced by another caller is left alone."""
        with self._lock:
            if self._token is not None and (token is None or self._token.value == token):
                self._token = None

    def update(self, config: OAuth2Config) -> None:
        """Reloaded configuration of the same identity: new secrets apply from the next request."""
        with self._lock:
            if config.refresh_token != self._config.refresh_token:
                self._refresh = self._file_value = config.refresh_token
                self._token = None
            if config.client_secret != self._config.client_secret:
                self._token = None
            self._config = config

    # -- requests -------------------------------------------------------------------------------

    def _save_rotated(self, value: str) -> None:
        """A provider that rotates refresh tokens ends the old one sooner or later (Microsoft: 90
        days after it was issued): the new one goes to the credential file, so that a restart does not
        find only the ended one. A read-only file (systemd's copy of a credential) keeps it in memory."""
        path = self._config.refresh_token_file
        if not path:
            return
        try:
            write_secret_file(Path(path), value)
        except OSError:
            if not self._warned_unsaved:
                self._warned_unsaved = True
                log.warning("oauth2: the provider rotated the refresh token and the credential file is read-only: the "
                            "new one is used from memory; after a restart, `conduct-inbox oauth login` may be needed")
            return
        self._file_value = value

    def _current_refresh_token(self) -> str:
        """The refresh token to use: the file's when it changed since last read, else ours."""
        path = self._config.refresh_token_file
        if path:
            try:
                value = Path(path).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                value = ""
            if value and value != self._file_value:
                self._file_value = self._refresh = value
        if not self._refresh:
            raise TokenUnavailable("oauth2: no refresh token; run `conduct-inbox oauth login`", needs_login=True)
        return self._refresh

    def _http(self) -> Any:
        if self._session is None:
            self._session = no_redirects_session()
        return self._session

    def _obtain(self) -> _Obtained:
        """A token, within a deadline for the whole exchange: a read timeout bounds each read only,
        and an endpoint that trickles its answer a byte at a time would hold every login (and the
        daemon's stop) for as long as it likes. A request past the deadline is abandoned to its thread."""
        done: dict[str, Any] = {}

        def run() -> None:
            try:
                done["token"] = self._obtain_now()
            except BaseException as exc:  # handed to the caller below
                done["error"] = exc

        worker = threading.Thread(target=run, name="oauth2-token-request", daemon=True)
        worker.start()
        deadline = 2 * self._config.timeout + 5
        worker.join(deadline)
        if worker.is_alive():
            self._session = None  # the abandoned request keeps its session; the next one gets a new one
            raise TokenUnavailable(f"oauth2: the token endpoint did not answer within {deadline:.0f} s")
        if "error" in done:
            raise done["error"]
        token: _Obtained = done["token"]
        return token

    def _obtain_now(self) -> _Obtained:
        self.requests += 1
        config = self._config
        try:
            if config.provider == "microsoft":
                return self._microsoft()
            if config.provider == "google":
                return self._google()
            return self._generic()
        except TokenUnavailable:
            raise
        except Exception as exc:  # a library's own error: its text may quote a response
            failure = _unexpected(exc, self._endpoint())
        raise failure

    def _endpoint(self) -> str:
        config = self._config
        if config.provider == "microsoft":
            return config.authority_url
        if config.provider == "google":
            return config.token_url or GOOGLE_TOKEN_URL
        return config.token_url

    # generic: RFC 6749 section 6 (refresh) and 4.4 (client credentials)

    def _generic(self) -> _Obtained:
        config = self._config
        data: dict[str, str] = {"grant_type": self.grant}
        if self.grant == REFRESH_TOKEN:
            data["refresh_token"] = self._current_refresh_token()
        if config.effective_scopes:
            data["scope"] = " ".join(config.effective_scopes)
        body = token_request(self._http(), config.token_url, data, config.client_id, config.client_secret, config.timeout)
        if "error" in body or not isinstance(body.get("access_token"), str):
            raise _refused(_error_code(body.get("error")), self.grant, config.provider)
        return _Obtained(body["access_token"], _seconds(body.get("expires_in")), _text(body.get("refresh_token")))

    # microsoft: msal

    def msal_app(self, public: bool | None = None) -> Any:
        """An msal application for this identity (a new one, with an empty token cache: the cache
        here is ours). Public without a client secret, or when `public` says so."""
        import msal

        config = self._config
        kwargs: dict[str, Any] = {
            "authority": config.authority_url,
            "timeout": config.timeout,
            "token_cache": msal.TokenCache(),
            "http_client": self._http(),
        }
        if config.authority:
            kwargs["instance_discovery"] = False  # not a Microsoft cloud msal knows by name
        if public or (public is None and not config.client_secret):
            return msal.PublicClientApplication(config.client_id, **kwargs)
        return msal.ConfidentialClientApplication(config.client_id, client_credential=config.client_secret, **kwargs)

    def _microsoft(self) -> _Obtained:
        scopes = [scope for scope in self._config.effective_scopes if scope not in _MSAL_RESERVED]
        try:
            app = self.msal_app()
        except ValueError:
            # msal: the authority's openid-configuration could not be had (unknown tenant, ...).
            raise TokenUnavailable(
                "oauth2: the Microsoft authority refused the tenant's configuration (check oauth2.tenant)"
            ) from None
        if self.grant == REFRESH_TOKEN:
            result = app.acquire_token_by_refresh_token(self._current_refresh_token(), scopes=scopes)
        else:
            result = app.acquire_token_for_client(scopes=scopes)
        if not isinstance(result, dict) or "access_token" not in result:
            code = _error_code(result.get("error") if isinstance(result, dict) else None)
            raise _refused(code, self.grant, "microsoft")
        return _Obtained(result["access_token"], _seconds(result.get("expires_in")), _text(result.get("refresh_token")))

    # google: google-auth

    def _google(self) -> _Obtained:
        import google.auth.exceptions
        from google.auth.transport.requests import Request

        config = self._config
        scopes = list(config.effective_scopes)
        if self.grant == JWT_BEARER:
            from google.oauth2 import service_account

            try:
                info = json.loads(config.service_account)
            except ValueError:
                raise TokenUnavailable("oauth2: the service account file is not JSON") from None
            if config.token_url:
                info["token_uri"] = config.token_url
            token_uri = info.get("token_uri") if isinstance(info, dict) else None
            problem = url_problem(token_uri) if isinstance(token_uri, str) else "is missing"
            if problem:
                raise TokenUnavailable(f"oauth2: the service account's token_uri {problem}")
            try:
                credentials = service_account.Credentials.from_service_account_info(info, scopes=scopes)
            except (ValueError, KeyError, TypeError):
                raise TokenUnavailable("oauth2: the service account file is not a service-account key") from None
            credentials = credentials.with_subject(config.username)
        else:
            from google.oauth2.credentials import Credentials

            credentials = Credentials(
                None,
                refresh_token=self._current_refresh_token(),
                token_uri=config.token_url or GOOGLE_TOKEN_URL,
                client_id=config.client_id,
                client_secret=config.client_secret or None,
                scopes=scopes,
            )
        failure: TokenUnavailable | None = None
        try:
            credentials.refresh(Request(self._http()))
        except google.auth.exceptions.RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            failure = _refused(_error_code(data.get("error")), self.grant, "google")
        except google.auth.exceptions.TransportError as exc:
            failure = TokenUnavailable(
                f"oauth2: token endpoint unreachable ({_words_for_network(exc, self._endpoint())})"
            )
        if failure is not None:
            raise failure
        expiry = credentials.expiry
        expires_in = DEFAULT_LIFETIME_SECONDS
        if isinstance(expiry, datetime):
            expires_in = (expiry.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).total_seconds()
        rotated = getattr(credentials, "refresh_token", None) if self.grant == REFRESH_TOKEN else None
        return _Obtained(credentials.token, expires_in, _text(rotated))



def _seconds(value: Any) -> float:
    """`expires_in` as seconds; 0 (unknown) for anything that is not a finite number, and at most a
    day (a provider's answer decides how long we trust a token only within reason)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    if not math.isfinite(seconds):
        return 0.0
    return min(seconds, 86400.0)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- one source per identity in this process ------------------------------------------------------

_SOURCES: dict[tuple[str, ...], TokenSource] = {}
_SOURCES_LOCK = threading.Lock()


def shared_source(config: OAuth2Config, clock: Callable[[], float] | None = None) -> TokenSource:
    """The process's token source for this identity (the intake, IDLE and SMTP share one);
    new secrets (a reload) update it. `clock` (tests) applies when the source is created."""
    with _SOURCES_LOCK:
        source = _SOURCES.get(config.identity)
        if source is None:
            source = _SOURCES[config.identity] = TokenSource(config, clock=clock or time.time)
        else:
            source.update(config)
        return source


def forget_sources() -> None:
    """Drop every shared source (tests)."""
    with _SOURCES_LOCK:
        _SOURCES.clear()


__all__ = [
    "AccessToken", "CLIENT_CREDENTIALS", "JWT_BEARER", "OAuth2Config", "REFRESH_TOKEN", "TokenSource",
    "default_scopes", "forget_sources", "shared_source", "token_request", "url_problem",
]
