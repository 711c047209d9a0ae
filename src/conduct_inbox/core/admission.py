"""Which way a member's mail to the desk goes (`admit`), and what a personal token's case-less
commands do (`personal_way`), each decided from facts the desk looked up (the `classify`
shape: look the facts up, a first-match table decides, the desk applies).

A command counts only on the member's valid reply token for the case (or, for notes and
status commands, a trusted DMARC pass); a personal token never authorises anything on a case.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Way(enum.Enum):
    REFUSE = "refuse"  # changes nothing; audited; not answered
    UNKNOWN_CASE = "unknown_case"  # a valid case token for a reference the database does not hold
    PERSONAL = "personal"  # case-less commands on the member's personal token
    NOT_OWN_ADDRESS = "not_own_address"  # refused; the member (if they may see the case) is told
    ON_CASE = "on_case"  # a note or commands on the case


@dataclass(frozen=True)
class DeskFacts:
    on_roster: bool
    case_known: bool
    case_token: bool = False
    personal_token: bool = False
    dmarc_pass: bool = False
    unknown_case_token: bool = False
    #: The subject carries `!new` or `!reconsider` (case-less commands), parsed without error.
    caseless_commands: bool = False
    #: The subject names a case reference.
    case_ref: bool = False


@dataclass(frozen=True)
class Admission:
    way: Way
    why: str = ""


def admit(f: DeskFacts) -> Admission:
    """First match wins."""
    if not f.on_roster:
        return Admission(Way.REFUSE, "sender is not on the roster")
    on_case = f.case_token or f.dmarc_pass
    if not f.case_known:
        if (f.unknown_case_token or f.case_ref) and not f.personal_token:
            # About a case we do not hold (mistyped, or lost to a restore): refused as unknown, the
            # member told; never a new report in a member's name.
            return Admission(Way.UNKNOWN_CASE)
        if not f.personal_token:
            return Admission(Way.REFUSE, "no valid personal token")
        return Admission(Way.PERSONAL)
    if not on_case and f.personal_token and f.caseless_commands:
        # `Fwd: Re: [conduct #REF] ... !new ADDRESS`: a report forwarded to a personal address may
        # carry a case tag; `!new`/`!reconsider` on a personal token are case-less.
        return Admission(Way.PERSONAL)
    if not on_case:
        if f.personal_token and f.case_ref:
            return Admission(Way.REFUSE, "personal token used on a case")
        return Admission(Way.NOT_OWN_ADDRESS, "no valid case token")
    return Admission(Way.ON_CASE)


class PersonalWay(enum.Enum):
    NO_SUCH_CASE = "no_such_case"  # a case reference without `!new`/`!reconsider`: no case the member can act on
    MALFORMED = "malformed"  # the commands do not parse
    NEW_WITH_OTHERS = "new_with_others"  # `!new` takes only `!concerns` and `!urgent` beside it
    NEW_UNKNOWN_CONCERNS = "new_unknown_concerns"  # `!concerns` names no member: no case is opened
    OPEN_FORWARDED = "open_forwarded"  # `!new`: open a case for the forwarded report
    COMMANDS = "commands"  # `!help`, `!list`, `!reconsider` (anything else needs a case)


@dataclass(frozen=True)
class PersonalFacts:
    parsed: bool  # the subject's new commands parse
    case_ref: bool  # the subject names a case reference
    caseless: bool  # among them `!new` or `!reconsider`
    new: bool  # among them `!new`
    others_beside_new: bool  # commands other than `!new`, `!concerns`, `!urgent`
    unknown_concerns: bool  # a `!concerns` naming no member


def personal_way(f: PersonalFacts) -> PersonalWay:
    """First match wins."""
    if f.case_ref and not f.caseless:
        return PersonalWay.NO_SUCH_CASE
    if not f.parsed:
        return PersonalWay.MALFORMED
    if f.new and f.others_beside_new:
        return PersonalWay.NEW_WITH_OTHERS
    if f.new and f.unknown_concerns:  # the report must not reach the member it is about because of a typo
        return PersonalWay.NEW_UNKNOWN_CONCERNS
    if f.new:
        return PersonalWay.OPEN_FORWARDED
    return PersonalWay.COMMANDS
