"""An OAuth2 identity as configured: provider, grant, scopes and endpoints (`OAuth2Config`),
with the providers' well-known URLs and scopes. No I/O: adapters/oauth2.py obtains the tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

REFRESH_TOKEN = "refresh_token"
JWT_BEARER = "jwt_bearer"
CLIENT_CREDENTIALS = "client_credentials"

MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
MICROSOFT_DELEGATED_SCOPES = (
    "https://outlook.office365.com/IMAP.AccessAsUser.All",
    "https://outlook.office365.com/SMTP.Send",
    "offline_access",
)
MICROSOFT_APP_SCOPES = ("https://outlook.office365.com/.default",)
GOOGLE_SCOPES = ("https://mail.google.com/",)


def default_scopes(provider: str, grant: str) -> tuple[str, ...]:
    """The scopes used when `oauth2.scopes` is empty."""
    if provider == "microsoft":
        return MICROSOFT_APP_SCOPES if grant == CLIENT_CREDENTIALS else MICROSOFT_DELEGATED_SCOPES
    if provider == "google":
        return GOOGLE_SCOPES
    return ()


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why `url` may not be used for OAuth2 (https only, plain http for loopback), or None."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        return None if is_loopback_url(url) else "must be an https:// URL (http:// only for a loopback host)"
    return "must be an https:// URL"


@dataclass(frozen=True)
class OAuth2Config:
    """One identity, from `[oauth2]` and the mailbox's user name. Secrets stay out of the repr."""

    provider: str
    client_id: str = ""
    tenant: str = ""
    #: microsoft: the authority host (national clouds, tests); default login.microsoftonline.com.
    authority: str = ""
    token_url: str = ""
    scopes: tuple[str, ...] = ()
    client_secret: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    #: Where the refresh token came from: read again at each refresh (a new `oauth login`).
    refresh_token_file: str = ""
    #: google: the service account's JSON key (the file's contents).
    service_account: str = field(default="", repr=False)
    #: The mailbox user: the SASL user and the JWT subject.
    username: str = ""
    authorization_url: str = ""
    device_authorization_url: str = ""
    timeout: float = 30.0

    @property
    def grant(self) -> str:
        if self.refresh_token or self.refresh_token_file:
            return REFRESH_TOKEN
        if self.provider == "google" and self.service_account:
            return JWT_BEARER
        return CLIENT_CREDENTIALS

    @property
    def effective_scopes(self) -> tuple[str, ...]:
        return self.scopes or default_scopes(self.provider, self.grant)

    @property
    def identity(self) -> tuple[str, ...]:
        """What makes two configurations the same identity (secrets aside)."""
        return (self.provider, self.client_id, self.tenant, self.authority, self.token_url, self.username,
                " ".join(self.scopes), self.grant)

    @property
    def authority_url(self) -> str:
        return f"{(self.authority or MICROSOFT_AUTHORITY).rstrip('/')}/{self.tenant or 'organizations'}"
