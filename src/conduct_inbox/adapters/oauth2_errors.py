"""OAuth2 failures in words: each becomes a `TokenUnavailable` that names the cause and the
provider's error code (a fixed vocabulary), never a secret, a token, the provider's error
description or a library's exception text."""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from conduct_inbox.adapters.neterrors import in_words
from conduct_inbox.adapters.oauth2_config import JWT_BEARER, REFRESH_TOKEN
from conduct_inbox.errors import TokenUnavailable

_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]{0,48}$")


def _words_for_network(exc: BaseException, url: str) -> str:
    """A failure to reach the token endpoint in words: the host and port, never the URL's path
    or query, never the exception's text."""
    parts = urlsplit(url)
    host = parts.hostname or "the token endpoint"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    # urllib3's connection errors subclass TimeoutError: look for the precise cause first.
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return f"connection refused by {host}:{port}"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve {host}"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the TLS certificate of {host}:{port} is not trusted"
    for cause in chain:
        words = in_words(cause, host, port)
        if words:
            return words
    for cause in chain:
        if isinstance(cause, OSError) and cause.errno is not None:
            return f"{host}:{port}: {type(cause).__name__}"
    return type(exc).__name__


#: The error codes a token endpoint may answer (RFC 6749 5.2, RFC 8628 3.5, and Entra ID's): only
#: these are shown; any other string could be anything the endpoint chose to send, a secret included.
KNOWN_ERROR_CODES = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope", "access_denied", "server_error", "temporarily_unavailable", "authorization_pending",
    "slow_down", "expired_token", "interaction_required", "consent_required", "login_required",
    "invalid_resource", "unsupported_response_type", "invalid_token", "insufficient_scope",
})


def _error_code(value: Any) -> str:
    """The provider's error code if it is one of the known identifiers; never free text."""
    if isinstance(value, str) and _ERROR_CODE.match(value) and value in KNOWN_ERROR_CODES:
        return value
    return "unexpected error"


def _refused(code: str, grant: str, provider: str) -> TokenUnavailable:
    """The provider answered with an OAuth2 error: say what to do about it."""
    if code == "invalid_grant" and grant == REFRESH_TOKEN:
        return TokenUnavailable(
            "oauth2: refresh token rejected by the provider (invalid_grant); run `conduct-inbox oauth login`",
            needs_login=True,
        )
    if code == "invalid_grant" and grant == JWT_BEARER:
        return TokenUnavailable(
            "oauth2: the service account's grant was refused (invalid_grant): check domain-wide delegation "
            "of its client id with the scope, and that mailbox.username is a user of the domain",
            needs_login=True,
        )
    if code == "invalid_client":
        what = "client secret" if grant != JWT_BEARER else "service account key"
        return TokenUnavailable(f"oauth2: {what} refused (invalid_client)", needs_login=True)
    if code == "unauthorized_client":
        return TokenUnavailable(
            f"oauth2: this client may not use the {grant} grant (unauthorized_client)", needs_login=True
        )
    if code == "invalid_scope":
        return TokenUnavailable("oauth2: scopes refused (invalid_scope): check oauth2.scopes", needs_login=True)
    if code in ("invalid_request", "access_denied", "consent_required", "interaction_required"):
        return TokenUnavailable(f"oauth2: token request refused ({code})", needs_login=True)
    if code in ("server_error", "temporarily_unavailable"):
        return TokenUnavailable(f"oauth2: token endpoint failed ({code})")
    return TokenUnavailable(f"oauth2: token request failed ({code})")


def _unexpected(exc: Exception, url: str) -> TokenUnavailable:
    """A library or network error, in words; never the exception's text."""
    import requests

    if isinstance(exc, requests.RequestException | OSError):
        return TokenUnavailable(f"oauth2: token endpoint unreachable ({_words_for_network(exc, url)})")
    status = re.fullmatch(r"HTTP Error: (\d{3})", str(exc)) if type(exc).__name__ == "MsalServiceError" else None
    if status:  # msal raises this (fixed text) for a 5xx answer
        return TokenUnavailable(f"oauth2: token endpoint failed (HTTP {status.group(1)})")
    return TokenUnavailable(f"oauth2: token request failed ({type(exc).__name__})")
