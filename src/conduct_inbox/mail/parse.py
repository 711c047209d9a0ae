"""Raw RFC 5322 bytes to an `InboundMessage`: pure (no I/O, no clock) and forgiving.

Mail from the wild has wrong or unknown charsets, broken MIME, broken encoded-words, bad
dates and junk; none of that raises: text is decoded with replacement and a short defect is
recorded. Only input that is not a mail message at all raises `MalformedMessage`.

The message is read with the compat32 policy and headers are decoded by our own code
(headers.py): policy.default's header parser raises on, and is slow for, hostile header values
(the very input we must survive), while compat32 keeps raw values we decode with linear-time code.

This module is the entry point: it reads the input in chunks (checks that it is mail, hashes
the body, feeds the MIME parser through the blob filter) and assembles the `InboundMessage`
from the header helpers (headers.py) and the MIME walk (mime.py).
"""

from __future__ import annotations

import email
import email.feedparser
import email.parser
import hashlib
import io
import os
import re
from collections.abc import Callable
from email.message import Message
from email.policy import compat32
from typing import BinaryIO

from conduct_inbox.errors import MalformedMessage
from conduct_inbox.mail import dsn, quotes
from conduct_inbox.mail.blobs import _BlobFilter, _Blobs
from conduct_inbox.mail.charsets import Defects, fold_spaces
from conduct_inbox.mail.extract import HTML_VERSION_LINE
from conduct_inbox.mail.headers import (
    _addresses,
    _date,
    _first,
    _header_items,
    _message_ids,
    _raw_values,
    _reporter,
    case_ref_in,
)
from conduct_inbox.mail.inbound import Attachment, ForwardedMessage, InboundMessage, Readable
from conduct_inbox.mail.limits import _BLOB_MIN, _FEED_CHUNK, _HEAD_BYTES, TEXT_SCAN_BYTES
from conduct_inbox.mail.mime import _Body, _body, _Collected, _inline_forwards, _mime_defects, _walk
from conduct_inbox.mail.quotes import REPLY_MARKER

__all__ = [
    "LOOP_HEADER", "REPLY_MARKER", "TEXT_SCAN_BYTES", "Attachment", "ForwardedMessage", "InboundMessage", "Readable",
    "parse", "parse_file",
]

#: Header we put on everything we send, so our own mail coming back is recognised.
LOOP_HEADER = "X-Conduct-Inbox-Loop"

_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]{1,200}[ \t]*:")


# --- the header block --------------------------------------------------------------------------


def _body_offset(raw: bytes) -> int:
    """Where the body starts: after the first empty line (len(raw) when there is none)."""
    candidates = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    if not candidates:
        return len(raw)
    at = min(candidates)
    return at + (2 if raw.startswith(b"\n\n", at) else 3)


def _check_is_mail(first: bytes, stream: BinaryIO) -> None:
    """`first`: the first _HEAD_BYTES of the input, `stream` the rest."""
    if not first or first.isspace():
        while chunk := stream.read(_FEED_CHUNK):
            if not chunk.isspace():
                raise MalformedMessage("no header block")
        raise MalformedMessage("empty input")
    head = first[: min(_body_offset(first), 1 << 20)]
    start = 0
    if head.startswith(b"From "):  # an mbox separator line
        start = head.find(b"\n") + 1
        if start == 0:
            raise MalformedMessage("no header block")
    if not _FIELD_LINE.match(head, start):
        raise MalformedMessage("no header block")
    if b"\x00" in head:
        raise MalformedMessage("binary data in the header block")

# --- reading the input -------------------------------------------------------------------------


class _BodyScan:
    """Size, body offset and body hash (CRLF as LF) of input seen one chunk at a time."""

    def __init__(self) -> None:
        self.size = 0
        self.body_at: int | None = None
        self._tail = b""
        self._digest = hashlib.sha256()
        self._carry = b""

    def update(self, chunk: bytes) -> None:
        start = self.size
        self.size += len(chunk)
        if self.body_at is None:
            window = self._tail + chunk
            found = [i for i in (window.find(b"\n\n"), window.find(b"\n\r\n")) if i >= 0]
            if not found:
                self._tail = window[-2:]
                return
            at = min(found)
            self.body_at = start - len(self._tail) + at + (2 if window.startswith(b"\n\n", at) else 3)
            chunk = chunk[self.body_at - start :]
        data = self._carry + chunk
        # A CR at the chunk's end may pair with an LF at the next one's start.
        self._carry = b"\r" if data.endswith(b"\r") else b""
        self._digest.update(data[: len(data) - len(self._carry)].replace(b"\r\n", b"\n"))

    def body_hash(self) -> str:
        digest = self._digest.copy()
        digest.update(self._carry)
        return digest.hexdigest()


def _read_chunk(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    while data and len(data) < size:  # a short read is not the end of a file
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data


# --- entry point -------------------------------------------------------------------------------


def _message(stream: BinaryIO, head: bytes, scan: _BodyScan, blobs: _Blobs, defects: Defects) -> Message:
    """Feed the MIME parser from `stream` (`head` already read), in chunks: message_from_bytes
    decodes and splits the whole input at once, which peaks near eight times the size of a
    message with a large attachment. Large base64 bodies go through _BlobFilter."""
    parser = email.feedparser.BytesFeedParser(policy=compat32)
    # A message read whole in `head` and shorter than _BLOB_MIN has no body that long.
    blob_filter = None if len(head) < min(_HEAD_BYTES, _BLOB_MIN) else _BlobFilter(parser.feed, blobs)
    feed: Callable[[bytes], object] = parser.feed if blob_filter is None else blob_filter.feed
    failure: str | None = None
    chunks = (head[i : i + _FEED_CHUNK] for i in range(0, len(head), _FEED_CHUNK))
    while chunk := next(chunks, b"") or _read_chunk(stream, _FEED_CHUNK):
        scan.update(chunk)
        if failure is None:
            try:
                feed(chunk)
            except RecursionError:
                failure = "MIME structure too deep; body read as plain text"
            except Exception:  # the email package on input it did not foresee
                failure = "unparseable MIME structure; body read as plain text"
    if failure is None:
        try:
            if blob_filter is not None:
                blob_filter.close()
            return parser.close()
        except RecursionError:
            failure = "MIME structure too deep; body read as plain text"
        except Exception:  # the email package on input it did not foresee
            failure = "unparseable MIME structure; body read as plain text"
    defects.add(failure)
    blobs.items.clear()
    del parser, feed, blob_filter
    stream.seek(0)
    raw = stream.read()
    body_at = scan.size if scan.body_at is None else scan.body_at
    msg = email.parser.BytesHeaderParser(policy=compat32).parsebytes(raw[:body_at])
    for name in ("Content-Type", "Content-Transfer-Encoding"):
        del msg[name]
    msg.set_payload(raw[body_at:].decode("ascii", "surrogateescape"))
    return msg


def parse(raw: bytes, *, case_tag: str = "conduct", max_attachment_bytes: int | None = None) -> InboundMessage:
    """Parse one received message; raises MalformedMessage only when `raw` is not mail at all.

    Attachments larger than `max_attachment_bytes` (None: no limit) come without their content
    (`content_omitted`), except text attachments up to TEXT_SCAN_BYTES."""
    data = bytes(raw)
    return _parse(io.BytesIO(data), case_tag, max_attachment_bytes)


def parse_file(file: str | os.PathLike[str] | BinaryIO, *, case_tag: str = "conduct",
               max_attachment_bytes: int | None = None) -> InboundMessage:
    """parse() of a message in a file (a path, or a binary file open at its start that can seek),
    read in chunks: the whole message is never in memory."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as stream:
            return _parse(stream, case_tag, max_attachment_bytes)
    return _parse(file, case_tag, max_attachment_bytes)


def _parse(stream: BinaryIO, case_tag: str, max_attachment_bytes: int | None) -> InboundMessage:
    head = _read_chunk(stream, _HEAD_BYTES)
    _check_is_mail(head, stream)
    defects = Defects()
    limit = max_attachment_bytes
    blobs = _Blobs(None if limit is None else max(limit, TEXT_SCAN_BYTES))
    scan = _BodyScan()
    msg = _message(stream, head, scan, blobs, defects)
    del head
    _mime_defects(msg, defects)

    headers = _header_items(msg, defects)

    def first(name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in headers if k.lower() == wanted), None)

    def all_of(name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(v for k, v in headers if k.lower() == wanted)

    subject = fold_spaces(first("Subject") or "")
    from_ = _first(_addresses(_raw_values(msg, "From", defects), defects))
    reply_to = _first(_addresses(_raw_values(msg, "Reply-To", defects), defects))
    reporter_address, reporter_name = _reporter(msg, from_, reply_to, defects)
    return_path_value = first("Return-Path")
    return_path: str | None = None
    if return_path_value is not None:
        rp = _addresses([return_path_value], defects)
        return_path = rp[0][1] if rp else ("" if "<>" in return_path_value.replace(" ", "") else None)

    found = _Collected(blobs, limit)
    _walk(msg, 0, True, found, defects, 0)
    blobs.items.clear()
    body = _body(found, defects, own=True)
    text, converted = body.text, body.converted
    own = _own_text(body)
    forwarded = found.forwarded + _inline_forwards(text, subject, defects)

    bounce = dsn.analyse(msg, subject=subject, return_path=return_path, from_address=from_[1])
    message_ids = _message_ids(first("Message-ID"))
    return InboundMessage(
        message_id=message_ids[0] if message_ids else None,
        subject=subject,
        from_address=from_[1],
        from_name=from_[0],
        reporter_address=reporter_address,
        reporter_name=reporter_name,
        reply_to=reply_to[1],
        to=tuple(a for _, a in _addresses(_raw_values(msg, "To", defects), defects)),
        cc=tuple(a for _, a in _addresses(_raw_values(msg, "Cc", defects), defects)),
        delivered_to=tuple(v.strip().strip("<>").lower() for v in all_of("Delivered-To") if v.strip()),
        return_path=return_path,
        in_reply_to=_message_ids(first("In-Reply-To")),
        references=_message_ids(" ".join(all_of("References"))),
        date=_date(first("Date"), defects),
        case_ref=case_ref_in(subject, case_tag),
        text=text,
        own_text=own,
        html_converted=converted,
        attachments=tuple(found.attachments),
        forwarded=tuple(forwarded),
        auto_submitted=first("Auto-Submitted"),
        precedence=first("Precedence"),
        list_id=first("List-Id"),
        has_list_headers=any(k.lower().startswith("list-") for k, _ in headers),
        loop_header=first(LOOP_HEADER) is not None,
        is_dsn=bounce.is_dsn,
        dsn_failed_recipients=bounce.failed,
        dsn_original_message_id=bounce.original_message_id,
        dsn_permanent=bounce.permanent,
        authentication_results=all_of("Authentication-Results"),
        headers=tuple(headers),
        body_hash=scan.body_hash(),
        size=scan.size,
        defects=defects.as_tuple(),
        readable=_readable(subject, own, body, found, forwarded[len(found.forwarded):]),
    )


def _own_text(body: _Body) -> str:
    """The sender's new words; with an HTML version appended to the text, its new words too."""
    own = quotes.own_text(body.own_source or "")
    html_own = quotes.own_text(body.html_own) if body.html_own else ""
    if html_own.strip():
        own = f"{own}\n\n{HTML_VERSION_LINE}\n{html_own}"
    return own


def _readable(subject: str, own: str, body: _Body, found: _Collected,
              inline_forwards: list[ForwardedMessage]) -> tuple[Readable, ...]:
    """Every text a person could read in the message, for the member scan: the subject, every
    alternative of the body, then what the MIME walk read (attachments, file names, attached
    forwards), then forwards quoted inline in the body."""
    texts = [Readable("subject", subject), *(Readable("body", t) for t in (*body.readable, own)), *found.readable]
    for fwd in inline_forwards:
        texts += [Readable("forwarded", t) for t in (fwd.subject, fwd.text, fwd.from_name or "", fwd.from_address or "")]
    return tuple(r for r in texts if r.text)
