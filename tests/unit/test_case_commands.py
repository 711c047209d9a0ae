"""`!title`, `!history` and `!merge`: read exactly, refused with a clear answer, and a committee
title can never carry a command into the subjects built from it."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduct_inbox.core.command_grammar import TITLE_MAX
from conduct_inbox.core.commands import (
    HELP_TEXT,
    Ack,
    CommandError,
    History,
    Merge,
    Title,
    new_commands,
    parse_commands,
    title_of,
)

TAG = "[conduct #2026-0007]"


def problems(subject: str) -> str:
    result = parse_commands(subject)
    assert isinstance(result, CommandError), result
    return result.message


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("!title Harassment at the sprint", [Title("Harassment at the sprint")]),
        ("!title   two   spaces  ", [Title("two spaces")]),
        (f"Re: {TAG} The reporter's words !title Our own words", [Title("Our own words")]),
        (f"!title Our own words Re: {TAG} The reporter's words", [Title("Our own words")]),
        ("!title Sprint incident !ack", [Title("Sprint incident"), Ack()]),
        ("!title Wow!reply glued", [Title("Wow!reply glued")]),  # not a command: no space before `!`
        ("!history", [History()]),
        ("!HISTORY", [History()]),
        ("!ack !history", [Ack(), History()]),
        ("!merge 2026-0003", [Merge("2026-0003")]),
        ("!merge #2026-0003", [Merge("2026-0003")]),
        (f"Re: {TAG} Title !merge 2026-0003", [Merge("2026-0003")]),
    ],
)
def test_each_command_is_read_exactly(typed: str, expected: list[object]) -> None:
    assert parse_commands(typed) == expected


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("!title", "!title needs the new title"),
        ("!title " + "x" * (TITLE_MAX + 1), f"at most {TITLE_MAX} characters"),
        ("!history please", "!history takes no arguments"),
        ("!merge", "!merge needs one case reference"),
        ("!merge 2026-0003 2026-0004", "!merge needs one case reference"),
        ("!merge 2026-0003 !ack", "!merge cannot be combined with other commands"),
        ("!title x !merge 2026-0003", "!merge cannot be combined with other commands"),
        ("!merge 2026-0003 !merge 2026-0004", "!merge can be given only once"),
        ("!title a !title b", "!title can be given only once"),
    ],
)
def test_bad_forms_are_refused_with_the_reason(typed: str, problem: str) -> None:
    assert problem in problems(typed)


def test_a_merge_alone_beside_a_repeated_command_applies() -> None:
    # `!ack` stands in the subject answered: it is not typed now, so `!merge` is alone.
    assert new_commands(f"Re: {TAG} x !ack !merge 2026-0003", [f"{TAG} x !ack"]) == [Merge("2026-0003")]


def test_a_title_with_commands_in_it_makes_a_subject_without_any() -> None:
    for typed in ("Wow!reply glued", "x\uff01reply fullwidth", "=?utf-8?q?!reply?= encoded", f"{TAG} !close silent x"):
        title = title_of(typed)
        assert "!" not in title
        assert parse_commands(f"Re: {TAG} {title}") == []


def test_answering_mail_under_the_committee_title_repeats_nothing() -> None:
    # The member's own `!title` mail (Gmail threads it) and our mail under the new title.
    earlier = [f"Re: {TAG} Old words !title New words", f"{TAG} New words"]
    assert new_commands(f"Re: {TAG} Old words !title New words", earlier) == []
    assert new_commands(f"Re: {TAG} New words", earlier) == []
    assert new_commands(f"Re: {TAG} New words !history", earlier) == [History()]


_TITLE_TEXT = st.text(alphabet=st.sampled_from(list("!ab #[]:=?-@.qRe \t\u00e9\uff01\ufe57")), max_size=120) | st.text(max_size=120)


@settings(max_examples=300, deadline=None)
@given(_TITLE_TEXT)
def test_no_committee_title_is_a_command_channel(text: str) -> None:
    parsed = parse_commands(f"!title {text}")
    if isinstance(parsed, CommandError) or not parsed or not isinstance(parsed[0], Title):
        return
    title = title_of(parsed[0].text)
    subject = f"[conduct #2026-0007] {title}"
    assert parse_commands(subject) == [] and parse_commands("Re: " + subject) == []


def test_help_lists_the_new_commands() -> None:
    for word in ("!title TEXT", "!history", "!merge REF"):
        assert word in HELP_TEXT
