"""Text in any charset or UTF, sniffed since senders mislabel it; JSON's `\\uXXXX` escapes."""

from __future__ import annotations

import codecs
import re
import unicodedata

from conduct_inbox.mail.extract.base import _SNIFF_BYTES

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
