"""Which way a member's mail to the desk goes, decided from the facts of its authentication
(the `classify` shape: the desk looks the facts up, this table decides, the desk applies).

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
        if f.unknown_case_token and not f.personal_token:
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
