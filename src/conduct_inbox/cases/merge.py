"""`!merge REF`: the same incident reported twice, or a forwarded copy of a report already
received, becomes one case. Everything of this case moves to case REF — messages, mail sent,
parties, recusals, decisions, events (internal notes are messages, so they move too) — and this
case is closed with a pointer to REF. From then on mail about this case's reference, and its
members' reply tokens, act on REF (`resolve`, `token_refs`), for a member only while they may
act on REF. The reporter is told nothing.

A merge never shows a member anything they are excluded from: it is refused unless both cases
exclude exactly the same members (a member excluded from only one of them would, by the merge,
either see the other case's content or lose a case they were working on, which tells them the
other case concerns them). The committee makes them the same first (`!concerns NAME`), which is
itself announced.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from conduct_inbox.cases import mailer
from conduct_inbox.cases.audit import event
from conduct_inbox.cases.calls import Call
from conduct_inbox.cases.context import recused, works_on
from conduct_inbox.cases.deadlines import case_clock, refresh_clock, reset_response_clock
from conduct_inbox.core import sla, states
from conduct_inbox.core.command_types import Merge
from conduct_inbox.errors import Refused
from conduct_inbox.store.models import (
    Case,
    Decision,
    EscalationFired,
    Event,
    InboundMessage,
    OutboxMessage,
    Recusal,
    Sanction,
)

MAX_CHAIN = 20  # merged-into pointers followed (a merge flattens them, so one is the rule)
#: Rows that belong to a case by `case_id` and move with it.
_MOVED = (InboundMessage, OutboxMessage, Decision, Event)


def resolve(session: Session, case: Case) -> Case:
    """The case that mail about `case` acts on: itself, or the case it was merged into."""
    for _ in range(MAX_CHAIN):
        if case.merged_into_id is None:
            return case
        target = session.get(Case, case.merged_into_id)
        if target is None:
            return case
        case = target
    return case


def token_refs(session: Session, case: Case) -> tuple[str, ...]:
    """The references whose case tokens act on `case`: its own and those of the cases merged into it."""
    merged = session.scalars(select(Case.ref).where(Case.merged_into_id == case.id).order_by(Case.id)).all()
    return (case.ref, *merged)


def _no_such_case() -> Refused:
    # One answer for unknown, merged, purged and hidden cases: it must not tell a member that a
    # case they are excluded from exists (nor repeat its reference to them).
    return Refused("!merge: there is no such case that you can merge into")


def _target(call: Call, c: Merge) -> Case:
    session, source, member = call.session, call.case, call.member
    target = session.scalars(select(Case).where(Case.ref == c.ref)).first()
    if target is not None and target.id == source.id:
        raise Refused("!merge: a case cannot be merged into itself")
    if (target is None or target.merged_into_id is not None or target.purged_at is not None
            or not works_on(call.ctx, target, member.email)):
        # (a steering member handed one case must not pull another one they do not work on into it)
        raise _no_such_case()
    if recused(source).steering_works != recused(target).steering_works:
        # One of them is the steering members' (escalated to them, or reconsidered): merging would
        # show them the other case's content, or take from them a case they were handed.
        raise Refused(f"!merge: one of cases {source.ref} and {target.ref} is worked on by the steering members "
                      "(escalated to them, or under reconsideration) and the other is not; nothing was merged")
    if set(recused(source)) != set(recused(target)):
        raise Refused(f"!merge: cases {source.ref} and {target.ref} do not exclude the same members, and merging "
                      "them would show a member something they are excluded from (or take from them a case they "
                      "work on, which tells them what the other case is about). Nothing was merged. Make the "
                      "exclusions the same first (!concerns NAME on the case that lacks one), then merge.")
    if target.status == states.RECONSIDERATION and not member.steering:
        raise Refused(f"!merge: case {target.ref} is under reconsideration by the steering committee, which alone "
                      "acts on it until it is closed again")
    if not states.is_open(target.status) and states.is_open(source.status):
        raise Refused(f"!merge: case {target.ref} is closed; reopen it first (!reopen), or merge it into this case")
    return target


def _hold_reporters_clocks(target: Case, source: Case, clocks: dict[int, sla.CaseClock], now: datetime) -> None:
    """Before the cases' clocks become one: a reporter still waiting since their case began keeps
    waiting from then (the merged case counts from the earlier report; an automatic case nobody
    acknowledged, from the merge: a member looked at it); the reporters of a closed case, answered
    by its closing, are owed a response from the merge on; and every party of the merged case keeps
    the reference they know."""
    for case in (target, source):
        reporters = [p for p in case.parties if p.role == "reporter"]
        if not states.is_open(case.status):
            for party in reporters:
                party.waiting_since = now
            continue
        start = sla.own_start(clocks[case.id]) or now
        for party in reporters:
            if party.answered_at is None and party.waiting_since is None:
                party.waiting_since = start
    for party in source.parties:
        party.known_ref = party.known_ref or source.ref


def _spam_senders_owed_nothing(target: Case, source: Case) -> None:
    """A real report merged with a case flagged as spam: the spam case's sender joins as a party
    (`other`), not as a reporter the committee must write to before `!close` (a spam sender's
    address is often forged, and may be the adversary's)."""
    if target.spam == source.spam:
        return
    for party in (target if target.spam else source).parties:
        if party.role == "reporter":
            party.role = "other"


def _heard_on(session: Session, case: Case) -> set[str]:
    """The addresses that had mail on `case` as reporter or party: they know its reference."""
    return {r.lower() for r in session.scalars(select(OutboxMessage.recipient).where(
        OutboxMessage.case_id == case.id, OutboxMessage.audience.in_(("reporter", "party"))))}


def _move_parties(session: Session, source: Case, target: Case, heard: dict[int, set[str]]) -> None:
    have = {(p.role, p.address.lower()): p for p in target.parties}
    for party in list(source.parties):
        kept = have.get((party.role, party.address.lower()))
        if kept is None:
            party.case_id = target.id
            have[(party.role, party.address.lower())] = party
            continue
        address = party.address.lower()
        if address in heard[source.id] and address not in heard[target.id]:
            kept.known_ref = party.known_ref  # they heard only under the merged-in case's reference
        # The same reporter in both cases: owed their answer by the earlier of the two promises.
        theirs = sla.reporter_start(party.answered_at, party.waiting_since)
        ours = sla.reporter_start(kept.answered_at, kept.waiting_since)
        if theirs is not None and (ours is None or theirs < ours):
            kept.answered_at, kept.waiting_since = party.answered_at, party.waiting_since
        session.delete(party)


def _move_recusals(session: Session, source: Case, target: Case) -> None:
    """The union (the active sets are equal here): a member excluded by command from either case
    stays so, and an exclusion only `!include` could undo on one case is no weaker on the other."""
    existing = {r.member_email: r for r in target.recusals}
    for recusal in source.recusals:
        if not recusal.active:
            continue
        mine = existing.get(recusal.member_email)
        if mine is None:
            session.add(Recusal(case_id=target.id, member_email=recusal.member_email, reason=recusal.reason,
                                automatic=recusal.automatic, active=True, created_at=recusal.created_at))
        elif mine.automatic and not recusal.automatic:
            mine.active, mine.reason, mine.automatic, mine.include_proposed_by = True, recusal.reason, False, None
    # A pending `!include` was agreed about the target's content alone: the merged-in report is new
    # to it, so no inclusion proposed before the merge may be confirmed after it.
    for recusal in target.recusals:
        recusal.include_proposed_by = None


def _withdraw_rival_proposals(session: Session, target: Case) -> bool:
    """Each case had a decision waiting for `!confirm`: a `!confirm` could not say which one it
    meant, so both are withdrawn (superseded, as a new `!decide` supersedes a pending one)."""
    pending = session.scalars(select(Decision).where(Decision.case_id == target.id, Decision.status == "pending")).all()
    for decision in pending if len(pending) > 1 else []:
        decision.status = "superseded"
    return len(pending) > 1


def merge(call: Call, c: Merge) -> str:
    session, source, member, now = call.session, call.case, call.member, call.now
    target = _target(call, c)
    session.flush()
    heard = {case.id: _heard_on(session, case) for case in (target, source)}
    clocks = {case.id: case_clock(session, case) for case in (target, source)}
    for model in _MOVED:
        table = model.__table__
        session.execute(update(table).where(table.c.case_id == source.id).values(case_id=target.id))
    session.execute(update(Sanction.__table__).where(Sanction.case_ref == source.ref).values(case_ref=target.ref))
    # Escalations already sent stay sent (the target's own record of a key wins).
    fired = EscalationFired.__table__
    held = select(fired.c.key).where(fired.c.case_id == target.id)
    session.execute(delete(fired).where(fired.c.case_id == source.id, fired.c.key.in_(held)))
    session.execute(update(fired).where(fired.c.case_id == source.id).values(case_id=target.id))
    # Cases merged into this one before now point at the target: one pointer to follow, always.
    session.execute(update(Case.__table__).where(Case.merged_into_id == source.id).values(merged_into_id=target.id))
    _spam_senders_owed_nothing(target, source)
    _hold_reporters_clocks(target, source, clocks, now)
    _move_parties(session, source, target, heard)
    _move_recusals(session, source, target)
    call.row.case_id = target.id
    target.urgent = target.urgent or source.urgent
    target.spam = target.spam and source.spam  # a real report merged in keeps its clocks
    target.assignee = target.assignee or source.assignee
    # Every promise made to either reporter still holds: the acknowledgement is owed by the earliest
    # report still owed one (`sla.merged`), each reporter keeps their own response clock
    # (`_hold_reporters_clocks`). `created_at` stays: threading (Thread-Index) is built on it.
    clocks_from, target.human_ack_at, target.auto, target.urgent_since = sla.merged(
        clocks[target.id], clocks[source.id], now)
    target.clocks_from = None if clocks_from == target.created_at else clocks_from
    if target.human_ack_at is not None and target.status == states.NEW:
        acknowledged = states.TRANSITIONS[(states.NEW, "ack")]
        event(session, target.id, member.email, "status_changed", now, old=target.status, new=acknowledged)
        target.status = acknowledged
    target.updated_at = now
    session.flush()
    session.expire_all()  # rows moved by plain UPDATEs: read them again
    reset_response_clock(target)
    withdrawn = _withdraw_rival_proposals(session, target)
    call.set_status(states.CLOSED)
    source.closed_at, source.merged_into_id, source.next_due_at = now, target.id, None
    session.flush()
    event(session, target.id, member.email, "case_merged", now, from_case=source.id, proposals_withdrawn=withdrawn)
    refresh_clock(call.ctx, session, target)
    if call.ctx.options.announce == "changes":
        mailer.announce(session, call.ctx, target, now, (
            f"{member.name} merged case {source.ref} into this case ({target.ref}): its messages, parties, notes, "
            f"decisions and history are now part of {target.ref}, and replies to mail about {source.ref} act on "
            f"{target.ref}. The reporter was not told (write to them with !reply if they should be)."
            + (" Both cases had a decision waiting for !confirm: both were withdrawn, since a !confirm could not "
               "say which one it meant. Propose the decision again with !decide." if withdrawn else "")), kind="merge",
            but=member)
    return (f"case {source.ref} merged into case {target.ref} and closed; its mail now acts on {target.ref}"
            + ("; both cases' decisions waiting for !confirm were withdrawn (propose again with !decide)"
               if withdrawn else ""))
