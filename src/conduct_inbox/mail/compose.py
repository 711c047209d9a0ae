"""Builds the exact bytes of an outgoing mail from a draft. Pure: ids and dates are passed in.

The header block is written by hand (CRLF line endings, lines folded to at most 78 characters,
RFC 2047 encoded-words for anything that is not printable ASCII, RFC 2231 for non-ASCII filenames)
instead of through `EmailMessage(policy=SMTP)`, whose header registry re-parses every header and
made `build` cost over a millisecond per mail. The body is quoted-printable encoded by the same
`email.quoprimime.body_encode` that `EmailMessage.set_content` uses, so its bytes are unchanged.

A header value containing a line break (CR, LF or any other character `str.splitlines` breaks
on) raises ValueError, as `EmailMessage` did: no value can start a header of its own.
Drafts with a non-ASCII mail address (rare, and needing SMTPUTF8 anyway) take the old
`EmailMessage` path, so their output is exactly what it was.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes, quoprimime
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from conduct_inbox.mail.parse import LOOP_HEADER


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Draft:
    """One message to one recipient, before it gets its Message-ID and outbox row."""

    kind: str  # ack | report | alert | note | followup | ...
    audience: str  # reporter | member | steering | party
    recipient: str
    subject: str
    body: str
    recipient_name: str | None = None
    reply_to: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = ()
    #: "auto-replied" for acknowledgements, "auto-generated" for everything else we send.
    auto_submitted: str = "auto-generated"
    #: Outlook's conversation headers (committee mail about a case): Thread-Topic, Thread-Index.
    thread_topic: str | None = None
    thread_index: str | None = None


@dataclass(frozen=True)
class Sender:
    address: str
    name: str

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]


MAX_LINE = 78  # RFC 5322 recommended line length, without the CRLF
_EW_MAX = 75  # RFC 2047: an encoded-word is at most 75 characters
_EW_OVERHEAD = len("=?utf-8?q??=")
_EW_MIN_ROOM = 8  # an encoded-word starts on a new line unless this much payload fits on the current one
CRLF = "\r\n"

#: Everything `str.splitlines` breaks on; EmailMessage refused header values containing these.
_LINE_BREAK = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
#: Printable ASCII plus tab: may be written into a header as it is.
_PLAIN = re.compile(r"[\t\x20-\x7e]*\Z")
#: One foldable piece of plain text: its leading whitespace, then a word (or trailing whitespace alone).
_TOKEN = re.compile(r"[ \t]*[^ \t]+|[ \t]+")
_SPECIALS = frozenset('()<>@,:;."[]\\')  # a display name with any of these is quoted
_LOCAL_QUOTE = frozenset('()<>@,:;"[]\\ \t')  # a local part with any of these is quoted
_NON_ASCII = re.compile(r"[^\x00-\x7f]")

# RFC 2047 5(3) "Q" encoding, restricted to what is safe inside a phrase as well as in unstructured text.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q_BYTE = tuple(chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256))


def text_of(data: bytes) -> str:
    """The text parts of a message we built (decoded), for checks on mail still queued."""
    message = message_from_bytes(data, policy=email_policy.default)
    parts = [part.get_content() for part in message.walk() if part.get_content_type() == "text/plain"]
    return "\n".join(p for p in parts if isinstance(p, str))


def flat(value: str | None) -> str:
    """Free text for a header (a subject, a display name, a file name) on one line: a line break
    that came in with a report becomes a space, so a report can never fail to be sent on."""
    return _LINE_BREAK.sub(" ", value or "")


def _check(value: str) -> str:
    if _LINE_BREAK.search(value):
        raise ValueError("Header values may not contain linefeed or carriage return characters")
    return value


_Q_ASCII = {chr(b): _Q_BYTE[b] for b in range(128)}


def _q_piece(ch: str) -> str:
    return "".join(_Q_BYTE[b] for b in ch.encode("utf-8"))


def _encoded_words(text: str, used: int) -> list[str]:
    """`text` as RFC 2047 encoded-words, one per line: the first line already has `used` characters.

    Returns the lines' contents; the caller joins them with CRLF + space. Words are cut on character
    boundaries (never inside a UTF-8 sequence), and adjacent encoded-words decode to one run of text.
    """
    raw = text.encode("utf-8")
    q_len = sum(len(_Q_BYTE[b]) for b in raw)
    b_len = (len(raw) + 2) // 3 * 4
    lines: list[str] = []
    room = min(_EW_MAX, MAX_LINE - used) - _EW_OVERHEAD
    if room < _EW_MIN_ROOM:  # not even a couple of characters fit after the header name: start on the next line
        lines.append("")
        room = _EW_MAX - _EW_OVERHEAD
    if q_len - b_len < 5:  # the rule email._encoded_words uses: Q unless base64 is clearly shorter
        pieces: list[str] = []
        size = 0
        for ch in text:
            piece = _Q_ASCII.get(ch) or _q_piece(ch)
            if pieces and size + len(piece) > room:
                lines.append(f"=?utf-8?q?{''.join(pieces)}?=")
                room = _EW_MAX - _EW_OVERHEAD
                pieces, size = [], 0
            pieces.append(piece)
            size += len(piece)
        lines.append(f"=?utf-8?q?{''.join(pieces)}?=")
    else:
        chunk = bytearray()
        for ch in text:
            enc = ch.encode("utf-8")
            if chunk and (len(chunk) + len(enc) + 2) // 3 * 4 > room:
                lines.append(f"=?utf-8?b?{binascii.b2a_base64(bytes(chunk), newline=False).decode('ascii')}?=")
                room = _EW_MAX - _EW_OVERHEAD
                chunk = bytearray()
            chunk += enc
        lines.append(f"=?utf-8?b?{binascii.b2a_base64(bytes(chunk), newline=False).decode('ascii')}?=")
    return lines


def _fold_plain(first: str, value: str) -> str:
    """`first` (e.g. "To: ") followed by printable-ASCII `value`, folded before whitespace where needed."""
    lines: list[str] = []
    cur = first
    for n, token in enumerate(_TOKEN.findall(value)):
        if n and len(cur) + len(token) > MAX_LINE and token.strip(" \t"):
            lines.append(cur)
            cur = token
        else:
            cur += token
    lines.append(cur)
    return CRLF.join(lines)


def _unstructured(name: str, value: str, allow_long: bool = False) -> str:
    """One whole header line (without the final CRLF) for free text such as Subject.

    Printable-ASCII words stay as they are; runs of words with anything else become RFC 2047
    encoded-words (so "[tag #12]" stays greppable in the raw header). Lines are folded before
    whitespace to at most MAX_LINE characters; with `allow_long` (message-id lists) an overlong
    ASCII word is left whole instead of being encoded.
    """
    _check(value)
    first = f"{name}: "
    # Text that a client could read as an encoded word is encoded itself, so it shows as written.
    looks_encoded = not allow_long and "=?" in value
    if _PLAIN.match(value) and len(first) + len(value) <= MAX_LINE and not looks_encoded:
        return first + value if value else first.rstrip()
    # [encoded, leading whitespace, text]; consecutive encoded words share one element
    elems: list[list[Any]] = []
    for token in _TOKEN.findall(value):
        word = token.lstrip(" \t")
        ws = token[: len(token) - len(word)]
        plain = not word or (_PLAIN.match(word) is not None and (allow_long or len(token) < MAX_LINE)
                             and not (looks_encoded and "=?" in word))
        if not plain and elems and elems[-1][0]:
            elems[-1][2] += ws + word
        else:
            elems.append([not plain, ws, word])
    lines: list[str] = []
    cur = first
    started = False
    for encoded, ws, text in elems:
        if not encoded:
            if started and ws and text and len(cur) + len(ws) + len(text) > MAX_LINE:
                lines.append(cur)
                cur = ws + text
            else:
                cur += ws + text
        else:
            if started and ws and min(_EW_MAX, MAX_LINE - len(cur) - len(ws)) - _EW_OVERHEAD < _EW_MIN_ROOM:
                lines.append(cur)
                cur = ws
            else:
                cur += ws
            words = _encoded_words(text, len(cur))
            cur += words[0]
            for w in words[1:]:
                lines.append(cur)
                cur = " " + w
        started = True
    lines.append(cur)
    return CRLF.join(lines)


def _addr_spec(addr: str) -> str:
    local, _, domain = addr.rpartition("@")
    if not _LOCAL_QUOTE.isdisjoint(local):
        local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if domain:
        return f"{local}@{domain}"
    return local or "<>"


def _mailbox(name: str, addr: str, display: str | None) -> str:
    """A From/To line: `display <addr>`, the display name quoted or encoded as needed."""
    spec = _addr_spec(_check(addr))
    display = _check(display or "")
    first = f"{name}: "
    if not display:
        return first + spec
    angle = "<>" if spec == "<>" else f"<{spec}>"
    if _PLAIN.match(display):
        if not _SPECIALS.isdisjoint(display):
            display = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
        line = f"{first}{display} {angle}"
        if len(line) <= MAX_LINE:
            return line
        head = _fold_plain(first, display)
    else:
        head = first + (CRLF + " ").join(_encoded_words(display, len(first)))
    last = head.rpartition(CRLF)[2]
    if len(last) + 1 + len(angle) <= MAX_LINE:
        return f"{head} {angle}"
    return f"{head}{CRLF} {angle}"


def _param(name: str, value: str) -> list[str]:
    """A MIME parameter as one or more `name=value` pieces (RFC 2231 continuations when needed)."""
    _check(value)
    if _PLAIN.match(value) and "\t" not in value:
        simple = '{}="{}"'.format(name, value.replace("\\", "\\\\").replace('"', '\\"'))
        if 1 + len(simple) + 1 <= MAX_LINE:
            return [simple]
    encoded = quote(value, safe="", errors="strict")
    room = MAX_LINE - 2 - len(f"{name}*00*=utf-8''") - 1
    pieces: list[str] = []
    i = 0
    while i < len(encoded) or not pieces:
        end = min(len(encoded), i + room)
        # never split a %XX escape
        pct = encoded.rfind("%", max(i, end - 2), end)
        if pct != -1 and end < len(encoded):
            end = pct
        pieces.append(encoded[i:end])
        i = end
    if len(pieces) == 1:
        return [f"{name}*=utf-8''{pieces[0]}"]
    return [f"{name}*{n}*={'utf-8' + chr(39) * 2 if n == 0 else ''}{p}" for n, p in enumerate(pieces)]


def _disposition(filename: str) -> str:
    params = _param("filename", flat(filename))
    line = "Content-Disposition: attachment; " + params[0]
    if len(params) == 1 and len(line) <= MAX_LINE:
        return line
    return "Content-Disposition: attachment;" + CRLF + (";" + CRLF).join(" " + p for p in params)


def _content_type(content_type: str) -> str:
    _check(content_type)
    maintype, _, subtype = content_type.partition("/")
    ctype = f"{maintype or 'application'}/{subtype or 'octet-stream'}"
    if not _PLAIN.match(ctype):
        ctype = "application/octet-stream"
    return "Content-Type: " + ctype


#: Base64 is encoded this many input bytes at a time: 57 make one 76-character line, so the
#: pieces join into the same lines, and no whole-attachment intermediate (nor a list of every
#: line) is ever held beside the result.
_BASE64_PIECE = 57 * 1024


def _base64(data: bytes) -> bytes:
    """Base64 in 76-character lines, each ending in CRLF (what EmailMessage wrote)."""
    view = memoryview(data)
    return b"".join(
        base64.encodebytes(view[i : i + _BASE64_PIECE]).replace(b"\n", b"\r\n") for i in range(0, len(view), _BASE64_PIECE)
    )


_TEXT_HEADERS = 'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'


def _text_body(body: str) -> bytes:
    """The body as EmailMessage.set_content(body, charset="utf-8", cte="quoted-printable") encoded it."""
    lines = body.encode("utf-8").splitlines()
    qp = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), MAX_LINE)
    return qp.replace("\n", "\r\n").encode("ascii")


def _references(draft: Draft) -> list[str]:
    refs = [r for r in draft.references if r]
    if draft.in_reply_to and draft.in_reply_to not in refs:
        refs.append(draft.in_reply_to)
    return refs[-20:]


def _headers(draft: Draft, sender: Sender, message_id: str, date: datetime) -> list[str]:
    out = [
        _mailbox("From", sender.address, flat(sender.name)),
        _mailbox("To", draft.recipient, flat(draft.recipient_name)),
        _unstructured("Subject", flat(draft.subject)),
        "Date: " + format_datetime(date),
        _unstructured("Message-ID", f"<{message_id}>", allow_long=True),
    ]
    if draft.reply_to:
        out.append(_unstructured("Reply-To", draft.reply_to, allow_long=True))
    if draft.in_reply_to:
        out.append(_unstructured("In-Reply-To", f"<{draft.in_reply_to}>", allow_long=True))
    refs = _references(draft)
    if refs:
        out.append(_unstructured("References", " ".join(f"<{r}>" for r in refs), allow_long=True))
    if draft.thread_topic:
        out.append(_unstructured("Thread-Topic", flat(draft.thread_topic)))
    if draft.thread_index:
        out.append(_unstructured("Thread-Index", draft.thread_index))
    out.append(_unstructured("Auto-Submitted", draft.auto_submitted))
    out.append("X-Auto-Response-Suppress: All")
    out.append(_unstructured(LOOP_HEADER, sender.domain))
    return out


def _needs_email_message(draft: Draft, sender: Sender) -> bool:
    """Non-ASCII addresses: left to EmailMessage, exactly as before."""
    return any(a and _NON_ASCII.search(_check(a)) for a in (sender.address, draft.recipient, draft.reply_to))


def build(draft: Draft, sender: Sender, message_id: str, date: datetime, encoded: dict[int, bytes] | None = None) -> bytes:
    """The message's bytes. `encoded`: base64 parts by id() of their OutgoingAttachment, kept
    across calls for drafts that carry the same attachments (each is encoded once)."""
    if _needs_email_message(draft, sender):
        return _build_email_message(draft, sender, message_id, date)
    head = CRLF.join(_headers(draft, sender, message_id, date)) + CRLF
    if not draft.attachments:
        return (head + _TEXT_HEADERS + "MIME-Version: 1.0\r\n\r\n").encode("ascii") + _text_body(draft.body)
    # The parts are quoted-printable or base64: neither can contain "=_", so no line starts with the boundary.
    boundary = "=_" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:32]
    delim = f"--{boundary}\r\n".encode("ascii")
    chunks = [
        (head + f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n').encode("ascii"),
        delim,
        (_TEXT_HEADERS + CRLF).encode("ascii"),
        _text_body(draft.body),
    ]
    for att in draft.attachments:
        part_head = (
            f"{_content_type(att.content_type)}\r\nContent-Transfer-Encoding: base64\r\n{_disposition(att.filename)}\r\n\r\n"
        )
        cached = encoded.get(id(att)) if encoded is not None else None
        if cached is not None:
            part = cached
        else:
            part = _base64(att.content)
            if encoded is not None:
                encoded[id(att)] = part
        chunks += [b"\r\n", delim, part_head.encode("ascii"), part]
    chunks.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(chunks)


# ----- the EmailMessage path, for drafts with non-ASCII addresses -----------------------------


def _address(addr: str, name: str | None) -> Address:
    local, _, domain = addr.rpartition("@")
    return Address(display_name=name or "", username=local, domain=domain)


def _build_email_message(draft: Draft, sender: Sender, message_id: str, date: datetime) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(sender.address, flat(sender.name))
    msg["To"] = _address(draft.recipient, flat(draft.recipient_name))
    msg["Subject"] = flat(draft.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{message_id}>"
    if draft.reply_to:
        msg["Reply-To"] = draft.reply_to
    if draft.in_reply_to:
        msg["In-Reply-To"] = f"<{draft.in_reply_to}>"
    refs = _references(draft)
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if draft.thread_topic:
        msg["Thread-Topic"] = flat(draft.thread_topic)
    if draft.thread_index:
        msg["Thread-Index"] = draft.thread_index
    msg["Auto-Submitted"] = draft.auto_submitted
    msg["X-Auto-Response-Suppress"] = "All"
    msg[LOOP_HEADER] = sender.domain
    msg.set_content(draft.body, charset="utf-8", cte="quoted-printable")
    for att in draft.attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(
            att.content, maintype=maintype or "application", subtype=subtype or "octet-stream", filename=flat(att.filename)
        )
    return msg.as_bytes()
