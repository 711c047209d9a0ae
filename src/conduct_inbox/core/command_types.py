"""The commands a member can type in a subject: one frozen dataclass per command and the values
their arguments take (DECISIONS, roles, states). How each command's argument text is read is
command_grammar.py's job; finding `!word args` in a subject and checking the commands together
is commands.py's.
"""

from dataclasses import dataclass
from datetime import date
from typing import ClassVar

DECISIONS = (
    "no-action",
    "private-reprimand",
    "public-reprimand",
    "vacation",
    "temporary-ban",
    "permanent-ban",
    "apology-request",
)
DECISIONS_WITH_END = frozenset({"vacation", "temporary-ban"})
PARTY_ROLES = ("reported", "witness", "other")
SEND_ROLES = ("reporter", "reported", "witness", "other")
STATES = ("investigating", "waiting")


class Declared:
    """Base of every command: each declares, in its class line, whether applying it changes the
    case in a way the other members are told of (`changes_case`): one announcement per command
    message lists them. A command without the declaration is an error when this module loads.
    `!reply` and `!send` change no state the others must hear of: they get a copy of the text sent.
    """

    changes_case: ClassVar[bool]

    def __init_subclass__(cls, *, changes_case: bool, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.changes_case = changes_case



@dataclass(frozen=True)
class Ack(Declared, changes_case=True):
    """`!ack`: human acknowledgement."""


@dataclass(frozen=True)
class Assign(Declared, changes_case=True):
    """`!assign NAME`: set the assignee (name as typed; the caller resolves it)."""

    name: str


@dataclass(frozen=True)
class Status(Declared, changes_case=True):
    """`!status investigating|waiting`."""

    state: str


@dataclass(frozen=True)
class Reply(Declared, changes_case=False):
    """`!reply [ADDRESS]`: the body goes to the reporter (to the one at ADDRESS when a merge left
    the case with several)."""

    to: str | None = None


@dataclass(frozen=True)
class Party(Declared, changes_case=True):
    """`!party ROLE ADDRESS [NAME]`: record a party of the case."""

    role: str
    address: str
    name: str | None


@dataclass(frozen=True)
class Send(Declared, changes_case=False):
    """`!send ROLE [ADDRESS]`: the body goes to the parties of that role (to the one at ADDRESS
    when a merge left the case with parties of that role from several cases)."""

    role: str
    to: str | None = None


@dataclass(frozen=True)
class Urgent(Declared, changes_case=True):
    """`!urgent`."""


@dataclass(frozen=True)
class NotUrgent(Declared, changes_case=True):
    """`!not-urgent`."""


@dataclass(frozen=True)
class Spam(Declared, changes_case=True):
    """`!spam`."""


@dataclass(frozen=True)
class Concerns(Declared, changes_case=True):
    """`!concerns NAME`: the case concerns that member; recuse them."""

    name: str


@dataclass(frozen=True)
class Recuse(Declared, changes_case=True):
    """`!recuse`: the sender recuses themself."""


@dataclass(frozen=True)
class Include(Declared, changes_case=True):
    """`!include NAME`: undo an automatic recusal (pending confirmation)."""

    name: str


@dataclass(frozen=True)
class Decide(Declared, changes_case=True):
    """`!decide VALUE[,VALUE] [target=ROLE|ADDRESS] [until=YYYY-MM-DD]` (an address names one
    party when the case holds several of a role)."""

    values: tuple[str, ...]
    target: str | None
    until: date | None
    to: str | None = None


@dataclass(frozen=True)
class Confirm(Declared, changes_case=True):
    """`!confirm [decision|include]`: second member confirms a pending decision or inclusion
    (which one, when both wait)."""

    what: str | None = None


@dataclass(frozen=True)
class Close(Declared, changes_case=True):
    """`!close` or `!close silent REASON`."""

    silent: bool
    reason: str | None


@dataclass(frozen=True)
class Reopen(Declared, changes_case=True):
    """`!reopen`."""


@dataclass(frozen=True)
class Steering(Declared, changes_case=False):
    """`!steering`: report the case to the steering committee now."""


@dataclass(frozen=True)
class Reconsider(Declared, changes_case=False):
    """`!reconsider REF`: open reconsideration of a closed case."""

    ref: str


@dataclass(frozen=True)
class Help(Declared, changes_case=False):
    """`!help`."""


@dataclass(frozen=True)
class List(Declared, changes_case=False):
    """`!list`: the open cases the sender may see."""


@dataclass(frozen=True)
class Title(Declared, changes_case=True):
    """`!title TEXT`: the committee's title for the case's committee subjects (as typed; the
    subject is built from it as from any title, `commands.title_of`)."""

    text: str


@dataclass(frozen=True)
class History(Declared, changes_case=False):
    """`!history`: the case's timeline, to the sender only."""


@dataclass(frozen=True)
class Merge(Declared, changes_case=False):  # announced by its handler, on the target case
    """`!merge REF`: fold this case into case REF."""

    ref: str


@dataclass(frozen=True)
class New(Declared, changes_case=False):
    """`!new ADDRESS [noack]`: open a case for a report a member received directly."""

    address: str
    noack: bool


Command = (
    Ack | Assign | Status | Reply | Party | Send | Urgent | NotUrgent | Spam | Concerns
    | Recuse | Include | Decide | Confirm | Close | Reopen | Steering | Reconsider | Help
    | List | Title | History | Merge | New
)


# The typed name of each command class, for messages.
_TYPE_NAMES: dict[type, str] = {
    Ack: "ack", Assign: "assign", Status: "status", Reply: "reply", Party: "party",
    Send: "send", Urgent: "urgent", NotUrgent: "not-urgent", Spam: "spam",
    Concerns: "concerns", Recuse: "recuse", Include: "include", Decide: "decide",
    Confirm: "confirm", Close: "close", Reopen: "reopen", Steering: "steering",
    Reconsider: "reconsider", Help: "help", List: "list", Title: "title", History: "history",
    Merge: "merge", New: "new",
}


def typed_name(command: Command) -> str:
    """The command word as a member types it (`not-urgent`), for messages and refusals."""
    return _TYPE_NAMES[type(command)]
