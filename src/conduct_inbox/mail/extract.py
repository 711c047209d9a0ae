"""The text a person could read in an attachment, for the member scan (DESIGN "Routing and
recusal"): text in any charset or UTF (sniffed, since senders mislabel), HTML rendered, PDF
(pypdf), DOCX (python-docx) and OpenDocument (zipfile + lxml). Formats are recognised by their
bytes first, then by declared type or file name.

Pure: no I/O, no clock, no logging. Never raises on bad input: a failure is a short defect
(never content) and no text. The parser worker runs under a time limit; the limits here bound
memory and work per attachment (decompressed zip sizes, PDF pages, characters extracted).
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass

from lxml import etree

from . import html
from .charsets import Defects, clean_text

#: Total declared uncompressed size of an office document's zip members we agree to read;
#: zipfile never yields more than a member's declared size, so this bounds zip bombs.
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024
MAX_ZIP_MEMBERS = 5_000
MAX_PDF_PAGES = 500
#: Characters of text taken from one attachment, and from all attachments of one message.
MAX_TEXT_CHARS = 6_000_000
MAX_TOTAL_CHARS = 24_000_000
#: Bytes charset detection looks at (the whole text is then decoded with what it found).
_SNIFF_BYTES = 256 * 1024
_MAX_HTML_CHARS = 2_000_000  # inscriptis is pure Python

#: The line `text` gets between a plain body and the HTML alternative that says more.
HTML_VERSION_LINE = "----- the HTML version of this message -----"

# pypdf logs warnings about malformed files and may quote the document's bytes in them.
logging.getLogger("pypdf").setLevel(logging.CRITICAL)


class Budget:
    """Characters still allowed for one message's attachment texts (shared across forwards)."""

    def __init__(self, chars: int = MAX_TOTAL_CHARS) -> None:
        self.chars = chars


@dataclass(frozen=True)
class Extracted:
    """`text` read from an attachment; `complete` is False when limits cut it short."""

    text: str
    complete: bool = True


class _Truncated(Exception):
    """Raised inside a walker once its character limit is reached."""


# --- recognising formats -------------------------------------------------------------------------

_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
                b"\x00\x00\x01\x00")
_OFFICE_ZIP_TYPES = ("officedocument", "opendocument", "application/zip", "application/x-zip", "msword")
_OFFICE_EXTS = (".docx", ".docm", ".dotx", ".odt", ".ods", ".odp", ".odg", ".ott", ".zip")
_HTML_EXTS = (".html", ".htm", ".xhtml", ".shtml")
_HTML_START = re.compile(rb"^\s*(?:<\?xml[^>]{0,200}>\s*)?(?:<!--.{0,500}?-->\s*)*<(?:!doctype\s+html|html|head|body)\b",
                         re.IGNORECASE | re.DOTALL)


def _ext(filename: str | None) -> str:
    name = (filename or "").lower().strip()
    return name[name.rfind(".") :] if "." in name else ""


def is_image(data: bytes) -> bool:
    return data.startswith(_IMAGE_MAGIC) or (data[4:12] in (b"ftypheic", b"ftypavif") or data[:4] == b"RIFF" and
                                              data[8:12] == b"WEBP")


def _kind(data: bytes, ctype: str, filename: str | None) -> str:
    """"pdf", "zip", "image", "html" or "text": content first, since senders mislabel."""
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        return "zip"
    if is_image(data):
        return "image"
    ext = _ext(filename)
    if ctype == "application/pdf" or ext == ".pdf":
        return "pdf"
    if ext in _OFFICE_EXTS or any(t in ctype for t in _OFFICE_ZIP_TYPES):
        return "zip"
    if ctype in ("text/html", "application/xhtml+xml") or ext in _HTML_EXTS or _HTML_START.match(data[:2048]):
        return "html"
    return "text"


# --- text in any encoding ------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
#: What text should not contain much of: control characters (not whitespace), replacement
#: characters, private-use and unassigned code points (what a wrong guess decodes to).
_JUNK = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd\ue000-\uf8ff]")


def _utf_without_bom(sample: bytes) -> str | None:
    """UTF-16/32 without a byte order mark, told by where the zero bytes of mostly-ASCII text fall."""
    n = len(sample)
    if n < 8:
        return None

    def zeros(offset: int, step: int) -> float:
        column = sample[offset::step]
        return column.count(0) / max(1, len(column))

    if n % 4 == 0:
        if zeros(1, 4) > 0.9 and zeros(2, 4) > 0.9 and zeros(3, 4) > 0.9 and zeros(0, 4) < 0.1:
            return "utf-32-le"
        if zeros(0, 4) > 0.9 and zeros(1, 4) > 0.9 and zeros(2, 4) > 0.9 and zeros(3, 4) < 0.1:
            return "utf-32-be"
    if zeros(1, 2) > 0.3 and zeros(0, 2) < 0.05:
        return "utf-16-le"
    if zeros(0, 2) > 0.3 and zeros(1, 2) < 0.05:
        return "utf-16-be"
    return None


def _plausible(text: str) -> bool:
    """Reads as text: almost no control, replacement or private-use characters, some letters."""
    if not text.strip():
        return False
    sample = text[:200_000]
    junk = len(_JUNK.findall(sample))
    if junk > len(sample) * 0.01:
        return False
    unassigned = sum(1 for ch in sample[:20_000] if ord(ch) > 0x7F and unicodedata.category(ch) in ("Cn", "Co", "Cs"))
    return unassigned <= len(sample[:20_000]) * 0.01


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeError, LookupError, ValueError):
        return None
    except Exception:  # a codec that is not a text codec, or one that misbehaves
        return None


def decode_text(data: bytes, charset: str | None = None) -> str | None:
    """`data` as text if it plausibly is text, whatever its declared charset; else None."""
    if not data:
        return None
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = data.decode(codec, errors="replace")
            return text if _plausible(text) else None
    utf = _utf_without_bom(data[:4096])
    if utf is not None:
        text = data.decode(utf, errors="replace")
        return text if _plausible(text) else None
    if b"\x00" in data[:_SNIFF_BYTES]:
        return None  # binary (and no UTF-16/32 pattern)
    candidates = [charset] if charset else []
    candidates.append("utf-8")
    for codec in candidates:
        text = _strict(data, codec.strip().strip("\"'").lower())
        if text is not None:
            return text if _plausible(text) else None
    return _legacy(data)


def _legacy(data: bytes) -> str | None:
    """Undeclared legacy charsets: charset-normalizer guesses from a sample, we decode it all.

    A guess from a few non-ASCII bytes can be wrong (one no-break space between two names read
    as `Ā`), so the windows-1252 reading (what browsers assume for undeclared text) is scanned
    as well when it differs: a name must match in either reading."""
    from charset_normalizer import from_bytes

    readings = []
    try:
        best = from_bytes(data[:_SNIFF_BYTES]).best()
    except Exception:  # the detector on input it did not foresee
        best = None
    if best is not None and best.chaos <= 0.3:
        readings.append(_strict(data, best.encoding) or data.decode(best.encoding, errors="replace"))
    western = data.decode("cp1252", errors="replace")
    if western not in readings:
        readings.append(western)
    plausible = [text for text in readings if _plausible(text)]
    return "\n".join(plausible) if plausible else None


# --- documents -----------------------------------------------------------------------------------

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                              remove_comments=True, remove_pis=True)

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
#: Per format: elements whose text is content, that start a new line, that stand for a tab.
_DOCX = ({_W + "t", _W + "delText"}, {_W + "p", _W + "br", _W + "cr", _W + "tc"}, {_W + "tab"})
_ODF = (None, {_TEXT + "p", _TEXT + "h", _TEXT + "line-break"}, {_TEXT + "tab"})


class _Sink:
    """Collects text pieces up to a character limit."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def add(self, text: str | None) -> None:
        if text:
            self.parts.append(text)
            self.size += len(text)
            if self.size > self.limit:
                raise _Truncated

    def text(self) -> str:
        return "".join(self.parts)[: self.limit]


def _xml_text(root: etree._Element, rules: tuple, sink: _Sink) -> None:
    """Text of an XML document in reading order; `rules` as in _DOCX/_ODF (None: all text counts)."""
    content, lines, tabs = rules
    for event, element in etree.iterwalk(root, events=("start", "end")):
        tag = element.tag
        if event == "start":
            if tag in lines:
                sink.add("\n")
            elif tag in tabs:
                sink.add("\t")
            elif tag == _TEXT + "s":  # ODF: <text:s text:c="3"/> is three spaces
                count = element.get(_TEXT + "c", "1")
                sink.add(" " * min(int(count) if count.isdigit() else 1, 100))
            if content is None or tag in content:
                sink.add(element.text)
        elif content is None and element.getparent() is not None:
            sink.add(element.tail)


def _parse_xml(data: bytes) -> etree._Element | None:
    try:
        return etree.fromstring(data, _XML_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return None


def _open_zip(data: bytes, defects: Defects) -> zipfile.ZipFile | None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError, NotImplementedError):
        defects.add("unreadable zip or office attachment")
        return None
    if len(infos) > MAX_ZIP_MEMBERS or sum(i.file_size for i in infos) > MAX_UNZIPPED_BYTES:
        defects.add("office attachment too large to read when decompressed")
        return None
    return archive


def _docx_text(data: bytes, sink: _Sink) -> None:
    """Body, tables, text boxes, headers, footers, notes and comments: every w:t of every part."""
    import docx  # python-docx: opens the package and its relationships

    document = docx.Document(io.BytesIO(data))
    for part in document.part.package.iter_parts():
        if not str(part.partname).endswith(".xml"):
            continue
        root = getattr(part, "element", None)
        if root is None:
            root = _parse_xml(part.blob)
        if root is not None:
            _xml_text(root, _DOCX, sink)


def _odf_text(archive: zipfile.ZipFile, sink: _Sink) -> bool:
    """OpenDocument (ODT, ODS, ODP...): content.xml, then styles.xml (headers, footers)."""
    names = set(archive.namelist())
    if "content.xml" not in names:
        return False
    for name in ("content.xml", "styles.xml"):
        if name in names:
            root = _parse_xml(archive.read(name))
            if root is not None:
                _xml_text(root, _ODF, sink)
    return True


def _zip_text(data: bytes, defects: Defects, sink: _Sink) -> bool | None:
    """Text of a DOCX or OpenDocument file; None for another kind of zip (not read)."""
    archive = _open_zip(data, defects)
    if archive is None:
        return False
    with archive:
        names = set(archive.namelist())
        if "word/document.xml" in names or "[Content_Types].xml" in names and any(n.startswith("word/") for n in names):
            try:
                _docx_text(data, sink)
            except _Truncated:
                raise
            except Exception:  # python-docx on a broken or unexpected package
                defects.add("unreadable DOCX attachment")
                return False
            return True
        try:
            if _odf_text(archive, sink):
                return True
        except _Truncated:
            raise
        except Exception:  # zipfile/lxml on a broken member
            defects.add("unreadable OpenDocument attachment")
            return False
    return None


def _pdf_text(data: bytes, defects: Defects, sink: _Sink) -> bool:
    from pypdf import PdfReader

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            if reader.is_encrypted and not reader.decrypt(""):
                defects.add("encrypted PDF attachment not read")
                return False
            pages = reader.pages
            count = len(pages)
            for number in range(min(count, MAX_PDF_PAGES)):
                sink.add(pages[number].extract_text() or "")
                sink.add("\n")
    except _Truncated:
        raise
    except Exception:  # pypdf on a damaged or hostile file
        defects.add("unreadable PDF attachment")
        return False
    if count > MAX_PDF_PAGES:
        defects.add("PDF attachment has too many pages; only the first were read")
        raise _Truncated
    if not "".join(sink.parts).strip():
        defects.add("PDF attachment has no text layer")
        return False
    return True


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
    text = decode_text(data, charset)
    if text is None:
        return False
    if kind == "html":
        if len(text) > _MAX_HTML_CHARS:
            text = text[:_MAX_HTML_CHARS]
            sink.add(html.to_text(text))
            raise _Truncated
        text = html.to_text(text)
    sink.add(text.replace("\r\n", "\n"))
    return True


_HEADER_LINE = re.compile(rb"[!-9;-~]{1,76}:[^\n]*\r?\n(?:[ \t][^\n]*\r?\n)*")
_MAIL_FIELDS = frozenset({b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"received", b"mime-version",
                          b"return-path", b"delivered-to", b"reply-to", b"sender", b"content-type"})


def looks_like_message(data: bytes, filename: str | None) -> bool:
    """Whether an attachment is a mail message (an .eml sent as octet-stream or text): a header
    block of mail fields ending in an empty line."""
    head = data[:64 * 1024]
    if head.startswith(b"From "):  # an mbox separator
        head = head[head.find(b"\n") + 1 :]
    pos, fields = 0, set()
    while pos < len(head) and (m := _HEADER_LINE.match(head, pos)) is not None:
        fields.add(m.group(0).split(b":", 1)[0].lower())
        pos = m.end()
    ended = head.startswith(b"\n", pos) or head.startswith(b"\r\n", pos) or pos == len(data)
    wanted = 1 if _ext(filename) == ".eml" else 2
    return ended and pos > 0 and len(fields & _MAIL_FIELDS) >= wanted and (b"from" in fields or b"subject" in fields)


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
