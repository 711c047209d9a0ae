"""Red team, round 3: attacks end to end (real Dovecot + aiosmtpd, `run --once`).

Each test plays one attack (or one honest member's ordinary action) that goes wrong on the code as
it is, and asserts what a careful user would expect; it FAILS while the attack works. The attacks
tried that did not work are listed at the bottom of this module.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from conduct_inbox.store.models import Decision, InboundMessage
from tests.harness import parsed, report, text_of
from tests.mailers import client_reply, got, latest, opened, personal_address, reply, step, the_case

REPORTER = "reporter@example.net"
ALICE, BOB, CAROL, SAM = "alice@example.org", "bob@example.org", "carol@example.org", "sam@example.org"
MEMBERS = (ALICE, BOB, CAROL)
PAT = "pat@example.net"


def forward_with_new(member: str, report_subject: str, report_text: str, typed: str, note: str = "This came to me directly.") -> bytes:
    """A member forwards a report they received directly (as an attachment) to their personal address."""
    forwarded = EmailMessage()
    forwarded["From"] = "Second Reporter <reporter2@example.net>"
    forwarded["To"] = member
    forwarded["Subject"] = report_subject
    forwarded["Message-ID"] = make_msgid(domain="example.net")
    forwarded.set_content(report_text)
    msg = EmailMessage()
    msg["From"] = member
    msg["To"] = personal_address(member)
    msg["Subject"] = f"Fwd: {report_subject} {typed}"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(note)
    msg.add_attachment(forwarded)
    return msg.as_bytes()


# ----- 1. outward text: a phone number the masks take for a case reference, a range or an amount ----

# Real numbers in the shapes people write them; each one is masked as something harmless first
# (`2093-4567` looks like a case reference `2026-0007`, `471.123.456` like an amount `1.500.000`,
# `2019-1234` like a case reference), so the closing-lines check never sees a phone number.
MASKED_PHONES = [
    pytest.param("Tel. +49 30 2093-4567", id="berlin-extension-like-a-case-ref"),
    pytest.param("Mobile: +32 471.123.456", id="belgian-mobile-like-an-amount"),
    pytest.param("Tel 030/2019-1234", id="slash-and-extension"),
]


@pytest.mark.parametrize("phone", MASKED_PHONES)
def test_phone_number_in_a_reply_signature_is_refused(harness, smtp_receiver, phone):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    before = len(rx.to(REPORTER))
    text = f"Thank you for your report, we are looking into it. REPLY-TEXT\n\nCommunity Lead, Example Foundation\n{phone}\n"
    step(harness, app, client_reply(alice_copy, ALICE, "!reply", text))
    if len(rx.to(REPORTER)) == before:
        return  # refused: fine
    sent = text_of(rx.to(REPORTER)[-1])
    digits = phone.split(maxsplit=1)[1]
    assert digits not in sent, f"the reporter received Alice's phone number from her signature:\n{sent}"


# ----- 2. !new with a !concerns name that matches nobody ------------------------------------------


def test_new_with_a_concerns_name_matching_nobody_is_not_silently_ignored(harness, smtp_receiver):
    """Alice forwards a report about Carol (who is called "C." in it) and types `!concerns Chen`.
    On a case an unknown name is refused; with `!new` it is dropped without a word: the case opens,
    Carol receives the report about herself, and Alice is told nothing went wrong."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, forward_with_new(
        ALICE, "Meetup incident", "C. from the committee kept touching my shoulder after I said no. REPORT-ABOUT-C",
        "!new reporter2@example.net !concerns Chen"))
    carol_got = got(rx, CAROL, "REPORT-ABOUT-C")
    told = any("chen" in text_of(m).lower() and ("no member" in text_of(m).lower() or "not" in text_of(m).lower())
               for m in rx.to(ALICE))
    assert not carol_got or told, (
        "`!concerns Chen` typed with !new matched nobody and was silently ignored: Carol got the report "
        "about her and Alice was not told")


# ----- 3. !new forwarding a report whose subject carries an existing case's tag -------------------


def test_forwarding_a_report_with_a_case_tag_in_its_subject_is_not_silently_dropped(harness, smtp_receiver):
    """The reporter of case 1 later writes to Bob directly, answering our acknowledgement (subject
    `Re: [conduct #REF] Your report has been received`), about something new and about Carol. Bob
    forwards it to his personal address with `!new`. The subject's tag makes it "a personal token
    used on a case": refused silently. No case, no copy, no answer to Bob: a report vanished."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    ack_subject = str(parsed(rx.to(REPORTER)[0])["Subject"])
    bob_before = len(rx.to(BOB))
    step(harness, app, forward_with_new(
        BOB, f"Re: {ack_subject}", "Something new: at the after-party it happened again. NEW-REPORT-TEXT",
        "!new reporter@example.net"))
    filed = got(rx, ALICE, "NEW-REPORT-TEXT")
    told = len(rx.to(BOB)) > bob_before
    with app.sessions() as session:
        kinds = [r.kind for r in session.scalars(select(InboundMessage).order_by(InboundMessage.id))]
    assert filed or told, f"Bob's !new forward vanished: nothing filed, Bob told nothing (inbound kinds: {kinds})"


# ----- 4. !confirm answering the !include announcement confirms a colleague's severe decision -----


def test_confirm_answering_an_include_announcement_confirms_the_include(harness, smtp_receiver):
    """Alice proposes a permanent ban (pending) and also proposes to include Bob again. Carol answers
    the "proposes to include Bob" announcement with `!confirm`: the permanent ban takes effect (a
    sanction in the ledger) and Bob stays excluded."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness, report(body="Bob Builder was there and saw it. Pat kept commenting."))
    assert BOB in {r.member_email for r in the_case(app).recusals if r.active}
    step(harness, app, reply(alice_copy, ALICE, "!party reported pat@example.net Pat Person"))
    step(harness, app, reply(alice_copy, ALICE, "!decide permanent-ban target=reported"))
    step(harness, app, reply(alice_copy, ALICE, "!include Bob", "Bob was only a witness."))
    announcement = latest(rx, CAROL, "proposes to include")
    step(harness, app, reply(announcement, CAROL, "!confirm"))
    case = the_case(app)
    bob_included = not next(r for r in case.recusals if r.member_email == BOB).active
    with app.sessions() as session:
        ban = session.scalars(select(Decision).where(Decision.case_id == case.id)).all()
        effective = [d.kinds for d in ban if d.status == "effective"]
    assert bob_included and not effective, (
        f"Carol's !confirm, answering the !include announcement, put {effective} into effect "
        f"(Bob included: {bob_included}); confirmation: {text_of(latest(rx, CAROL))[:300]}")


# ----- 5. a reporter's follow-up that quotes the threat they received --------------------------

QUOTED_THREATS = [
    pytest.param("plain", id="plain-chat-quote"),
    pytest.param("html-indent", id="gmail-indent-blockquote"),
]


@pytest.mark.parametrize("shape", QUOTED_THREATS)
def test_threat_quoted_by_the_reporter_in_a_follow_up_reaches_the_committee(harness, smtp_receiver, shape):
    """The reporter pastes the message they got on Discord, as people quote chat: `> ...` lines in
    plain text, or Gmail's "indent" (a bare <blockquote>). Members see "He wrote to me last night:"
    and nothing else; the threat itself is dropped as "quoted history"."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    ack = rx.to(REPORTER)[0]
    msg = EmailMessage()
    msg["From"] = f"Robin Reporter <{REPORTER}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: {parsed(ack)['Subject']}"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg["In-Reply-To"] = parsed(ack)["Message-ID"]
    if shape == "plain":
        msg.set_content("He wrote to me on Discord last night:\n\n> I know where you live. THREAT-TEXT\n> See you at the sprint.\n\n"
                        "I am scared to go.")
    else:
        msg.set_content('<div dir="ltr">He wrote to me on Discord last night:<blockquote style="margin:0 0 0 40px;border:none;'
                        'padding:0px"><div>I know where you live. THREAT-TEXT</div></blockquote><div>I am scared to go.</div></div>',
                        subtype="html")
    step(harness, app, msg.as_bytes())
    assert got(rx, CAROL, "I am scared"), "the follow-up did not reach the committee at all"
    assert got(rx, CAROL, "THREAT-TEXT"), "the threat the reporter quoted in their follow-up never reached the committee"


# ----- 6. a party's subject blocks a member's commands for good ------------------------------------


def test_commands_in_a_partys_subject_do_not_block_the_committee(harness, smtp_receiver):
    """The reported person answers the committee's question with `!reply !ack` in the subject (any
    outsider with the case reference can do the same). From then on every `!reply` a member types is
    "already in an earlier subject of this thread" and is never applied: the reporter can no longer
    be answered by email, and a new subject does not help (the party's subject stays on the case)."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    step(harness, app, reply(alice_copy, ALICE, "!party reported pat@example.net Pat Person"))
    step(harness, app, client_reply(alice_copy, ALICE, "!send reported", "Please tell us your view of the evening at the sprint."))
    [to_pat] = rx.to(PAT)
    answer = EmailMessage()
    answer["From"] = f"Pat Person <{PAT}>"
    answer["To"] = "conduct@example.org"
    answer["Subject"] = f"Re: {parsed(to_pat)['Subject']} !reply !ack"
    answer["Message-ID"] = make_msgid(domain="example.net")
    answer["In-Reply-To"] = parsed(to_pat)["Message-ID"]
    answer.set_content("I did nothing wrong.")
    step(harness, app, answer.as_bytes())
    reporter_before = len(rx.to(REPORTER))
    # Alice writes a fresh mail on her reply address, a subject of her own.
    fresh = EmailMessage()
    fresh["From"] = ALICE
    fresh["To"] = str(parsed(alice_copy)["Reply-To"])
    fresh["Subject"] = f"[conduct #{case.ref}] update !reply"
    fresh["Message-ID"] = make_msgid(domain="example.org")
    fresh.set_content("We have spoken to the people involved and will decide this week. REPLY-TEXT")
    step(harness, app, fresh.as_bytes())
    assert len(rx.to(REPORTER)) == reporter_before + 1, (
        "the reported person's subject blocks !reply: " + text_of(latest(rx, ALICE))[:700])


# ----- 7. a member's own note to plain conduct@ recuses the colleague it names ---------------------


def test_members_note_to_plain_conduct_does_not_recuse_the_colleague_it_names(harness, smtp_receiver):
    """Alice writes a new mail to conduct@ (not her reply address) with the case tag: "Bob Builder
    knows the venue manager". It is taken for a stranger's message: Bob, named by his colleague, is
    excluded from the case and receives nothing more about it (README: anything else claiming to be a
    member is ignored and audited; here it is forwarded as an outsider's message and recuses)."""
    app, case, alice_copy = opened(harness)
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"[conduct #{case.ref}] venue"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("Bob Builder knows the venue manager, he could ask about the CCTV.")
    step(harness, app, msg.as_bytes())
    recused = {r.member_email for r in the_case(app).recusals if r.active}
    assert BOB not in recused, "Alice's note naming her colleague excluded Bob from the case"


# ----- 8. outward text: the member's own structured lines are cut as a "quote header" --------------


def test_reply_with_labelled_lines_naming_conduct_is_sent_whole(harness, smtp_receiver):
    """Alice's `!reply` ends with a short "Next step: / Timeline: / Questions: write to conduct@..."
    block. It looks like the header a client writes above a quoted mail, so it is cut: the reporter
    gets the greeting only, and nobody is told the rest was not sent."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    text = ("Dear Robin,\n\nthank you for your report. Here is what happens next.\n\n"
            "Next step: we talk to the people involved this week. STEP-TEXT\n"
            "Timeline: you will hear from us by Friday.\n"
            "Questions: write to conduct@example.org at any time.\n")
    step(harness, app, client_reply(alice_copy, ALICE, "!reply", text))
    sent = text_of(rx.to(REPORTER)[-1])
    assert "STEP-TEXT" in sent and "by Friday" in sent, f"the reporter got a truncated reply:\n{sent}"


# ----- 9. !new: the forwarding member's own words vanish ------------------------------------------


def test_forwarding_members_own_text_with_new_is_not_dropped(harness, smtp_receiver):
    """Alice forwards a report with `!new` and writes above it what the reporter told her besides.
    The committee's copy holds the forwarded report only; Alice's text is neither shown nor filed as
    a note, and her confirmation does not say so (DESIGN: text written with commands is never dropped)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, forward_with_new(ALICE, "Meetup incident", "Something happened at the meetup. REPORT-TEXT",
                                        "!new reporter2@example.net",
                                        note="MEMBER-NOTE: she told me on the phone he is also at the next sprint."))
    assert got(rx, CAROL, "REPORT-TEXT"), "the forwarded report did not reach the committee"
    assert got(rx, CAROL, "MEMBER-NOTE"), "Alice's own text written with !new was silently dropped"


# ----- attacks tried that did NOT work (round 3) ---------------------------------------------------
# - Authentication-Results: a second header of our authserv-id below ours, `(`/`"` nesting in the
#   mailfrom, a version after the id: the topmost header of our id decides (round-2 fixes hold).
# - Reporter subjects with `!` hidden in encoded words, fullwidth/small-form `!`, `!` glued to words:
#   title_of removes every `!`, so a member's plain reply carries no command.
# - A reported person's follow-up from their recorded address (any case, `+tag`) naming every member,
#   and with X-Original-From naming the reporter: roles include "reported", nobody is recused.
# - Multipart/alternative follow-up with a plain "view in HTML" stub: the HTML text is shown and scanned.
# - Recused members: include/concerns/recuse announcements, refusals (reply-all, no token) and
#   confirmations go through routing.may_see; nothing reached Bob once recused.
# - outward: a phone in US dotted form (555.123.4567), `+1 (617) 555-0134`, and `-- ` signatures with
#   a phone are refused or cut; a member's own address and full name anywhere are refused.
# - Canonical addresses: `Victim+n@` and dotted gmail spellings count as one correspondent; a member
#   under a `+tag` spelling is still the member (authentication needs the token anyway).
# - Known and documented, not counted: an outsider (or the reported person from a second address)
#   with the case reference naming members recuses them.
