"""The reply-header pattern with its start positions asserted first (quotes._HEADER_STARTS) finds
exactly what the library's own pattern finds: same places, same text, on the corpus and on text
built from reply-header fragments in every language we enable."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from conduct_inbox.mail import quotes

CORPUS = Path(__file__).parent.parent / "data" / "eml"

#: Lines that each alternative of the library's pattern looks for, and near misses.
FRAGMENTS = [
    "On Mon, 3 Mar 2025 at 10:00, Alice Example <alice@example.org> wrote:",
    "On Mon, 3 Mar 2025",
    "Alice <alice@example.org> wrote:",
    "Am 3. März 2025 um 10:00 schrieb Bob Beispiel <bob@example.de>:",
    "Le lun. 3 mars 2025 à 10:00, Claire <claire@example.fr> a écrit :",
    "El lun, 3 mar 2025 a las 10:00, Diego escribió:",
    "Il giorno lun 3 mar 2025 alle 10:00 Elena ha scritto:",
    "Op ma 3 mrt. 2025 om 10:00 schreef Femke <femke@example.nl>:",
    "Den 3 mars 2025 kl. 10:00 skrev Gustav <g@example.se>:",
    "Dnia 3 marca 2025 Hanna napisał(a):",
    "Dne 3. března 2025 Ivan napsal(a):",
    "From: Alice <alice@example.org>", "Sent: Monday, March 3, 2025 10:00", "To: conduct@example.org",
    "Subject: Re: the incident", "Date: today", "Cc: nobody",
    "Von: Bob", "Gesendet: Montag", "An: conduct", "Betreff: AW: Vorfall",
    "De : Claire", "Envoyé : lundi", "Objet : RE: incident",
    "De: Diego", "Enviado: lunes", "Para: conduct", "Asunto: RE: incidente",
    "Da: Elena", "Inviato: lunedì", "Oggetto: R: incidente",
    "Van: Femke", "Verzonden: maandag", "Aan: conduct", "Onderwerp: RE: incident",
    "Från: Gustav", "Skickat: måndag", "Till: conduct", "Ämne: SV: incident",
    "-----Oprindelig meddelelse-----", "Fra: Hans", "Sendt: mandag", "Til: conduct", "Emne: SV: hændelse",
    "Od: Hanna", "Wysłano: poniedziałek", "Do: conduct", "Temat: RE: incydent",
    "Odesláno: pondělí", "Komu: conduct", "Předmět: RE: incident",
    "-----Original Message-----", "----- Original Message -----",
    "Thanks,", "Best regards", "-- ", "Sent from my phone",
    "What happened at the sprint was not acceptable.", "from: the hallway", "", "   ",
]

line = st.builds(
    lambda prefix, fragment, suffix: prefix + fragment + suffix,
    st.sampled_from(["", "> ", ">> ", "> > ", "* ", "** ", "  ", "words before ", "x-----"]),
    st.sampled_from(FRAGMENTS),
    st.sampled_from(["", " ", " trailing words", "*", "\r"]),
)


def spans(pattern, text: str) -> list[tuple[tuple[int, int], str]]:
    return [(m.span(), m.group(0)) for m in pattern.finditer(text)]


@settings(max_examples=400, deadline=None)
@given(st.lists(line, max_size=14), st.sampled_from(["\n", "\n\n", "\n\n\n"]))
# Each start the assertion allows, alone: a line start, a newline, Danish mid-line.
@example(["text", "From: a", "Sent: b"], "\n")
@example(["text", "> From: a", "> Sent: b"], "\n")
@example(["x-----Oprindelig meddelelse-----", "Fra: Hans", "Sendt: mandag"], "\n")
def test_restricted_header_pattern_matches_like_the_library(lines, joiner):
    text = joiner.join(lines)
    fast, _ = quotes._regexes()
    library, _ = quotes._library_regexes()
    assert spans(fast, text) == spans(library, text)


def test_restricted_header_pattern_matches_like_the_library_on_the_corpus():
    fast, _ = quotes._regexes()
    library, _ = quotes._library_regexes()
    checked = 0
    for path in sorted(CORPUS.rglob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for part in message.walk():
            if part.get_content_type() != "text/plain" or part.is_attachment():
                continue
            try:
                text = part.get_content()
            except (LookupError, ValueError, AssertionError):
                continue  # a broken part: the parser's tests cover those
            assert spans(fast, text) == spans(library, text), path.name
            checked += 1
    assert checked >= 20  # the corpus really was read
