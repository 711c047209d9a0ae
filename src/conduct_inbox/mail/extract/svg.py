"""SVG: the text its text elements show."""

from __future__ import annotations

from lxml import etree

from conduct_inbox.mail.extract.base import _Sink

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
