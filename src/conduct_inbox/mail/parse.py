"""Raw RFC 5322 bytes to an `InboundMessage`: pure (no I/O, no clock) and forgiving.

Mail from the wild has wrong or unknown charsets, broken MIME, broken encoded-words, bad
dates and junk; none of that raises: text is decoded with replacement and a short defect is
recorded. Only input that is not a mail message at all raises `MalformedMessage`.

The message is read with the compat32 policy and headers are decoded here: policy.default's
header parser raises on, and is slow for, hostile header values (the very input we must
survive), while compat32 keeps raw values we decode with linear-time code.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.feedparser
import email.parser
import functools
import hashlib
import io
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from typing import BinaryIO

from ..errors import MalformedMessage
from . import dsn, html, quotes
from .charsets import (
    CONTROL_CHARS,
    Defects,
    clean_text,
    decode_bytes,
    decode_words,
    fold_spaces,
    header_text,
    raw_to_text,
    unfold,
)
from .quotes import REPLY_MARKER

__all__ = [
    "LOOP_HEADER", "REPLY_MARKER", "TEXT_SCAN_BYTES", "Attachment", "ForwardedMessage", "InboundMessage",
    "parse", "parse_file",
]

#: Header we put on everything we send, so our own mail coming back is recognised.
LOOP_HEADER = "X-Conduct-Inbox-Loop"

_MAX_DEPTH = 24  # MIME nesting we walk; deeper parts are ignored (defect)
_MAX_FORWARD_DEPTH = 5  # message/rfc822 inside message/rfc822 ...
_MAX_PARTS = 500
_HEADER_LIMIT = 65_536  # characters of one header value we decode
_ADDRESS_LIMIT = 16_384  # characters of an address header we parse
_MAX_HTML = 2_000_000  # characters of HTML converted; inscriptis is pure Python
_FEED_CHUNK = 1 << 20  # bytes handed to the MIME parser and the body hash at a time
_HEAD_BYTES = 1 << 20  # bytes read first: where the header block is checked
#: A base64 body at least this long (encoded) is decoded while the message streams in, never
#: handed to the MIME parser whole (see _BlobFilter). Smaller messages take the plain path.
_BLOB_MIN = 1 << 20
#: Text attachments up to this size keep their content whatever the attachment limit: the
#: workflow scans them for the names of committee members (recusal).
TEXT_SCAN_BYTES = 5 * 1024 * 1024

_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]{1,200}[ \t]*:")
_MSGID = re.compile(r"<([^<>\s]{1,998})>")
_BARE_ID = re.compile(r"[^<>\s]{1,998}@[^<>\s]{1,998}")
_VIA = re.compile(r"^['\"]?(.{1,200}?)['\"]?\s+via\s+\S", re.IGNORECASE)
_ADDR_SPEC = re.compile(r"[^\s<>,;:\"()\[\]@]{1,64}@[^\s<>,;:\"()\[\]@]{1,255}")
_FORWARD_SUBJECT = re.compile(r"^\s*(?:(?:re|aw|sv|vs|antw)\s*:\s*)*(?:fwd?|fw|wg|tr|rv|vs|i)\s*:", re.IGNORECASE)
_FILENAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]+")


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int  # of the decoded content, also when the content is omitted
    sha256: str  # of the decoded content, also when the content is omitted
    inline: bool
    content: bytes = field(repr=False)
    #: True when the content was left out (b"") because it is larger than the parser's
    #: attachment limit (`max_attachment_bytes`); size and sha256 still describe it.
    content_omitted: bool = False


@dataclass(frozen=True)
class ForwardedMessage:
    subject: str
    from_address: str | None
    from_name: str | None
    text: str


@dataclass(frozen=True)
class InboundMessage:
    """Everything the pipeline needs to know about one received mail."""

    message_id: str | None
    subject: str
    from_address: str | None
    from_name: str | None
    reporter_address: str | None
    reporter_name: str | None
    reply_to: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    delivered_to: tuple[str, ...]
    return_path: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None
    case_ref: str | None
    text: str
    own_text: str
    html_converted: bool
    attachments: tuple[Attachment, ...]
    forwarded: tuple[ForwardedMessage, ...]
    auto_submitted: str | None
    precedence: str | None
    list_id: str | None
    has_list_headers: bool
    loop_header: bool
    is_dsn: bool
    dsn_failed_recipients: tuple[str, ...]
    dsn_original_message_id: str | None
    dsn_permanent: bool
    authentication_results: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    body_hash: str
    size: int
    defects: tuple[str, ...]

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive), decoded; None when absent."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None


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


def _header_items(msg: Message, defects: Defects) -> list[tuple[str, str]]:
    items = []
    for name, value in msg.raw_items():
        name = CONTROL_CHARS.sub("", raw_to_text(str(name), defects)).strip()[:200]
        items.append((name, header_text(str(value) if value is not None else "", defects, _HEADER_LIMIT)))
    return items


def _raw_values(msg: Message, name: str, defects: Defects, limit: int = _ADDRESS_LIMIT) -> list[str]:
    out = []
    for value in msg.get_all(name) or []:
        text = unfold(raw_to_text(str(value), defects))
        if len(text) > limit:
            defects.add("oversized header truncated")
            text = text[:limit]
        out.append(text)
    return out


def _addresses(values: list[str], defects: Defects) -> list[tuple[str | None, str]]:
    """(display name, lowercased addr-spec) pairs; names are RFC 2047 decoded after parsing."""
    found: list[tuple[str | None, str]] = []
    for value in values:
        value = CONTROL_CHARS.sub(" ", value)
        try:
            pairs = getaddresses([value])
        except (RecursionError, ValueError, IndexError):
            defects.add("unparseable address header")
            pairs = [("", m.group(0)) for m in _ADDR_SPEC.finditer(value)]
        for name, addr in pairs:
            addr = addr.strip().lower()
            if not addr or any(c.isspace() or c in "<>" for c in addr) or len(addr) > 320:
                continue
            decoded = fold_spaces(clean_text(decode_words(name, defects))) if name else ""
            found.append((decoded or None, addr))
    return found


def _first(pairs: list[tuple[str | None, str]]) -> tuple[str | None, str | None]:
    return pairs[0] if pairs else (None, None)


def _message_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    ids = _MSGID.findall(value)
    if not ids:
        ids = _BARE_ID.findall(value)
    return tuple(dict.fromkeys(ids))


def _date(value: str | None, defects: Defects) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.add("invalid Date header")
        return None
    if parsed is None:
        defects.add("invalid Date header")
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _case_ref(subject: str, case_tag: str) -> str | None:
    pattern = re.compile(r"\[\s*" + re.escape(case_tag) + r"\s*#\s*([0-9]{4}-[0-9]{1,8})\s*\]", re.IGNORECASE)
    m = pattern.search(subject[:2000])
    return m.group(1) if m else None


def _reporter(
    msg: Message, from_: tuple[str | None, str | None], reply_to: tuple[str | None, str | None], defects: Defects
) -> tuple[str | None, str | None]:
    """The person who wrote it: a group that rewrote From (DMARC) keeps them in X-Original-From or Reply-To."""
    original = _first(_addresses(_raw_values(msg, "X-Original-From", defects), defects))
    if original[1]:
        return original[1], original[0]
    from_name, from_addr = from_
    via = _VIA.match(from_name or "")
    if via and reply_to[1] and reply_to[1] != from_addr:
        return reply_to[1], reply_to[0] or via.group(1).strip("'\" ") or None
    return from_addr, from_name


# --- the body ----------------------------------------------------------------------------------


class _Collected:
    """What a walk over the MIME tree found."""

    def __init__(self, blobs: _Blobs | None = None, limit: int | None = None) -> None:
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[Attachment] = []
        self.forwarded: list[ForwardedMessage] = []
        self.parts = 0
        self.blobs = blobs
        self.limit = limit  # attachment content larger than this is omitted (None: keep all)


def _ctype(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except (AttributeError, ValueError, IndexError):
        return "text/plain"


def _disposition(part: Message) -> str:
    value = part.get("Content-Disposition")
    return str(value).split(";", 1)[0].strip().lower() if value else ""


def _filename(part: Message, defects: Defects) -> str | None:
    try:
        name = part.get_filename() or part.get_param("name")
    except (ValueError, LookupError, IndexError, TypeError):
        defects.add("unreadable filename")
        return None
    if isinstance(name, tuple):  # an RFC 2231 triple compat32 could not collapse
        name = str(name[2])
    if not name:
        return None
    name = decode_words(raw_to_text(unfold(str(name)), defects), defects)
    name = clean_text(_FILENAME_UNSAFE.sub("_", name)).strip()[:255]
    return name or None


def _payload(part: Message, defects: Defects, blobs: _Blobs | None = None) -> bytes:
    raw = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64" and isinstance(raw, str):
        found = _blob_of(part, raw, blobs, defects)
        if found is not None:
            blob, tail, as_text = found
            if blob.kept:
                return blob.take(tail, as_text)
            defects.add("oversized content omitted")
            return b""
        # binascii skips line breaks itself; the email package splits and rejoins the whole
        # payload first, which costs several times an attachment's size in memory.
        try:
            return binascii.a2b_base64(raw.encode("ascii", "surrogateescape"))
        except (binascii.Error, ValueError):
            defects.add("damaged base64 content")
    try:
        data = part.get_payload(decode=True)
    except (ValueError, binascii.Error, TypeError, LookupError):
        defects.add("undecodable content")
        data = None
    if isinstance(data, bytes):
        return data
    return raw.encode("ascii", "surrogateescape") if isinstance(raw, str) else b""


def _part_text(part: Message, defects: Defects, blobs: _Blobs | None = None) -> str:
    data = _payload(part, defects, blobs)
    try:
        charset = part.get_param("charset")
    except (ValueError, IndexError, TypeError):
        charset = None
    if isinstance(charset, tuple):
        charset = str(charset[2])
    text = decode_bytes(data, str(charset) if charset else None, defects)
    return clean_text(text.replace("\r\n", "\n").replace("\r", "\n"))


def _is_text_body(part: Message, ctype: str, defects: Defects) -> bool:
    if ctype not in ("text/plain", "text/html"):
        return False
    return _disposition(part) != "attachment" and _filename(part, defects) is None


def _keeps_content(ctype: str, size: int, limit: int | None) -> bool:
    """Whether an attachment's content goes into the result: within the limit, or text to scan."""
    return limit is None or size <= limit or (ctype.startswith("text/") and size <= TEXT_SCAN_BYTES)


def _add_attachment(part: Message, ctype: str, out: _Collected, defects: Defects) -> None:
    raw = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    found = _blob_of(part, raw, out.blobs, defects) if cte == "base64" and isinstance(raw, str) else None
    data: bytes | None
    if found is not None:  # decoded while the message streamed in
        blob, tail, as_text = found
        size, sha256 = blob.described(tail, as_text)
        data = blob.take(tail, as_text) if blob.kept and _keeps_content(ctype, size, out.limit) else None
        blob.chunks = []
    else:
        data = _payload(part, defects)
        size, sha256 = len(data), hashlib.sha256(data).hexdigest()
        if not _keeps_content(ctype, size, out.limit):
            data = None
    out.attachments.append(Attachment(
        filename=_filename(part, defects),
        content_type=ctype,
        size=size,
        sha256=sha256,
        inline=_disposition(part) != "attachment",
        content=b"" if data is None else data,
        content_omitted=data is None,
    ))


def _walk(part: Message, depth: int, collect_text: bool, out: _Collected, defects: Defects, fwd_depth: int) -> None:
    out.parts += 1
    if depth > _MAX_DEPTH or out.parts > _MAX_PARTS:
        defects.add("MIME structure too deep or too large; rest ignored")
        return
    ctype = _ctype(part)
    if ctype in ("message/delivery-status", "text/rfc822-headers", "message/disposition-notification"):
        return  # machine parts of a report; dsn.py reads them
    if ctype == "message/rfc822" or (part.is_multipart() and ctype.startswith("message/")):
        _forwarded(part, out, defects, fwd_depth)
        return
    if ctype.startswith("multipart/") and not part.is_multipart():
        part = _recover_boundary(part, defects)
        ctype = _ctype(part)
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if ctype == "multipart/alternative" and collect_text:
            chosen = _preferred_alternative(children)
            for child in children:
                _walk(child, depth + 1, child is chosen, out, defects, fwd_depth)
        else:
            for child in children:
                _walk(child, depth + 1, collect_text, out, defects, fwd_depth)
        return
    if not _is_text_body(part, ctype, defects):
        _add_attachment(part, ctype, out, defects)
    elif collect_text:
        (out.plain if ctype == "text/plain" else out.html).append(_part_text(part, defects, out.blobs))
    # else: the alternative not chosen (the HTML twin of a plain body) is neither text nor attachment


_BOUNDARY_LINE = re.compile(r"^--([^\s]{1,70})[ \t]*\r?$", re.MULTILINE)


def _recover_boundary(part: Message, defects: Defects) -> Message:
    """A multipart whose declared boundary never occurs: re-read it with the one its body uses."""
    body = part.get_payload()
    if not isinstance(body, str):
        return part
    defects.add("MIME boundary mismatch")
    found = _BOUNDARY_LINE.search(body[:100_000])
    if found is None or found.group(1).endswith("--"):
        fallback = Message()
        fallback.set_payload(body)  # read as the plain text it most likely is
        return fallback
    head = f'Content-Type: {part.get_content_type()}; boundary="{found.group(1)}"\n\n'
    try:
        return email.message_from_string(head + body, policy=compat32)
    except Exception:  # the email package on input it did not foresee
        fallback = Message()
        fallback.set_payload(body)
        return fallback


def _preferred_alternative(children: list[Message]) -> Message | None:
    """text/plain when it has content, else the richest (last) other alternative."""
    for child in children:
        if _ctype(child) == "text/plain" and not child.is_multipart():
            payload = child.get_payload()
            if isinstance(payload, str) and payload.strip():
                return child
    return children[-1] if children else None


def _forwarded(part: Message, out: _Collected, defects: Defects, fwd_depth: int) -> None:
    inner = part.get_payload()
    if not (isinstance(inner, list) and inner and isinstance(inner[0], Message)):
        return
    if fwd_depth >= _MAX_FORWARD_DEPTH:
        defects.add("forwarded messages nested too deep")
        return
    message = inner[0]
    sub = _Collected(out.blobs, out.limit)
    sub.parts = out.parts
    _walk(message, 0, True, sub, defects, fwd_depth + 1)
    out.parts = sub.parts
    text, _ = _best_text(sub, defects)
    name, addr = _first(_addresses(_raw_values(message, "From", defects), defects))
    subject = fold_spaces(header_text(str(message.get("Subject", "")), defects, _HEADER_LIMIT))
    out.forwarded.append(ForwardedMessage(subject=subject, from_address=addr, from_name=name, text=text))
    out.forwarded.extend(sub.forwarded)  # flattened: nested forwards follow their container
    out.attachments.extend(sub.attachments)


def _best_text(found: _Collected, defects: Defects, *, without_quotes: bool = False) -> tuple[str, bool]:
    """(text, converted from HTML)."""
    plain = "\n\n".join(t for t in found.plain if t.strip())
    if plain or not found.html:
        return plain.strip("\n"), False
    markup = "\n".join(found.html)
    if len(markup) > _MAX_HTML:
        defects.add("oversized HTML body truncated")
        markup = markup[:_MAX_HTML]
    return clean_text(html.to_text(markup, without_quotes=without_quotes)), True


def _inline_forwards(text: str, subject: str, defects: Defects) -> list[ForwardedMessage]:
    found = []
    for from_value, fwd_subject, body in quotes.inline_forwards(text, forward_subject=bool(_FORWARD_SUBJECT.match(subject))):
        name, addr = _first(_addresses([from_value], defects))
        found.append(ForwardedMessage(subject=fold_spaces(fwd_subject), from_address=addr, from_name=name, text=body))
    return found


# --- large base64 bodies -----------------------------------------------------------------------
#
# The MIME parser keeps every body line as a string until the part ends, then joins them: a
# 25 MB attachment costs about four times its size at once. _BlobFilter sits between the input
# and the parser: where a part that is neither text, multipart nor message/* and declares
# base64 starts its body with at least _BLOB_MIN bytes of nothing but base64 characters and line
# breaks, it decodes those bytes as they stream by (sha256, size, and the content only up to the
# keep limit) and hands the parser one marker line instead. Base64 decoding skips line breaks and
# the run ends on whole 4-character groups (the 0-3 characters left are passed on), so the
# marker's decoded content followed by decoding the rest of the payload equals decoding the
# payload whole. The filter follows the MIME structure only conservatively: whenever it is
# unsure where the parser is (bare CRs, a header block it cannot follow, an unknown boundary), it
# passes the input through unchanged. The marker holds a random token drawn for every parse.


class _Blob:
    """One large base64 body, decoded while the message streamed in."""

    __slots__ = ("hasher", "size", "text_hasher", "chunks", "keep_limit", "kept")

    def __init__(self, keep_limit: int | None) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0
        #: sha256 of the base64 text (whole groups), for a payload the email package cannot decode.
        self.text_hasher = hashlib.sha256()
        self.chunks: list[bytes] = []
        self.keep_limit = keep_limit
        self.kept = True  # False once the content outgrew keep_limit and was dropped

    def add(self, text: bytes) -> None:
        """Decode whole 4-character groups of base64 text."""
        self.text_hasher.update(text)
        data = binascii.a2b_base64(text)
        self.hasher.update(data)
        self.size += len(data)
        if self.kept:
            if self.keep_limit is not None and self.size > self.keep_limit:
                self.kept, self.chunks = False, []
            else:
                self.chunks.append(data)

    def described(self, tail: bytes, as_text: bool) -> tuple[int, str]:
        """(size, sha256) of the content followed by `tail`; of the base64 text if `as_text`."""
        digest = (self.text_hasher if as_text else self.hasher).copy()
        digest.update(tail)
        return (self.size // 3 * 4 if as_text else self.size) + len(tail), digest.hexdigest()

    def take(self, tail: bytes, as_text: bool) -> bytes:
        """The whole content (kept chunks, then `tail`); the chunks are released."""
        chunks, self.chunks = self.chunks, []
        if as_text:  # whole groups without padding: encoding the bytes again gives the same text
            chunks = [base64.b64encode(b"".join(chunks))]
        chunks.append(tail)
        return b"".join(chunks)


class _Blobs:
    """The blobs of one parse, found again by the marker that stands in for them."""

    def __init__(self, keep_limit: int | None) -> None:
        self.prefix = f"!conduct-inbox-blob-{secrets.token_hex(16)}-"
        self.keep_limit = keep_limit
        self.items: list[_Blob] = []

    def new(self) -> tuple[_Blob, bytes]:
        blob = _Blob(self.keep_limit)
        self.items.append(blob)
        # 16 + 32 + 8 letters and digits: base64 groups stay aligned behind a marker.
        return blob, f"{self.prefix}{len(self.items) - 1:08d}!\n".encode("ascii")

    def find(self, payload: str) -> tuple[_Blob, str] | None:
        if not payload.startswith(self.prefix):
            return None
        end = payload.find("!", len(self.prefix))
        number = payload[len(self.prefix) : end]
        if end < 0 or not number.isdigit() or int(number) >= len(self.items):
            return None
        return self.items[int(number)], payload[end + 1 :]


def _decode_rest(rest: str, defects: Defects) -> tuple[bytes, bool]:
    """Decode what followed a blob's marker in its payload (0-3 characters, padding, junk) as
    _payload decodes a whole payload (the blob in front of it ends on whole groups); True
    when the payload cannot be decoded and, as the email package does, stays base64 text."""
    try:
        return binascii.a2b_base64(rest.encode("ascii", "surrogateescape")), False
    except (binascii.Error, ValueError):
        defects.add("damaged base64 content")
    # What the email package does next (email._encoded_words.decode_b).
    data = b"".join(rest.encode("ascii", "replace").splitlines())
    try:
        return base64.b64decode(data + b"==="[: -len(data) % 4], validate=True), False
    except (binascii.Error, ValueError):
        pass
    for padding in (b"", b"=="):
        try:
            return binascii.a2b_base64(data + padding), False
        except (binascii.Error, ValueError):
            pass
    return data, True  # one character too many to decode


def _blob_of(part: Message, payload: object, blobs: _Blobs | None, defects: Defects) -> tuple[_Blob, bytes, bool] | None:
    """(blob, decoded rest, as text) when a part's payload is a blob marker (see _decode_rest)."""
    if blobs is None or not blobs.items or not isinstance(payload, str):
        return None
    found = blobs.find(payload)
    if found is None:
        return None
    blob, rest = found
    tail, as_text = _decode_rest(rest, defects)
    if as_text:
        # The text as the email package keeps it: its bytes, where get_payload() replaced 8-bit ones.
        marker = payload[: len(payload) - len(rest)].encode("ascii")
        try:
            kept = part.get_payload(decode=True)
        except Exception:  # the email package on input it did not foresee
            kept = None
        if isinstance(kept, bytes) and kept.startswith(marker):
            tail = kept[len(marker) :]
    return blob, tail, as_text


_RUN_BREAK = re.compile(rb"[^A-Za-z0-9+/\r\n]|\r(?!\n)")  # what ends a run of base64 lines
_HEADER_START = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:")  # the parser's header line test
#: A boundary parameter we read as the email package does; anything less plain is not followed.
_BOUNDARY_PARAM = re.compile(rb'(?:^|;)\s*boundary\s*=\s*(?:"([^"\\\r\n]*)"|([^\s;"\\]+))\s*(?=;|$)', re.IGNORECASE)
_LONG_LINE = 1 << 16  # a line longer than this is passed on before its end is seen
_DECODE_AT = 1 << 18  # base64 characters gathered before they are decoded
_MAX_BOUNDARIES = 64  # more multipart boundaries than this: the filter stops and passes all on
_MAX_ENTITIES = 2 * _MAX_PARTS  # more MIME parts than this: likewise (the walk reads 500)

_HEAD, _BODY, _RUN, _BLOB, _PASS = range(5)


@functools.lru_cache(maxsize=64)
def _delimiter_pattern(pattern: bytes) -> re.Pattern[bytes]:
    return re.compile(pattern, re.MULTILINE)


class _BlobFilter:
    """Between the input and the MIME parser: replaces large base64 bodies by blob markers."""

    def __init__(self, sink: Callable[[bytes], object], blobs: _Blobs) -> None:
        self._sink = sink
        self._blobs = blobs
        self._out: list[bytes] = []
        #: Boundaries of the multiparts we are in, outermost first: as the parser's stack of
        #: end-of-part matchers, a delimiter line of any of them ends the parts inside it.
        self._stack: list[bytes] = []
        self._delimiters: re.Pattern[bytes] | None = None  # finds their delimiter lines
        self._partial = b""  # the start of a line not complete yet (or a CR that may pair with a LF)
        self._line_start = True  # whether the next byte starts a line
        self._state = _HEAD
        self._entities = 0
        self._new_entity()
        self._run: list[bytes] = []  # a run not yet long enough to be a blob, kept as it came
        self._run_size = 0
        self._last_nl = True  # the run so far ends with a line break
        self._blob: _Blob | None = None
        self._chars = bytearray()  # base64 characters of the blob not decoded yet

    def _new_entity(self, usable: bool = True) -> None:
        self._entities += 1
        if self._entities > _MAX_ENTITIES:
            self._state = _PASS
        self._ctype: bytearray | None = None
        self._cte: bytearray | None = None
        self._collecting: bytearray | None = None
        self._usable = usable  # False once the header block did something we do not follow
        self._header_lines = 0
        self._from_last = False

    # -- input ---------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk if self._partial else chunk
        self._partial = b""
        pos, end = 0, len(data)
        while pos < end:
            if self._state in (_RUN, _BLOB):
                pos = self._take_run(data, pos, final=False)
                continue
            if self._state in (_BODY, _PASS):
                pos = self._skip_body(data, pos)
                if pos >= end or self._partial:
                    break
            nl = data.find(b"\n", pos)
            if nl < 0:
                if end - pos > _LONG_LINE:
                    self._long_line(data[pos:])
                else:
                    self._partial = data[pos:]
                break
            self._line(data[pos : nl + 1])
            pos = nl + 1
        self._flush()

    def close(self) -> None:
        data, self._partial = self._partial, b""
        pos = 0
        if self._state in (_RUN, _BLOB):
            if data:
                pos = self._take_run(data, 0, final=True)
            if self._state in (_RUN, _BLOB):
                self._end_run(at_line_start=False)
                self._state = _BODY
        if pos < len(data):
            self._out.append(data[pos:])
        self._flush()

    def _skip_body(self, data: bytes, pos: int) -> int:
        """Pass a body on up to the next boundary line (or up to an incomplete last line)."""
        complete = data.rfind(b"\n", pos) + 1  # what follows is a line not complete yet
        found = None
        if self._state == _BODY and self._delimiters is not None and complete > pos:
            found = self._delimiters.search(data, pos, complete)
            if found is not None and found.start() == pos and not self._line_start:
                found = self._delimiters.search(data, pos + 1, complete)
        if found is not None:
            if found.start() > pos:
                self._out.append(data[pos : found.start()])
                self._line_start = True
            return found.start()  # the boundary line goes through _line
        stop = complete if complete > pos else pos
        if stop > pos:
            self._out.append(data[pos:stop])
            self._line_start = True
        rest = len(data) - stop
        if rest > _LONG_LINE or self._state == _PASS:
            self._out.append(data[stop:])
            self._line_start = self._line_start and rest == 0
        elif rest:
            self._partial = data[stop:]
        return len(data)

    def _flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            self._sink(b"".join(out))

    # -- lines outside runs ----------------------------------------------------------------------

    def _long_line(self, data: bytes) -> None:
        """Part of a line too long to hold: pass it on; it is no boundary and no header we track."""
        self._out.append(data)
        if self._line_start and self._state == _HEAD:
            self._usable = False
            self._collecting = None
        self._line_start = False

    def _line(self, line: bytes) -> None:
        start, self._line_start = self._line_start, True
        self._out.append(line)
        if not start:
            return  # the end of a long line
        text = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        bare_cr = b"\r" in text  # the parser also breaks lines there; we do not follow it
        if text.startswith(b"--") and self._delimiter(text, bare_cr):
            return
        if self._state != _HEAD:
            return
        if not text:
            self._end_headers()
            return
        if bare_cr:
            self._state = _BODY
            return
        self._header_lines += 1
        if text[:1] in (b" ", b"\t"):
            if self._collecting is not None:
                self._collecting += b"\n" + text
            return
        self._collecting = None
        if not _HEADER_START.match(text):
            self._state = _BODY  # the parser starts the body at this line
            return
        self._from_last = text.startswith(b"From ") and self._header_lines > 1
        colon = text.find(b":")
        if colon <= 0:
            return
        name = text[:colon].lower()
        if name == b"content-type" and self._ctype is None:
            self._ctype = self._collecting = bytearray(text[colon + 1 :])
        elif name == b"content-transfer-encoding" and self._cte is None:
            self._cte = self._collecting = bytearray(text[colon + 1 :])

    def _delimiter(self, text: bytes, bare_cr: bool) -> bool:
        """Follow a delimiter line of one of the multiparts we are in; False if it is none."""
        for level in range(len(self._stack) - 1, -1, -1):  # the innermost first, as the parser
            boundary = self._stack[level]
            if not text.startswith(boundary, 2):
                continue
            rest = text[2 + len(boundary) :]
            close = rest.startswith(b"--")
            if (rest[2:] if close else rest).strip(b" \t\r"):
                continue
            del self._stack[level if close else level + 1 :]
            self._set_delimiters()
            if close:
                self._state = _BODY  # the epilogue
            else:
                self._state = _HEAD
                self._new_entity(usable=not bare_cr)
            return True
        return False

    def _set_delimiters(self) -> None:
        if not self._stack:
            self._delimiters = None
            return
        names = b"|".join(re.escape(b) for b in sorted(set(self._stack)))
        # The parser's delimiter line: --boundary, maybe "--", blanks (we also allow CRs).
        self._delimiters = _delimiter_pattern(rb"^--(?:" + names + rb")(?:--)?[ \t\r]*$")

    def _end_headers(self) -> None:
        """The blank line after a header block: decide how to read the body."""
        ctype = ""
        if self._ctype is not None:
            ctype = bytes(self._ctype).decode("latin-1").partition(";")[0].strip().lower()
            if ctype.count("/") != 1:
                ctype = "text/plain"
            if ctype.startswith("multipart/"):
                params = bytes(self._ctype).partition(b";")[2]
                found = _BOUNDARY_PARAM.findall(b";" + params)
                boundary = (found[0][0] or found[0][1]).rstrip() if len(found) == 1 else b""
                if boundary and boundary.isascii() and b"boundary" not in params.lower().replace(b"boundary", b"", 1):
                    if len(self._stack) >= _MAX_BOUNDARIES or boundary in self._stack:
                        self._state = _PASS  # too deep, or nested alike: no blobs from here on
                        return
                    self._stack.append(boundary)
                    self._set_delimiters()
                # else: a multipart whose boundary we do not follow; its delimiters stay body lines
        maintype = ctype.partition("/")[0]
        usable = self._usable and not self._from_last
        # Exactly "base64" (folded or with trailing blanks, the email package would not decode it).
        base64_body = self._cte is not None and bytes(self._cte).lstrip(b" \t").lower() == b"base64"
        if maintype == "message" and ctype != "message/delivery-status" and usable:
            self._state = _HEAD  # the parser reads an inner message: its header block follows
            self._new_entity()
        elif usable and base64_body and maintype not in ("", "text", "multipart", "message"):
            self._state = _RUN
            self._run, self._run_size, self._last_nl = [], 0, True
        else:
            self._state = _BODY

    # -- runs of base64 lines ------------------------------------------------------------------

    def _take_run(self, data: bytes, pos: int, final: bool) -> int:
        """Consume the run from data[pos:]; return where the input continues outside it."""
        m = _RUN_BREAK.search(data, pos)
        if m is None:
            self._consume(data[pos:])
            return len(data)
        stop = m.start()
        if stop == len(data) - 1 and not final and data[stop:] == b"\r":
            self._consume(data[pos:stop])
            self._partial = b"\r"  # may pair with a LF in the next chunk
            return len(data)
        if stop > pos:
            self._consume(data[pos:stop])
        at_line_start = self._last_nl
        self._end_run(at_line_start)
        self._state = _BODY
        self._line_start = at_line_start
        return stop

    def _consume(self, seg: bytes) -> None:
        if not seg:
            return
        self._last_nl = seg.endswith(b"\n")
        if self._state == _BLOB:
            self._decode(seg)
            return
        self._run.append(seg)
        self._run_size += len(seg)
        if self._run_size >= _BLOB_MIN:
            self._blob, marker = self._blobs.new()
            self._out.append(marker)
            self._state = _BLOB
            run, self._run, self._run_size = self._run, [], 0
            for piece in run:
                self._decode(piece)

    def _decode(self, seg: bytes) -> None:
        self._chars += seg.translate(None, b"\r\n")
        if len(self._chars) >= _DECODE_AT:
            self._decode_groups()

    def _decode_groups(self) -> None:
        whole = len(self._chars) - len(self._chars) % 4
        if whole and self._blob is not None:
            self._blob.add(bytes(self._chars[:whole]))
            del self._chars[:whole]

    def _end_run(self, at_line_start: bool) -> None:
        if self._state == _RUN:  # too short to matter: pass it on as it came
            self._out.extend(self._run)
            self._run, self._run_size = [], 0
            return
        self._decode_groups()
        leftover, self._chars, self._blob = bytes(self._chars), bytearray(), None
        if leftover:
            # A line break keeps what follows (a boundary, a padding line) at a line start.
            self._out.append(leftover + b"\n" if at_line_start else leftover)


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


def _mime_defects(msg: Message, defects: Defects) -> None:
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        for defect in getattr(part, "defects", []):
            defects.add(type(defect).__name__)
        payload = part.get_payload() if depth < _MAX_DEPTH else None
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload[:_MAX_PARTS] if isinstance(p, Message))


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
    text, converted = _best_text(found, defects)
    if converted:
        own_source, _ = _best_text(found, defects, without_quotes=True)
    else:
        own_source = text
    own = quotes.own_text(own_source)
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
        case_ref=_case_ref(subject, case_tag),
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
    )
