"""The outgoing-mail adapters against a real aiosmtpd receiver on loopback (and a real Maildir)."""

from __future__ import annotations

import asyncio
import mailbox
import socket
import ssl
from collections.abc import Sequence
from email import message_from_bytes, policy

import pytest

from conduct_inbox.adapters.maildir_sender import MaildirSender
from conduct_inbox.adapters.smtp import SmtpSender
from conduct_inbox.ports import BatchResult, Outcome, OutgoingMail
from tests.fixtures.smtp_receiver import SmtpReceiver


def _mail(row_id: int, recipient: str, body: str = "Hello.") -> OutgoingMail:
    data = (
        f"From: Conduct Committee <conduct@example.org>\r\n"
        f"To: {recipient}\r\n"
        f"Subject: [conduct #2026-{row_id:04d}] Your report\r\n"
        f"Message-ID: <row{row_id}@conduct.example.org>\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 8bit\r\n"
        f"\r\n"
        f"{body}\r\n"
        f".a line that starts with a dot\r\n"
    ).encode()
    return OutgoingMail(row_id, f"conduct+bounce-{row_id}@example.org", recipient, data)


def _sender(receiver: SmtpReceiver, **overrides: object) -> SmtpSender:
    kwargs: dict[str, object] = dict(
        host=receiver.host,
        port=receiver.port,
        security="none",
        username=None,
        password=None,
        timeout=5.0,
        local_hostname="sender.test",
    )
    kwargs.update(overrides)
    return SmtpSender(**kwargs)  # type: ignore[arg-type]


def _send(sender: SmtpSender | MaildirSender, mails: Sequence[OutgoingMail]) -> BatchResult:
    return asyncio.run(sender.send_batch(mails))


def _assert_no_address(batch: BatchResult) -> None:
    texts = [batch.outage or ""] + [r.reason for r in batch.results.values()]
    assert not any("@" in t for t in texts), texts


def test_batch_goes_over_one_connection_byte_exact_with_its_own_envelope(smtp_receiver):
    mails = [_mail(i, f"person{i}@example.net", body=f"Grüße, Nummer {i}") for i in (1, 2, 3)]

    batch = _send(_sender(smtp_receiver), mails)

    assert batch.outage is None
    assert {k: v.outcome for k, v in batch.results.items()} == {i: Outcome.SENT for i in (1, 2, 3)}
    got = smtp_receiver.wait_for(3)
    assert smtp_receiver.connections == 1
    for mail, record in zip(mails, got, strict=True):
        assert record.content == mail.data
        assert record.mail_from == mail.envelope_from
        assert record.rcpt_tos == (mail.recipient,)
        assert record.message["Message-ID"] == f"<row{mail.row_id}@conduct.example.org>"


def test_large_batch_uses_two_connections_yet_mail_is_accepted_one_at_a_time(smtp_receiver):
    """While the hook records one accepted mail, the server accepts no other (a crash then
    repeats at most one mail), even though the second connection is busy with its envelope."""
    mails = [_mail(i, f"person{i}@example.net") for i in range(1, 41)]
    overlaps: list[int] = []
    hooked: list[int] = []

    async def record(row_id: int, result: object) -> None:
        before = len(smtp_receiver.messages)
        await asyncio.sleep(0.005)  # a slow database: the other connection gets to run meanwhile
        overlaps.append(len(smtp_receiver.messages) - before)
        hooked.append(row_id)

    batch = asyncio.run(_sender(smtp_receiver).send_batch(mails, on_result=record))

    assert batch.outage is None
    assert sorted(hooked) == list(range(1, 41))
    assert {r.outcome for r in batch.results.values()} == {Outcome.SENT}
    assert smtp_receiver.connections == 2
    assert overlaps == [0] * 40
    assert sorted(m.rcpt_tos[0] for m in smtp_receiver.wait_for(40)) == sorted(m.recipient for m in mails)


def test_failed_record_ends_the_batch_and_no_further_mail_is_handed_over(smtp_receiver):
    mails = [_mail(i, f"person{i}@example.net") for i in range(1, 41)]

    async def record(row_id: int, result: object) -> None:
        if len(smtp_receiver.messages) == 5:
            raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        asyncio.run(_sender(smtp_receiver).send_batch(mails, on_result=record))
    assert len(smtp_receiver.messages) == 5  # the other connection's envelope was reset, not sent


def test_extra_connection_refused_the_first_goes_on_alone(smtp_receiver):
    """A server that takes one connection per client: no outage, every mail over the first."""
    opened = smtp_receiver._connection_opened
    seen = []

    def one_only() -> None:
        seen.append(1)
        if len(seen) > 1:
            raise ConnectionRefusedError("one connection per client")
        opened()

    smtp_receiver._connection_opened = one_only
    mails = [_mail(i, f"person{i}@example.net") for i in range(1, 41)]
    batch = _send(_sender(smtp_receiver), mails)
    assert batch.outage is None
    assert {r.outcome for r in batch.results.values()} == {Outcome.SENT} and len(batch.results) == 40
    assert len(seen) == 2 and smtp_receiver.connections == 1
    assert len(smtp_receiver.wait_for(40)) == 40


def test_one_connection_when_configured_so(smtp_receiver):
    mails = [_mail(i, f"person{i}@example.net") for i in range(1, 41)]
    batch = _send(_sender(smtp_receiver, connections=1), mails)
    assert len(batch.results) == 40 and smtp_receiver.connections == 1


def test_empty_batch_opens_no_connection(smtp_receiver):
    assert _send(_sender(smtp_receiver), []) == BatchResult({})
    assert smtp_receiver.connections == 0


def test_receiver_down_is_an_outage_and_nothing_is_marked_then_recovers(smtp_receiver):
    sender = _sender(smtp_receiver)
    smtp_receiver.down()

    batch = _send(sender, [_mail(1, "a@example.net"), _mail(2, "b@example.net")])

    assert batch.results == {}
    assert batch.outage and "connect" in batch.outage
    _assert_no_address(batch)

    smtp_receiver.up()
    assert _send(sender, [_mail(1, "a@example.net")]).outage is None
    assert len(smtp_receiver.wait_for(1)) == 1


def test_server_that_never_greets_times_out_as_an_outage():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the TCP handshake but never says 220
        port = silent.getsockname()[1]
        sender = SmtpSender("127.0.0.1", port, "none", None, None, timeout=0.5)

        batch = _send(sender, [_mail(1, "a@example.net")])

    assert batch.results == {}
    assert batch.outage and "timed out" in batch.outage


def test_wrong_password_is_an_outage_with_535(smtp_receiver):
    smtp_receiver.require_auth = ("conduct", "right")
    sender = _sender(smtp_receiver, username="conduct", password="wrong")

    batch = _send(sender, [_mail(1, "a@example.net")])

    assert batch.results == {}
    assert batch.outage == "SMTP AUTH refused (535 5.7.8)"
    assert smtp_receiver.messages == []
    assert asyncio.run(sender.probe()) == "SMTP AUTH refused (535 5.7.8)"


def test_right_password_authenticates_and_sends(smtp_receiver):
    smtp_receiver.require_auth = ("conduct", "right")
    sender = _sender(smtp_receiver, username="conduct", password="right")

    assert asyncio.run(sender.probe()) is None
    assert _send(sender, [_mail(1, "a@example.net")]).outage is None
    assert smtp_receiver.wait_for(1)[0].login == "conduct"


def test_unauthenticated_sender_refused_at_mail_from_is_an_outage(smtp_receiver):
    smtp_receiver.require_auth = ("conduct", "right")

    batch = _send(_sender(smtp_receiver), [_mail(1, "a@example.net")])

    assert batch.results == {}
    assert batch.outage and batch.outage.startswith("SMTP MAIL FROM refused (530")


@pytest.mark.parametrize(
    "reply", ["451 4.3.0 <conduct+bounce-1@example.org> try later", "553 5.7.1 <x@y.z> not yours"]
)
def test_mail_from_refusal_is_an_outage(smtp_receiver, reply):
    smtp_receiver.reject_mail_from = reply

    batch = _send(_sender(smtp_receiver), [_mail(1, "a@example.net"), _mail(2, "b@example.net")])

    assert batch.results == {}
    assert batch.outage == f"SMTP MAIL FROM refused ({reply[:9]})"
    _assert_no_address(batch)


def test_permanently_refused_recipient_is_rejected_others_sent(smtp_receiver):
    smtp_receiver.reject_rcpt["gone@example.net"] = "550 5.1.1 <gone@example.net>: No such user"
    mails = [_mail(1, "a@example.net"), _mail(2, "gone@example.net"), _mail(3, "c@example.net")]

    batch = _send(_sender(smtp_receiver), mails)

    assert batch.outage is None
    assert batch.results[1].outcome is Outcome.SENT
    assert batch.results[3].outcome is Outcome.SENT
    rejected = batch.results[2]
    assert (rejected.outcome, rejected.code) == (Outcome.REJECTED, 550)
    assert "5.1.1" in rejected.reason
    _assert_no_address(batch)
    assert [r.rcpt_tos for r in smtp_receiver.wait_for(2)] == [("a@example.net",), ("c@example.net",)]
    assert smtp_receiver.connections == 1


def test_temporarily_refused_recipient_is_deferred_others_sent(smtp_receiver):
    smtp_receiver.reject_rcpt["busy@example.net"] = "450 4.2.0 <busy@example.net> try later"
    mails = [_mail(1, "busy@example.net"), _mail(2, "b@example.net")]

    batch = _send(_sender(smtp_receiver), mails)

    assert batch.outage is None
    assert (batch.results[1].outcome, batch.results[1].code) == (Outcome.DEFERRED, 450)
    assert batch.results[2].outcome is Outcome.SENT
    _assert_no_address(batch)
    assert smtp_receiver.to("b@example.net") and not smtp_receiver.to("busy@example.net")


def test_permanent_refusal_at_data_is_rejected_and_batch_continues(smtp_receiver):
    smtp_receiver.reject_data = "554 5.7.1 Message from <conduct@example.org> rejected"

    batch = _send(_sender(smtp_receiver), [_mail(1, "a@example.net"), _mail(2, "b@example.net")])

    assert batch.outage is None
    assert [(r.outcome, r.code) for r in batch.results.values()] == [(Outcome.REJECTED, 554)] * 2
    _assert_no_address(batch)


def test_temporary_refusal_at_data_is_an_outage_keeping_earlier_results(smtp_receiver):
    smtp_receiver.reject_rcpt["gone@example.net"] = "550 5.1.1 No such user"
    smtp_receiver.reject_data = "451 4.3.0 <a@example.net> queue full"
    mails = [_mail(1, "gone@example.net"), _mail(2, "a@example.net"), _mail(3, "b@example.net")]

    batch = _send(_sender(smtp_receiver), mails)

    assert batch.outage == "SMTP DATA refused (451 4.3.0)"
    assert list(batch.results) == [1]
    assert batch.results[1].outcome is Outcome.REJECTED


def test_starttls_to_a_server_without_it_is_an_outage_not_plaintext(smtp_receiver):
    smtp_receiver.require_auth = ("conduct", "secret")
    sender = _sender(smtp_receiver, security="starttls", username="conduct", password="secret")

    batch = _send(sender, [_mail(1, "a@example.net")])

    assert batch.outage == "SMTP STARTTLS not offered by the server"
    assert smtp_receiver.messages == []


def test_tls_and_starttls_deliver_encrypted_with_auth(smtp_receiver_tls):
    receiver = smtp_receiver_tls
    receiver.require_auth = ("conduct", "secret")
    sender = _sender(
        receiver,
        security=receiver.security,
        username="conduct",
        password="secret",
        ssl_context=receiver.client_context,
    )

    assert asyncio.run(sender.probe()) is None
    batch = _send(sender, [_mail(1, "a@example.net"), _mail(2, "b@example.net")])

    assert batch.outage is None
    got = receiver.wait_for(2)
    assert all(r.tls and r.login == "conduct" for r in got)
    assert [r.content for r in got] == [_mail(1, "a@example.net").data, _mail(2, "b@example.net").data]


def test_untrusted_certificate_is_an_outage(smtp_receiver_tls):
    receiver = smtp_receiver_tls
    sender = _sender(receiver, security=receiver.security, ssl_context=ssl.create_default_context())

    batch = _send(sender, [_mail(1, "a@example.net")])

    assert batch.results == {}
    assert batch.outage and "TLS" in batch.outage
    assert receiver.messages == []


def test_maildir_sender_writes_readable_files_with_the_envelope(tmp_path):
    folder = tmp_path / "outgoing"
    mails = [_mail(1, "a@example.net", body="Grüße"), _mail(2, "b@example.net")]

    batch = _send(MaildirSender(folder), mails)

    assert batch.outage is None
    assert all(r.outcome is Outcome.SENT for r in batch.results.values())
    assert list((folder / "tmp").iterdir()) == []
    box = mailbox.Maildir(folder, create=False)
    by_id = {}
    for key in box.keys():
        raw = box.get_bytes(key)
        by_id[raw.split(b"Message-ID: ")[1].split(b"\r\n")[0]] = raw
    assert set(by_id) == {b"<row1@conduct.example.org>", b"<row2@conduct.example.org>"}
    first = by_id[b"<row1@conduct.example.org>"]
    assert first.endswith(mails[0].data)
    parsed = message_from_bytes(first, policy=policy.default)
    assert parsed["X-Conduct-Envelope-From"] == "<conduct+bounce-1@example.org>"
    assert parsed["X-Conduct-Envelope-To"] == "<a@example.net>"
    assert "Grüße" in parsed.get_content()


def test_maildir_sender_unwritable_folder_is_an_outage(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")

    batch = _send(MaildirSender(blocker), [_mail(1, "a@example.net")])

    assert batch.results == {}
    assert batch.outage and "@" not in batch.outage


@pytest.mark.parametrize("message", [
    b"Subject: x\r\n\r\nbody\r\n",
    b"Subject: x\r\n\r\nno final line ending",
    b"Subject: x\n\nbare LF\nlines\n",
    b"Subject: x\r\rlone CR\r\n.dot\r\n",
    b"mixed\r\nlf\ncr\rend",
    b"",
    b"\r\n",
    b"\n",
])
def test_line_endings_are_normalised_exactly_as_aiosmtplib_does(message):
    from aiosmtplib import protocol

    from conduct_inbox.adapters import smtp

    assert protocol.normalize_message_line_endings is smtp._normalize_line_endings  # the one DATA uses
    assert smtp._normalize_line_endings(message) == smtp._library_normalize(message)


def test_a_mail_with_crlf_line_endings_is_handed_on_without_a_copy():
    from conduct_inbox.adapters import smtp

    mail = b"Subject: x\r\n\r\n" + b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n" * 100_000
    assert smtp._normalize_line_endings(mail) is mail
