"""The audit trail: every transition and every command is an event (who, what, when).

Events are written at once with a plain INSERT (never read back as objects), in the caller's
transaction; details carry ids only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from conduct_inbox.store.models import Case, Event

_INSERT_EVENT = insert(Event.__table__)

Entry = tuple[str, str, dict[str, Any]]


def event(session: Session, case_id: int | None, actor: str, action: str, now: datetime, **detail: Any) -> None:
    """Append to the audit trail at once (a plain INSERT: events are never read back as objects)."""
    events(session, case_id, now, (actor, action, detail))


def events(session: Session, case_id: int | None, now: datetime, *entries: Entry) -> None:
    """Several audit entries (actor, action, detail) in one INSERT, in this order."""
    session.connection().execute(_INSERT_EVENT, [{"case_id": case_id, "actor": actor, "action": action, "at": now,
                                                   "detail": detail} for actor, action, detail in entries])


def written(session: Session, case: Case, now: datetime, entries: list[Entry]) -> list[Entry]:
    """Write the collected audit entries of a case (before others that must follow them); none left."""
    if entries:
        events(session, case.id, now, *entries)
    return []
