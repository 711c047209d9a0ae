"""Applies a classified inbound message to the case store, in the caller's transaction.

Every state change and the mail it causes (outbox rows) commit together or not at all.
Committee recipients come only from `routing`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.orm import Session

from conduct_inbox.cases import fences
from conduct_inbox.cases.committee import Desk, dmarc_pass
from conduct_inbox.cases.render import Renderer
from conduct_inbox.core import party_mail, routing, scanning, tokens
from conduct_inbox.core.classify import CaseFacts, Classification, Facts, Policy, is_automatic, verp_row
from conduct_inbox.core.commands import strip_commands, title_of
from conduct_inbox.core.party_mail import OutwardDraft
from conduct_inbox.core.promises import Promises, hours_text
from conduct_inbox.core.roster import Person, Roster
from conduct_inbox.core.sla import is_urgent_text
from conduct_inbox.mail.addresses import canonical_address
from conduct_inbox.mail.compose import Draft, OutgoingAttachment, Sender
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.db import DIALECT_INSERTS
from conduct_inbox.store.models import (
    Attachment,
    Case,
    CaseCounter,
    Decision,
    Event,
    InboundMessage,
    OutboxMessage,
    Party,
    Quarantine,
    Recusal,
)
from conduct_inbox.store.outbox import enqueue, enqueue_all, mark_failed

log = logging.getLogger(__name__)

MB = 1024 * 1024
_RATE_LIMITED = "acknowledgement rate limit for this address reached"
_LAW_TASK = "notify law enforcement?"
_LOST_REF = "it answers mail about a case reference lost in a restore from a backup (acknowledged then)"
RECOVERED = "recovered after a database restore (acknowledged when it first arrived)"
#: What recovery takes in again: what reporters and parties wrote. Committee commands, delivery
#: reports and our own mail are recorded only: replaying a command on a database that has moved on
#: could act twice or on the wrong case.
_RECOVERABLE = frozenset({"new_report", "followup", "auto_followup", "stray_followup"})


@dataclass(frozen=True)
class Options:
    """The settings the workflow needs, as plain values."""

    committee_name: str
    case_tag: str = "conduct"
    max_forward_attachment_mb: float = 10
    ack_limit_per_address: int = 5
    ack_limit_window: timedelta = timedelta(hours=24)
    ack_hours: float = 24
    urgent_ack_hours: float = 1
    response_days: float = 7
    token_secret: bytes = b""
    previous_token_secret: bytes = b""
    trusted_authserv_id: str = ""
    severe_decisions: tuple[str, ...] = ("public-reprimand", "temporary-ban", "permanent-ban")
    urgent_phrases: tuple[str, ...] = ()
    steering_address: str = ""
    #: Taking in again, after a restore from a backup, reports that were processed before it:
    #: their reporters were acknowledged then, and commands and delivery reports are not replayed.
    recovering: bool = False

    @property
    def promises(self) -> Promises:
        """The `[sla]` times as promised to reporters (the acknowledgement states them)."""
        return Promises(self.ack_hours, self.urgent_ack_hours, self.response_days)


_INSERT_EVENT = insert(Event.__table__)
_counters = CaseCounter.__table__
#: The year's next case number, counted by the database (safe with two daemons). A plain
#: statement on the table: no autoflush first.
_NEXT_NUMBER = {
    name: insert_of(_counters).values(year=bindparam("year"), last=1)
    .on_conflict_do_update(index_elements=["year"], set_={"last": _counters.c.last + 1}).returning(_counters.c.last)
    for name, insert_of in DIALECT_INSERTS.items()
}
#: What a delivery report's signed VERP address is checked against.
_BOUNCE_ROW = select(OutboxMessage.sent_at, OutboxMessage.recipient, OutboxMessage.message_id).where(
    OutboxMessage.id == bindparam("row_id"))
#: Acknowledgements to one correspondent (canonical address, outbox.canonical_address) since a
#: moment (the rate limit): victim+1@ ... victim+40@ are one inbox.
_ACKS_SINCE = select(func.count(OutboxMessage.id)).where(
    OutboxMessage.correspondent == bindparam("correspondent"), OutboxMessage.kind == "ack",
    OutboxMessage.created_at >= bindparam("since"),
)
#: Alerts that a correspondent's acknowledgement limit tripped, since a moment (it alerts once).
_LIMIT_ALERTS_SINCE = select(func.count(OutboxMessage.id)).where(
    OutboxMessage.correspondent == bindparam("correspondent"), OutboxMessage.kind == "alert",
    OutboxMessage.created_at >= bindparam("since"),
)


def event(session: Session, case_id: int | None, actor: str, action: str, now: datetime, **detail: Any) -> None:
    """Append to the audit trail at once (a plain INSERT: events are never read back as objects)."""
    events(session, case_id, now, (actor, action, detail))


def events(session: Session, case_id: int | None, now: datetime, *entries: tuple[str, str, dict[str, Any]]) -> None:
    """Several audit entries (actor, action, detail) in one INSERT, in this order."""
    session.connection().execute(_INSERT_EVENT, [{"case_id": case_id, "actor": actor, "action": action, "at": now,
                                                   "detail": detail} for actor, action, detail in entries])


def _written(session: Session, case: Case, now: datetime, entries: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str, dict[str, Any]]]:
    """Write the collected audit entries of a case (before others that must follow them); none left."""
    if entries:
        events(session, case.id, now, *entries)
    return []


def dedupe_key(message_id: str, body_hash: str) -> str:
    return hashlib.sha256(f"{message_id}\0{body_hash}".encode()).hexdigest()


def _size_text(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{max(1, size // 1024)} KB"


class Workflow:
    def __init__(self, roster: Roster, policy: Policy, sender: Sender, renderer: Renderer, options: Options):
        self.roster = roster
        self.policy = policy
        self.sender = sender
        self.renderer = renderer
        self.options = options
        self.desk = Desk(
            self,
            [options.token_secret, options.previous_token_secret],
            options.trusted_authserv_id,
            options.severe_decisions,
        )
        #: The secrets a VERP address may be signed with (current, then previous; empty ones skipped).
        self._bounce_secrets = [k for k in (options.token_secret, options.previous_token_secret) if k]
        self.sla_policy: Any = None  # set by app wiring (escalation.sla_policy); None: plain ack deadline

    # ----- facts for classification ---------------------------------------------------------

    def facts(self, session: Session, msg: Parsed) -> Facts:
        # Our Message-IDs are all <hex>@<our domain> (outbox.new_message_id): others need no look.
        own = (
            msg.message_id is not None
            and msg.message_id.lower().endswith("@" + self.sender.domain.lower())
            and self._outbox_row_by_message_id(session, msg.message_id) is not None
        )
        # check-config's probe: from our own address to a probe plus-address (no report looks so).
        probe_prefix = self.policy.local_part + "+probe-"
        own = own or (msg.from_address == self.policy.address.lower()
                      and any(a.startswith(probe_prefix) and a.endswith("@" + self.policy.domain) for a in msg.to))
        bounce = self._bounce_facts(session, msg) if msg.is_dsn else {}
        case_row = self._case_for(session, msg)
        case = None if case_row is None else CaseFacts(
            case_row.id, case_row.ref, frozenset(canonical_address(p.address) for p in case_row.parties), case_row.status
        )
        found = tokens.tokens_in((*msg.to, *msg.cc, *msg.delivered_to[:1]), self.policy.local_part, self.policy.domain)
        member = self.roster.person(msg.from_address)
        dmarc = (
            case_row is not None and member is not None and routing.may_see(self.roster, self.recused(case_row), member.email)
            and dmarc_pass(msg, self.options.trusted_authserv_id, member.email)
        )
        return Facts(own_message=own, case=case, token_owners=self.desk.token_owners(found, case.ref if case else msg.case_ref),
                     member_dmarc_pass=dmarc, member_sender=member is not None,
                     unknown_case_ref=bool(msg.case_ref) and case_row is None, **bounce)

    def _bounce_facts(self, session: Session, msg: Parsed) -> dict[str, Any]:
        """What a DSN's signed VERP address says: its row, whether that row was sent, whether the
        DSN names its recipient. A DSN's Message-ID of ours alone names no row (it may be quoted in
        a thread others read); without a token secret no address is signed and no row is named."""
        rows: dict[int, Any] = {}

        def message_id_of(row_id: int) -> str | None:
            rows[row_id] = session.execute(_BOUNCE_ROW, {"row_id": row_id}).first()
            return None if rows[row_id] is None else rows[row_id].message_id

        row_id = verp_row(msg, self.policy, self._bounce_secrets, message_id_of)
        found = rows.get(row_id) if row_id is not None else None
        if found is None:
            return {}
        failed = {a.strip().strip("<>").lower() for a in msg.dsn_failed_recipients}
        return {"bounce_row": row_id, "bounce_row_sent": found.sent_at is not None,
                "bounce_names_recipient": found.recipient.lower() in failed}

    def _outbox_row_by_message_id(self, session: Session, message_id: str) -> int | None:
        """The id of our outgoing mail with this Message-ID (ids only: the mail itself can be large)."""
        return session.scalars(select(OutboxMessage.id).where(OutboxMessage.message_id == message_id).limit(1)).first()

    def _case_for(self, session: Session, msg: Parsed) -> Case | None:
        case = None
        if msg.case_ref:
            case = session.scalars(select(Case).where(Case.ref == msg.case_ref)).first()
        if case is None:
            thread = [m for m in (*msg.in_reply_to, *msg.references) if m]
            if thread:
                case_id = session.scalars(
                    select(OutboxMessage.case_id)
                    .where(OutboxMessage.message_id.in_(thread), OutboxMessage.case_id.is_not(None))
                    .limit(1)
                ).first()
                case = session.get(Case, case_id) if case_id is not None else None
        if case is None and msg.case_ref and msg.reporter_address and fences.is_lost_ref(session, msg.case_ref):
            case = self._recovered_case_of(session, msg.reporter_address)
        return case

    def _recovered_case_of(self, session: Session, reporter: str) -> Case | None:
        """The one case taken in again after a restore whose reporter is `reporter`: where their mail
        about a reference lost in the restore belongs (several, or none: no guess)."""
        ids = session.scalars(
            select(Party.case_id).join(Event, Event.case_id == Party.case_id)
            .where(Party.role == "reporter", Party.address == reporter, Event.action == "recovered_after_restore")
            .distinct().limit(2)
        ).all()
        return session.get(Case, ids[0]) if len(ids) == 1 else None

    # ----- applying ---------------------------------------------------------------------------

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
        if self.options.recovering and result.kind not in _RECOVERABLE:
            row.status = "dropped"
            event(session, None, "system", "not_replayed_after_restore", now, inbound_id=row.id, kind=result.kind)
            return f"{result.kind} mail from before the restore: recorded, not replayed"
        handler = getattr(self, f"_on_{result.kind}")
        outcome: str = handler(session, row, msg, result, now)
        return outcome

    def _on_own_loop(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        row.status = "dropped"
        return "dropped: our own mail came back"

    def _on_bounce(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        row.status = "machine"
        assert result.bounce_row is not None
        reason = "delivery report: permanent failure" if msg.dsn_permanent else "delivery report"
        if not msg.dsn_permanent:
            return f"delivery report (not final) for outbox row {result.bounce_row}"
        mark_failed(session, result.bounce_row, reason, now, self.on_delivery_failure)
        return f"bounce for outbox row {result.bounce_row}"

    def _on_machine(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        row.status = "machine"
        if result.bounce_row is not None:
            # Signed for a row, but the row was not sent yet or the report does not name its
            # recipient: a forgery or a confused mail system. It changes nothing.
            return f"delivery report for outbox row {result.bounce_row} not applied (row not sent, or its recipient not named): stored"
        return "delivery report matching none of our mail: stored"

    def _on_new_report(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        # Nothing queried below depends on changes not yet flushed (mail and events are written at
        # once): flush only where an id is needed, not before every query.
        with session.no_autoflush:
            return self._open_reported_case(session, row, msg, result, now)

    def _open_reported_case(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        # Everything that decides the case's first deadline is known before it is written, so the
        # case, its reporter and this message's link to it go to the database in one flush.
        case = self.new_case(session, msg, now, flags=result.flags)
        urgent = self._is_urgent(case, msg)
        case.urgent = urgent
        no_ack = self._no_ack_reason(session, case, msg.reporter_address, now)
        if not no_ack and msg.case_ref and fences.is_lost_ref(session, msg.case_ref):
            no_ack = _LOST_REF  # they were acknowledged for it before the restore
        self.start_clock(case, ack_queued_at=None if no_ack else now)
        row.case, row.status = case, "processed"
        session.add(case)
        session.flush()
        # The audit entries go in as few INSERTs as their order allows (usually one, at the end).
        entries: list[tuple[str, str, dict[str, Any]]] = [
            ("system", "case_opened", {"flags": sorted(result.flags)}), ("reporter", "report_received", {"inbound_id": row.id})
        ]
        scanned = scanning.scan(msg, self.roster, self._report_body(msg))
        named = scanning.recusing(scanned, ("reporter",))
        if named:
            entries = _written(session, case, now, entries)
            self.recuse_named(session, case, named, now)
        if urgent:
            entries += [("system", "marked_urgent", {"automatic": True}), ("system", "task_opened", {"task": _LAW_TASK})]
        if self.options.recovering:
            entries.append(("system", "recovered_after_restore", {}))
        if no_ack == _RATE_LIMITED:
            entries = _written(session, case, now, entries)
            self._note_rate_limit(session, case, msg.reporter_address or "", now)
        # The acknowledgement and the committee's copies in one INSERT.
        drafts = [] if no_ack else [self._ack_draft(case, msg)]
        drafts += self._report_copies(case, msg, scanned, now, acked=not no_ack, ack_reason=no_ack)
        enqueue_all(session, drafts, self.sender, now, case_id=case.id, inbound_id=row.id)
        if not no_ack:
            entries.append(("system", "acknowledgement_queued", {}))
        _written(session, case, now, entries)
        return f"new case {case.ref}" + (f" [{','.join(sorted(result.flags))}]" if result.flags else "")

    def _on_followup(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        case = self._case(session, result)
        row.case_id, row.status = case.id, "processed"
        closed = case.status == "closed"
        event(session, case.id, "party", "feedback_received" if closed else "followup_received", now, inbound_id=row.id)
        heading = "Feedback after closure" if closed else "Follow-up from a party"
        sender = {canonical_address(a) for a in (msg.reporter_address, msg.from_address) if a}
        roles = {p.role for p in case.parties if canonical_address(p.address) in sender}
        self._forward_to_committee(session, case, row, msg, now, heading, roles or {"unknown"})
        return f"follow-up joined case {case.ref}"

    def _on_auto_followup(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        case = self._case(session, result)
        row.case_id, row.status = case.id, "processed"
        event(session, case.id, "system", "automatic_reply_received", now, inbound_id=row.id)
        return f"automatic reply joined case {case.ref} (not forwarded)"

    def _on_stray_followup(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        case = self._case(session, result)
        row.case_id, row.status = case.id, "processed"
        event(session, case.id, "unknown", "message_from_non_party", now, inbound_id=row.id)
        self._forward_to_committee(session, case, row, msg, now, "Message from someone who is not a party to the case", {"unknown"})
        return f"message from a non-party kept on case {case.ref} and flagged"

    def _on_committee(self, session: Session, row: InboundMessage, msg: Parsed, result: Classification, now: datetime) -> str:
        if is_automatic(msg, self.policy):  # a member's out-of-office: never a note or a command
            row.status, row.kind = "processed", "auto_reply"
            row.case_id = result.case.id if result.case is not None else None
            event(session, row.case_id, "system", "automatic_reply_received", now, inbound_id=row.id)
            return "automatic reply on a reply token: recorded, not forwarded"
        return self.desk.handle(session, row, msg, result, now)

    def _case(self, session: Session, result: Classification) -> Case:
        assert result.case is not None
        case = session.get(Case, result.case.id)
        assert case is not None
        return case

    # ----- cases ------------------------------------------------------------------------------

    def next_ref(self, session: Session, now: datetime) -> str:
        """Allocate the next per-year reference atomically (safe with two daemons)."""
        number = session.execute(_NEXT_NUMBER[session.get_bind().dialect.name], {"year": now.year}).scalar_one()
        return f"{now.year}-{number:04d}"

    def open_case(self, session: Session, msg: Parsed, now: datetime, flags: Iterable[str] = ()) -> Case:
        """A new case, written (flushed) with its reporter and a case_opened event."""
        flags = set(flags)
        case = self.new_case(session, msg, now, flags)
        session.add(case)
        session.flush()
        event(session, case.id, "system", "case_opened", now, flags=sorted(flags))
        return case

    def new_case(self, session: Session, msg: Parsed, now: datetime, flags: Iterable[str] = ()) -> Case:
        """A new case with its reference and reporter, not yet added to the session."""
        flags = set(flags)
        title = title_of(msg.subject)[:200] or "(no subject)"
        case = Case(
            ref=self.next_ref(session, now),
            title=title,
            status="new",
            spam="spam" in flags,
            auto="auto" in flags,
            urgent=False,
            unverified=False,
            created_at=now,
            updated_at=now,
            parties=[],  # a new case's collections start loaded: no query to find them empty
            recusals=[],
        )
        # Spam and automatic mail run no clock until a member acknowledges the case.
        if not case.spam and not case.auto:
            case.next_due_at = now + timedelta(hours=self.options.ack_hours)
        if msg.reporter_address:
            case.parties.append(Party(role="reporter", address=msg.reporter_address, name=msg.reporter_name, created_at=now))
        return case

    def recuse_named(self, session: Session, case: Case, found: Sequence[str], now: datetime) -> list[str]:
        """Recuse these members (automatic recusal, reason "named"). Returns the ones newly recused."""
        if not found:
            return []
        current = self.recused(case)
        new = [email for email in found if email not in current]
        for email in new:
            existing = next((r for r in case.recusals if r.member_email == email), None)
            if existing is not None:
                existing.active, existing.reason, existing.automatic = True, "named", True
            else:
                session.add(Recusal(case_id=case.id, member_email=email, reason="named", automatic=True, active=True, created_at=now))
            if case.assignee == email:
                case.assignee = None
            event(session, case.id, "system", "member_recused", now, reason="named", automatic=True)
        if new:
            session.flush()
            session.refresh(case)
            log.info("case %s: %d member(s) recused automatically", case.ref, len(new))
        return new

    def _check_urgency(self, session: Session, case: Case, msg: Parsed, now: datetime) -> None:
        if self._is_urgent(case, msg):
            case.urgent = True
            self._note_urgent(session, case, now)
            self.refresh_clock(session, case)

    def _is_urgent(self, case: Case, msg: Parsed) -> bool:
        if case.spam or not self.options.urgent_phrases:
            return False
        return is_urgent_text(msg.own_text or msg.text, self.options.urgent_phrases)

    @staticmethod
    def _note_urgent(session: Session, case: Case, now: datetime) -> None:
        events(session, case.id, now, ("system", "marked_urgent", {"automatic": True}),
               ("system", "task_opened", {"task": _LAW_TASK}))

    def announce_urgent(self, session: Session, case: Case, now: datetime) -> None:
        """A member marked the case urgent: alert every non-recused member at once."""
        event(session, case.id, "system", "task_opened", now, task=_LAW_TASK)
        self.alert(session, case, f"Case {case.ref} was marked URGENT. Its deadlines are now short. "
                   "Consider whether law enforcement must be notified.", now, kind="urgent", extra="URGENT")

    def refresh_clock(self, session: Session, case: Case) -> None:
        """Recompute the case's next due time after anything that moves its clocks."""
        if case.status == "closed" or case.spam:
            case.next_due_at = None
            return
        if self.sla_policy is not None:
            from conduct_inbox.cases.escalation import refresh_next_due

            refresh_next_due(session, case, self.sla_policy)

    def start_clock(self, case: Case, ack_queued_at: datetime | None) -> None:
        """`refresh_clock` for a case opened in this transaction, without asking the database:
        nothing has fired yet and its acknowledgement, if any, was queued at `ack_queued_at`."""
        if case.spam:
            case.next_due_at = None
        elif self.sla_policy is not None:
            from conduct_inbox.cases.escalation import new_case_due

            case.next_due_at = new_case_due(case, ack_queued_at, self.sla_policy)

    def personal_reply_to(self, person: Person) -> str | None:
        if not self.options.token_secret:
            return None
        token = tokens.mint(self.options.token_secret, "personal", None, person.email)
        return tokens.reply_address(self.policy.local_part, self.policy.domain, token)

    def steering_report(self, session: Session, case: Case, now: datetime, reason: str) -> None:
        """The report the policy promises the steering committee: no reporter or witness identities."""
        audience = routing.steering(self.roster, self.recused(case))
        decisions = session.scalars(select(Decision).where(Decision.case_id == case.id).order_by(Decision.id)).all()
        events = session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.id)).all()
        inbound = session.scalar(select(func.count(InboundMessage.id)).where(InboundMessage.case_id == case.id))
        outbound = session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.case_id == case.id, OutboxMessage.audience.in_(("reporter", "party"))
            )
        )
        body = self.renderer.render(
            "steering_report",
            marker=audience.marker_line(),
            ref=case.ref,
            reason=reason,
            status=case.status,
            opened=case.created_at.strftime("%Y-%m-%d"),
            closed=case.closed_at.strftime("%Y-%m-%d") if case.closed_at else None,
            flags=", ".join(case.flags),
            inbound=inbound,
            outbound=outbound,
            decisions=[
                {"kinds": d.kinds.replace(",", ", "), "target": d.target_address if d.target_role == "reported" else d.target_role,
                 "until": d.until.isoformat() if d.until else None, "status": d.status}
                for d in decisions
            ],
            timeline=[f"{e.at:%Y-%m-%d %H:%M} {e.action.replace('_', ' ')}" for e in events],
        )
        subject = f"[{self.options.case_tag} #{case.ref}] Case report for the steering committee"
        for draft in self.committee_drafts(case, audience, "steering_report", subject, lambda _p: body):
            enqueue(session, draft, self.sender, now, case_id=case.id)
        event(session, case.id, "system", "steering_report_queued", now, reason=reason)

    def announce_reconsideration(self, session: Session, case: Case, member: Person, now: datetime) -> None:
        audience = routing.steering(self.roster, self.recused(case))
        body = self.renderer.render(
            "committee_note", marker=audience.marker_line(), ref=case.ref,
            heading="Reconsideration opened",
            text=f"{member.name} opened a reconsideration of case {case.ref}. The steering members handle it; "
                 "the original decision stays on record unchanged.",
        )
        for draft in self.committee_drafts(case, audience, "reconsideration", self.subject(case, "Reconsideration:"), lambda _p: body):
            enqueue(session, draft, self.sender, now, case_id=case.id)

    def open_forwarded_case(
        self, session: Session, row: InboundMessage, msg: Parsed, member: Person, new: Any, concerns: Sequence[Any], now: datetime,
        urgent: bool = False,
    ) -> str:
        """`!new ADDRESS [noack]`: a report a member received directly and forwards to the committee."""
        forwarded = msg.forwarded[0] if msg.forwarded else None
        subject = forwarded.subject if forwarded else strip_commands(msg.subject)
        text = forwarded.text if forwarded else msg.own_text
        report = replace(
            msg, subject=subject or "(forwarded report)", text=text, own_text=text,
            reporter_address=new.address.lower(), reporter_name=None, forwarded=msg.forwarded[1:],
        )
        # Only the forwarded content counts for recusal, not the forwarding member's own words;
        # the forward's attachments and file names do.
        sources = scanning.FORWARDED_SOURCES if forwarded else scanning.FORWARDED_SOURCES | {"body"}
        scanned = scanning.scan(report, self.roster, self._report_body(report), sources=sources, subject=subject or "")
        case = self.open_case(session, report, now)
        case.forwarded_by = member.email
        row.case_id, row.status, row.kind = case.id, "processed", "forwarded_report"
        event(session, case.id, member.email, "report_forwarded", now, inbound_id=row.id, noack=new.noack)
        for c in concerns:  # before anything is sent
            person = self.roster.find(c.name)
            if person is not None:
                session.add(Recusal(case_id=case.id, member_email=person.email, reason="concerns", automatic=False,
                                    active=True, created_at=now))
                event(session, case.id, member.email, "member_recused", now, reason="concerns")
        session.flush()
        session.refresh(case)
        self.recuse_named(session, case, scanning.recusing(scanned, ("forwarded",)), now)
        if urgent and not case.spam:  # `!new ... !urgent`: the member says so
            case.urgent = True
            self._note_urgent(session, case, now)
        else:
            self._check_urgency(session, case, report, now)
        if new.noack:
            acked, ack_reason = False, "the forwarding member asked for none"
        else:
            acked, ack_reason = self._acknowledge(session, case, report, now)
        drafts = self._report_copies(case, report, scanned, now, acked, ack_reason)
        enqueue_all(session, drafts, self.sender, now, case_id=case.id, inbound_id=row.id)
        if forwarded is not None and msg.own_text.strip():
            # The member's own words beside the forward are never dropped: an internal note.
            self.desk.file_note(session, case, member, msg.own_text.strip(), now, inbound_id=row.id)
        self.refresh_clock(session, case)
        return f"forwarded report opened case {case.ref}"

    def recused(self, case: Case | None) -> dict[str, str]:
        if case is None:
            return {}
        return {r.member_email: r.reason for r in case.recusals if r.active}

    def subject(self, case: Case, extra: str = "") -> str:
        """Every case subject we send: `[tag #REF] title`, the title as safe to show as `title_of` makes it."""
        title = title_of(case.title)
        return f"[{self.options.case_tag} #{case.ref}] {extra + ' ' if extra else ''}{title}".strip()

    # ----- mail to the reporter ---------------------------------------------------------------

    def _acknowledge(self, session: Session, case: Case, msg: Parsed, now: datetime) -> tuple[bool, str]:
        reporter = case.party("reporter")
        no_ack = self._no_ack_reason(session, case, reporter.address if reporter else None, now)
        if no_ack == _RATE_LIMITED:
            self._note_rate_limit(session, case, reporter.address if reporter else "", now)
        if no_ack:
            return False, no_ack
        self._queue_ack(session, case, msg, now)
        return True, ""

    def _no_ack_reason(self, session: Session, case: Case, reporter_address: str | None, now: datetime) -> str:
        """Why the reporter gets no automatic acknowledgement; empty when they get one."""
        if case.spam:
            return "flagged as spam"
        if case.auto:
            return "automatic mail"
        if self.options.recovering:
            return RECOVERED
        if not reporter_address:
            return "no reporter address"
        if self._ack_limit_reached(session, reporter_address, now):
            return _RATE_LIMITED
        return ""

    def _queue_ack(self, session: Session, case: Case, msg: Parsed, now: datetime) -> None:
        enqueue(session, self._ack_draft(case, msg), self.sender, now, case_id=case.id)
        event(session, case.id, "system", "acknowledgement_queued", now)

    def _ack_draft(self, case: Case, msg: Parsed) -> OutwardDraft:
        reporter = case.party("reporter")
        assert reporter is not None
        # The times promised are the configured ones (the urgent ones for an urgent case).
        body = self.renderer.render(
            "ack", ref=case.ref, committee_name=self.options.committee_name, case_tag=self.options.case_tag,
            **self.options.promises.context(bool(case.urgent)),
        )
        # Never repeat the incoming subject: spam backscatter must not be able to use us.
        return OutwardDraft(
            kind="ack", audience="reporter", recipient=reporter.address, body=body, in_reply_to=msg.message_id,
            auto_submitted="auto-replied", case_tag=self.options.case_tag, ref=case.ref, purpose=party_mail.ACK,
        )

    def _ack_limit_reached(self, session: Session, address: str, now: datetime) -> bool:
        since = now - self.options.ack_limit_window
        count = session.scalar(_ACKS_SINCE, {"correspondent": canonical_address(address), "since": since})
        return (count or 0) >= self.options.ack_limit_per_address

    def _note_rate_limit(self, session: Session, case: Case, address: str, now: datetime) -> None:
        correspondent = canonical_address(address)
        since = now - self.options.ack_limit_window
        already = session.scalar(_LIMIT_ALERTS_SINCE, {"correspondent": correspondent, "since": since})
        event(session, case.id, "system", "ack_rate_limited", now)
        if not already:  # a tripped limit alerts once per window (its alert rows record the correspondent)
            self.alert(session, case, f"The acknowledgement limit for the reporter of case {case.ref} was reached; "
                       "further automatic acknowledgements to that address are held back.", now,
                       correspondent=correspondent)

    # ----- mail to the committee --------------------------------------------------------------

    def member_reply_to(self, case: Case | None, person: Person) -> str | None:
        if case is None or not self.options.token_secret:
            return None
        token = tokens.mint(self.options.token_secret, "case", case.ref, person.email)
        return tokens.reply_address(self.policy.local_part, self.policy.domain, token)

    def _attachments(self, content: scanning.Scanned) -> tuple[list[dict[str, Any]], tuple[OutgoingAttachment, ...]]:
        limit = self.options.max_forward_attachment_mb * MB
        listed, attached = [], []
        for att in content.attachments:
            forwarded = att.size <= limit
            listed.append({"filename": att.filename, "content_type": att.content_type, "size_text": _size_text(att.size),
                           "forwarded": forwarded, "scanned": att.scanned})
            if forwarded:
                attached.append(OutgoingAttachment(att.filename or "attachment", att.content_type, att.content))
        return listed, tuple(attached)

    def _report_body(self, msg: Parsed) -> str:
        parts = [msg.text.strip() or "(the message has no text)"]
        for fwd in msg.forwarded:
            parts.append(f"----- forwarded message -----\nSubject: {fwd.subject}\n\n{fwd.text.strip()}")
        return "\n\n".join(parts)

    def committee_drafts(
        self, case: Case | None, audience: routing.Audience, kind: str, subject: str, body_for: Any,
        content: scanning.Scanned | None = None,
    ) -> list[Draft]:
        """One draft per recipient, only them in To:, with their own reply token. A sender's
        attachments come only with `content`, the member scan's result: nothing unscanned."""
        attached = self._attachments(content)[1] if content is not None else ()
        return [
            Draft(
                kind=kind,
                audience="steering" if person.steering else "member",
                recipient=person.email,
                recipient_name=person.name,
                subject=subject,
                body=body_for(person),
                reply_to=self.member_reply_to(case, person),
                attachments=attached,
            )
            for person in audience.recipients
        ]

    def _report_copies(self, case: Case, msg: Parsed, content: scanning.Scanned, now: datetime, acked: bool,
                       ack_reason: str) -> list[Draft]:
        if case.spam:
            return []  # spam goes out in the daily digest, not one by one
        audience = routing.committee(self.roster, self.recused(case))
        listed = self._attachments(content)[0]
        body = self.renderer.render(
            "report",
            marker=audience.marker_line(),
            ref=case.ref,
            auto=case.auto,
            spam=case.spam,
            unverified=case.unverified,
            received=now.strftime("%Y-%m-%d %H:%M UTC"),
            reporter=_person_text(msg.reporter_name, msg.reporter_address),
            subject=content.subject or "(no subject)",
            acknowledged=acked,
            ack_reason=ack_reason,
            ack_time=hours_text(self.options.promises.ack_hours_for(bool(case.urgent))),
            body=content.body,
            attachments=listed,
            max_mb=self.options.max_forward_attachment_mb,
        )
        subject = self.subject(case, " ".join(m for m, on in (("URGENT", case.urgent), ("[auto]", case.auto)) if on))
        return self.committee_drafts(case, audience, "report", subject, lambda _p: body, content)

    def _forward_to_committee(self, session: Session, case: Case, row: InboundMessage, msg: Parsed, now: datetime,
                              heading: str, sender_roles: Collection[str]) -> None:
        """A follow-up to the members who may see the case, after the member scan: a member it
        names is recused first, unless the sender is the reported person (then the copy says whom
        it names, and the committee decides with !concerns)."""
        content = scanning.scan(msg, self.roster, scanning.followup_body(msg), sources=scanning.FOLLOWUP_SOURCES)
        recuse = scanning.recusing(content, sender_roles)
        self.recuse_named(session, case, recuse, now)
        named_only = [self.roster.person(e) for e in content.named if e not in recuse]
        audience = routing.committee(self.roster, self.recused(case))
        listed = self._attachments(content)[0]
        body = self.renderer.render(
            "followup",
            marker=audience.marker_line(),
            heading=heading,
            ref=case.ref,
            received=now.strftime("%Y-%m-%d %H:%M UTC"),
            sender=_person_text(msg.reporter_name, msg.reporter_address),
            subject=content.subject or "(no subject)",
            body=content.body,
            named=[p.name for p in named_only if p is not None] if "reported" in sender_roles else [],
            attachments=listed,
            max_mb=self.options.max_forward_attachment_mb,
        )
        subject = self.subject(case)
        drafts = self.committee_drafts(case, audience, "followup", subject, lambda _p: body, content)
        enqueue_all(session, drafts, self.sender, now, case_id=case.id, inbound_id=row.id)

    def alert(self, session: Session, case: Case | None, text: str, now: datetime, kind: str = "alert", extra: str = "Alert:",
              correspondent: str | None = None) -> None:
        """An operational alert (ids only) to everyone who may see the case, or the whole committee;
        `correspondent`: the canonical address whose rate limit it reports (recorded, never shown)."""
        audience = routing.committee(self.roster, self.recused(case))
        if case is not None:
            # Not self.subject(): alerts carry ids only, never the report's subject.
            subject = f"[{self.options.case_tag} #{case.ref}] {extra}".strip()
        else:
            subject = f"[{self.options.case_tag}] Alert"
        body = self.renderer.render("alert", marker=audience.marker_line(), text=text)
        drafts = self.committee_drafts(case, audience, kind, subject, lambda _p: body)
        enqueue_all(session, drafts, self.sender, now, case_id=case.id if case else None, correspondent=correspondent)

    def on_delivery_failure(self, session: Session, row: OutboxMessage, now: datetime) -> None:
        """A mail failed for good: audit it and alert (never about an alert, to avoid storms)."""
        event(session, row.case_id, "system", "delivery_failed", now, outbox_id=row.id, code=row.last_code)
        if row.kind == "alert":
            log.error("alert mail (outbox row %d) could not be delivered", row.id)
            return
        case = session.get(Case, row.case_id) if row.case_id is not None else None
        where = f" about case {case.ref}" if case is not None else ""
        self.alert(
            session,
            case,
            f"Mail{where} could not be delivered: outbox row {row.id} ({row.kind} to a {row.audience}), "
            f"reply code {row.last_code or 'n/a'}.",
            now,
        )

    def quarantine(self, session: Session, row: InboundMessage, reason: str, now: datetime) -> None:
        row.status = "quarantined"
        row.error = reason[:200]
        row.processed_at = now
        session.add(Quarantine(inbound_id=row.id, reason=reason[:200], created_at=now))
        event(session, None, "system", "message_quarantined", now, inbound_id=row.id, attempts=row.attempts)
        self.alert(
            session,
            None,
            f"Incoming message #{row.id} could not be processed after {row.attempts} attempt(s) ({reason}). "
            "It is kept unchanged and was moved to the quarantine folder. Please look at it by hand.",
            now,
        )


def _person_text(name: str | None, address: str | None) -> str:
    if name and address:
        return f"{name} <{address}>"
    return address or name or "(unknown sender)"
