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

from conduct_inbox.mail import extract
from conduct_inbox.mail.parse import InboundMessage, parse
from conduct_inbox.recusal import detect
from conduct_inbox.roster import Person, Roster

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
