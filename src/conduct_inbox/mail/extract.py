"""The text a person could read in an attachment, for the member scan (DESIGN "Routing and
recusal"): text in any charset or UTF (sniffed, since senders mislabel), HTML rendered (and
what it shows outside its text: attributes, CSS generated content), PDF (pypdf: text, filled
form fields, annotations), DOCX and OpenDocument (every XML part, zipfile + lxml), RTF (our
bounded converter), iCalendar and vCard (unfolded, quoted-printable decoded, unescaped), SVG
(its text elements), JSON (`\\uXXXX` escapes decoded). Formats are recognised by their bytes
first, then by declared type or file name.

Pure: no I/O, no clock, no logging. Never raises on bad input: a failure is a short defect
(never content) and no text. The parser worker runs under a time limit; the limits here bound
memory and work per attachment (decompressed zip sizes, PDF pages, characters extracted).
"""

from __future__ import annotations

import binascii
import codecs
import io
import logging
import quopri
import re
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass

from lxml import etree

from conduct_inbox.mail import html
from conduct_inbox.mail.charsets import Defects, clean_text

#: Total declared uncompressed size of an office document's zip members we agree to read;
#: zipfile never yields more than a member's declared size, so this bounds zip bombs.
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024
MAX_ZIP_MEMBERS = 5_000
MAX_PDF_PAGES = 500
#: Annotations read per PDF page, and form fields (and their kids) per PDF.
MAX_PDF_ANNOTATIONS = 2_000
MAX_PDF_FIELDS = 20_000
#: Characters of RTF source converted (its text is a fraction of it): a few seconds of the
#: converter's work at worst (dense control words), within the parser worker's time limit.
MAX_RTF_CHARS = 16_000_000
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
_SVG_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]{0,200}>\s*)?(?:<!--.{0,500}?-->\s*)*"
                        rb"(?:<!doctype\s+svg[^>]{0,500}>\s*)?(?:<!--.{0,500}?-->\s*)*<svg\b", re.IGNORECASE | re.DOTALL)
_RTF_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s{0,100}\{\\rtf")
_DIRECTORY_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s{0,100}BEGIN:V(?:CALENDAR|CARD)\b", re.IGNORECASE)
_SVG_TYPES = ("image/svg+xml", "image/svg")
_RTF_TYPES = ("application/rtf", "text/rtf", "application/x-rtf", "text/richtext")
_DIRECTORY_TYPES = ("text/calendar", "application/ics", "text/vcard", "text/x-vcard", "text/directory",
                    "text/x-vcalendar")
_DIRECTORY_EXTS = (".ics", ".ical", ".ifb", ".vcs", ".vcf", ".vcard")


def _ext(filename: str | None) -> str:
    name = (filename or "").lower().strip()
    return name[name.rfind(".") :] if "." in name else ""


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
        decoded = _strict(data, codec.strip().strip("\"'").lower())
        if decoded is not None:
            return decoded if _plausible(decoded) else None
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
# (elements whose text counts, or None for all; elements that end a line; elements that are a tab)
_Rules = tuple[set[str] | None, set[str], set[str]]
_DOCX: _Rules = ({_W + "t", _W + "delText"}, {_W + "p", _W + "br", _W + "cr", _W + "tc"}, {_W + "tab"})
_ODF: _Rules = (None, {_TEXT + "p", _TEXT + "h", _TEXT + "line-break"}, {_TEXT + "tab"})


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


def _xml_text(root: etree._Element, rules: _Rules, sink: _Sink) -> None:
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


#: OpenDocument parts that hold metadata and settings, not what the document shows.
_ODF_METADATA = frozenset({"meta.xml", "settings.xml", "meta-inf/manifest.xml", "manifest.rdf"})
_XML_HEAD = re.compile(rb"^(?:\xef\xbb\xbf)?\s{0,200}<")


def _member(archive: zipfile.ZipFile, name: str) -> bytes | None:
    try:
        return archive.read(name)
    except KeyError:
        return None


def _package(archive: zipfile.ZipFile) -> str | None:
    """"docx" for a WordprocessingML package, "odf" for OpenDocument, None for another zip.
    Member names are compared without case (Word itself does)."""
    names = {info.filename.lower(): info.filename for info in archive.infolist()}
    if "[content_types].xml" in names:
        types = _member(archive, names["[content_types].xml"]) or b""
        if b"wordprocessingml" in types or any(n.startswith("word/") for n in names):
            return "docx"
    if "content.xml" in names:
        return "odf"
    if "mimetype" in names and (_member(archive, names["mimetype"]) or b"").startswith(b"application/vnd.oasis.opendocument"):
        return "odf"
    return None


def _package_text(archive: zipfile.ZipFile, rules: _Rules, skip: frozenset[str], sink: _Sink) -> None:
    """Every XML part of a package, whatever its name (sniffed, not told by `.xml`): Word and
    LibreOffice show parts that the relationships or manifest name, whatever they are called."""
    for info in archive.infolist():
        if info.is_dir() or info.filename.lower() in skip:
            continue
        with archive.open(info) as member:
            head = member.read(256)
            if not _XML_HEAD.match(head):
                continue
            data = head + member.read()
        root = _parse_xml(data)
        if root is not None:
            _xml_text(root, rules, sink)
            sink.add("\n")


def _zip_text(data: bytes, defects: Defects, sink: _Sink) -> bool | None:
    """Text of a DOCX or OpenDocument file; None for another kind of zip (not read)."""
    archive = _open_zip(data, defects)
    if archive is None:
        return False
    package = None
    with archive:
        try:
            package = _package(archive)
            if package is None:
                return None
            if package == "docx":
                _package_text(archive, _DOCX, frozenset(), sink)
            else:
                _package_text(archive, _ODF, _ODF_METADATA, sink)
        except _Truncated:
            raise
        except Exception:  # zipfile/lxml on a broken or encrypted member
            defects.add("unreadable DOCX attachment" if package == "docx" else "unreadable OpenDocument attachment")
            return False
    return True


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
                _pdf_annotations(pages[number], sink)
            _pdf_fields(reader, sink)
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


#: Annotation and field entries a viewer shows: comments and typed text (/Contents, rich text
#: /RC), field values (/V; /DV the default a reset shows), tooltips (/TU), choice options (/Opt).
_PDF_TEXT_KEYS = ("/Contents", "/RC", "/V", "/DV", "/TU", "/Opt")


def _pdf_strings(value: object, sink: _Sink, depth: int = 0) -> None:
    """The text of a PDF string, name or (nested) array of them; other objects give nothing."""
    from pypdf.generic import ArrayObject, ByteStringObject, IndirectObject, NameObject, TextStringObject

    if isinstance(value, IndirectObject):
        value = value.get_object()
    if isinstance(value, TextStringObject):
        sink.add(str(value))
        sink.add("\n")
    elif isinstance(value, ByteStringObject):
        text = decode_text(bytes(value))
        if text:
            sink.add(text)
            sink.add("\n")
    elif isinstance(value, NameObject) and value not in ("/Off", "/Yes"):
        sink.add(str(value)[1:])
        sink.add("\n")
    elif isinstance(value, ArrayObject) and depth < 3:
        for item in value[:MAX_PDF_FIELDS]:
            _pdf_strings(item, sink, depth + 1)


def _pdf_entries(obj: object, sink: _Sink) -> None:
    from pypdf.generic import DictionaryObject

    if not isinstance(obj, DictionaryObject):
        return
    for key in _PDF_TEXT_KEYS:
        if key in obj:
            value = obj.get(key)
            if key == "/RC" and value is not None:  # rich text: XHTML
                text = value.get_object() if hasattr(value, "get_object") else value
                if hasattr(text, "get_data"):
                    text = decode_text(text.get_data()) or ""
                sink.add(html.to_text(str(text)[:_MAX_HTML_CHARS]))
                sink.add("\n")
            else:
                _pdf_strings(value, sink)


def _pdf_annotations(page: object, sink: _Sink) -> None:
    """Annotations of a page: typewriter text (/FreeText), notes, highlights' comments, widgets."""
    try:
        annotations = page.get("/Annots")  # type: ignore[attr-defined]
        annotations = annotations.get_object() if annotations is not None else None
    except Exception:  # a broken reference
        return
    if not isinstance(annotations, list):
        return
    for annotation in annotations[:MAX_PDF_ANNOTATIONS]:
        try:
            _pdf_entries(annotation.get_object() if hasattr(annotation, "get_object") else annotation, sink)
        except _Truncated:
            raise
        except Exception:  # one broken annotation does not hide the others
            continue


def _pdf_fields(reader: object, sink: _Sink) -> None:
    """Values of the interactive form's fields (AcroForm /Fields and their /Kids), each field
    once (references can loop), at most MAX_PDF_FIELDS."""
    from pypdf.generic import DictionaryObject, IndirectObject

    try:
        form = reader.trailer["/Root"].get_object().get("/AcroForm")  # type: ignore[attr-defined]
        form = form.get_object() if form is not None else None
        fields = form.get("/Fields") if isinstance(form, DictionaryObject) else None
        fields = fields.get_object() if fields is not None else None
    except Exception:  # a broken catalogue
        return
    if not isinstance(fields, list):
        return
    stack = list(reversed(fields[:MAX_PDF_FIELDS]))
    seen: set[tuple[int, int]] = set()
    visited = 0
    while stack and visited < MAX_PDF_FIELDS:
        reference = stack.pop()
        visited += 1
        try:
            if isinstance(reference, IndirectObject):
                key = (reference.idnum, reference.generation)
                if key in seen:
                    continue
                seen.add(key)
            field = reference.get_object() if hasattr(reference, "get_object") else reference
            if not isinstance(field, DictionaryObject):
                continue
            _pdf_entries(field, sink)
            kids = field.get("/Kids")
            kids = kids.get_object() if kids is not None else None
            if isinstance(kids, list):
                stack.extend(reversed(kids[:MAX_PDF_FIELDS]))
        except _Truncated:
            raise
        except Exception:  # one broken field does not hide the others
            continue


# --- RTF -----------------------------------------------------------------------------------------

_RTF_TOKEN = re.compile(
    r"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?"  # control word, optional parameter, its delimiting space
    r"|\\'([0-9a-fA-F]{2})"  # a byte in the document's code page
    r"|\\([^a-zA-Z'])"  # control symbol
    r"|([{}])"
    r"|[\r\n]+"  # line breaks in the source are not text
    r"|([^\\{}\r\n]+)"  # text
    r"|(\\)",  # a lone backslash at the end
)
#: Destinations whose text is not shown in the document.
_RTF_HIDDEN = frozenset("""
    fonttbl colortbl stylesheet info pict object objdata themedata colorschememapping latentstyles
    datastore xmlnstbl rsidtbl generator listtable listoverridetable revtbl filetbl pgdsctbl
    fldinst bkmkstart bkmkend nonshppict blipuid shppict mmathPr wgrffmtfilter xmlopen xmlclose
    pnseclvl pntext pntxta pntxtb operator author title subject keywords company comment doccomm
    falt panose
""".split())
#: Destinations marked ignorable ("{\*\name") whose text Word shows all the same: comments.
_RTF_STARRED_SHOWN = frozenset({"annotation"})
_RTF_CHARS = {"par": "\n", "line": "\n", "sect": "\n", "page": "\n", "row": "\n", "tab": "\t", "cell": "\t",
              "emdash": "\u2014", "endash": "\u2013", "bullet": "\u2022", "lquote": "\u2018", "rquote": "\u2019",
              "ldblquote": "\u201c", "rdblquote": "\u201d", "emspace": " ", "enspace": " ", "qmspace": " "}
_RTF_SYMBOLS = {"~": "\u00a0", "_": "-", "-": "", "\\": "\\", "{": "{", "}": "}", "\t": "\t"}
_MAX_RTF_DEPTH = 1_000


def _rtf_codec(number: int) -> str:
    codec = f"cp{number}"
    try:
        codecs.lookup(codec)
    except LookupError:
        return "cp1252"
    return codec


def rtf_to_text(source: str, sink: _Sink) -> None:
    """The text of an RTF document (`source`: its bytes as latin-1) into `sink`: groups, hidden
    destinations, `\\'hh` bytes in the document's code page, `\\uN` characters (and the `\\ucN`
    fallback characters after them skipped), `\\binN` data skipped. One pass, bounded group depth."""
    codec = "cp1252"
    pending = bytearray()  # \'hh bytes and 8-bit text, decoded together (double-byte code pages)
    # Per group: hidden, fallback characters per \u (\ucN)
    hidden, uc = False, 1
    stack: list[tuple[bool, int]] = []
    overflow = 0  # groups deeper than _MAX_RTF_DEPTH share their parent's state
    group_start = False
    starred = False  # after "{\*": the destination is hidden unless it is one Word shows
    skip = 0  # fallback characters still to skip after a \u

    def flush() -> None:
        if pending:
            if not hidden:
                sink.add(bytes(pending).decode(codec, errors="replace"))
            pending.clear()

    pos, end = 0, len(source)
    while pos < end:
        m = _RTF_TOKEN.match(source, pos)
        if m is None:  # cannot happen (the last alternatives take any character); be safe
            pos += 1
            continue
        pos = m.end()
        word, param, byte, symbol, brace, text, lone = m.groups()
        starting, group_start = group_start, False
        if starred:
            starred = False
            if word not in _RTF_STARRED_SHOWN:
                hidden = True
        if byte is not None:
            if skip:
                skip -= 1
            else:
                pending.append(int(byte, 16))
            continue
        if text is not None:
            if skip:
                drop = min(skip, len(text))
                skip -= drop
                text = text[drop:]
            if text and not hidden:
                if text.isascii():
                    flush()
                    sink.add(text)
                else:
                    pending.extend(text.encode("latin-1", errors="replace"))
            continue
        if m.group(0).startswith(("\r", "\n")) or lone is not None:
            continue
        flush()
        if brace == "{":
            skip = 0
            if len(stack) < _MAX_RTF_DEPTH:
                stack.append((hidden, uc))
            else:
                overflow += 1
            group_start = True
        elif brace == "}":
            skip = 0
            if overflow:
                overflow -= 1
            elif stack:
                hidden, uc = stack.pop()
        elif symbol is not None:
            if symbol == "*" and starting:
                starred = True
            elif skip:
                skip -= 1
            elif not hidden and symbol in _RTF_SYMBOLS:
                sink.add(_RTF_SYMBOLS[symbol])
        elif word is not None:
            number = int(param) if param is not None else None
            if word == "bin" and number:
                pos += max(0, number)  # binary data: skipped unread
                continue
            if skip:
                skip -= 1
                continue
            if word in _RTF_HIDDEN:
                hidden = True
            elif word == "ansicpg" and number is not None:
                codec = _rtf_codec(number)
            elif word == "uc" and number is not None:
                uc = max(0, min(number, 10))
            elif word == "u" and number is not None:
                if not hidden:
                    sink.add(chr(number % 65536) if number % 65536 not in range(0xD800, 0xE000) else "\ufffd")
                skip = uc
            elif not hidden and word in _RTF_CHARS:
                sink.add(_RTF_CHARS[word])
            elif word in ("mac", "pc", "pca"):
                codec = {"mac": "mac-roman", "pc": "cp437", "pca": "cp850"}[word]
    flush()


# --- iCalendar and vCard -------------------------------------------------------------------------

_UNFOLD = re.compile(r"\r?\n[ \t]")
_PROPERTY = re.compile(r'^((?:[^:"]|"[^"]*"){0,1000}):(.*)$', re.DOTALL)
_DIRECTORY_ESCAPE = re.compile(r"\\([nN,;:\\])")
_QP_ENCODING = re.compile(r";\s*(?:ENCODING\s*=\s*)?(?:QUOTED-PRINTABLE|QP)\b", re.IGNORECASE)
_B_ENCODING = re.compile(r";\s*(?:ENCODING\s*=\s*)?(?:B|BASE64)\s*(?:;|$)", re.IGNORECASE)
_CHARSET_PARAM = re.compile(r";\s*CHARSET\s*=\s*\"?([\w.:-]{1,40})", re.IGNORECASE)


def directory_text(text: str) -> str:
    """iCalendar (RFC 5545) and vCard (RFC 6350, 2.1) as read: folded lines unfolded,
    quoted-printable values (with their soft line breaks) decoded in their charset, `\\,` `\\;`
    `\\n` unescaped. Each line stays "NAME;PARAMS:value" (parameters such as CN= are shown too)."""
    lines = _UNFOLD.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        m = _PROPERTY.match(line)
        if m is None:
            out.append(line)
            continue
        name, value = m.groups()
        if _QP_ENCODING.search(name):
            pieces = [value]
            while pieces[-1].endswith("=") and i < len(lines):  # a soft line break continues the value
                pieces[-1] = pieces[-1][:-1]
                pieces.append(lines[i])
                i += 1
            value = "".join(pieces)
            charset = _CHARSET_PARAM.search(name)
            raw = quopri.decodestring(value.encode("utf-8", "replace"))
            value = decode_text(raw, charset.group(1) if charset else "utf-8") or ""
        elif _B_ENCODING.search(name):
            try:
                value = decode_text(binascii.a2b_base64(value.encode("ascii", "replace"))) or ""
            except (binascii.Error, ValueError):
                value = ""
        out.append(f"{name}:{_DIRECTORY_ESCAPE.sub(_directory_unescape, value)}")
    return "\n".join(out)


def _directory_unescape(m: re.Match[str]) -> str:
    char = m.group(1)
    return "\n" if char in "nN" else char


# --- SVG -----------------------------------------------------------------------------------------

_SVG_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                              remove_comments=True, remove_pis=True, recover=True)
_SVG_SILENT = frozenset({"style", "script", "defs", "metadata"})
_SVG_LINES = frozenset({"text", "title", "desc", "p", "div", "br", "textPath", "flowPara", "flowRoot"})


def svg_text(data: bytes, sink: _Sink) -> bool:
    """The text an SVG image shows: its <text> elements (with their <tspan>s inline), titles and
    descriptions, text in <foreignObject>. False when it is not XML at all."""
    try:
        root = etree.fromstring(data, _SVG_PARSER)
    except (etree.XMLSyntaxError, ValueError):
        return False
    if root is None:
        return False
    silent = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        tag = element.tag
        name = etree.QName(tag).localname if isinstance(tag, str) else ""
        if event == "start":
            if name in _SVG_SILENT:
                silent += 1
            elif name in _SVG_LINES:
                sink.add("\n")
            if not silent:
                sink.add(element.text)
        else:
            if name in _SVG_SILENT:
                silent -= 1
            if not silent and element is not root:
                sink.add(element.tail)
    return True


# --- JSON ----------------------------------------------------------------------------------------

_JSON_ESCAPE = re.compile(r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})"
                          r"|\\([\"\\/bfnrt])")
_JSON_ESCAPED = re.compile(r"\\u[0-9a-fA-F]{4}|\\[nrt\"]")
_JSON_SIMPLE = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _json_unescape(m: re.Match[str]) -> str:
    high, low, single, simple = m.groups()
    if high is not None:
        return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00))
    if single is not None:
        code = int(single, 16)
        return "\ufffd" if 0xD800 <= code < 0xE000 else chr(code)
    return _JSON_SIMPLE[simple]


def unescaped(text: str) -> str | None:
    """`text` with JSON / JavaScript string escapes (`\\u0042ob`, `\\n`) decoded, when it has
    such escapes; else None."""
    if "\\" not in text or not _JSON_ESCAPED.search(text):
        return None
    return _JSON_ESCAPE.sub(_json_unescape, text)


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


_WEB_ARCHIVE_TYPES = ("multipart/related", "application/x-mimearchive", "message/rfc822", "application/x-mht")
_WEB_ARCHIVE_EXTS = (".mht", ".mhtml")
_MULTIPART_TYPE = re.compile(rb"^content-type:\s*multipart/", re.IGNORECASE | re.MULTILINE)


def looks_like_mime_document(data: bytes, ctype: str, filename: str | None) -> bool:
    """Whether an attachment is a MIME document that is not a mail message: a header block with
    a multipart Content-Type (an MHT/MHTML web archive as Word and browsers save it), whatever
    its declared type or file name."""
    head = data[:64 * 1024]
    pos = 0
    while pos < len(head) and (m := _HEADER_LINE.match(head, pos)) is not None:
        pos = m.end()
    if pos == 0 or not (head.startswith(b"\n", pos) or head.startswith(b"\r\n", pos)):
        return False
    if _MULTIPART_TYPE.search(head[:pos]):
        return True
    return ctype in _WEB_ARCHIVE_TYPES or _ext(filename) in _WEB_ARCHIVE_EXTS


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
