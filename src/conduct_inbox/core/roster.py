"""The people who handle cases: committee members and steering members, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conduct_inbox.mail.addresses import canonical_address


@dataclass(frozen=True)
class Person:
    name: str
    email: str  # lowercased
    aliases: tuple[str, ...] = ()
    chair: bool = False
    steering: bool = False


@dataclass(frozen=True)
class Roster:
    members: tuple[Person, ...]
    steering: tuple[Person, ...] = ()
    quorum: int = 2
    by_email: dict[str, Person] = field(init=False, repr=False, compare=False)

    by_canonical: dict[str, Person] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        everyone = {p.email: p for p in (*self.steering, *self.members)}
        object.__setattr__(self, "by_email", everyone)
        object.__setattr__(self, "by_canonical", {canonical_address(e): p for e, p in everyone.items()})

    def person(self, email: str | None) -> Person | None:
        """The roster person an address belongs to, also under another spelling of their mailbox
        (`Bob+events@example.org` is Bob: a member recorded as reported that way is still recused)."""
        if email is None:
            return None
        return self.by_email.get(email.lower()) or self.by_canonical.get(canonical_address(email))

    @property
    def chair(self) -> Person | None:
        return next((m for m in self.members if m.chair), None)

    def find(self, name: str) -> Person | None:
        """A person by email, full name or alias (case-insensitive), for `!assign NAME` and friends."""
        wanted = " ".join(name.split()).casefold()
        for person in (*self.members, *self.steering):
            names = {person.email, person.name.casefold(), *(a.casefold() for a in person.aliases)}
            if wanted in names or wanted == person.name.split()[0].casefold():
                return person
        return None


def roster_from_settings(settings: Any) -> Roster:
    """Build the roster from loaded Settings (committee.members, steering.members, committee.quorum).

    `settings` is a config.Settings, typed loosely because config/ sits above core/ in the layers."""
    committee = settings.committee
    steering = settings.steering
    members = tuple(
        Person(m.name, m.email.lower(), tuple(m.aliases), bool(getattr(m, "chair", False)))
        for m in committee.members
    )
    steering_people = tuple(
        Person(m.name, m.email.lower(), tuple(m.aliases), False, steering=True) for m in steering.members
    )
    return Roster(members, steering_people, committee.quorum)
