"""A person added to the roster is checked against the open cases, as each report was checked
against the roster of its day: a case whose mail names them, or that holds them as a party, is
kept from them before anything more of it reaches them (a steering member who joins after a case
was escalated to the steering members would otherwise get it). Run at start and after a reload.

Who was on the roster before is kept as hashes in `database_meta` (no addresses stored there);
the first run only records the roster.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from conduct_inbox.cases import recusals
from conduct_inbox.cases.context import Context, recused
from conduct_inbox.core import scanning, states
from conduct_inbox.core.recusal import detect
from conduct_inbox.core.roster import Person, Roster
from conduct_inbox.errors import MalformedMessage
from conduct_inbox.mail.parse import parse
from conduct_inbox.store.models import Case, DatabaseMeta, InboundMessage

SEEN = "roster:"


def _key(email: str) -> str:
    return SEEN + hashlib.sha256(email.lower().encode()).hexdigest()[:32]


def newcomers(session: Session, roster: Roster) -> list[Person]:
    """The roster's people not on it when this last ran (recorded as seen now; people who left are
    forgotten, so one who comes back is checked again); none the first time."""
    people = [*roster.members, *roster.steering]
    seen = set(session.scalars(select(DatabaseMeta.name).where(DatabaseMeta.name.like(SEEN + "%"))))
    current = {_key(p.email) for p in people}
    session.execute(delete(DatabaseMeta).where(DatabaseMeta.name.in_(sorted(seen - current))))
    new = [p for p in people if _key(p.email) not in seen]
    for person in new:
        session.add(DatabaseMeta(name=_key(person.email), value="seen"))
    session.flush()
    return new if seen else []


def _readable(raw: bytes, ctx: Context) -> list[str]:
    """Everything a person could read in a stored message, as the scan at intake read it
    (subject, every alternative, attachments, file names, forwarded messages)."""
    try:
        msg = parse(raw, case_tag=ctx.options.case_tag)
    except MalformedMessage:
        return []
    return [msg.subject, *(r.text for r in msg.readable)]


def exclude_newcomers(ctx: Context, session: Session, now: datetime) -> int:
    """Exclude each newcomer from the open cases that name them or hold them as a party. Returns
    how many cases changed."""
    emails = {p.email for p in newcomers(session, ctx.roster)}
    if not emails:
        return 0
    changed = 0
    for case in session.scalars(select(Case).where(Case.status != states.CLOSED, Case.purged_at.is_(None))):
        texts = [t for raw in session.scalars(select(InboundMessage.raw).where(InboundMessage.case_id == case.id))
                 for t in _readable(raw, ctx)]
        found = [m.email for m in detect(ctx.roster, texts) if m.email in emails]
        found += [e for p in case.parties if (e := scanning.named_by(ctx.roster, p.address, p.name)) in emails]
        excluded = recused(case)
        found = [e for e in dict.fromkeys(found) if e not in excluded]
        if found:
            recusals.recuse_named(session, case, found, now)
            changed += 1
    return changed
