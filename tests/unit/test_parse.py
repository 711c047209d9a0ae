"""parse() over the .eml corpus (one edge case per file) plus hostile and huge input."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduct_inbox.errors import MalformedMessage
from conduct_inbox.mail.parse import LOOP_HEADER, REPLY_MARKER, InboundMessage, parse

CORPUS = Path(__file__).parent.parent / "data" / "eml"

#: What a user would notice for each corpus file. Keys other than the special ones below are
#: InboundMessage fields compared for equality. Special keys:
#:   text_has / own_has / own_lacks: substrings of text / own_text
#:   attachments: [(filename, content_type, size, inline)]
#:   forwarded: [(from_address, subject)] ; forwarded_text_has: substring of the first one
#:   defects: True when some defect must be recorded
EXPECTED: dict[str, dict[str, object]] = {
    "clients/gmail-multipart-alternative.eml": {
        "subject": "Incident at the Berlin meetup",
        "reporter_address": "jane.doe@gmail.com",
        "reporter_name": "Jane Doe",
        "message_id": "CAHk9Xq2xV=f+JpP7yGv1b3K6m0qGQ@mail.gmail.com",
        "date": datetime(2026, 3, 2, 9, 14, 51, tzinfo=timezone.utc),
        "text_has": ["a speaker made jokes about my accent in front of everyone."],
        "own_has": ["I would like the committee to look into it."],
        "html_converted": False,
        "attachments": [],
        "defects": False,
    },
    "clients/outlook-html-only.eml": {
        "from_name": "Renée Martin",
        "reporter_address": "renee.martin@contoso.com",
        "html_converted": True,
        "text_has": ["He made repeated comments about my appearance at the sprint", "Friday evening at the venue"],
        "text_lacks": ["alert(", "MsoNormal", "font-family"],
        "own_has": ["Saturday in the project channel"],
    },
    "clients/apple-mail.eml": {
        "reporter_address": "sam@icloud.com",
        "text_has": ["keeps sending me private messages after I asked them to stop.", "Thanks for your help \u2013 Sam"],
        "html_converted": False,
        "attachments": [],
    },
    "clients/mutt-plain.eml": {
        "reporter_address": "kim@example.net",
        "text_has": ['calling their work "garbage" in public.', "Kim Novak"],
        "own_has": ["Links are below."],
        "own_lacks": ["Kim Novak", "https://example.net/~kim"],
    },
    "charsets/windows-1252.eml": {"text_has": ["\u201cwomen can\u2019t code\u201d", "\u20ac50"], "defects": False},
    "charsets/iso-8859-1.eml": {"text_has": ["\u201cthe caf\u00e9 girl\u201d"]},
    "charsets/undeclared-8bit.eml": {
        "subject": "Vorfall in Z\u00fcrich",
        "text_has": ["Beim Treffen in Z\u00fcrich wurde ich beleidigt."],
        "defects": True,
    },
    "charsets/rfc2047-subject.eml": {
        "subject": "Re: [conduct #2026-0007] \u00dcbergriff beim Workshop \U0001f641",
        "case_ref": "2026-0007",
        "from_name": "\u674e\u7f8e",
    },
    "charsets/unknown-charset.eml": {"text_has": ["Na\u00efve r\u00e9sum\u00e9 of what happened."], "defects": True},
    "charsets/invalid-utf8.eml": {
        "text_has": ["Before \ufffd\ufffd broken bytes, after them the report continues."],
        "defects": True,
    },
    "forwarded/gmail-forward-inline.eml": {
        "reporter_address": "alice.member@gmail.com",
        "own_has": ["opening a case for her."],
        "own_lacks": ["followed me to the hotel", "Forwarded message"],
        "forwarded": [("jane.doe@example.net", "Harassment at the meetup")],
        "forwarded_text_has": "someone followed me to the hotel after the meetup.",
    },
    "forwarded/attached-rfc822.eml": {
        "own_has": ["see the original below."],
        "text_lacks": ["slurs"],
        "forwarded": [("chris@example.com", "Need help \u2013 slurs in the forum")],
        "forwarded_text_has": "posting slurs in the forum every day this week.",
        "attachments": [("forum-screenshot.png", "image/png", 70, False)],
    },
    "attachments/inline-image.eml": {
        "text_has": ["Here is the message he sent me:"],
        "attachments": [("screenshot.png", "image/png", 70, True)],
    },
    "attachments/pdf-attachment.eml": {
        "text_has": ["My written statement is attached as a PDF."],
        "text_lacks": ["10:20 the comment"],
        "attachments": [
            ("Aussage M\u00fcller.pdf", "application/pdf", 977, False),
            ("timeline.txt", "text/plain", 36, False),
        ],
    },
    "headers/no-message-id.eml": {
        "message_id": None,
        "date": None,
        "from_address": "form@webform.example.org",
        "reply_to": "anon.reporter@example.com",
        "reporter_address": "form@webform.example.org",
        "text_has": ["a volunteer shouted at attendees"],
    },
    "headers/bad-date.eml": {"date": None, "defects": True, "message_id": "bad-date-1@example.com"},
    "headers/header-injection.eml": {
        "subject": "Hello Bcc: victim@example.net",
        "from_address": "evil@example.com",
        "reporter_address": "evil@example.com",
        "to": ("conduct@example.org",),
        "cc": (),
    },
    "headers/own-loop.eml": {"loop_header": True, "auto_submitted": "auto-replied", "case_ref": "2026-0007"},
    "broken/broken-boundary.eml": {
        "text_has": ["The organiser ignored my complaint about the harassment."],
        "attachments": [],
        "defects": True,
    },
    "broken/truncated.eml": {
        "text_has": ["Recording of the incident attached."],
        "attachment_names": ["recording.mp3"],
        "defects": True,
    },
    "groups/google-groups-dmarc-munged.eml": {
        "from_address": "conduct-reports@googlegroups.com",
        "reporter_address": "jane.doe@yahoo.com",
        "reporter_name": "Jane Doe",
        "list_id": "<conduct-reports.googlegroups.com>",
        "precedence": "list",
        "has_list_headers": True,
        "own_has": ["touched me without consent."],
        "own_lacks": ["You received this message because"],
    },
    "groups/mailman-x-original-from.eml": {"reporter_address": "omar@example.edu", "reporter_name": "Omar Haddad"},
    "auto/vacation-outlook.eml": {
        "return_path": "",
        "auto_submitted": "auto-generated",
        "is_dsn": False,
        "in_reply_to": ("case-2026-0011.ack.1@example.org",),
        "case_ref": "2026-0011",
    },
    "auto/auto-submitted.eml": {"auto_submitted": "auto-replied", "has_list_headers": False, "case_ref": None},
    "auto/precedence-bulk.eml": {"precedence": "bulk", "has_list_headers": False},
    "auto/list-mail.eml": {"has_list_headers": True, "list_id": "Developers <dev.lists.example.org>", "precedence": "list"},
    "dsn/postfix-bounce.eml": {
        "is_dsn": True,
        "return_path": "",
        "dsn_failed_recipients": ("reported.person@example.net",),
        "dsn_original_message_id": "case-2026-0007.send.42@example.org",
        "dsn_permanent": True,
        "delivered_to": ("conduct+bounce-42@example.org",),
        "forwarded": [],
        "attachments": [],
    },
    "dsn/exim-bounce.eml": {
        "is_dsn": True,
        "dsn_failed_recipients": ("witness@example.co.uk",),
        "dsn_original_message_id": "case-2026-0007.send.43@example.org",
        "dsn_permanent": True,
    },
    "dsn/delayed.eml": {
        "is_dsn": True,
        "dsn_failed_recipients": ("slow@example.net",),
        "dsn_permanent": False,
        "dsn_original_message_id": "case-2026-0009.ack.1@example.org",
    },
    "spam/x-spam-flag.eml": {"is_dsn": False, "header:x-spam-flag": "YES", "header:X-Spam-Score": "12.4"},
    "replies/gmail-reply-with-quote.eml": {
        "case_ref": "2026-0007",
        "in_reply_to": ("case-2026-0007.ack.1@example.org",),
        "references": ("case-2026-0007.ack.1@example.org",),
        "text_has": ["Your case reference is 2026-0007."],
        "own_has": ["the speaker was wearing a blue badge."],
        "own_lacks": ["Your case reference", "wrote:"],
    },
    "replies/outlook-html-reply.eml": {
        "case_ref": "2026-0011",
        "html_converted": True,
        "own_has": ["I can attend a call on Thursday afternoon."],
        "own_lacks": ["Thank you for your report", "From:"],
    },
    "replies/reply-with-marker.eml": {
        "case_ref": "2026-0007",
        "own_has": ["We have opened an investigation and will contact\nyou again by Friday."],
        "own_lacks": [REPLY_MARKER, "Excluded", "report text follows"],
    },
}

_SPECIAL = {"text_has", "text_lacks", "own_has", "own_lacks", "attachments", "attachment_names", "forwarded",
            "forwarded_text_has", "defects"}


def _corpus_files() -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.eml"))


def test_every_corpus_file_has_expectations() -> None:
    assert set(_corpus_files()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    msg = parse(raw)
    want = EXPECTED[name]
    for key, value in want.items():
        if key.startswith("header:"):
            assert msg.header(key[7:]) == value, key
        elif key not in _SPECIAL:
            assert getattr(msg, key) == value, key
    for part in want.get("text_has", []):
        assert part in msg.text
    for part in want.get("text_lacks", []):
        assert part not in msg.text
    for part in want.get("own_has", []):
        assert part in msg.own_text
    for part in want.get("own_lacks", []):
        assert part not in msg.own_text
    if "attachments" in want:
        assert [(a.filename, a.content_type, a.size, a.inline) for a in msg.attachments] == want["attachments"]
        for a in msg.attachments:
            assert a.sha256 == hashlib.sha256(a.content).hexdigest() and len(a.content) == a.size
    if "attachment_names" in want:
        assert [a.filename for a in msg.attachments] == want["attachment_names"]
    if "forwarded" in want:
        assert [(f.from_address, f.subject) for f in msg.forwarded] == want["forwarded"]
    if "forwarded_text_has" in want:
        assert want["forwarded_text_has"] in msg.forwarded[0].text
    if "defects" in want:
        assert bool(msg.defects) is want["defects"], msg.defects
    _check_invariants(msg, raw)


def _check_invariants(msg: InboundMessage, raw: bytes) -> None:
    """What every parse result promises, whatever the input."""
    assert msg.size == len(raw)
    assert len(msg.body_hash) == 64
    for value in (msg.subject, msg.text, msg.own_text, *(v for _, v in msg.headers)):
        assert "\x00" not in value
        value.encode("utf-8")  # no lone surrogates: storable anywhere
    for _, value in msg.headers:
        assert "\n" not in value and "\r" not in value
    assert "\n" not in msg.subject
    assert msg.date is None or msg.date.tzinfo is not None
    for addr in (*msg.to, *msg.cc, *msg.delivered_to, msg.from_address or "", msg.reporter_address or ""):
        assert addr == addr.lower() and "\n" not in addr


# --- specific behaviour -------------------------------------------------------------------------


def _mail(headers: str, body: str = "Body text.\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode("utf-8")


def test_case_tag_is_configurable_and_tolerant() -> None:
    for subject in ("AW: SV: Fwd: [ Ethics  #  2026-0123 ] hello", "re:[ETHICS #2026-0123]"):
        assert parse(_mail(f"From: a@example.org\nSubject: {subject}"), case_tag="ethics").case_ref == "2026-0123"
    assert parse(_mail("From: a@example.org\nSubject: [conduct #2026-0123]"), case_tag="ethics").case_ref is None
    assert parse(_mail("From: a@example.org\nSubject: [conduct 2026-0123]")).case_ref is None


def test_repeated_delivery_has_same_body_hash_whatever_the_line_endings() -> None:
    lf = _mail("From: a@example.org\nSubject: x\nMessage-ID: <same@x>", "line one\nline two\n")
    crlf = lf.replace(b"\n", b"\r\n")
    other = _mail("From: a@example.org\nSubject: x\nMessage-ID: <same@x>", "different\n")
    assert parse(lf).body_hash == parse(crlf).body_hash != parse(other).body_hash
    assert parse(crlf).message_id == "same@x"


def test_loop_header_constant() -> None:
    assert parse(_mail(f"From: a@example.org\n{LOOP_HEADER}: example.org")).loop_header
    assert not parse(_mail("From: a@example.org")).loop_header


def test_headers_keep_order_and_lookup_is_case_insensitive() -> None:
    msg = parse(_mail(
        "Delivered-To: Conduct+Tok@Example.org\nDelivered-To: conduct@example.org\n"
        "Authentication-Results: first\nAuthentication-Results: second\nFrom: a@example.org\nX-Spam-Flag: NO"
    ))
    assert msg.delivered_to == ("conduct+tok@example.org", "conduct@example.org")
    assert msg.authentication_results == ("first", "second")
    assert msg.header("x-spam-flag") == "NO" and msg.header("Missing") is None
    assert [k for k, _ in msg.headers][:2] == ["Delivered-To", "Delivered-To"]


def test_return_path_forms() -> None:
    assert parse(_mail("Return-Path: <>\nFrom: a@example.org")).return_path == ""
    assert parse(_mail("Return-Path: <Bounce@Example.org>\nFrom: a@example.org")).return_path == "bounce@example.org"
    assert parse(_mail("From: a@example.org")).return_path is None


@pytest.mark.parametrize("raw", [
    b"", b"   \r\n\r\n", b"\x00\x01\x02binary junk\xff" * 10, b"just a line of text\n\nbody",
    b"\n\nFrom: a@example.org\n", b"From: a@example.org\x00\n\nbody", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
])
def test_not_mail_raises_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse(raw)


def test_mbox_separator_line_is_tolerated() -> None:
    msg = parse(b"From jane@example.org Mon Mar  2 10:00:00 2026\nFrom: jane@example.org\nSubject: hi\n\nbody\n")
    assert msg.from_address == "jane@example.org" and msg.subject == "hi"


def test_hostile_headers_are_survived() -> None:
    # (how long these take is benchmarks/linear.py's)
    cases = [
        "Subject: " + "=?utf-8?q?" * 20_000,
        "Subject: " + "=?utf-8?b?!!!?= " * 5000,
        "To: " + "(" * 5000 + "a@example.org",
        "To: " + ", ".join(f"user{i}@example.org" for i in range(3000)),
        "To: " + '"' * 20_000,
        "Subject: " + "x" * 2_000_000,
        "Date: " + "9" * 10_000,
        "References: " + "<" * 50_000,
        "From: " + "a" * 10_000 + "@" + "b" * 10_000,
    ]
    for header in cases:
        msg = parse(_mail("Message-ID: <id@x>\n" + header))
        _check_invariants(msg, _mail("Message-ID: <id@x>\n" + header))
    huge = parse(_mail("Subject: " + "x" * 2_000_000))
    assert "oversized header truncated" in huge.defects


def test_hostile_bodies_are_survived() -> None:
    nested = "--b0\n" + "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(1, 3000))
    top = 'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b0"'
    bodies = [
        ("Content-Type: text/plain", "On " + " a" * 100_000 + "\n" + "\n" * 100_000 + "> " * 50_000),
        ("Content-Type: text/html", "<div>" * 50_000 + "deep" + "</div>" * 10),
        ("Content-Type: text/html", "<blockquote>" * 5000 + "x"),
        ("Content-Type: text/plain; charset=utf-7", "+AGEAYgBj-" * 1000 + "+////"),
        ("Content-Type: text/plain\nContent-Transfer-Encoding: base64", "!!!not base64===" * 100),
        ("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable", "=ZZ=\n=" * 1000),
        ("Content-Type: multipart/mixed", "no boundary parameter at all"),
        (top, nested + "Content-Type: text/plain\n\ndeepest text\n"),
    ]
    for headers, body in bodies:
        raw = _mail("From: a@example.org\nSubject: s\n" + headers, body)
        msg = parse(raw)
        _check_invariants(msg, raw)
    deep = parse(_mail("From: a@example.org\n" + top, nested + "Content-Type: text/plain\n\nx\n"))
    assert deep.defects
    shallow = "--b0\n" + "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(1, 10))
    assert parse(_mail("From: a@example.org\n" + top, shallow + "Content-Type: text/plain\n\nfound me\n")).text == "found me"


def test_a_twenty_megabyte_attachment_is_read_whole() -> None:
    # (the memory it takes, through the whole daemon, is benchmarks/bigmail.py's)
    payload = bytes(range(256)) * (20 * 1024 * 1024 // 256)
    encoded = base64.encodebytes(payload).decode()
    raw = _mail(
        'From: a@example.org\nSubject: big\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"',
        "--b\nContent-Type: text/plain\n\nVideo attached.\n--b\nContent-Type: video/mp4\n"
        'Content-Disposition: attachment; filename="clip.mp4"\nContent-Transfer-Encoding: base64\n\n'
        + encoded + "--b--\n",
    )
    del encoded
    msg = parse(raw)
    assert msg.text == "Video attached."
    [clip] = msg.attachments
    assert (clip.filename, clip.size, clip.sha256) == ("clip.mp4", len(payload), hashlib.sha256(payload).hexdigest())


# --- property: never anything but MalformedMessage ---------------------------------------------

_SEEDS = [(CORPUS / name).read_bytes() for name in sorted(EXPECTED)]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "junk", "dup"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "junk":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "dup" and data:
            end = draw(st.integers(at, min(len(data), at + 200)))
            data[at:at] = data[at:end] * draw(st.integers(1, 20))
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_corpus_never_raises_anything_else(raw: bytes) -> None:
    try:
        msg = parse(raw)
    except MalformedMessage:
        return
    _check_invariants(msg, raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise_anything_else(raw: bytes) -> None:
    try:
        parse(b"From: a@example.org\n" + raw)
        parse(raw)
    except MalformedMessage:
        pass
