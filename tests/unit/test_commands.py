"""Subject-line commands: what a member types is read exactly, or refused with a clear answer."""

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduct_inbox.core.commands import (
    DECISIONS,
    HELP_TEXT,
    Ack,
    Assign,
    Close,
    CommandError,
    Concerns,
    Confirm,
    Decide,
    Help,
    Include,
    List,
    New,
    NotUrgent,
    Party,
    Reconsider,
    Recuse,
    Reopen,
    Reply,
    Send,
    Spam,
    Status,
    Steering,
    Urgent,
    new_commands,
    parse_commands,
    strip_commands,
)

TAG = "[conduct #2026-0007]"


def problems(subject: str) -> str:
    """The refusal text for a subject that must be refused."""
    result = parse_commands(subject)
    assert isinstance(result, CommandError), result
    return result.message


# ---- where commands are found -----------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        f"Re: {TAG} Harassment at the sprint !ack",
        f"RE: RE: {TAG} Harassment at the sprint !ack",
        f"AW: {TAG} Belästigung !ack",
        f"SV: Re: {TAG} Trakassering !ack",
        f"Fwd: {TAG} Harassment !ack",
        f"WG: {TAG} Harassment !ack",
        f"Re[2]: {TAG} Harassment !ack",
        f"{TAG}!ack",
        f"Re: {TAG}!ack",
        "Re:!ack",
        f"Re: {TAG} !ack",
        f"!ack Re: {TAG} Harassment at the sprint",
        f"!ack Re: AW: {TAG} Harassment at the sprint",
        f"Re: {TAG} Harassment   !ACK   ",
        f"Re: {TAG} Harassment !Ack",
        "!ack",
        "  !ack  ",
        f"Re: {TAG} Harassment\t!ack",
        f"Re: {TAG} Hi! Harassment, wow!! !ack",
        f"Re: {TAG} Harassment ！ack",  # fullwidth exclamation mark from a CJK keyboard
    ],
)
def test_ack_is_found_wherever_a_member_may_type_it(subject: str) -> None:
    assert parse_commands(subject) == [Ack()]


@pytest.mark.parametrize(
    "subject",
    [
        "",
        f"Re: {TAG} Harassment at the sprint",
        f"Re: {TAG} Hi! This is bad!!",
        f"Re: {TAG} Wow!ack is not a command",
        f"Re: {TAG} 100! !!! ! ack",
        f"Re: {TAG} !123 is a number",
        "Re: [conduct #2026-0007!ack]",
    ],
)
def test_text_without_commands_yields_no_commands(subject: str) -> None:
    assert parse_commands(subject) == []


def test_several_commands_apply_together_in_order() -> None:
    subject = f"Re: {TAG} Harassment at the sprint !ack !status investigating !urgent"
    assert parse_commands(subject) == [Ack(), Status("investigating"), Urgent()]


def test_title_before_the_first_command_is_ignored_even_if_it_looks_like_arguments() -> None:
    subject = f"Re: {TAG} status waiting assign Bob !status waiting"
    assert parse_commands(subject) == [Status("waiting")]


def test_text_after_a_tag_is_title_not_arguments() -> None:
    subject = f"!assign Alice Example Re: {TAG} Harassment at the sprint"
    assert parse_commands(subject) == [Assign("Alice Example")]


# ---- each command -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("!ack", Ack()),
        ("!reply", Reply()),
        ("!urgent", Urgent()),
        ("!not-urgent", NotUrgent()),
        ("!NOT-URGENT", NotUrgent()),
        ("!not_urgent", NotUrgent()),
        ("!spam", Spam()),
        ("!recuse", Recuse()),
        ("!confirm", Confirm()),
        ("!reopen", Reopen()),
        ("!steering", Steering()),
        ("!help", Help()),
        ("!list", List()),
        ("!assign Alice", Assign("Alice")),
        ("!assign   Alice    van  Example ", Assign("Alice van Example")),
        ("!concerns Bob Example", Concerns("Bob Example")),
        ("!include Carol", Include("Carol")),
        ("!status investigating", Status("investigating")),
        ("!STATUS Waiting", Status("waiting")),
        ("!send reporter", Send("reporter")),
        ("!send Reported", Send("reported")),
        ("!send witness", Send("witness")),
        ("!send other", Send("other")),
        ("!send reported Pat@Example.org", Send("reported", "pat@example.org")),
        ("!party reported bob@example.org", Party("reported", "bob@example.org", None)),
        (
            "!party witness <Dana@Example.org> Dana Q. Example",
            Party("witness", "Dana@Example.org", "Dana Q. Example"),
        ),
        ("!party OTHER eve@example.org Eve", Party("other", "eve@example.org", "Eve")),
        ("!close", Close(False, None)),
        ("!close silent reporter withdrew", Close(True, "reporter withdrew")),
        ("!close SILENT duplicate", Close(True, "duplicate")),
        ("!reconsider 2026-0003", Reconsider("2026-0003")),
        ("!reconsider #2026-0003", Reconsider("2026-0003")),
        ("!new reporter@example.org", New("reporter@example.org", False)),
        ("!new reporter@example.org noack", New("reporter@example.org", True)),
        ("!new <reporter@example.org> NoAck", New("reporter@example.org", True)),
        ("!decide no-action", Decide(("no-action",), None, None)),
        (
            "!decide private-reprimand,apology-request target=reported",
            Decide(("private-reprimand", "apology-request"), "reported", None),
        ),
        (
            "!decide Private-Reprimand, Apology-Request",
            Decide(("private-reprimand", "apology-request"), None, None),
        ),
        (
            "!decide temporary-ban target=reported until=2026-09-30",
            Decide(("temporary-ban",), "reported", date(2026, 9, 30)),
        ),
        (
            "!decide vacation until = 2026-12-01",
            Decide(("vacation",), None, date(2026, 12, 1)),
        ),
        (
            "!decide public-reprimand,public-reprimand",
            Decide(("public-reprimand",), None, None),
        ),
        ("!decide permanent-ban target=reported", Decide(("permanent-ban",), "reported", None)),
    ],
)
def test_each_command_reads_its_arguments(typed: str, expected: object) -> None:
    assert parse_commands(f"Re: {TAG} Harassment at the sprint {typed}") == [expected]


def test_every_decision_value_is_accepted() -> None:
    for value in DECISIONS:
        extra = " until=2027-01-01" if value in ("vacation", "temporary-ban") else ""
        result = parse_commands(f"!decide {value}{extra}")
        assert isinstance(result, list) and result[0].values == (value,)  # type: ignore[union-attr]


def test_arguments_end_at_the_next_command() -> None:
    subject = f"Re: {TAG} T !assign Alice Example !party reported bob@example.org Bob !reply"
    assert parse_commands(subject) == [
        Assign("Alice Example"),
        Party("reported", "bob@example.org", "Bob"),
        Reply(),
    ]


def test_several_parties_and_sends_in_one_subject() -> None:
    subject = "!party witness a@example.org !party witness b@example.org !send witness !send reported"
    assert parse_commands(subject) == [
        Party("witness", "a@example.org", None),
        Party("witness", "b@example.org", None),
        Send("witness"),
        Send("reported"),
    ]


def test_new_with_concerns_in_the_same_subject() -> None:
    subject = "Fwd: harassment report !new reporter@example.org noack !concerns Bob Example"
    assert parse_commands(subject) == [New("reporter@example.org", True), Concerns("Bob Example")]


# ---- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("!frobnicate", "unknown command !frobnicate"),
        ("!akc", "did you mean !ack?"),
        ("!assign", "!assign needs a member name"),
        (f"!assign Re: {TAG} title", "!assign needs a member name"),
        ("!concerns", "!concerns needs a member name"),
        ("!include", "!include needs a member name"),
        ("!decide ban", "!decide: unknown decision 'ban'"),
        ("!decide", "!decide needs a decision"),
        ("!decide temporary-ban", "!decide temporary-ban needs until=YYYY-MM-DD"),
        ("!decide vacation target=reported", "!decide vacation needs until=YYYY-MM-DD"),
        ("!decide temporary-ban until=30.09.2026", "until must be a date written YYYY-MM-DD"),
        ("!decide temporary-ban until=2026-02-30", "until must be a date written YYYY-MM-DD"),
        ("!decide private-reprimand until=2026-02-01", "until= applies only to vacation"),
        ("!decide no-action,public-reprimand", "no-action cannot be combined"),
        (
            "!decide temporary-ban,permanent-ban until=2026-02-01",
            "temporary-ban or permanent-ban, not both",
        ),
        ("!decide no-action target=chair", "target must be reporter, reported, witness or other"),
        ("!decide no-action scope=all", "unknown option 'scope'"),
        ("!decide no-action target=reported target=witness", "target= given twice"),
        ("!close silent", "!close silent needs a reason"),
        ("!close now please", "!close takes nothing, or silent REASON"),
        ("!status", "!status takes investigating or waiting"),
        ("!status closed", "!status takes investigating or waiting"),
        ("!status investigating waiting", "!status takes investigating or waiting"),
        ("!send", "!send takes reporter, reported, witness or other"),
        ("!send everyone", "!send takes reporter, reported, witness or other"),
        ("!reply witness", "!reply takes nothing, or the address of one of the case's reporters (to write to another party, use !send"),
        ("!ack thanks", "!ack takes no arguments"),
        ("!party", "!party needs ROLE ADDRESS [NAME]"),
        ("!party reported", "!party needs ROLE ADDRESS [NAME]"),
        ("!party reporter bob@example.org", "the role must be reported, witness or other"),
        ("!party reported Bob Example", "must be the party's mail address"),
        ("!party reported bob@localhost", "must be the party's mail address"),
        ("!new", "!new needs the reporter's mail address"),
        ("!new Alice", "!new: the first word must be the reporter's mail address"),
        ("!new a@example.org now", "!new takes ADDRESS [noack]"),
        ("!reconsider", "!reconsider needs one case reference"),
        ("!reconsider 2026-0003 2026-0004", "!reconsider needs one case reference"),
        ("!ack !ack", "!ack can be given only once"),
        ("!assign Alice !assign Bob", "!assign can be given only once"),
        ("!urgent !not-urgent", "!urgent and !not-urgent contradict each other"),
        ("!close !reopen", "!close and !reopen contradict each other"),
    ],
)
def test_bad_commands_are_refused_with_a_clear_message(subject: str, expected: str) -> None:
    assert expected in problems(f"Re: {TAG} Harassment at the sprint {subject}")


def test_one_bad_command_refuses_the_whole_subject() -> None:
    result = parse_commands(f"Re: {TAG} T !ack !status investigating !decide ban")
    assert isinstance(result, CommandError)
    assert result.problems == ("!decide: unknown decision 'ban' (use %s)" % ", ".join(DECISIONS),)


def test_every_bad_command_is_reported_once() -> None:
    result = parse_commands("!frobnicate !assign !status maybe !ack")
    assert isinstance(result, CommandError)
    assert len(result.problems) == 3
    assert str(result) == result.message == "\n".join(result.problems)


def test_refusals_do_not_quote_names_or_addresses() -> None:
    for subject in (
        "!party reporter secret@example.org Secret Person",
        "!party reported Secret Person",
        "!new Secret Person",
        "!status Secret Person",
        "!send Secret Person",
        "!close Secret Person",
    ):
        text = problems(subject)
        assert "Secret" not in text and "secret@" not in text, subject


def test_a_pathological_subject_gets_a_short_answer() -> None:
    result = parse_commands(" ".join("!x%d" % i for i in range(5000)))
    assert isinstance(result, CommandError)
    assert len(result.problems) <= 10


# ---- new_commands: only what the member typed now ---------------------------------------


def test_commands_already_in_the_answered_subject_are_ignored() -> None:
    answered = f"{TAG} Harassment !reply"
    assert new_commands(f"Re: {TAG} Harassment !reply", answered) == []
    assert new_commands(f"Re: {TAG} Harassment !reply !ack", answered) == [Ack()]


def test_identity_is_name_and_arguments() -> None:
    answered = f"{TAG} T !status waiting !assign Alice"
    assert new_commands(f"Re: {TAG} T !status waiting !status investigating", answered) == [
        Status("investigating")
    ]
    assert new_commands(f"Re: {TAG} T !ASSIGN   Alice !STATUS Waiting", answered) == []
    assert new_commands(f"Re: {TAG} T !assign Bob", answered) == [Assign("Bob")]


def test_one_occurrence_in_the_answered_subject_cancels_one_typed_again() -> None:
    answered = "T !send witness"
    assert new_commands("Re: T !send witness !send witness", answered) == [Send("witness")]
    assert new_commands("Re: T !send witness !send witness", "T !send witness !send witness") == []


def test_no_answered_subject_means_every_command_counts() -> None:
    assert new_commands(f"Re: {TAG} T !ack", None) == [Ack()]
    assert new_commands(f"Re: {TAG} T !ack", "") == [Ack()]


def test_a_bad_command_carried_over_does_not_block_new_ones() -> None:
    answered = "T !frobnicate"
    assert new_commands("Re: T !frobnicate !ack", answered) == [Ack()]


def test_a_new_bad_command_is_still_refused() -> None:
    result = new_commands("Re: T !reply !frobnicate", "T !reply")
    assert isinstance(result, CommandError)
    assert "unknown command !frobnicate" in result.message


def test_contradictions_are_checked_on_the_new_commands_only() -> None:
    assert new_commands("Re: T !urgent !not-urgent", "T !urgent") == [NotUrgent()]


# ---- strip_commands ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "title"),
    [
        (f"Re: {TAG} Harassment at the sprint !ack !status investigating", "Harassment at the sprint"),
        (f"RE: AW: Fwd: {TAG} Harassment at the sprint", "Harassment at the sprint"),
        (f"!ack Re: {TAG} Harassment at the sprint", "Harassment at the sprint"),
        (f"Re: {TAG} Re: Harassment", "Harassment"),
        (f"Re: {TAG}   Harassment \t at   the sprint !assign Alice Example", "Harassment at the sprint"),
        (f"{TAG}!ack", ""),
        ("Harassment at the sprint!", "Harassment at the sprint!"),
        ("Re: Hi! wow!! !reply", "Hi! wow!!"),
        ("Re: [conduct #2026-0007] [conduct #2026-0008] Two tags", "Two tags"),
        ("Re: Regarding the sprint", "Regarding the sprint"),
        ("Fwd: report !new a@example.org !concerns Bob", "report"),
    ],
)
def test_strip_commands_leaves_the_title(subject: str, title: str) -> None:
    assert strip_commands(subject) == title


def test_a_stripped_title_holds_no_commands() -> None:
    title = strip_commands(f"Re: {TAG} Harassment !reply !decide permanent-ban target=reported")
    assert parse_commands(f"{TAG} {title}") == []


# ---- help -------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    for word in (
        "!ack", "!assign", "!status", "!reply", "!party", "!send", "!urgent", "!not-urgent",
        "!spam", "!concerns", "!recuse", "!include", "!decide", "!confirm", "!close",
        "!reopen", "!steering", "!reconsider", "!help", "!list", "!new",
    ):
        assert word in HELP_TEXT
    for value in DECISIONS:
        assert value in HELP_TEXT


# ---- robustness -------------------------------------------------------------------------


_WORDS = [
    "!ack", "!assign", "!decide", "!party", "!close", "!new", "!status", "!send", "!reply",
    "silent", "reported", "witness", "temporary-ban", "no-action,vacation", "until=2026-01-01",
    "target=reported", "a@example.org", "<b@example.org>", "noack", "investigating", TAG,
    "Re:", "AW:", "[", "]", "#", "!", "Hi!", "x", "=", ",",
]
_SUBJECTS = (
    st.text(alphabet=st.sampled_from(list("!ab #[]:=,-@.sRe \t\u00e9\uff01")), max_size=300)
    | st.text(max_size=300)
    | st.lists(st.sampled_from(_WORDS), max_size=30).map(" ".join)
)


@settings(max_examples=400, deadline=None)
@given(_SUBJECTS)
def test_parse_never_raises(subject: str) -> None:
    result = parse_commands(subject)
    assert isinstance(result, (list, CommandError))
    title = strip_commands(subject)
    assert parse_commands(title) == [], "a title we send must never carry a command"
    assert isinstance(new_commands(subject, subject), (list, CommandError))


@pytest.mark.parametrize(
    "subject",
    [
        "!" * 200_000,
        "!a" * 100_000,
        "!a " * 30_000,
        "wow! " * 40_000,
        "[" * 100_000 + "#" + "]" * 100_000,
        "[conduct #" * 20_000,
        "!decide " + "a," * 100_000,
        "!decide " + " " * 200_000 + "=",
        "!party reported " + "a" * 100_000 + "@" + "b" * 100_000,
        "!ack " + "Re: " * 50_000 + TAG,
        "Re: " * 50_000 + "title",
        "!close silent " + "x " * 100_000,
        "!" + "a" * 200_000,
    ],
)
def test_pathological_subjects_are_handled_without_error(subject: str) -> None:
    # Their time (linear, not quadratic) is benchmarks/linear.py's; here: no crash, and nothing
    # that stands in the earlier subject applies again.
    parse_commands(subject)
    assert new_commands(subject, subject) == []
    strip_commands(subject)


def test_the_commands_that_change_a_case_are_announced_and_each_command_declares_it():
    from typing import get_args

    from conduct_inbox.core import command_types as ct

    changing = {cls.__name__ for cls in get_args(ct.Command) if cls.changes_case}
    assert changing == {"Ack", "Assign", "Status", "Party", "Urgent", "NotUrgent", "Spam", "Concerns", "Recuse",
                        "Include", "Decide", "Confirm", "Close", "Reopen", "Title"}
    assert all("changes_case" in vars(cls) for cls in get_args(ct.Command))
    with pytest.raises(TypeError):
        type("Undeclared", (ct.Declared,), {})
