"""Red-team round 2 (issue 12): an ordinary committee member's mail client, and content that hides
a member's name from the member scan. End to end over real Dovecot + aiosmtpd, like
tests/e2e/test_attacks_e2e.py. Each test FAILS while the attack works; it asserts what a user expects.

Tried and NOT broken (the product held): DOCX with the name split over runs / in tables (cells end
lines); PDF text with TJ kerning, two Tj, Td between the words; .eml sent as octet-stream with a
quoted-printable soft break inside the name; message/global in quoted-printable; an RFC 2047
encoded attachment file name; XLSX, ZIP, TNEF winmail.dat and BOM-less UTF-16 Chinese text are
all listed as "not scanned for names" (documented limit); confusables (Cyrillic, Greek, Cherokee,
math bold, digit 1 / capital I for l, rn), NBSP / ideographic / figure spaces, U+2028, zero-width,
CGJ, tag characters, variation selectors, en-dash / minus / non-breaking hyphen between the words,
possessives; quote stripping for English Gmail (also wrapped), Apple Mail / iOS HTML, Thunderbird
HTML, OWA (also pt), Outlook desktop English HTML, Outlook plain "From:/Sent:" in pt with To:; a
signature of name + phone + a long disclaimer is refused; a plain phone signature is refused.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from tests import redteam_files as files
from tests.harness import parsed, report, text_of
from tests.mailers import client_reply, opened, step

REPORTER = "reporter@example.net"
ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
MEMBERS = (ALICE, BOB, CAROL)


def quoted(record) -> str:
    return "\n".join("> " + line for line in text_of(record).splitlines())


# ===== angle 1: an ordinary member's mail client =================================================

# Gmail writes its attribution line in the user's language. Only some languages are known to the
# quote stripper, so in pt-BR, ja, ru, fi, tr ... the line stays in the member's "own text" - and it
# holds the member's personal reply token for this case (Reply-To: conduct+<token>@).
ATTRIBUTIONS = [
    pytest.param("Em ter., 24 de nov. de 2026 às 09:00, Test Conduct Committee <{addr}> escreveu:", id="gmail-pt-BR"),
    pytest.param("2026年11月24日(火) 9:00 Test Conduct Committee <{addr}>:", id="gmail-ja"),
    pytest.param("вт, 24 нояб. 2026 г. в 09:00, Test Conduct Committee <{addr}>:", id="gmail-ru"),
    pytest.param("ti 24.11.2026 klo 9.00 Test Conduct Committee <{addr}> kirjoitti:", id="gmail-fi"),
]


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("attribution", ATTRIBUTIONS)
def test_localized_gmail_reply_does_not_hand_the_reporter_a_members_token(harness, smtp_receiver, attribution):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    token_address = parsed(alice_copy)["Reply-To"].addresses[0].addr_spec
    text = ("Obrigada pelo relato, estamos analisando. REPLY-TEXT\n\n"
            + attribution.format(addr=token_address) + "\n\n" + quoted(alice_copy) + "\n")
    step(harness, app, client_reply(alice_copy, ALICE, "!reply", text))
    sent = text_of(rx.to(REPORTER)[-1])
    assert "REPLY-TEXT" in sent, "the !reply was not sent at all"
    assert token_address not in sent and "conduct+" not in sent, (
        f"the reporter received Alice's reply token for the case:\n{sent}")


# A corporate signature: name, phone, then a confidentiality disclaimer (Outlook adds it below the
# signature). Only the last 5 non-empty lines are checked, so the name and phone go out.
SIGNATURES = [
    pytest.param("Alice Example\nHead of Community, Example Org\n+44 20 7946 0958\n\n"
                 "CONFIDENTIALITY NOTICE: This e-mail and any attachments are confidential\n"
                 "and may be legally privileged. If you are not the intended recipient,\n"
                 "please notify the sender immediately and delete it from your system.\n"
                 "Any unauthorised copying, disclosure or distribution is prohibited.\n"
                 "Example Org Ltd, registered in England and Wales, no. 01234567.\n"
                 "Please consider the environment before printing this e-mail.",
                 ["Alice Example", "7946 0958"], id="signature-then-disclaimer"),
    pytest.param("Alice\nChair, Code of Conduct Committee\nPronouns: she/her\nhttps://example.org/people/alice",
                 ["Chair, Code of Conduct", "people/alice"], id="first-name-and-role"),
    pytest.param("Alice\nalice.example@gmail.com", ["alice.example@gmail.com"], id="first-name-and-personal-address"),
]


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("signature,identifying", SIGNATURES)
def test_member_signature_never_reaches_the_reporter(harness, smtp_receiver, signature, identifying):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    before = len(rx.to(REPORTER))
    text = f"Thank you for your report. We are looking into it. REPLY-TEXT\n\n{signature}\n\nOn Tue, Conduct wrote:\n{quoted(alice_copy)}\n"
    step(harness, app, client_reply(alice_copy, ALICE, "!reply", text))
    if len(rx.to(REPORTER)) == before:
        return  # refused: fine
    sent = text_of(rx.to(REPORTER)[-1])
    leaked = [w for w in identifying if w in sent]
    assert not leaked, f"the reporter received the member's signature ({leaked}):\n{sent}"


# ===== angle 2: content that hides a member's name from the scan ===================================

# Each attachment names Bob Builder in a way every viewer shows ("It was Bob Builder") and is
# marked as scanned, so the copy does not say "not scanned for names".
HIDDEN = [
    pytest.param("pdf-form", id="pdf-filled-form-field"),           # an incident-report PDF form, filled in
    pytest.param("pdf-freetext", id="pdf-typewriter-annotation"),   # Preview/Acrobat "add text" tool
    pytest.param("rtf-word", id="rtf-from-word-rsid-runs"),         # Word "Save as RTF": name in two runs
    pytest.param("ics-folded", id="ics-folded-line"),               # RFC 5545 line folding inside the name
    pytest.param("csv-cells", id="csv-first-last-columns"),         # "Bob,Builder"
    pytest.param("csv-semicolon-cp1252", id="csv-semicolon-excel-de"),
    pytest.param("mht-word", id="mht-single-file-web-page"),        # Word .mht: QP + <span>
    pytest.param("svg-tspan", id="svg-text-tspan"),
    pytest.param("vcf-qp", id="vcard-2.1-quoted-printable"),
    pytest.param("docx-partname-no-xml", id="docx-main-part-not-named-xml"),
    pytest.param("docx-partname-upper", id="docx-main-part-upper-case-XML"),
    pytest.param("html-bdo-rtl", id="html-bdo-rtl"),
    pytest.param("html-css-content", id="html-css-generated-content"),
]


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("kind", HIDDEN)
def test_member_named_only_in_an_attachment_is_recused(harness, smtp_receiver, kind):
    rx = smtp_receiver
    content, ctype, filename = files.ATTS[kind]
    app, case, alice_copy = opened(harness, files.with_att(content, ctype, filename))
    assert rx.to(ALICE) and rx.to(CAROL)
    if rx.to(BOB):
        says_not_scanned = "not scanned" in text_of(rx.to(BOB)[0])
        pytest.fail(f"Bob received the report whose {filename} names him "
                    f"(copy says 'not scanned': {says_not_scanned})")


# Text in the mail body that every client displays as "Bob Builder".
BODIES = [
    pytest.param("It was \u202eredliuB boB\u202c at the desk.", id="right-to-left-override"),
    pytest.param("It was Bob\u3164Builder at the desk.", id="hangul-filler-as-space"),
    pytest.param("It was Bob\u2800Builder at the desk.", id="braille-blank-as-space"),
]


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("body", BODIES)
def test_member_named_in_the_body_with_invisible_tricks_is_recused(harness, smtp_receiver, body):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness, report(body=body))
    assert rx.to(BOB) == [], "Bob received the report that names him"


# Documented limits: the copy must say what was not scanned.
UNREADABLE = ["xlsx", "zip", "tnef", "utf16-chinese-nobom"]


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("kind", UNREADABLE)
def test_unreadable_attachment_is_flagged_not_scanned(harness, smtp_receiver, kind):
    content, ctype, filename = files.ATTS[kind]
    app, case, alice_copy = opened(harness, files.with_att(content, ctype, filename))
    line = [ln for ln in text_of(alice_copy).splitlines() if filename in ln]
    assert line and "not scanned" in line[0], f"the copy does not flag {filename} as not scanned: {line}"


def test_outlook_desktop_portuguese_html_reply_does_not_hand_the_reporter_a_token(harness, smtp_receiver):
    """Outlook for Windows in pt-BR, HTML-only reply: its header block says "De:" / "Enviada em:"."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    original = parsed(alice_copy)
    token_address = original["Reply-To"].addresses[0].addr_spec
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = token_address
    msg["Subject"] = f"RES: {original['Subject']} !reply"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["In-Reply-To"] = original["Message-ID"]
    msg.set_content(
        '<html><body><div class=WordSection1><p class=MsoNormal>Obrigada pelo relato, estamos analisando. REPLY-TEXT</p>'
        '<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class=MsoNormal>'
        f'<b>De:</b> Test Conduct Committee &lt;{token_address}&gt; <br><b>Enviada em:</b> ter\u00e7a-feira, 24 de novembro '
        f'de 2026 09:00<br><b>Assunto:</b> {original["Subject"]}</p></div>'
        '<p class=MsoNormal>' + text_of(alice_copy).replace("\n", "<br>") + '</p></div></body></html>', subtype="html")
    step(harness, app, msg.as_bytes())
    sent = text_of(rx.to(REPORTER)[-1])
    assert "REPLY-TEXT" in sent, "the !reply was not sent"
    assert "conduct+" not in sent, f"the reporter received Alice's reply token:\n{sent}"
