"""Internal notes: a member's text for the other members who may see the case, audited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from conduct_inbox.cases import mailer
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.context import Context
from conduct_inbox.core.roster import Person
from conduct_inbox.store.models import Case


def file_note(ctx: Context, session: Session, case: Case, member: Person, text: str, now: datetime, **detail: object) -> str:
    """An internal note to the other members who may see the case; returns their names."""
    event(session, case.id, member.email, "note_added", now, **detail)
    return mailer.note_to_others(session, ctx, case, member, text, now)
