"""Who receives anything about a case. The only place that decides committee recipients.

Every notification, note, alert, escalation, reminder and digest asks this module, so a member
recused from a case can never be addressed about it by some other code path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from conduct_inbox.core.roster import Person, Roster

RECUSAL_REASONS = {
    "named": "named in the report",
    "concerns": "the case concerns them",
    "self": "recused themself",
}


@dataclass(frozen=True)
class Audience:
    """Recipients of one piece of committee mail, and who was left out and why."""

    recipients: tuple[Person, ...]
    excluded: tuple[tuple[Person, str], ...] = ()
    steering_included: bool = False

    def marker_line(self) -> str:
        """The first line of every committee message: who receives it and who is excluded."""
        line = "To: " + ", ".join(p.name for p in self.recipients)
        if self.excluded:
            line += "  ·  Excluded: " + ", ".join(
                f"{p.name} ({RECUSAL_REASONS.get(reason, reason)})" for p, reason in self.excluded
            )
        return line


class Exclusions(dict[str, str]):
    """The members excluded from a case (address → reason), and whether the steering members work
    on it (it was escalated to them, or they reconsider it): then they are among its recipients."""

    def __init__(self, recused: Mapping[str, str] | None = None, steering_works: bool = False):
        super().__init__(recused or {})
        self.steering_works = steering_works


def _excluded(people: tuple[Person, ...], recused: Mapping[str, str]) -> tuple[tuple[Person, str], ...]:
    return tuple((p, recused[p.email]) for p in people if p.email in recused)


def committee(roster: Roster, recused: Mapping[str, str]) -> Audience:
    """Every non-recused member; steering members join when fewer than the quorum are left,
    when the chair is recused (they take the chair's place), and when they work on the case
    (`Exclusions.steering_works`)."""
    active = tuple(m for m in roster.members if m.email not in recused)
    excluded = _excluded(roster.members, recused)
    chair_recused = roster.chair is not None and roster.chair.email in recused
    steering_works = getattr(recused, "steering_works", False)
    if len(active) >= roster.quorum and not chair_recused and not steering_works:
        return Audience(active, excluded)
    steering = tuple(s for s in roster.steering if s.email not in recused and s.email not in {a.email for a in active})
    return Audience(active + steering, excluded + _excluded(roster.steering, recused), steering_included=True)


def chair(roster: Roster, recused: Mapping[str, str]) -> Audience:
    """The chair unless recused (or absent), else the steering members."""
    person = roster.chair
    if person is not None and person.email not in recused:
        return Audience((person,))
    return steering(roster, recused)


def steering(roster: Roster, recused: Mapping[str, str]) -> Audience:
    people = tuple(s for s in roster.steering if s.email not in recused)
    return Audience(people, _excluded(roster.steering, recused), steering_included=True)


def escalation(roster: Roster, recused: Mapping[str, str], level: int) -> Audience:
    """Level 1: the committee and the chair; level 2 and above: the steering members (when every
    steering member is excluded, the committee and the chair again: an escalation never goes
    nowhere)."""
    if level >= 2 and (ladder_top := steering(roster, recused)).recipients:
        return ladder_top
    base = committee(roster, recused)
    extra = tuple(p for p in chair(roster, recused).recipients if p not in base.recipients)
    return Audience(base.recipients + extra, base.excluded, base.steering_included or bool(extra))


def works_on(roster: Roster, recused: Mapping[str, str], email: str) -> bool:
    """Whether this person works the case, and so may act on it and read it back: they are in its
    committee audience (steering members when they stand in for the committee, when it was
    escalated to them, when they reconsider it). Otherwise the steering committee gets case
    reports without identities, never the case."""
    email = email.lower()
    return any(p.email == email for p in committee(roster, recused).recipients)


def may_see(roster: Roster, recused: Mapping[str, str], email: str) -> bool:
    """Whether this person may receive or act on mail about the case: who works on it, and any
    steering member it does not exclude (reports, escalations)."""
    return works_on(roster, recused, email) or (
        email.lower() not in recused and any(s.email == email.lower() for s in roster.steering)
    )
