"""The text a person could read in an attachment, for the member scan (DESIGN "Routing and
recusal"): text in any charset or UTF (sniffed, since senders mislabel), HTML rendered (and
what it shows outside its text: attributes, CSS generated content), PDF (pypdf: text, filled
form fields, annotations), DOCX and OpenDocument (every XML part, zipfile + lxml), RTF (our
bounded converter), iCalendar and vCard (unfolded, quoted-printable decoded, unescaped), SVG
(its text elements), JSON (`\\uXXXX` escapes decoded). Formats are recognised by their bytes
first, then by declared type or file name. This module recognises the format and hands the
bytes to its reader, one module per format: text (charsets, JSON escapes), office (DOCX and
OpenDocument), pdf, rtf, directory (iCalendar and vCard), svg; messages recognises attachments
that are mail messages or MIME documents (MHT), which mail/mime.py walks as mail.

Pure: no I/O, no clock, no logging. Never raises on bad input: a failure is a short defect
(never content) and no text. The parser worker runs under a time limit; the limits here bound
memory and work per attachment (decompressed zip sizes, PDF pages, characters extracted).
"""

from __future__ import annotations

import re

from conduct_inbox.mail import html
from conduct_inbox.mail.charsets import Defects, clean_text
from conduct_inbox.mail.extract.base import (
    _MAX_HTML_CHARS,
    MAX_PDF_ANNOTATIONS,
    MAX_PDF_FIELDS,
    MAX_PDF_PAGES,
    MAX_RTF_CHARS,
    MAX_TEXT_CHARS,
    MAX_TOTAL_CHARS,
    MAX_UNZIPPED_BYTES,
    MAX_ZIP_MEMBERS,
    Budget,
    Extracted,
    _ext,
    _Sink,
    _Truncated,
)
from conduct_inbox.mail.extract.directory import directory_text
from conduct_inbox.mail.extract.messages import looks_like_message, looks_like_mime_document
from conduct_inbox.mail.extract.office import _zip_text
from conduct_inbox.mail.extract.pdf import _pdf_text
from conduct_inbox.mail.extract.rtf import rtf_to_text
from conduct_inbox.mail.extract.svg import svg_text
from conduct_inbox.mail.extract.text import decode_text, unescaped

__all__ = [
    "HTML_VERSION_LINE", "MAX_PDF_ANNOTATIONS", "MAX_PDF_FIELDS", "MAX_PDF_PAGES", "MAX_RTF_CHARS", "MAX_TEXT_CHARS",
    "MAX_TOTAL_CHARS", "MAX_UNZIPPED_BYTES", "MAX_ZIP_MEMBERS", "Budget", "Extracted", "attachment_text", "decode_text",
    "directory_text", "html_says_more", "is_image", "looks_like_message", "looks_like_mime_document", "rtf_to_text",
    "svg_text", "unescaped",
]

#: The line `text` gets between a plain body and the HTML alternative that says more.
HTML_VERSION_LINE = "----- the HTML version of this message -----"


# --- recognising formats -------------------------------------------------------------------------

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                b"\x00\x00\x01\x00")
_OFFICE_ZIP_TYPES = ("officedocument", "opendocument", "application/zip", "application/x-zip", "msword")
_OFFICE_EXTS = (".docx", ".docm", ".dotx", ".odt", ".ods", ".odp", ".odg", ".ott", ".zip")
_HTML_EXTS = (".html", ".htm", ".xhtml", ".shtml")
_HTML_START = re.compile(rb"^\s*(?:<\?xml[^>]{0,200}>\s*)?(?:<!--.{0,500}?-->\s*)*<(?:!doctype\s+html|html|head|body)\b",
                         re.IGNORECASE | re.DOTALL)
_SVG_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,200}>\s*)?(?:<!--.{0,500}?-->\s*)*"
                        rb"(?:<!doctype\s+svg[^>]{0,500}>\s*)?(?:<!--.{0,500}?-->\s*)*<svg\b", re.IGNORECASE | re.DOTALL)
_RTF_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s{0,100}\{\\rtf")
_DIRECTORY_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s{0,100}BEGIN:V(?:CALENDAR|CARD)\b", re.IGNORECASE)
_SVG_TYPES = ("image/svg+xml", "image/svg")
_RTF_TYPES = ("application/rtf", "text/rtf", "application/x-rtf", "text/richtext")
_DIRECTORY_TYPES = ("text/calendar", "application/ics", "text/vcard", "text/x-vcard", "text/directory",
                    "text/x-vcalendar")
_DIRECTORY_EXTS = (".ics", ".ical", ".ifb", ".vcs", ".vcf", ".vcard")


def is_image(data: bytes) -> bool:
    return data.startswith(_IMAGE_MAGIC) or (data[4:12] in (b"ftypheic", b"ftypavif") or data[:4] == b"RIFF" and
                                              data[8:12] == b"WEBP")


def _kind(data: bytes, ctype: str, filename: str | None) -> str:
    """"pdf", "zip", "image", "rtf", "svg", "directory" (iCalendar, vCard), "html" or "text":
    content first, since senders mislabel."""
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return "zip"
    if is_image(data):
        return "image"
    head = data[:2048]
    if _RTF_START.match(head):
        return "rtf"
    if _SVG_START.match(head):
        return "svg"
    if _DIRECTORY_START.match(head):
        return "directory"
    ext = _ext(filename)
    if ctype in _SVG_TYPES or ext == ".svg":
        return "svg"
    if ctype in _DIRECTORY_TYPES or ext in _DIRECTORY_EXTS:
        return "directory"
    if ctype == "application/pdf" or ext == ".pdf":
        return "pdf"
    if ext in _OFFICE_EXTS or any(t in ctype for t in _OFFICE_ZIP_TYPES):
        return "zip"
    if ctype in ("text/html", "application/xhtml+xml") or ext in _HTML_EXTS or _HTML_START.match(data[:2048]):
        return "html"
    return "text"


# --- entry points --------------------------------------------------------------------------------


def attachment_text(data: bytes, ctype: str, filename: str | None, charset: str | None,
                    defects: Defects, budget: Budget) -> Extracted | None:
    """The readable text of an attachment, or None when it has none we can read (an image, an
    unknown or broken format). Never raises."""
    if not data:
        return None
    if budget.chars <= 0:
        defects.add("attachment text limit reached; rest not read")
        return None
    sink = _Sink(min(MAX_TEXT_CHARS, budget.chars))
    complete = True
    try:
        read = _read(data, ctype, filename, charset, defects, sink)
    except _Truncated:
        read, complete = True, False
    except Exception:  # defence in depth: a library failing in a way we did not foresee
        defects.add("attachment could not be read")
        return None
    if not read:
        return None
    text = clean_text(sink.text())
    if not complete:
        defects.add("attachment text truncated for the name scan")
    budget.chars -= len(text)
    return Extracted(text, complete)


def _read(data: bytes, ctype: str, filename: str | None, charset: str | None, defects: Defects, sink: _Sink) -> bool:
    kind = _kind(data, ctype, filename)
    if kind == "image":
        return False
    if kind == "pdf":
        return _pdf_text(data, defects, sink)
    if kind == "zip":
        found = _zip_text(data, defects, sink)
        if found is not None:
            return found
        return False  # another kind of archive: not opened
    if kind == "rtf" and _RTF_START.match(data[:2048]):
        try:
            rtf_to_text(data[:MAX_RTF_CHARS].decode("latin-1"), sink)
        except _Truncated:
            raise
        except Exception:  # defence in depth: the converter on input it did not foresee
            defects.add("unreadable RTF attachment")
            return False
        if len(data) > MAX_RTF_CHARS:
            raise _Truncated
        return True
    if kind == "svg" and svg_text(data, sink):
        return True
    text = decode_text(data, charset)
    if text is None:
        return False
    if kind == "html":
        truncated = len(text) > _MAX_HTML_CHARS
        text = text[:_MAX_HTML_CHARS]
        sink.add(html.to_text(text))
        sink.add("\n")
        sink.add(html.hidden_text(text))
        if truncated:
            raise _Truncated
        return True
    if kind == "directory":
        text = directory_text(text)
    sink.add(text.replace("\r\n", "\n"))
    decoded = unescaped(text)
    # The decoded reading is extra: it never makes an attachment read completely count as truncated.
    if decoded is not None and sink.size + len(decoded) < sink.limit:
        sink.add("\n")
        sink.add(decoded)
    return True


# --- HTML alternatives ---------------------------------------------------------------------------

_WORD = re.compile(r"\w+")


def html_says_more(plain: str, html_text: str) -> bool:
    """Whether an HTML alternative carries words its plain twin lacks, so that a reader of the
    plain text only would miss them ("view this message in HTML" stubs, or a plain part with
    different content). Rule: at least 3 of the HTML's words (counted with repeats, case-folded)
    are not in the plain text, and they are a quarter of its words or at least 20 of them."""
    vocabulary = {w.casefold() for w in _WORD.findall(plain)}
    words = _WORD.findall(html_text)
    missing = sum(1 for w in words if w.casefold() not in vocabulary)
    return missing >= 3 and (missing * 4 >= len(words) or missing >= 20)
