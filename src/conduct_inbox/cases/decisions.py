"""Decisions and the end of a case: `!decide`, `!confirm` (a severe decision, or an `!include`,
takes effect only when a second non-recused member confirms), `!close`, and the sanctions
ledger a decision writes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from conduct_inbox.cases.audit import event
from conduct_inbox.cases.calls import Call
from conduct_inbox.cases.context import recused
from conduct_inbox.cases.steering import steering_report
from conduct_inbox.core import routing, sla, states
from conduct_inbox.core.command_types import Close, Confirm, Decide
from conduct_inbox.errors import Refused
from conduct_inbox.mail.parse import InboundMessage as Parsed
from conduct_inbox.store.models import Case, Decision, OutboxMessage, Sanction

SANCTION_KINDS = {"vacation", "temporary-ban", "permanent-ban", "public-reprimand", "private-reprimand", "apology-request"}
#: Sanctions that go into the ledger (`conduct-inbox sanctions`).
LEDGER_KINDS = {"vacation", "temporary-ban", "permanent-ban"}
#: Outbox kinds of the announcements that ask for a !confirm (a reply to one says what it confirms).
DECISION_PROPOSAL, INCLUDE_PROPOSAL = "decision_proposal", "include_proposal"
MAX_THREAD = 50  # message ids of In-Reply-To looked up


def require_open(case: Case, what: str) -> None:
    if not states.is_open(case.status):
        raise Refused(f"{what}: the case is closed (use !reopen first)")


def decide(call: Call, c: Decide) -> str:
    session, case, member, now = call.session, call.case, call.member, call.now
    require_open(case, "!decide")
    if c.to is not None:
        target = next((p for p in case.parties if p.address == c.to), None)
        if target is None:
            raise Refused("!decide: no party of this case has that address")
        target_role: str | None = target.role
    else:
        target_role = c.target or ("reported" if case.party("reported") else None)
        target = case.party(target_role) if target_role else None
        if target_role and sum(p.role == target_role for p in case.parties) > 1:
            # (after a merge, say): the sanctions ledger must name the right person
            raise Refused(f"!decide: this case has several {target_role} parties; name the one the decision is "
                          "about with target=ADDRESS (!history lists the parties)")
    if c.target and target is None:
        raise Refused(f"!decide: the case has no {c.target} party (add one with !party)")
    if any(v in SANCTION_KINDS for v in c.values) and target is None:
        raise Refused("!decide: a sanction needs a target party (target=ROLE)")
    for old in session.scalars(select(Decision).where(Decision.case_id == case.id, Decision.status == "pending")):
        old.status = "superseded"
    severe = any(v in set(call.ctx.options.severe_decisions) for v in c.values)
    decision = Decision(
        case_id=case.id, kinds=",".join(c.values), target_role=target_role,
        target_address=target.address if target else None, until=c.until,
        status="pending" if severe else "effective", decided_by=member.email, created_at=now,
    )
    session.add(decision)
    session.flush()
    if severe:
        call.tell(f"{member.name} proposes the decision {', '.join(c.values)}. It is a severe "
                  "decision: it takes effect when a second member sends !confirm.", kind=DECISION_PROPOSAL)
        return f"decision {', '.join(c.values)} recorded as pending; a second member must !confirm"
    make_effective(session, case, decision, now)
    return f"decision {', '.join(c.values)} recorded"


def confirm(call: Call, c: Confirm) -> str:
    session, case, member, now = call.session, call.case, call.member, call.now
    audience = routing.committee(call.ctx.roster, recused(case))
    if member.steering and not audience.steering_included:
        raise Refused("!confirm: steering members confirm only when too few committee members are left")
    decision = session.scalars(
        select(Decision).where(Decision.case_id == case.id, Decision.status == "pending").order_by(Decision.id.desc())
    ).first()
    include = next((r for r in case.recusals if r.active and r.include_proposed_by), None)
    if decision is None and include is None:
        raise Refused("!confirm: nothing on this case is waiting for confirmation")
    if decision is not None and decision.decided_by == member.email and include is not None \
            and include.include_proposed_by != member.email:
        decision = None  # their own decision waits for another member; the !include is theirs to confirm
    elif decision is not None and include is not None and include.include_proposed_by != member.email:
        # Both wait and both are this member's to confirm: a severe decision must not take
        # effect because a member meant the other one.
        what = c.what or _answered_proposal(session, case, call.msg)
        if what is None:
            raise Refused("!confirm: a decision and an inclusion both wait for confirmation; "
                          "send !confirm decision or !confirm include")
        if what == "include":
            decision = None
    if c.what == "include" and include is None or c.what == "decision" and decision is None:
        raise Refused(f"!confirm {c.what}: nothing of that kind waits for confirmation")
    if c.what == "include":
        decision = None
    if decision is not None:
        if decision.decided_by == member.email:
            raise Refused("!confirm: a second member must confirm your own decision")
        decision.confirmed_by = member.email
        make_effective(session, case, decision, now)
        return f"decision {decision.kinds.replace(',', ', ')} confirmed and in effect"
    assert include is not None
    if include.include_proposed_by == member.email:
        raise Refused("!confirm: a second member must confirm your own !include")
    include.active = False
    include.include_proposed_by = None
    # When the exclusion ended: `!history` shows the member what reached them from then on.
    call.event("member_included", recusal=include.id)
    person = call.ctx.roster.person(include.member_email)
    session.flush()
    session.refresh(case)
    call.tell(f"{person.name if person else 'A member'} is included in this case again (confirmed by {member.name}).")
    return "inclusion confirmed"


def _answered_proposal(session: Session, case: Case, msg: Parsed) -> str | None:
    """"decision" or "include" when the mail answers our announcement of that proposal."""
    kinds = set(session.scalars(select(OutboxMessage.kind).where(
        OutboxMessage.case_id == case.id, OutboxMessage.message_id.in_(list(msg.in_reply_to)[:MAX_THREAD]))))
    found = [what for what, kind in (("decision", DECISION_PROPOSAL), ("include", INCLUDE_PROPOSAL)) if kind in kinds]
    return found[0] if len(found) == 1 else None


def make_effective(session: Session, case: Case, decision: Decision, now: datetime) -> None:
    decision.status, decision.effective_at = "effective", now
    case.status = states.after_decision(case.status)
    for kind in decision.kind_list:
        if kind in LEDGER_KINDS and decision.target_address:
            session.add(Sanction(case_ref=case.ref, target_address=decision.target_address, kind=kind,
                                 scope="all spaces", starts_on=now.date(), ends_on=decision.until))
    event(session, case.id, "system", "decision_effective", now, decision_id=decision.id, kinds=decision.kind_list)


def close(call: Call, c: Close) -> str:
    session, case, now = call.session, call.case, call.now
    require_open(case, "!close")
    if not c.silent:
        effective = session.scalars(select(Decision).where(Decision.case_id == case.id, Decision.status == "effective")).first()
        if effective is None:
            raise Refused("!close: record a decision first (!decide), or use !close silent REASON")
        reporters = [p for p in case.parties if p.role == "reporter"]
        waiting = [p.address for p in reporters if sla.still_owed(p.answered_at, p.waiting_since)]
        if len(reporters) > 1 and waiting:  # a merge: every reporter is told what was done
            raise Refused(f"!close: not every reporter of this case has been answered yet ({', '.join(waiting)}: "
                          "!reply ADDRESS), or use !close silent REASON")
        if waiting or (not reporters and case.last_response_at is None):
            raise Refused("!close: the reporter has not been answered yet (!reply), or use !close silent REASON")
    previous = case.status
    case.status, case.closed_at = states.CLOSED, now
    call.event("status_changed", old=previous, new=states.CLOSED, silent=c.silent)
    steering_report(call.ctx, session, case, now, reason="closed")
    return "case closed; report queued for the steering committee"
