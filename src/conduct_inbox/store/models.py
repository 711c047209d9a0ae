"""The case store: SQLAlchemy 2 typed models. The schema changes only through alembic migrations."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from conduct_inbox.store.crypto import open_value, previous_of, seal_value

# Stable constraint names, so alembic batch migrations on SQLite can find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ADDRESS = 320  # RFC 5321 maximum address length


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns timezone-aware UTC on every backend (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the case store")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class _Sealed(TypeDecorator[Any]):
    """A column encrypted at rest when the engine has a cipher (see crypto.py and db.make_engine)."""

    cache_ok = True
    deterministic = False

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return seal_value(getattr(dialect, "conduct_cipher", None), value, deterministic=self.deterministic)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        return open_value(getattr(dialect, "conduct_cipher", None), value)


class SealedBytes(_Sealed):
    """Contents (raw messages, outgoing mail): AES-GCM with a random nonce."""

    cache_ok = True
    impl = LargeBinary


class SealedText(_Sealed):
    """Text contents (subjects, bodies, names): AES-GCM, stored as base64 text."""

    cache_ok = True
    impl = Text


class _PreviousKeyBind(BindParameter[Any]):
    """A copy of a named bind parameter (`bindparam("message_id")`) under a name of its own, that
    takes its value from the original's key: one value given at execution, bound twice."""

    inherit_cache = True


@compiles(_PreviousKeyBind)
def _compile_previous_key_bind(element: _PreviousKeyBind, compiler: Any, **kw: Any) -> str:
    # The compiled name differs from the key; the value is still looked up by the key.
    compiler.bind_names.setdefault(element, f"{element.key}__previous_key")
    return compiler.visit_bindparam(element, **kw)


class _LookupComparator(TypeDecorator.Comparator[Any]):
    """`==`, `!=`, `in_` and `not_in` on a lookup column match a value sealed with the current key
    or with the previous one (during a key rotation): `col IN (sealed now, sealed before)`.

    Without a previous key both are sealed with the same key; without a key, both are plain."""

    def operate(self, op: Any, *other: Any, **kwargs: Any) -> ColumnElement[Any]:
        value = other[0] if other else None
        if op in (operators.eq, operators.ne) and value is not None and (
            isinstance(value, BindParameter) or not isinstance(value, ColumnElement)
        ):
            both = _both_keys(value, self.expr.type)
            return super().operate(operators.in_op if op is operators.eq else operators.not_in_op, both, **kwargs)
        if op in (operators.in_op, operators.not_in_op) and isinstance(value, (list, tuple, set, frozenset)):
            both = [bind for one in value for bind in _both_keys(one, self.expr.type)]
            return super().operate(op, both, **kwargs)
        # IS NULL, an expanding parameter, another column (two lookup columns compared with each
        # other would miss a pair under different keys: the code has no such comparison), ...
        return super().operate(op, *other, **kwargs)


def _both_keys(value: Any, current: Any) -> list[BindParameter[Any]]:
    """`value` as two bind parameters: sealed with the current key, and with the previous one."""
    previous = SealedLookupPreviousKey()
    if isinstance(value, BindParameter):
        if not value.unique:  # named (`bindparam("message_id")`): its value may come at execution
            named = _PreviousKeyBind(value.key, value.value, type_=previous, required=value.required,
                                     callable_=value.callable)
            return [value._with_binary_element_type(current), named]
        value = value.effective_value
    return [BindParameter(None, value, type_=current, unique=True), BindParameter(None, value, type_=previous, unique=True)]


class SealedLookup(_Sealed):
    """Values found by equality (addresses, Message-IDs): AES-SIV, the same plain value seals the same.

    Comparisons match values sealed with the previous key too (_LookupComparator), so lookups keep
    working while `conduct-inbox db rekey` moves rows to a new key."""

    cache_ok = True
    impl = Text
    deterministic = True
    comparator_factory = _LookupComparator


class SealedLookupPreviousKey(SealedLookup):
    """Binds only: seals with the previous key during a rotation (the current key otherwise)."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        cipher = getattr(dialect, "conduct_cipher", None)
        return seal_value(previous_of(cipher) or cipher, value, deterministic=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    #: Every model here maps one Table (none maps a join or a select), so Core statements take it.
    __table__: ClassVar[Table]


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(20), unique=True)
    title: Mapped[str] = mapped_column(SealedText, default="")
    status: Mapped[str] = mapped_column(String(20), default="new")
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    spam: Mapped[bool] = mapped_column(Boolean, default=False)
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    unverified: Mapped[bool] = mapped_column(Boolean, default=False)
    assignee: Mapped[str | None] = mapped_column(String(ADDRESS))
    #: The member who opened this case with `!new` for a report they received directly.
    forwarded_by: Mapped[str | None] = mapped_column(String(ADDRESS))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    human_ack_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: What the clocks count from if not `created_at` (kept for threading): a merged older report.
    clocks_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Marked urgent after the report: the urgent hour runs from then (NULL: from the report).
    urgent_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Escalated to the steering members: from then on they work on it (`routing.Exclusions`).
    steering_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Where the response clock runs from (`sla.response_from` of the reporters); NULL: the start.
    last_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When the retention purge removed this case's contents (the row stays for statistics).
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Earliest moment an SLA rule may need action; NULL when the case has no running clock.
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    #: `!merge`: the case this one was folded into (this one is closed and empty; its tokens act there).
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"), index=True)

    parties: Mapped[list[Party]] = relationship(back_populates="case", order_by="Party.id")
    recusals: Mapped[list[Recusal]] = relationship(back_populates="case", order_by="Recusal.id")

    @property
    def flags(self) -> list[str]:
        return [name for name in ("urgent", "spam", "auto", "unverified") if getattr(self, name)]

    def party(self, role: str) -> Party | None:
        return next((p for p in self.parties if p.role == role), None)

    def recused_members(self) -> set[str]:
        return {r.member_email for r in self.recusals if r.active}


class CaseCounter(Base):
    """Per-year sequence behind case references like 2026-0007."""

    __tablename__ = "case_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer, default=0)


class Party(Base):
    __tablename__ = "parties"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20))  # reporter | reported | witness | other
    address: Mapped[str] = mapped_column(SealedLookup, index=True)
    name: Mapped[str | None] = mapped_column(SealedText)
    #: The reporter's consent to be named in a public statement (policy: default no).
    consent_public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: A reporter's own response clock after `!merge` (`sla.reporter_start`; NULL: the case's).
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    waiting_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: The reference a party of a case merged into this one keeps hearing under (NULL: the case's).
    known_ref: Mapped[str | None] = mapped_column(String(20))

    case: Mapped[Case] = relationship(back_populates="parties")


class Recusal(Base):
    __tablename__ = "recusals"
    __table_args__ = (UniqueConstraint("case_id", "member_email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    member_email: Mapped[str] = mapped_column(String(ADDRESS))
    reason: Mapped[str] = mapped_column(String(20))  # named | concerns | self
    automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    #: `!include` proposed by this member, waiting for a second member's `!confirm`.
    include_proposed_by: Mapped[str | None] = mapped_column(String(ADDRESS))

    case: Mapped[Case] = relationship(back_populates="recusals")


class InboundMessage(Base):
    """Every message fetched from the mailbox, raw bytes kept as evidence."""

    __tablename__ = "inbound_messages"
    __table_args__ = (UniqueConstraint("mailbox", "uidvalidity", "uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    #: Deferred: loaded only when read (evidence, retention), not with every row the intake touches.
    raw: Mapped[bytes] = mapped_column(SealedBytes, deferred=True)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # pending | processed | duplicate | machine | dropped | quarantined
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    kind: Mapped[str | None] = mapped_column(String(40))
    message_id: Mapped[str | None] = mapped_column(SealedLookup, index=True)
    body_hash: Mapped[str | None] = mapped_column(String(64))
    #: sha256(Message-ID, body hash) on the first copy only: a second delivery cannot claim it.
    dedupe_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    duplicate_of_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"))
    #: Another, different message already used this Message-ID (some web forms reuse them).
    message_id_reused: Mapped[bool] = mapped_column(Boolean, default=False)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"), index=True)
    sender: Mapped[str | None] = mapped_column(SealedLookup)
    subject: Mapped[str | None] = mapped_column(SealedText)
    body_text: Mapped[str | None] = mapped_column(SealedText)
    own_text: Mapped[str | None] = mapped_column(SealedText)
    #: Short, content-free reason for the last failure (exception class), for the audit trail.
    error: Mapped[str | None] = mapped_column(String(200))
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    attachments: Mapped[list[Attachment]] = relationship(back_populates="message", order_by="Attachment.id")
    #: Set with a new case in the same flush (the case is inserted first, then this row updated).
    case: Mapped[Case | None] = relationship()


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str | None] = mapped_column(SealedText)
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    inline: Mapped[bool] = mapped_column(Boolean, default=False)

    message: Mapped[InboundMessage] = relationship(back_populates="attachments")


class Quarantine(Base):
    """A message that could not be processed: kept raw in inbound_messages, moved aside in the mailbox."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    inbound_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id", ondelete="CASCADE"), unique=True)
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """One outgoing mail to one recipient, written in the transaction that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="SET NULL"), index=True)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(40))  # ack | report | alert | note | reply | ...
    audience: Mapped[str] = mapped_column(String(20))  # reporter | member | steering | party
    recipient: Mapped[str] = mapped_column(SealedLookup, index=True)
    #: The canonical correspondent whose rate limit an automatic answer counts against (lower case).
    correspondent: Mapped[str | None] = mapped_column(SealedLookup, index=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    subject: Mapped[str] = mapped_column(SealedText)
    #: The complete message as it will be sent (headers and body).
    data: Mapped[bytes] = mapped_column(SealedBytes)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    #: A dispatcher that took this row for a batch holds it until then (two daemons never send it twice).
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Event(Base):
    """Audit trail: who did what, when. `detail` holds ids and enum values, never report text."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(ADDRESS))  # member address, "system", "reporter", ...
    action: Mapped[str] = mapped_column(String(60))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class MailboxState(Base):
    """Last contact with each mailbox, for `health`."""

    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))


class ServiceState(Base):
    """State of the outgoing side (SMTP outage and its backoff), for retries and `health`."""

    __tablename__ = "service_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outage_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outage_reason: Mapped[str | None] = mapped_column(String(200))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Decision(Base):
    """A committee decision on a case; severe ones stay pending until a second member confirms."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kinds: Mapped[str] = mapped_column(String(200))  # comma-separated decision values
    target_role: Mapped[str | None] = mapped_column(String(20))
    target_address: Mapped[str | None] = mapped_column(SealedLookup)
    until: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))  # pending | effective | superseded
    decided_by: Mapped[str] = mapped_column(String(ADDRESS))
    confirmed_by: Mapped[str | None] = mapped_column(String(ADDRESS))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def kind_list(self) -> list[str]:
        return [k for k in self.kinds.split(",") if k]


class Sanction(Base):
    """The sanctions ledger: minimal data that outlives the purge of a case's contents."""

    __tablename__ = "sanctions"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_ref: Mapped[str] = mapped_column(String(20), index=True)
    target_address: Mapped[str] = mapped_column(SealedLookup, index=True)
    kind: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(String(200), default="all spaces")
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DatabaseMeta(Base):
    """Facts about the database itself, such as the fingerprint of the key its contents are sealed with."""

    __tablename__ = "database_meta"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class EscalationFired(Base):
    """An escalation or reminder already sent: each fires once per case and key, across restarts and daemons."""

    __tablename__ = "escalations_fired"
    __table_args__ = (UniqueConstraint("case_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(120))
    level: Mapped[int] = mapped_column(Integer)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)
