"""The text a member sends to a party with `!reply` or `!send`: parties hear from conduct@,
never from a person (DESIGN.md, "Committee commands").

`outward_text(own_text, member)` takes the member's new text (`InboundMessage.own_text`: our
marker, quoted history and the HTML signature elements of common clients are already gone) and

1. removes what is left of a signature in plain text: from a delimiter line (`-- `, `--`,
   `__`) or a mobile footer line ("Sent from my iPhone", "Get Outlook for Android", "Sent from
   Mail for Windows", ...) to the end, when at most MAX_SIGNATURE_LINES lines follow it (more
   is text the member wrote after a separator, and is kept); then a trailing sign-off that
   names the member: a line that is only their full name, first name or an alias (optionally
   after "-" or "~") is removed, and "Thanks, Anna" keeps "Thanks,";
2. refuses the text when its closing lines (the last CLOSING_LINES non-empty lines) still hold
   the member's own address (any case, with or without a `+tag`), a phone number, or the
   member's full name or a multi-word alias (a signature without delimiter: "Anna Schmidt /
   Head of Community");
3. refuses an empty result ("no text above the line"); a text that is only a sign-off
   ("Best,") counts as empty.

Only the closing lines are checked: that is where signatures are, and a member may mean to
give a party a number in the body ("the venue's security team is on ..."). A member's own
number in the middle of the text is their choice, and the copy the committee receives shows it.

Phone numbers: 7 to 15 digits with spaces, dots, dashes, slashes or parentheses between them,
optionally after `+` or `00`. Dates (2026-11-24, 24.11.2026, 11/24/2026), times and time ranges,
case references (2026-0007), year ranges, amounts (with a currency sign or thousands
separators) and links are masked first, so they are never taken for one.

Pure: no I/O, no clock, no logging. A refusal never quotes what was found.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from conduct_inbox.core.roster import Person

__all__ = ["CLOSING_LINES", "MAX_SIGNATURE_LINES", "OutwardText", "outward_text"]

#: How many non-empty lines at the end of the text are its closing lines.
CLOSING_LINES = 10  # a signature with a disclaimer below it is longer than five lines
#: At most this many non-empty lines after a delimiter or footer make a signature.
MAX_SIGNATURE_LINES = 15

_WHY = "parties hear from conduct@, never from a person; remove it and send again (nothing was sent)"
REFUSE_EMPTY = "there is no text above the line to send (signatures and sign-offs are not sent)"
REFUSE_ADDRESS = f"the closing lines contain your own address: {_WHY}"
REFUSE_PHONE = f"the closing lines contain a phone number: {_WHY}"
REFUSE_NAME = f"the closing lines contain your name (a signature?): {_WHY}"
REFUSE_OTHER_ADDRESS = f"the closing lines contain an email address (a signature?): {_WHY}"
REFUSE_OURS = ("the text contains a reply address of the committee (from the header of a quoted mail?); "
               "it is a key to the case and must never reach a party: remove it and send again (nothing was sent)")
REFUSE_MEMBER = f"the text names a committee member or their address: {_WHY}"


@dataclass(frozen=True)
class OutwardText:
    """`text` to send, or `refusal` (then `text` is empty): a reason to give the member."""

    text: str
    refusal: str | None = None


_DELIMITER = re.compile(r"[ \t]*(?:--|__|\u2014|\u2013\u2013)[ \t]*")

_DEVICE = (
    r"(?:iphone|ipad|ipod|android|galaxy|samsung|mobile|phone|smartphone|blackberry|huawei|xiaomi|pixel|tablet"
    r"|mail for windows|outlook|yahoo mail|proton ?mail|handy|portable|m\u00f3vil|cellulare)"
)
_FOOTER = re.compile(
    r"(?:sent|envoy\u00e9|enviado|inviato|verzonden|gesendet|skickat|sendt|wys\u0142ane)[ \t]+"
    r"(?:from|with|via|de|desde|da|dal|vanaf|von|vom|fr\u00e5n|fra|z)[ \t]+(?:[\w'\u2019\-]+[ \t]+){0,3}?"
    rf"{_DEVICE}\b[\w .'\u2019\-]{{0,40}}"
    r"|get outlook for (?:ios|android|mac|windows)"
    r"|(?:von|vom) meinem [\w .\-]{1,40}gesendet",
    re.IGNORECASE,
)

_SIGN_OFFS = (
    "best", "best regards", "best wishes", "regards", "kind regards", "warm regards", "warmest regards",
    "kindest regards", "many thanks", "thanks", "thank you", "thanks again", "thank you again", "cheers",
    "sincerely", "yours sincerely", "sincerely yours", "yours", "yours truly", "all the best", "take care",
    "with best regards", "with kind regards", "respectfully", "warmly", "cordially", "greetings", "ciao",
    "viele gr\u00fc\u00dfe", "viele gruesse", "liebe gr\u00fc\u00dfe", "beste gr\u00fc\u00dfe",
    "mit freundlichen gr\u00fc\u00dfen", "freundliche gr\u00fc\u00dfe", "gr\u00fc\u00dfe", "lg", "vg", "mfg",
    "cordialement", "bien \u00e0 vous", "salutations", "saludos", "un saludo", "atentamente", "saluti",
    "cordiali saluti", "groeten", "met vriendelijke groet", "hartelijke groet", "h\u00e4lsningar",
    "med v\u00e4nliga h\u00e4lsningar", "mvh", "venlig hilsen", "pozdrawiam", "pozdrav", "s pozdravem",
)
_PUNCT = " \t.,;:!-\u2013\u2014~*_()"


def _fold(text: str) -> str:
    """Casefolded, accents removed, whitespace collapsed: for comparing names and sign-offs."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.split())


_SIGN_OFF_SET = frozenset(_fold(s) for s in _SIGN_OFFS)


def _non_empty(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())


def _cut_signature(lines: list[str]) -> list[str]:
    """Lines before the first delimiter or footer line that only a signature follows."""
    for i, line in enumerate(lines):
        bare = line.strip()
        if _DELIMITER.fullmatch(line) or (bare and _FOOTER.fullmatch(bare.rstrip(". "))):
            if _non_empty(lines[i + 1 :]) <= MAX_SIGNATURE_LINES:
                return lines[:i]
    return lines


def _names(member: Person) -> set[str]:
    names = {_fold(member.name), *(_fold(a) for a in member.aliases if "@" not in a)}
    first = member.name.split()
    if first:
        names.add(_fold(first[0]))
    return {n for n in names if n}


def _without_sign_off_name(lines: list[str], names: set[str]) -> list[str]:
    """Drop trailing lines that are only the member's name; "Thanks, Anna" becomes "Thanks,"."""
    lines = list(lines)
    while lines:
        if not lines[-1].strip():
            lines.pop()
            continue
        line = lines[-1]
        bare = _fold(line.strip(_PUNCT))
        if bare in names:
            lines.pop()
            continue
        head, sep, tail = line.rpartition(",")
        if sep and _fold(tail.strip(_PUNCT)) in names and _fold(head.strip(_PUNCT)) in _SIGN_OFF_SET:
            lines[-1] = head.rstrip() + ","
        break
    return lines


# --- what may not stand in the closing lines -----------------------------------------------------

_MASKS = [re.compile(p, re.IGNORECASE) for p in (
    r"(?:https?|ftp)://\S+|www\.\S+",  # links
    r"(?<![\w.%+\-])[\w.%+\-]{1,64}@[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,10}",  # addresses (checked separately)
    r"#?(?<!\d)(?<!\d[\s./\-])(?:19|20)\d\d-\d{3,6}(?!\d)",  # case refs 2026-0007 (not "030/2019-1234")
    r"(?<!\d)(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])(?!\d)",  # 2026-11-24
    r"(?<!\d)(?:0?[1-9]|[12]\d|3[01])[./-](?:0?[1-9]|1[0-2])[./-](?:19|20)\d\d(?!\d)",  # 24.11.2026
    r"(?<!\d)(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?:19|20)\d\d(?!\d)",  # 11/24/2026
    r"(?<!\d)(?:19|20)\d\d\s*[-\u2013/]\s*(?:19|20)?\d\d(?!\d)",  # 2019-2024
    r"(?<![\d.])(?:[01]?\d|2[0-3])[:.h][0-5]\d\s*[-\u2013]\s*(?:[01]?\d|2[0-3])[:.h][0-5]\d(?![\d.])",  # 9.00-17.00
    r"(?<!\d)(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?!\d)",  # 10:30, 09:12:33
    r"[$\u20ac\u00a3\u00a5]\s?\d[\d.,'\s]{0,24}\d|\d[\d.,'\s]{0,24}\d\s?(?:[$\u20ac\u00a3\u00a5]|(?:eur|usd|gbp|chf)\b)",
    r"(?<![\d.,+])(?<!\d\s)[1-9]\d{0,2}(?:([.,])\d{3})(?:\1\d{3}){0,6}(?:[.,]\d{1,2})?(?![.,]?\d)",  # 1.500.000 (not "+32 471.123.456")
)]
#: Bounded (a phone number is short), so a long run of digits and spaces costs linear time.
_PHONE = re.compile(r"(?<![\w+/])(?:\+|\(\+?)?\d[\d()\u00a0 \t./\-\u2010-\u2013]{0,30}\d\)?")
_SPLIT = re.compile(r"\s+[/|,;]\s*|\s*[/|,;]\s+|\s{2,}|\s[-\u2013]\s")


def _masked(line: str) -> str:
    for mask in _MASKS:
        line = mask.sub("\u00a7", line)
    return line


def _phone_like(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if 7 <= digits <= 15:
        return True
    if digits > 15:
        return any(_phone_like(part) for part in _SPLIT.split(candidate) if part != candidate)
    return False


#: A line labelled as a phone number is one whatever its digits look like.
_PHONE_LABEL = re.compile(r"^\W*(?:tel|phone|mobile|mob|cell|fax|handy|telefon|t\u00e9l\u00e9phone|t\u00e9l|m)\b\.?\s*:?", re.IGNORECASE)


def _has_phone(line: str) -> bool:
    if _PHONE_LABEL.match(line) and sum(c.isdigit() for c in line) >= 6:
        return True
    return any(_phone_like(m.group(0)) for m in _PHONE.finditer(_masked(line)))


def _address_pattern(member: Person) -> re.Pattern[str] | None:
    parts = []
    for address in (member.email, *(a for a in member.aliases if "@" in a)):
        local, at, domain = address.strip().lower().rpartition("@")
        if local and at and domain:
            parts.append(rf"(?<![\w.%+\-]){re.escape(local)}(?:\+[\w.%+\-]{{0,64}})?@{re.escape(domain)}(?![\w\-]|\.[\w\-])")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _name_pattern(member: Person) -> re.Pattern[str] | None:
    phrases = [member.name, *(a for a in member.aliases if "@" not in a)]
    multi = [_fold(p).split() for p in phrases if len(p.split()) > 1]
    if not multi:
        return None
    alternatives = (r"[\s\-]+".join(re.escape(w) for w in words) for words in multi)
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")


def _refusal(lines: list[str], member: Person, committee_address: str = "") -> str | None:
    closing = [line for line in lines if line.strip()][-CLOSING_LINES:]
    addresses = _address_pattern(member)
    names = _name_pattern(member)
    joined = "\n".join(closing)
    if addresses is not None and addresses.search(unicodedata.normalize("NFKC", joined)):
        return REFUSE_ADDRESS
    if any(_has_phone(unicodedata.normalize("NFKC", line)) for line in closing):
        return REFUSE_PHONE
    if names is not None and names.search(_fold(joined.replace("\n", " \n "))):
        return REFUSE_NAME
    own_names = _names(member)
    if any(_fold(line.strip(_PUNCT)) in own_names for line in closing):
        return REFUSE_NAME  # "Alice" on a line of its own, above a role or a link
    if any(_EMAIL.search(_masked_links(line).replace(committee_address, "\u00a7")) for line in closing):
        return REFUSE_OTHER_ADDRESS  # a personal address in a signature; conduct@ itself may be named
    return None


def _masked_links(line: str) -> str:
    return _MASKS[0].sub("\u00a7", line)


_HEADER_LIKE = re.compile(r"^[ \t>]*(?:[^\W\d_][\w .\-]{0,30}:(?:[ \t].*)?|.*:[ \t]*)$")
_EMAIL = re.compile(r"[\w.%+\-]{1,64}@[\w\-]{1,63}(?:\.[\w\-]{1,63}){1,10}")


def _ours(committee_address: str, plus: str = "?") -> re.Pattern[str] | None:
    """The committee's address and its plus-addresses (reply tokens, bounce addresses); with
    `plus=""` the plus-addresses only."""
    local, at, domain = committee_address.strip().lower().rpartition("@")
    if not (local and at and domain):
        return None
    return re.compile(rf"(?<![\w.%+\-]){re.escape(local)}(?:\+[\w.%+\-]{{1,80}}){plus}@{re.escape(domain)}(?![\w\-])",
                      re.IGNORECASE)


def _without_quote_header(lines: list[str], ours: re.Pattern[str] | None) -> list[str]:
    """Cut the header a client writes above the mail it quotes, in any language ("Em ter., ...
    <conduct+...@> escreveu:", Outlook's "De: / Enviada em: / Assunto:" block): the last lines
    naming our address that are, with everything after them, header-like lines."""
    if ours is None:
        return lines
    # A header names our address in angle brackets ("Committee <conduct+...@>"); a sentence
    # ("write to conduct@example.org") does not, and stays.
    last = max((i for i, line in enumerate(lines) if any(
        line[m.start() - 1:m.start()] == "<" for m in ours.finditer(line))), default=None)
    if last is None or not all(not ln.strip() or _HEADER_LIKE.match(ln) for ln in lines[last:]):
        return lines
    start = last
    while start > 0 and lines[start - 1].strip() and _HEADER_LIKE.match(lines[start - 1]) and last - start < 8:
        start -= 1
    return lines[:start]


def _identity_anywhere(text: str, ours: re.Pattern[str] | None, people: tuple[Person, ...]) -> str | None:
    """What may not stand anywhere in outward text: a committee address of ours (a reply token
    handed to a party is a key to the case) or a committee member's address or full name."""
    if ours is not None and ours.search(text):
        return REFUSE_OURS
    folded = _fold(text.replace("\n", " \n "))
    for person in people:
        addresses, names = _address_pattern(person), _name_pattern(person)
        if (addresses is not None and addresses.search(text)) or (names is not None and names.search(folded)):
            return REFUSE_MEMBER
    return None


def outward_text(own_text: str, member: Person, *, committee_address: str = "",
                 people: tuple[Person, ...] = ()) -> OutwardText:
    """The member's `own_text` cleaned for a party, or the reason it may not be sent.
    `committee_address`: conduct@, whose plus-addresses must never reach a party; `people`: the
    roster, none of whose addresses or full names may (the sender's own sign-off is cleaned first)."""
    ours = _ours(committee_address) if committee_address else None
    lines = [line.rstrip() for line in own_text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = _without_quote_header(lines, ours)
    lines = _without_sign_off_name(_cut_signature(lines), _names(member))
    while lines and not lines[0].strip():
        lines.pop(0)
    if all(not line.strip() or _fold(line.strip(_PUNCT)) in _SIGN_OFF_SET for line in lines):
        return OutwardText("", REFUSE_EMPTY)
    tokens = _ours(committee_address, plus="") if committee_address else None
    joined = unicodedata.normalize("NFKC", "\n".join(lines))
    refusal = (_identity_anywhere(joined, tokens, ())  # a reply token first: the gravest
               or _refusal(lines, member, committee_address.lower() or "\0")  # the closing lines: the likeliest
               or _identity_anywhere(joined, None, people))
    if refusal is not None:
        return OutwardText("", refusal)
    return OutwardText("\n".join(lines))
