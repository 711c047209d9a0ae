"""After a restore from an older backup: fence off what the lost stretch issued, take its reports in again.

Between the backup and the restore the daemon went on: it opened cases, handed out case
references, reply tokens and bounce addresses, and moved each message it processed to the
processed folder. The restored database knows none of that. Recovery, run once per restore:

1. Fences the case references. Every case was opened by a message now in the processed folder,
   so the references issued since the backup are at most one per message that arrived there since
   (plus a margin for mail moved by hand). The year's counter jumps past them, and the skipped range
   is recorded: those references are never issued again, and a member's mail about one is refused
   as an unknown case (the committee is told once). Reply tokens name a case reference, so they
   are fenced with it; bounce addresses sign the Message-ID of their mail (tokens.py), so a row
   id issued again cannot be named by a delivery report for the lost mail.
2. Takes every message in the processed folder that arrived since the backup (less a day: SEARCH
   SINCE counts whole days) through the normal intake, in recovery mode: a message known already is
   a repeated delivery and changes nothing; a report becomes a case again, without a second
   acknowledgement to its reporter; a follow-up joins its case; committee commands and delivery
   reports are recorded and not replayed. Messages stay where they are.
3. Tells the committee (ids and references only) what was recovered and what was not replayed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from typing import Any

from sqlalchemy import Engine, func, select, update

from conduct_inbox.cases.fences import fence_refs
from conduct_inbox.config import Settings
from conduct_inbox.errors import MailboxUnavailable
from conduct_inbox.mail.headers import _message_ids as message_ids
from conduct_inbox.ports import Clock, Destination, Mailbox, MailCopy
from conduct_inbox.shell.app import build_app
from conduct_inbox.shell.backup import RECOVERY_PENDING, meta_value, taken_at
from conduct_inbox.shell.components import make_mailbox
from conduct_inbox.shell.engines import engine_for
from conduct_inbox.store import db
from conduct_inbox.store.models import Case, DatabaseMeta, Event, InboundMessage, OutboxMessage

log = logging.getLogger(__name__)

#: References skipped beyond one per message found: mail moved out of the processed folder by hand.
FENCE_MARGIN = 500
#: How long before the backup a message may have arrived and still have been processed after it
#: (the daemon down for days while backups ran; a message moved back from the quarantine).
LOOK_BACK = timedelta(days=14)
FENCED = "recovery-fenced"  # the backup point whose references are fenced (a rerun fences no more)


class _ProcessedFolder:
    """The processed folder as an intake folder that nothing leaves: its messages are only read."""

    def __init__(self, inner: Mailbox, since: datetime):
        self.inner = inner
        self.identity = inner.identity
        self.since = since

    def connect(self) -> int:
        return self.inner.connect()

    def uids(self) -> list[int]:
        search = getattr(self.inner, "uids_since", None)
        if search is None:  # a Maildir (the demo): all of it
            return self.inner.uids()
        return list(search((self.since - LOOK_BACK).date()))

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        return self.inner.fetch(uids)

    def move(self, uids: Sequence[int], destination: Destination) -> None:
        pass  # in the processed folder already; a quarantined one is recorded as such and stays

    def contains(self, message_id: str) -> bool:
        return self.inner.contains(message_id)

    def delete_copies(self, copies: Sequence[MailCopy]) -> int:
        return 0

    def wait_for_mail(self, timeout: float) -> bool:
        return False

    def interrupt(self) -> None:
        self.inner.interrupt()

    def close(self) -> None:
        self.inner.close()


def _processed_folder_mailbox(settings: Settings) -> Mailbox:
    box = settings.mailbox
    if box.host:
        moved = box.model_copy(update={"folder": box.processed_folder})
        return make_mailbox(settings.model_copy(update={"mailbox": moved}))
    from conduct_inbox.adapters.maildir import SUBFOLDERS, MaildirMailbox

    return MaildirMailbox(f"{box.maildir}/{SUBFOLDERS['processed']}")


def _backup_point(engine: Engine, since: datetime | None) -> datetime:
    if since is not None:
        return since
    pending = meta_value(engine, RECOVERY_PENDING)
    if pending:
        return datetime.fromisoformat(pending)
    taken = taken_at(engine)
    if taken is not None:
        return taken
    # A database restored by other means (pg_restore): its newest record is the backup point.
    with engine.connect() as connection:
        newest = [connection.execute(select(func.max(column))).scalar()
                  for column in (InboundMessage.received_at, OutboxMessage.created_at, Event.at, Case.created_at)]
    known = [t for t in newest if t is not None]
    if not known:
        raise ValueError("the database is empty: nothing to recover against (give --since)")
    return max(known)


#: At most this many of the newest processed messages are read at start (a day's mail, usually).
START_CHECK_LIMIT = 200


def unrecorded_since_newest(settings: Settings, engine: Engine, mailbox: Mailbox | None = None) -> int:
    """How many messages that reached the processed folder on or after the day of the newest message
    this database recorded it does not know: more than none means the database is older than the
    mailbox (restored from a backup by any means: pg_restore, a file copy), or mail was filed there
    by hand. Checked when the daemon starts; messages without a Message-ID are not counted."""
    with engine.connect() as connection:
        newest = connection.execute(select(func.max(InboundMessage.received_at))).scalar()
    if newest is None:
        return 0
    box = mailbox or _processed_folder_mailbox(settings)
    search = getattr(box, "uids_since", None)
    if search is None:
        return 0  # a Maildir (the demo)
    try:
        box.connect()
        uids = list(search(newest.date()))[-START_CHECK_LIMIT:]
        raws = box.fetch(uids) if uids else {}
    finally:
        box.close()
    parser = BytesHeaderParser()
    unknown = 0
    with engine.connect() as connection:
        for raw in raws.values():
            ids = message_ids(str(parser.parsebytes(raw).get("Message-ID") or ""))
            if not ids:
                continue
            known = connection.execute(select(InboundMessage.id).where(
                InboundMessage.message_id == ids[0][:998]).limit(1)).first()
            unknown += known is None
    return unknown


def recover_if_behind(settings: Settings, engine: Engine, clock: Clock) -> Recovered | None:
    """At start: recover when the processed folder shows that the database is older than the mailbox."""
    try:
        unknown = unrecorded_since_newest(settings, engine)
    except MailboxUnavailable as exc:
        log.warning("start-up check of the processed folder skipped: %s", exc)
        return None
    if not unknown:
        return None
    log.warning("the processed folder holds %d message(s) this database never recorded (restored from an older "
                "backup?): recovering before anything else", unknown)
    return recover(settings, clock, engine=engine)


@dataclasses.dataclass
class Recovered:
    backup_point: datetime
    looked_at: int
    outcomes: Counter[str]
    fenced: dict[int, tuple[int, int]]
    new_cases: list[str]


def recover(
    settings: Settings, clock: Clock, *, since: datetime | None = None,
    mailbox: Mailbox | None = None, engine: Engine | None = None,
) -> Recovered:
    engine = engine or engine_for(settings)
    now = clock()
    point = _backup_point(engine, since)
    box = _ProcessedFolder(mailbox or _processed_folder_mailbox(settings), point)
    box.connect()
    found = box.uids()
    sessions = db.session_factory(engine)
    with sessions() as session, session.begin():
        done = session.get(DatabaseMeta, FENCED)
        fenced = {}
        if done is None or done.value != point.isoformat():
            fenced = fence_refs(session, range(point.year, now.year + 1), len(found) + FENCE_MARGIN)
            session.merge(DatabaseMeta(name=FENCED, value=point.isoformat()))
    held = _hold_outward_mail(sessions, point)
    log.info("recovery: references fenced, %d message(s) in the processed folder since the backup", len(found))
    before = _max_case_id(engine)
    app = build_app(settings, mailbox=box, engine=engine, clock=clock)
    app.inbound.options = dataclasses.replace(app.inbound.options, recovering=True)
    try:
        stats = app.intake.poll_once()
    finally:
        app.intake.close()
        app.dispatcher.close()
        app.intake.parser.close()  # type: ignore[attr-defined]  # Intake types its parser as a plain callable; build_app gives one with close()
        box.close()
        if app.crash_safe_engine is not None:
            app.crash_safe_engine.dispose()
    outcomes: Counter[str] = Counter(_outcome_kind(o) for o in stats.outcomes)
    outcomes["quarantined"] += stats.quarantined
    outcomes["failed"] += stats.failed
    with sessions() as session, session.begin():
        new_cases = list(session.scalars(select(Case.ref).where(Case.id > before).order_by(Case.id)))
        app.inbound.options = dataclasses.replace(app.inbound.options, recovering=False)
        app.inbound.alert(session, None, _summary(point, fenced, new_cases, outcomes, held), now)
        meta = session.get(DatabaseMeta, RECOVERY_PENDING)
        if meta is not None:
            session.delete(meta)
    return Recovered(point, len(found), outcomes, fenced, new_cases)


def _max_case_id(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.max(Case.id))).scalar() or 0)


def _outcome_kind(outcome: str) -> str:
    if outcome.startswith("new case"):
        return "new case"
    if outcome.startswith("repeated delivery"):
        return "known already"
    if "not replayed" in outcome:
        return "not replayed"
    if "joined case" in outcome:
        return "follow-up"
    return "other"


def _hold_outward_mail(sessions: Any, point: datetime) -> list[str]:
    """Mail to reporters and parties still waiting in the restored outbox: it may have gone out after
    the backup was taken (an acknowledgement is queued seconds before it is sent), and a reporter
    must not be acknowledged twice. It is held, not sent; the committee is told the cases."""
    with sessions() as session, session.begin():
        rows = session.execute(
            select(OutboxMessage.id, Case.ref).outerjoin(Case, Case.id == OutboxMessage.case_id)
            .where(OutboxMessage.status == "pending", OutboxMessage.audience.in_(("reporter", "party")),
                   OutboxMessage.created_at <= point)
        ).all()
        if rows:
            session.execute(update(OutboxMessage).where(OutboxMessage.id.in_([r.id for r in rows]))
                            .values(status="held", claimed_until=None,
                                    last_error="held after a restore: it may have been sent before it"))
    return sorted({r.ref for r in rows if r.ref})


def _summary(point: datetime, fenced: dict[int, tuple[int, int]], new_cases: list[str], outcomes: Counter[str],
             held: list[str]) -> str:
    lines = [
        f"The case database was restored from a backup taken {point:%Y-%m-%d %H:%M} UTC. Mail processed after",
        "that moment was looked for again in the processed folder.",
        "",
        f"Reports taken in again as cases (their reporters were acknowledged before and were not written to again): "
        f"{', '.join(new_cases) if new_cases else 'none'}.",
        f"Follow-ups joined to their cases again: {outcomes['follow-up']}.",
        f"Messages the database knew already: {outcomes['known already']}.",
        f"Committee commands and delivery reports recorded but not carried out again: {outcomes['not replayed']}"
        + (" - please send again any command you sent after the backup." if outcomes["not replayed"] else "."),
    ]
    if held:
        lines.append(f"Mail to reporters or parties that was waiting to be sent when the backup was taken may have gone out "
                     f"before the restore; it was not sent again (cases {', '.join(held)}): write with !reply if it did not.")
    if outcomes["quarantined"] or outcomes["failed"]:
        lines.append(f"Could not be read: {outcomes['quarantined'] + outcomes['failed']} (see the quarantine).")
    if fenced:
        ranges = "; ".join(f"{y}-{low:04d} to {y}-{high:04d}" for y, (low, high) in sorted(fenced.items()))
        lines += ["", f"Case references that may have been used after the backup are not issued again: {ranges}.",
                  "Mail about one of them is refused as an unknown case."]
    return "\n".join(lines)
