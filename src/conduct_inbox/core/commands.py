"""Subject-line command grammar: `!word args` in a member's subject → validated commands.

A command is a token that starts with `!` followed by a letter, at the start of the
subject or after whitespace, `]` or `:` (so "Hi!" and "wow!!" are not commands, but
`[conduct #2026-0007]!ack` and `Re:!ack` are). Its arguments run to the next command or the next
`[tag #ref]`; reply prefixes (Re:, AW:, ...) just before such a tag are not
arguments, so `!ack Re: [conduct #2026-0007] Title` works. Everything else — reply
prefixes, the case tag, the title — is ignored. Subjects arrive RFC 2047-decoded.

Parsing is all-or-nothing: one bad command refuses the whole subject, with one
human-readable problem per bad command. Problem texts may quote command words and
keyword values but never names or addresses; they are still subject text, so they go
to the member only and are not logged. Everything here is linear in the subject length.

What each command is and how its arguments are read lives in command_types.py; this module
finds the commands in a subject and checks that they make sense together. Other modules import
both from here.
"""

import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from conduct_inbox.core.command_grammar import _BUILDERS, _Bad, _canonical, _Unknown
from conduct_inbox.core.command_types import (
    _TYPE_NAMES,
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
from conduct_inbox.mail.charsets import displayed

__all__ = [
    "DECISIONS", "DECISIONS_WITH_END", "PARTY_ROLES", "SEND_ROLES", "STATES", "MAX_PROBLEMS",
    "HELP_TEXT", "Ack", "Assign", "Close", "Command", "Concerns", "Confirm", "Decide", "Help",
    "History", "Include", "List", "Merge", "New", "NotUrgent", "Party", "Reconsider", "Recuse", "Reopen", "Reply",
    "Send", "Spam", "Status", "Steering", "Title", "Urgent", "CommandError", "new_commands",
    "parse_commands", "repeated_commands", "strip_commands", "title_of",
]

MAX_PROBLEMS = 10  # a pathological subject gets a readable answer, not thousands of lines


@dataclass(frozen=True)
class CommandError:
    """Why a subject's commands were refused; one line per problem, for the member."""

    problems: tuple[str, ...]

    @property
    def message(self) -> str:
        """All problems as one text."""
        return "\n".join(self.problems)

    def __str__(self) -> str:
        return self.message


# ---- lexical layer -------------------------------------------------------------------

# `!` + letter, at the start or after whitespace, `]` or `:` (`Re:!ack`); the word ends at
# whitespace or `[`.
_COMMAND_RE = re.compile(r"(?:(?<=[\s\]:：])|^)!([^\W\d_][^\s\[]*)")
# The case tag `[conduct #2026-0007]`; bounded, so scanning stays linear.
_TAG_RE = re.compile(r"\[[^\[\]#]{0,64}#[^\[\]]{1,64}\]")
_PREFIX_WORD = (
    r"(?:re|aw|sv|vs|fw|fwd|wg|tr|rv|antw|antwort|odp|ref|réf|rif|enc|res|vl|ynt|doorst"
    r"|回复|答复|转发)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]"
)
_PREFIX_TOKEN_RE = re.compile(r"(?:%s)+" % _PREFIX_WORD, re.IGNORECASE)
_LEADING_PREFIXES_RE = re.compile(r"^\s*(?:%s\s*)+" % _PREFIX_WORD, re.IGNORECASE)


@dataclass(frozen=True)
class _Segment:
    """One `!word` and its argument text, as typed."""

    word: str  # without `!`, as typed
    args: str  # whitespace-folded


def _scan(subject: str) -> tuple[list[_Segment], list[str]]:
    """Split a subject into command segments and the free text (title) around them."""
    subject = displayed(subject)  # read what the member's client showed: `！` is `!`, encoded words decoded
    commands = list(_COMMAND_RE.finditer(subject))
    tags = list(_TAG_RE.finditer(subject))
    segments: list[_Segment] = []
    free: list[str] = []
    pos = 0  # start of text not yet assigned
    ti = 0
    for ci, m in enumerate(commands):
        free.append(_strip_tags(subject[pos : m.start()]))
        end = commands[ci + 1].start() if ci + 1 < len(commands) else len(subject)
        while ti < len(tags) and tags[ti].start() < m.end():
            ti += 1
        ends_at_tag = ti < len(tags) and tags[ti].start() < end
        arg_end = tags[ti].start() if ends_at_tag else end
        words = subject[m.end() : arg_end].split()
        if ends_at_tag:
            # `!ack Re: [conduct #x] Title`: the reply prefix belongs to the title, not to !ack
            while words and _PREFIX_TOKEN_RE.fullmatch(words[-1]):
                words.pop()
        segments.append(_Segment(m.group(1), " ".join(words)))
        pos = arg_end
    free.append(_strip_tags(subject[pos:]))
    return segments, free


def _strip_tags(text: str) -> str:
    """Text with `[tag #ref]` removed."""
    return _TAG_RE.sub(" ", text)


# ---- the commands of a subject together ----------------------------------------------

# Commands that may be given several times in one subject (different parties or members).
_REPEATABLE = frozenset({Party, Send, Concerns, Include})
# Commands that contradict each other in one subject.
_CONFLICTS = ((Urgent, NotUrgent), (Close, Reopen))


def _build(segment: _Segment) -> Command:
    """One command from its segment, or _Bad."""
    name = _canonical(segment.word)
    builder = _BUILDERS.get(name)
    if builder is None:
        raise _Unknown(segment.word)
    return builder(name, segment.args)


def _validate(segments: list[_Segment]) -> list[Command] | CommandError:
    """Build every segment and check they make sense together; all or nothing."""
    commands: list[Command] = []
    problems: list[str] = []
    for segment in segments:
        try:
            commands.append(_build(segment))
        except _Bad as bad:
            if len(problems) < MAX_PROBLEMS:
                problems.append(str(bad))
    if problems:
        return CommandError(tuple(problems))
    counts = Counter(type(c) for c in commands)
    for kind, count in counts.items():
        if count > 1 and kind not in _REPEATABLE:
            problems.append("!%s can be given only once" % _TYPE_NAMES[kind])
    for a, b in _CONFLICTS:
        if counts[a] and counts[b]:
            problems.append("!%s and !%s contradict each other" % (_TYPE_NAMES[a], _TYPE_NAMES[b]))
    if counts[Merge] and len(commands) > 1:
        # The case ends with the merge: what else the subject asks would act on a case that no longer is one.
        problems.append("!merge cannot be combined with other commands: send them on the case merged into")
    if problems:
        return CommandError(tuple(problems[:MAX_PROBLEMS]))
    return commands


def parse_commands(subject: str) -> list[Command] | CommandError:
    """All commands in a subject, in order; [] if none; CommandError if any is bad."""
    return _validate(_scan(subject)[0])


def _identity(segment: _Segment) -> Hashable:
    """What makes two typed commands 'the same': the parsed command, else name + args."""
    try:
        return _build(segment)
    except _Bad:
        return ("?", _canonical(segment.word), segment.args.casefold())


def _split(subject: str, earlier: str | Sequence[str] | None) -> tuple[list[_Segment], list[_Segment]]:
    """The segments of `subject` typed now, and those that stand in an earlier subject."""
    segments = _scan(subject)[0]
    if isinstance(earlier, str):
        earlier = [earlier]
    already: Counter[Hashable] = Counter()
    for other in earlier or ():
        already |= Counter(_identity(s) for s in _scan(other)[0])  # the most any one subject holds
    kept, repeated = [], []
    for segment in segments:
        key = _identity(segment)
        if already[key]:
            already[key] -= 1
            repeated.append(segment)
        else:
            kept.append(segment)
    return kept, repeated


def new_commands(subject: str, earlier: str | Sequence[str] | None) -> list[Command] | CommandError:
    """Commands typed in `subject` that stand in none of the `earlier` subjects of the thread.

    Replying to a mail whose subject holds `!reply` (ours, or the member's own sent mail, as
    Gmail threads it) must not send again; a reporter's subject cannot carry a command into a
    member's reply. Each command in an earlier subject cancels one identical command in
    `subject` (a bad command carried over is dropped too, so it cannot block the new ones).
    Subjects compare as a mail client shows them (`displayed`).
    """
    return _validate(_split(subject, earlier)[0])


def repeated_commands(subject: str, earlier: str | Sequence[str] | None) -> list[str]:
    """The commands of `subject` that `new_commands` leaves out, as `!word args` for the member."""
    return [f"!{s.word} {s.args}".strip() for s in _split(subject, earlier)[1]]


def strip_commands(subject: str) -> str:
    """The title alone: without commands and their arguments, reply prefixes or `[tag #ref]`."""
    title = " ".join(" ".join(_scan(subject)[1]).split())
    return _LEADING_PREFIXES_RE.sub("", title).strip()


def title_of(subject: str) -> str:
    """A subject someone outside the committee wrote, made safe to show members in ours: as any
    client displays it, without commands, reply prefixes or case tags, and with no `!` left
    (`Help!reply` glued together is no command today, and must never become one)."""
    return " ".join(strip_commands(subject).replace("!", " ").split())


HELP_TEXT = """\
Commands go in the subject of your reply; several may be combined and apply together or not at all.
The text you write above the marker line is the note, or the text that is sent.
(no command)            your text is an internal note to the other members
!ack                    acknowledge the case; you become assignee if there is none
!assign NAME            set the assignee
!status investigating   set the state (or: !status waiting)
!reply                  send your text to the reporter from conduct@ (!reply ADDRESS: to that
                        one of the reporters of a merged case)
!party ROLE ADDRESS [NAME]  record a party; ROLE is reported, witness or other
!send ROLE              send your text to that party (reporter, reported, witness, other;
                        !send ROLE ADDRESS: to that one of them, after a merge)
!urgent, !not-urgent    set urgency
!spam                   mark as spam: its clocks stop (no reminders or escalations)
!concerns NAME          the case concerns that member: recuse them
!recuse                 recuse yourself
!include NAME           undo an automatic recusal (needs !confirm by another member)
!decide VALUE[,VALUE] [target=ROLE] [until=YYYY-MM-DD]  record the decision; values: %s; vacation and temporary-ban need until=
!confirm                confirm a pending severe decision or !include (!confirm decision or
                        !confirm include when both wait)
!close                  close (needs a decision and a !reply), or !close silent REASON
!reopen                 reopen the case
!steering               send the steering committee a report of the case now
!reconsider REF         steering members: reopen a closed case for reconsideration
!title TEXT             the title of the case in committee subjects from now on (never sent to the reporter or a party)
!history                the case's timeline, to you only
!merge REF              fold this case into case REF (the same incident reported twice); nothing is sent to the reporter
!help, !list            this text; the open cases you may see
!new ADDRESS [noack]    (personal address) open a case for a report forwarded to you; ADDRESS is the reporter
""" % ", ".join(DECISIONS)
