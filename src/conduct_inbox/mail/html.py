"""HTML mail bodies to readable text with inscriptis; for replies, the quoted history and the
client's signature go first. For the member scan, `hidden_text` gives what a viewer shows or
keeps outside the rendered text: attributes (alt, title...), CSS generated content, the title."""

from __future__ import annotations

import re

from inscriptis import Inscriptis
from inscriptis.model.config import ParserConfig
from lxml import etree
from lxml import html as lxml_html

from conduct_inbox.mail.quotes import REPLY_MARKER

#: Elements never shown to a reader.
_INVISIBLE = ("script", "style", "head", "title", "noscript", "template")

#: Wrappers clients put around quoted history: removed with everything inside.
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "protonmail_quote", "zmail_extra")

#: Outlook's reply header markers: the history follows them as siblings, so they go with everything after.
_CUT_IDS = ("divRplyFwdMsg", "appendonsend", "mail-editor-reference-message-container")

#: Signature elements clients fill with the signature only: removed with everything inside.
#: Gmail (the signature and its "-- " prefix), Thunderbird, Proton Mail, Roundcube.
_SIGNATURE_CLASSES = ("gmail_signature", "gmail_signature_prefix", "moz-signature", "protonmail_signature_block")
_SIGNATURE_IDS = ("protonmail_signature_block", "protonmail_mobile_signature_block", "_rc_sig")
_SIGNATURE_XPATH = "//*[@data-smartmail='gmail_signature']"

#: Signature elements where what the sender types sometimes lands too (Outlook on the web and
#: new Outlook put typed paragraphs inside `#Signature`; iOS Mail copies `#AppleMailSignature`
#: onto new lines): removed only at the very end of the new text and when signature-sized.
_TRAILING_SIGNATURE_IDS = ("Signature", "signature", "AppleMailSignature")
#: Where a signature starts and runs to the end of the new text (iOS Mail's line break, classic
#: Outlook's Word bookmark): cut from there under the same conditions.
_SIGNATURE_START_XPATH = "//br[@id='lineBreakAtBeginningOfSignature'] | //a[@name='_MailAutoSig']"
#: Not signature markers, though they look like it: `#ms-outlook-mobile-signature` and
#: `#ymail_android_signature` (Outlook and Yahoo mobile) often hold the whole typed reply,
#: `.elementToProof` marks every paragraph new Outlook edits, `#divtagdefaultwrapper` wraps
#: the whole body of older Outlook on the web. Their stock footers ("Get Outlook for iOS") are
#: plain-text lines that `conduct_inbox.core.outward` removes.

#: Most visible characters a trailing signature element may hold before it is read as typed text.
_SIGNATURE_MAX_CHARS = 600
#: Each of these elements reads the text after it: only so many are looked at (hostile markup).
_SIGNATURE_MAX_ELEMENTS = 20

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


def _visible(texts: list[str]) -> int:
    return sum(len("".join(t.split())) for t in texts)


def _after(element: lxml_html.HtmlElement) -> list[str]:
    """Text after `element` up to our reply marker (below it is history, cut later)."""
    texts = element.xpath("following::text()")
    joined = "".join(texts)
    at = joined.lower().find(REPLY_MARKER)
    return texts if at < 0 else [joined[:at]]


def _strip_signatures(root: lxml_html.HtmlElement) -> None:
    for name in _SIGNATURE_CLASSES:
        for element in root.find_class(name):
            _drop(element)
    for ident in _SIGNATURE_IDS:
        for element in root.xpath("//*[@id=$ident]", ident=ident):
            _drop(element)
    for element in root.xpath(_SIGNATURE_XPATH):
        _drop(element)
    for ident in _TRAILING_SIGNATURE_IDS:
        # Last first: iOS Mail repeats the id on each line of the signature.
        for element in reversed(root.xpath("//*[@id=$ident]", ident=ident)[-_SIGNATURE_MAX_ELEMENTS:]):
            if element.getparent() is None or _visible(_after(element)) > 0:
                continue
            if _visible(element.xpath(".//text()")) <= _SIGNATURE_MAX_CHARS:
                _drop(element)
    for element in root.xpath(_SIGNATURE_START_XPATH)[:_SIGNATURE_MAX_ELEMENTS]:
        inside = element.xpath(".//text()")
        if _visible(inside) + _visible(_after(element)) <= _SIGNATURE_MAX_CHARS:
            _cut_from(element)


#: Most characters of one attribute value or generated-content string taken for the scan.
_MAX_HIDDEN_ITEM = 10_000
#: Attributes a viewer shows (tooltips, image replacements, form values, screen readers).
_SHOWN_ATTRIBUTES = ("alt", "title", "aria-label", "aria-description", "placeholder", "value", "label", "summary",
                     "abbr", "data-content", "data-tooltip")
#: CSS `content:` values (`::before`/`::after`): quoted strings, concatenated ("Bob" " Builder").
_CSS_CONTENT = re.compile(r"""\bcontent\s*:\s*((?:"(?:[^"\\\n]|\\.){0,2000}"|'(?:[^'\\\n]|\\.){0,2000}'|[ \t]+){1,50})""",
                          re.IGNORECASE | re.DOTALL)
_CSS_STRING = re.compile(r""""((?:[^"\\\n]|\\.){0,2000})"|'((?:[^'\\\n]|\\.){0,2000})'""", re.DOTALL)
_CSS_ESCAPE = re.compile(r"\\(?:([0-9a-fA-F]{1,6})[ \t\r\n]?|(.))", re.DOTALL)
_RTL_OVERRIDE = re.compile(r"bidi-override", re.IGNORECASE)
_RTL_DIRECTION = re.compile(r"direction\s*:\s*rtl", re.IGNORECASE)


def _css_unescape(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        code = int(m.group(1), 16)
        return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code < 0xE000 else "\ufffd"
    return m.group(2)


def _css_contents(css: str, out: list[str]) -> None:
    for m in _CSS_CONTENT.finditer(css):
        strings = (a + b for a, b in _CSS_STRING.findall(m.group(1)))  # the group not matched is ""
        out.append(_CSS_ESCAPE.sub(_css_unescape, "".join(strings)))


def hidden_text(markup: str) -> str:
    """What an HTML document shows, or its viewers keep, outside its rendered text: the values of
    shown attributes (`alt`, `title`, `aria-label`, form values...), CSS generated content
    (`content: "..."` in style sheets and style attributes), the title, <noscript> text. One
    line each; for the member scan only."""
    root = _tree(markup)
    if root is None:
        return ""
    out: list[str] = []
    try:
        for element in root.iter("style"):
            _css_contents(element.text_content(), out)
        for element in root.iter("title", "noscript", "template"):
            out.append(element.text_content()[:_MAX_HIDDEN_ITEM])
        for element in root.iter():
            if not isinstance(element.tag, str):
                continue
            style = element.get("style")
            if style and "content" in style:
                _css_contents(style, out)
            for name in _SHOWN_ATTRIBUTES:
                value = element.get(name)
                if value:
                    out.append(value[:_MAX_HIDDEN_ITEM])
    except Exception:  # lxml on markup it did not foresee
        pass
    return "\n".join(t for t in out if t.strip())


def _reverse_overrides(root: lxml_html.HtmlElement) -> None:
    """Text a viewer shows reversed: <bdo dir="rtl">, and `unicode-bidi: bidi-override` with
    `direction: rtl`; replaced by its text as shown (letters reversed)."""
    for element in list(root.iter()):
        if not isinstance(element.tag, str) or element.getparent() is None and element is not root:
            continue
        style = element.get("style") or ""
        rtl = (element.get("dir") or "").strip().lower() == "rtl"
        if (element.tag == "bdo" and rtl) or (_RTL_OVERRIDE.search(style) and _RTL_DIRECTION.search(style)):
            text = element.text_content()
            for child in list(element):
                element.remove(child)
            element.text = text[::-1]


def to_text(markup: str, *, without_quotes: bool = False) -> str:
    """Readable text of an HTML body; `without_quotes` also removes quoted reply history and the
    signature elements of common clients (the sender's own new text, for `own_text`)."""
    root = _tree(markup)
    if root is None:
        return ""
    try:
        for element in list(root.iter(*_INVISIBLE)):
            _drop(element)
        _reverse_overrides(root)
        if without_quotes:
            _strip_quotes(root)
            _strip_signatures(root)
        text: str = Inscriptis(root, _CONFIG).get_text()
    except Exception:  # lxml/inscriptis on markup they did not foresee (absurd nesting, odd text)
        text = root.text_content()
    return text.strip()
