"""Find roster members named in a report's text, so they can be recused automatically.

Matching rules:

- member addresses anywhere, case-insensitively, with or without a `+tag` sub-address;
- full names and multi-word aliases case- and accent-insensitively on word boundaries
  ("José Núñez" matches "JOSE NUNEZ", "José Núñez's"), whatever whitespace, quote markers
  (`>`) or hyphens stand between the words, so a name wrapped over two lines still matches;
- single-word aliases (and one-word names) case-sensitively, accent-insensitively, on word
  boundaries: "Ali" matches "Ali's" but not "ali", "Alice" nor "Khalid". A first name alone
  never matches unless it is listed as an alias;
- by Unicode confusable skeleton (UTS #39, data from confusable-homoglyphs): letters of other
  scripts that look like Latin ones are read as those ("Аlice" with a Cyrillic А, "Βob" with a
  Greek Β), and multi-word names and addresses also match by the skeleton of the whole text, so
  ASCII look-alikes count too ("B0b", "AIice", "Srnith");
- invisible characters (soft hyphens, zero-width and other format characters) are ignored,
  blank characters that show as a space (Hangul fillers, the Braille blank) are read as one, and
  a word hyphenated at a line break (PDF text, also with a soft hyphen) is read whole;
- the words of a multi-word name may also be separated by what splits them into cells or file
  name parts (commas, semicolons, pipes, quotes, underscores), and may come last name first
  with such a separator after it ("Builder, Bob", "Builder;Bob" in a vCard; not "Smith will"
  for "Will Smith");
- text shown reversed (after a right-to-left override, U+202E), percent-encoded text
  (`mailto:bob%40example.org`) and quoted local parts (`"bob"@example.org`) are read as shown.

Each text is folded once and scanned with one precompiled alternation per kind of folding, so
the work is linear in the text size (attachments can be megabytes). Nothing here logs or raises
with the matched text: a `Mention` carries the member's address and the kind of match only.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import unquote

from conduct_inbox.core.roster import Person, Roster

# Letters that NFKD does not decompose but readers treat as their plain form.
_LETTERS = {
    "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ð": "d", "Ð": "D",
    "ħ": "h", "Ħ": "H", "ŧ": "t", "Ŧ": "T", "ı": "i", "þ": "th", "Þ": "Th",
    "æ": "ae", "Æ": "Ae", "œ": "oe", "Œ": "Oe", "ß": "ss",
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'",  # typographic apostrophes
}
# Invisible characters that could split a name without showing: soft hyphen, zero-width ones.
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
# Characters that are not whitespace to Unicode but show as a blank: Hangul fillers (U+3164 and
# U+FFA0 decompose to U+1160), the Braille blank, Khmer inherent vowels, the Mongolian vowel
# separator. Read as a space.
_BLANKS = "\u115f\u1160\u3164\uffa0\u2800\u17b4\u17b5\u180e"

# What may stand between two words of a name: whitespace (line wraps), quote markers, hyphens,
# and what splits a name into cells or file name parts: commas, semicolons, pipes, quotes and
# underscores ("Bob,Builder", '"Bob";"Builder"', "Bob_Builder_timeline.txt"). Not dots:
# "bob.smith" is as likely someone else's address.
_SEP = r"[\s>\-\u2010,;|\"'_]+"
# Between the last name put first and the rest: a separator run with a comma, semicolon, pipe,
# tab or underscore in it ("Builder, Bob", "Builder;Bob"), not a space alone ("Smith will" is
# not "Will Smith"). The lazy lookahead stays within the run, so the scan stays linear.
_CELL_SEP = r"(?=[\s>\-\u2010,;|\"'_]*?[,;|\t_])" + _SEP
_SPLIT = re.compile(_SEP)
# Bounded so a long run of address characters cannot make the scan quadratic.
_SUBADDRESS = r"(?:\+[\w.%+\-]{0,64})?"


# A word hyphenated at a line break, as PDF text has it: "Buil-\nder" (or with a soft hyphen).
_HYPHENATED = re.compile(r"(?<=\w)[-\u2010\u00ad][ \t]*\r?\n[\s>]*(?=\w)")
# A right-to-left override displays what follows reversed, up to a pop (U+202C) or the end of
# the paragraph.
_OVERRIDDEN = re.compile(r"\u202e([^\u202c\n\r\u2029]*)")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# Word characters other than the underscore, which separates words in file names.
_WORD = r"[^\W_]"


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """UTS #39 confusables: each character to its prototype (what its skeleton is made of).

    confusable-homoglyphs ships confusables.txt as a symmetric table (each pair listed both ways),
    so the direction is recovered: a source has exactly one prototype, a prototype lists all its
    sources, and a multi-character string is always a prototype. A pair alone (β and ß) gets the
    ASCII one, else the lower code point, as prototype (as in confusables.txt).
    """
    data = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    table = {k.replace("\u200e", ""): [e["c"].replace("\u200e", "") for e in v] for k, v in data.items()}
    mapping: dict[str, str] = {}
    for char, partners in table.items():
        if len(char) != 1 or len(partners) != 1 or partners[0] == char:
            continue
        other = partners[0]
        if len(other) > 1 or len(table.get(other, ())) > 1:
            mapping[char] = other
        elif (other.isascii(), -ord(other)) > (char.isascii(), -ord(char)):
            mapping[char] = other
    return mapping


def _skeleton(text: str) -> str:
    prototypes = _prototypes()
    mapped = "".join(prototypes.get(ch, ch) for ch in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped)


@lru_cache(maxsize=1)
def _latin() -> dict[str, str]:
    """Non-ASCII characters that look like ASCII ones, to the ASCII character with the same
    skeleton, of the same case where there is a choice (Cyrillic І to I, not to l)."""
    by_skeleton: dict[str, list[str]] = {}
    for cp in range(0x21, 0x7F):
        by_skeleton.setdefault(_skeleton(chr(cp)), []).append(chr(cp))
    latin: dict[str, str] = {}
    for char in _prototypes():
        if char.isascii():
            continue
        candidates = by_skeleton.get(_skeleton(char))
        if not candidates:
            continue
        category = unicodedata.category(char)

        def fit(a: str, category: str = category) -> tuple[bool, bool]:
            same = {"Lu": a.isupper(), "Ll": a.islower(), "Nd": a.isdigit()}.get(category, a.isalpha())
            return same, a.isalnum()

        latin[char] = max(sorted(candidates), key=fit)
    return latin


class _FoldTable(dict[int, str | None]):
    """`str.translate` table dropping combining marks and invisible characters and reading
    look-alikes of ASCII characters as those; filled per character on first sight."""

    def __missing__(self, cp: int) -> str | None:
        ch = chr(cp)
        value: str | None
        if ch in _LETTERS:
            value = _LETTERS[ch]
        elif ch in _BLANKS:
            value = " "
        elif ch in _INVISIBLE or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            value = None
        else:
            value = _latin().get(ch, ch)
        self[cp] = value
        return value


class _SkeletonTable(dict[int, str]):
    """`str.translate` table to the case-folded skeleton of accentless text: skeleton, casefold,
    skeleton again (so "BOB" and "Bob" agree although the skeleton of "m" is "rn")."""

    def __missing__(self, cp: int) -> str:
        value = _skeleton(_skeleton(chr(cp)).casefold())
        self[cp] = value
        return value


_TABLE = _FoldTable()
_SKELETON = _SkeletonTable()


def _unmark(text: str) -> str:
    """Text without accents (NFKD, combining marks dropped), case kept."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", text).translate(_TABLE)


def _fold(unmarked: str) -> str:
    """Accentless text casefolded, for case-insensitive matching."""
    if unmarked.isascii():
        return unmarked.lower()
    return unicodedata.normalize("NFKD", unmarked.casefold()).translate(_TABLE)


def _skeleton_fold(unmarked: str) -> str:
    """Accentless text to its case-folded confusable skeleton."""
    return unmarked.translate(_SKELETON)


def _address_pattern(address: str) -> str | None:
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        return None
    return (
        _bounded(re.escape(local), r"[\w.%+\-]")
        + _SUBADDRESS
        + '"?@'
        + re.escape(domain)
        + r"(?![\w\-]|\.[\w\-])"
    )


def _phrase_pattern(text: str) -> str | None:
    tokens = [t for t in _SPLIT.split(text) if t]
    if not tokens:
        return None
    return _bounded(_SEP.join(re.escape(t) for t in tokens), _WORD) + rf"(?!{_WORD})"


def _last_first_pattern(phrase: str, fold: Callable[[str], str]) -> str | None:
    """A multi-word name with its last word first, as directories and spreadsheets list people
    ("Builder, Bob", "Builder;Bob"): a cell separator between the last word and the others."""
    words = phrase.split()
    last = [t for t in _SPLIT.split(fold(_unmark(words[-1]))) if t]
    rest = [t for t in _SPLIT.split(fold(_unmark(" ".join(words[:-1])))) if t]
    if not last or not rest:
        return None
    body = _SEP.join(re.escape(t) for t in last) + _CELL_SEP + _SEP.join(re.escape(t) for t in rest)
    return _bounded(body, _WORD) + rf"(?!{_WORD})"


def _bounded(pattern: str, before: str) -> str:
    """Escaped `pattern` not preceded by a `before` character.

    The lookbehind sits after the first literal so every alternative starts with a literal
    and `re` can skip quickly to the places where some alternative may begin.
    """
    first = 2 if pattern.startswith("\\") else 1
    return pattern[:first] + rf"(?<!{before}.)" + pattern[first:]


@dataclass(frozen=True)
class Mention:
    """A roster member named in a text; `how` is "address", "name" or "alias", never the text."""

    email: str
    how: str


class _Scanner:
    """One compiled alternation for one folding; each alternative ends in its own empty group."""

    def __init__(self, entries: dict[str, list[tuple[int, str]]]):
        # Longest first, so "Bob Smith Jones" is not taken for "Bob Smith" at the same place.
        ordered = sorted(entries, key=len, reverse=True)
        self.hits = {f"g{i}": entries[p] for i, p in enumerate(ordered)}
        parts = [f"{p}(?P<g{i}>)" for i, p in enumerate(ordered)]
        self.regex = re.compile("|".join(parts)) if parts else None

    def scan(self, text: str, found: dict[int, str], wanted: int) -> None:
        """Record in `found` every person named in `text`; stop once all `wanted` are found."""
        if self.regex is None:
            return
        pos = 0
        # Restart one character after each match start, so overlapping names are all seen.
        while (m := self.regex.search(text, pos)) is not None:
            for index, how in self.hits[m.lastgroup or ""]:
                found.setdefault(index, how)
            if len(found) == wanted:
                return
            pos = m.start() + 1


class Detector:
    """Finds which of `people` a text names; compiled once per roster."""

    def __init__(self, people: Sequence[Person]):
        self.people: list[Person] = []
        seen: set[str] = set()
        for person in people:
            if person.email not in seen:
                seen.add(person.email)
                self.people.append(person)
        folded: dict[str, list[tuple[int, str]]] = {}
        exact: dict[str, list[tuple[int, str]]] = {}
        skeletons: dict[str, list[tuple[int, str]]] = {}
        for index, person in enumerate(self.people):
            for fold, kind in ((_fold, folded), (_skeleton_fold, skeletons)):
                pattern = _address_pattern(fold(_unmark(person.email.strip())))
                if pattern:
                    kind.setdefault(pattern, []).append((index, "address"))
            for phrase, how in ((person.name, "name"), *((a, "alias") for a in person.aliases)):
                single = len(phrase.split()) == 1
                text = _unmark(phrase) if single else _fold(_unmark(phrase))
                pattern = _phrase_pattern(text)
                if not pattern:
                    continue
                (exact if single else folded).setdefault(pattern, []).append((index, how))
                if single:
                    continue
                # The skeleton can lose every word the folding kept: "`" reads as "'", a separator.
                pattern = _phrase_pattern(_skeleton_fold(_unmark(phrase)))
                if pattern:
                    skeletons.setdefault(pattern, []).append((index, how))
                for fold, kind in ((_fold, folded), (_skeleton_fold, skeletons)):
                    pattern = _last_first_pattern(phrase, fold)
                    if pattern:
                        kind.setdefault(pattern, []).append((index, how))
        self._folded = _Scanner(folded)
        self._exact = _Scanner(exact)
        self._skeletons = _Scanner(skeletons)

    def find(self, *texts: str) -> list[Mention]:
        """People named in any of `texts`, each once, in roster order."""
        found: dict[int, str] = {}
        wanted = len(self.people)
        for text in texts:
            if len(found) == wanted:
                break
            if not text:
                continue
            for reading in _readings(text):
                unmarked = _unmark(reading)
                self._folded.scan(_fold(unmarked), found, wanted)
                self._exact.scan(unmarked, found, wanted)
                self._skeletons.scan(_skeleton_fold(unmarked), found, wanted)
        return [Mention(self.people[i].email, found[i]) for i in sorted(found)]


def _readings(text: str) -> list[str]:
    """`text`, with what a reader sees in it appended when that differs from its characters:
    words hyphenated at line breaks joined, right-to-left overrides reversed, percent-encoding
    decoded. Each costs one linear pass, and only for texts that have such characters."""
    if "\n" in text and _HYPHENATED.search(text):
        text = f"{text}\n{_HYPHENATED.sub('', text)}"
    if "\u202e" in text:
        text = text + "\n" + "\n".join(m.group(1)[::-1] for m in _OVERRIDDEN.finditer(text))
    readings = [text]
    if "%" in text and _PERCENT.search(text):
        readings.append(unquote(text, errors="replace"))
    return readings


@lru_cache(maxsize=8)
def _detector(roster: Roster) -> Detector:
    return Detector((*roster.members, *roster.steering))


def detect(roster: Roster, texts: Sequence[str]) -> list[Mention]:
    """Committee and steering members named in `texts` (committee first, then steering)."""
    return _detector(roster).find(*texts)


# Frequent English words (and word-like given names) that make poor single-word aliases:
# single-word aliases match case-sensitively, but still hit sentence starts and headings.
COMMON_WORDS = frozenset(
    """
    a about above after again against all also always am an and any are around as ask at
    away back bad be because been before being below best better between big bill both bring
    but buy by call came can case change child close come could cut day did different do
    does done don down during each early end even ever every eye face fact faith far feel few
    find first for form found frank free friend from full get give go good got grace great
    group had hand hard has have he head help her here high him his home hope house how i if
    important in into is it its jack job joy just keep kind know large last late lead least
    leave left less let life light like line little live long look lot low made major make
    man many mark may me mean might more most much must my name need never new next nice
    night no not nothing now number of off often old on once one only open or order other
    our out over own page part pat people person place play point power problem public put
    question read real really report right rob room rose run said same saw say see seem self
    set several she should show side since small so some something sometimes soon start
    state still stop story such sue sure system take talk team tell than that the their them
    then there these they thing think this those though thought three through time to today
    together too took top toward true try turn two under until up upon us use very want was
    water way we week well went were what when where which while who whole why will win with
    within without word work world would write year yes yet you young your
    """.split()
)


def common_word_aliases(settings: Any) -> list[str]:
    """Single-word aliases on the roster that are common English words (for check-config warnings)."""
    found = []
    for member in settings.all_members():
        for alias in member.aliases:
            if len(alias.split()) == 1 and alias.lower() in COMMON_WORDS:
                found.append(alias)
    return found
