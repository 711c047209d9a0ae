"""Attachments that are themselves MIME: a mail message (.eml) or a MIME document (MHT web archive)."""

from __future__ import annotations

import re

from conduct_inbox.mail.extract.base import _ext

_HEADER_LINE = re.compile(rb"[!-9;-~]{1,76}:[^\n]*\r?\n(?:[ \t][^\n]*\r?\n)*")
_MAIL_FIELDS = frozenset({b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"received", b"mime-version",
                          b"return-path", b"delivered-to", b"reply-to", b"sender", b"content-type"})


def looks_like_message(data: bytes, filename: str | None) -> bool:
    """Whether an attachment is a mail message (an .eml sent as octet-stream or text): a header
    block of mail fields ending in an empty line."""
    head = data[:64 * 1024]
    if head.startswith(b"From "):  # an mbox separator
        head = head[head.find(b"\n") + 1 :]
    pos, fields = 0, set()
    while pos < len(head) and (m := _HEADER_LINE.match(head, pos)) is not None:
        fields.add(m.group(0).split(b":", 1)[0].lower())
        pos = m.end()
    ended = head.startswith(b"\n", pos) or head.startswith(b"\r\n", pos) or pos == len(data)
    wanted = 1 if _ext(filename) == ".eml" else 2
    return ended and pos > 0 and len(fields & _MAIL_FIELDS) >= wanted and (b"from" in fields or b"subject" in fields)


_WEB_ARCHIVE_TYPES = ("multipart/related", "application/x-mimearchive", "message/rfc822", "application/x-mht")
_WEB_ARCHIVE_EXTS = (".mht", ".mhtml")
_MULTIPART_TYPE = re.compile(rb"^content-type:\s*multipart/", re.IGNORECASE | re.MULTILINE)


def looks_like_mime_document(data: bytes, ctype: str, filename: str | None) -> bool:
    """Whether an attachment is a MIME document that is not a mail message: a header block with
    a multipart Content-Type (an MHT/MHTML web archive as Word and browsers save it), whatever
    its declared type or file name."""
    head = data[:64 * 1024]
    pos = 0
    while pos < len(head) and (m := _HEADER_LINE.match(head, pos)) is not None:
        pos = m.end()
    if pos == 0 or not (head.startswith(b"\n", pos) or head.startswith(b"\r\n", pos)):
        return False
    if _MULTIPART_TYPE.search(head[:pos]):
        return True
    return ctype in _WEB_ARCHIVE_TYPES or _ext(filename) in _WEB_ARCHIVE_EXTS
