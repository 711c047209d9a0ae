"""`conduct-inbox health`: is the daemon in touch with its mailbox and is mail going out?"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from conduct_inbox.config import Settings
from conduct_inbox.store.models import MailboxState, OutboxMessage, ServiceState

#: Pending mail older than this means the outbox is stuck (the policy promises minutes, not hours).
STUCK_AFTER = timedelta(hours=1)


def check(sessions: sessionmaker[Session], settings: Settings, now: datetime) -> list[str]:
    """Content-free problem lines; empty when healthy."""
    problems: list[str] = []
    stale_after = timedelta(seconds=max(300, 3 * settings.mailbox.poll_seconds))
    with sessions() as session:
        states = session.scalars(select(MailboxState)).all()
        if not states:
            problems.append("mailbox: never polled (is the daemon running?)")
        for state in states:
            if state.last_error:
                problems.append(f"mailbox: last contact failed: {state.last_error}")
            elif state.last_ok_at is None or now - state.last_ok_at > stale_after:
                problems.append(f"mailbox: no successful contact since {state.last_ok_at or 'never'}")
        smtp = session.get(ServiceState, "smtp")
        if smtp is not None and smtp.outage_since is not None:
            hint = ""
            if "AUTH refused" in (smtp.outage_reason or "") and "OAuth2" not in (smtp.outage_reason or ""):
                hint = " (check smtp.username and the password: an expired or changed password looks like this)"
            problems.append(f"smtp: outage since {smtp.outage_since:%Y-%m-%d %H:%M} UTC: {smtp.outage_reason}{hint}")
        oldest = session.scalar(select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status == "pending"))
        if oldest is not None and now - oldest > STUCK_AFTER:
            pending = session.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.status == "pending"))
            problems.append(f"outbox: {pending} mail(s) pending, the oldest since {oldest:%Y-%m-%d %H:%M} UTC")
        failed = session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.status == "failed", OutboxMessage.created_at > now - timedelta(days=1)
            )
        )
        if failed:
            problems.append(f"outbox: {failed} mail(s) failed permanently in the last day")
    return problems
