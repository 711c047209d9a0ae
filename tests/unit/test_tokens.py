"""Reply tokens: only the member we wrote to, on that case, can act through a token."""

import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduct_inbox.core.tokens import check, key_id, mint, reply_address, tokens_in

CURRENT = hashlib.sha256(b"current secret").digest()
PREVIOUS = hashlib.sha256(b"previous secret").digest()
STRANGER = hashlib.sha256(b"someone else's secret").digest()
ALICE = "alice@example.org"
BOB = "bob@example.org"
REF = "2026-0007"


def test_a_token_checks_for_its_member_and_case() -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    assert check(token, "case", REF, ALICE, [CURRENT])


def test_tokens_are_lowercase_base32_with_at_least_80_bits() -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    assert re.fullmatch(r"[a-z2-7]+", token)
    assert token[0] == key_id(CURRENT)
    assert (len(token) - 1) * 5 >= 80  # after the key-id character; 20 chars = 100 bits
    assert len(token) == 21


def test_tokens_differ_per_member_case_purpose_and_secret() -> None:
    tokens = {
        mint(CURRENT, "case", REF, ALICE),
        mint(CURRENT, "case", REF, BOB),
        mint(CURRENT, "case", "2026-0008", ALICE),
        mint(CURRENT, "personal", None, ALICE),
        mint(PREVIOUS, "case", REF, ALICE),
    }
    assert len(tokens) == 5


def test_minting_is_deterministic_and_ignores_address_case() -> None:
    assert mint(CURRENT, "case", REF, ALICE) == mint(CURRENT, "case", REF, " Alice@Example.ORG ")
    token = mint(CURRENT, "case", REF, ALICE)
    assert check(token, "case", REF, "ALICE@example.org", [CURRENT])


@pytest.mark.parametrize(
    ("purpose", "case_ref", "member"),
    [
        ("case", REF, BOB),
        ("case", "2026-0008", ALICE),
        ("case", "2026-00070", ALICE),
        ("case", None, ALICE),
        ("personal", None, ALICE),
    ],
)
def test_a_case_token_fails_for_any_other_member_case_or_purpose(
    purpose: str, case_ref: str | None, member: str
) -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    assert not check(token, purpose, case_ref, member, [CURRENT])


def test_a_personal_token_never_passes_as_a_case_token() -> None:
    personal = mint(CURRENT, "personal", None, ALICE)
    assert check(personal, "personal", None, ALICE, [CURRENT])
    for ref in (REF, "", "personal"):
        assert not check(personal, "case", ref, ALICE, [CURRENT, PREVIOUS])


def test_field_boundaries_cannot_be_shifted() -> None:
    # A case ref ending where an address begins must not give the same token.
    a = mint(CURRENT, "case", "2026-0007a", "lice@example.org")
    b = mint(CURRENT, "case", "2026-0007", "alice@example.org")
    assert a != b
    assert not check(a, "case", REF, ALICE, [CURRENT])


def test_a_token_from_the_previous_secret_is_accepted_during_rotation() -> None:
    old = mint(PREVIOUS, "case", REF, ALICE)
    assert check(old, "case", REF, ALICE, [CURRENT, PREVIOUS])
    assert not check(old, "case", REF, ALICE, [CURRENT])


def test_a_token_from_an_unknown_secret_is_refused() -> None:
    forged = mint(STRANGER, "case", REF, ALICE)
    assert not check(forged, "case", REF, ALICE, [CURRENT, PREVIOUS])
    assert not check(forged, "case", REF, ALICE, [])


def test_a_token_folded_to_uppercase_by_a_mail_system_is_accepted() -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    assert check(token.upper(), "case", REF, ALICE, [CURRENT])
    assert check(" %s " % token, "case", REF, ALICE, [CURRENT])


@pytest.mark.parametrize("garbage", ["", "bounce-12", "a", "x" * 21, "0" * 21, "é" * 21])
def test_malformed_tokens_are_refused(garbage: str) -> None:
    assert not check(garbage, "case", REF, ALICE, [CURRENT])


def test_a_token_with_one_character_changed_is_refused() -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    for i in range(1, len(token)):
        changed = token[:i] + ("a" if token[i] != "a" else "b") + token[i + 1 :]
        assert not check(changed, "case", REF, ALICE, [CURRENT])
    assert not check(token[:-1], "case", REF, ALICE, [CURRENT])
    assert not check(token + "a", "case", REF, ALICE, [CURRENT])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_checking_arbitrary_text_never_raises_and_never_passes(text: str) -> None:
    assert check(text, "case", REF, ALICE, [CURRENT, PREVIOUS]) is False


def test_misuse_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        mint(CURRENT, "case", None, ALICE)
    with pytest.raises(ValueError):
        mint(CURRENT, "personal", REF, ALICE)
    with pytest.raises(ValueError):
        mint(CURRENT, "admin", None, ALICE)
    with pytest.raises(ValueError):
        mint(b"short", "personal", None, ALICE)
    with pytest.raises(ValueError):
        check("a" * 21, "personal", None, ALICE, [b""])


def test_key_id_is_derived_from_the_secret() -> None:
    assert key_id(CURRENT) == key_id(bytes(CURRENT))
    assert re.fullmatch(r"[a-z2-7]", key_id(CURRENT))
    ids = {key_id(hashlib.sha256(b"%d" % i).digest()) for i in range(200)}
    assert len(ids) > 20  # spread over the 32 base32 characters


# ---- addresses --------------------------------------------------------------------------


def test_reply_address_carries_the_token_within_the_local_part_limit() -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    address = reply_address("conduct", "example.org", token)
    assert address == "conduct+%s@example.org" % token
    assert len(address.split("@")[0]) <= 64


def test_reply_address_refuses_a_local_part_over_64_characters() -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    with pytest.raises(ValueError):
        reply_address("c" * 43, "example.org", token)
    assert reply_address("c" * 42, "example.org", token)  # 42 + 1 + 21 = 64


@pytest.mark.parametrize("bad", ["", "a+b", "a@b"])
def test_reply_address_refuses_a_malformed_local_part(bad: str) -> None:
    with pytest.raises(ValueError):
        reply_address(bad, "example.org", "abc")


def test_tokens_in_finds_our_plus_addresses_only() -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    found = tokens_in(
        [
            "Alice <alice@example.org>",
            "Conduct Committee <conduct+%s@example.org>" % token,
            "conduct@example.org",
            "conduct+@example.org",
            "conduct+bounce-42@example.org",
            "conduct+BOUNCE-7@example.org",
            "conduct+other@elsewhere.org",
            "conducts+other@example.org",
            "other+xyz@example.org",
            "not an address",
            "",
        ],
        "conduct",
        "example.org",
    )
    assert found == [token]


def test_tokens_in_is_case_insensitive_and_deduplicates() -> None:
    token = mint(CURRENT, "case", REF, ALICE)
    found = tokens_in(
        [
            "CONDUCT+%s@EXAMPLE.ORG" % token.upper(),
            "conduct+%s@example.org" % token,
            "conduct+%s@example.org." % token,
        ],
        "Conduct",
        "Example.org",
    )
    assert found == [token]
    assert check(found[0], "case", REF, ALICE, [CURRENT])


def test_tokens_in_keeps_several_distinct_tokens_in_order() -> None:
    a = mint(CURRENT, "case", REF, ALICE)
    p = mint(CURRENT, "personal", None, ALICE)
    found = tokens_in(["conduct+%s@example.org" % a, "conduct+%s@example.org" % p], "conduct", "example.org")
    assert found == [a, p]


# ----- signed VERP (bounce) addresses -----------------------------------------------------------

from conduct_inbox.core.tokens import BOUNCE_MAC_CHARS, bounce_address, bounce_row, bounce_row_in  # noqa: E402


def mail_of(row_id: int) -> str:
    """The Message-ID outbox row `row_id` holds in these tests."""
    return f"<m{row_id}@example.org>"


def holding(row_id: int) -> str | None:
    """A lookup for `bounce_row`: every row up to 10**6 exists and holds mail_of(row)."""
    return mail_of(row_id) if row_id < 10**6 else None


def _suffix(address: str) -> str:
    return address.split("@")[0].split("+", 1)[1]


def test_a_bounce_address_names_its_row_and_checks() -> None:
    address = bounce_address("conduct", "example.org", CURRENT, 42, mail_of(42))
    assert re.fullmatch(r"conduct\+bounce-42-[a-z2-7]{%d}@example\.org" % BOUNCE_MAC_CHARS, address)
    assert BOUNCE_MAC_CHARS * 5 >= 80
    assert len(address.split("@")[0]) <= 64
    assert bounce_row(_suffix(address), [CURRENT], holding) == 42
    assert bounce_row(_suffix(address).upper(), [CURRENT], holding) == 42  # mail systems may fold case


def test_bounce_macs_differ_per_row_and_secret_and_from_reply_tokens() -> None:
    macs = {_suffix(bounce_address("conduct", "example.org", s, r, mail_of(r))).rsplit("-", 1)[1]
            for s in (CURRENT, PREVIOUS) for r in (1, 2, 10, 11)}
    assert len(macs) == 8
    # Another row's MAC does not carry over: row 1's MAC on row 11 (or 10 on 1) is refused.
    one = _suffix(bounce_address("conduct", "example.org", CURRENT, 1, mail_of(1))).rsplit("-", 1)[1]
    assert bounce_row(f"bounce-11-{one}", [CURRENT], holding) is None
    assert bounce_row(f"bounce-01-{one}", [CURRENT], holding) is None


def test_a_bounce_address_with_any_character_changed_is_refused() -> None:
    suffix = _suffix(bounce_address("conduct", "example.org", CURRENT, 1234, mail_of(1234)))
    for i in range(len(suffix)):
        for c in {"a", "b", "2", "9", "-", "x"} - {suffix[i]}:
            assert bounce_row(suffix[:i] + c + suffix[i + 1 :], [CURRENT, PREVIOUS], holding) is None
    assert bounce_row(suffix[:-1], [CURRENT], holding) is None
    assert bounce_row(suffix + "a", [CURRENT], holding) is None
    assert bounce_row(suffix, [STRANGER], holding) is None


def test_the_previous_secret_is_accepted_during_rotation() -> None:
    old = _suffix(bounce_address("conduct", "example.org", PREVIOUS, 7, mail_of(7)))
    assert bounce_row(old, [CURRENT, PREVIOUS], holding) == 7
    assert bounce_row(old, [CURRENT, b""], holding) is None  # rotation over: the old secret is gone
    assert bounce_row(old, [CURRENT], holding) is None


@pytest.mark.parametrize("garbage", ["", "bounce-", "bounce-12", "bounce-12-", "bounce--" + "a" * 20,
                                     "bounce-x-" + "a" * 20, "bounce-1-" + "a" * 20, "bounce-" + "9" * 30 + "-" + "a" * 20,
                                     "bounce-1-" + "é" * 20])
def test_malformed_bounce_suffixes_are_refused(garbage: str) -> None:
    assert bounce_row(garbage, [CURRENT, PREVIOUS], holding) is None


def test_without_a_secret_no_bounce_address_checks() -> None:
    suffix = _suffix(bounce_address("conduct", "example.org", CURRENT, 3, mail_of(3)))
    assert bounce_row(suffix, [], holding) is None
    assert bounce_row(suffix, [b""], holding) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_checking_arbitrary_bounce_text_never_raises_and_never_passes(text: str) -> None:
    assert bounce_row(text, [CURRENT, PREVIOUS], holding) is None
    assert bounce_row("bounce-" + text, [CURRENT, PREVIOUS], holding) is None


def test_bounce_row_in_finds_our_signed_address_only() -> None:
    good = bounce_address("conduct", "example.org", CURRENT, 5, mail_of(5))
    assert bounce_row_in(["Mailer <x@y.z>", "conduct+bounce-9@example.org", good.upper()], "conduct", "example.org", [CURRENT], holding) == 5
    assert bounce_row_in([good.replace("example.org", "example.net")], "conduct", "example.org", [CURRENT], holding) is None
    assert bounce_row_in([good.replace("conduct+", "other+")], "conduct", "example.org", [CURRENT], holding) is None
    assert bounce_row_in(["conduct+bounce-5@example.org"], "conduct", "example.org", [CURRENT], holding) is None


def test_bounce_addresses_old_and_new_are_not_reply_tokens() -> None:
    signed = bounce_address("conduct", "example.org", CURRENT, 42, mail_of(42))
    forged = "conduct+bounce-42-" + "a" * 20 + "@example.org"
    assert tokens_in([signed, signed.upper(), forged, "conduct+bounce-42@example.org"], "conduct", "example.org") == []


def test_a_bounce_address_dies_with_the_mail_its_row_held() -> None:
    """After a restore from a backup, row ids issued since the backup are issued again to other
    mail: a late delivery report for the lost mail must not name the new one."""
    lost = _suffix(bounce_address("conduct", "example.org", CURRENT, 77, "<lost@example.org>"))
    assert bounce_row(lost, [CURRENT], lambda row: "<lost@example.org>") == 77
    assert bounce_row(lost, [CURRENT], lambda row: "<new-mail-same-row@example.org>") is None
    assert bounce_row(lost, [CURRENT], lambda row: None) is None  # no such row (yet)
