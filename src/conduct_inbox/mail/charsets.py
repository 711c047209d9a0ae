"""Decoding mail text: charsets (with WHATWG-style fallbacks), RFC 2047 encoded-words, header
folding and control characters. Pure, linear-time, never raises on bad input: defects are recorded.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata

#: Charsets senders label text with when they mean windows-1252 (as the WHATWG encoding spec does).
_AS_CP1252 = frozenset({"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "us-ascii", "ascii", "cp819", "iso_8859-1"})

#: An RFC 2047 encoded-word. Encoded text may not hold '?' or whitespace, so each match attempt
#: stops at the next '?' and the whole scan stays linear.
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([qQbB])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r"\s+")


class Defects:
    """An ordered set of short defect descriptions (never content), for the audit trail."""

    def __init__(self) -> None:
        self._seen: dict[str, None] = {}

    def add(self, text: str) -> None:
        self._seen.setdefault(text, None)

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._seen)


def _clean_label(charset: str | None) -> str:
    return (charset or "").strip().strip("\"'").split("*", 1)[0].lower()


def decode_bytes(data: bytes, charset: str | None, defects: Defects) -> str:
    """Decode text bytes labelled `charset`, falling back instead of raising."""
    label = _clean_label(charset)
    if data.isascii():
        return data.decode("ascii")
    if not label:
        defects.add("undeclared 8-bit text")
        return _utf8_or_cp1252(data)
    if label in _AS_CP1252:
        return data.decode("cp1252", errors="replace")
    try:
        codecs.lookup(label)
    except (LookupError, ValueError):
        defects.add("unknown charset")
        return _utf8_or_cp1252(data)
    try:
        return data.decode(label)
    except UnicodeError:
        defects.add(f"invalid bytes for declared charset {label[:40]}")
    except Exception:  # a codec that is not a text codec, or one that misbehaves
        defects.add("unusable charset")
        return _utf8_or_cp1252(data)
    try:
        return data.decode(label, errors="replace")
    except Exception:
        return _utf8_or_cp1252(data)


def _utf8_or_cp1252(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def raw_to_text(value: str, defects: Defects) -> str:
    """A header value as the email package holds it (8-bit bytes as surrogates) to real text."""
    if value.isascii():
        return value
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    defects.add("8-bit header")
    return _utf8_or_cp1252(data)


def unfold(value: str) -> str:
    return _FOLD.sub("", value)


def _decode_word(encoding: str, text: str, defects: Defects) -> bytes | None:
    try:
        if encoding in "bB":
            text = text + "=" * (-len(text) % 4)
            return base64.b64decode(text.encode("ascii", "replace"))
        return binascii.a2b_qp(text.encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        defects.add("broken encoded-word")
        return None


def decode_words(value: str, defects: Defects) -> str:
    """Decode RFC 2047 encoded-words; adjacent words in one charset are joined before decoding."""
    if "=?" not in value:
        return value
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    pos = 0

    def flush() -> None:
        nonlocal pending
        if pending:
            out.append(decode_bytes(b"".join(pending), pending_charset, defects))
            pending = []

    for m in _ENCODED_WORD.finditer(value):
        between = value[pos : m.start()]
        raw = _decode_word(m.group(2), m.group(3), defects)
        if raw is None:
            flush()
            out.append(between + m.group(0))
            pos = m.end()
            continue
        charset = _clean_label(m.group(1))
        if between and not (pending and between.isspace()):
            flush()
            out.append(between)
        elif pending and charset != pending_charset:
            flush()
        pending.append(raw)
        pending_charset = charset
        pos = m.end()
    flush()
    out.append(value[pos:])
    return "".join(out)


def clean_text(value: str) -> str:
    """Drop NUL bytes and lone surrogates: databases and UTF-8 writers refuse them."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def header_text(raw: str, defects: Defects, limit: int) -> str:
    """A raw header value to one safe line: 8-bit fixed, unfolded, RFC 2047 decoded, no controls."""
    if len(raw) > limit:
        defects.add("oversized header truncated")
        raw = raw[:limit]
    value = decode_words(unfold(raw_to_text(raw, defects)), defects)
    # Decoded words may smuggle CR/LF (header injection); a value is always one line.
    return clean_text(CONTROL_CHARS.sub(" ", value)).strip()


def fold_spaces(value: str) -> str:
    return _SPACES.sub(" ", value).strip()


#: Encoded words may hide further encoded words; a client that decodes once more than we do
#: would show text we never saw. Past this many rounds the rest is left for compose to encode.
_DECODE_ROUNDS = 8
#: Characters that change how text is shown without being seen: bidi controls, zero-width ones.
_INVISIBLE = re.compile("[\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")


def displayed(value: str) -> str:
    """A header text as a person reads it in any mail client: RFC 2047 words decoded to a fixed
    point (words glued inside words included), NFKC-normalised (a fullwidth `！` is `!`),
    invisible and control characters dropped, whitespace folded."""
    defects = Defects()
    for _ in range(_DECODE_ROUNDS):
        decoded = decode_words(value, defects)
        if decoded == value:
            break
        value = decoded
    value = unicodedata.normalize("NFKC", clean_text(value))
    return fold_spaces(CONTROL_CHARS.sub(" ", _INVISIBLE.sub("", value)))
