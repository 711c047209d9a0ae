"""Fifth attack round on issue 16 (cases tier, no servers): what a steering member can do and
learn through the reply token of a steering report, the reconsideration rule bypassed through a
merge, and what the "Where the case stands" block and escalations carry to the steering members."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.case_store import Store
from tests.mailers import ALICE, BOB, CAROL, REPORTER, SAM, reply

SECOND = "second@example.net"
ACCUSED = "pat@example.net"


def _to(store: Store, address: str, mark: int) -> list:
    return [m for m in store.mail_after(mark) if m.recipient == address]


def _clock(store: Store, ref: str) -> dict:
    from conduct_inbox.cases.deadlines import case_clock
    from conduct_inbox.core import sla
    from conduct_inbox.store.models import Case
    with store.sessions() as session:
        case = session.scalars(select(Case).where(Case.ref == ref)).one()
        return sla.deadlines(case_clock(session, case), sla.SlaPolicy())


def _escalate(store: Store) -> list:
    from conduct_inbox.cases.escalate import escalate_once
    from conduct_inbox.core import sla
    mark = store.outbox_mark()
    escalate_once(store.sessions, store.inbound.ctx, sla.SlaPolicy(), store.now)
    store.dispatched()
    return store.mail_after(mark)


def _steering_report(store: Store, case) -> object:
    return [m for m in store.mail_to(SAM) if m.kind == "steering_report" and m.case_id == case.id][-1]


def _merged_decided_half_answered(store: Store):
    """Robin's and Sam Second's reports of one incident, merged; a decision taken; Robin answered,
    Sam Second not yet; the committee sends the steering committee the case report."""
    a = store.report()
    b = store.report(sender=SECOND, name="Sam Second", body="The same man did it to me.")
    store.command(BOB, f"!merge {a.ref}", case=b)
    store.command(ALICE, "!ack", case=a)
    store.command(ALICE, "!decide no-action", case=a)
    store.command(ALICE, f"!reply {REPORTER}", "Dear Robin, we looked into it and decided to take no action.", case=a)
    store.command(ALICE, "!steering", case=a)
    return a


# ----- a steering member acting through the steering report's reply token ----------------------


@pytest.mark.xfail(strict=True, reason="a steering member outside the case reads the reporters' addresses from the !close refusal")
def test_a_steering_member_cannot_learn_the_reporters_from_a_close_refusal(store: Store):
    """BROKE. Robin's and Sam Second's reports of one incident are merged; the committee decides,
    answers Robin, and sends the steering committee the policy's case report (`!steering`), which
    "leaves out the reporter's and witnesses' identities" (the steering committee may publish it).
    Sam Steering does not work the case (quorum met; since round 4 his `!history` and `!list` are
    refused for that reason) — but the report carries his reply token for the case, and steering
    members "can act by email like members". He answers it with `!close`: the refusal he gets
    reads "!close: not every reporter of this case has been answered yet (second@example.net:
    !reply ADDRESS)" — a reporter's address, which the case report, the standing block (counts
    only) and the !history refusal all withhold from him. cases/decisions.py close names the
    waiting reporters in its Refused text; cases/desk.py `_apply` sends refusals to anyone
    `routing.may_see` admits (every steering member not recused), not only those who
    `routing.works_on` the case."""
    a = _merged_decided_half_answered(store)
    report_mail = _steering_report(store, a)
    assert REPORTER not in report_mail.text and SECOND not in report_mail.text
    mark = store.outbox_mark()
    store.take_in(reply(report_mail, SAM, "!close"))
    got = "\n".join(m.subject + "\n" + m.text for m in _to(store, SAM, mark))
    shown = [w for w in (REPORTER, SECOND, "Robin Reporter", "Sam Second") if w in got]
    assert not shown, f"Sam's answer names {shown}: {got[:600]!r}"


@pytest.mark.xfail(strict=True, reason="!reply ADDRESS on a steering report token confirms or denies a guessed reporter")
def test_a_steering_member_cannot_probe_who_reported_with_reply_address(store: Store):
    """BROKE. Same merged case, same steering report (no identities). Sam Steering suspects Sam
    Second reported and answers the report with `!reply second@example.net` and a short text:
    for a wrong guess he gets "!reply: no reporter of this case has that address" (refusal), for
    the right one a confirmation and the sent copy — and the text actually goes to the reporter
    from conduct@. The answer is an oracle for "did X report this?" available to anyone on the
    steering roster outside the case (`!decide ... target=ADDRESS` and `!send ROLE ADDRESS` answer
    the same way for any party). cases/handlers.py reply/send and cases/decisions.py decide
    refuse with "no ... has that address"; nothing checks `routing.works_on` for acting
    commands on a case the steering member only got a report of."""
    a = _merged_decided_half_answered(store)
    report_mail = _steering_report(store, a)
    answers = {}
    for guess in ("nobody@example.net", SECOND):
        mark = store.outbox_mark()
        store.take_in(reply(report_mail, SAM, f"!reply {guess}", "Dear reporter, a question from the steering committee."))
        answers[guess] = ([m.kind for m in _to(store, SAM, mark)], [m.kind for m in _to(store, guess, mark)])
    assert answers["nobody@example.net"] == answers[SECOND], answers


# ----- the reconsideration rule and merges -----------------------------------------------------


def _answered_and_closed(store: Store):
    case = store.report()
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!reply", "Dear Robin, we looked into it and decided to take no action.", case=case)
    store.command(ALICE, "!decide no-action", case=case)
    store.command(ALICE, "!close", case=case)
    assert store.case(case.ref).status == "closed"
    return case


@pytest.mark.xfail(strict=True, reason="!merge into a case under reconsideration bypasses the steering-only rule")
def test_a_committee_member_cannot_merge_a_case_into_one_under_reconsideration(store: Store):
    """BROKE. Alice decided and closed Robin's case; Sam Steering opens a reconsideration (README,
    round 4 fix: "during a reconsideration only steering members change the case"; the members
    are refused with "the case is under reconsideration by the steering committee, which alone
    acts on it"). Sam Second then reports the same man; Bob (a committee member, not steering)
    answers the new case's copy with `!merge REF` of the reconsidered case: accepted. The case
    under review gets a new reporter, messages, notes, a response clock and possibly Bob's
    assignee, and the merge announcement tells the steering members after the fact.
    cases/handlers.py run checks `call.case.status == RECONSIDERATION` only for the case the
    command is sent on (the merge's source), and cases/merge.py `_target` accepts any open
    target (reconsideration counts as open)."""
    case = _answered_and_closed(store)
    store.now += timedelta(days=3)
    store.personal(SAM, f"!reconsider {case.ref}")
    assert store.case(case.ref).status == "reconsideration"
    other = store.report(sender=SECOND, name="Sam Second", body="He did the same to me; the decision was wrong.")
    store.command(BOB, f"!merge {case.ref}", case=other)
    assert store.case(other.ref).merged_into_id is None, "Bob changed the case under reconsideration by a merge"
