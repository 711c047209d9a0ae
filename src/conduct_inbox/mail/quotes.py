"""The sender's own words in a plain-text body: our marker, quoted history and signature removed.

mail-parser-reply finds reply headers ("On ... wrote:", Outlook's From:/Sent: block) and
signatures in many languages. Its patterns are not linear on very long lines or whitespace
runs, so those are hidden behind placeholders before it runs and restored afterwards.
"""

from __future__ import annotations

import functools
import re

from mailparser_reply import EmailMessage

#: Everything from the line holding this marker down is history, never the sender's new text.
REPLY_MARKER = "-- reply above this line --"

#: Languages whose reply headers and sign-offs are recognised (English is always added).
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "sv", "da", "pl", "cs")

_MAX_CHARS = 200_000  # longer own text is cut: nobody types more, and it bounds the work
_LONG_LINE = 300
_MAX_FORWARDS = 10

_WS_RUN = re.compile(r"[^\S\n]{9,}")
_QUOTE_PREFIX = re.compile(r"[> \t]*")
_BLANK_RUNS = re.compile(r"\n{3,}")
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_SIG_DELIMITER = re.compile(r"\s*(?:> ?)*[-_]{2}\n")

_FORWARD_MARKER = re.compile(
    r"^[ \t>]*(?:-{2,}[ \t]*(?:Forwarded message|Weitergeleitete Nachricht|Message transf\u00e9r\u00e9"
    r"|Mensaje reenviado|Messaggio inoltrato|Doorgestuurd bericht|Videresendt meddelelse"
    r"|Vidarebefordrat meddelande)[ \t]*-*|Begin forwarded message:|Anfang der weitergeleiteten Nachricht:)"
    r"[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
_OUTLOOK_FORWARD = re.compile(r"^[ \t>]*(?:_{20,}|-{3,}[ \t]*Original Message[ \t]*-{3,})[ \t]*$", re.MULTILINE | re.IGNORECASE)
_FROM_KEYS = frozenset({"from", "von", "de", "fr\u00e5n", "fra", "van", "da", "od", "expéditeur"})
_SUBJECT_KEYS = frozenset({"subject", "betreff", "objet", "asunto", "\u00e4mne", "emne", "onderwerp", "oggetto", "temat", "p\u0159edm\u011bt"})


#: Where a match of the library's reply-header pattern can begin: each of its alternatives
#: starts at a line start (`^`), at a newline (`\n`), or at Danish "-----Oprindelig
#: meddelelse-----" (its line start is optional). Asserting that first rejects every other
#: position at once instead of trying the ~20 alternatives there: the same matches, about six
#: times faster on a typical report (tests/test_quotes.py compares the two).
_HEADER_STARTS = r"(?:(?<![^\n])|(?=\n)|(?=-----))"


@functools.cache
def _library_regexes() -> tuple[re.Pattern[str], re.Pattern[str]]:
    proto = EmailMessage(text="", languages=list(LANGUAGES), keep_hyphen_lists=True)
    return proto.HEADER_REGEX, proto.SIGNATURE_REGEX


@functools.cache
def _regexes() -> tuple[re.Pattern[str], re.Pattern[str]]:
    header, signature = _library_regexes()
    return re.compile(f"{_HEADER_STARTS}(?:{header.pattern})", header.flags), signature


def cut_at_marker(text: str) -> str:
    """Text above the line that holds REPLY_MARKER (all of it when there is none), without the
    committee's marker line ("To: Alice, Bob · Excluded: ...") that stands right above it: quoted
    without `>` (Outlook), it would name every member."""
    at = text.lower().find(REPLY_MARKER)
    if at < 0:
        return text
    head = text[: text.rfind("\n", 0, at) + 1]
    lines = head.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if lines and lines[-1].lstrip(" \t>").startswith("To: "):
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def _protect(text: str) -> tuple[str, list[str]]:
    """Replace long lines by placeholders (keeping quote prefixes) so regexes stay fast."""
    saved: list[str] = []
    lines = []
    for line in text.split("\n"):
        line = _WS_RUN.sub(" " * 8, line.rstrip())
        if len(line) > _LONG_LINE:
            prefix = _QUOTE_PREFIX.match(line)
            keep = prefix.group(0) if prefix else ""
            lines.append(f"{keep}\ue000{len(saved)}\ue001")
            saved.append(line[len(keep) :])
        else:
            lines.append(line)
    # Long runs of blank lines make the library's `\s*^` patterns quadratic.
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)), saved


def _signature_start(head: str, signature: re.Pattern[str]) -> int | None:
    m = signature.search(head)
    if m is None:
        return None
    block = m.group(0)
    # "-- " always starts a signature; a sign-off word only when little follows it, so a
    # report with "Thanks," in the middle keeps its second half.
    if _SIG_DELIMITER.match(block) or sum(1 for ln in block.split("\n") if ln.strip()) <= 8:
        return m.start()
    return None


def own_text(text: str) -> str:
    """The sender's new text: above our marker, before quoted history, without signature."""
    text = cut_at_marker(text.replace("\r\n", "\n").replace("\r", "\n"))[:_MAX_CHARS]
    forward = _FORWARD_MARKER.search(text)
    if forward:
        text = text[: forward.start()]  # what follows is someone else's words
    safe, saved = _protect(text)
    header, signature = _regexes()
    try:
        normal = EmailMessage(
            text=safe, languages=list(LANGUAGES), keep_hyphen_lists=True,
            _header_regex=header, _signature_regex=signature,
        ).text
        m = header.search(normal)
        head = normal[: m.start()] if m else normal
        cut = _signature_start(head, signature)
        if cut is not None:
            head = head[:cut]
    except Exception:  # the library's internals on text it did not foresee: keep it all
        head = safe
    # Interleaved or trailing quotes without a reply header.
    kept = [ln for ln in head.split("\n") if not ln.lstrip().startswith(">")]
    result = "\n".join(kept)
    if saved:
        result = _PLACEHOLDER.sub(lambda p: saved[int(p.group(1))], result)
    return _BLANK_RUNS.sub("\n\n", result).strip()


def inline_forwards(text: str, *, forward_subject: bool) -> list[tuple[str, str, str]]:
    """(From value, Subject value, body) of each forward pasted into a text body.

    Gmail/Apple/Thunderbird mark forwards explicitly; Outlook's underscore or "Original
    Message" separator is read as a forward only when the subject says Fwd/FW/WG/TR.
    """
    text = text.replace("\r\n", "\n")[: _MAX_CHARS * 5]
    starts = [m.end() for m in _FORWARD_MARKER.finditer(text)]
    if forward_subject:
        starts += [m.end() for m in _OUTLOOK_FORWARD.finditer(text)]
    starts = sorted(starts)[:_MAX_FORWARDS]
    found = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        block = text[start:end]
        end_of_header, fields = _forward_header(block)
        if "from" in fields:
            body = block[end_of_header:]
            # Drop the next marker line, which belongs to the following forward.
            if i + 1 < len(starts):
                body = body[: body.rfind("\n", 0, max(len(body) - 1, 0)) + 1]
            found.append((fields["from"], fields.get("subject", ""), body.strip()))
    return found


def _forward_header(block: str) -> tuple[int, dict[str, str]]:
    """The 'Key: value' lines right after a forward marker, and where they end."""
    fields: dict[str, str] = {}
    pos = 0
    for count, line in enumerate(block.split("\n")):
        next_pos = pos + len(line) + 1
        bare = line.strip().lstrip(">").strip()
        if not bare:
            if fields:
                return next_pos, fields
        elif ":" in bare and count < 20:
            key, _, value = bare.partition(":")
            key = key.strip(" *").lower()
            if key in _FROM_KEYS:
                fields.setdefault("from", value.strip(" *"))
            elif key in _SUBJECT_KEYS:
                fields.setdefault("subject", value.strip(" *"))
        elif fields or count >= 20:
            return pos, fields
        pos = next_pos
    return len(block), fields
