"""The only code that turns case events into outbox rows. Committee recipients come from
`core.routing` (never a recused member), one draft per recipient with only them in To: and their
own reply token; a sender's attachments travel only inside scanned content (`core.scanning`).
Everything is written in the caller's transaction: nothing is sent until it commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.cases import standing
from conduct_inbox.cases.context import Context, member_reply_to, personal_reply_to, recused, subject
from conduct_inbox.core import commands as cmd
from conduct_inbox.core import routing, scanning
from conduct_inbox.core.party_mail import OutwardDraft
from conduct_inbox.core.roster import Person
from conduct_inbox.core.standing import Standing
from conduct_inbox.mail import conversation
from conduct_inbox.mail.compose import Draft, OutgoingAttachment
from conduct_inbox.store.models import Case, InboundMessage, OutboxMessage, Party
from conduct_inbox.store.outbox import enqueue_all

log = logging.getLogger(__name__)

MB = 1024 * 1024


def send(session: Session, ctx: Context, drafts: Sequence[Draft], now: datetime, case_id: int | None = None,
         inbound_id: int | None = None, correspondent: str | None = None) -> None:
    """Write these drafts to the outbox (one INSERT, in this order)."""
    enqueue_all(session, drafts, ctx.sender, now, case_id=case_id, inbound_id=inbound_id, correspondent=correspondent)


def size_text(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{max(1, size // 1024)} KB"


def attachments(ctx: Context, content: scanning.Scanned) -> tuple[list[dict[str, Any]], tuple[OutgoingAttachment, ...]]:
    """The scanned attachments as listed in the committee's copy, and those small enough to forward."""
    limit = ctx.options.max_forward_attachment_mb * MB
    listed, attached = [], []
    for att in content.attachments:
        forwarded = att.size <= limit
        listed.append({"filename": att.filename, "content_type": att.content_type, "size_text": size_text(att.size),
                       "forwarded": forwarded, "scanned": att.scanned})
        if forwarded:
            attached.append(OutgoingAttachment(att.filename or "attachment", att.content_type, att.content))
    return listed, tuple(attached)


def committee_thread(ctx: Context, case: Case) -> tuple[str, dict[str, tuple[str, str]]]:
    """The case's stable root Message-ID, and per member address the (first, last) mail we sent
    them about it: every committee mail references the root, then what that member received."""
    root = conversation.case_root_id(case.ref, ctx.sender.domain, ctx.sender.address)
    session = Session.object_session(case)
    earlier: dict[str, tuple[str, str]] = {}
    if session is None or case.id is None:
        return root, earlier
    for recipient, message_id in session.execute(
        select(OutboxMessage.recipient, OutboxMessage.message_id)
        .where(OutboxMessage.case_id == case.id, OutboxMessage.audience.in_(("member", "steering")))
        .order_by(OutboxMessage.id)
    ):
        first = earlier.get(recipient, (message_id, message_id))[0]
        earlier[recipient] = (first, message_id)
    return root, earlier


def _threaded(case: Case | None, draft: Draft, root: str, earlier: dict[str, tuple[str, str]]) -> Draft:
    """`draft` (committee mail about `case`) in the case's conversation."""
    if case is None:
        return draft
    first, last = earlier.get(draft.recipient.lower(), (None, None))
    refs = tuple(dict.fromkeys(m for m in (root, first, last) if m))
    # Thread-Topic repeats the subject: an alert's (ids only, no title) stays without the title.
    return replace(draft, in_reply_to=last, references=refs, thread_topic=draft.subject,
                   thread_index=conversation.thread_index(root, case.created_at))


def committee_drafts(
    ctx: Context, case: Case | None, audience: routing.Audience, kind: str, subject_: str,
    body_for: Callable[[Person], str], content: scanning.Scanned | None = None, now: datetime | None = None,
    where: Standing | None = None,
) -> list[Draft]:
    """One draft per recipient, only them in To:, with their own reply token. A sender's
    attachments come only with `content`, the member scan's result: nothing unscanned. Mail
    about a case says where it stands (due times, the commands that make sense now) and
    threads in the case's conversation."""
    attached = attachments(ctx, content)[1] if content is not None else ()
    block = standing.lines(ctx, case, now, where) if case is not None else []
    root, earlier = committee_thread(ctx, case) if case is not None else ("", {})
    return [
        _threaded(case, Draft(
            kind=kind,
            audience="steering" if person.steering else "member",
            recipient=person.email,
            recipient_name=person.name,
            subject=subject_,
            body=standing.with_block(body_for(person), block),
            reply_to=member_reply_to(ctx, case, person),
            attachments=attached,
        ), root, earlier)
        for person in audience.recipients
    ]


def to_committee(session: Session, ctx: Context, case: Case, audience: routing.Audience, kind: str, now: datetime,
                 heading: str, text: str, subject_: str | None = None) -> None:
    """A committee note (announcement, internal note, copy of what was sent) to `audience`."""
    body = ctx.renderer.render("committee_note", marker=audience.marker_line(), heading=heading, ref=case.ref, text=text)
    drafts = committee_drafts(ctx, case, audience, kind, subject_ or subject(ctx, case), lambda _p: body, now=now)
    send(session, ctx, drafts, now, case_id=case.id)


def announce(session: Session, ctx: Context, case: Case, now: datetime, text: str, kind: str = "announcement",
             but: Person | None = None) -> None:
    """An announcement to every member who may see the case (recusals as they stand now), `but`
    the member whose action it announces (their confirmation tells them)."""
    session.flush()
    session.refresh(case)
    audience = _others(ctx, case, but) if but is not None else routing.committee(ctx.roster, recused(case))
    to_committee(session, ctx, case, audience, kind, now, heading="Announcement", text=text)


def copy_to_member(session: Session, ctx: Context, case: Case, member: Person, copies: Sequence[tuple[str, str]],
                   now: datetime) -> None:
    """The sender's own copy of exactly what their message sent to parties."""
    heading, text = _copies_text(member, copies)
    to_committee(session, ctx, case, routing.Audience((member,)), "sent_copy", now, heading=heading, text=text)


def _copies_text(member: Person, copies: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """(heading, text) of copies of what was sent: the heading names the one recipient when
    there is one; with several, each copy has its line."""
    if len(copies) == 1:
        return f"{member.name} sent this to {copies[0][0]}", copies[0][1]
    return (f"{member.name} sent {len(copies)} messages",
            "\n\n".join(f"{member.name} sent this to {whom}:\n\n{text}" for whom, text in copies))


def _others(ctx: Context, case: Case, member: Person) -> routing.Audience:
    """Everyone who may see the case (recusals as they stand now) but `member`."""
    audience = routing.committee(ctx.roster, recused(case))
    return routing.Audience(
        tuple(p for p in audience.recipients if p.email != member.email), audience.excluded, audience.steering_included
    )


def note_to_others(session: Session, ctx: Context, case: Case, member: Person, text: str, now: datetime) -> str:
    """An internal note to the other members who may see the case; returns their names."""
    others = _others(ctx, case, member)
    to_committee(session, ctx, case, others, "note", now, heading=f"Internal note from {member.name}", text=text)
    return ", ".join(p.name for p in others.recipients)


def announce_to_others(session: Session, ctx: Context, case: Case, member: Person, now: datetime, *, changes: Sequence[str],
                       notices: Sequence[str], note: str, copies: Sequence[tuple[str, str]] = (),
                       kind: str = "announcement", urgent: bool = False) -> str:
    """One mail about one command message of `member` to the other members who may see the case
    (recusals as the message left them): what they did, what the commands made happen, copies of
    what they sent to parties, and their text as an internal note. Returns the recipients' names."""
    session.flush()
    session.refresh(case)
    parts = ["\n".join(f"- {line}" for line in changes)] if changes else []
    parts += list(notices)
    copy_heading, copy_text = _copies_text(member, copies) if copies else ("", "")
    if copies:
        parts.append(f"{copy_heading}:\n\n{copy_text}" if changes or notices else copy_text)
    if note:
        parts.append(f"Internal note from {member.name}:\n\n{note}")
    if changes:
        heading = f"{member.name} changed this case"
    elif notices or not copies:
        heading = f"Announcement (from {member.name}'s mail)"
    else:
        heading, kind = copy_heading, "sent_copy"
    others = _others(ctx, case, member)
    to_committee(session, ctx, case, others, kind, now, heading=heading, text="\n\n".join(parts),
                 subject_=subject(ctx, case, "URGENT") if urgent else None)
    return ", ".join(p.name for p in others.recipients)


def reply_to_member(session: Session, ctx: Context, case: Case | None, member: Person, kind: str, now: datetime,
                    **context: object) -> None:
    """A confirmation or refusal to the sender alone (only if they may see the case)."""
    if case is not None and not routing.may_see(ctx.roster, recused(case), member.email):
        return
    audience = routing.Audience((member,))
    body = ctx.renderer.render(
        kind, marker=audience.marker_line(), ref=case.ref if case else None, help=cmd.HELP_TEXT,
        done=context.get("done", []), problems=context.get("problems", []),
    )
    subject_ = subject(ctx, case) if case is not None else f"[{ctx.options.case_tag}] Your commands"
    reply_to = member_reply_to(ctx, case, member) if case is not None else personal_reply_to(ctx, member)
    if case is not None:
        body = standing.with_block(body, standing.lines(ctx, case, now))
    draft = Draft(kind=kind, audience="steering" if member.steering else "member", recipient=member.email,
                  recipient_name=member.name, subject=subject_, body=body, reply_to=reply_to)
    if case is not None:
        draft = _threaded(case, draft, *committee_thread(ctx, case))
    send(session, ctx, [draft], now, case_id=case.id if case else None)


#: What a reporter or party sent that we answer: real mail, never an automatic reply.
REAL_MAIL_KINDS = ("new_report", "followup")
MAX_REFERENCES = 10


def party_thread(session: Session, case: Case, party: Party) -> tuple[str | None, tuple[str, ...]]:
    """(In-Reply-To, References) of mail to `party`: only messages they have seen, their own real
    mail on the case (report, follow-ups; never an out-of-office answer) and our earlier mail to
    them, never a committee-internal message. In-Reply-To is their latest real mail."""
    theirs = session.execute(
        select(InboundMessage.received_at, InboundMessage.message_id)
        .where(InboundMessage.case_id == case.id, InboundMessage.sender == party.address,
               InboundMessage.message_id.is_not(None), InboundMessage.kind.in_(REAL_MAIL_KINDS))
        .order_by(InboundMessage.id)
    ).all()
    ours = session.execute(
        select(OutboxMessage.created_at, OutboxMessage.message_id)
        .where(OutboxMessage.case_id == case.id, OutboxMessage.recipient == party.address.lower(),
               OutboxMessage.audience.in_(("reporter", "party")))
        .order_by(OutboxMessage.id)
    ).all()
    chain: list[str] = list(dict.fromkeys(m for _at, m in sorted([*theirs, *ours], key=lambda r: r[0]) if m))
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    in_reply_to = theirs[-1][1] if theirs else (chain[-1] if chain else None)
    return in_reply_to, tuple(chain)


def send_to_party(session: Session, ctx: Context, case: Case, party: Party, text: str, now: datetime, kind: str) -> None:
    """The committee's text to a party, from conduct@, threaded under the party's own real mail."""
    in_reply_to, references = party_thread(session, case, party)
    ref = party.known_ref or case.ref  # a party of a merged case hears under their own reference
    body = ctx.renderer.render("to_party", text=text, committee_name=ctx.options.committee_name, ref=ref)
    draft = OutwardDraft(kind=kind, audience="reporter" if party.role == "reporter" else "party", recipient=party.address,
                         recipient_name=party.name, body=body, in_reply_to=in_reply_to, references=references,
                         case_tag=ctx.options.case_tag, ref=ref, committee_name=ctx.options.committee_name)
    send(session, ctx, [draft], now, case_id=case.id)


def alert(session: Session, ctx: Context, case: Case | None, text: str, now: datetime, kind: str = "alert", extra: str = "Alert:",
          correspondent: str | None = None) -> None:
    """An operational alert (ids only) to everyone who may see the case, or the whole committee;
    `correspondent`: the canonical address whose rate limit it reports (recorded, never shown)."""
    audience = routing.committee(ctx.roster, recused(case))
    if case is not None:
        # Not subject(): alerts carry ids only, never the report's subject.
        subject_ = f"[{ctx.options.case_tag} #{case.ref}] {extra}".strip()
    else:
        subject_ = f"[{ctx.options.case_tag}] Alert"
    body = ctx.renderer.render("alert", marker=audience.marker_line(), text=text)
    drafts = committee_drafts(ctx, case, audience, kind, subject_, lambda _p: body, now=now)
    send(session, ctx, drafts, now, case_id=case.id if case else None, correspondent=correspondent)
