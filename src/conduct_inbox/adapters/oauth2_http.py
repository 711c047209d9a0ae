"""The HTTP side of OAuth2 token requests: a session that never follows a redirect, and the plain
RFC 6749 token request (generic providers, device and code flows)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from conduct_inbox.adapters.oauth2_config import url_problem
from conduct_inbox.adapters.oauth2_errors import _words_for_network
from conduct_inbox.errors import TokenUnavailable


def no_redirects_session() -> Any:
    import requests

    return without_redirects(requests.Session())


def without_redirects(session: Any) -> Any:
    """`session`, never following a redirect: a token request carries the client secret, the refresh
    token or a signed assertion, and a redirect could send them to another host (msal and google-auth
    post through this session). A 3xx answer is an error of the endpoint."""
    session.get_redirect_target = lambda response: None
    session.max_redirects = 0
    return session


def token_request(
    session: Any, url: str, data: dict[str, str], client_id: str, client_secret: str, timeout: float
) -> dict[str, Any]:
    """POST a token request (RFC 6749): client authentication by HTTP Basic when there is a
    secret (section 2.3.1, form-encoded id and secret), else the client id in the body. Returns
    the JSON object; an HTTP error without an OAuth2 error body raises TokenUnavailable."""
    import requests

    problem = url_problem(url)
    if problem:
        raise TokenUnavailable(f"oauth2: the token URL {problem}")
    auth = None
    data = dict(data)
    if client_secret:
        auth = (quote(client_id, safe=""), quote(client_secret, safe=""))
    elif client_id:
        data["client_id"] = client_id
    failure: TokenUnavailable | None = None
    try:
        response = session.post(
            url, data=data, auth=auth, timeout=timeout, allow_redirects=False, headers={"Accept": "application/json"}
        )
    except requests.RequestException as exc:
        failure = TokenUnavailable(f"oauth2: token endpoint unreachable ({_words_for_network(exc, url)})")
    if failure is not None:
        raise failure
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (response.status_code == 200 or "error" in body):
        return body
    if response.status_code >= 500:
        raise TokenUnavailable(f"oauth2: token endpoint failed (HTTP {response.status_code})")
    raise TokenUnavailable(f"oauth2: token endpoint answered HTTP {response.status_code} without a token")
