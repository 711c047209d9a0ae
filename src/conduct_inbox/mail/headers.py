"""Reading the header fields of a parsed message: decoded header items, addresses (with the
real author behind a mailing list's DMARC rewrite), message-ids, the Date, and the case
reference in a subject. Raw compat32 values are decoded here with linear-time code and
bounded lengths; nothing raises, problems are recorded in `Defects`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from conduct_inbox.mail.charsets import (
    CONTROL_CHARS,
    Defects,
    clean_text,
    decode_words,
    fold_spaces,
    header_text,
    raw_to_text,
    unfold,
)
from conduct_inbox.mail.limits import _ADDRESS_LIMIT, _HEADER_LIMIT

_MSGID = re.compile(r"<([^<>\s]{1,998})>")
_BARE_ID = re.compile(r"[^<>\s]{1,998}@[^<>\s]{1,998}")
_VIA = re.compile(r"^['\"]?(.{1,200}?)['\"]?\s+via\s+\S", re.IGNORECASE)
_ADDR_SPEC = re.compile(r"[^\s<>,;:\"()\[\]@]{1,64}@[^\s<>,;:\"()\[\]@]{1,255}")


def _header_items(msg: Message, defects: Defects) -> list[tuple[str, str]]:
    items = []
    for name, value in msg.raw_items():
        name = CONTROL_CHARS.sub("", raw_to_text(str(name), defects)).strip()[:200]
        items.append((name, header_text(str(value) if value is not None else "", defects, _HEADER_LIMIT)))
    return items


def _raw_values(msg: Message, name: str, defects: Defects, limit: int = _ADDRESS_LIMIT) -> list[str]:
    out = []
    for value in msg.get_all(name) or []:
        text = unfold(raw_to_text(str(value), defects))
        if len(text) > limit:
            defects.add("oversized header truncated")
            text = text[:limit]
        out.append(text)
    return out


def _addresses(values: list[str], defects: Defects) -> list[tuple[str | None, str]]:
    """(display name, lowercased addr-spec) pairs; names are RFC 2047 decoded after parsing."""
    found: list[tuple[str | None, str]] = []
    for value in values:
        value = CONTROL_CHARS.sub(" ", value)
        try:
            pairs = getaddresses([value])
        except (RecursionError, ValueError, IndexError):
            defects.add("unparseable address header")
            pairs = [("", m.group(0)) for m in _ADDR_SPEC.finditer(value)]
        for name, addr in pairs:
            addr = addr.strip().lower()
            if not addr or any(c.isspace() or c in "<>" for c in addr) or len(addr) > 320:
                continue
            decoded = fold_spaces(clean_text(decode_words(name, defects))) if name else ""
            found.append((decoded or None, addr))
    return found


def _first(pairs: list[tuple[str | None, str]]) -> tuple[str | None, str | None]:
    return pairs[0] if pairs else (None, None)


def _message_ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    ids = _MSGID.findall(value)
    if not ids:
        ids = _BARE_ID.findall(value)
    return tuple(dict.fromkeys(ids))


def _date(value: str | None, defects: Defects) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.add("invalid Date header")
        return None
    if parsed is None:
        defects.add("invalid Date header")
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def case_ref_in(subject: str, case_tag: str) -> str | None:
    pattern = re.compile(r"\[\s*" + re.escape(case_tag) + r"\s*#\s*([0-9]{4}-[0-9]{1,8})\s*\]", re.IGNORECASE)
    m = pattern.search(subject[:2000])
    return m.group(1) if m else None


def _reporter(
    msg: Message, from_: tuple[str | None, str | None], reply_to: tuple[str | None, str | None], defects: Defects
) -> tuple[str | None, str | None]:
    """The person who wrote it: a group that rewrote From (DMARC) keeps them in X-Original-From or Reply-To."""
    original = _first(_addresses(_raw_values(msg, "X-Original-From", defects), defects))
    if original[1]:
        return original[1], original[0]
    from_name, from_addr = from_
    via = _VIA.match(from_name or "")
    if via and reply_to[1] and reply_to[1] != from_addr:
        return reply_to[1], reply_to[0] or via.group(1).strip("'\" ") or None
    return from_addr, from_name
