"""Everything a person could read in a message reaches the member scan (DESIGN "Routing and
recusal"): every alternative, HTML as text, sniffed text attachments, PDF/DOCX/ODT, file names and
forwarded messages in any transfer encoding. Messages are built here, byte by byte."""

from __future__ import annotations

import base64
import io
import os
import quopri
import zipfile

import pytest

from conduct_inbox.core.recusal import detect
from conduct_inbox.core.roster import Person, Roster
from conduct_inbox.mail import extract
from conduct_inbox.mail.parse import InboundMessage, parse

BOB = Person("Bob Builder", "bob@example.org")
ZOE = Person("Zoë Müller", "zoe@example.org")
CAROL = Person("Carol Jones", "carol@example.net")
ROSTER = Roster(members=(BOB, ZOE, CAROL))

HEAD = "From: Rita Reporter <rita@example.com>\nTo: conduct@example.org\nSubject: Report\nMIME-Version: 1.0\n"


def named(msg: InboundMessage) -> list[str]:
    return [m.email for m in detect(ROSTER, [r.text for r in msg.readable])]


def with_attachment(data: bytes, ctype: str, filename: str | None = "file.bin", *, cte: str = "base64",
                    body: str = "Please see the attached file.") -> bytes:
    """A report whose plain body names nobody, with one attachment."""
    disposition = f'attachment; filename="{filename}"' if filename else "attachment"
    if cte == "base64":
        payload = base64.encodebytes(data).decode("ascii")
    elif cte == "quoted-printable":
        payload = quopri.encodestring(data).decode("ascii")
    else:
        payload = data.decode("utf-8")
    return (
        HEAD + 'Content-Type: multipart/mixed; boundary="XX"\n\n'
        f"--XX\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
        f"--XX\nContent-Type: {ctype}\nContent-Disposition: {disposition}\nContent-Transfer-Encoding: {cte}\n\n"
        f"{payload}\n--XX--\n"
    ).encode("utf-8")


def only_attachment(msg: InboundMessage):
    assert len(msg.attachments) == 1, msg.attachments
    return msg.attachments[0]


# --- the body: every alternative -----------------------------------------------------------------

REPORT_HTML = (
    "<html><body><p>I want to report that Bob&nbsp;Builder shouted at me during the sprint planning"
    " on Tuesday, in front of the whole team &amp; several people saw it happen and can confirm"
    " what he said.</p></body></html>"
)


def alternative(plain: str, html: str) -> bytes:
    return (
        HEAD + 'Content-Type: multipart/alternative; boundary="AA"\n\n'
        f"--AA\nContent-Type: text/plain; charset=utf-8\n\n{plain}\n"
        f"--AA\nContent-Type: text/html; charset=utf-8\n\n{html}\n--AA--\n"
    ).encode("utf-8")


def test_a_plain_stub_does_not_hide_the_html_from_the_scan_nor_from_the_committee() -> None:
    msg = parse(alternative("This message is best viewed in HTML. View it in your browser.", REPORT_HTML))
    assert named(msg) == [BOB.email]
    assert any(r.source == "body" and "Bob Builder shouted" in r.text.replace("\xa0", " ") for r in msg.readable)
    assert "shouted at me during the sprint planning" in msg.text
    assert "----- the HTML version of this message -----" in msg.text
    assert msg.text.startswith("This message is best viewed in HTML.")
    assert "shouted at me during the sprint planning" in msg.own_text


def test_an_html_twin_of_the_plain_text_is_not_repeated_for_the_committee() -> None:
    plain = ("I want to report that Bob Builder shouted at me during the sprint planning on Tuesday, in front"
             " of the whole team & several people saw it happen and can confirm what he said.")
    msg = parse(alternative(plain, REPORT_HTML))
    assert named(msg) == [BOB.email]
    assert msg.text == plain
    assert "HTML version" not in msg.text


def test_html_that_says_something_else_than_the_plain_text_is_shown() -> None:
    plain = "Hello, I would like to talk to someone on the committee about an incident at the meetup."
    msg = parse(alternative(plain, REPORT_HTML))
    assert "shouted at me" in msg.text and msg.text.startswith("Hello,")


def test_an_html_body_beside_a_plain_body_in_multipart_mixed_is_scanned() -> None:
    raw = (
        HEAD + 'Content-Type: multipart/mixed; boundary="MM"\n\n'
        "--MM\nContent-Type: text/plain\n\nSee below.\n"
        "--MM\nContent-Type: text/html\n\n<p>Ask b&#111;b&#64;example.org</p>\n--MM--\n"
    ).encode()
    assert named(parse(raw)) == [BOB.email]


# --- text attachments, whatever their type or charset --------------------------------------------


def test_html_attachment_is_rendered_with_entities_resolved() -> None:
    data = b"<html><body><p>Witness: Bob&nbsp;Buil&#100;er &amp; others</p></body></html>"
    msg = parse(with_attachment(data, "text/html", "notes.html"))
    assert named(msg) == [BOB.email]
    assert only_attachment(msg).scanned


def test_utf16_csv_with_bom_is_read() -> None:
    data = "\ufeffname,role\r\nBob Builder,witness\r\n".encode("utf-16-le")
    msg = parse(with_attachment(data, "text/csv", "people.csv"))
    assert named(msg) == [BOB.email]
    assert only_attachment(msg).scanned


def test_utf16_without_bom_is_read() -> None:
    data = "name,role\nBob Builder,witness\nsomeone else,reporter\n".encode("utf-16-be")
    msg = parse(with_attachment(data, "application/octet-stream", "people.csv"))
    assert named(msg) == [BOB.email]
    assert only_attachment(msg).scanned


def test_utf32_with_bom_is_read() -> None:
    data = "Bob Builder was there".encode("utf-32")
    msg = parse(with_attachment(data, "text/plain", "a.txt"))
    assert named(msg) == [BOB.email]


def test_latin1_text_without_a_charset_is_read() -> None:
    data = "Protokoll der Sitzung.\nAnwesend: Zoë Müller und andere Mitglieder des Vereins.\n".encode("latin-1")
    msg = parse(with_attachment(data, "text/plain", "protokoll.txt"))
    assert named(msg) == [ZOE.email]
    assert only_attachment(msg).scanned


def test_json_sent_as_octet_stream_is_read() -> None:
    data = b'{"messages": [{"from": "bob@example.org", "text": "you will regret this"}]}'
    msg = parse(with_attachment(data, "application/octet-stream", "export.bin"))
    assert named(msg) == [BOB.email]
    assert only_attachment(msg).scanned


def test_chat_export_in_quoted_printable_is_read() -> None:
    data = "[12/03/2026, 21:04] Bob Builder: stop posting that\n[12/03/2026, 21:05] Rita: why?\n".encode()
    msg = parse(with_attachment(data, "text/plain; charset=utf-8", "WhatsApp Chat.txt", cte="quoted-printable"))
    assert named(msg) == [BOB.email]


def test_binary_junk_is_not_taken_for_text() -> None:
    msg = parse(with_attachment(os.urandom(4000), "application/octet-stream", "blob.bin"))
    att = only_attachment(msg)
    assert not att.scanned
    assert all(r.source == "filename" or r.source in ("subject", "body") for r in msg.readable)


def test_an_image_is_not_scanned_but_its_file_name_is() -> None:
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(500)
    msg = parse(with_attachment(png, "image/png", "Bob Builder at the party.png"))
    assert not only_attachment(msg).scanned
    assert named(msg) == [BOB.email]
    assert any(r.source == "filename" for r in msg.readable)


# --- documents -----------------------------------------------------------------------------------


def pdf(text: str) -> bytes:
    """A minimal one-page PDF showing `text` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.mark.parametrize(("ctype", "filename"), [("application/pdf", "statement.pdf"),
                                                 ("application/octet-stream", "scan.dat")])
def test_pdf_text_is_read_whatever_its_label(ctype: str, filename: str) -> None:
    msg = parse(with_attachment(pdf("Statement of a witness about Bob Builder"), ctype, filename))
    assert named(msg) == [BOB.email]
    assert only_attachment(msg).scanned


def test_a_name_hyphenated_over_a_pdf_line_break_is_found() -> None:
    text = "Statement about Bob Buil-\nder and others"
    assert detect(ROSTER, [text])[0].email == BOB.email


def test_garbage_pdf_does_not_crash_and_is_not_scanned() -> None:
    data = b"%PDF-1.7\n" + os.urandom(3000)
    msg = parse(with_attachment(data, "application/pdf", "statement.pdf"))
    att = only_attachment(msg)
    assert not att.scanned
    assert any("PDF" in d for d in msg.defects)


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("Minutes of the meeting")
    table = document.add_table(rows=1, cols=2)
    table.cell(0, 0).text = "Present"
    table.cell(0, 1).text = "Bob Builder"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


@pytest.mark.parametrize(("ctype", "filename"), [
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "minutes.docx"),
    ("application/octet-stream", "minutes"),
])
def test_docx_text_including_tables_is_read(ctype: str, filename: str) -> None:
    msg = parse(with_attachment(docx_bytes(), ctype, filename))
    assert named(msg) == [BOB.email]
    assert only_attachment(msg).scanned


def test_zip_bomb_docx_does_not_crash_and_is_not_scanned() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"<w:document>" + b" " * (extract.MAX_UNZIPPED_BYTES + 1))
    msg = parse(with_attachment(out.getvalue(), "application/msword", "bomb.docx"))
    att = only_attachment(msg)
    assert not att.scanned
    assert any("too large" in d for d in msg.defects)


def odt_bytes(kind: str = "text") -> bytes:
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><office:body><office:text>'
        "<text:p>Minutes</text:p><text:p><text:span>Bob</text:span><text:s/><text:span>Builder</text:span>"
        " was present</text:p></office:text></office:body></office:document-content>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", f"application/vnd.oasis.opendocument.{kind}", compress_type=zipfile.ZIP_STORED)
        z.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


@pytest.mark.parametrize(("ctype", "filename", "kind"), [
    ("application/vnd.oasis.opendocument.text", "minutes.odt", "text"),
    ("application/zip", "minutes.zip", "text"),
    ("application/octet-stream", "sheet.ods", "spreadsheet"),
])
def test_odf_text_is_read(ctype: str, filename: str, kind: str) -> None:
    msg = parse(with_attachment(odt_bytes(kind), ctype, filename))
    assert named(msg) == [BOB.email]
    assert only_attachment(msg).scanned


# --- forwarded messages --------------------------------------------------------------------------

INNER = (
    "From: Bob Builder <bob@example.org>\nTo: rita@example.com\nSubject: you again\n"
    "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\nStop it.\n"
)


@pytest.mark.parametrize("cte", ["base64", "quoted-printable"])
def test_encoded_message_rfc822_is_read_as_a_forwarded_message(cte: str) -> None:
    msg = parse(with_attachment(INNER.encode(), "message/rfc822", "fwd.eml", cte=cte))
    assert named(msg) == [BOB.email]
    assert [f.from_address for f in msg.forwarded] == ["bob@example.org"]
    assert msg.forwarded[0].text.strip() == "Stop it."


@pytest.mark.parametrize("ctype", ["application/octet-stream", "text/plain"])
def test_eml_attachment_is_read_as_a_forwarded_message(ctype: str) -> None:
    msg = parse(with_attachment(INNER.encode(), ctype, "original.eml"))
    assert named(msg) == [BOB.email]
    assert [f.subject for f in msg.forwarded] == ["you again"]
    assert msg.attachments[0].scanned


def test_nested_forwards_and_their_attachments_count() -> None:
    innermost = with_attachment(pdf("Bob Builder"), "application/pdf", "evidence.pdf").decode()
    middle = (
        "From: Someone <someone@example.com>\nSubject: Fwd: evidence\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="MID"\n\n--MID\nContent-Type: text/plain\n\nsee attached\n'
        "--MID\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(innermost.encode()).decode() + "\n--MID--\n"
    )
    msg = parse(with_attachment(middle.encode(), "message/rfc822", None, cte="base64"))
    assert named(msg) == [BOB.email]
    pdfs = [a for a in msg.attachments if a.filename == "evidence.pdf"]
    assert pdfs and pdfs[0].scanned
    assert any(r.source == "attachment" and "Bob Builder" in r.text for r in msg.readable)


def test_forwarded_html_only_message_counts() -> None:
    inner = ("From: X <x@example.com>\nSubject: hi\nContent-Type: text/html\n\n"
             "<p>written by b&#111;b@example.org</p>\n")
    msg = parse(with_attachment(inner.encode(), "message/rfc822", None, cte="base64"))
    assert named(msg) == [BOB.email]
    assert any(r.source == "forwarded" for r in msg.readable)


# --- limits --------------------------------------------------------------------------------------


def test_content_omitted_for_size_is_still_scanned_when_its_text_was_read() -> None:
    raw = with_attachment(pdf("Bob Builder"), "application/pdf", "statement.pdf")
    msg = parse(raw, max_attachment_bytes=100)
    att = only_attachment(msg)
    assert att.content_omitted and att.content == b""
    assert att.scanned and named(msg) == [BOB.email]


def test_extraction_never_raises_on_junk_in_any_label() -> None:
    for ctype, name in [("application/pdf", "a.pdf"), ("application/zip", "a.docx"), ("text/html", "a.html"),
                        ("application/vnd.oasis.opendocument.text", "a.odt"), ("message/rfc822", "a.eml")]:
        for data in (b"", b"PK\x03\x04" + os.urandom(200), os.urandom(1000), b"%PDF-" + b"\x00" * 100):
            parse(with_attachment(data, ctype, name))
    for ctype, name in [("application/rtf", "a.rtf"), ("text/calendar", "a.ics"), ("text/vcard", "a.vcf"),
                        ("image/svg+xml", "a.svg"), ("multipart/related", "a.mht"), ("application/json", "a.json")]:
        for data in (b"", os.urandom(1000), b"{\\rtf1" + os.urandom(500), b"{\\rtf1" + b"{" * 5000 + b"\\bin99999",
                     b"{\\rtf1\\u-1\\u99999999\\'zz\\uc999 x\\", b"BEGIN:VCARD\r\nFN;ENCODING=QUOTED-PRINTABLE:=\r\n",
                     b"BEGIN:VCARD\nPHOTO;ENCODING=b:!!!\n", b"<svg><text>&undefined;<tspan>", b"<svg" + b"<g>" * 20000,
                     b"Content-Type: multipart/related; boundary=x\r\n\r\n--x\r\n\r\n", b'{"a": "\\ud800\\u00"}'):
            parse(with_attachment(data, ctype, name))


# --- red team round 2: what viewers show that the text layer hides ------------------------------

from tests import redteam_files as files  # noqa: E402


def scanned_and_named(data: bytes, ctype: str, filename: str | None) -> list[str]:
    msg = parse(with_attachment(data, ctype, filename))
    assert only_attachment(msg).scanned
    return named(msg)


def test_pdf_filled_form_field_values_are_read() -> None:
    assert scanned_and_named(files.pdf_form(), "application/pdf", "form.pdf") == [BOB.email]


@pytest.mark.parametrize("subtype", ["FreeText", "Text", "Highlight", "Square"])
def test_pdf_annotation_contents_are_read(subtype: str) -> None:
    objs = files.pdf("", "BT /F1 12 Tf 72 720 Td (See the note) Tj ET", "/Annots [6 0 R] ")
    objs.append(b"<< /Type /Annot /Subtype /%s /Rect [72 600 300 620] /Contents (It was Bob Builder) >>"
                % subtype.encode())
    assert scanned_and_named(files.build_pdf(objs), "application/pdf", "note.pdf") == [BOB.email]


def test_pdf_form_fields_that_loop_are_read_once() -> None:
    objs = files.pdf("/AcroForm << /Fields [6 0 R] >> ", "BT /F1 12 Tf 72 720 Td (Form) Tj ET")
    objs.append(b"<< /FT /Tx /T (a) /Kids [6 0 R 7 0 R] >>")
    objs.append(b"<< /FT /Tx /T (b) /Parent 6 0 R /V <FEFF0042006F00620020004200750069006C006400650072> >>")
    assert scanned_and_named(files.build_pdf(objs), "application/pdf", "form.pdf") == [BOB.email]


RTF_WORD = files.RTF.encode()


@pytest.mark.parametrize(("data", "expected"), [
    (RTF_WORD, "It was Bob Builder, at the registration desk."),
    (rb"{\rtf1\ansi{\fonttbl{\f0 Bob Builder Sans;}}\f0 Zo\'eb M\'fcller\par}", "Zoë Müller\n"),
    (rb"{\rtf1\ansi\uc1 Zo\u235?e\u776\'3f M\u252\'fcller}", "Zo\u00ebe\u0308 M\u00fcller"),
    (rb"{\rtf1\ansi\uc2 Zo\u235\'81\'82 \u-3913??x}", "Zo\u00eb \uf0b7x"),
    (rb"{\rtf1\ansicpg1251 \'c1\'ee\'e1}", "Боб"),
    (rb"{\rtf1 Bob {\*\generator Carol Jones;}{\*\annotation seen} Buil\-der\~x\tab y\line z\bin3 abc}", "Bob seen Builder\u00a0x\ty\nz"),
    (rb"{\rtf1 a{\field{\*\fldinst HYPERLINK carol@example.net}{\fldrslt Bob}} Builder}", "aBob Builder"),
])
def test_rtf_is_converted_to_text(data: bytes, expected: str) -> None:
    sink = extract._Sink(1000)
    extract.rtf_to_text(data.decode("latin-1"), sink)
    assert sink.text().strip(" \n") == expected.strip(" \n")


@pytest.mark.parametrize("ctype", ["application/rtf", "text/rtf", "application/octet-stream", "application/msword"])
def test_rtf_attachment_is_converted_and_scanned(ctype: str) -> None:
    assert scanned_and_named(RTF_WORD, ctype, "statement.rtf") == [BOB.email]


def test_rtf_hidden_destinations_do_not_recuse() -> None:
    data = rb"{\rtf1{\fonttbl{\f0 Bob Builder;}}{\info{\author Bob Builder}}\f0 Nothing to see.\par}"
    assert scanned_and_named(data, "application/rtf", "a.rtf") == []


def test_a_deeply_nested_or_long_rtf_stays_bounded() -> None:
    data = b"{\\rtf1 " + b"{" * 100_000 + b"Bob Builder" + b"}" * 100_000 + b"}"
    assert scanned_and_named(data, "application/rtf", "a.rtf") == [BOB.email]


@pytest.mark.parametrize(("data", "ctype", "filename"), [
    (files.ICS.encode(), "text/calendar", "invite.ics"),
    (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nATTENDEE;CN=Bob Bu\r\n ilder:mailto:b@example.com\r\nEND:VEVENT\r\n"
     b"END:VCALENDAR\r\n", "application/octet-stream", "invite.dat"),
    (b"BEGIN:VCALENDAR\nDESCRIPTION:it was Bob Buil\n\tder\\nand others\nEND:VCALENDAR\n", "text/plain", None),
    (files.VCF.encode(), "text/vcard", "contact.vcf"),
    (b"BEGIN:VCARD\r\nVERSION:2.1\r\nNOTE;ENCODING=QUOTED-PRINTABLE:It was Bob Bu=\r\nilder\r\nEND:VCARD\r\n",
     "text/x-vcard", "c.vcf"),
    (b"BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:Zo=EB M=FCller\r\nEND:VCARD\r\n",
     "text/x-vcard", "c.vcf"),
    (b"BEGIN:VCARD\r\nVERSION:3.0\r\nNOTE;ENCODING=b:SXQgd2FzIEJvYiBCdWlsZGVy\r\nEND:VCARD\r\n", "text/vcard", "c.vcf"),
])
def test_calendar_and_vcard_are_unfolded_and_decoded(data: bytes, ctype: str, filename: str | None) -> None:
    assert scanned_and_named(data, ctype, filename) in ([BOB.email], [ZOE.email])


def test_directory_text_unescapes_and_keeps_parameters() -> None:
    text = extract.directory_text("ATTENDEE;CN=\"Builder, Bob\":mailto:x@example.com\r\nNOTE:a\\, b\\; c\\nd\\\\e\r\n")
    assert text == 'ATTENDEE;CN="Builder, Bob":mailto:x@example.com\nNOTE:a, b; c\nd\\e\n'


@pytest.mark.parametrize("data", [
    files.csv_cells(), files.csv_semicolon_cp1252(), b'"First","Last"\r\n"Bob","Builder"\r\n',
    b"First\tLast\nBob\tBuilder\n", b"Last,First\nBuilder,Bob\n", b"name|role\nBob|Builder|volunteer\n",
])
def test_names_split_into_csv_cells_are_found(data: bytes) -> None:
    assert scanned_and_named(data, "text/csv", "people.csv") == [BOB.email]


@pytest.mark.parametrize("filename", ["Bob_Builder_timeline.txt", "Bob.Builder.timeline.txt", "bob-builder.txt",
                                      "timeline_builder_bob.txt"])
def test_names_in_file_names_with_separators_are_found(filename: str) -> None:
    msg = parse(with_attachment(b"10:00 arrived\n10:20 the comments started\n", "text/plain", filename))
    assert named(msg) == [BOB.email]


def test_mht_web_archive_is_read_as_its_rendered_html() -> None:
    msg = parse(with_attachment(files.MHT.encode(), "application/octet-stream", "statement.mht"))
    assert only_attachment(msg).scanned
    assert named(msg) == [BOB.email]
    assert not msg.forwarded


@pytest.mark.parametrize(("ctype", "filename"), [("message/rfc822", "statement.mht"),
                                                 ("application/x-mimearchive", "statement.mhtml"),
                                                 ("application/octet-stream", "statement")])
def test_mht_is_recognised_whatever_its_label(ctype: str, filename: str) -> None:
    assert named(parse(with_attachment(files.MHT.encode(), ctype, filename))) == [BOB.email]


@pytest.mark.parametrize(("data", "ctype", "filename"), [
    (files.SVG.encode(), "image/svg+xml", "note.svg"),
    (files.SVG.encode(), "application/octet-stream", "note"),
    (b'<svg xmlns="http://www.w3.org/2000/svg"><style>.a{}</style><text><tspan>Bob</tspan> <tspan>Builder</tspan>'
     b'</text></svg>', "image/svg+xml", "a.svg"),
    (b"<svg><title>Bob Builder</title><text>broken <tspan>markup", "image/svg+xml", "a.svg"),
])
def test_svg_text_is_read(data: bytes, ctype: str, filename: str) -> None:
    assert scanned_and_named(data, ctype, filename) == [BOB.email]


@pytest.mark.parametrize("partname", ["word/main", "word/document.XML", "doc/main.xml", "WORD/DOCUMENT.XML"])
def test_docx_parts_are_read_whatever_their_names(partname: str) -> None:
    data = files.docx_at(partname)
    assert scanned_and_named(data, "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                             "statement.docx") == [BOB.email]


def test_odf_embedded_object_parts_are_read_but_not_metadata() -> None:
    out = io.BytesIO()
    body = ('<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
            'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"><text:p>%s</text:p></office:document-content>')
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", body % "Minutes")
        z.writestr("meta.xml", "<meta><creator>Carol Jones</creator></meta>")
        z.writestr("Object 1/content.xml", body % "Bob Builder")
    assert scanned_and_named(out.getvalue(), "application/vnd.oasis.opendocument.text", "m.odt") == [BOB.email]


def test_a_spreadsheet_is_still_not_scanned() -> None:
    msg = parse(with_attachment(files.xlsx(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                                "people.xlsx"))
    assert not only_attachment(msg).scanned


@pytest.mark.parametrize("markup", [
    '<p>It was <bdo dir="rtl">redliuB boB</bdo>.</p>',
    '<p>It was <span style="unicode-bidi:bidi-override; direction: rtl">redliuB boB</span>.</p>',
    '<style>.n::after{content:"Bob Builder"}</style><p>It was <span class="n"></span>.</p>',
    "<style>.n::before{content: 'Bob' ' \\42 uilder'}</style><p>x</p>",
    '<p style="x" data-x="1">It was <img src="cid:1" alt="Bob Builder"></p>',
    '<p>It was <abbr title="Bob Builder">him</abbr></p>',
    '<html><head><title>Bob Builder</title></head><body>x</body></html>',
])
@pytest.mark.parametrize("where", ["attachment", "body"])
def test_html_shows_more_than_its_text(markup: str, where: str) -> None:
    if where == "attachment":
        assert scanned_and_named(markup.encode(), "text/html", "s.html") == [BOB.email]
    else:
        raw = (HEAD + "Content-Type: text/html; charset=utf-8\n\n" + markup + "\n").encode()
        assert named(parse(raw)) == [BOB.email]


def test_bdo_is_shown_to_the_committee_as_a_viewer_shows_it() -> None:
    raw = (HEAD + 'Content-Type: text/html; charset=utf-8\n\n<p>It was <bdo dir="rtl">redliuB boB</bdo>.</p>\n').encode()
    assert "It was Bob Builder." in parse(raw).text


@pytest.mark.parametrize("data", [
    b'{"messages": [{"text": "It was \\u0042ob \\u0042uilder"}]}',
    b'{"text": "It was Bob\\nBuilder"}',
    b'["Zo\\u00eb M\\u00fcller"]',
    b'{"t": "\\ud83d\\ude00 Bob \\u0042uilder"}',
])
def test_json_escapes_are_decoded(data: bytes) -> None:
    assert scanned_and_named(data, "application/json", "chat.json") in ([BOB.email], [ZOE.email])


@pytest.mark.parametrize("body", [
    "It was Bob\u3164Builder at the desk.", "It was Bob\u2800Builder.", "It was \u202eredliuB boB\u202c at the desk.",
    "Builder, Bob said it.",
])
def test_invisible_tricks_in_the_body_are_found(body: str) -> None:
    raw = (HEAD + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n" + body + "\n").encode()
    assert named(parse(raw)) == [BOB.email]
