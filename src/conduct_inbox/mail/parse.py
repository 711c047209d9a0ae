"""Raw RFC 5322 bytes to an `InboundMessage`: pure (no I/O, no clock) and forgiving.

Mail from the wild has wrong or unknown charsets, broken MIME, broken encoded-words, bad
dates and junk; none of that raises: text is decoded with replacement and a short defect is
recorded. Only input that is not a mail message at all raises `MalformedMessage`.

The message is read with the compat32 policy and headers are decoded here: policy.default's
header parser raises on, and is slow for, hostile header values (the very input we must
survive), while compat32 keeps raw values we decode with linear-time code.
"""

from __future__ import annotations

import binascii
import email
import email.feedparser
import email.parser
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

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
    "LOOP_HEADER", "REPLY_MARKER", "Attachment", "ForwardedMessage", "InboundMessage", "parse",
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
    size: int
    sha256: str
    inline: bool
    content: bytes = field(repr=False)


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


def _body_hash(raw: bytes, body_at: int) -> str:
    """sha256 of the body with CRLF as LF, in chunks so a large body is not copied whole."""
    digest = hashlib.sha256()
    view = memoryview(raw)
    carry = b""
    for start in range(body_at, len(raw), _FEED_CHUNK):
        chunk = carry + bytes(view[start : start + _FEED_CHUNK])
        # A CR at the chunk's end may pair with an LF at the next one's start.
        carry = b"\r" if chunk.endswith(b"\r") else b""
        digest.update(chunk[: len(chunk) - len(carry)].replace(b"\r\n", b"\n"))
    digest.update(carry)
    return digest.hexdigest()


def _check_is_mail(raw: bytes, body_at: int) -> None:
    if not raw or raw.isspace():
        raise MalformedMessage("empty input")
    head = raw[: min(body_at, 1 << 20)]
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

    def __init__(self) -> None:
        self.plain: list[str] = []
        self.html: list[str] = []
        self.attachments: list[Attachment] = []
        self.forwarded: list[ForwardedMessage] = []
        self.parts = 0


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


def _payload(part: Message, defects: Defects) -> bytes:
    raw = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64" and isinstance(raw, str):
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


def _part_text(part: Message, defects: Defects) -> str:
    data = _payload(part, defects)
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


def _add_attachment(part: Message, ctype: str, out: _Collected, defects: Defects) -> None:
    data = _payload(part, defects)
    out.attachments.append(Attachment(
        filename=_filename(part, defects),
        content_type=ctype,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        inline=_disposition(part) != "attachment",
        content=data,
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
        (out.plain if ctype == "text/plain" else out.html).append(_part_text(part, defects))
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
    sub = _Collected()
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


# --- entry point -------------------------------------------------------------------------------


def _message(raw: bytes, body_at: int, defects: Defects) -> Message:
    # Fed in chunks: message_from_bytes decodes and splits the whole input at once, which
    # peaks near eight times the size of a message with a large attachment.
    view = memoryview(raw)
    try:
        parser = email.feedparser.BytesFeedParser(policy=compat32)
        for start in range(0, len(raw), _FEED_CHUNK):
            parser.feed(bytes(view[start : start + _FEED_CHUNK]))
        return parser.close()
    except RecursionError:
        defects.add("MIME structure too deep; body read as plain text")
    except Exception:  # the email package on input it did not foresee
        defects.add("unparseable MIME structure; body read as plain text")
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


def parse(raw: bytes, *, case_tag: str = "conduct") -> InboundMessage:
    """Parse one received message; raises MalformedMessage only when `raw` is not mail at all."""
    raw = bytes(raw)
    body_at = _body_offset(raw)
    _check_is_mail(raw, body_at)
    defects = Defects()
    msg = _message(raw, body_at, defects)
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

    found = _Collected()
    _walk(msg, 0, True, found, defects, 0)
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
        body_hash=_body_hash(raw, body_at),
        size=len(raw),
        defects=defects.as_tuple(),
    )
