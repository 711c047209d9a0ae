"""RTF: our bounded converter (destinations hidden or shown as Word does)."""

from __future__ import annotations

import codecs
import re

from conduct_inbox.mail.extract.base import _Sink

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
