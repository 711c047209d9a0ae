"""Attachment builders for tests/e2e/test_redteam_members.py (files that name Bob Builder)."""
import base64
import io
import quopri
import zipfile
from email.message import EmailMessage
from email.utils import make_msgid


def base_report(body="Please see the attached file for who it was."):
    m = EmailMessage()
    m["From"] = "Robin Reporter <reporter@example.net>"
    m["To"] = "conduct@example.org"
    m["Subject"] = "Report"
    m["Message-ID"] = make_msgid(domain="example.net")
    m["Date"] = "Tue, 24 Nov 2026 08:59:00 +0000"
    m.set_content(body)
    return m

def with_att(content, ctype, filename, body="Please see the attached file for who it was.", **kw):
    m = base_report(body)
    mt, st = ctype.split("/")
    m.add_attachment(content, maintype=mt, subtype=st, filename=filename, **kw)
    return m.as_bytes()

def zipped(files):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for n, c in files:
            z.writestr(n, c)
    return out.getvalue()

CT = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="%s" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
RELS = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="%s"/></Relationships>'
DOC = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>It was Bob Builder.</w:t></w:r></w:p></w:body></w:document>'

def docx_at(partname):
    return zipped([("[Content_Types].xml", CT % ("/" + partname)), ("_rels/.rels", RELS % partname), (partname, DOC)])

def xlsx():
    ct = '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
    rels = '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    wb = '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
    wbrels = '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>'
    ss = '<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>Bob Builder</t></si></sst>'
    sh = '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row></sheetData></worksheet>'
    return zipped([("[Content_Types].xml", ct), ("_rels/.rels", rels), ("xl/workbook.xml", wb), ("xl/_rels/workbook.xml.rels", wbrels), ("xl/sharedStrings.xml", ss), ("xl/worksheets/sheet1.xml", sh)])

def pdf(objects_extra, content, annots=""):
    stream = content.encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R " + objects_extra.encode() + b">>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> " + annots.encode() + b">>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return objects

def build_pdf(objects):
    out = io.BytesIO(); out.write(b"%PDF-1.4\n"); offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell()); out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for o in offsets: out.write(b"%010d 00000 n \n" % o)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()

def pdf_form():
    objs = pdf("/AcroForm << /Fields [6 0 R] >> ", "BT /F1 12 Tf 72 720 Td (Incident report form) Tj ET", "/Annots [6 0 R] ")
    ap = b"/Tx BMC BT /F1 12 Tf 2 4 Td (Bob Builder) Tj ET EMC"
    objs.append(b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (accused) /V (Bob Builder) /Rect [72 600 300 620] /P 3 0 R /AP << /N 7 0 R >> >>")
    objs.append(b"<< /Type /XObject /Subtype /Form /BBox [0 0 228 20] /Resources << /Font << /F1 5 0 R >> >> /Length %d >>\nstream\n" % len(ap) + ap + b"\nendstream")
    return build_pdf(objs)

def pdf_freetext():
    objs = pdf("", "BT /F1 12 Tf 72 720 Td (See the note) Tj ET", "/Annots [6 0 R] ")
    objs.append(b"<< /Type /Annot /Subtype /FreeText /Rect [72 600 300 620] /Contents (It was Bob Builder) /DA (/Helv 12 Tf 0 g) >>")
    return build_pdf(objs)

def pdf_words(content):
    return build_pdf(pdf("", content))

RTF = r"""{\rtf1\adeflang1025\ansi\ansicpg1252\uc1\adeff31507\deff0{\fonttbl{\f0\fbidi \froman\fcharset0\fprq2 Times New Roman;}}
{\*\rsidtbl \rsid1\rsid9}
\pard\plain \ltrpar\ql \li0\ri0\widctlpar\wrapdefault\aspalpha\aspnum\faauto\adjustright\rin0\lin0\itap0 \rtlch\fcs1 \af31507\afs24\alang1025 \ltrch\fcs0 \fs24\lang2057\langfe1033\cgrid\langnp2057\langfenp1033 {\rtlch\fcs1 \af31507 \ltrch\fcs0 \insrsid1 It was Bob }{\rtlch\fcs1 \af31507 \ltrch\fcs0 \insrsid9 Builder}{\rtlch\fcs1 \af31507 \ltrch\fcs0 \insrsid1 , at the registration desk.
\par }}"""

ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Google Inc//Google Calendar 70.9054//EN\r\nBEGIN:VEVENT\r\n"
       "DTSTART:20261124T100000Z\r\nDTEND:20261124T110000Z\r\nSUMMARY:Follow-up meeting about the sprint incident\r\n"
       "DESCRIPTION:Notes from the meeting with the venue staff: the person who made t\r\n he comments at the registration desk was Bob Bui\r\n lder\\, one of the organisers.\r\n"
       "END:VEVENT\r\nEND:VCALENDAR\r\n")

MHT = ("MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"----=_NextPart_01DB0000.12345678\"\r\n\r\n"
       "This document is a Single File Web Page, also known as a Web Archive file.\r\n\r\n"
       "------=_NextPart_01DB0000.12345678\r\nContent-Location: file:///C:/statement.htm\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Type: text/html; charset=\"windows-1252\"\r\n\r\n"
       "<html xmlns:o=3D\"urn:schemas-microsoft-com:office:office\"><body lang=3DEN-GB><div class=3DWordSection1>=\r\n"
       "<p class=3DMsoNormal>It was Bob <span class=3DSpellE>Builder</span>, at the registration desk.</p></div></body></html>\r\n"
       "------=_NextPart_01DB0000.12345678--\r\n")

SVG = '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="400" height="50"><text x="10" y="30">It was Bob <tspan font-weight="bold">Builder</tspan></text></svg>'

VCF = "BEGIN:VCARD\r\nVERSION:2.1\r\nN;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:Builder;Bob;;;\r\nFN;ENCODING=QUOTED-PRINTABLE:=42=6F=62=20=42=75=69=6C=64=65=72\r\nEND:VCARD\r\n"

def tnef():
    return b"\x78\x9f\x3e\x22" + b"\x01\x00" + b"\x00"*40 + b"Bob Builder" + b"\x00"*10

def csv_cells():
    return "First name,Last name,Role\r\nBob,Builder,volunteer\r\n".encode()
def csv_semicolon_cp1252():
    return "Vorname;Nachname;Rolle\r\nBob;Builder;Helfer\r\nJürgen;Müller;Gast\r\n".encode("cp1252")
def utf16_chinese_nobom():
    return ("事件报告：在会议上，" * 3 + "Bob Builder" + "一直发表评论。" * 3).encode("utf-16-le")

def rfc2047_filename():
    m = base_report()
    m.add_attachment(b"10:00 arrived\n10:20 the comments started\n", maintype="text", subtype="plain", filename="x.txt")
    raw = m.as_bytes()
    enc = "=?utf-8?B?" + base64.b64encode("Bob Builder timeline.txt".encode()).decode() + "?="
    return raw.replace(b'filename="x.txt"', b'filename="' + enc.encode() + b'"')

def message_global():
    inner = "From: Someone <someone@example.net>\r\nSubject: what happened\r\n\r\nThe person who did it was Bob Builder.\r\n"
    m = base_report()
    m.make_mixed()
    p = EmailMessage()
    p["Content-Type"] = "message/global"
    p["Content-Disposition"] = "attachment"
    p["Content-Transfer-Encoding"] = "quoted-printable"
    p.set_payload(quopri.encodestring(inner.encode()).decode())
    m.attach(p)
    return m.as_bytes()

def nested_zip():
    return zipped([("statement.txt", "It was Bob Builder.\n")])

def eml_qp_octet():
    inner = "From: Someone <someone@example.net>\r\nTo: robin@example.net\r\nSubject: what happened\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nThe person who did it, honestly, at the registration desk on Tuesday was Bob Bui=\r\nlder.\r\n"
    return inner.encode()

def html_css_content():
    return b'<html><head><style>.n::after{content:"Bob Builder"}</style></head><body><p>It was <span class="n"></span>.</p></body></html>'

def html_rtl():
    return '<html><body><p>It was <bdo dir="rtl">redliuB boB</bdo>.</p></body></html>'.encode()

ATTS = {
 "docx-partname-no-xml": (docx_at("word/main"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "statement.docx"),
 "docx-partname-upper": (docx_at("word/document.XML"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "statement.docx"),
 "docx-outside-word": (docx_at("doc/main.xml"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "statement.docx"),
 "xlsx": (xlsx(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "people.xlsx"),
 "pdf-form": (pdf_form(), "application/pdf", "form.pdf"),
 "pdf-freetext": (pdf_freetext(), "application/pdf", "note.pdf"),
 "pdf-tj-kern": (pdf_words("BT /F1 12 Tf 72 720 Td [(It was Bob B) 120 (uilder)] TJ ET"), "application/pdf", "a.pdf"),
 "pdf-two-tj": (pdf_words("BT /F1 12 Tf 72 720 Td (It was Bob Bui) Tj (lder) Tj ET"), "application/pdf", "b.pdf"),
 "pdf-char-td": (pdf_words("BT /F1 12 Tf 72 720 Td (It was Bob ) Tj 60 0 Td (Builder) Tj ET"), "application/pdf", "c.pdf"),
 "pdf-softhyphen": (pdf_words("BT /F1 12 Tf 72 720 Td (It was Bob Buil\\255) Tj 0 -14 Td (der) Tj ET"), "application/pdf", "d.pdf"),
 "rtf-word": (RTF.encode(), "application/rtf", "statement.rtf"),
 "ics-folded": (ICS.encode(), "text/calendar", "invite.ics"),
 "mht-word": (MHT.encode(), "application/octet-stream", "statement.mht"),
 "svg-tspan": (SVG.encode(), "image/svg+xml", "note.svg"),
 "vcf-qp": (VCF.encode(), "text/vcard", "contact.vcf"),
 "tnef": (tnef(), "application/ms-tnef", "winmail.dat"),
 "csv-cells": (csv_cells(), "text/csv", "volunteers.csv"),
 "csv-semicolon-cp1252": (csv_semicolon_cp1252(), "text/csv", "volunteers.csv"),
 "utf16-chinese-nobom": (utf16_chinese_nobom(), "text/plain", "report.txt"),
 "zip": (nested_zip(), "application/zip", "files.zip"),
 "eml-qp-octet": (eml_qp_octet(), "application/octet-stream", "what.eml"),
 "html-css-content": (html_css_content(), "text/html", "s.html"),
 "html-bdo-rtl": (html_rtl(), "text/html", "s.html"),
}
def all_raw():
    out = {k: with_att(*v) for k, v in ATTS.items()}
    out["rfc2047-filename"] = rfc2047_filename()
    out["message-global-qp"] = message_global()
    return out
