"""Read-only views of cases and messages for the command line (`cases`, `inspect`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from conduct_inbox.core import states
from conduct_inbox.core.classify import Classification
from conduct_inbox.core.roster import Roster
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import Case, Decision, Event, InboundMessage, OutboxMessage


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def case_summary(case: Case) -> dict[str, Any]:
    reporter = case.party("reporter")
    return {
        "ref": case.ref,
        "title": case.title,
        "status": case.status,
        "urgent": case.urgent,
        "flags": case.flags,
        "reporter": reporter.address if reporter else None,
        "assignee": case.assignee,
        "recused": sorted(case.recused_members()),
        "created_at": _iso(case.created_at),
        "next_due_at": _iso(case.next_due_at),
    }


def list_cases(session: Session, include_closed: bool = False) -> list[dict[str, Any]]:
    query = select(Case).options(selectinload(Case.parties), selectinload(Case.recusals)).order_by(Case.id)
    if not include_closed:
        query = query.where(Case.status != states.CLOSED)
    return [case_summary(c) for c in session.scalars(query)]


def show_case(session: Session, ref: str, roster: Roster | None = None) -> dict[str, Any] | None:
    case = session.scalars(select(Case).where(Case.ref == ref)).first()
    if case is None:
        return None
    detail = case_summary(case)
    # `!merge`: this case was folded into another; its contents are there.
    detail["merged_into"] = session.scalar(select(Case.ref).where(Case.id == case.merged_into_id)) \
        if case.merged_into_id is not None else None
    detail["parties"] = [
        {"role": p.role, "address": p.address, "name": p.name, "consent_public": p.consent_public} for p in case.parties
    ]
    detail["decisions"] = [
        {"kinds": d.kind_list, "target_role": d.target_role, "target": d.target_address,
         "until": d.until.isoformat() if d.until else None, "status": d.status,
         "decided_by": d.decided_by, "confirmed_by": d.confirmed_by, "created_at": _iso(d.created_at)}
        for d in session.scalars(select(Decision).where(Decision.case_id == case.id).order_by(Decision.id))
    ]
    messages = session.scalars(
        select(InboundMessage).where(InboundMessage.case_id == case.id).order_by(InboundMessage.id)
    ).all()
    detail["messages"] = [
        {
            "id": m.id,
            "direction": "in",
            "kind": m.kind,
            "status": m.status,
            "from": m.sender,
            "subject": m.subject,
            "received_at": _iso(m.received_at),
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256}
                for a in m.attachments
            ],
        }
        for m in messages
    ]
    outgoing = session.scalars(select(OutboxMessage).where(OutboxMessage.case_id == case.id).order_by(OutboxMessage.id)).all()
    detail["outbox"] = [
        {
            "id": o.id,
            "direction": "out",
            "kind": o.kind,
            "audience": o.audience,
            "to": o.recipient,
            "subject": o.subject,
            "status": o.status,
            "created_at": _iso(o.created_at),
            "sent_at": _iso(o.sent_at),
        }
        for o in outgoing
    ]
    events = session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.id)).all()
    detail["events"] = [{"at": _iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail} for e in events]
    return detail


def show_text(detail: dict[str, Any]) -> str:
    lines = [f"case {detail['ref']}: {detail['title']}", f"status: {detail['status']}  flags: {','.join(detail['flags']) or '-'}"]
    lines.append(f"reporter: {detail['reporter']}  assignee: {detail['assignee'] or '-'}")
    if detail.get("merged_into"):
        lines.append(f"merged into case {detail['merged_into']} (its messages, parties and history are there)")
    if detail["recused"]:
        lines.append("recused: " + ", ".join(detail["recused"]))
    lines.append("parties:")
    lines += [f"  {p['role']}: {p['name'] or ''} <{p['address']}>" for p in detail["parties"]]
    lines.append("messages:")
    lines += [f"  #{m['id']} {m['received_at']} {m['kind']} from {m['from']}: {m['subject']}" for m in detail["messages"]]
    lines.append("outgoing:")
    lines += [f"  #{o['id']} {o['kind']} to {o['to']} ({o['status']})" for o in detail["outbox"]]
    lines.append("events:")
    lines += [f"  {e['at']} {e['actor']}: {e['action']} {e['detail'] or ''}" for e in detail["events"]]
    return "\n".join(lines)


def inspect_dict(msg: Parsed, result: Classification) -> dict[str, Any]:
    return {
        "classification": result.kind,
        "flags": sorted(result.flags),
        "message_id": msg.message_id,
        "subject": msg.subject,
        "from": msg.from_address,
        "reporter": msg.reporter_address,
        "to": list(msg.to),
        "cc": list(msg.cc),
        "date": _iso(msg.date),
        "case_ref": msg.case_ref,
        "in_reply_to": list(msg.in_reply_to),
        "auto_submitted": msg.auto_submitted,
        "precedence": msg.precedence,
        "list_id": msg.list_id,
        "is_dsn": msg.is_dsn,
        "dsn_failed_recipients": list(msg.dsn_failed_recipients),
        "html_converted": msg.html_converted,
        "attachments": [
            {"filename": a.filename, "content_type": a.content_type, "size": a.size, "sha256": a.sha256, "inline": a.inline}
            for a in msg.attachments
        ],
        "forwarded": len(msg.forwarded),
        "text": msg.text,
        "own_text": msg.own_text,
        "defects": list(msg.defects),
        "size": msg.size,
    }
