"""iCalendar and vCard: unfolded, quoted-printable and base64 decoded, unescaped."""

from __future__ import annotations

import binascii
import quopri
import re

from conduct_inbox.mail.extract.text import decode_text

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
