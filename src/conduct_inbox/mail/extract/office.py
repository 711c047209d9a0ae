"""DOCX and OpenDocument: the text of every XML part of the zip package (zipfile + lxml)."""

from __future__ import annotations

import io
import re
import zipfile

from lxml import etree

from conduct_inbox.mail.charsets import Defects
from conduct_inbox.mail.extract.base import MAX_UNZIPPED_BYTES, MAX_ZIP_MEMBERS, _Sink, _Truncated

_XML_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                              remove_comments=True, remove_pis=True)

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
#: Per format: elements whose text is content, that start a new line, that stand for a tab.
# (elements whose text counts, or None for all; elements that end a line; elements that are a tab)
_Rules = tuple[set[str] | None, set[str], set[str]]
_DOCX: _Rules = ({_W + "t", _W + "delText"}, {_W + "p", _W + "br", _W + "cr", _W + "tc"}, {_W + "tab"})
_ODF: _Rules = (None, {_TEXT + "p", _TEXT + "h", _TEXT + "line-break"}, {_TEXT + "tab"})


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
