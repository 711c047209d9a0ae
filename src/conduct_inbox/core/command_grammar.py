"""The argument grammar: for each command word, a builder that reads and checks its argument
text into a command_types dataclass. Problems (`_Bad`) may quote command words and keyword values
but never names or addresses: they go to the member only and are not logged.
"""

import difflib
import re
from collections.abc import Callable
from datetime import date

from conduct_inbox.core.command_types import (
    DECISIONS,
    DECISIONS_WITH_END,
    PARTY_ROLES,
    SEND_ROLES,
    STATES,
    Ack,
    Assign,
    Close,
    Command,
    Concerns,
    Confirm,
    Decide,
    Help,
    History,
    Include,
    List,
    Merge,
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
    Title,
    Urgent,
)


class _Bad(Exception):
    """Internal: one command's problem."""


class _Unknown(_Bad):
    """Internal: an unknown `!word`; the suggestion is computed only if the problem is shown."""

    def __init__(self, word: str):
        super().__init__(word)
        self.word = word

    def __str__(self) -> str:
        hint = difflib.get_close_matches(_canonical(self.word)[:40], list(_BUILDERS), n=1)
        suggestion = " (did you mean !%s?)" % hint[0] if hint else ""
        return "unknown command !%s%s" % (self.word[:40], suggestion)


# ---- argument grammar ----------------------------------------------------------------


def _no_args(cls: Callable[[], Command]) -> Callable[[str, str], Command]:
    """Builder for a command that takes nothing."""

    def build(name: str, args: str) -> Command:
        if args:
            raise _Bad("!%s takes no arguments" % name)
        return cls()

    return build


def _confirm(name: str, args: str) -> Command:
    what = args.strip().lower()
    if what and what not in ("decision", "include"):
        raise _Bad("!confirm takes nothing, or decision or include")
    return Confirm(what or None)


def _member_name(cls: Callable[[str], Command]) -> Callable[[str, str], Command]:
    """Builder for a command that takes a member name (possibly several words)."""

    def build(name: str, args: str) -> Command:
        if not args:
            raise _Bad("!%s needs a member name" % name)
        return cls(args)

    return build


def _one_of(value: str, allowed: tuple[str, ...]) -> str | None:
    """The canonical spelling of `value` if allowed (case-insensitive)."""
    value = value.lower()
    return value if value in allowed else None


def _or_list(words: tuple[str, ...]) -> str:
    """"a, b or c"."""
    return ", ".join(words[:-1]) + " or " + words[-1]


_ADDRESS_RE = re.compile(r"<?([^\s<>@\"(),;:\[\]]+@[^\s<>@\"(),;:\[\]]+\.[^\s<>@\"(),;:\[\]]+)>?")


def _address(text: str) -> str | None:
    """The mail address in `text` (optionally in <>), or None."""
    m = _ADDRESS_RE.fullmatch(text)
    return m.group(1) if m and not m.group(1).endswith(".") else None


def _status(name: str, args: str) -> Command:
    state = _one_of(args, STATES)
    if state is None:
        raise _Bad("!status takes investigating or waiting")
    return Status(state)


def _party(name: str, args: str) -> Command:
    words = args.split(" ", 2) if args else []
    if len(words) < 2:
        raise _Bad("!party needs ROLE ADDRESS [NAME], e.g. !party reported someone@example.org")
    role = _one_of(words[0], PARTY_ROLES)
    if role is None:
        raise _Bad("!party: the role must be %s" % _or_list(PARTY_ROLES))
    address = _address(words[1])
    if address is None:
        raise _Bad("!party: the second word must be the party's mail address")
    return Party(role, address, words[2] if len(words) > 2 else None)


def _reply(name: str, args: str) -> Command:
    if not args:
        return Reply()
    address = _address(args)
    if address is None:
        raise _Bad("!reply takes nothing, or the address of one of the case's reporters "
                   "(to write to another party, use !send ROLE)")
    return Reply(address.lower())


def _send(name: str, args: str) -> Command:
    words = args.split(" ", 1) if args else [""]
    role = _one_of(words[0], SEND_ROLES)
    if role is None:
        raise _Bad("!send takes %s" % _or_list(SEND_ROLES) + ", and then the party's address if needed")
    if len(words) == 1:
        return Send(role)
    address = _address(words[1])
    if address is None:
        raise _Bad(f"!send {role}: after the role comes nothing, or the address of one of the case's {role} parties")
    return Send(role, address.lower())


_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _decide(name: str, args: str) -> Command:
    # Tolerate `until = 2026-05-01` and `a, b`.
    args = re.sub(r"\s*([=,])\s*", r"\1", args)
    values: list[str] = []
    options: dict[str, str] = {}
    for word in args.split():
        if "=" in word:
            key, _, value = word.partition("=")
            key = key.lower()
            if key not in ("target", "until"):
                raise _Bad("!decide: unknown option '%s' (use target= or until=)" % key[:40])
            if key in options:
                raise _Bad("!decide: %s= given twice" % key)
            options[key] = value
            continue
        for value in filter(None, word.lower().split(",")):
            if value not in DECISIONS:
                raise _Bad(
                    "!decide: unknown decision '%s' (use %s)" % (value[:40], ", ".join(DECISIONS))
                )
            if value not in values:
                values.append(value)
    if not values:
        raise _Bad("!decide needs a decision: %s" % ", ".join(DECISIONS))
    if "no-action" in values and len(values) > 1:
        raise _Bad("!decide: no-action cannot be combined with other decisions")
    if "permanent-ban" in values and "temporary-ban" in values:
        raise _Bad("!decide: choose temporary-ban or permanent-ban, not both")
    target, to = None, None
    if "target" in options:
        target = _one_of(options["target"], SEND_ROLES)
        to = None if target is not None else _address(options["target"])
        if target is None and to is None:
            raise _Bad("!decide: target must be %s, or a party's address" % _or_list(SEND_ROLES))
    until = None
    if "until" in options:
        until = _date(options["until"])
        if until is None:
            raise _Bad("!decide: until must be a date written YYYY-MM-DD")
    needs_end = [v for v in values if v in DECISIONS_WITH_END]
    if needs_end and until is None:
        raise _Bad("!decide %s needs until=YYYY-MM-DD" % needs_end[0])
    if until is not None and not needs_end:
        raise _Bad("!decide: until= applies only to vacation or temporary-ban")
    return Decide(tuple(values), target, until, to.lower() if to else None)


def _date(text: str) -> date | None:
    """A YYYY-MM-DD date, or None."""
    if not _DATE_RE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _close(name: str, args: str) -> Command:
    if not args:
        return Close(False, None)
    first, _, reason = args.partition(" ")
    if first.lower() != "silent":
        raise _Bad("!close takes nothing, or silent REASON")
    if not reason:
        raise _Bad("!close silent needs a reason")
    return Close(True, reason)


_REF_RE = re.compile(r"#?([A-Za-z0-9][A-Za-z0-9-]{0,39})")


def _reconsider(name: str, args: str) -> Command:
    m = _REF_RE.fullmatch(args)
    if not m:
        raise _Bad("!reconsider needs one case reference, e.g. !reconsider 2026-0007")
    return Reconsider(m.group(1))


def _merge(name: str, args: str) -> Command:
    m = _REF_RE.fullmatch(args)
    if not m:
        raise _Bad("!merge needs one case reference, e.g. !merge 2026-0007")
    return Merge(m.group(1))


TITLE_MAX = 150  # characters: a subject line stays readable


def _title(name: str, args: str) -> Command:
    if not args.strip():
        raise _Bad("!title needs the new title, e.g. !title Harassment at the sprint")
    if len(args) > TITLE_MAX:
        raise _Bad("!title: at most %d characters" % TITLE_MAX)
    return Title(args)


def _new(name: str, args: str) -> Command:
    words = args.split(" ") if args else []
    if not words:
        raise _Bad("!new needs the reporter's mail address")
    address = _address(words[0])
    if address is None:
        raise _Bad("!new: the first word must be the reporter's mail address")
    if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("noack", "no-ack")):
        raise _Bad("!new takes ADDRESS [noack]")
    return New(address, len(words) == 2)


_BUILDERS: dict[str, Callable[[str, str], Command]] = {
    "ack": _no_args(Ack),
    "assign": _member_name(Assign),
    "status": _status,
    "reply": _reply,
    "party": _party,
    "send": _send,
    "urgent": _no_args(Urgent),
    "not-urgent": _no_args(NotUrgent),
    "spam": _no_args(Spam),
    "concerns": _member_name(Concerns),
    "recuse": _no_args(Recuse),
    "include": _member_name(Include),
    "decide": _decide,
    "confirm": _confirm,
    "close": _close,
    "reopen": _no_args(Reopen),
    "steering": _no_args(Steering),
    "reconsider": _reconsider,
    "help": _no_args(Help),
    "list": _no_args(List),
    "title": _title,
    "history": _no_args(History),
    "merge": _merge,
    "new": _new,
}
_ALIASES = {"not_urgent": "not-urgent", "noturgent": "not-urgent"}


def _canonical(word: str) -> str:
    """The command name for a typed `!word` (lowercase, aliases resolved)."""
    word = word.lower()
    return _ALIASES.get(word, word)
