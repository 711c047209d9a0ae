"""HTML mail bodies to readable text with inscriptis; for replies, the quoted history goes first."""

from __future__ import annotations

import re

from lxml import etree
from lxml import html as lxml_html
from inscriptis import Inscriptis
from inscriptis.model.config import ParserConfig

#: Elements never shown to a reader.
_INVISIBLE = ("script", "style", "head", "title", "noscript", "template")

#: Wrappers clients put around quoted history: removed with everything inside.
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "protonmail_quote", "zmail_extra")

#: Outlook's reply header markers: the history follows them as siblings, so they go with everything after.
_CUT_IDS = ("divRplyFwdMsg", "appendonsend", "mail-editor-reference-message-container")

_CONFIG = ParserConfig(display_images=False, display_links=False)

#: Characters XML (and so lxml) refuses in text.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]+")


def _tree(markup: str) -> lxml_html.HtmlElement | None:
    data = _NOT_XML.sub("", markup).encode("utf-8", "replace")
    if not data.strip():
        return None
    parser = lxml_html.HTMLParser(encoding="utf-8", remove_comments=True, remove_pis=True)
    try:
        return lxml_html.document_fromstring(data, parser=parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        return None


def _drop(element: lxml_html.HtmlElement) -> None:
    # drop_tree keeps the element's tail text, which belongs to the surrounding content.
    if element.getparent() is not None:
        element.drop_tree()


def _cut_from(element: lxml_html.HtmlElement) -> None:
    """Remove `element` and every sibling after it, on each level up to <body>."""
    node = element
    while node is not None and node.tag not in ("body", "html"):
        parent = node.getparent()
        if parent is None:
            break
        for sibling in list(node.itersiblings()):
            parent.remove(sibling)
        node = parent
    _drop(element)


def _strip_quotes(root: lxml_html.HtmlElement) -> None:
    for element in list(root.iter("blockquote")):
        _drop(element)
    for name in _QUOTE_CLASSES:
        for element in root.find_class(name):
            _drop(element)
    for ident in _CUT_IDS:
        for element in root.xpath("//*[@id=$ident]", ident=ident):
            _cut_from(element)


def to_text(markup: str, *, without_quotes: bool = False) -> str:
    """Readable text of an HTML body; `without_quotes` also removes quoted reply history."""
    root = _tree(markup)
    if root is None:
        return ""
    try:
        for element in list(root.iter(*_INVISIBLE)):
            _drop(element)
        if without_quotes:
            _strip_quotes(root)
        text = Inscriptis(root, _CONFIG).get_text()
    except Exception:  # lxml/inscriptis on markup they did not foresee (absurd nesting, odd text)
        text = root.text_content()
    return text.strip()
