"""Attacks on the committee's mailbox, end to end (real Dovecot + aiosmtpd + SQLite/PostgreSQL).

Each test plays one attack a reporter, a party, an outsider or an unlucky member's mail client can
mount, and asserts only what a user would notice: which mail arrives where, what its subject and
body say, and the case's state. The expected behaviour is the one DESIGN.md promises ("Committee
commands", "Authenticating commands", "Routing and recusal", "Mail hygiene", Data flow rules 3, 5, 7).
"""

from __future__ import annotations

import base64
import email
import email.policy
import io
import re
import unicodedata
import zipfile
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import func, select

from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, InboundMessage, OutboxMessage, Quarantine
from tests.harness import SECRET, count, delivery_report, parsed, report, text_of
from tests.mailers import got, latest, opened, personal_address, reply, step, the_case

REPORTER = "reporter@example.net"
ALICE, BOB, CAROL, SAM = "alice@example.org", "bob@example.org", "carol@example.org", "sam@example.org"
MEMBERS = (ALICE, BOB, CAROL)
PAT = "pat@example.net"


# ----- helpers ---------------------------------------------------------------------------------


def displayed(subject: str) -> str:
    """A subject as a mail client shows it: RFC 2047 decoded (policy.default) until it no longer
    changes, then NFKC-normalised (a fullwidth `！` reads as `!`)."""
    current = str(subject)
    for _ in range(10):
        header = email.message_from_bytes(b"Subject: " + current.encode("utf-8", "surrogateescape") + b"\n\n",
                                          policy=email.policy.default)["Subject"]
        decoded = " ".join(str(header).split())
        if decoded == current:
            break
        current = decoded
    return unicodedata.normalize("NFKC", current)


def shown_subject(record) -> str:
    return displayed(str(parsed(record)["Subject"]))


#: A word starting with `!` as the command grammar reads one: at the start, or after whitespace, `]` or `:`.
_BANG_WORD = re.compile(r"(?:^|(?<=[\s\]:]))![^\W\d_]")


def raw_report(subject: bytes, body: str = "Someone kept making comments after I asked them to stop.",
               sender: str = REPORTER, to: str = "conduct@example.org", extra: str = "") -> bytes:
    head = (
        f"From: Robin Reporter <{sender}>\r\n"
        f"To: {to}\r\n"
        f"Message-ID: {make_msgid(domain='example.net')}\r\n"
        "Date: Tue, 24 Nov 2026 08:59:00 +0000\r\n"
        f"{extra}"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
    ).encode()
    return b"Subject: " + subject + b"\r\n" + head + b"\r\n" + body.encode() + b"\r\n"


def with_pat(harness, app, alice_copy) -> None:
    step(harness, app, reply(alice_copy, ALICE, "!party reported pat@example.net Pat Person"))


# ----- 1. commands smuggled into the reporter's subject ----------------------------------------

SMUGGLED = [
    pytest.param(b"Incident =?utf-8?q?=21reply?=", id="encoded-word"),
    pytest.param(b"Incident =?utf-8?q?=3D=3Futf-8=3Fq=3F=3D21reply=3F=3D?=", id="nested-encoded-word"),
    pytest.param("Incident ！reply".encode(), id="fullwidth-utf8"),
    pytest.param(b"Incident=?utf-8?q?=21close?= silent x", id="encoded-word-inside-a-word"),
    pytest.param(b"Incident =?utf-8?q?=21spam?=", id="spam"),
    pytest.param(b"Incident =?utf-8?q?=21close?= silent x", id="close-silent"),
    # Stronger forms of the ones above: U+FE57 SMALL EXCLAMATION MARK is `!` after NFKC too, and a
    # nested encoded word may be base64 inside quoted-printable.
    pytest.param("Incident \ufe57reply".encode(), id="small-form-utf8"),
    pytest.param(b"Incident =?utf-8?q?=EF=B9=97spam?=", id="small-form-encoded-spam"),
    pytest.param(b"Incident =?utf-8?q?=3D=3Futf-8=3Fb=3FIWNsb3Nl=3F=3D?= silent x", id="nested-base64-close-silent"),
]


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("subject", SMUGGLED)
def test_commands_in_the_reporters_subject_never_act(harness, smtp_receiver, subject):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness, raw_report(subject))
    problems = []  # every effect the attack has, not only the first
    for member in MEMBERS:
        for mail in rx.to(member):
            shown = shown_subject(mail)
            if _BANG_WORD.search(shown):
                problems.append(f"{member} sees a command in the subject: {shown!r}")
    reporter_before = len(rx.to(REPORTER))
    # A member answers with a plain note, the subject exactly as their client shows it.
    shown = shown_subject(alice_copy)
    step(harness, app, reply(alice_copy, ALICE, body="Noted, I will call them tomorrow.", subject=f"Re: {shown}"))
    if len(rx.to(REPORTER)) != reporter_before:
        problems.append("a plain note on the reporter's subject sent mail to the reporter")
    case = the_case(app)
    if (case.status, case.spam) != ("new", False):
        problems.append(f"a plain note changed the case: status {case.status}, spam {case.spam}")
    # ... and with !ack added: acknowledged, and nothing else.
    step(harness, app, reply(alice_copy, ALICE, body="Taking this one.", subject=f"Re: {shown} !ack"))
    case = the_case(app)
    if (case.status, case.spam, case.closed_at is None, case.human_ack_at is not None) != ("acknowledged", False, True, True):
        problems.append(f"after !ack: status {case.status}, spam {case.spam}, closed_at {case.closed_at}")
    if len(rx.to(REPORTER)) != reporter_before:
        problems.append(f"{len(rx.to(REPORTER)) - reporter_before} mail(s) reached the reporter")
    assert not problems, "\n".join(problems)


# ----- 2. answering one's own !reply mail --------------------------------------------------------


def test_answering_ones_own_reply_mail_does_not_send_again(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    mine = reply(alice_copy, ALICE, "!reply", "Thank you for your report; we are looking into it. FIRST-ANSWER")
    step(harness, app, mine)
    assert len(rx.to(REPORTER)) == 2  # the acknowledgement and the answer
    own = email.message_from_bytes(mine, policy=email.policy.default)
    # Gmail: "reply" on a message in the Sent folder answers the original recipients.
    remark = EmailMessage()
    remark["From"] = ALICE
    remark["To"] = str(own["To"])
    remark["Subject"] = f"Re: {own['Subject']}"
    remark["Message-ID"] = make_msgid(domain="example.org")
    remark["In-Reply-To"] = own["Message-ID"]
    remark["References"] = own["Message-ID"]
    remark.set_content("REMARK-TO-MYSELF: I sent this before checking with Carol.\n\n"
                       "On Tue, Alice wrote:\n> Thank you for your report; we are looking into it. FIRST-ANSWER\n")
    step(harness, app, remark.as_bytes())
    assert len(rx.to(REPORTER)) == 2, "answering her own !reply mail sent the reporter another mail"
    for other in (BOB, CAROL):
        assert got(rx, other, "REMARK-TO-MYSELF"), f"{other} did not get the remark as a note"


# ----- 3. the reporter's subject must not reach parties ------------------------------------------

SUBJECT_WORDS = ("Robin", "accuses", "groping", "PyCon")


def test_parties_never_see_the_reporters_subject(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness, report(subject="Robin accuses Pat of groping at PyCon"))
    with_pat(harness, app, alice_copy)
    step(harness, app, reply(alice_copy, ALICE, "!send reported", "Please contact us about an incident at the conference."))
    step(harness, app, reply(alice_copy, ALICE, "!reply", "We have contacted the person concerned."))
    [to_pat] = rx.to(PAT)
    to_reporter = rx.to(REPORTER)[-1]
    for mail, who in ((to_pat, "reported person"), (to_reporter, "reporter")):
        shown = shown_subject(mail)
        assert re.fullmatch(rf"\[conduct #{case.ref}\] .+", shown), shown
        leaked = [w for w in SUBJECT_WORDS if w.lower() in shown.lower()]
        assert not leaked, f"the {who}'s mail repeats the reporter's subject: {shown!r}"


# ----- 4. plus-addresses that are not tokens are reports -----------------------------------------

ALIASES = [
    pytest.param({"to": "conduct+webform@example.org"}, id="to-webform"),
    pytest.param({"to": "Sprint attendees <sprint@example.net>", "extra": "Cc: conduct+sprint@example.org\r\n"}, id="cc-sprint"),
    pytest.param({"to": "Conduct+Report@example.org"}, id="mixed-case"),
]


@pytest.mark.parametrize("address", ALIASES)
def test_reports_to_a_plus_alias_become_cases(harness, smtp_receiver, address):
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, raw_report(b"Harassment at the sprint", sender="witness@example.net", **address))
    assert count(app, Case) == 1, "the report did not become a case"
    assert len(rx.to("witness@example.net")) == 1, "the reporter got no acknowledgement"
    for member in MEMBERS:
        assert len(rx.to(member)) == 1, f"{member} got no copy of the report"


# ----- 5. a non-party's follow-up naming a member ------------------------------------------------


def test_follow_up_from_a_non_party_naming_a_member_recuses_them(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    bob_before = len(rx.to(BOB))
    msg = EmailMessage()
    msg["From"] = "A Witness <witness@example.net>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: [conduct #{case.ref}] more about the sprint"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg.set_content("I saw it too. It was Bob Builder who kept making the comments. WITNESS-TEXT")
    step(harness, app, msg.as_bytes())
    assert got(rx, ALICE, "WITNESS-TEXT") and got(rx, CAROL, "WITNESS-TEXT")
    assert len(rx.to(BOB)) == bob_before, "Bob received the follow-up that names him"
    step(harness, app, reply(alice_copy, ALICE, body="LATER-NOTE: let us meet on Thursday."))
    assert got(rx, CAROL, "LATER-NOTE")
    assert len(rx.to(BOB)) == bob_before, "Bob still receives mail about the case"


# ----- 6. a member named only in an attachment ---------------------------------------------------


def _pdf(text: str) -> bytes:
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _docx(text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml",
                   '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                   '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/word/document.xml" '
                   'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
                   '</Types>')
        z.writestr("_rels/.rels",
                   '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                   '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
                   'officeDocument" Target="word/document.xml"/></Relationships>')
        z.writestr("word/_rels/document.xml.rels",
                   '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                   '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"></Relationships>')
        # The name split over two runs, as Word does after an edit.
        first, _, rest = text.partition(" ")
        z.writestr("word/document.xml",
                   '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                   '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>'
                   f'<w:p><w:r><w:t xml:space="preserve">{first} </w:t></w:r><w:r><w:t>{rest}</w:t></w:r></w:p>'
                   '</w:body></w:document>')
    return out.getvalue()


def _odt(text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text", compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml",
                   '<?xml version="1.0" encoding="UTF-8"?>'
                   '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
                   '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
                   '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
                   '</manifest:manifest>')
        z.writestr("content.xml",
                   '<?xml version="1.0" encoding="UTF-8"?>'
                   '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
                   'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
                   f'<office:body><office:text><text:p>{text}</text:p></office:text></office:body>'
                   '</office:document-content>')
    return out.getvalue()


def _forwarded_base64(text: str) -> EmailMessage:
    inner = EmailMessage()
    inner["From"] = "Someone <someone@example.net>"
    inner["To"] = "robin@example.net"
    inner["Subject"] = "what happened"
    inner.set_content(text)
    part = EmailMessage()
    part["Content-Type"] = "message/rfc822"
    part["Content-Disposition"] = "attachment"
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(inner.as_bytes()).decode("ascii"))
    return part


NAMING = "The person who did it was Bob Builder, at the registration desk."

ATTACHMENTS = [
    pytest.param(("statement.txt", "text/plain", NAMING.replace("Bob Builder", "Bob\xa0Builder").encode("latin-1")),
                 id="latin1-text-no-charset"),
    pytest.param(("people.csv", "text/csv", ("name,role\r\nBob Builder,volunteer\r\n").encode("utf-16")), id="utf16-csv"),
    pytest.param(("chat.json", "application/octet-stream", b'{"messages": [{"from": "Bob Builder", "text": "shut up"}]}'),
                 id="octet-stream-json"),
    pytest.param(("statement.html", "text/html", b"<html><body><p>It was Bob&nbsp;Builder.</p></body></html>"), id="html-nbsp"),
    pytest.param(("statement.pdf", "application/pdf", _pdf("It was Bob Builder")), id="pdf"),
    pytest.param(("statement.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                  _docx("Bob Builder did it")), id="docx"),
    pytest.param(("statement.odt", "application/vnd.oasis.opendocument.text", _odt("It was Bob Builder")), id="odt"),
    pytest.param(("Bob Builder timeline.txt", "text/plain", b"10:00 arrived\n10:20 the comments started\n"), id="file-name"),
    pytest.param("forwarded-base64", id="forwarded-rfc822-base64"),
]


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("attachment", ATTACHMENTS)
def test_member_named_only_in_an_attachment_gets_nothing(harness, smtp_receiver, attachment):
    rx = smtp_receiver
    msg = email.message_from_bytes(report(body="Please see the attached file for who it was."), policy=email.policy.default)
    if attachment == "forwarded-base64":
        msg.make_mixed()
        msg.attach(_forwarded_base64(NAMING))
    else:
        filename, ctype, content = attachment
        maintype, subtype = ctype.split("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    app, case, alice_copy = opened(harness, msg.as_bytes())
    assert rx.to(ALICE) and rx.to(CAROL)
    assert rx.to(BOB) == [], "Bob received the report that names him in an attachment"
    step(harness, app, reply(alice_copy, ALICE, body="LATER-NOTE: who is available on Thursday?"))
    assert rx.to(BOB) == [], "Bob receives later mail about the case"


def test_attachment_that_cannot_be_scanned_is_flagged(harness, smtp_receiver):
    png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
           b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")
    app, case, alice_copy = opened(harness, report(body="Screenshot attached.",
                                                   attachments=[("screenshot.png", "image/png", png)]))
    assert "not scanned" in text_of(alice_copy), "the copy does not say the image was not scanned for names"


# ----- 7. a plain-text stub in front of the HTML report ------------------------------------------


def test_html_alternative_behind_a_plain_stub_is_read(harness, smtp_receiver):
    rx = smtp_receiver
    msg = EmailMessage()
    msg["From"] = f"Robin Reporter <{REPORTER}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = "Report"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg.set_content("This message is best viewed in HTML.")
    msg.add_alternative("<html><body><p>At the sprint on Tuesday, Bob Builder mocked my accent "
                        "in front of everyone. HTML-ONLY-WORDS</p></body></html>", subtype="html")
    app, case, alice_copy = opened(harness, msg.as_bytes())
    assert rx.to(BOB) == [], "Bob received the report that names him in its HTML part"
    assert "HTML-ONLY-WORDS" in text_of(alice_copy), "Alice's copy lacks the report's HTML text"


# ----- 8. !new with a forwarded report carrying an attachment -----------------------------------


def test_new_case_from_a_forward_scans_the_forwards_attachments(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    forwarded = EmailMessage()
    forwarded["From"] = "Second Reporter <reporter2@example.net>"
    forwarded["To"] = ALICE
    forwarded["Subject"] = "Something happened at the meetup"
    forwarded["Message-ID"] = make_msgid(domain="example.net")
    forwarded.set_content("I wrote down what happened, see the attachment.")
    forwarded.add_attachment(b"He was Bob Builder, one of the organisers.\n", maintype="text", subtype="plain",
                             filename="what-happened.txt")
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = personal_address(ALICE)
    msg["Subject"] = "!new reporter2@example.net"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("This came to me directly.")
    msg.add_attachment(forwarded)
    step(harness, app, msg.as_bytes())
    assert count(app, Case) == 1, "no case was opened"
    assert rx.to(CAROL), "Carol got no copy of the forwarded report"
    assert rx.to(BOB) == [], "Bob received the forwarded report whose attachment names him"


# ----- 9. the reported person names every member --------------------------------------------------


def test_reported_person_cannot_recuse_the_committee(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    with_pat(harness, app, alice_copy)
    step(harness, app, reply(alice_copy, ALICE, "!send reported", "Please tell us your side of what happened at the sprint."))
    [to_pat] = rx.to(PAT)
    pats_text = "Alice Example, Bob Builder and Carol Chen are all biased against me. PAT-ANSWER"
    answer = reply(to_pat, PAT, body=pats_text, to="conduct@example.org")
    step(harness, app, answer)
    for member in MEMBERS:
        assert got(rx, member, "PAT-ANSWER"), f"{member} did not get the reported person's answer"
    lines = [line for line in text_of(latest(rx, ALICE, "PAT-ANSWER")).splitlines()
             if "Bob Builder" in line and "PAT-ANSWER" not in line]
    assert any(re.search(r"\bname[sd]\b|mention", line, re.IGNORECASE) for line in lines), \
        "the copy does not tell the committee whom the answer names"
    step(harness, app, reply(alice_copy, ALICE, body="NEXT-NOTE: Pat's answer changes nothing."))
    for member in (BOB, CAROL):
        assert got(rx, member, "NEXT-NOTE"), f"{member} was recused by the reported person"
    bob_copy = rx.to(BOB)[0]
    step(harness, app, reply(bob_copy, BOB, body="BOB-NOTE: agreed."))
    assert got(rx, ALICE, "BOB-NOTE"), "Alice was recused by the reported person"


# ----- 10. forged delivery reports --------------------------------------------------------------


def forged_dsn(row_id: int, recipient: str) -> bytes:
    """A DSN to the old, unsigned bounce address of a row."""
    return delivery_report(f"conduct+bounce-{row_id}@example.org", recipient)


def max_outbox(app) -> int:
    with app.sessions() as session:
        return int(session.scalar(select(func.max(OutboxMessage.id))) or 0)


def test_forged_bounces_cannot_cancel_mail_not_yet_sent(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    first = max_outbox(app) + 1  # the report's acknowledgement and copies will be the next rows
    recipients = [REPORTER, *MEMBERS]
    harness.deliver(report())
    for n, recipient in enumerate(recipients):
        harness.deliver(forged_dsn(first + n, recipient))
    run_once(app)
    run_once(app)
    assert count(app, Case) == 1
    assert len(rx.to(REPORTER)) == 1, "a forged bounce cancelled the acknowledgement"
    for member in MEMBERS:
        got = [m for m in rx.to(member) if "Alert" not in str(parsed(m)["Subject"])]
        assert len(got) == 1, f"a forged bounce cancelled {member}'s copy"


def test_forged_bounce_naming_another_recipient_changes_nothing(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, _ = opened(harness)
    before = len(rx.messages)
    with app.sessions() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        ids = [(r.id, r.status) for r in rows]
    assert all(status == "sent" for _, status in ids)
    for row_id, _ in ids:
        harness.deliver(forged_dsn(row_id, "someone-else@example.com"))
    run_once(app)
    run_once(app)
    assert count(app, OutboxMessage, OutboxMessage.status == "failed") == 0, "forged bounces marked our mail failed"
    extra = [f"{m.rcpt_tos[0]}: {parsed(m)['Subject']}" for m in rx.messages[before:]]
    assert extra == [], f"forged bounces caused mail: {extra}"


# ----- 11. signatures and phone numbers in !reply and !send --------------------------------------------------------


def test_outlook_web_signature_is_not_sent(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    original = parsed(alice_copy)
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = str(original["Reply-To"])
    msg["Subject"] = f"Re: {original['Subject']} !reply"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["In-Reply-To"] = original["Message-ID"]
    msg.set_content(
        '<html><body><div dir="ltr">Thank you for writing to us. We are looking into it. HTML-REPLY-TEXT</div>'
        '<div><br></div>'
        '<div id="Signature">Alice Example<br>Chair, Conduct Committee<br>+44 20 7946 0958<br>alice@example.org</div>'
        '<hr><div id="divRplyFwdMsg"><b>From:</b> conduct@example.org<br><b>Subject:</b> earlier</div>'
        '</body></html>', subtype="html")
    reporter_before = len(rx.to(REPORTER))
    step(harness, app, msg.as_bytes())
    assert len(rx.to(REPORTER)) == reporter_before + 1, "the !reply was not sent"
    sent = text_of(rx.to(REPORTER)[-1])
    assert "HTML-REPLY-TEXT" in sent
    for secret in ("+44 20 7946 0958", "7946", "alice@example.org", "Alice Example"):
        assert secret not in sent, f"the reporter's mail contains the member's signature ({secret!r})"


def test_send_ending_with_a_phone_number_is_refused(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    with_pat(harness, app, alice_copy)
    step(harness, app, reply(alice_copy, ALICE, "!send reported",
                             "Please get in touch with the committee about the sprint.\n\nAlice Example\n+44 20 7946 0958"))
    assert rx.to(PAT) == [], "a text ending with the member's phone number was sent to the reported person"
    refusal = text_of(latest(rx, ALICE))
    assert re.search(r"phone", refusal, re.IGNORECASE), "Alice's refusal does not mention the phone number"


# ----- 12. text written with a command is a note --------------------------------------------------


def test_text_written_with_ack_is_an_internal_note(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    step(harness, app, reply(alice_copy, ALICE, "!ack", "ACK-NOTE-TEXT: I know the venue staff, I will ask them."))
    assert the_case(app).status == "acknowledged"
    for other in (BOB, CAROL):
        assert got(rx, other, "ACK-NOTE-TEXT"), f"{other} never saw the text sent with !ack"
    confirmation = text_of(latest(rx, ALICE))
    assert "note" in confirmation.lower(), "the confirmation does not say the text was recorded as a note"


# ----- 13. acknowledgement rate limit on the canonical address ------------------------------------


@pytest.mark.timeout(120)
def test_acknowledgements_are_limited_per_canonical_address(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    senders = [f"victim+{n}@example.net" for n in range(1, 41)] + ["Victim+41@EXAMPLE.NET"]
    raws = [report(sender=s, subject="Urgent: please read") for s in senders]
    with harness.dovecot.client(harness.user) as client:
        for start in range(0, len(raws), 50):
            client.multiappend("INBOX", raws[start:start + 50])
    run_once(app)
    run_once(app)
    assert count(app, Case) == len(senders)
    acks = [m for m in rx.messages if any(re.fullmatch(r"victim(\+\d+)?@example\.net", r, re.IGNORECASE) for r in m.rcpt_tos)]
    assert len(acks) <= 5, f"{len(acks)} acknowledgements reached one person's mailbox"


# ----- 14. DMARC-authenticated !ack to plain conduct@ ---------------------------------------------


def test_dmarc_pass_from_trusted_server_authenticates_ack(harness, smtp_receiver):
    rx = smtp_receiver
    path = harness.config_path
    path.write_text(path.read_text().replace(f'token_secret = "{SECRET}"',
                                             f'token_secret = "{SECRET}"\ntrusted_authserv_id = "mx.example.org"'))
    app, case, alice_copy = opened(harness)
    reporter_before = len(rx.to(REPORTER))
    msg = EmailMessage()
    msg["Authentication-Results"] = "mx.example.org; dmarc=pass (p=none) header.from=example.org"
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: [conduct #{case.ref}] Harassment at the sprint !ack"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Seen, I am on it.")
    step(harness, app, msg.as_bytes())
    case = the_case(app)
    assert case.status == "acknowledged" and case.human_ack_at is not None, f"not acknowledged ({case.status})"
    assert len(rx.to(REPORTER)) == reporter_before


# ----- 15. malformed command about an unknown case on a personal token ----------------------------


def test_malformed_command_on_personal_token_is_refused_not_quarantined(harness, smtp_receiver):
    rx = smtp_receiver
    app = harness.app()
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = personal_address(ALICE)
    msg["Subject"] = "[conduct #2026-9999] !decide bogus"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Please record this.")
    harness.deliver(msg.as_bytes())
    for _ in range(3):  # as many passes as the intake's attempts
        run_once(app)
    assert count(app, Quarantine) == 0, "the message was quarantined"
    assert harness.folder_count("Quarantine") == 0
    with app.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        assert (row.status, row.error) == ("processed", None), (row.status, row.error)
    answers = [m for m in rx.to(ALICE) if "Alert" not in str(parsed(m)["Subject"])]
    assert len(answers) == 1, "Alice got no refusal"
    assert "!help" in text_of(answers[0])
