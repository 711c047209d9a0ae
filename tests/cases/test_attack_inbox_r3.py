"""Third attack round on issue 16 (cases tier, no servers): what a reported person, a witness or
a reporter learns from a merge, steering members' references, threading of mail to reporters,
and what `!history` shows after a merge."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

from tests.case_store import Store
from tests.case_store import clock as _clock
from tests.case_store import escalate as _escalate
from tests.case_store import headers as _headers
from tests.case_store import mail_to as _to
from tests.harness import parsed
from tests.mailers import ALICE, BOB, CAROL, REPORTER, SAM, reply

SECOND = "second@example.net"
ACCUSED = "pat@example.net"


def _unknown_ref(ref: str) -> str:
    head, _, tail = ref.rpartition("-")
    return f"{head}-{int(tail) + 900:0{len(tail)}d}" if tail.isdigit() else ref + "9"


# ----- what a party of two merged cases learns -------------------------------------------------


def test_the_reported_person_of_two_merged_reports_is_not_told_of_the_second_case(store: Store):
    """BROKE. Robin reports Pat (case 1); Sam reports Pat about the same incident (case 2). The
    committee records Pat as the reported person on both, but writes to Pat only on case 2 (Pat
    hears under case 2's reference). Case 2 is merged into case 1. The next `!send reported`
    reaches Pat under case 1's reference, a case Pat never heard of: the accused learns that a
    second, separate report about them exists (how many people reported them). README: "The
    reporter and parties of the merged-in case keep hearing under its own reference (the merge
    stays internal to the committee)". cases/merge.py _move_parties keeps the target's party row
    (known_ref NULL) and deletes the merged-in one whose reference Pat knew
    (_hold_reporters_clocks sets known_ref only on the source's rows, which are then deleted)."""
    first = store.report()
    store.command(ALICE, f"!party reported {ACCUSED} Pat Person", case=first)
    second = store.report(sender=SECOND, name="Sam Second", body="Pat did the same thing to me.")
    store.command(ALICE, f"!party reported {ACCUSED} Pat Person", case=second)
    store.command(ALICE, "!send reported", "Please tell us your side of what happened at the sprint.", case=second)
    heard = [m for m in store.mail_to(ACCUSED)]
    assert heard and all(second.ref in m.subject and first.ref not in m.subject + m.text for m in heard)
    store.command(BOB, f"!merge {first.ref}", case=second)
    assert store.case(second.ref).merged_into_id == store.case(first.ref).id
    mark = store.outbox_mark()
    store.command(ALICE, "!send reported", "Thank you; we will be in touch.", case=first)
    [later] = _to(store, ACCUSED, mark)
    seen = later.subject + "\n" + later.text + "\n" + _headers(later)
    assert first.ref not in seen, f"the reported person now hears under {first.ref}, a case they never heard of: {later.subject!r}"


def test_a_witness_of_the_merged_in_case_keeps_hearing_under_its_reference(store: Store):
    """BROKE. The same as the reported person, for a witness recorded on both cases but written to
    only on case 2: after case 2 is merged into case 1, `!send witness` reaches them under case 1's
    reference (cases/merge.py _move_parties keeps the target's row, known_ref NULL)."""
    first = store.report()
    store.command(ALICE, "!party witness wes@example.net Wes Witness", case=first)
    second = store.report(sender=SECOND, name="Sam Second", body="Wes saw it as well.")
    store.command(ALICE, "!party witness wes@example.net Wes Witness", case=second)
    store.command(ALICE, "!send witness", "Could you tell us what you saw?", case=second)
    assert all(second.ref in m.subject for m in store.mail_to("wes@example.net"))
    store.command(BOB, f"!merge {first.ref}", case=second)
    mark = store.outbox_mark()
    store.command(ALICE, "!send witness", "Thank you for your answer.", case=first)
    [later] = _to(store, "wes@example.net", mark)
    assert first.ref not in later.subject + later.text, f"the witness now hears under {first.ref}: {later.subject!r}"


def test_a_party_only_of_the_merged_in_case_hears_under_its_own_reference(store: Store):
    """HELD. Pat is recorded (and written to) only on case 2; after case 2 is merged into case 1,
    `!send reported` reaches Pat under case 2's reference, threaded under mail Pat saw, with
    nothing of case 1 in its headers or text."""
    first = store.report()
    second = store.report(sender=SECOND, name="Sam Second", body="Pat did it.")
    store.command(ALICE, f"!party reported {ACCUSED} Pat Person", case=second)
    store.command(ALICE, "!send reported", "Please tell us your side.", case=second)
    store.command(BOB, f"!merge {first.ref}", case=second)
    mark = store.outbox_mark()
    store.command(ALICE, "!send reported", "We have read your answer and will be in touch.", case=first)
    [later] = _to(store, ACCUSED, mark)
    assert second.ref in later.subject
    assert first.ref not in later.subject + later.text + _headers(later)
    report_ids = {str(parsed(m)["Message-ID"]) for m in store.mail_to(REPORTER) + store.mail_to(ALICE)}
    refs = str(parsed(later)["References"] or "") + str(parsed(later)["In-Reply-To"] or "")
    assert not any(i and i in refs for i in report_ids)


def test_the_second_reporters_answer_references_nothing_of_the_first_reporter(store: Store):
    """HELD. After the merge, `!reply SECOND` threads under Sam's own report and Sam's own
    acknowledgement only: neither Robin's report nor Robin's acknowledgement is referenced."""
    first_raw_id = make_msgid(domain="example.net")
    from tests.harness import report
    store.take_in(report(message_id=first_raw_id))
    first = store.case()
    second_id = make_msgid(domain="example.net")
    store.take_in(report(sender=SECOND, name="Sam Second", body="Me too.", message_id=second_id))
    second = store.case()
    robin_ack = str(parsed(store.mail_to(REPORTER)[0])["Message-ID"])
    store.command(CAROL, f"!merge {first.ref}", case=second)
    mark = store.outbox_mark()
    store.command(ALICE, f"!reply {SECOND}", "Dear Sam, we are on it.", case=first)
    [answer] = _to(store, SECOND, mark)
    msg = parsed(answer)
    refs = str(msg["References"] or "") + " " + str(msg["In-Reply-To"] or "")
    assert second_id in str(msg["In-Reply-To"])
    assert first_raw_id not in refs and robin_ack not in refs, refs


# ----- steering members and references kept from them ------------------------------------------


SAM_NAMED = "Sam Steering kept making comments after I asked him to stop."


def _answers(store: Store, member: str, subject: str, *refs: str) -> list[str]:
    mark = store.outbox_mark()
    store.personal(member, subject)
    texts = [m.subject + "\n" + m.text for m in _to(store, member, mark)]
    for ref in refs:
        texts = [t.replace(ref, "REF") for t in texts]
    return texts


def test_reconsider_of_a_purged_case_kept_from_a_steering_member_is_answered_as_unknown(store: Store):
    """BROKE. The report names Sam Steering, a steering member: he is excluded from the case and
    never has mail about it. The case is closed and, after the retention period, purged (its
    recusals go with its contents). Sam sends `!reconsider REF` to his personal address: for a
    reference that does not exist he is told "there is no case REF you can act on"; for the purged
    case kept from him a reconsideration is opened instead ("reconsideration of case REF opened"),
    he is routed the case's mail from then on, and learns that a case with that reference existed
    (README: for a member, "a purged case is a reference that does not exist"). cases/steering.py
    reconsider checks only `member.email in recused(case)`; the purge deleted the recusal and it
    does not look at `purged_at`."""
    from conduct_inbox.shell.retention import purge
    case = store.report(body=SAM_NAMED)
    assert SAM in store.case(case.ref).recused_members()
    store.command(ALICE, "!close silent reported by phone as well, handled there", case=case)
    assert store.case(case.ref).status == "closed"
    store.now += timedelta(days=400)
    purge(store.sessions, None, store.now, 365)
    assert store.case(case.ref).purged_at is not None
    ghost = _unknown_ref(case.ref)
    unknown = _answers(store, SAM, f"!reconsider {ghost}", case.ref, ghost)
    kept = _answers(store, SAM, f"!reconsider {case.ref}", case.ref, ghost)
    assert unknown and kept == unknown, f"unknown: {unknown!r}; purged and kept from him: {kept!r}"
    assert store.case(case.ref).status == "closed"


def test_reconsider_of_a_case_merged_into_one_kept_from_a_steering_member_is_answered_as_unknown(store: Store):
    """HELD. Both reports name Sam Steering (excluded from both); case 2 is merged into case 1 and
    both are closed. Sam's `!reconsider` of case 2's reference gets the answer a reference that
    does not exist gets, naming only the reference he wrote."""
    first = store.report(body=SAM_NAMED)
    second = store.report(sender=SECOND, name="Sam Second", body=SAM_NAMED)
    store.command(ALICE, f"!merge {first.ref}", case=second)
    store.command(ALICE, "!close silent handled in person", case=first)
    ghost = _unknown_ref(second.ref)
    unknown = _answers(store, SAM, f"!reconsider {ghost}", second.ref, ghost)
    kept = _answers(store, SAM, f"!reconsider {second.ref}", second.ref, ghost)
    assert unknown and kept == unknown and first.ref not in "".join(kept), (unknown, kept)


# ----- threading of mail to reporters --------------------------------------------------------


def test_a_reply_threads_under_the_report_of_a_reporter_whose_address_has_capitals(store: Store):
    """HELD. Mail to the reporter answers their own latest real mail (README "Threading"), also when
    their client writes their address with capitals (as many do: `Robin.Reporter@Example.net`)."""
    report_id = make_msgid(domain="example.net")
    from tests.harness import report
    store.take_in(report(sender="Robin.Reporter@Example.NET", message_id=report_id))
    case = store.case()
    mark = store.outbox_mark()
    store.command(ALICE, "!reply", "Dear Robin, we are looking into it.", case=case)
    [answer] = [m for m in store.mail_after(mark) if m.audience == "reporter"]
    assert str(parsed(answer)["In-Reply-To"]) == report_id, \
        f"the answer threads under {parsed(answer)['In-Reply-To']}, not the report {report_id}"


# ----- !history after a merge ------------------------------------------------------------------

CAROL_NAMED = "Carol Chen kept making comments after I asked her to stop."
SECRET_NOTE = "NOTE-WHILE-CAROL-EXCLUDED: her partner is the reported person."


def _history(store: Store, member: str, case) -> str:
    mark = store.outbox_mark()
    store.command(member, "!history", case=case)
    return "\n".join(m.text for m in _to(store, member, mark))


def _merged_with_a_note_from_carols_exclusion(store: Store):
    first = store.report(sender="olga@example.net", name="Olga Other", subject="Noise at the sprint", body="Too loud.")
    second = store.report(sender=SECOND, name="Sam Second", body=CAROL_NAMED)
    assert CAROL in store.case(second.ref).recused_members()
    store.command(ALICE, "", SECRET_NOTE, case=second)
    store.command(ALICE, "!include Carol", case=second)
    store.command(BOB, "!confirm", case=second)
    assert CAROL not in store.case(second.ref).recused_members()
    store.command(ALICE, f"!merge {first.ref}", case=second)
    assert store.case(second.ref).merged_into_id == store.case(first.ref).id
    return first, second


def test_history_after_a_merge_hides_notes_from_a_readers_exclusion_on_the_merged_in_case(store: Store):
    """HELD. Carol was excluded from case 2 (named), a note was written then, she was included
    again; case 2 is merged into case 1. Her `!history` of case 1 leaves that note out."""
    first, _second = _merged_with_a_note_from_carols_exclusion(store)
    text = _history(store, CAROL, first)
    assert "Timeline" in text and "NOTE-WHILE-CAROL-EXCLUDED" not in text


def test_history_still_hides_those_notes_once_the_merged_in_case_was_purged(store: Store):
    """BROKE. Carol was excluded from case 2 (named), Alice wrote a note then, Carol was included
    again (`!include`, `!confirm`); case 2 is merged into case 1 (held: her `!history` leaves the
    note out). The merge closes case 2, though its content lives on in case 1. With
    `retention.closed_case_days = 30`, 31 days later the purge treats case 2 as a closed case:
    it deletes case 2's recusal rows (shell/retention.py purge, `delete(Recusal)`), which are what
    cases/history.py _exclusions reads to know when Carol was excluded from case 2's content
    (`Recusal.case_id.in_(merged)`). Her `!history` of the still open case 1 now shows the note
    written while she was excluded (README: "does not see the notes written while they were
    excluded")."""
    from conduct_inbox.shell.retention import purge
    first, second = _merged_with_a_note_from_carols_exclusion(store)
    store.now += timedelta(days=31)
    purge(store.sessions, None, store.now, 30)
    assert store.case(first.ref).purged_at is None and store.case(first.ref).status != "closed"
    text = _history(store, CAROL, first)
    assert "Timeline" in text and "NOTE-WHILE-CAROL-EXCLUDED" not in text, \
        f"purged={store.case(second.ref).purged_at}: the note from Carol's exclusion is in her history"


# ----- pending decisions brought together by a merge ------------------------------------------


def test_a_confirm_after_a_merge_does_not_confirm_the_other_cases_severe_decision(store: Store):
    """BROKE. On case 1 Alice proposes a public reprimand of Pat (severe: waits for `!confirm`);
    on case 2, the same incident reported by Sam, Carol proposes a permanent ban. Case 2 is
    merged into case 1: both proposals move and both wait. Bob answers Alice's proposal
    announcement with `!confirm`, meaning the reprimand: the permanent ban takes effect, and the
    reprimand still waits. cases/decisions.py confirm takes the newest pending decision of the case
    (`order_by(Decision.id.desc())`); cases/merge.py moves pending decisions without superseding
    either (`!decide` on one case supersedes the pending one, so two never wait otherwise).
    README's rule for a decision and an inclusion waiting together ("a severe decision must not take
    effect because a member meant the other one") is not applied to two decisions."""
    first = store.report(body="Pat Person shoved me at the sprint.")
    store.command(ALICE, f"!party reported {ACCUSED} Pat Person", case=first)
    second = store.report(sender=SECOND, name="Sam Second", body="Pat shoved me too.")
    store.command(ALICE, f"!party reported {ACCUSED} Pat Person", case=second)
    store.command(ALICE, "!ack", case=first)
    store.command(ALICE, "!decide public-reprimand", case=first)
    [proposal] = [m for m in store.mail_to(BOB) if m.case_id == first.id and "proposes the decision" in m.text]
    store.command(CAROL, "!ack", case=second)
    store.command(CAROL, "!decide permanent-ban", case=second)
    store.command(ALICE, f"!merge {first.ref}", case=second)
    assert store.case(second.ref).merged_into_id == store.case(first.ref).id
    store.take_in(reply(proposal, BOB, "!confirm"))
    effective = [d.kinds for d in store.decisions() if d.status == "effective"]
    assert "permanent-ban" not in effective, \
        f"Bob confirmed Alice's public-reprimand proposal; in effect now: {effective}"


# ----- the case's root Message-ID is public: an outsider's subject standing in every thread ----


def _full_reply(store: Store, copy, sender: str, suffix: str, body: str = "") -> bytes:
    """A reply as Thunderbird, Gmail and Outlook write it: References is the original's References
    followed by its Message-ID (tests.mailers.reply keeps only the latter)."""
    import email
    import email.policy
    msg = email.message_from_bytes(reply(copy, sender, suffix, body), policy=email.policy.default)
    original = parsed(copy)
    del msg["References"]
    msg["References"] = f"{original['References'] or ''} {original['Message-ID']}".strip()
    return msg.as_bytes()


def _root_of(store: Store, ref: str) -> str:
    """The case's root Message-ID as anyone can compute it: SHA-256 of the committee's public
    address and the reference (mail/conversation.py case_root_id)."""
    import hashlib
    digest = hashlib.sha256(f"conduct@example.org\0{ref}".encode()).hexdigest()[:20]
    return f"case-{ref}.{digest}@example.org"


def test_an_outsider_cannot_cancel_the_committees_commands_through_the_public_root_message_id(store: Store):
    """BROKE. The root Message-ID every committee mail about a case references is
    `case-REF.<sha256("conduct@example.org\\0REF")[:20]>@domain` (mail/conversation.py
    case_root_id, salted only with the public committee address): anyone who knows a reference
    (they are sequential; a reporter's own acknowledgement shows the current number) computes it.
    Pat, the reported person, sends conduct@ one mail with that Message-ID and the subject
    `Re: [conduct #REF] !concerns Carol !ack`. It is stored on the case ("message from a
    non-party"), and from then on every member reply — whose References, as every client writes
    them, carry the root — has those commands cancelled as "already in the subject of an earlier
    message of this thread" (cases/threads.py earlier_subjects reads InboundMessage subjects by
    Message-ID, any sender). Alice's `!concerns Carol` (Pat's friend on the committee) is not
    applied: Carol keeps receiving the case. Nor is `!ack`. The outsider decides which commands the
    committee can send by reply."""
    case = store.report(body="Pat Person shoved me at the sprint.")
    msg = EmailMessage()
    msg["From"] = f"Pat Person <{ACCUSED}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: [conduct #{case.ref}] !concerns Carol !ack"
    msg["Message-ID"] = f"<{_root_of(store, case.ref)}>"
    msg.set_content("Just checking.")
    store.take_in(msg.as_bytes())
    copy = store.copy_of(ALICE, case)
    assert _root_of(store, case.ref) in str(parsed(copy)["References"])
    store.take_in(_full_reply(store, copy, ALICE, "!concerns Carol !ack"))
    after = store.case(case.ref)
    assert CAROL in after.recused_members() and after.human_ack_at is not None, \
        f"Alice's commands were cancelled by the outsider's subject: {store.latest(ALICE).text[:400]!r}"


def test_a_member_reply_with_the_full_references_chain_applies_its_commands(store: Store):
    """HELD (control for the test above). Without the outsider's mail, the same reply, References
    carrying the root, applies `!concerns Carol !ack`."""
    case = store.report(body="Pat Person shoved me at the sprint.")
    store.take_in(_full_reply(store, store.copy_of(ALICE, case), ALICE, "!concerns Carol !ack"))
    after = store.case(case.ref)
    assert CAROL in after.recused_members() and after.human_ack_at is not None


# ----- Outlook's conversation after a merge ---------------------------------------------------


def test_merging_an_older_report_keeps_the_target_cases_outlook_conversation(store: Store):
    """BROKE. Committee mail carries Outlook's Thread-Index, "the same conversation index for the
    whole case" (README "Threading"). Case 1 (day 0) is merged into case 2 (day 1): case 2's
    `created_at` becomes day 0 (the merged case counts from the earlier report), and the
    Thread-Index, built from the root and `case.created_at` (cases/mailer.py _threaded,
    mail/conversation.py thread_index), changes: every mail about case 2 after the merge opens a
    new conversation in Outlook, apart from everything the members had on it."""
    older = store.report()
    store.now += timedelta(days=1)
    second = store.report(sender=SECOND, name="Sam Second", body="The same thing happened to me.")
    before = str(parsed(store.copy_of(ALICE, second))["Thread-Index"])
    store.command(BOB, f"!merge {second.ref}", case=older)
    assert store.case(older.ref).merged_into_id == second.id
    mark = store.outbox_mark()
    store.command(ALICE, "!ack", case=second)
    after = [str(parsed(m)["Thread-Index"]) for m in _to(store, ALICE, mark)]
    assert after and all(a == before for a in after), (before, after)


# ----- the unknown-reference answer, header by header ---------------------------------------


def _answer_headers(store: Store, member: str, raw: bytes, *refs: str) -> list[dict[str, str]]:
    mark = store.outbox_mark()
    store.take_in(raw)
    out = []
    for m in _to(store, member, mark):
        fields = {k: str(v) for k, v in parsed(m).items() if k not in ("Date", "Message-ID")}
        fields["(body)"], fields["(case)"] = m.text, str(m.case_id)
        for ref in refs:
            fields = {k: v.replace(ref, "REF") for k, v in fields.items()}
        out.append(fields)
    return out


def _written(member: str, to: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = member
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Is there anything about this?")
    return msg.as_bytes()


def test_the_answer_about_a_hidden_reference_matches_the_unknown_one_in_every_header(store: Store):
    """HELD. Carol, named in the report (excluded, never had mail), writes about its reference to
    conduct@ and to her personal address: the answers equal those about a reference that does
    not exist in every header (no References/In-Reply-To to the case's root, no Thread-Topic or
    Thread-Index, no case reply token), in the text, and in the outbox row's case (none)."""
    from tests.mailers import personal_address
    hidden = store.report(subject="Secret title", body=CAROL_NAMED)
    ghost = _unknown_ref(hidden.ref)
    for to in ("conduct@example.org", personal_address(CAROL)):
        unknown = _answer_headers(store, CAROL, _written(CAROL, to, f"[conduct #{ghost}] question !ack"), hidden.ref, ghost)
        kept = _answer_headers(store, CAROL, _written(CAROL, to, f"[conduct #{hidden.ref}] question !ack"), hidden.ref, ghost)
        assert unknown and kept == unknown, (to, unknown, kept)


# ----- an automatic case nobody acknowledged promised nothing --------------------------------


def test_merging_a_report_into_an_old_automatic_case_does_not_make_its_acknowledgement_overdue(store: Store):
    """BROKE. An automatic mail (a form's) became an `[auto]` case on day 0: no clock runs, it
    promised nothing. On day 3 a real report of the same incident arrives (acknowledgement due
    day 4) and is merged into the automatic case. The merged case's human acknowledgement is at
    once "overdue since" day 1 — two days before the real report arrived — and the next
    escalation run sends the committee "Overdue" and Sam Steering "Human acknowledgement still
    overdue ... (escalated to steering)" about a report a few minutes old. cases/merge.py merge
    sets `created_at` to the earlier of the two (`sla.merged`), which the acknowledgement clock
    counts from, though the earlier one is the automatic mail (README: "an automatic mail nobody
    acknowledged promised nothing before the merge")."""
    auto = store.report(sender="forms@example.net", name="Form", subject="Form 1", headers={"Auto-Submitted": "auto-generated"})
    assert _clock(store, auto.ref) == {}
    store.now += timedelta(days=3)
    real = store.report(sender=SECOND, name="Sam Second", body="He kept making comments at the sprint.")
    promised = _clock(store, real.ref)["ack"]
    store.command(BOB, f"!merge {auto.ref}", case=real)
    assert store.case(real.ref).merged_into_id == auto.id
    after = _clock(store, auto.ref)
    sent = _escalate(store)
    to_steering = [m for m in sent if m.recipient == SAM]
    assert after.get("ack") == promised and not sent, \
        f"acknowledgement due {after.get('ack')} (promised {promised}); escalations at once: " \
        f"{[(m.recipient, m.text.split(chr(10))[4][:80]) for m in sent]}; to steering: {len(to_steering)}"


def test_merging_a_report_into_an_old_spam_case_does_not_make_its_acknowledgement_overdue(store: Store):
    """BROKE. The same with a message the spam filter flagged on day 0 (no acknowledgement was
    sent, no clock runs): a real report on day 3 merged into it (the spam was an earlier copy of
    it) is at once overdue since day 1, escalated to the committee and to the steering members
    (cases/merge.py: `created_at` = the earlier of the two, the spam case's). The response is due
    by day 7 as well (the spam sender counts as a reporter waiting since day 0)."""
    spam = store.report(sender="junk@example.net", name="Junk", subject="The sprint", headers={"X-Spam-Flag": "YES"})
    assert store.case(spam.ref).spam and not store.mail_to("junk@example.net")
    store.now += timedelta(days=3)
    real = store.report(sender=SECOND, name="Sam Second", body="He kept making comments at the sprint.")
    promised = _clock(store, real.ref)["ack"]
    store.command(BOB, f"!merge {spam.ref}", case=real)
    assert store.case(real.ref).merged_into_id == spam.id
    after = _clock(store, spam.ref)
    sent = _escalate(store)
    assert after.get("ack") == promised and not [m for m in sent if m.recipient == SAM], \
        f"acknowledgement due {after.get('ack')} (promised {promised}); escalated: {sorted({m.recipient for m in sent})}"


def test_closing_a_report_merged_into_a_spam_case_does_not_require_answering_the_spammer(store: Store):
    """BROKE. A message the spam filter flagged (never acknowledged: no promise to its sender) is
    merged with the real report of the same incident. The committee decides, answers the real
    reporter and sends `!close`: refused, "not every reporter of this case has been answered yet
    (junk@example.net: !reply ADDRESS)". The software tells members to write the committee's
    text to the spam sender's address (forged senders are the rule in spam: a stranger, or the
    adversary who sent it), or to close silently. cases/merge.py _hold_reporters_clocks gives the
    spam case's reporter `waiting_since` = its arrival; cases/decisions.py close then waits for it."""
    spam = store.report(sender="junk@example.net", name="Junk", subject="The sprint", headers={"X-Spam-Flag": "YES"})
    real = store.report(sender=SECOND, name="Sam Second", body="He kept making comments at the sprint.")
    store.command(BOB, f"!merge {spam.ref}", case=real)
    store.command(ALICE, "!ack", case=spam)
    store.command(ALICE, "!decide no-action", case=spam)
    store.command(ALICE, f"!reply {SECOND}", "Dear Sam, we looked into it and decided to take no action.", case=spam)
    assert [m for m in store.mail_to(SECOND) if m.kind == "reply"]
    store.command(ALICE, "!close", case=spam)
    assert store.case(spam.ref).status == "closed", store.latest(ALICE).text[:400]


def test_an_outsider_cannot_poison_the_next_case_before_it_exists(store: Store):
    """BROKE. The same attack made in advance, against a case that does not exist yet: Pat's own
    first mail to conduct@ (it becomes case 1, with an acknowledgement telling Pat its number)
    carries the root Message-ID of case 2 and the subject `!concerns Carol !urgent !ack`.
    Robin's report then becomes case 2; Alice answers its copy with `!urgent !concerns Carol`:
    nothing is applied ("already in the subject of an earlier message of this thread"), though
    Pat's mail is on another case (cases/threads.py earlier_subjects does not look at the case)."""
    pat = EmailMessage()
    pat["From"] = f"Pat Person <{ACCUSED}>"
    pat["To"] = "conduct@example.org"
    pat["Subject"] = "!concerns Carol !urgent !ack"
    pat["Message-ID"] = f"<{_root_of(store, '2026-0002')}>"
    pat.set_content("Hello, is this the right address for questions?")
    store.take_in(pat.as_bytes())
    robin = store.report(body="Pat Person threatened me after the sprint.")
    assert robin.ref == "2026-0002"
    store.take_in(_full_reply(store, store.copy_of(ALICE, robin), ALICE, "!urgent !concerns Carol"))
    after = store.case(robin.ref)
    assert after.urgent and CAROL in after.recused_members(), store.latest(ALICE).text[:300]


def test_merge_into_a_hidden_case_is_refused_as_into_an_unknown_one_header_by_header(store: Store):
    """HELD. Carol works case 1; case 2 names her (excluded, never had mail). Her `!merge` of case
    1 into case 2 gets exactly the refusal a reference that does not exist gets, headers and text,
    and nothing else reaches her (no announcement, no mail about case 2)."""
    first = store.report(sender="olga@example.net", name="Olga Other", subject="Noise", body="Too loud.")
    hidden = store.report(body=CAROL_NAMED)
    ghost = _unknown_ref(hidden.ref)
    copy = store.copy_of(CAROL, first)
    unknown = _answer_headers(store, CAROL, reply(copy, CAROL, f"!merge {ghost}"), hidden.ref, ghost)
    kept = _answer_headers(store, CAROL, reply(copy, CAROL, f"!merge {hidden.ref}"), hidden.ref, ghost)
    strip = [{k: v for k, v in d.items() if k not in ("In-Reply-To", "References")} for d in (unknown + kept)]
    assert unknown and strip[:len(unknown)] == strip[len(unknown):], (unknown, kept)
    assert store.case(first.ref).merged_into_id is None
    assert not [m for m in store.mail_to(CAROL) if m.case_id == hidden.id]
