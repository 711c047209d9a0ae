"""What a command handler works on: one authenticated member's message on one case."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from conduct_inbox.cases.audit import event
from conduct_inbox.cases.context import Context
from conduct_inbox.core.roster import Person
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import Case, InboundMessage


@dataclass(frozen=True)
class Notice:
    """A line the other members must read about what a command did (a recusal, a proposal
    waiting for `!confirm`, an urgent mark); `kind` is the outbox kind it asks for, if any."""

    text: str
    kind: str | None = None


@dataclass(frozen=True)
class Call:
    """One member's commands on one case, inside the desk's savepoint."""

    ctx: Context
    session: Session
    row: InboundMessage
    case: Case
    member: Person
    msg: Parsed
    now: datetime
    #: What the handlers want the other members told: the desk sends it with the announcement of
    #: the message's commands, in one mail (even with `committee.announce = "none"`).
    notices: list[Notice] = field(default_factory=list)
    #: (to whom, text) of what `!reply`/`!send` sent: the members get a copy, the others in the
    #: same one mail.
    copies: list[tuple[str, str]] = field(default_factory=list)

    def tell(self, text: str, kind: str | None = None) -> None:
        """Tell the other members who may see the case, in the one mail about this message."""
        self.notices.append(Notice(text, kind))

    def copy(self, to_whom: str, text: str) -> None:
        """Give the members a copy of exactly what was sent to a party."""
        self.copies.append((to_whom, text))

    def event(self, action: str, **detail: object) -> None:
        """An audit entry by the member on the case."""
        event(self.session, self.case.id, self.member.email, action, self.now, **detail)

    def set_status(self, status: str) -> None:
        if self.case.status != status:
            self.event("status_changed", old=self.case.status, new=status)
            self.case.status = status
