"""The conduct@ mailbox over IMAP (imapclient, blocking): list, fetch, move, IDLE.

Every library, socket and TLS error leaves this module as `MailboxUnavailable` with a message
that names the operation and the error type only: server replies can quote the login name.
"""

from __future__ import annotations

import hashlib
import imaplib
import ipaddress
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Literal

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import LoginError

from conduct_inbox.adapters.imap_client import (
    ensure_folder,
    fetch_large,
    fetch_pieces,
    has_new_mail,
    idle_once,
    interrupt,
    message_sizes,
    shutdown,
)
from conduct_inbox.adapters.neterrors import in_words
from conduct_inbox.errors import MailboxUnavailable, TokenUnavailable
from conduct_inbox.ports import Destination, MailCopy

if TYPE_CHECKING:
    from conduct_inbox.adapters.oauth2 import TokenSource

logger = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "none"]

#: No single IDLE lasts longer than this: NATs and servers drop connections idle for ~10-30 min.
MAX_IDLE_SECONDS = 9 * 60
#: Poll interval when the server has no IDLE.
POLL_SECONDS = 30.0
#: Messages larger than this (RFC822.SIZE) are fetched in pieces: imaplib and imapclient hold
#: a literal several times over while they read and parse it.
LARGE_MESSAGE_BYTES = 4 * 1024 * 1024


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, where plain IMAP exposes nothing."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@contextmanager
def _translated(action: str, host: str = "", port: int | None = None) -> Iterator[None]:
    """Turn library errors into MailboxUnavailable without their text (it may quote the user);
    with the host, network failures are said in words ("cannot resolve imap.example.org")."""
    try:
        yield
    except MailboxUnavailable:
        raise
    except LoginError:
        raise MailboxUnavailable(
            "IMAP login refused: check mailbox.username and the password (an expired or changed password looks like this)"
        ) from None
    except (imaplib.IMAP4.error, OSError, EOFError, ValueError) as exc:
        # OSError covers socket errors, timeouts and ssl.SSLError.
        words = in_words(exc, host, port) if host else None
        raise MailboxUnavailable(f"IMAP {action} failed: {words or type(exc).__name__}") from None


class ImapMailbox:
    """One IMAP connection to the intake folder; `connect()` (re)opens it."""

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        username: str,
        password: str,
        folder: str = "INBOX",
        processed_folder: str = "Processed",
        quarantine_folder: str = "Quarantine",
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        use_move: bool | None = None,
        token_source: TokenSource | None = None,
    ) -> None:
        if security not in ("tls", "starttls", "none"):
            raise ValueError(f"unknown IMAP security {security!r}")
        if security == "none" and not is_loopback(host):
            raise ValueError("IMAP security 'none' is only allowed for a loopback host")
        self.host = host
        self.port = port
        self.security = security
        self._username = username
        self._password = password
        #: With a token source, log in with SASL XOAUTH2 or OAUTHBEARER instead of the password.
        self._tokens = token_source
        self.folder = folder
        self._folders: dict[Destination, str] = {
            "processed": processed_folder,
            "quarantine": quarantine_folder,
        }
        self.timeout = timeout
        self._ssl_context = ssl_context
        #: None: use MOVE when the server advertises it; False forces COPY + UID EXPUNGE.
        self.use_move = use_move
        # The username stays out of the identity: identity is logged and stored.
        self.identity = f"imap://{host}:{port}/{folder}"
        self._client: IMAPClient | None = None
        self._caps: frozenset[bytes] = frozenset()

    def __repr__(self) -> str:
        return f"ImapMailbox({self.identity!r})"

    # -- connection ----------------------------------------------------------------------------

    def connect(self) -> int:
        """(Re)connect, log in, create the processed/quarantine folders, select; return UIDVALIDITY."""
        self.close()
        with _translated("connection", self.host, self.port):
            client = IMAPClient(
                self.host,
                self.port,
                ssl=self.security == "tls",
                ssl_context=self._ssl_context,
                timeout=self.timeout,
            )
        try:
            if self.security == "starttls":
                with _translated("STARTTLS", self.host, self.port):
                    client.starttls(self._ssl_context)
            self._login(client)
            with _translated("folder setup"):
                self._caps = frozenset(client.capabilities())
                for name in self._folders.values():
                    ensure_folder(client, name)
                selected = client.select_folder(self.folder)
        except BaseException:
            shutdown(client)
            raise
        self._client = client
        uidvalidity = int(selected[b"UIDVALIDITY"])
        logger.debug("connected to %s, uidvalidity %d", self.identity, uidvalidity)
        return uidvalidity

    def _login(self, client: IMAPClient) -> None:
        """LOGIN with the password, or SASL with an OAuth2 token: a refused token is invalidated
        and a fresh one tried once more on the same connection."""
        if self._tokens is None:
            with _translated("login"):
                client.login(self._username, self._password)
            return
        with _translated("capabilities", self.host, self.port):
            caps = {bytes(cap).upper() for cap in client.capabilities()}
        if b"AUTH=OAUTHBEARER" in caps:
            mechanism = "OAUTHBEARER"
        elif b"AUTH=XOAUTH2" in caps:
            mechanism = "XOAUTH2"
        else:
            raise MailboxUnavailable("IMAP login impossible: the server offers neither XOAUTH2 nor OAUTHBEARER for OAuth2")
        for attempt in (1, 2):
            try:
                token = self._tokens.token()
            except TokenUnavailable as exc:
                raise MailboxUnavailable(str(exc)) from None
            try:
                with _translated("login", self.host, self.port):
                    client.sasl_login(mechanism, _SaslBearer(mechanism, self._username, token))
                return
            except MailboxUnavailable as exc:
                if "login refused" not in str(exc):
                    raise
            self._tokens.invalidate(token)
            if attempt == 2:
                break
            logger.info("%s refused the OAuth2 token; trying once more with a new one", self.identity)
        raise MailboxUnavailable(
            "IMAP login refused: the mailbox refused the OAuth2 token (check mailbox.username, the scopes, "
            "and that the app may use this mailbox)"
        )

    def close(self) -> None:
        """Log out (best effort) and drop the connection."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            shutdown(client)

    def interrupt(self) -> None:
        """Wake the thread blocked in wait_for_mail (from another thread); it then reconnects."""
        client = self._client
        if client is not None:
            interrupt(client)

    def _conn(self) -> IMAPClient:
        if self._client is None:
            raise MailboxUnavailable("IMAP not connected")
        return self._client

    def _fail(self, exc: MailboxUnavailable) -> MailboxUnavailable:
        """Drop a connection after an error: its state is unknown, the caller reconnects."""
        self.close()
        return exc

    def has_capability(self, name: str) -> bool:
        return name.upper().encode() in self._caps

    # -- mailbox operations --------------------------------------------------------------------

    def uids(self) -> list[int]:
        """Every UID in the intake folder, seen or not, ascending."""
        client = self._conn()
        try:
            with _translated("SEARCH"):
                # A SEARCH only sees the session's view of the folder; NOOP first brings in mail
                # that arrived since the last command (Dovecot reports it at command end).
                client.noop()
                # SEARCH ALL, not FETCH 1:* (imapclient 4.1 rejects the latter).
                return sorted(int(u) for u in client.search("ALL"))
        except MailboxUnavailable as exc:
            raise self._fail(exc) from None

    def uids_since(self, day: date) -> list[int]:
        """The UIDs of the selected folder's messages that arrived in it on `day` or later
        (SEARCH SINCE: by internal date, in whole days), ascending."""
        client = self._conn()
        try:
            with _translated("SEARCH"):
                client.noop()
                return sorted(int(u) for u in client.search(["SINCE", day]))
        except MailboxUnavailable as exc:
            raise self._fail(exc) from None

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        """Raw messages by UID (never sets \\Seen; the caller chunks): their sizes first, then the
        small ones in one FETCH BODY.PEEK[], each large one in pieces of imap_client.FETCH_PIECE_BYTES."""
        if not uids:
            return {}
        client = self._conn()
        found: dict[int, bytes] = {}
        try:
            with _translated("FETCH"):
                sizes = message_sizes(client, uids)
                small = [uid for uid, size in sizes.items() if size <= LARGE_MESSAGE_BYTES]
                if small:
                    data = client.fetch(small, ["BODY.PEEK[]"])
                    wanted = set(small)
                    for uid, item in data.items():
                        if uid in wanted and item.get(b"BODY[]") is not None:
                            found[int(uid)] = bytes(item[b"BODY[]"])
                    del data
                for uid, size in sizes.items():
                    if size > LARGE_MESSAGE_BYTES:
                        body = fetch_large(client, uid, size)
                        if body is not None:
                            found[uid] = body
        except MailboxUnavailable as exc:
            raise self._fail(exc) from None
        return found

    def move(self, uids: Sequence[int], destination: Destination) -> None:
        """Move exactly `uids` to the processed or quarantine folder."""
        if not uids:
            return
        target = self._folders[destination]
        client = self._conn()
        ids = list(uids)
        try:
            with _translated("MOVE"):
                use_move = self.has_capability("MOVE") if self.use_move is None else self.use_move
                if use_move:
                    client.move(ids, target)
                    return
                client.copy(ids, target)
                client.add_flags(ids, [DELETED], silent=True)
                if self.has_capability("UIDPLUS"):
                    client.uid_expunge(ids)
                else:
                    # A plain EXPUNGE would also remove messages others flagged \Deleted.
                    logger.warning(
                        "%s has no UIDPLUS: %d copied message(s) left flagged \\Deleted in the intake folder",
                        self.identity, len(ids),
                    )
        except MailboxUnavailable as exc:
            raise self._fail(exc) from None

    def contains(self, message_id: str) -> bool:
        """Search the intake, processed and quarantine folders for a Message-ID (`check-config --probe`)."""
        client = self._conn()
        try:
            with _translated("SEARCH"):
                found = False
                for folder in (self.folder, *self._folders.values()):
                    client.select_folder(folder)
                    if client.search(["HEADER", "Message-ID", message_id]):
                        found = True
                        break
                client.select_folder(self.folder)
                return found
        except MailboxUnavailable as exc:
            raise self._fail(exc) from None

    def delete_copies(self, copies: Sequence[MailCopy]) -> int:
        """Find each copy by Message-ID (or exact size) in the processed and quarantine folders,
        check its SHA-256, flag it \\Deleted and expunge it; then select the intake folder again."""
        if not copies:
            return 0
        client = self._conn()
        deleted = 0
        try:
            with _translated("retention delete"):
                for folder in self._folders.values():
                    client.select_folder(folder)
                    doomed: list[int] = []
                    for copy in copies:
                        if copy.message_id:
                            found = client.search(["HEADER", "Message-ID", copy.message_id])
                        else:
                            found = client.search(["LARGER", copy.size - 1, "SMALLER", copy.size + 1])
                        if not found:
                            continue
                        for uid, size in message_sizes(client, found).items():
                            digest = hashlib.sha256()
                            if fetch_pieces(client, uid, size, digest.update) and digest.hexdigest() == copy.sha256:
                                doomed.append(uid)
                    if doomed:
                        client.add_flags(doomed, [DELETED], silent=True)
                        if self.has_capability("UIDPLUS"):
                            client.uid_expunge(doomed)
                        else:
                            client.expunge()
                        deleted += len(doomed)
                client.select_folder(self.folder)
        except MailboxUnavailable as exc:
            raise self._fail(exc) from None
        return deleted

    def wait_for_mail(self, timeout: float) -> bool:
        """Block up to `timeout` s in IDLE; True when the server reports new mail, else False.

        Without IDLE this just sleeps (at most POLL_SECONDS) and returns True so the caller polls.
        Any error drops the connection and raises MailboxUnavailable: the caller reconnects.
        """
        client = self._conn()
        if not self.has_capability("IDLE"):
            time.sleep(max(0.0, min(timeout, POLL_SECONDS)))
            return True
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            with _translated("IDLE"):
                # Mail that arrived since the last command is reported to a NOOP.
                _, pending = client.noop()
                if has_new_mail(pending):
                    return True
                while (remaining := deadline - time.monotonic()) > 0:
                    if idle_once(client, min(remaining, MAX_IDLE_SECONDS)):
                        return True
                return False
        except MailboxUnavailable as exc:
            raise self._fail(exc) from None

class _SaslBearer:
    """The client side of XOAUTH2 / OAUTHBEARER (RFC 7628): the token first; to the server's error
    challenge (a refused token) the dummy answer, after which the server says NO: an empty line
    for XOAUTH2, %x01 for OAUTHBEARER (RFC 7628 section 3.2.3). The repr hides the token."""

    def __init__(self, mechanism: str, username: str, token: str):
        if mechanism == "OAUTHBEARER":
            authzid = username.replace("=", "=3D").replace(",", "=2C")
            self._first = f"n,a={authzid},\x01auth=Bearer {token}\x01\x01".encode()
        else:
            self._first = f"user={username}\x01auth=Bearer {token}\x01\x01".encode()
        self._dummy = b"\x01" if mechanism == "OAUTHBEARER" else b""
        self._sent = False

    def __repr__(self) -> str:
        return "_SaslBearer()"

    def __call__(self, challenge: bytes) -> bytes:
        if self._sent:
            return self._dummy
        self._sent = True
        return self._first
