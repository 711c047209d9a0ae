"""Exchanges on one IMAPClient connection, below the mailbox: folder creation, one IDLE, message
sizes, large messages fetched in pieces, the new-mail check, the shutdown. Errors are left to
the caller (imap.py translates them into MailboxUnavailable)."""

from __future__ import annotations

import imaplib
import io
import logging
import socket
import time
from collections.abc import Callable, Sequence

from imapclient import IMAPClient

logger = logging.getLogger(__name__)

#: The size of one piece (BODY.PEEK[]<offset.length>).
FETCH_PIECE_BYTES = 1024 * 1024


def ensure_folder(client: IMAPClient, name: str) -> None:
    """Create and subscribe the folder unless it exists (or another client just made it)."""
    if client.folder_exists(name):
        return
    try:
        client.create_folder(name)
    except imaplib.IMAP4.error:
        # Another client may have created it a moment ago.
        if not client.folder_exists(name):
            raise
    client.subscribe_folder(name)


def idle_once(client: IMAPClient, seconds: float) -> bool:
    """One IDLE of at most `seconds`; True if it reported EXISTS or RECENT."""
    client.idle()
    found = False
    end = time.monotonic() + seconds
    try:
        while not found and (left := end - time.monotonic()) > 0:
            responses = client.idle_check(timeout=left)
            found = has_new_mail(responses)
            if not responses and end - time.monotonic() > 0.05:
                # Woken with nothing parsed: imapclient swallows EOF here. Ending IDLE
                # below surfaces a dead connection as an error.
                break
    finally:
        _, responses = client.idle_done()
    return found or has_new_mail(responses)


def message_sizes(client: IMAPClient, uids: Sequence[int]) -> dict[int, int]:
    """RFC822.SIZE by UID, in the order asked; UIDs no longer there are absent."""
    wanted = list(dict.fromkeys(int(uid) for uid in uids))
    data = client.fetch(wanted, ["RFC822.SIZE"])
    return {uid: int(data[uid][b"RFC822.SIZE"]) for uid in wanted if b"RFC822.SIZE" in data.get(uid, {})}


def fetch_large(client: IMAPClient, uid: int, size: int) -> bytes | None:
    """One message fetched in pieces into one buffer of its size, or None if it is gone."""
    buffer = io.BytesIO()
    # Sized once up front: grown piece by piece it would be copied as it grows.
    buffer.seek(size - 1)
    buffer.write(b"\0")
    buffer.seek(0)
    if not fetch_pieces(client, uid, size, buffer.write):
        return None
    buffer.truncate()  # when the message was shorter than its RFC822.SIZE
    return buffer.getvalue()  # the buffer's own bytes object, not a copy


def fetch_pieces(client: IMAPClient, uid: int, size: int, write: Callable[[bytes], object]) -> bool:
    """Hand one message to `write` in pieces (BODY.PEEK[]<offset.length>: never sets \\Seen);
    False if it is no longer there. The end is a short piece, whatever RFC822.SIZE said."""
    offset = 0
    while True:
        item = client.fetch([uid], [f"BODY.PEEK[]<{offset}.{FETCH_PIECE_BYTES}>"]).get(uid, {})
        key = f"BODY[]<{offset}>".encode()
        if key not in item:
            return False  # expunged meanwhile
        piece = item[key] or b""
        write(piece)
        offset += len(piece)
        if len(piece) < FETCH_PIECE_BYTES:
            return True
        if offset > 2 * size + FETCH_PIECE_BYTES:
            raise imaplib.IMAP4.error("message larger than its RFC822.SIZE")


def has_new_mail(responses: Sequence[object]) -> bool:
    for resp in responses:
        if isinstance(resp, tuple) and len(resp) >= 2 and resp[1] in (b"EXISTS", b"RECENT"):
            if resp[1] == b"RECENT" and resp[0] == 0:
                continue
            return True
        if isinstance(resp, tuple) and resp and resp[0] == b"BYE":
            raise imaplib.IMAP4.abort("server said BYE")
    return False


def interrupt(client: IMAPClient) -> None:
    """Wake a thread blocked reading from `client` (in IDLE): shutting the socket down without
    closing it is safe from another thread; the blocked read sees end-of-file and its thread
    drops the connection itself."""
    try:
        client.socket().shutdown(socket.SHUT_RDWR)
    except (OSError, AttributeError):
        pass  # already closed


def shutdown(client: IMAPClient) -> None:
    """Close the socket without talking to the server."""
    try:
        client.shutdown()
    except (OSError, imaplib.IMAP4.error):
        pass
    except Exception:  # a half-open connection can fail in odd ways; it is going away anyway
        logger.debug("IMAP shutdown error ignored")

