"""Red-team attacks by outsiders (reporter, reported person, witness, stranger), end to end over
real Dovecot + aiosmtpd, in the style of tests/e2e/test_attacks_e2e.py. Each test asserts the safe
behaviour a user would expect, so it FAILS while the attack works."""

from __future__ import annotations

import email
import email.policy
import itertools
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, InboundMessage
from tests.harness import count, parsed, report, text_of
from tests.mailers import ALICE, BOB, CAROL, REPORTER, got, opened, reply, step, the_case

MEMBERS = (ALICE, BOB, CAROL)

# ----- a forged loop header makes a report vanish ------------------------------------------------


def test_report_with_a_forged_loop_header_is_not_dropped(harness, smtp_receiver):
    """Anyone can put our loop header on a report; it is then 'our own mail coming back':
    no case, no copy, no alert: the report vanishes (DESIGN rule 7: none dropped silently)."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, report(body="He grabbed my arm at the party. LOOPED-REPORT",
                              headers={"X-Conduct-Inbox-Loop": "1"}))
    members_told = [m for m in MEMBERS if rx.to(m)]
    with app.sessions() as session:
        statuses = [r.status for r in session.scalars(select(InboundMessage))]
    assert count(app, Case) == 1 or members_told, (
        f"the report was dropped without a trace (inbound status {statuses}, no case, no mail to any member)")


# ----- a bottom-posted follow-up loses its content -----------------------------------------------


def test_bottom_posted_follow_up_reaches_the_committee(harness, smtp_receiver):
    """A reporter (mutt, many list users) answers below the quote: the committee sees only 'Hi,'."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    ack = rx.to(REPORTER)[0]
    original = parsed(ack)
    msg = EmailMessage()
    msg["From"] = f"Robin Reporter <{REPORTER}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: {original['Subject']}"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg["In-Reply-To"] = original["Message-ID"]
    quoted = "\n".join("> " + line for line in text_of(ack).splitlines()[:4])
    msg.set_content(f"Hi,\n\nOn Tue, 24 Nov 2026, Conduct wrote:\n{quoted}\n\n"
                    "It happened again today, at the evening social. BOTTOM-POSTED-NEWS\n\nRobin\n")
    step(harness, app, msg.as_bytes())
    assert got(rx, BOB, "BOTTOM-POSTED-NEWS"), "the committee's copy of the follow-up lacks the reporter's new text"


def test_text_after_a_signature_separator_reaches_the_committee(harness, smtp_receiver):
    """A witness's P.S. after their signature is cut from the committee's copy."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    step(harness, app, reply(alice_copy, ALICE, "!party witness dana@example.net Dana"))
    step(harness, app, reply(alice_copy, ALICE, "!send witness", "Could you tell us what you saw at the sprint?"))
    [to_dana] = rx.to("dana@example.net")
    answer = reply(to_dana, "dana@example.net", body="I was there, yes.\n-- \nDana\n\nP.S. He also followed her "
                   "to the hotel afterwards. PS-WITNESS-TEXT", to="conduct@example.org")
    step(harness, app, answer)
    assert got(rx, CAROL, "PS-WITNESS-TEXT"), "the witness's text after the signature never reached the committee"


# ----- a command copied by forwarding one's own mail ---------------------------------------------


def test_forwarding_ones_own_reply_mail_does_not_send_again(harness, smtp_receiver):
    """Alice forwards her own sent `!reply` mail to the case address with a remark for the committee;
    the forward (Thunderbird, Apple Mail: no In-Reply-To/References) keeps `!reply` in its subject."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    mine = reply(alice_copy, ALICE, "!reply", "Thank you for your report; we are looking into it. FIRST-ANSWER")
    step(harness, app, mine)
    assert len(rx.to(REPORTER)) == 2
    own = email.message_from_bytes(mine, policy=email.policy.default)
    fwd = EmailMessage()
    fwd["From"] = ALICE
    fwd["To"] = str(own["To"])
    fwd["Subject"] = f"Fwd: {own['Subject']}"
    fwd["Message-ID"] = make_msgid(domain="example.org")
    fwd.set_content("FYI-REMARK: Carol, I answered before we talked; I think Pat did this before.\n\n"
                    "-------- Forwarded Message --------\n"
                    f"Subject: {own['Subject']}\nDate: Tue, 24 Nov 2026 09:05:00 +0000\nFrom: {ALICE}\nTo: {own['To']}\n\n"
                    "Thank you for your report; we are looking into it. FIRST-ANSWER\n")
    step(harness, app, fwd.as_bytes())
    leaked = [m for m in rx.to(REPORTER) if "FYI-REMARK" in text_of(m)]
    assert not leaked, "the member's remark to the committee was sent to the reporter"


# ----- acknowledgement floods through one mailbox's many spellings --------------------------------


def _dot_variants(local: str, n: int) -> list[str]:
    out = []
    for mask in itertools.product((False, True), repeat=len(local) - 1):
        out.append("".join(c + ("." if dot else "") for c, dot in zip(local, (*mask, False))))
    return out[:n]


SPELLINGS = [
    pytest.param([f"{v}@gmail.com" for v in _dot_variants("victim", 30)], "victim@gmail.com", id="gmail-dots"),
]


def _mailbox(addr: str) -> str:
    local, _, domain = addr.rpartition("@")
    local = local.strip('"').replace("\\", "").split("+")[0]
    domain = domain.rstrip(".").lower()
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local.lower()}@{domain}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("senders,mailbox", SPELLINGS)
def test_acknowledgements_are_limited_per_mailbox(harness, smtp_receiver, senders, mailbox):
    rx = smtp_receiver
    app = harness.app()
    raws = [report(sender=s, subject="Please read") for s in senders]
    with harness.dovecot.client(harness.user) as client:
        client.multiappend("INBOX", raws)
    run_once(app)
    run_once(app)
    acks = [m for m in rx.messages if any(_mailbox(r) == mailbox for r in m.rcpt_tos)]
    assert len(acks) <= 5, f"{len(acks)} acknowledgements reached the one mailbox {mailbox}"


# ----- members named where the scan does not read ------------------------------------------------

ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Example//EN\r\nBEGIN:VEVENT\r\nUID:1@example.net\r\n"
       "DTSTART:20261120T100000Z\r\nSUMMARY:Sprint planning\r\n"
       # RFC 5545 folds lines at 75 octets; the fold falls inside the name
       "ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=Bob Bu\r\n ilder:mailto:b.b@example.com\r\n"
       "END:VEVENT\r\nEND:VCALENDAR\r\n").encode()

RTF = (rb"{\rtf1\ansi\deff0 {\fonttbl {\f0 Helvetica;}}\f0\pard It was Bob }{\rtlch\fcs1 \af0 \ltrch\fcs0 \insrsid1 "
       rb"Builder} who kept making the comments.\par}")

HIDDEN = [
    pytest.param(("invite.ics", "text/calendar", ICS), id="calendar-invite-folded-line"),
    pytest.param(("statement.rtf", "application/rtf", RTF), id="rtf-word-runs"),
    pytest.param(("Bob_Builder_timeline.txt", "text/plain", b"10:00 arrived\n10:20 the comments started\n"),
                 id="file-name-with-underscores"),
]


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("attachment", HIDDEN)
def test_member_named_only_in_an_attachment_gets_nothing(harness, smtp_receiver, attachment):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness, report(body="Please see the attached file for who it was.",
                                                   attachments=[attachment]))
    assert rx.to(ALICE) and rx.to(CAROL)
    assert rx.to(BOB) == [], "Bob received the report that names him in an attachment"


def test_member_named_last_name_first_gets_nothing(harness, smtp_receiver):
    """Directories and Outlook show people as "Last, First"."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness, report(
        body="The comments came from Builder, Bob (the volunteer lead), in front of everyone."))
    assert rx.to(ALICE)
    assert rx.to(BOB) == [], "Bob received the report that names him as 'Builder, Bob'"


# ----- the reported person recuses the committee from their own mailbox's sub-address -------------


def test_reported_person_writing_from_a_sub_address_cannot_recuse(harness, smtp_receiver):
    """Pat answers from pat+conduct@ (the same mailbox; Pat's own `+tag`): taken for a stranger, whose
    naming every member recuses them all. The rate limits already treat `+tag` as the same person."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    step(harness, app, reply(alice_copy, ALICE, "!party reported pat@example.net Pat Person"))
    step(harness, app, reply(alice_copy, ALICE, "!send reported", "Please tell us your side of what happened."))
    [to_pat] = rx.to("pat@example.net")
    answer = reply(to_pat, "Pat Person <pat+conduct@example.net>",
                   body="Alice Example, Bob Builder and Carol Chen are all biased against me. PAT-ANSWER",
                   to="conduct@example.org")
    step(harness, app, answer)
    recused = [r.member_email for r in the_case(app).recusals if r.active]
    assert recused == [], f"the reported person's mail recused {recused}"
