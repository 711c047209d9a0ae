"""PDF (pypdf): the text layer, filled form fields and annotations."""

from __future__ import annotations

import io
import logging
import warnings
from typing import TYPE_CHECKING

from conduct_inbox.mail import html
from conduct_inbox.mail.charsets import Defects
from conduct_inbox.mail.extract.base import _MAX_HTML_CHARS, MAX_PDF_ANNOTATIONS, MAX_PDF_FIELDS, MAX_PDF_PAGES, _Sink, _Truncated
from conduct_inbox.mail.extract.text import decode_text

if TYPE_CHECKING:  # pypdf is imported when a PDF comes, not with the parser
    from pypdf import PageObject, PdfReader

# pypdf logs warnings about malformed files and may quote the document's bytes in them.
logging.getLogger("pypdf").setLevel(logging.CRITICAL)


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


def _pdf_annotations(page: PageObject, sink: _Sink) -> None:
    """Annotations of a page: typewriter text (/FreeText), notes, highlights' comments, widgets."""
    try:
        annotations = page.get("/Annots")
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


def _pdf_fields(reader: PdfReader, sink: _Sink) -> None:
    """Values of the interactive form's fields (AcroForm /Fields and their /Kids), each field
    once (references can loop), at most MAX_PDF_FIELDS."""
    from pypdf.generic import DictionaryObject, IndirectObject

    try:
        root = reader.trailer["/Root"].get_object()
        form = root.get("/AcroForm") if isinstance(root, DictionaryObject) else None
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
