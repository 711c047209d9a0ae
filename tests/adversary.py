"""Mail an adversary writes to conduct@: hidden commands in subjects, member names hidden in
attachments, encodings and alternatives. Pure builders (raw bytes), shared by the recusal property
test and the deterministic regressions it found (tests/e2e/test_attack_regressions.py).

Every builder returns exactly the bytes a hostile sender's mail server would hand over; nothing
here talks to the daemon.
"""

from __future__ import annotations

import base64
import json
from email.message import EmailMessage
from email.utils import make_msgid

CYRILLIC_A, CYRILLIC_O, CYRILLIC_ES = "\u0410", "\u043e", "\u0421"

#: Ways a message can name each member: (text, latin-1 encodable). Every one of them names the
#: member by DESIGN "Routing and recusal" (names case- and accent-insensitively, possessives,
#: across line breaks, by confusable skeleton; single-word aliases case-sensitively; addresses
#: with or without +tag).
NAMINGS: dict[str, list[str]] = {
    "alice@example.org": ["Alice Example", "alice example's", "Ali", "alice@example.org", "ALICE+events@Example.org",
                          f"{CYRILLIC_A}lice Example", "Alice\nExample", "Alicé Exâmple"],
    "bob@example.org": ["Bob Builder", "BOB BUILDER's", "bob@example.org", f"B{CYRILLIC_O}b Builder", "Bób Builder",
                        "Bob\n  Builder"],
    "carol@example.org": ["Carol Chen", "CC", "carol@example.org", "Carol Chén", f"{CYRILLIC_ES}arol Chen",
                          "carol+cc@example.org"],
}
SHORT_NAMES = {"alice@example.org": "Alice Example", "bob@example.org": "Bob Builder", "carol@example.org": "Carol Chen"}

#: Where the naming stands in the mail.
CARRIERS = (
    "body",                # plain text body
    "subject",             # the subject
    "latin1_attachment",   # text/plain attachment, latin-1 bytes, no charset
    "utf16_attachment",    # UTF-16 with BOM, declared text/plain without charset or octet-stream
    "json_octet",          # a chat export: application/octet-stream JSON
    "html_attachment",     # text/html attachment, &nbsp; between the words of the name
    "filename_only",       # only the attachment's file name names the member (an image)
    "forwarded_base64",    # message/rfc822 with Content-Transfer-Encoding: base64
    "alternative_html",    # multipart/alternative: a plain stub, the naming in the HTML
)

#: Commands an adversary hides in a subject, and how.
HIDDEN_COMMANDS = ("!reply", "!close silent x", "!spam", "!send reported", "!title Hijacked by the sender", "!history",
                   "!merge 2026-0001")
HIDINGS = ("q_word", "b_word", "nested", "nested3", "glued", "fullwidth", "small", "after_bracket")

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _b_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def _q_word(text: str) -> str:
    out = []
    for ch in text.encode():
        c = chr(ch)
        if c.isalnum():
            out.append(c)
        elif c == " ":
            out.append("_")
        else:
            out.append(f"={ch:02X}")
    return "=?utf-8?q?" + "".join(out) + "?="


def hide_command(command: str, how: str) -> str:
    """`command` as header text (ASCII, may hold encoded words) that a mail client shows as the command."""
    if how == "q_word":
        return "Update " + _q_word(command)
    if how == "b_word":
        return "Update " + _b_word(command)
    if how == "nested":  # an encoded word whose text is another encoded word
        return "Update " + _b_word(_q_word(command))
    if how == "nested3":
        return "Update " + _b_word(_q_word(_b_word(command)))
    if how == "glued":  # glued inside a word: "Help" + "!spam" + "me"
        return "Help" + _b_word(command) + "me"
    if how == "fullwidth":
        return "Update " + _b_word(command.replace("!", "\uff01"))
    if how == "small":
        return "Update " + _b_word(command.replace("!", "\ufe57"))
    if how == "after_bracket":
        return "[urgent]" + _q_word(command)
    raise ValueError(how)


def header_value(text: str) -> str:
    """Plain text as a header value: ASCII as is, anything else as one encoded word."""
    return text if text.isascii() and "\n" not in text else _b_word(text.replace("\n", " "))


def _with_subject(raw: bytes, subject: str) -> bytes:
    """Put a raw (pre-encoded) subject into a built message, bypassing the email package's folding."""
    head, sep, body = raw.partition(b"\n\n")
    lines = [ln for ln in head.split(b"\n") if not ln.lower().startswith(b"subject:")]
    lines.insert(1, b"Subject: " + subject.encode("ascii"))
    return b"\n".join(lines) + sep + body


def _html(naming: str) -> str:
    shown = naming.replace("&", "&amp;").replace("<", "&lt;").replace("\n", " ").replace(" ", "&nbsp;")
    return f"<html><body><p>It&nbsp;was&nbsp;{shown}&nbsp;who did it.</p></body></html>"


def _forwarded_base64(naming: str) -> bytes:
    inner = EmailMessage()
    inner["From"] = "Someone Else <someone@example.com>"
    inner["To"] = "reporter@example.net"
    inner["Subject"] = "what they said"
    inner["Message-ID"] = make_msgid(domain="example.com")
    inner.set_content(f"Just so you know: {naming} was there.\n")
    encoded = base64.encodebytes(inner.as_bytes()).decode()
    return (
        "Content-Type: message/rfc822\nContent-Disposition: attachment\nContent-Transfer-Encoding: base64\n\n"
        + encoded
    ).encode()


def mail(
    *,
    sender: str,
    name: str,
    subject: str,
    body: str,
    carrier: str | None = None,
    naming: str = "",
    to: str = "conduct@example.org",
    in_reply_to: str | None = None,
    variant: int = 0,
) -> bytes:
    """A mail from `sender`; if `carrier` is given, `naming` stands there (see CARRIERS).

    `subject` is header text as written on the wire (may hold encoded words; ASCII)."""
    msg = EmailMessage()
    msg["From"] = f"{header_value(name)} <{sender}>"
    msg["To"] = to
    msg["Subject"] = "PLACEHOLDER"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg["Date"] = "Tue, 24 Nov 2026 08:59:00 +0000"
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    forwarded: bytes | None = None
    if carrier == "body":
        body = f"{body}\nIt was {naming} who did it."
    elif carrier == "subject":
        subject = f"{subject} {header_value('about ' + naming.replace(chr(10), ' '))}"
    if carrier == "alternative_html":
        msg.set_content("Please see the HTML version of this message.")
        msg.add_alternative(_html(naming), subtype="html")
        # The plain stub says nothing; the report body is in the HTML only.
    else:
        msg.set_content(body)
    if carrier == "latin1_attachment":
        text = f"Témoignage: {naming} était là, à côté.\n"
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:  # a Cyrillic look-alike has no latin-1 byte: the sender's client wrote UTF-8
            data = text.encode("utf-8")
        msg.add_attachment(data, maintype="text", subtype="plain", filename="temoignage.txt", cte="8bit" if variant % 2 else "base64")
        # no charset parameter: set_content for bytes adds none, but the email package may; drop it
        del msg.get_payload()[-1]["Content-Type"]
        msg.get_payload()[-1]["Content-Type"] = 'text/plain; name="temoignage.txt"'
    elif carrier == "utf16_attachment":
        data = "\ufeff".encode("utf-16-le") + f"Chat log\nIt was {naming} who did it.\n".encode("utf-16-le")
        maintype, subtype = ("text", "plain") if variant % 2 else ("application", "octet-stream")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename="chat.txt")
    elif carrier == "json_octet":
        export = {"messages": [{"author": "someone", "text": "hi"}, {"author": "someone", "text": f"ask {naming} about it"}]}
        msg.add_attachment(json.dumps(export, ensure_ascii=False).encode(), maintype="application", subtype="octet-stream",
                           filename="export.json")
    elif carrier == "html_attachment":
        msg.add_attachment(_html(naming).encode(), maintype="text", subtype="html", filename="page.html")
    elif carrier == "filename_only":
        msg.add_attachment(PNG, maintype="image", subtype="png", filename=f"{naming.replace(chr(10), ' ')} at the party.png")
    elif carrier == "forwarded_base64":
        forwarded = _forwarded_base64(naming)
        msg.add_attachment(b"placeholder", maintype="application", subtype="octet-stream", filename="x.bin")
    raw = msg.as_bytes().replace(b"\r\n", b"\n")
    if forwarded is not None:
        raw = _swap_last_part(raw, forwarded)
    return _with_subject(raw, subject)


def _swap_last_part(raw: bytes, part: bytes) -> bytes:
    """Replace the last MIME part of a multipart message (the placeholder) by `part` verbatim."""
    head, _, _ = raw.partition(b"\n\n")
    boundary = next(ln for ln in head.split(b"\n") if b"boundary=" in ln).split(b"boundary=")[1].strip().strip(b'"')
    delimiter = b"\n--" + boundary
    pieces = raw.split(delimiter)
    # pieces: preamble, part1, ..., partN (the placeholder), "--\n" (closing)
    pieces[-2] = b"\n" + part.rstrip(b"\n")
    return delimiter.join(pieces)
