"""Second attack round on issue 16's fixes (cases tier, no servers): hidden cases answered as
unknown references, the withdrawal of queued mail listing a case, `!merge` and the clocks."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from tests.case_store import Store
from tests.case_store import clock as _clock
from tests.case_store import escalate as _escalate
from tests.mailers import ALICE, BOB, CAROL, REPORTER, reply

CAROL_NAMED = "Carol Chen kept making comments after I asked her to stop."


def _to_conduct(member: str, subject: str, body: str = "Is there anything about this?") -> bytes:
    msg = EmailMessage()
    msg["From"] = member
    msg["To"] = "conduct@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    return msg.as_bytes()


def _unknown_ref(ref: str) -> str:
    """A reference in the same shape as `ref` that no case has."""
    head, _, tail = ref.rpartition("-")
    return f"{head}-{int(tail) + 900:0{len(tail)}d}" if tail.isdigit() else ref + "9"


def test_personal_address_with_a_hidden_cases_tag_is_answered_as_an_unknown_reference(store: Store):
    """BROKE. Carol is named in the report, so excluded from the start and never had mail about
    it. She writes to her own personal reply address with the case's tag in the subject: the
    answer must be the one a reference that does not exist gets ("there is no case ... you can
    act on"). A nonexistent reference is answered; the hidden case's reference gets silence
    (core/admission.py admit: `personal token used on a case` → REFUSE), which tells her a case
    with that reference exists and is kept from her."""
    case = store.report(body=CAROL_NAMED)
    assert CAROL in store.case(case.ref).recused_members()
    assert not store.mail_to(CAROL)
    ghost = _unknown_ref(case.ref)
    store.personal(CAROL, f"[conduct #{ghost}] question")
    unknown_answer = [m for m in store.mail_to(CAROL)]
    assert unknown_answer and f"there is no case {ghost}" in unknown_answer[-1].text
    mark = store.outbox_mark()
    store.personal(CAROL, f"[conduct #{case.ref}] question")
    answers = [m for m in store.mail_after(mark) if m.recipient == CAROL]
    assert answers and f"there is no case {case.ref}" in answers[-1].text, \
        "a hidden case's reference on a personal address gets silence, a nonexistent one an answer"


def test_a_merged_hidden_cases_reference_is_answered_without_naming_the_case_it_went_into(store: Store):
    """BROKE. Carol is named in two reports of one incident (excluded from both, never had mail).
    Case 2 is merged into case 1. Carol writes to conduct@ about case 2's reference: the answer
    must be the unknown-reference answer for the reference she wrote, and must not name case 1.
    It names case 1's reference (cases/desk.py handle passes `case.ref`, the merge target's, to
    personal.no_such_case, not the reference of the subject), telling her case 2 exists, was
    merged, and what it became."""
    first = store.report(body=CAROL_NAMED)
    second = store.report(sender="second@example.net", name="Sam Second", body="Carol Chen did it to me too.")
    assert CAROL in store.case(first.ref).recused_members() and CAROL in store.case(second.ref).recused_members()
    store.command(ALICE, f"!merge {first.ref}", case=second)
    assert store.case(second.ref).merged_into_id == first.id
    assert not store.mail_to(CAROL)
    store.take_in(_to_conduct(CAROL, f"[conduct #{second.ref}] question"))
    answers = store.mail_to(CAROL)
    assert answers, "no answer at all (silence differs from the unknown-reference answer)"
    text = answers[-1].text + answers[-1].subject
    assert first.ref not in text, f"the answer about {second.ref} names the case it was merged into ({first.ref}): {text!r}"
    assert f"there is no case {second.ref}" in text


def test_a_list_answered_on_another_cases_mail_is_withdrawn_when_the_reader_is_excluded(store: Store):
    """BROKE. The first round's fix withdraws queued mail listing a case when it has no case
    (`case_id IS NULL`: overview, personal !list, spam digest). A `!list` sent on case 1's mail is
    answered in case 1's confirmation (case_id = case 1) and lists case 2 too. While it waits
    (SMTP outage) Carol is excluded from case 2 by the reporter's follow-up: the queued answer
    still lists case 2 (cases/recusals.py withdraw_unsent looks only at case-less rows and rows of
    the case itself)."""
    first = store.report(sender="other@example.net", name="Olga Other", subject="Noise at the party",
                         body="Too loud.")
    second = store.report(subject="About the sprint")
    store.outage = True
    mark = store.outbox_mark()
    store.command(CAROL, "!list", case=first)
    [listing] = [m for m in store.mail_after(mark) if m.recipient == CAROL]
    assert second.ref in listing.text and listing.case_id == first.id
    ack = store.mail_to(REPORTER)[0]
    store.take_in(reply(ack, REPORTER, "", "I forgot: Carol Chen was standing right next to him."))
    assert CAROL in store.case(second.ref).recused_members()
    from conduct_inbox.store.models import OutboxMessage
    waiting = [m for m in store.mail(OutboxMessage.status == "pending") if m.recipient == CAROL and second.ref in m.text]
    assert not waiting, f"queued mail to Carol still lists case {second.ref}, which she is now excluded from"


AUTO = {"Auto-Submitted": "auto-generated"}


def test_merging_an_acknowledged_automatic_case_into_an_unacknowledged_one_keeps_its_response_due(store: Store):
    """BROKE. Two automatic mails (a form, say) become `[auto]` cases. A member `!ack`s case 2:
    its response clock runs (README: an automatic mail somebody acknowledged promised a response
    within the week). Case 2 is merged into case 1, which nobody acknowledged: the merged case
    keeps `last_response_at` = case 2's acknowledgement, but no `human_ack_at`, so an auto case
    without an acknowledgement has no clock at all (core/sla.py merged does not carry the
    acknowledgement over; cases/merge.py merge keeps the target's human_ack_at). The response
    owed to case 2's sender is no longer due anywhere."""
    first = store.report(sender="forms@example.net", name="Form", subject="Form 1", headers=AUTO)
    second = store.report(sender="forms2@example.net", name="Form Two", subject="Form 2", headers=AUTO)
    assert store.case(first.ref).auto and store.case(second.ref).auto
    assert "response" not in _clock(store, second.ref)
    store.command(ALICE, "!ack", case=second)
    due = _clock(store, second.ref)
    assert "response" in due, due
    store.command(BOB, f"!merge {first.ref}", case=second)
    assert store.case(second.ref).merged_into_id == first.id
    after = _clock(store, first.ref)
    assert "response" in after and after["response"] <= due["response"], \
        f"the merged case owes no response any more (before the merge: {due}; after: {after})"


def test_a_reply_after_a_merge_does_not_tell_the_second_reporter_of_the_first_reporters_case(store: Store):
    """BROKE. Robin reports (case 1); Sam reports the same incident (case 2, acknowledged to Sam
    under case 2's reference). The committee merges case 2 into case 1 and answers Sam with
    `!reply ADDRESS`, as README says. Sam's answer carries case 1's reference in its subject
    (cases/mailer.py send_to_party renders `case.ref` of the merge target; core/party_mail.py
    neutral_subject): Sam learns that an earlier, separate case about the incident exists (that
    someone else reported it), and their replies now quote it. The merge is committee-internal
    (README: "the reporter is told nothing"); Sam must keep hearing under their own reference."""
    first = store.report()
    second = store.report(sender="second@example.net", name="Sam Second", body="The same thing happened to me.")
    ack = store.mail_to("second@example.net")[0]
    assert second.ref in ack.subject and first.ref not in ack.subject + ack.text
    store.command(CAROL, f"!merge {first.ref}", case=second)
    mark = store.outbox_mark()
    store.command(ALICE, "!reply second@example.net", "Dear Sam, we are looking into it.", case=first)
    [answer] = [m for m in store.mail_after(mark) if m.recipient == "second@example.net"]
    from tests.harness import parsed
    raw = answer.content.decode("utf-8", "replace")
    assert first.ref not in answer.subject and first.ref not in answer.text, \
        f"the second reporter's answer names the first reporter's case {first.ref}: {answer.subject!r}"
    assert first.ref not in str(parsed(answer)["References"] or "") + raw.split("\n\n", 1)[0]


def test_an_escalation_already_sent_for_a_merged_report_is_not_sent_again(store: Store):
    """BROKE. Case 1 is not acknowledged within 24 hours: its acknowledgement escalation goes to
    the committee and the chair. Reporter 2 writes about the same incident; the committee merges
    case 1 into case 2 (the merged case counts from case 1's report, README). The merged case's
    acknowledgement deadline is the one already escalated, yet the escalation fires again
    (escalations fire once, README "Deadlines"): the fired keys stay on case 1 (cases/merge.py
    merge moves Inbound/Outbox/Decision/Event rows, not EscalationFired)."""
    from datetime import timedelta
    first = store.report()
    store.now += timedelta(hours=25)
    sent = _escalate(store)
    assert sent and all(m.case_id == first.id for m in sent)
    second = store.report(sender="second@example.net", name="Sam Second", body="The same thing happened to me.")
    store.command(CAROL, f"!merge {second.ref}", case=first)
    assert store.case(first.ref).merged_into_id == second.id
    store.now += timedelta(minutes=5)
    again = [m for m in _escalate(store) if m.kind == sent[0].kind and "acknowledgement overdue" in m.text]
    assert all("acknowledgement overdue" in m.text for m in sent)
    assert not again, f"the acknowledgement escalation of case {first.ref} was sent a second time after the merge: " \
                      f"{sorted({m.subject for m in again})}"


def test_a_purged_case_kept_from_a_member_is_answered_as_an_unknown_reference(store: Store):
    """BROKE. Carol is named in the report (excluded, never had mail). The case is closed and,
    after the retention period, purged (its recusals are deleted with its parties). Carol then
    writes to conduct@ about its reference: she must get the answer a reference that does not
    exist gets. She is told instead to answer "your own copy of the case mail" (cases/desk.py
    handle, NOT_OWN_ADDRESS: the purged case has no recusal left, so routing.may_see lets her
    "see" it), telling her a case with that reference existed."""
    from datetime import timedelta

    from conduct_inbox.shell.retention import purge
    case = store.report(body=CAROL_NAMED)
    assert CAROL in store.case(case.ref).recused_members()
    store.command(ALICE, "!close silent duplicate of a report by phone")
    assert store.case(case.ref).status == "closed"
    store.now += timedelta(days=400)
    purge(store.sessions, None, store.now, 365)
    assert store.case(case.ref).purged_at is not None
    ghost = _unknown_ref(case.ref)
    store.take_in(_to_conduct(CAROL, f"[conduct #{ghost}] question"))
    assert f"there is no case {ghost}" in store.latest(CAROL).text
    mark = store.outbox_mark()
    store.take_in(_to_conduct(CAROL, f"[conduct #{case.ref}] question"))
    answers = [m for m in store.mail_after(mark) if m.recipient == CAROL]
    assert answers and f"there is no case {case.ref}" in answers[-1].text, \
        f"the purged hidden case is answered differently from an unknown reference: {[a.text[:300] for a in answers]}"


def test_a_hidden_case_merged_into_one_the_member_saw_is_still_answered_as_an_unknown_reference(store: Store):
    """BROKE. Carol saw case 1 (its copy reached her), then the reporter's follow-up named her:
    excluded after seeing it. Case 2 names her from the start: she never had mail about it, so
    mail about case 2's reference is answered as an unknown reference. Once case 2 is merged into
    case 1 (the same exclusions: accepted), the same mail gets silence: `_had_mail_about` looks at
    the merge target, whose mail to Carol includes case 1's (cases/desk.py handle). Silence is
    never the answer to a reference that does not exist, so it tells her case 2 exists (and went
    into a case she was excluded from)."""
    first = store.report(subject="About the sprint")
    assert store.mail_to(CAROL), "Carol had case 1's copy"
    ack = store.mail_to(REPORTER)[0]
    store.take_in(reply(ack, REPORTER, "", "I forgot: Carol Chen was standing right next to him."))
    second = store.report(sender="second@example.net", name="Sam Second", body=CAROL_NAMED)
    assert CAROL in store.case(first.ref).recused_members() and CAROL in store.case(second.ref).recused_members()
    mark = store.outbox_mark()
    store.take_in(_to_conduct(CAROL, f"[conduct #{second.ref}] question"))
    [before] = [m for m in store.mail_after(mark) if m.recipient == CAROL]
    assert f"there is no case {second.ref}" in before.text
    store.command(ALICE, f"!merge {first.ref}", case=second)
    assert store.case(second.ref).merged_into_id == first.id
    mark = store.outbox_mark()
    store.take_in(_to_conduct(CAROL, f"[conduct #{second.ref}] question again"))
    after = [m for m in store.mail_after(mark) if m.recipient == CAROL]
    assert after and f"there is no case {second.ref}" in after[-1].text, \
        "after the merge, mail about the hidden case's reference gets silence (an existing case) instead of the unknown answer"


def test_answering_one_reporter_of_a_merged_case_keeps_the_other_reporters_week(store: Store):
    """BROKE. Robin reports (case 1, day 0); Sam reports the same incident (case 2, day 1) and is
    promised a response within the week (by day 8). Case 2 is merged into case 1. On day 2 Alice
    answers Robin alone (`!reply ROBIN`). The merged case's response clock restarts from that
    answer (due day 9): Sam, never answered, is owed nothing on day 8 any more (cases/handlers.py
    reply sets `last_response_at` for the whole case whichever reporter was answered)."""
    from datetime import timedelta
    first = store.report()
    store.now += timedelta(days=1)
    second = store.report(sender="second@example.net", name="Sam Second", body="The same thing happened to me.")
    promised_to_sam = store.case(second.ref).created_at + timedelta(days=7)
    store.command(CAROL, f"!merge {first.ref}", case=second)
    store.now += timedelta(days=1)
    store.command(ALICE, f"!reply {REPORTER}", "Dear Robin, we are looking into it.", case=first)
    assert store.latest(REPORTER).kind == "reply"
    assert not [m for m in store.mail_to("second@example.net") if m.kind == "reply"], "Sam was not answered"
    assert "Reporters not answered yet: 1 of 2" in store.latest(ALICE).text
    due = _clock(store, first.ref)
    assert "response" in due and due["response"] <= promised_to_sam.replace(tzinfo=due["response"].tzinfo), \
        f"the response owed to Sam (by {promised_to_sam}) is now due {due.get('response')}"


def test_a_merged_case_is_not_closed_while_one_of_its_reporters_was_never_answered(store: Store):
    """BROKE. Two reporters, one case after `!merge`. The committee decides, answers Robin alone
    and closes: `!close` is accepted, and Sam, who reported the same incident, never hears
    anything (reporting policy: the reporter is told what action, if any, is taken; `!close` is
    refused while "the reporter has not been answered"). cases/decisions.py close checks only
    `case.last_response_at`, which answering either reporter sets."""
    first = store.report()
    second = store.report(sender="second@example.net", name="Sam Second", body="The same thing happened to me.")
    store.command(CAROL, f"!merge {first.ref}", case=second)
    store.command(ALICE, "!ack", case=first)
    store.command(ALICE, "!decide no-action", case=first)
    store.command(ALICE, f"!reply {REPORTER}", "Dear Robin, we decided to take no action.", case=first)
    store.command(ALICE, "!close", case=first)
    sam = [m for m in store.mail_to("second@example.net") if m.kind in ("reply", "send")]
    assert store.case(first.ref).status != "closed" or sam, \
        "the merged case was closed with a normal !close although its second reporter was never answered"


def test_merging_a_report_into_a_case_marked_as_spam_keeps_its_reporters_deadlines(store: Store):
    """BROKE. Case 1 was marked `!spam` (its clocks stopped). A real report arrives (case 2) and is
    merged into case 1 (say, the spam was an earlier copy of it). The merged case is still flagged
    spam: no acknowledgement or response is due any more, and the reporter's promised week holds
    nowhere (cases/merge.py merge keeps `target.spam`; core/sla.py _candidates returns nothing for
    spam cases). README: "every promise made to either reporter still holds"."""
    first = store.report(sender="junk@example.net", name="Junk", subject="Cheap pills", body="Buy now.")
    store.command(ALICE, "!spam", case=first)
    assert store.case(first.ref).spam and _clock(store, first.ref) == {}
    second = store.report(sender="second@example.net", name="Sam Second", body="He kept making comments at the sprint.")
    before = _clock(store, second.ref)
    assert "response" in before
    store.command(BOB, f"!merge {first.ref}", case=second)
    assert store.case(second.ref).merged_into_id == first.id
    after = _clock(store, first.ref)
    assert "response" in after and after["response"] <= before["response"], \
        f"the merged report's deadlines are gone (before: {before}; after: {after})"


def test_the_reported_members_answer_to_the_committee_reaches_the_committee(store: Store):
    """HELD. The report is about Bob, a committee member (excluded). The committee records him as
    the reported party and asks for his side (`!send reported`); he answers that mail. His answer
    comes from a roster address about a case he is excluded from (and had mail about): it must not
    be dropped in silence as committee mail; it reaches the other members as a party's follow-up."""
    case = store.report(body="Bob Builder kept making comments after I asked him to stop.")
    assert BOB in store.case(case.ref).recused_members()
    store.command(ALICE, "!party reported bob@example.org Bob Builder", case=case)
    store.command(ALICE, "!send reported", "Please tell us your side of what happened at the sprint.", case=case)
    [asked] = [m for m in store.mail_to(BOB) if m.audience == "party"]
    mark = store.outbox_mark()
    store.take_in(reply(asked, BOB, "", "My side: I did not say anything of the sort. BOBSIDE-1"))
    to_committee = [m for m in store.mail_after(mark) if m.recipient in (ALICE, CAROL) and "BOBSIDE-1" in m.text]
    to_bob = [m for m in store.mail_after(mark) if m.recipient == BOB]
    assert to_committee or to_bob, "the reported member's answer was dropped in silence: no member has it, he is not told"


@pytest.mark.config(("[security]\n", '[security]\ntrusted_authserv_id = "mx.example.org"\n'))
def test_a_dmarc_pass_answers_a_hidden_case_as_an_unknown_one(store: Store):
    """HELD. Carol, excluded from case 2 from the start, asks about its reference with an aligned
    DMARC pass, written to conduct@: she gets exactly the answer the same mail about a reference
    that does not exist gets."""
    auth = b"Authentication-Results: mx.example.org; dmarc=pass (p=reject) header.from=example.org\r\n"
    store.report(sender="olga@example.net", name="Olga Other", subject="Noise", body="Too loud.")
    hidden = store.report(body=CAROL_NAMED)
    ghost = _unknown_ref(hidden.ref)
    unknown = _answers(store, auth + _to_conduct(CAROL, f"[conduct #{ghost}] !ack"), hidden.ref, ghost)
    kept = _answers(store, auth + _to_conduct(CAROL, f"[conduct #{hidden.ref}] !ack"), hidden.ref, ghost)
    assert unknown and kept == unknown and "there is no case REF" in kept[0], (unknown, kept)


def _answers(store: Store, raw: bytes, *refs: str) -> list[str]:
    """Carol's answers to `raw`, each reference of `refs` written REF."""
    mark = store.outbox_mark()
    store.take_in(raw)
    texts = [m.subject + "\n" + m.text for m in store.mail_after(mark) if m.recipient == CAROL]
    for ref in refs:
        texts = [t.replace(ref, "REF") for t in texts]
    return texts


def test_a_reply_on_a_visible_cases_mail_retagged_tells_hidden_references_from_unknown_ones(store: Store):
    """BROKE. Carol answers her own copy of case 1 (which she may see), changing the subject's tag
    to another reference. For a reference that does not exist the tag is ignored and the mail acts
    on case 1 through its In-Reply-To (cases/inbound.py _case_for falls back to the thread):
    "Case 1: done". For case 2, kept from her, the tag wins and she is told "there is no case 2"
    (cases/desk.py handle, NOT_OWN_ADDRESS). Two different answers: by retagging her replies she
    learns which references are cases kept from her."""
    first = store.report(sender="olga@example.net", name="Olga Other", subject="Noise", body="Too loud.")
    hidden = store.report(body=CAROL_NAMED)
    assert CAROL in store.case(hidden.ref).recused_members()
    ghost = _unknown_ref(hidden.ref)
    carol_first = store.copy_of(CAROL, first)
    kept = _answers(store, reply(carol_first, CAROL, subject=f"Re: [conduct #{hidden.ref}] Noise !list"), hidden.ref, ghost)
    unknown = _answers(store, reply(carol_first, CAROL, subject=f"Re: [conduct #{ghost}] Noise !list"), hidden.ref, ghost)
    assert kept == unknown, f"hidden reference answered {kept[0][:200]!r}..., unknown one {unknown[0][:200]!r}..."
