"""compose.build: what a recipient's mail client sees is what the EmailMessage-based version produced.

`_reference_build` is the previous implementation (EmailMessage(policy=SMTP)), kept here as an oracle:
every draft below must parse back (policy=default) to the same headers, body and attachments.
"""

from __future__ import annotations

import email
import re
import timeit
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduct_inbox.mail.compose import Draft, OutgoingAttachment, Sender, build
from conduct_inbox.mail.parse import LOOP_HEADER

SENDER = Sender("conduct@example.org", "Conduct Committee")
DATE = datetime(2026, 3, 2, 9, 14, 51, tzinfo=timezone.utc)
BODY = (
    "Hello Zoë,\n\nThank you for your report. We have received it and a member of the committee will get back "
    "to you within three days. If you have anything to add, reply to this message.\n\n"
    "The committee reviews every report; nothing is shared outside the committee without your consent.\n\n"
    "Kind regards,\nthe Conduct Committee\n"
)


def _reference_build(draft: Draft, sender: Sender, message_id: str, date: datetime) -> bytes:
    """The implementation before the rewrite, verbatim."""

    def _address(addr: str, name: str | None) -> Address:
        local, _, domain = addr.rpartition("@")
        return Address(display_name=name or "", username=local, domain=domain)

    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(sender.address, sender.name)
    msg["To"] = _address(draft.recipient, draft.recipient_name)
    msg["Subject"] = draft.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{message_id}>"
    if draft.reply_to:
        msg["Reply-To"] = draft.reply_to
    if draft.in_reply_to:
        msg["In-Reply-To"] = f"<{draft.in_reply_to}>"
    refs = [r for r in draft.references if r]
    if draft.in_reply_to and draft.in_reply_to not in refs:
        refs.append(draft.in_reply_to)
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs[-20:])
    msg["Auto-Submitted"] = draft.auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = sender.domain
    msg.set_content(draft.body, charset="utf-8", cte="quoted-printable")
    for att in draft.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(
            att.content, maintype=maintype or "application", subtype=subtype or "octet-stream", filename=att.filename
        )
    return msg.as_bytes()


def draft(**kw: object) -> Draft:
    base: dict[str, object] = dict(kind="ack", audience="reporter", recipient="jane.doe@example.com",
                                   subject="[CoC #12] Your report has been received", body=BODY)
    base.update(kw)
    return Draft(**base)  # type: ignore[arg-type]


PDF = OutgoingAttachment("rapport-été.pdf", "application/pdf", b"%PDF-1.4\n" + bytes(range(256)) * 40)
DRAFTS = {
    "ascii": draft(body="Hello,\n\nplain text.\n"),
    "non-ascii subject": draft(subject="[CoC #12] Vorfall mit José beim Treffen in Zürich"),
    "non-ascii subject start and end": draft(subject="Ärger über „Müll“ — ça va? 日本語"),
    "long ascii subject": draft(subject="[CoC #12] " + "a fairly long subject line that goes on " * 6),
    "long non-ascii subject": draft(subject="[CoC #12] Größere Beschwerde über " + "Übergriffe und Äußerungen " * 8),
    "unbreakable subject": draft(subject="x" * 120),
    "empty subject": draft(subject=""),
    "subject with extra spaces": draft(subject="[CoC #12]  two  spaces"),
    "non-ascii display name": draft(recipient_name="Zoë Müller"),
    "display name needing quotes": draft(recipient_name='Smith, "JJ" (events)'),
    "long display name": draft(recipient_name="John Jacob Jingleheimer Schmidt the third of his name, Esq."),
    "long non-ascii display name": draft(recipient_name=("Zoë Müller-Lüdenscheidt " * 4).strip()),
    "non-ascii sender name": draft(),
    "reply thread": draft(
        in_reply_to="CAHk9Xq2xV=f+JpP7yGv1b3K6m0qGQ@mail.gmail.com",
        references=tuple(f"ref{n}.{'x' * 30}@lists.example.net" for n in range(25)),
        reply_to="conduct+c12.a1b2c3@example.org",
        auto_submitted="auto-replied",
    ),
    "attachments": draft(
        attachments=(
            PDF,
            OutgoingAttachment("notes.txt", "text/plain", b"line one\r\nline two\n"),
            OutgoingAttachment("Beweisfoto vom Abend – " + "ä" * 40 + ".jpeg", "image/jpeg", b"\xff\xd8" + b"\x00" * 500),
            OutgoingAttachment("screenshot of the whole conversation thread " * 3 + ".png", "image/png", b"\x89PNG"),
            OutgoingAttachment('quote"and\\slash.txt', "text/plain", b""),
            OutgoingAttachment("raw", "", b"abc"),
        ),
        recipient_name="Zoë Müller",
    ),
    # Larger than one base64 piece (compose._BASE64_PIECE): the pieces must join into the same lines.
    "large attachment": draft(attachments=(OutgoingAttachment("video.mp4", "video/mp4", bytes(range(256)) * 700 + b"end"),)),
    "empty body": draft(body=""),
    "empty body with attachment": draft(body="", attachments=(PDF,)),
    "awkward body": draft(
        body="From the start\n.\nline with trailing spaces   \n=3D not an escape\r\n" + "long " * 60 + "\rend"
    ),
}


def parsed(raw: bytes) -> dict[str, object]:
    msg = email.message_from_bytes(raw, policy=default)
    out: dict[str, object] = {}
    for name in ("From", "To", "Reply-To"):
        header = msg[name]
        out[name] = None if header is None else [(a.display_name, a.addr_spec) for a in header.addresses]
    for name in ("Subject", "Message-ID", "In-Reply-To", "Auto-Submitted", "X-Auto-Response-Suppress",
                 LOOP_HEADER, "MIME-Version"):
        out[name] = None if msg[name] is None else str(msg[name])
    out["References"] = None if msg["References"] is None else str(msg["References"]).split()
    out["Date"] = msg["Date"].datetime
    out["names"] = sorted(k.lower() for k in msg.keys())
    body = msg.get_body(("plain",))
    out["body"] = body.get_content()
    out["body type"] = (body.get_content_type(), body.get_content_charset())
    out["attachments"] = [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True)) for part in msg.iter_attachments()
    ]
    out["defects"] = [type(d).__name__ for part in msg.walk() for d in part.defects]
    return out


def _decoded_to(raw: bytes) -> str:
    """The To header with RFC 2047 decoded the compat32 way.

    Python 3.11's policy=default address parser keeps the space between two adjacent encoded-words
    in a display name (CPython gh-128110), for the old and the new output alike, so display names
    longer than one encoded-word are checked with the older decoder, which follows RFC 2047 6.2.
    """
    value = email.message_from_bytes(raw)["To"]
    return str(make_header(decode_header(re.sub(r"\r\n(?=[ \t])", "", value))))


def _mailbox(name: str | None, addr: str) -> str:
    if not name:
        return addr
    if any(c in name for c in '()<>@,:;."[]\\') and name.isascii():
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>"


@pytest.mark.parametrize("name", list(DRAFTS))
def test_parses_back_like_the_emailmessage_version(name: str) -> None:
    d = DRAFTS[name]
    sender = Sender(SENDER.address, "Comité de conduite") if name == "non-ascii sender name" else SENDER
    new = parsed(build(d, sender, "abc123@example.org", DATE))
    old = parsed(_reference_build(d, sender, "abc123@example.org", DATE))
    assert new == old
    assert new["Subject"] == d.subject
    assert _decoded_to(build(d, sender, "abc123@example.org", DATE)) == _mailbox(d.recipient_name, d.recipient)


@pytest.mark.parametrize("name", list(DRAFTS))
def test_wire_format(name: str) -> None:
    raw = build(DRAFTS[name], SENDER, "abc123@example.org", DATE)
    assert b"\r\n" in raw and not re.search(rb"\r(?!\n)|(?<!\r)\n", raw), "CRLF line endings only"
    assert raw.isascii()
    for line in raw.decode("ascii").split("\r\n"):  # headers of every part, and the encoded bodies
        if not line.startswith(("References:", "In-Reply-To:", " <ref")):
            assert len(line) <= 78, line
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    assert "Subject: [CoC #12]" in head or not DRAFTS[name].subject.startswith("[CoC #12]"), "ASCII words stay readable"
    assert "Content-Transfer-Encoding: quoted-printable" in head or DRAFTS[name].attachments


def test_exact_headers_of_a_typical_reply() -> None:
    d = DRAFTS["reply thread"]
    raw = build(d, SENDER, "abc123@example.org", DATE)
    msg = email.message_from_bytes(raw, policy=default)
    assert msg["From"] == "Conduct Committee <conduct@example.org>"
    assert msg["Date"] == "Mon, 02 Mar 2026 09:14:51 +0000"
    assert msg["Message-ID"] == "<abc123@example.org>"
    assert msg["Reply-To"] == "conduct+c12.a1b2c3@example.org"
    assert msg["In-Reply-To"] == "<CAHk9Xq2xV=f+JpP7yGv1b3K6m0qGQ@mail.gmail.com>"
    refs = str(msg["References"]).split()
    assert len(refs) == 20 and refs[-1] == "<CAHk9Xq2xV=f+JpP7yGv1b3K6m0qGQ@mail.gmail.com>"
    assert refs[0] == f"<ref6.{'x' * 30}@lists.example.net>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg[LOOP_HEADER] == "example.org"
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"


def test_body_bytes_unchanged() -> None:
    """The quoted-printable body is byte for byte what EmailMessage.set_content wrote."""
    for name in ("ascii", "awkward body", "empty body", "non-ascii subject"):
        new = build(DRAFTS[name], SENDER, "abc123@example.org", DATE).split(b"\r\n\r\n", 1)[1]
        old = _reference_build(DRAFTS[name], SENDER, "abc123@example.org", DATE).split(b"\r\n\r\n", 1)[1]
        assert new == old, name


def test_rfc2231_filename_for_non_ascii() -> None:
    raw = build(draft(attachments=(PDF,)), SENDER, "abc123@example.org", DATE)
    assert b"filename*=utf-8''rapport-%C3%A9t%C3%A9.pdf" in raw
    msg = email.message_from_bytes(raw, policy=default)
    assert msg.get_content_type() == "multipart/mixed"
    assert [p.get_filename() for p in msg.iter_attachments()] == ["rapport-été.pdf"]


INJECTIONS = ["x\r\nBcc: victim@example.net", "x\nBcc: victim@example.net", "x\rBcc: victim@example.net",
              "x\r\n\r\nbody", "trailing\n", "x\u2028Bcc: v@example.net", "x\x0bBcc: v@example.net"]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("where", ["subject", "recipient_name", "sender_name", "filename"])
def test_line_breaks_in_free_text_become_spaces_and_start_no_header(where: str, value: str) -> None:
    """A subject or name taken from a report is sent on, on one line: never a failure, never a header."""
    sender = SENDER
    kw: dict[str, object] = {}
    if where == "sender_name":
        sender = Sender(SENDER.address, value)
    elif where == "filename":
        kw["attachments"] = (OutgoingAttachment(filename=value, content_type="text/plain", content=b"x"),)
    else:
        kw[where] = value
    raw = build(draft(**kw), sender, "abc123@example.org", DATE)
    head = raw.split(b"\r\n\r\n", 1)[0]
    msg = email.message_from_bytes(raw, policy=default)
    assert msg["Bcc"] is None and b"\nBcc:" not in head and b"\rBcc:" not in head
    assert all(b"\r" not in line and b"\n" not in line for line in raw.split(b"\r\n"))


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("where", ["reply_to", "in_reply_to", "references", "content_type", "recipient"])
def test_line_breaks_in_header_values_are_refused(where: str, value: str) -> None:
    sender = SENDER
    kw: dict[str, object] = {}
    if where == "sender_name":
        sender = Sender(SENDER.address, value)
    elif where == "references":
        kw["references"] = (value,)
    elif where in ("filename", "content_type"):
        att = {"filename": "a.txt", "content_type": "text/plain", "content": b"x"} | {where: value}
        kw["attachments"] = (OutgoingAttachment(**att),)  # type: ignore[arg-type]
    elif where == "recipient":
        kw["recipient"] = value + "@example.com"
    else:
        kw[where] = value
    with pytest.raises(ValueError):
        build(draft(**kw), sender, "abc123@example.org", DATE)


def test_header_lookalikes_stay_inside_their_header() -> None:
    """Without line breaks, text that looks like a header is just part of the value."""
    d = draft(subject="x Bcc: victim@example.net", recipient_name="Eve Bcc: victim@example.net")
    msg = email.message_from_bytes(build(d, SENDER, "abc123@example.org", DATE), policy=default)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "x Bcc: victim@example.net"
    assert msg["To"].addresses[0].display_name == "Eve Bcc: victim@example.net"


def test_non_ascii_address_keeps_the_old_output() -> None:
    d = draft(recipient="zoë@exämple.com", recipient_name="Zoë")
    assert parsed(build(d, SENDER, "abc123@example.org", DATE)) == parsed(_reference_build(d, SENDER, "abc123@example.org", DATE))


HEADER_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"), max_size=150
).map(lambda s: " ".join(s.split())).filter(lambda s: "=?" not in s)


@settings(max_examples=150, deadline=None)
@given(subject=HEADER_TEXT, name=HEADER_TEXT)
def test_any_subject_and_display_name_round_trip(subject: str, name: str) -> None:
    raw = build(draft(subject=subject, recipient_name=name), SENDER, "abc123@example.org", DATE)
    msg = email.message_from_bytes(raw, policy=default)
    assert msg["Subject"] == subject
    assert _decoded_to(raw) == _mailbox(name, "jane.doe@example.com")
    if len(name) < 10:  # one encoded-word at most: the policy=default parser gets it right too
        assert [(a.display_name, a.addr_spec) for a in msg["To"].addresses] == [(name, "jane.doe@example.com")]
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert all(len(line) <= 78 for line in head.split("\r\n")), head


def test_at_least_four_times_faster_than_emailmessage() -> None:
    d = draft(subject="[CoC #12] Vorfall mit José beim Treffen", recipient_name="Zoë Müller",
              in_reply_to="a@example.com", reply_to="conduct+t@example.org")
    new = min(timeit.repeat(lambda: build(d, SENDER, "abc@example.org", DATE), number=200, repeat=5))
    old = min(timeit.repeat(lambda: _reference_build(d, SENDER, "abc@example.org", DATE), number=200, repeat=5))
    assert new * 4 < old, f"build {new / 200 * 1e6:.0f} us vs EmailMessage {old / 200 * 1e6:.0f} us"


def test_date_keeps_the_offset() -> None:
    when = datetime(2026, 7, 1, 23, 30, tzinfo=timezone(timedelta(hours=2)))
    msg = email.message_from_bytes(build(draft(), SENDER, "abc123@example.org", when), policy=default)
    assert msg["Date"].datetime == when


def test_copies_sharing_attachments_encode_them_once_and_equal_separate_builds() -> None:
    """enqueue_all builds each member's copy with one `encoded` cache: same bytes as alone."""
    d = DRAFTS["large attachment"]
    encoded: dict[int, bytes] = {}
    first = build(d, SENDER, "one@example.org", DATE, encoded)
    second = build(d, SENDER, "two@example.org", DATE, encoded)
    assert list(encoded) == [id(d.attachments[0])]
    assert first == build(d, SENDER, "one@example.org", DATE)
    assert second == build(d, SENDER, "two@example.org", DATE)
