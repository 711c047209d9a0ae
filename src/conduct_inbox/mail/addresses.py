"""The correspondent behind an address: one person's many spellings of their own mailbox."""

from __future__ import annotations

#: Providers that ignore dots in the local part (and their second domain name).
_DOTLESS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def canonical_address(address: str) -> str:
    """The correspondent an address belongs to: lower case, the `+tag` removed from the local part
    (`Victim+7@Example.NET` is `victim@example.net`), a trailing dot of the domain dropped, and
    dots ignored where the provider ignores them (`v.ictim@gmail.com` is `victim@gmail.com`).
    Rate limits count by it; parties are recognised by it."""
    local, at, domain = address.strip().lower().rpartition("@")
    if not at:
        return domain
    domain = domain.rstrip(".")
    base = local.split("+", 1)[0] or local
    if domain in _DOTLESS:
        base, domain = base.replace(".", "") or base, _DOTLESS[domain]
    return f"{base}@{domain}"
