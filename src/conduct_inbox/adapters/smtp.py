"""aiosmtplib sender: one connection per outbox batch, SMTP replies mapped to outcomes.

Classification (DESIGN rule 3): trouble reaching, greeting, securing or logging into the
server, any refusal of MAIL FROM, a 4xx at DATA or RSET, and a lost connection are an
*outage* — the batch stops and the dispatcher retries later. A refusal of the row's
recipient is that row's own result: 5xx at RCPT or DATA is REJECTED, 4xx at RCPT is DEFERRED.
Server replies often quote addresses, so only the reply code, the enhanced status code and a
fixed word are kept.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import aiosmtplib
import aiosmtplib.protocol

from conduct_inbox.adapters.smtp_replies import connection_reason, reply_status
from conduct_inbox.errors import MailUnavailable, TokenUnavailable
from conduct_inbox.ports import BatchResult, DeliveryResult, Outcome, OutgoingMail, ResultHook

if TYPE_CHECKING:
    from conduct_inbox.adapters.oauth2 import TokenSource

log = logging.getLogger(__name__)

_LONE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
_library_normalize = aiosmtplib.protocol.normalize_message_line_endings


def _normalize_line_endings(message: bytes) -> bytes:
    """aiosmtplib's normalisation before DATA, without its copies when there is nothing to change.

    The library rewrites every line ending with a regular expression, which holds about five
    copies of the mail at once (a list of every line, then the joined result): 30 MB for a copy
    of a report with a 5 MB attachment. Our mail (mail/compose.py) has CRLF line endings only and
    ends with one, so it is handed on as it is; anything else gets the library's own treatment."""
    if message.endswith(b"\r\n") and _LONE_CR_OR_LF.search(message) is None:
        return message
    return _library_normalize(message)


# Module-level in aiosmtplib.protocol and looked up there at each DATA: replacing it is the one
# place to change (the test checks the result is what the library's own function gives).
aiosmtplib.protocol.normalize_message_line_endings = _normalize_line_endings

Security = Literal["tls", "starttls", "none"]

class _Outage(Exception):
    """Internal: the batch must stop for `reason`; `result` is the current row's, if known."""

    def __init__(self, reason: str, result: DeliveryResult | None = None):
        super().__init__(reason)
        self.reason = reason
        self.result = result


async def _auth_oauthbearer(client: aiosmtplib.SMTP, username: str, token: str) -> None:
    """AUTH OAUTHBEARER with an initial response (RFC 7628 section 3.1); to the error challenge
    of a refused token the dummy response %x01 (RFC 7628 section 3.2.3), then the failure."""
    authzid = username.replace("=", "=3D").replace(",", "=2C")
    initial = base64.b64encode(f"n,a={authzid},\x01auth=Bearer {token}\x01\x01".encode())
    response = await client.execute_command(b"AUTH", b"OAUTHBEARER", initial)
    if response.code == 334:
        response = await client.execute_command(base64.b64encode(b"\x01"))
    if response.code != 235:
        raise aiosmtplib.SMTPAuthenticationError(response.code, response.message)


#: A batch opens a second connection only when it has at least this many mails per connection.
MAILS_PER_CONNECTION = 8


class _Batch:
    """The mails of one batch, shared by its connections, and the one place where mail is accepted.

    Only one mail at a time may be between "content handed over" and "result hook done": the
    connection about to hand over content takes `accepting`, and the hook on that row gives it
    back. Meanwhile the other connections send their next envelopes. So a crash repeats at most
    one mail, however many connections there are."""

    def __init__(self, mails: Sequence[OutgoingMail], on_result: ResultHook | None):
        self._queue = iter(mails)
        self.on_result = on_result
        self.results: dict[int, DeliveryResult] = {}
        self.accepting = asyncio.Lock()
        self.outage: _Outage | None = None
        #: An exception raised by the result hook: no further mail is handed over.
        self.error: BaseException | None = None
        self._hooks: set[asyncio.Future[None]] = set()

    def next(self) -> OutgoingMail | None:
        if self.outage is not None or self.error is not None:
            return None
        return next(self._queue, None)

    def accepted(self, row_id: int, result: DeliveryResult) -> None:
        """The server accepted a row: run the hook, then let the next mail be accepted."""
        self.results[row_id] = result
        if self.on_result is None:
            self.accepting.release()
            return
        hook = asyncio.ensure_future(self._run_hook(row_id, result))
        self._hooks.add(hook)
        hook.add_done_callback(self._hooks.discard)

    async def _run_hook(self, row_id: int, result: DeliveryResult) -> None:
        assert self.on_result is not None
        try:
            await self.on_result(row_id, result)
        except BaseException as exc:  # re-raised by send_batch once every connection has ended
            self.error = self.error or exc
        finally:
            self.accepting.release()

    async def settled(self) -> None:
        """Wait for the hooks still running."""
        while self._hooks:
            await asyncio.gather(*self._hooks)


class _Stopped(Exception):
    """Internal: the batch ended elsewhere (a failed result hook): this connection stops."""


class SmtpSender:
    """Hands outbox rows to an SMTP submission server (implements `ports.Sender`)."""

    def __init__(
        self,
        host: str,
        port: int,
        security: Security,
        username: str | None,
        password: str | None,
        timeout: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        connections: int = 2,
        token_source: TokenSource | None = None,
    ):
        if security not in ("tls", "starttls", "none"):
            raise ValueError(f"unknown SMTP security {security!r}")
        self.host = host
        self.port = port
        self.security = security
        self.username = username
        self.password = password
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname
        #: Connections a large batch is sent over at once: one waits for the server while the other
        #: talks (SMTP is a conversation of round trips), yet mail is accepted one at a time.
        self.connections = max(1, connections)
        #: With a token source, AUTH is XOAUTH2 or OAUTHBEARER with its tokens, not the password.
        self.token_source = token_source

    def __repr__(self) -> str:
        return f"SmtpSender({self.host!r}, {self.port})"

    # -- public API ------------------------------------------------------------------

    async def send_batch(self, mails: Sequence[OutgoingMail], on_result: ResultHook | None = None) -> BatchResult:
        """Send `mails` over up to `connections` connections; stop at the first outage, results so far kept.

        `on_result(row_id, result)` runs for each row the server accepted, before any other mail
        can be accepted (see `_Batch`); the caller records the row there. An exception from it
        ends the batch (rows in progress are reset) and is raised here."""
        if not mails:
            return BatchResult({})
        batch = _Batch(mails, on_result)
        count = max(1, min(self.connections, len(mails) // MAILS_PER_CONNECTION))
        # The first connection is opened before any other: if it cannot be, that is an outage;
        # if an extra one cannot (a server may limit connections per client), the first goes on alone.
        first = self._client()
        try:
            await self._open(first)
        except _Outage as outage:
            await self._quit(first)
            log.warning("SMTP outage after 0 of %d rows: %s", len(mails), outage.reason)
            return BatchResult({}, outage=outage.reason)
        ended = await asyncio.gather(
            self._connection(batch, first), *(self._connection(batch, None) for _ in range(count - 1)),
            return_exceptions=True,
        )
        await batch.settled()
        for outcome in ended:
            if isinstance(outcome, BaseException) and not isinstance(outcome, _Stopped):
                raise outcome
        if batch.error is not None:
            raise batch.error
        if batch.outage is not None:
            log.warning("SMTP outage after %d of %d rows: %s", len(batch.results), len(mails), batch.outage.reason)
            return BatchResult(batch.results, outage=batch.outage.reason)
        return BatchResult(batch.results)

    async def _connection(self, batch: _Batch, client: aiosmtplib.SMTP | None) -> None:
        """One connection (`client`, already open; None: open an extra one) taking mails from the
        batch until none are left or the batch stops."""
        if client is None:
            client = self._client()
            try:
                await self._open(client)
            except _Outage as outage:
                log.info("extra SMTP connection not opened: %s", outage.reason)
                await self._quit(client)
                return
        try:
            while (mail := batch.next()) is not None:
                try:
                    result = await self._send_one(client, mail, batch)
                except _Outage as outage:
                    if outage.result is not None:  # refused, then RSET failed: result stands
                        batch.results[mail.row_id] = outage.result
                    batch.outage = batch.outage or outage
                    return
                if result.outcome is not Outcome.SENT:
                    batch.results[mail.row_id] = result
        finally:
            await self._quit(client)

    async def probe(self) -> str | None:
        """Connect, secure and log in as configured: None when that works, else the reason."""
        client = self._client()
        try:
            await self._open(client)
        except _Outage as outage:
            return outage.reason
        finally:
            await self._quit(client)
        return None

    # -- connection ------------------------------------------------------------------

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security == "tls",
            start_tls=False,  # done explicitly below, so "none" never upgrades by surprise
            tls_context=self.ssl_context,
            timeout=self.timeout,
            local_hostname=self.local_hostname,
        )

    async def _open(self, client: aiosmtplib.SMTP) -> None:
        """Connect, EHLO, STARTTLS and AUTH as configured; raise _Outage on any failure."""
        stage = "connect"
        try:
            await client.connect()
            stage = "EHLO"
            await client.ehlo()
            if self.security == "starttls":
                stage = "STARTTLS"
                if not client.supports_extension("starttls"):
                    raise _Outage("SMTP STARTTLS not offered by the server")
                await client.starttls()
                await client.ehlo()
            if self.token_source is not None:
                stage = "AUTH"
                await self._oauth2_login(client)
            elif self.username:
                stage = "AUTH"
                if not client.supports_extension("auth"):
                    raise _Outage("SMTP AUTH not offered by the server")
                await client.login(self.username, self.password or "")
        except aiosmtplib.SMTPResponseException as exc:
            raise _Outage(f"SMTP {stage} refused ({reply_status(exc.code, exc.message)})") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise _Outage(connection_reason(stage, exc, self.host, self.port)) from None

    async def _oauth2_login(self, client: aiosmtplib.SMTP) -> None:
        """AUTH XOAUTH2 (aiosmtplib's) or OAUTHBEARER (RFC 7628, sent through aiosmtplib's command
        API), whichever the server offers; a refused token is invalidated and a new one tried once.
        A token that cannot be had is an outage, as a refused password is."""
        source = self.token_source
        assert source is not None
        methods = {method.lower() for method in client.server_auth_methods} if client.supports_extension("auth") else set()
        if "oauthbearer" in methods:
            mechanism = "OAUTHBEARER"
        elif "xoauth2" in methods:
            mechanism = "XOAUTH2"
        else:
            raise _Outage("SMTP AUTH impossible: the server offers neither XOAUTH2 nor OAUTHBEARER for OAuth2")
        username = self.username or source.username
        for attempt in (1, 2):
            try:
                token = await asyncio.to_thread(source.token)
            except TokenUnavailable as exc:
                raise _Outage(str(exc)) from None
            try:
                if mechanism == "XOAUTH2":
                    await client.auth_xoauth2(username, token)
                else:
                    await _auth_oauthbearer(client, username, token)
                return
            except aiosmtplib.SMTPAuthenticationError as exc:
                status = reply_status(exc.code, exc.message)
            source.invalidate(token)
            if attempt == 2 or not 500 <= int(status.split()[0]) < 600:
                break
            log.info("SMTP server refused the OAuth2 token (%s); trying once more with a new one", status)
        raise _Outage(f"SMTP AUTH refused ({status}): the server refused the OAuth2 token (check smtp.username, "
                      "the scopes, and that the app may send as this mailbox)")

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        """Say goodbye if still connected, then close; errors here lose nothing of ours."""
        try:
            if client.is_connected:
                await client.quit(timeout=min(self.timeout, 5.0))  # don't stall a shutdown
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        finally:
            client.close()

    # -- one transaction -------------------------------------------------------------

    async def _send_one(self, client: aiosmtplib.SMTP, mail: OutgoingMail, batch: _Batch) -> DeliveryResult:
        """MAIL, RCPT, DATA for one row; per-row result, or _Outage for the whole batch.

        The content goes out only while holding `batch.accepting`; an accepted row is handed to
        `batch.accepted`, which releases it once the row is recorded."""
        needs_utf8 = not (mail.envelope_from.isascii() and mail.recipient.isascii())
        if needs_utf8 and not client.supports_extension("smtputf8"):
            log.info("outbox row %d: address needs SMTPUTF8, server lacks it", mail.row_id)
            return DeliveryResult(Outcome.REJECTED, None, "address needs SMTPUTF8")
        try:
            data = await mail.content()  # a large mail is read only now (ports.OutgoingMail)
        except MailUnavailable as exc:
            log.error("outbox row %d: its stored mail cannot be read", mail.row_id)
            return DeliveryResult(Outcome.REJECTED, None, str(exc))
        except Exception as exc:  # the database, not the server: end the batch, nothing more sent
            batch.error = batch.error or exc
            raise _Stopped() from None
        options = self._mail_options(client, data, needs_utf8)
        encoding = "utf-8" if needs_utf8 else "ascii"
        stage = "MAIL FROM"
        try:
            try:
                await client.mail(mail.envelope_from, options=options, encoding=encoding)
            except ValueError:
                return DeliveryResult(Outcome.REJECTED, None, "invalid envelope sender")
            stage = "RCPT TO"
            try:
                await client.rcpt(mail.recipient, encoding=encoding)
            except ValueError:
                result = DeliveryResult(Outcome.REJECTED, None, "invalid recipient address")
                await self._reset(client, result)
                return result
            except aiosmtplib.SMTPRecipientRefused as exc:
                result = self._recipient_refused(mail, exc)
                await self._reset(client, result)
                return result
            await batch.accepting.acquire()
            if batch.error is not None:  # recording an accepted mail failed: hand nothing more over
                batch.accepting.release()
                await self._abandon(client)
                raise _Stopped()
            stage = "DATA"
            try:
                await client.data(data)
            except aiosmtplib.SMTPDataError as exc:
                batch.accepting.release()
                if not 500 <= exc.code < 600:
                    raise
                log.info("outbox row %d: data refused %s", mail.row_id, exc.code)
                result = DeliveryResult(
                    Outcome.REJECTED, exc.code, f"{reply_status(exc.code, exc.message)} message refused"
                )
                await self._reset(client, result)
                return result
            except BaseException:
                batch.accepting.release()
                raise
            batch.accepted(mail.row_id, DeliveryResult(Outcome.SENT, 250))
        except aiosmtplib.SMTPResponseException as exc:
            raise _Outage(f"SMTP {stage} refused ({reply_status(exc.code, exc.message)})") from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise _Outage(connection_reason(stage, exc, self.host, self.port)) from None
        log.debug("outbox row %d: sent", mail.row_id)
        return DeliveryResult(Outcome.SENT, 250)

    def _recipient_refused(
        self, mail: OutgoingMail, exc: aiosmtplib.SMTPRecipientRefused
    ) -> DeliveryResult:
        status = reply_status(exc.code, exc.message)
        if 500 <= exc.code < 600:
            log.info("outbox row %d: recipient refused %s", mail.row_id, status)
            return DeliveryResult(Outcome.REJECTED, exc.code, f"{status} recipient refused")
        if 400 <= exc.code < 500:
            log.info("outbox row %d: recipient deferred %s", mail.row_id, status)
            return DeliveryResult(Outcome.DEFERRED, exc.code, f"{status} recipient deferred")
        raise _Outage(f"SMTP RCPT TO unexpected reply ({status})")

    @staticmethod
    async def _abandon(client: aiosmtplib.SMTP) -> None:
        """RSET a transaction we will not finish; failure does not matter, the batch ends anyway."""
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass

    async def _reset(self, client: aiosmtplib.SMTP, result: DeliveryResult) -> None:
        """RSET after a refused transaction; if that fails the batch stops, `result` kept."""
        try:
            await client.rset()
        except aiosmtplib.SMTPResponseException as exc:
            raise _Outage(f"SMTP RSET refused ({reply_status(exc.code, exc.message)})", result) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise _Outage(connection_reason("RSET", exc, self.host, self.port), result) from None

    @staticmethod
    def _mail_options(client: aiosmtplib.SMTP, data: bytes, utf8: bool) -> list[str]:
        """SIZE, BODY=8BITMIME and SMTPUTF8 where the server offers them and the mail needs them."""
        options: list[str] = []
        if client.supports_extension("size"):
            lone_lf = data.count(b"\n") - data.count(b"\r\n")
            options.append(f"SIZE={len(data) + max(lone_lf, 0)}")
        if not data.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if utf8:
            options.append("SMTPUTF8")
        return options
