"""Reply tokens: the HMAC in `conduct+<token>@domain` that proves a command came from a member.

A token is one key-id character followed by 20 base32 characters (100 bits) of
HMAC-SHA-256 over a length-prefixed encoding of (purpose, case reference or "",
member address lowercased, key id). Lowercase base32 survives mail systems that fold
case. The key id is derived from the secret itself, so rotating secrets needs no
extra configuration: the checker tries the listed secrets whose id matches.

Purposes: "case" (commands on one case) and "personal" (case-less commands such as
`!help`, `!list`, `!new`); the purpose is inside the MAC, so a personal token never
passes as a case token. A valid token proves only that we minted it for that member
and case: whether the member is still on the roster and not recused is the caller's
check, as is whether `From:` is that member.

Bounce (VERP) addresses: every outgoing mail's envelope sender is
`<local>+bounce-<row id>-<mac>@domain`, the MAC 20 lowercase base32 characters (100 bits) of
HMAC-SHA-256 over a tagged, length-prefixed encoding of the outbox row id and that row's
Message-ID, so a delivery report finds its row and nobody can forge one for a row: `bounce_row`
checks it against the current and the previous secret (rotation). The Message-ID (random, one per
mail) is inside the MAC because a row id alone can be issued twice: after a database is restored
from a backup, the ids handed out since the backup are handed out again, to other mail, and a late
delivery report for the lost mail must not fail the new one. Bounce addresses are never reply
tokens (`tokens_in`).
"""

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from email.utils import parseaddr

PURPOSES = frozenset({"case", "personal"})
MAC_CHARS = 20  # 20 base32 characters = 100 bits (DESIGN asks for at least 80)
TOKEN_LENGTH = 1 + MAC_CHARS
MIN_SECRET_BYTES = 16
MAX_LOCAL_PART = 64  # RFC 5321 limit on the local part

_TOKEN_RE = re.compile(r"[a-z2-7]{%d}" % TOKEN_LENGTH)
#: Bounce local parts, signed (ours) or not (old, or forged): never taken for reply tokens.
_VERP_RE = re.compile(r"bounce-\d+(?:-[a-z0-9]*)?", re.IGNORECASE)
_DOMAIN_TAG = b"conduct-inbox/reply-token/v1"
BOUNCE_MAC_CHARS = 20  # 100 bits
MAX_ROW_DIGITS = 18
_BOUNCE_RE = re.compile(r"bounce-([1-9][0-9]{0,%d})-([a-z2-7]{%d})" % (MAX_ROW_DIGITS - 1, BOUNCE_MAC_CHARS))
_BOUNCE_TAG = b"conduct-inbox/verp/v2"


def _b32(data: bytes) -> str:
    """Lowercase base32 without padding."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def key_id(secret: bytes) -> str:
    """The one-character id of a secret, so a token names the secret that made it."""
    return _b32(hashlib.sha256(b"kid" + secret).digest())[0]


def _check_secret(secret: bytes) -> None:
    """Refuse secrets too short to make unguessable tokens (a configuration mistake)."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError("token secret must be at least %d bytes" % MIN_SECRET_BYTES)


def _check_purpose(purpose: str, case_ref: str | None) -> None:
    """Refuse purpose/case combinations that are programming errors."""
    if purpose not in PURPOSES:
        raise ValueError("unknown token purpose")
    if purpose == "personal" and case_ref is not None:
        raise ValueError("a personal token is not bound to a case")


def _field(value: str) -> bytes:
    """Length-prefixed field, so no two tuples encode to the same bytes."""
    raw = value.encode("utf-8")
    return len(raw).to_bytes(4, "big") + raw


def _mac(secret: bytes, purpose: str, case_ref: str, member: str) -> str:
    """The token for already-validated inputs."""
    kid = key_id(secret)
    message = _DOMAIN_TAG + b"".join(
        _field(v) for v in (purpose, case_ref, member.strip().lower(), kid)
    )
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return kid + _b32(digest[:15])[:MAC_CHARS]


def mint(secret: bytes, purpose: str, case_ref: str | None, member: str) -> str:
    """Token for `member` on `case_ref` ("case") or on no case ("personal", case_ref None)."""
    _check_secret(secret)
    _check_purpose(purpose, case_ref)
    if purpose == "case" and not case_ref:
        raise ValueError("a case token needs a case reference")
    return _mac(secret, purpose, case_ref or "", member)


def check(
    token: str,
    purpose: str,
    case_ref: str | None,
    member: str,
    secrets: Sequence[bytes],
) -> bool:
    """True if `token` was minted by one of `secrets` (current first) for exactly these inputs.

    Case-insensitive, since mail systems may fold the local part's case. Roster
    membership and recusal are not checked here: the caller must do that.
    """
    _check_purpose(purpose, case_ref)
    token = token.strip().lower()
    if not _TOKEN_RE.fullmatch(token) or (purpose == "case" and not case_ref):
        return False
    ok = False
    for secret in secrets:
        _check_secret(secret)
        if key_id(secret) != token[0]:
            continue
        expected = _mac(secret, purpose, case_ref or "", member)
        # No early return: the time taken should not depend on which secret matched.
        ok |= hmac.compare_digest(expected, token)
    return ok


def reply_address(local_part: str, domain: str, token: str) -> str:
    """`local_part+token@domain`, the Reply-To that carries a token back to us."""
    if not local_part or any(c in local_part for c in "+@ "):
        raise ValueError("local part must be non-empty, without '+', '@' or spaces")
    if not token or any(c in token for c in "+@ "):
        raise ValueError("token must be non-empty, without '+', '@' or spaces")
    local = "%s+%s" % (local_part, token)
    if len(local) > MAX_LOCAL_PART:
        raise ValueError("local part with token exceeds %d characters" % MAX_LOCAL_PART)
    return "%s@%s" % (local, domain)


def tokens_in(addresses: Iterable[str], local_part: str, domain: str) -> list[str]:
    """The +suffixes (lowercased, unique, in order) of addresses to `local_part@domain`.

    Accepts bare addresses or `Name <addr>` forms; local part and domain compare
    case-insensitively. VERP bounce addresses (`+bounce-<n>`) are not tokens.
    """
    prefix = local_part.lower() + "+"
    want_domain = domain.lower().rstrip(".")
    found: list[str] = []
    for item in addresses:
        address = parseaddr(item)[1] if "<" in item else item.strip()
        local, at, dom = address.rpartition("@")
        if not at or dom.lower().rstrip(".") != want_domain:
            continue
        local = local.lower()
        if not local.startswith(prefix):
            continue
        suffix = local[len(prefix):]
        if suffix and not _VERP_RE.fullmatch(suffix) and suffix not in found:
            found.append(suffix)
    return found


def _bounce_mac(secret: bytes, row_id: int, message_id: str) -> str:
    fields = _field("outbox-row") + _field(str(row_id)) + _field(message_id.strip().strip("<>").lower())
    digest = hmac.new(secret, _BOUNCE_TAG + fields, hashlib.sha256).digest()
    return _b32(digest[:15])[:BOUNCE_MAC_CHARS]


def bounce_address(local_part: str, domain: str, secret: bytes, row_id: int, message_id: str) -> str:
    """The signed VERP envelope sender of outbox row `row_id` holding the mail `message_id`:
    `local+bounce-<row>-<mac>@domain`."""
    _check_secret(secret)
    if not 0 < row_id < 10**MAX_ROW_DIGITS:
        raise ValueError("outbox row id out of range")
    return reply_address(local_part, domain, "bounce-%d-%s" % (row_id, _bounce_mac(secret, row_id, message_id)))


def bounce_row(suffix: str, secrets: Sequence[bytes], message_id_of: Callable[[int], str | None]) -> int | None:
    """The outbox row a `bounce-<row>-<mac>` suffix names, if one of `secrets` signed it for the mail
    that row holds now (`message_id_of(row)`: its Message-ID, None when there is no such row); else None.

    Case-insensitive (mail systems may fold case); empty secrets (none configured) are skipped,
    so without a secret no bounce address checks.
    """
    match = _BOUNCE_RE.fullmatch(suffix.strip().lower())
    if match is None or not any(secrets):
        return None
    row_id = int(match.group(1))
    message_id = message_id_of(row_id)
    if message_id is None:
        return None
    ok = False
    for secret in secrets:
        if not secret:
            continue
        _check_secret(secret)
        # No early return: the time taken should not depend on which secret matched.
        ok |= hmac.compare_digest(_bounce_mac(secret, row_id, message_id), match.group(2))
    return row_id if ok else None


def bounce_row_in(
    addresses: Iterable[str], local_part: str, domain: str, secrets: Sequence[bytes], message_id_of: Callable[[int], str | None]
) -> int | None:
    """The outbox row of the first correctly signed bounce address to `local_part@domain`, if any."""
    prefix = local_part.lower() + "+"
    want_domain = domain.lower().rstrip(".")
    for item in addresses:
        address = parseaddr(item)[1] if "<" in item else item.strip()
        local, at, dom = address.rpartition("@")
        if not at or dom.lower().rstrip(".") != want_domain or not local.lower().startswith(prefix):
            continue
        row_id = bounce_row(local[len(prefix):], secrets, message_id_of)
        if row_id is not None:
            return row_id
    return None
