"""The automatic acknowledgement to a reporter: whether one goes out (spam, automatic mail, a
recovery run, the per-address rate limit) and what it says (the promises as configured; never
the incoming subject or body, which spam backscatter could use).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from conduct_inbox.cases import mailer
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.context import Context
from conduct_inbox.core import party_mail
from conduct_inbox.core.party_mail import OutwardDraft
from conduct_inbox.mail.addresses import canonical_address
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import Case, OutboxMessage

RATE_LIMITED = "acknowledgement rate limit for this address reached"
LOST_REF = "it answers mail about a case reference lost in a restore from a backup (acknowledged then)"
RECOVERED = "recovered after a database restore (acknowledged when it first arrived)"

#: Acknowledgements to one correspondent (canonical address, outbox.canonical_address) since a
#: moment (the rate limit): victim+1@ ... victim+40@ are one inbox.
ACKS_SINCE = select(func.count(OutboxMessage.id)).where(
    OutboxMessage.correspondent == bindparam("correspondent"), OutboxMessage.kind == "ack",
    OutboxMessage.created_at >= bindparam("since"),
)
#: Alerts that a correspondent's acknowledgement limit tripped, since a moment (it alerts once).
_LIMIT_ALERTS_SINCE = select(func.count(OutboxMessage.id)).where(
    OutboxMessage.correspondent == bindparam("correspondent"), OutboxMessage.kind == "alert",
    OutboxMessage.created_at >= bindparam("since"),
)


def acknowledge(ctx: Context, session: Session, case: Case, msg: Parsed, now: datetime) -> tuple[bool, str]:
    """Queue the acknowledgement of a case opened in this transaction, if it gets one: (sent, why not)."""
    reporter = case.party("reporter")
    reason = no_ack_reason(ctx, session, case, reporter.address if reporter else None, now)
    if reason == RATE_LIMITED:
        note_rate_limit(ctx, session, case, reporter.address if reporter else "", now)
    if reason:
        return False, reason
    mailer.send(session, ctx, [ack_draft(ctx, case, msg)], now, case_id=case.id)
    event(session, case.id, "system", "acknowledgement_queued", now)
    return True, ""


def no_ack_reason(ctx: Context, session: Session, case: Case, reporter_address: str | None, now: datetime) -> str:
    """Why the reporter gets no automatic acknowledgement; empty when they get one."""
    if case.spam:
        return "flagged as spam"
    if case.auto:
        return "automatic mail"
    if ctx.options.recovering:
        return RECOVERED
    if not reporter_address:
        return "no reporter address"
    if _limit_reached(ctx, session, reporter_address, now):
        return RATE_LIMITED
    return ""


def ack_draft(ctx: Context, case: Case, msg: Parsed) -> OutwardDraft:
    reporter = case.party("reporter")
    assert reporter is not None
    # The times promised are the configured ones (the urgent ones for an urgent case).
    body = ctx.renderer.render(
        "ack", ref=case.ref, committee_name=ctx.options.committee_name, case_tag=ctx.options.case_tag,
        **ctx.options.promises.context(bool(case.urgent)),
    )
    # Never repeat the incoming subject: spam backscatter must not be able to use us.
    return OutwardDraft(
        kind="ack", audience="reporter", recipient=reporter.address, body=body, in_reply_to=msg.message_id,
        auto_submitted="auto-replied", case_tag=ctx.options.case_tag, ref=case.ref, purpose=party_mail.ACK,
    )


def _limit_reached(ctx: Context, session: Session, address: str, now: datetime) -> bool:
    since = now - ctx.options.ack_limit_window
    count = session.scalar(ACKS_SINCE, {"correspondent": canonical_address(address), "since": since})
    return (count or 0) >= ctx.options.ack_limit_per_address


def note_rate_limit(ctx: Context, session: Session, case: Case, address: str, now: datetime) -> None:
    """Audit a held-back acknowledgement; alert the committee once per window and correspondent."""
    correspondent = canonical_address(address)
    since = now - ctx.options.ack_limit_window
    already = session.scalar(_LIMIT_ALERTS_SINCE, {"correspondent": correspondent, "since": since})
    event(session, case.id, "system", "ack_rate_limited", now)
    if not already:  # a tripped limit alerts once per window (its alert rows record the correspondent)
        mailer.alert(session, ctx, case, f"The acknowledgement limit for the reporter of case {case.ref} was reached; "
                     "further automatic acknowledgements to that address are held back.", now,
                     correspondent=correspondent)
