"""Threading headers of committee mail about one case, so that Gmail, Outlook and Thunderbird
show a case as one conversation: a stable root Message-ID per case that every committee mail
about it references, and Outlook's Thread-Index, whose 22-byte header names the conversation.
Pure: nothing here is sent to a reporter or party (their threads hold only mail they have seen).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone

#: 100 ns intervals from 1601-01-01 (Windows FILETIME) to the Unix epoch.
_FILETIME_EPOCH = 116444736000000000


def case_root_id(ref: str, domain: str, salt: str) -> str:
    """The stable root Message-ID (without <>) of the committee's conversation about case `ref`."""
    digest = hashlib.sha256(f"{salt}\0{ref}".encode()).hexdigest()[:20]
    return f"case-{ref}.{digest}@{domain}"


def thread_index(root_id: str, opened: datetime) -> str:
    """Outlook's Thread-Index for every mail of the conversation rooted at `root_id`: the
    22-byte header block (reserved byte, top 5 bytes of the FILETIME, 16-byte GUID), the same
    for every message, so Outlook files them all under one conversation."""
    at = opened.astimezone(timezone.utc)
    filetime = int((at - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds() * 10_000_000) + _FILETIME_EPOCH
    head = b"\x01" + filetime.to_bytes(8, "big")[:5] + hashlib.sha256(root_id.encode()).digest()[:16]
    return base64.b64encode(head).decode("ascii")
