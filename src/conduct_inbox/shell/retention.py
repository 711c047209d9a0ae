"""Retention: the contents of cases closed longer than `retention.closed_case_days` are deleted.

What goes: every message of the case (raw mail, bodies, attachments' records, quarantine entries),
its outgoing mail, its parties, its title, the parties named in decisions, and the
mailbox's processed copies of its messages. Machine mail, duplicates and quarantined messages that
never became a case go after the same time; a case merged into another goes after that one. What
stays: the case row with its reference, status, dates and flags, decision kinds, the audit events
(ids and enum values only), the sanctions ledger, so that statistics and the ledger outlive the
contents, and the recusals (which members the case concerned: mail written later under its
reference must not reach them).

The mailbox copies are deleted first: if the mailbox cannot be reached nothing is purged, and the
next run tries again (the database rows are what lets us find the copies).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, Select, delete, or_, select, text, update
from sqlalchemy.orm import Session, aliased, sessionmaker, undefer

from conduct_inbox.core import states
from conduct_inbox.ports import Mailbox, MailCopy
from conduct_inbox.store.models import Attachment, Case, Decision, Event, InboundMessage, OutboxMessage, Party

log = logging.getLogger(__name__)

_ORPHAN_STATUSES = ("machine", "dropped", "duplicate", "quarantined")


@dataclass
class PurgePlan:
    """What a purge removes: case refs with their closing time, and counts."""

    cutoff: datetime
    cases: list[tuple[str, datetime | None]] = field(default_factory=list)
    case_ids: list[int] = field(default_factory=list)
    messages: int = 0
    orphan_ids: list[int] = field(default_factory=list)
    orphan_messages: int = 0
    outgoing: int = 0

    @property
    def empty(self) -> bool:
        return not (self.case_ids or self.messages or self.orphan_messages or self.outgoing)


@dataclass
class PurgeResult:
    plan: PurgePlan
    mailbox_copies: int = 0


def _due_cases(cutoff: datetime) -> Select[Case]:
    closed = (Case.status == states.CLOSED) & (Case.closed_at <= cutoff)
    spam = Case.spam.is_(True) & (Case.updated_at <= cutoff)
    # A case merged into another (`!merge`) holds only its pointer and recusals, which the other
    # case's history reads its exclusion windows from: it goes once that case's contents went.
    target = aliased(Case)
    target_purged = select(target.id).where(target.id == Case.merged_into_id, target.purged_at.is_not(None)).exists()
    unmerged_or_with_target = Case.merged_into_id.is_(None) | target_purged
    return select(Case).where(Case.purged_at.is_(None), or_(closed, spam), unmerged_or_with_target).order_by(Case.id)


def _messages(case_ids: list[int], cutoff: datetime, orphan_ids: list[int] | None = None) -> Select[InboundMessage]:
    """The messages of these cases, and old ones that never became a case (only `orphan_ids` if given)."""
    orphan: ColumnElement[bool] = InboundMessage.case_id.is_(None) & InboundMessage.status.in_(_ORPHAN_STATUSES) & (
        InboundMessage.received_at <= cutoff
    )
    if orphan_ids is not None:
        orphan = InboundMessage.id.in_(orphan_ids)
    return select(InboundMessage).where(or_(InboundMessage.case_id.in_(case_ids), orphan))


def _outgoing(case_ids: list[int], cutoff: datetime) -> ColumnElement[bool]:
    # Alerts without a case (quarantine, failed delivery) go too once old and settled.
    orphan = OutboxMessage.case_id.is_(None) & OutboxMessage.status.in_(("sent", "failed")) & (
        OutboxMessage.created_at <= cutoff
    )
    return or_(OutboxMessage.case_id.in_(case_ids), orphan)


def plan(session: Session, now: datetime, days: int, limit: int | None = None) -> PurgePlan:
    """What a purge at `now` would remove (nothing when `days` is 0: retention is off).
    `limit`: at most this many cases and this many other old messages (one batch)."""
    result = PurgePlan(cutoff=now - timedelta(days=days))
    if days <= 0:
        return result
    for case in session.scalars(_due_cases(result.cutoff).limit(limit)):
        result.cases.append((case.ref, case.closed_at or case.updated_at))
        result.case_ids.append(case.id)
    orphans = _messages([], result.cutoff).with_only_columns(InboundMessage.id).limit(limit)
    result.orphan_ids = list(session.scalars(orphans))
    result.orphan_messages = len(result.orphan_ids)
    result.messages = len(session.scalars(
        select(InboundMessage.id).where(InboundMessage.case_id.in_(result.case_ids))).all()) if result.case_ids else 0
    result.outgoing = len(
        session.scalars(select(OutboxMessage.id).where(_outgoing(result.case_ids, result.cutoff)).limit(limit)).all()
    )
    return result


def _copies(session: Session, purge: PurgePlan) -> list[MailCopy]:
    query = _messages(purge.case_ids, purge.cutoff, purge.orphan_ids).options(undefer(InboundMessage.raw))
    query = query.execution_options(yield_per=50)
    return [
        MailCopy(row.message_id, len(row.raw), hashlib.sha256(row.raw).hexdigest())
        for row in session.scalars(query)
    ]


#: Cases (and other old messages) purged per transaction: bounds memory and lock time.
BATCH = 200


def purge_all(sessions: sessionmaker[Session], mailbox: Mailbox | None, now: datetime, days: int) -> PurgeResult:
    """Purge batch after batch until nothing is due; returns the totals."""
    total = PurgeResult(PurgePlan(cutoff=now - timedelta(days=days)))
    while True:
        result = purge(sessions, mailbox, now, days, limit=BATCH)
        if result.plan.empty:
            return total
        done = result.plan
        total.plan.cases += done.cases
        total.plan.case_ids += done.case_ids
        total.plan.messages += done.messages
        total.plan.orphan_messages += done.orphan_messages
        total.plan.outgoing += done.outgoing
        total.mailbox_copies += result.mailbox_copies


def purge(
    sessions: sessionmaker[Session], mailbox: Mailbox | None, now: datetime, days: int, limit: int | None = None
) -> PurgeResult:
    """Remove what `plan` lists: the mailbox copies first, then the rows in one transaction."""
    with sessions() as session:
        todo = plan(session, now, days, limit)
        if todo.empty:
            return PurgeResult(todo)
        copies = _copies(session, todo)
    result = PurgeResult(todo)
    if mailbox is not None and copies:
        result.mailbox_copies = mailbox.delete_copies(copies)
    with sessions() as session, session.begin():
        doomed = _messages(todo.case_ids, todo.cutoff, todo.orphan_ids).with_only_columns(InboundMessage.id).scalar_subquery()
        session.execute(
            update(InboundMessage).where(InboundMessage.duplicate_of_id.in_(doomed)).values(duplicate_of_id=None)
        )
        session.execute(update(OutboxMessage).where(OutboxMessage.inbound_id.in_(doomed)).values(inbound_id=None))
        session.execute(delete(Attachment).where(Attachment.inbound_id.in_(doomed)))
        ids = session.scalars(_messages(todo.case_ids, todo.cutoff, todo.orphan_ids).with_only_columns(InboundMessage.id)).all()
        for start in range(0, len(ids), 500):
            session.execute(delete(InboundMessage).where(InboundMessage.id.in_(ids[start : start + 500])))
        session.execute(delete(OutboxMessage).where(_outgoing(todo.case_ids, todo.cutoff)))
        if todo.case_ids:
            session.execute(delete(Party).where(Party.case_id.in_(todo.case_ids)))
            # Recusals stay (member addresses only): a report written later under the purged case's
            # reference must still not reach the member it concerned (`recusals.carry_over`).
            session.execute(
                update(Decision).where(Decision.case_id.in_(todo.case_ids)).values(target_address=None)
            )
            session.execute(
                update(Case)
                .where(Case.id.in_(todo.case_ids))
                .values(title="", assignee=None, forwarded_by=None, purged_at=now)
            )
            for case_id in todo.case_ids:
                session.add(Event(case_id=case_id, at=now, actor="system", action="purged", detail={"days": days}))
    log.info(
        "retention: purged %d case(s), %d message(s), %d outgoing mail(s), %d mailbox copies",
        len(todo.case_ids), todo.messages + todo.orphan_messages, todo.outgoing, result.mailbox_copies,
    )
    return result


def compact(engine: Engine) -> None:
    """Give freed space back and overwrite it: VACUUM (SQLite also checkpoints and truncates its WAL).

    SQLite's secure_delete already zeroes freed pages; VACUUM rebuilds the file without them. On
    PostgreSQL a plain VACUUM makes the space reusable but old row versions may linger on disk
    until overwritten: use encryption at rest there (README, "Retention").
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("VACUUM"))
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        else:
            for table in ("inbound_messages", "attachments", "outbox", "parties", "recusals", "decisions", "cases"):
                conn.execute(text(f"VACUUM {table}"))
