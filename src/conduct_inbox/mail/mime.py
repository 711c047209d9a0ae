"""The MIME walk: from the email package's tree of parts to the body text (plain preferred,
else HTML converted), the attachments (content left out above the attachment limit) and the
forwarded messages, attached or inline. It stays within the nesting and part limits, recovers
a multipart whose boundary never occurs, and takes large base64 bodies from the blobs the
blob filter decoded while the message streamed in.
"""

from __future__ import annotations

import binascii
import email
import hashlib
import quopri
import re
from email.message import Message
from email.policy import compat32

from conduct_inbox.mail import extract, html, quotes
from conduct_inbox.mail.blobs import _blob_of, _Blobs
from conduct_inbox.mail.charsets import (
    Defects,
    clean_text,
    decode_bytes,
    decode_words,
    fold_spaces,
    header_text,
    raw_to_text,
    unfold,
)
from conduct_inbox.mail.headers import _addresses, _first, _raw_values
from conduct_inbox.mail.inbound import Attachment, ForwardedMessage, Readable
from conduct_inbox.mail.limits import (
    _HEADER_LIMIT,
    _MAX_DEPTH,
    _MAX_FORWARD_DEPTH,
    _MAX_HTML,
    _MAX_PARTS,
    TEXT_SCAN_BYTES,
)

_FORWARD_SUBJECT = re.compile(r"^\s*(?:(?:re|aw|sv|vs|antw)\s*:\s*)*(?:fwd?|fw|wg|tr|rv|vs|i)\s*:", re.IGNORECASE)
_FILENAME_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]+")
_FILENAME_DOTS = re.compile(r"\.+")


class _Collected:
    """What a walk over the MIME tree found."""

    def __init__(self, blobs: _Blobs | None = None, limit: int | None = None, source: str = "body",
                 budget: extract.Budget | None = None) -> None:
        self.plain: list[str] = []
        self.html: list[str] = []
        # Text parts not chosen as the body (the other alternatives): read by the scan all the same.
        self.other_plain: list[str] = []
        self.other_html: list[str] = []
        self.attachments: list[Attachment] = []
        self.forwarded: list[ForwardedMessage] = []
        #: Texts of attachments and forwarded messages, and file names, for the member scan.
        self.readable: list[Readable] = []
        self.parts = 0
        self.blobs = blobs
        self.limit = limit  # attachment content larger than this is omitted (None: keep all)
        self.source = source  # "body" at the top, "forwarded" inside a forwarded message
        self.budget = budget if budget is not None else extract.Budget()


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


def _charset(part: Message) -> str | None:
    try:
        charset = part.get_param("charset")
    except (ValueError, IndexError, TypeError):
        return None
    if isinstance(charset, tuple):
        charset = str(charset[2])
    return str(charset) if charset else None


def _add_attachment(part: Message, ctype: str, out: _Collected, defects: Defects, fwd_depth: int) -> None:
    raw = part.get_payload()
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    found = _blob_of(part, raw, out.blobs, defects) if cte == "base64" and isinstance(raw, str) else None
    data: bytes | None
    if found is not None:  # decoded while the message streamed in
        blob, tail, as_text = found
        size, sha256 = blob.described(tail, as_text)
        # Taken also when it will be omitted, to be read for the scan first (at most the
        # blobs' keep limit); content that outgrew that limit is gone and cannot be read.
        data = blob.take(tail, as_text) if blob.kept else None
        blob.chunks = []
    else:
        data = _payload(part, defects)
        size, sha256 = len(data), hashlib.sha256(data).hexdigest()
    filename = _filename(part, defects)
    if filename:
        out.readable.append(Readable("filename", filename))
        if "." in filename.rstrip("."):  # "Bob.Builder.timeline.txt": dots between the words
            out.readable.append(Readable("filename", _FILENAME_DOTS.sub(" ", filename)))
    scanned = data is not None and _read_attachment(data, ctype, filename, _charset(part), out, defects, fwd_depth)
    if data is not None and not _keeps_content(ctype, size, out.limit):
        data = None
    out.attachments.append(Attachment(
        filename=filename,
        content_type=ctype,
        size=size,
        sha256=sha256,
        inline=_disposition(part) != "attachment",
        content=b"" if data is None else data,
        content_omitted=data is None,
        scanned=scanned,
    ))


def _read_attachment(data: bytes, ctype: str, filename: str | None, charset: str | None, out: _Collected,
                     defects: Defects, fwd_depth: int) -> bool:
    """Put an attachment's text into `out.readable`; True when it was read completely. A mail
    message sent as a file (.eml as octet-stream or text) is read as a forwarded message."""
    if extract.looks_like_message(data, filename):
        message = _message_of(data, defects)
        if message is not None:
            return _forwarded_message(message, out, defects, fwd_depth)
    elif extract.looks_like_mime_document(data, ctype, filename):
        message = _message_of(data, defects)
        if message is not None:
            return _web_archive(message, out, defects, fwd_depth)
    found = extract.attachment_text(data, ctype, filename, charset, defects, out.budget)
    if found is None:
        return False
    out.readable.append(Readable("attachment", found.text))
    return found.complete


def _web_archive(message: Message, out: _Collected, defects: Defects, fwd_depth: int) -> bool:
    """Read a MIME document that is not a mail (an MHT/MHTML "single file web page": its HTML in
    quoted-printable, with its images) into `out.readable` as the attachment's text: its
    rendered HTML and every part's text. Its parts are the document, not attachments of their own."""
    if fwd_depth >= _MAX_FORWARD_DEPTH:
        defects.add("forwarded messages nested too deep")
        return False
    sub = _Collected(out.blobs, out.limit, out.source, out.budget)
    sub.parts = out.parts
    _walk(message, 0, True, sub, defects, fwd_depth + 1)
    out.parts = sub.parts
    body = _body(sub, defects)
    out.readable += [Readable("attachment", t) for t in body.readable if t]
    out.readable.extend(sub.readable)
    return all(a.scanned for a in sub.attachments if not a.content_type.startswith("image/"))


def _message_of(data: bytes, defects: Defects) -> Message | None:
    if not data.strip():
        return None
    try:
        return email.message_from_bytes(data, policy=compat32)
    except RecursionError:
        defects.add("forwarded message structure too deep")
    except Exception:  # the email package on input it did not foresee
        defects.add("unparseable forwarded message")
    return None


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
        _add_attachment(part, ctype, out, defects, fwd_depth)
    elif collect_text:
        (out.plain if ctype == "text/plain" else out.html).append(_part_text(part, defects, out.blobs))
    else:  # an alternative not chosen (the HTML twin of a plain body): still read
        (out.other_plain if ctype == "text/plain" else out.other_html).append(_part_text(part, defects, out.blobs))


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
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    message: Message | None = None
    if isinstance(inner, list) and inner and isinstance(inner[0], Message):
        message = inner[0]
        if cte in ("base64", "quoted-printable"):
            # compat32 parsed the still-encoded text as a message (a header-less one for base64)
            message = _message_of(_decoded(message, cte, defects), defects)
    elif isinstance(inner, str):
        message = _message_of(_payload(part, defects, out.blobs), defects)
    if message is not None:
        _forwarded_message(message, out, defects, fwd_depth)


def _decoded(encoded: Message, cte: str, defects: Defects) -> bytes:
    """The bytes of a message/rfc822 part sent base64 or quoted-printable, from what compat32 made of it."""
    try:
        data = encoded.as_bytes()
        return binascii.a2b_base64(data) if cte == "base64" else quopri.decodestring(data)
    except Exception:  # damaged encoding, or a structure the generator cannot write back
        defects.add("undecodable forwarded message")
        return b""


def _forwarded_message(message: Message, out: _Collected, defects: Defects, fwd_depth: int) -> bool:
    """Read a forwarded message into `out`: its headers and text as a ForwardedMessage and
    readable texts, its attachments as attachments. False when it is nested too deep to read."""
    if fwd_depth >= _MAX_FORWARD_DEPTH:
        defects.add("forwarded messages nested too deep")
        return False
    sub = _Collected(out.blobs, out.limit, "forwarded", out.budget)
    sub.parts = out.parts
    _walk(message, 0, True, sub, defects, fwd_depth + 1)
    out.parts = sub.parts
    body = _body(sub, defects)
    name, addr = _first(_addresses(_raw_values(message, "From", defects), defects))
    subject = fold_spaces(header_text(str(message.get("Subject", "")), defects, _HEADER_LIMIT))
    out.forwarded.append(ForwardedMessage(subject=subject, from_address=addr, from_name=name, text=body.text))
    out.forwarded.extend(sub.forwarded)  # flattened: nested forwards follow their container
    out.attachments.extend(sub.attachments)
    out.readable += [Readable("forwarded", t) for t in (subject, name or "", addr or "", *body.readable) if t]
    out.readable.extend(sub.readable)
    return True


class _Body:
    """The body of a message or forward: `text` for readers, `own` its new part (without quoted
    history), `converted` when it is HTML rendered, `readable` every alternative for the scan."""

    def __init__(self, text: str, converted: bool, readable: list[str], own_source: str | None = None,
                 html_own: str | None = None) -> None:
        self.text, self.converted, self.readable = text, converted, readable
        self.own_source, self.html_own = own_source, html_own


def _markup(parts: list[str], defects: Defects) -> str:
    markup = "\n".join(parts)
    if len(markup) > _MAX_HTML:
        defects.add("oversized HTML body truncated")
        markup = markup[:_MAX_HTML]
    return markup


def _body(found: _Collected, defects: Defects, *, own: bool = False) -> _Body:
    """Plain text preferred; HTML rendered when there is no plain text, and appended after
    HTML_VERSION_LINE when it says more than the plain text (extract.html_says_more). With
    `own`, also the text without quoted history that quotes.own_text is taken from."""
    plain = "\n\n".join(t for t in found.plain if t.strip()).strip("\n")
    html_parts = found.html + found.other_html
    markup = _markup(html_parts, defects) if html_parts else ""
    html_text = clean_text(html.to_text(markup)) if markup else ""
    # What the HTML shows outside its rendered text (alt/title attributes, CSS generated content).
    others = [t for t in found.other_plain if t.strip()]
    hidden = clean_text(html.hidden_text(markup)) if markup else ""
    if hidden:
        others.append(hidden)
    if not plain:
        own_source = clean_text(html.to_text(markup, without_quotes=True)) if own and markup else html_text
        return _Body(html_text, bool(markup), [html_text, *others], own_source)
    if html_text and extract.html_says_more(plain, html_text):
        text = f"{plain}\n\n{extract.HTML_VERSION_LINE}\n{html_text}"
        html_own = clean_text(html.to_text(markup, without_quotes=True)) if own else None
        return _Body(text, False, [text, *others], plain, html_own)
    return _Body(plain, False, [plain, html_text, *others], plain)


def _inline_forwards(text: str, subject: str, defects: Defects) -> list[ForwardedMessage]:
    found = []
    for from_value, fwd_subject, body in quotes.inline_forwards(text, forward_subject=bool(_FORWARD_SUBJECT.match(subject))):
        name, addr = _first(_addresses([from_value], defects))
        found.append(ForwardedMessage(subject=fold_spaces(fwd_subject), from_address=addr, from_name=name, text=body))
    return found


def _mime_defects(msg: Message, defects: Defects) -> None:
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        for defect in getattr(part, "defects", []):
            defects.add(type(defect).__name__)
        payload = part.get_payload() if depth < _MAX_DEPTH else None
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload[:_MAX_PARTS] if isinstance(p, Message))
