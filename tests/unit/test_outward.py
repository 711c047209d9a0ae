"""Text a member sends to a party (`!reply`, `!send`): client signatures removed, personal
contact details in the closing lines refused (DESIGN.md, "Committee commands")."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from conduct_inbox.core.outward import CLOSING_LINES, OutwardText, outward_text
from conduct_inbox.core.roster import Person
from conduct_inbox.mail.html import to_text
from conduct_inbox.mail.parse import REPLY_MARKER, parse

ANNA = Person("Anna Schmidt", "anna.schmidt@example.org", aliases=("Annie S",))

BODY = "Thank you for your report. We have spoken to the people involved and will write again by Friday."


def _mail(*, html: str | None = None, plain: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Anna Schmidt <anna.schmidt@example.org>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = "Re: [conduct #2026-0007] Harassment at the sprint !reply"
    msg["Message-ID"] = "<m1@example.org>"
    if plain is not None:
        msg.set_content(plain)
    if html is not None:
        if plain is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def _sent(own: str) -> str:
    result = outward_text(own, ANNA)
    assert result.refusal is None, result.refusal
    return result.text


# --- HTML client signatures, through the whole parser ----------------------------------------

OUTLOOK_WEB = f"""<html><head><style type="text/css" style="display:none;"> P {{margin-top:0;margin-bottom:0;}} </style></head>
<body dir="ltr">
<div class="elementToProof" style="font-family: Aptos, Aptos_EmbeddedFont, Calibri, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);">
Hello,</div>
<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;"><br></div>
<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;">{BODY}</div>
<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;"><br></div>
<div id="Signature" class="elementToProof">
<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;"><br></div>
<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;">Anna Schmidt</div>
<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;">Head of Community | Example Foundation</div>
<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;">M: +44 20 7946 0958</div>
<div class="elementToProof" style="font-family: Aptos, Calibri, sans-serif; font-size: 12pt;"><a href="mailto:anna.schmidt@example.org">anna.schmidt@example.org</a></div>
</div>
<div id="appendonsend"></div>
<hr style="display:inline-block;width:98%" tabindex="-1">
<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000"><b>From:</b> Code of Conduct Committee &lt;conduct@example.org&gt;<br>
<b>Sent:</b> Tuesday, November 24, 2026 9:12 AM<br>
<b>Subject:</b> [conduct #2026-0007] Harassment at the sprint</font>
<div>&nbsp;</div></div>
<div>{REPLY_MARKER}<br>The reporter wrote: something</div>
</body></html>"""


def test_outlook_web_signature_is_not_in_own_text() -> None:
    msg = parse(_mail(html=OUTLOOK_WEB))
    assert msg.html_converted
    assert BODY in msg.own_text
    for part in ("Anna Schmidt", "Head of Community", "7946", "anna.schmidt@example.org"):
        assert part not in msg.own_text
    assert _sent(msg.own_text) == msg.own_text  # nothing left to clean or refuse
    assert "7946" in msg.text  # the whole body keeps it (the record of what arrived)


def test_outlook_web_old_wrapper_signature() -> None:
    html = f"""<html><body><div id="divtagdefaultwrapper" dir="ltr" style="font-size:12pt">
<p>{BODY}</p><p><br></p>
<div id="Signature"><div id="divtagdefaultwrapper" dir="ltr"><p>Anna Schmidt</p><p>Tel. (555) 123-4567</p></div></div>
</div></body></html>"""
    own = parse(_mail(html=html)).own_text
    assert BODY in own and "Anna" not in own and "4567" not in own


def test_outlook_signature_holding_typed_text_in_the_middle_is_kept() -> None:
    # New Outlook sometimes puts what the member types inside the Signature element.
    html = f"""<html><body><div id="Signature" class="elementToProof"><span>Hello,</span></div>
<div class="elementToProof">{BODY}</div></body></html>"""
    own = parse(_mail(html=html)).own_text
    assert "Hello," in own and BODY in own


def test_gmail_signature() -> None:
    html = f"""<div dir="ltr"><div>{BODY}</div><div><br></div><span class="gmail_signature_prefix">-- </span><br>
<div dir="ltr" class="gmail_signature" data-smartmail="gmail_signature"><div dir="ltr">Anna Schmidt<div>Example Foundation</div>
<div>+1.555.123.4567</div></div></div></div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Tue, Nov 24, 2026 at 9:12 AM
Code of Conduct Committee &lt;conduct@example.org&gt; wrote:<br></div><blockquote class="gmail_quote">earlier text</blockquote></div>"""
    own = parse(_mail(html=html)).own_text
    assert BODY in own
    assert "Anna" not in own and "4567" not in own and "Foundation" not in own


def test_gmail_smartmail_marker_alone() -> None:
    text = to_text(f'<p>{BODY}</p><div data-smartmail="gmail_signature">Anna +49 30 1234567</div>', without_quotes=True)
    assert BODY in text and "1234567" not in text
    # Without `without_quotes` (the whole body) nothing is removed.
    assert "1234567" in to_text(f'<p>{BODY}</p><div data-smartmail="gmail_signature">Anna +49 30 1234567</div>')


@pytest.mark.parametrize("markup", [
    '<div class="moz-signature">-- <br>Anna Schmidt<br>+49 30 1234567</div>',  # Thunderbird
    '<pre class="moz-signature" cols="72">-- \nAnna Schmidt\n+49 30 1234567</pre>',
    '<div class="protonmail_signature_block"><div class="protonmail_signature_block-user">Anna +49 30 1234567</div>'
    '<div class="protonmail_signature_block-proton">Sent with Proton Mail secure email.</div></div>',
    '<div id="_rc_sig">-- <br>Anna Schmidt<br>+49 30 1234567</div>',  # Roundcube
    '<div id="AppleMailSignature" dir="ltr">Anna<br>+49 30 1234567</div>',  # Apple Mail (iOS)
    '<br id="lineBreakAtBeginningOfSignature"><div dir="ltr">Anna Schmidt</div><div dir="ltr">+49 30 1234567</div>',
])
def test_client_signature_elements(markup: str) -> None:
    text = to_text(f"<html><body><div>{BODY}</div>{markup}</body></html>", without_quotes=True)
    assert text == BODY


def test_outlook_desktop_autosig_bookmark() -> None:
    html = f"""<html><body><div class="WordSection1"><p class="MsoNormal">{BODY}<o:p></o:p></p>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<p class="MsoNormal"><a name="_MailAutoSig"><span>Anna Schmidt</span></a></p>
<p class="MsoNormal"><span>Phone: 030/1234567</span></p></div></body></html>"""
    assert to_text(html, without_quotes=True) == BODY


def test_element_to_proof_is_not_a_signature() -> None:
    html = f'<div class="elementToProof">{BODY}</div><div class="elementToProof">Second paragraph.</div>'
    assert "Second paragraph." in to_text(html, without_quotes=True)


def test_long_signature_container_is_left_to_the_text_rules() -> None:
    # A "signature" element holding a long text is what the member typed into it: kept.
    typed = "\n".join(f"<div>Paragraph {i} of what the member wrote to the reporter.</div>" for i in range(30))
    text = to_text(f'<div id="Signature">{typed}</div>', without_quotes=True)
    assert "Paragraph 29" in text


def test_apple_mail_sent_from_my_iphone() -> None:
    html = (f'<html><body dir="auto">{BODY}<br><br><div id="AppleMailSignature" dir="ltr">Sent from my iPhone</div>'
            '<div dir="ltr"><br>On Nov 24, 2026, at 9:12 AM, Code of Conduct Committee &lt;conduct@example.org&gt; wrote:<br><br></div>'
            '<blockquote type="cite"><div dir="ltr">earlier</div></blockquote></body></html>')
    own = parse(_mail(html=html)).own_text
    assert own == BODY
    plain = parse(_mail(plain=f"{BODY}\n\nSent from my iPhone\n")).own_text
    assert _sent(plain) == BODY


# --- plain text: cleaning ----------------------------------------------------------------------


def test_clean_reply_passes_unchanged() -> None:
    text = f"Hello,\n\n{BODY}\n\nIf you need to reach us sooner, reply to this mail.\n\nBest regards,"
    assert outward_text(text, ANNA) == OutwardText(text=text, refusal=None)


def test_thunderbird_delimiter() -> None:
    raw = _mail(plain=f"{BODY}\n\n-- \nAnna Schmidt\nExample Foundation\n+49 30 1234567\n")
    msg = parse(raw)
    assert _sent(msg.own_text) == BODY
    assert _sent(f"{BODY}\n\n-- \nAnna Schmidt\n+49 30 1234567") == BODY
    assert _sent(f"{BODY}\n\n--\nAnna Schmidt\n+49 30 1234567") == BODY


@pytest.mark.parametrize("footer", [
    "Sent from my iPhone", "Sent from my Galaxy", "Sent from my Samsung Galaxy smartphone.", "Get Outlook for iOS",
    "Get Outlook for Android", "Sent from Mail for Windows", "Sent from Mail for Windows 10",
    "Sent from Yahoo Mail on Android", "Sent with Proton Mail secure email.", "Von meinem iPhone gesendet",
    "Envoyé de mon iPhone",
])
def test_mobile_footers(footer: str) -> None:
    assert _sent(f"{BODY}\n\n{footer}") == BODY
    assert _sent(f"{BODY}\n\n{footer}\n") == BODY


@pytest.mark.parametrize("line", [
    "Sent the details to your phone.", "Sent from the venue's front desk, the list is attached.",
    "We sent it with the mobile team's help.",
])
def test_sentences_like_footers_are_kept(line: str) -> None:
    text = f"{BODY}\n\n{line}\nThat is all for now."
    assert _sent(text) == text


@pytest.mark.parametrize("closing, kept", [
    ("Best,\nAnna", "Best,"),
    ("Kind regards,\nAnna Schmidt", "Kind regards,"),
    ("Thanks, Anna", "Thanks,"),
    ("Cheers\n-- Anna", "Cheers"),
    ("Anna", ""),
    ("Annie S.", ""),
    ("Regards,\nanna schmidt\n\nSent from my iPhone", "Regards,"),
])
def test_name_sign_off_removed(closing: str, kept: str) -> None:
    assert _sent(f"{BODY}\n\n{closing}") == f"{BODY}\n\n{kept}".rstrip()


def test_other_names_in_the_sign_off_are_kept() -> None:
    assert _sent(f"{BODY}\n\nBest,\nThe Code of Conduct Committee") == f"{BODY}\n\nBest,\nThe Code of Conduct Committee"


# --- plain text: refusals ----------------------------------------------------------------------


def test_plain_signature_without_delimiter_is_refused() -> None:
    own = parse(_mail(plain=f"{BODY}\n\nAnna Schmidt\n12 Example Street, Berlin\n+49 30 1234567\n")).own_text
    result = outward_text(own, ANNA)
    assert result.text == ""
    assert result.refusal and "phone number" in result.refusal
    assert "1234567" not in result.refusal and "+49" not in result.refusal


@pytest.mark.parametrize("phone", [
    "+44 20 7946 0958", "(555) 123-4567", "030/1234567", "+1.555.123.4567", "+49 (0)30 1234 567",
    "0044 20 7946 0958", "555-123-4567", "+33 1 23 45 67 89", "07946 095 811", "Tel: +4930123456",
])
def test_phone_formats_are_refused(phone: str) -> None:
    result = outward_text(f"{BODY}\n\nYou can call me on {phone} any time.", ANNA)
    assert result.refusal is not None and "phone number" in result.refusal
    assert phone not in result.refusal


@pytest.mark.parametrize("line", [
    "We will meet on 2026-11-24 at 10:30.",
    "Please quote case 2026-0007 in any reply.",
    "This concerns the events of 2019-2024.",
    "The meeting is on 24.11.2026, 14:00-15:30, or 11/24/2026.",
    "Office hours 9.00-17.00 on weekdays.",
    "The grant was EUR 1.500.000 and $1,234,567.89 in total.",
    "See https://example.org/cases/20260007123 and version 1.2.3.",
    "The talk was watched 1,234,567 times; the ticket was 250 €.",
    "Reference [conduct #2026-0007], received 2026-11-24 09:12:33.",
])
def test_dates_case_refs_times_and_amounts_are_not_phones(line: str) -> None:
    assert _sent(f"{BODY}\n\n{line}") == f"{BODY}\n\n{line}"


@pytest.mark.parametrize("address", [
    "anna.schmidt@example.org", "Anna.Schmidt@Example.ORG", "anna.schmidt+conduct@example.org",
    "<ANNA.SCHMIDT+cases@EXAMPLE.org>",
])
def test_own_address_in_the_last_line_is_refused(address: str) -> None:
    result = outward_text(f"{BODY}\n\nWrite to {address} if anything changes.", ANNA)
    assert result.refusal is not None and "your own address" in result.refusal
    assert "example" not in result.refusal.lower() and "anna" not in result.refusal.lower()


def test_the_committee_address_may_be_named_other_addresses_in_closing_lines_are_refused() -> None:
    text = f"{BODY}\n\nWrite to conduct@example.org."
    assert outward_text(text, ANNA, committee_address="conduct@example.org").text == text
    # A personal address under a first-name sign-off is a signature (red team: "Alice / alice.example@gmail.com").
    result = outward_text(f"{BODY}\n\nxanna.schmidt@example.org.uk", ANNA, committee_address="conduct@example.org")
    assert result.refusal is not None and "email address" in result.refusal


def test_a_reply_token_never_reaches_a_party() -> None:
    quoted_header = "Em ter., 24 de nov. de 2026 \u00e0s 09:00, Committee <conduct+abcdefghijklmnopqrstu@example.org> escreveu:"
    result = outward_text(f"{BODY}\n\n{quoted_header}", ANNA, committee_address="conduct@example.org")
    assert result.text == BODY  # the header of the quoted mail, in any language, is cut
    inside = outward_text(f"Write to conduct+abcdefghijklmnopqrstu@example.org today.\n\n{BODY}", ANNA,
                          committee_address="conduct@example.org")
    assert inside.refusal is not None and "reply address" in inside.refusal


def test_another_members_name_anywhere_is_refused() -> None:
    bob = Person(name="Bob Builder", email="bob@example.org")
    result = outward_text(f"Bob Builder will call you.\n\n{BODY}", ANNA, people=(ANNA, bob))
    assert result.refusal is not None and "committee member" in result.refusal


def test_name_with_title_in_the_closing_lines_is_refused() -> None:
    result = outward_text(f"{BODY}\n\nAnna Schmidt\nHead of Community, Example Foundation", ANNA)
    assert result.refusal is not None and "your name" in result.refusal


def test_only_the_closing_lines_are_checked() -> None:
    # A phone number of a support line in the body is the member's choice to send.
    middle = "If you feel unsafe, the venue's security team is on +44 20 7946 0000, day and night."
    rest = "\n".join(f"Line {i} of the reply." for i in range(CLOSING_LINES))
    assert _sent(f"{BODY}\n\n{middle}\n\n{rest}") == f"{BODY}\n\n{middle}\n\n{rest}"
    assert outward_text(f"{BODY}\n\n{rest}\n\n{middle}", ANNA).refusal is not None


@pytest.mark.parametrize("text", ["", "   \n\n", "-- \nAnna Schmidt", "Sent from my iPhone", "Best,\nAnna"])
def test_nothing_left_is_refused(text: str) -> None:
    result = outward_text(text, ANNA)
    assert result.text == "" and result.refusal is not None and "no text above the line" in result.refusal


def test_long_text_after_dashes_is_not_a_signature() -> None:
    rest = "\n".join(f"Point {i} we want you to know." for i in range(20))
    text = f"{BODY}\n--\n{rest}"
    assert _sent(text) == text


@pytest.mark.parametrize("line", ["1 " * 100_000, "1." * 100_000, "2026-" * 40_000, "$1 " * 60_000, "a." * 100_000])
def test_long_lines_of_digits_and_dots_are_text(line: str) -> None:
    # (their time is benchmarks/linear.py's: these inputs provoke backtracking)
    result = outward_text(f"{BODY}\n{line}", ANNA)
    assert result.refusal is not None or BODY in result.text


def test_many_signature_elements_cost_little() -> None:
    markup = f"<p>{BODY}</p>" + '<div id="Signature">x</div>' * 20_000
    assert BODY in to_text(markup, without_quotes=True)  # (its time: benchmarks/linear.py)
