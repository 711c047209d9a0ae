"""What the intake calls: the facts a message is classified by, then applying the classified
message to the case store, in the caller's transaction. Every state change and the mail it
causes (outbox rows) commit together or not at all. Handlers are found by message kind in
`ON_KIND`; committee mail goes to the desk.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from conduct_inbox.cases import desk, fences, mailer, merge, reports
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.context import Context, Options, recused
from conduct_inbox.cases.threads import thread_case_id
from conduct_inbox.core import routing, states, tokens
from conduct_inbox.core.classify import CaseFacts, Classification, Facts, Policy, is_automatic, verp_row
from conduct_inbox.core.roster import Roster
from conduct_inbox.mail.addresses import canonical_address
from conduct_inbox.mail.compose import Sender
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import Attachment, Case, Event, InboundMessage, OutboxMessage, Party, Quarantine
from conduct_inbox.store.outbox import mark_failed

log = logging.getLogger(__name__)

#: What recovery takes in again: what reporters and parties wrote. Committee commands, delivery
#: reports and our own mail are recorded only: replaying a command on a database that has moved on
#: could act twice or on the wrong case.
RECOVERABLE = frozenset({"new_report", "followup", "auto_followup", "stray_followup"})

#: What a delivery report's signed VERP address is checked against.
_BOUNCE_ROW = select(OutboxMessage.sent_at, OutboxMessage.recipient, OutboxMessage.message_id).where(
    OutboxMessage.id == bindparam("row_id"))


def dedupe_key(message_id: str, body_hash: str) -> str:
    return hashlib.sha256(f"{message_id}\0{body_hash}".encode()).hexdigest()


# ----- facts for classification -----------------------------------------------------------------


def facts(ctx: Context, session: Session, msg: Parsed) -> Facts:
    """What `classify` needs to know about a message from the case store and the roster."""
    # Our Message-IDs are all <hex>@<our domain> (outbox.new_message_id): others need no look.
    own = (
        msg.message_id is not None
        and msg.message_id.lower().endswith("@" + ctx.sender.domain.lower())
        and _outbox_row_by_message_id(session, msg.message_id) is not None
    )
    # check-config's probe: from our own address to a probe plus-address (no report looks so).
    probe_prefix = ctx.policy.local_part + "+probe-"
    own = own or (msg.from_address == ctx.policy.address.lower()
                  and any(a.startswith(probe_prefix) and a.endswith("@" + ctx.policy.domain) for a in msg.to))
    bounce = _bounce_facts(ctx, session, msg) if msg.is_dsn else {}
    member = ctx.roster.person(msg.from_address)
    case_row = _case_for(session, msg, member_sender=member is not None)
    case = None if case_row is None else CaseFacts(
        case_row.id, case_row.ref, frozenset(canonical_address(p.address) for p in case_row.parties), case_row.status
    )
    found = tokens.tokens_in((*msg.to, *msg.cc, *msg.delivered_to[:1]), ctx.policy.local_part, ctx.policy.domain)
    dmarc = (
        case_row is not None and member is not None and routing.may_see(ctx.roster, recused(case_row), member.email)
        and desk.dmarc_pass(msg, ctx.options.trusted_authserv_id, member.email)
    )
    refs = merge.token_refs(session, case_row) if case_row is not None else tuple(filter(None, [msg.case_ref]))
    return Facts(own_message=own, case=case, token_owners=desk.token_owners(ctx, found, refs),
                 member_dmarc_pass=dmarc, member_sender=member is not None,
                 unknown_case_ref=bool(msg.case_ref) and case_row is None, **bounce)


def _bounce_facts(ctx: Context, session: Session, msg: Parsed) -> dict[str, Any]:
    """What a DSN's signed VERP address says: its row, whether that row was sent, whether the
    DSN names its recipient. A DSN's Message-ID of ours alone names no row (it may be quoted in
    a thread others read); without a token secret no address is signed and no row is named."""
    rows: dict[int, Any] = {}

    def message_id_of(row_id: int) -> str | None:
        rows[row_id] = session.execute(_BOUNCE_ROW, {"row_id": row_id}).first()
        return None if rows[row_id] is None else rows[row_id].message_id

    row_id = verp_row(msg, ctx.policy, ctx.options.secrets, message_id_of)
    found = rows.get(row_id) if row_id is not None else None
    if found is None:
        return {}
    failed = {a.strip().strip("<>").lower() for a in msg.dsn_failed_recipients}
    return {"bounce_row": row_id, "bounce_row_sent": found.sent_at is not None,
            "bounce_names_recipient": found.recipient.lower() in failed}


def _outbox_row_by_message_id(session: Session, message_id: str) -> int | None:
    """The id of our outgoing mail with this Message-ID (ids only: the mail itself can be large)."""
    return session.scalars(select(OutboxMessage.id).where(OutboxMessage.message_id == message_id).limit(1)).first()


def _case_for(session: Session, msg: Parsed, member_sender: bool) -> Case | None:
    case = None
    if msg.case_ref:
        case = session.scalars(select(Case).where(Case.ref == msg.case_ref)).first()
        if case is None and member_sender:
            # A member acts on the reference they write. Guessing from the thread instead would act
            # on another case, and answer an unknown reference differently from one kept from them.
            return None
    if case is None:
        case_id = thread_case_id(session, msg)
        case = session.get(Case, case_id) if case_id is not None else None
    if case is None and msg.case_ref and msg.reporter_address and fences.is_lost_ref(session, msg.case_ref):
        case = _recovered_case_of(session, msg.reporter_address)
    # Mail about a case merged into another (`!merge`) belongs to that other case. A purged case
    # holds nothing, not even who it excluded: mail about it is mail about no case (a report).
    case = merge.resolve(session, case) if case is not None else None
    return None if case is None or case.purged_at is not None else case


def _recovered_case_of(session: Session, reporter: str) -> Case | None:
    """The one case taken in again after a restore whose reporter is `reporter`: where their mail
    about a reference lost in the restore belongs (several, or none: no guess)."""
    ids = session.scalars(
        select(Party.case_id).join(Event, Event.case_id == Party.case_id)
        .where(Party.role == "reporter", Party.address == reporter, Event.action == "recovered_after_restore")
        .distinct().limit(2)
    ).all()
    return session.get(Case, ids[0]) if len(ids) == 1 else None


# ----- one handler per message kind -------------------------------------------------------------

Handler = Callable[[Context, Session, InboundMessage, Parsed, Classification, datetime], str]


def _own_loop(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    row.status = "dropped"
    return "dropped: our own mail came back"


def _bounce(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    row.status = "machine"
    assert result.bounce_row is not None
    reason = "delivery report: permanent failure" if msg.dsn_permanent else "delivery report"
    if not msg.dsn_permanent:
        return f"delivery report (not final) for outbox row {result.bounce_row}"
    mark_failed(session, result.bounce_row, reason, now, partial(on_delivery_failure, ctx))
    return f"bounce for outbox row {result.bounce_row}"


def _machine(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    row.status = "machine"
    if result.bounce_row is not None:
        # Signed for a row, but the row was not sent yet or the report does not name its
        # recipient: a forgery or a confused mail system. It changes nothing.
        return f"delivery report for outbox row {result.bounce_row} not applied (row not sent, or its recipient not named): stored"
    return "delivery report matching none of our mail: stored"


def _new_report(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    # Nothing queried below depends on changes not yet flushed (mail and events are written at
    # once): flush only where an id is needed, not before every query.
    with session.no_autoflush:
        return reports.open_reported_case(ctx, session, row, msg, result, now)


def _case(session: Session, result: Classification) -> Case:
    assert result.case is not None
    case = session.get(Case, result.case.id)
    assert case is not None
    return case


def _followup(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    case = _case(session, result)
    row.case_id, row.status = case.id, "processed"
    closed = case.status == states.CLOSED
    event(session, case.id, "party", "feedback_received" if closed else "followup_received", now, inbound_id=row.id)
    heading, urgent = _urgency(ctx, session, case, msg, now, "Feedback after closure" if closed else "Follow-up from a party")
    sender = {canonical_address(a) for a in (msg.reporter_address, msg.from_address) if a}
    roles = {p.role for p in case.parties if canonical_address(p.address) in sender}
    reports.forward_to_committee(ctx, session, case, row, msg, now, heading, roles or {"unknown"}, urgent=urgent)
    return f"follow-up joined case {case.ref}"


def _auto_followup(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    case = _case(session, result)
    if states.is_open(case.status) and not case.urgent and reports.is_urgent(ctx, case, msg):
        # Automatic markers (a web form, a list) on mail that writes of danger: someone wrote it.
        return _followup(ctx, session, row, msg, result, now)
    row.case_id, row.status = case.id, "processed"
    event(session, case.id, "system", "automatic_reply_received", now, inbound_id=row.id)
    return f"automatic reply joined case {case.ref} (not forwarded)"


def _urgency(ctx: Context, session: Session, case: Case, msg: Parsed, now: datetime, heading: str) -> tuple[str, bool]:
    """Anyone writing of danger on a running case makes it urgent, as a new report would (the safe
    direction: shorter deadlines, the committee told at once). Returns the copy's heading and
    whether this mail made the case urgent."""
    if not states.is_open(case.status) or case.urgent or not reports.is_urgent(ctx, case, msg):
        return heading, False
    reports.check_urgency(ctx, session, case, msg, now)
    return (f"URGENT — {heading}: case {case.ref} is now marked URGENT and its deadlines are short. Consider "
            "whether law enforcement must be notified"), True


def _stray_followup(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    case = _case(session, result)
    row.case_id, row.status = case.id, "processed"
    event(session, case.id, "unknown", "message_from_non_party", now, inbound_id=row.id)
    heading, urgent = _urgency(ctx, session, case, msg, now, "Message from someone who is not a party to the case")
    reports.forward_to_committee(ctx, session, case, row, msg, now, heading, {"unknown"}, urgent=urgent)
    return f"message from a non-party kept on case {case.ref} and flagged"


def _committee(ctx: Context, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
    if is_automatic(msg, ctx.policy):  # a member's out-of-office: never a note or a command
        row.status, row.kind = "processed", "auto_reply"
        row.case_id = result.case.id if result.case is not None else None
        event(session, row.case_id, "system", "automatic_reply_received", now, inbound_id=row.id)
        return "automatic reply on a reply token: recorded, not forwarded"
    return desk.handle(ctx, session, row, msg, result, now)


#: The handler of each kind `classify` gives a message.
ON_KIND: dict[str, Handler] = {
    "own_loop": _own_loop,
    "bounce": _bounce,
    "machine": _machine,
    "new_report": _new_report,
    "followup": _followup,
    "auto_followup": _auto_followup,
    "stray_followup": _stray_followup,
    "committee": _committee,
}


def on_delivery_failure(ctx: Context, session: Session, row: OutboxMessage, now: datetime) -> None:
    """A mail failed for good: audit it and alert (never about an alert, to avoid storms)."""
    event(session, row.case_id, "system", "delivery_failed", now, outbox_id=row.id, code=row.last_code)
    if row.kind == "alert":
        log.error("alert mail (outbox row %d) could not be delivered", row.id)
        return
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    where = f" about case {case.ref}" if case is not None else ""
    mailer.alert(
        session, ctx, case,
        f"Mail{where} could not be delivered: outbox row {row.id} ({row.kind} to a {row.audience}), "
        f"reply code {row.last_code or 'n/a'}.",
        now,
    )


class Inbound:
    """The case store's side of the intake, for one configuration (`ctx`)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    @property
    def roster(self) -> Roster:
        return self.ctx.roster

    @property
    def policy(self) -> Policy:
        return self.ctx.policy

    @property
    def sender(self) -> Sender:
        return self.ctx.sender

    @property
    def options(self) -> Options:
        return self.ctx.options

    @options.setter
    def options(self, options: Options) -> None:
        self.ctx.options = options

    def facts(self, session: Session, msg: Parsed) -> Facts:
        return facts(self.ctx, session, msg)

    def apply(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        """Record the message and everything it causes. Returns the outcome for the log line."""
        row.kind = result.kind
        row.sender = (msg.reporter_address or msg.from_address or "")[:320] or None
        row.subject = msg.subject
        row.body_text = msg.text
        row.own_text = msg.own_text
        row.processed_at = now
        for att in msg.attachments:
            session.add(
                Attachment(
                    inbound_id=row.id,
                    filename=(att.filename or None) and att.filename[:255],
                    content_type=att.content_type[:255],
                    size=att.size,
                    sha256=att.sha256,
                    inline=att.inline,
                )
            )
        if self.ctx.options.recovering and result.kind not in RECOVERABLE:
            row.status = "dropped"
            event(session, None, "system", "not_replayed_after_restore", now, inbound_id=row.id, kind=result.kind)
            recused: list[str] = []
            if result.kind == "committee":
                recused = desk.replay_recusals(self.ctx, session, msg, result.case.id if result.case else None, now)
            return f"{result.kind} mail from before the restore: recorded, not replayed" + (
                f" (its recusals applied again: {len(recused)})" if recused else "")
        return ON_KIND[result.kind](self.ctx, session, row, msg, result, now)

    def on_delivery_failure(self, session: Session, row: OutboxMessage, now: datetime) -> None:
        on_delivery_failure(self.ctx, session, row, now)

    def alert(self, session: Session, case: Case | None, text: str, now: datetime) -> None:
        mailer.alert(session, self.ctx, case, text, now)

    def quarantine(self, session: Session, row: InboundMessage, reason: str, now: datetime) -> None:
        row.status = "quarantined"
        row.error = reason[:200]
        row.processed_at = now
        session.add(Quarantine(inbound_id=row.id, reason=reason[:200], created_at=now))
        event(session, None, "system", "message_quarantined", now, inbound_id=row.id, attempts=row.attempts)
        mailer.alert(
            session, self.ctx, None,
            f"Incoming message #{row.id} could not be processed after {row.attempts} attempt(s) ({reason}). "
            "It is kept unchanged and was moved to the quarantine folder. Please look at it by hand.",
            now,
        )
