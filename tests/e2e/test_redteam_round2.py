"""Red team, round 2: attacks end to end (real Dovecot + aiosmtpd, `run --once`).

Each test plays one attack that works on the code as it is, and asserts what a careful user would
expect; it FAILS while the attack works. See the module's bottom for attacks tried that did not work.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import select

from conduct_inbox.store.models import Case, Recusal
from tests.harness import SECRET, count, parsed, report, text_of
from tests.mailers import got, latest, opened, personal_address, reply, step, the_case

REPORTER = "reporter@example.net"
ALICE, BOB, CAROL, SAM = "alice@example.org", "bob@example.org", "carol@example.org", "sam@example.org"
MEMBERS = (ALICE, BOB, CAROL)
PAT = "pat@example.net"


def trust(harness, authserv: str = "mx.example.org") -> None:
    path = harness.config_path
    path.write_text(path.read_text().replace(f'token_secret = "{SECRET}"',
                                             f'token_secret = "{SECRET}"\ntrusted_authserv_id = "{authserv}"'))


def forged_member_mail(case, results: list[str], subject_suffix: str = "!ack", body: str = "Seen, I am on it.") -> bytes:
    """An outsider's mail in Alice's name to plain conduct@; `results` are Authentication-Results,
    topmost first (the first one is what our own trusted server added on delivery)."""
    msg = EmailMessage()
    for value in results:
        msg["Authentication-Results"] = value
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: [conduct #{case.ref}] Harassment at the sprint {subject_suffix}".strip()
    msg["Message-ID"] = make_msgid(domain="evil.example")
    msg.set_content(body)
    return msg.as_bytes()


# ----- 1. DMARC: an outsider makes the daemon read a pass that our server never gave ----------------

FORGED_RESULTS = [
    # RFC 8601 allows a version after the authserv-id ("mx.example.org 1; ..."). Our server's own
    # header (the topmost, a DMARC *fail*) is then skipped, and the forged one below it is believed.
    pytest.param(["mx.example.org 1; dmarc=fail (p=none) header.from=example.org",
                  "mx.example.org; dmarc=pass (p=none) header.from=example.org"], id="version-after-authserv-id"),
    # Our server's one combined header (Gmail / rspamd style): SPF passes for the attacker's own
    # domain, whose envelope sender is a quoted local part the attacker chose; the real verdict is fail.
    pytest.param(['mx.example.org; spf=pass (mx.example.org: domain of "dmarc=pass header.from=example.org"@evil.example '
                  'designates 192.0.2.7 as permitted sender) smtp.mailfrom="dmarc=pass header.from=example.org"@evil.example; '
                  'dkim=none; dmarc=fail (p=none dis=none) header.from=example.org'], id="verdict-read-from-mailfrom"),
]


@pytest.mark.parametrize("results", FORGED_RESULTS)
def test_forged_dmarc_pass_does_not_authenticate_a_member(harness, smtp_receiver, results):
    rx = smtp_receiver
    trust(harness)
    app, case, alice_copy = opened(harness)
    bob_before = len(rx.to(BOB))
    step(harness, app, forged_member_mail(case, results, "!ack !status waiting", "FORGED-NOTE: no need to act, I called them."))
    case = the_case(app)
    problems = []
    if case.status != "new" or case.human_ack_at is not None:
        problems.append(f"an outsider in Alice's name changed the case: status {case.status}, acked {case.human_ack_at}")
    if any("FORGED-NOTE" in text_of(m) and "Internal note from Alice" in text_of(m) for m in rx.to(BOB)[bob_before:]):
        problems.append("Bob received the outsider's text as an internal note from Alice")
    assert not problems, "\n".join(problems)


# ----- 2. !new: the forwarded report's own subject carries commands ------------------------------


def _forward(subject_of_report: str, member: str = ALICE, typed: str = "!new reporter2@example.net") -> bytes:
    forwarded = EmailMessage()
    forwarded["From"] = "Second Reporter <reporter2@example.net>"
    forwarded["To"] = member
    forwarded["Subject"] = subject_of_report
    forwarded["Message-ID"] = make_msgid(domain="example.net")
    forwarded.set_content("Something happened at the meetup, I did not want to write to conduct@ directly.")
    msg = EmailMessage()
    msg["From"] = member
    msg["To"] = personal_address(member)
    # Gmail / Thunderbird / Outlook: "Fwd: <the subject of the forwarded mail>"; the member adds !new.
    msg["Subject"] = f"Fwd: {subject_of_report} {typed}"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content("This came to me directly.")
    msg.add_attachment(forwarded)
    return msg.as_bytes()


def test_commands_in_a_forwarded_reports_subject_do_not_act(harness, smtp_receiver):
    """The person who wrote to Alice put `!concerns Carol` in the subject; Alice forwards it with
    `!new`. Carol is excluded for good (a manual recusal: `!include` cannot undo it) by a command
    no member typed."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, _forward("Meetup incident !concerns Carol"))
    assert count(app, Case) == 1
    with app.sessions() as session:
        recused = {r.member_email: (r.reason, r.automatic) for r in session.scalars(select(Recusal)) if r.active}
    assert CAROL not in recused, f"a command in the forwarded report's subject recused Carol: {recused}"
    assert rx.to(CAROL), "Carol got no copy of the forwarded report"


def test_urgent_typed_with_new_is_applied_or_refused(harness, smtp_receiver):
    """`!new ADDRESS !urgent`: the member typed both; `!urgent` must apply or be refused, not vanish."""
    rx = smtp_receiver
    app = harness.app()
    step(harness, app, _forward("Meetup incident", typed="!new reporter2@example.net !urgent"))
    assert count(app, Case) == 1
    case = the_case(app)
    told = any("urgent" in text_of(m).lower() and ("not" in text_of(m).lower() or "refus" in text_of(m).lower())
               for m in rx.to(ALICE))
    assert case.urgent or told, "!urgent typed with !new was silently dropped (case not urgent, Alice not told)"


# ----- 3. an honest retry after a refusal ----------------------------------------------------------


def test_resending_a_refused_reply_by_answering_ones_own_mail_sends_it(harness, smtp_receiver):
    """Alice's `!reply` is refused (phone number in her closing lines; "send it again"). She answers
    her own refused mail in her Sent folder (Gmail/Outlook: "Re: Re: ... !reply", References holds
    the refused mail), with the text corrected. The `!reply` was never applied, yet it is taken for
    a repeat and her answer never reaches the reporter."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    first = reply(alice_copy, ALICE, "!reply", "Thank you, we are looking into it.\n\nAlice\n+49 170 1234567")
    step(harness, app, first)
    refusal = latest(rx, ALICE)
    assert "phone" in text_of(refusal).lower()
    reporter_before = len(rx.to(REPORTER))
    own = email.message_from_bytes(first, policy=email.policy.default)
    retry = EmailMessage()
    retry["From"] = ALICE
    retry["To"] = str(own["To"])
    retry["Subject"] = f"Re: {own['Subject']}"  # "Re: Re: [conduct #REF] title !reply"
    retry["Message-ID"] = make_msgid(domain="example.org")
    retry["In-Reply-To"] = own["Message-ID"]
    retry["References"] = f"{parsed(alice_copy)['Message-ID']} {own['Message-ID']}"
    retry.set_content("Thank you, we are looking into it. RETRY-TEXT\n\n> (refusal quoted)\n")
    step(harness, app, retry.as_bytes())
    assert len(rx.to(REPORTER)) == reporter_before + 1, (
        "the corrected !reply was not sent: " + text_of(latest(rx, ALICE))[:400])
    assert "RETRY-TEXT" in text_of(rx.to(REPORTER)[-1])


# ----- 4. a reporter's P.S. below their Gmail signature (HTML) ------------------------------------


def test_html_follow_up_text_after_the_signature_reaches_the_committee(harness, smtp_receiver):
    """Round 1 fixed this for plain text; Gmail sends HTML. The reporter's P.S. typed below their
    Gmail signature block never reaches the committee (only the stored raw message has it)."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    ack = rx.to(REPORTER)[0]
    msg = EmailMessage()
    msg["From"] = f"Robin Reporter <{REPORTER}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Re: {parsed(ack)['Subject']}"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg["In-Reply-To"] = parsed(ack)["Message-ID"]
    msg.set_content(
        '<html><body><div dir="ltr">It happened again.<br><br>-- <div class="gmail_signature">Robin<br>Dev advocate</div>'
        '<div>P.S. He also threatened me by DM. PS-TEXT</div></div>'
        '<div class="gmail_quote"><blockquote class="gmail_quote">old</blockquote></div></body></html>', subtype="html")
    step(harness, app, msg.as_bytes())
    assert got(rx, CAROL, "PS-TEXT"), "the reporter's P.S. (a threat) never reached the committee"


# ----- 5. !send with the written decision attached ---------------------------------------------------


def test_send_with_an_attachment_sends_it_or_says_it_did_not(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    step(harness, app, reply(alice_copy, ALICE, "!party reported pat@example.net Pat Person"))
    original = parsed(alice_copy)
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = str(original["Reply-To"])
    msg["Subject"] = f"Re: {original['Subject']} !send reported"
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["In-Reply-To"] = original["Message-ID"]
    msg.set_content("Please find the committee's decision attached.")
    msg.add_attachment(b"%PDF-1.4 decision text", maintype="application", subtype="pdf", filename="decision.pdf")
    step(harness, app, msg.as_bytes())
    [to_pat] = rx.to(PAT)
    sent_files = [p.get_filename() for p in parsed(to_pat).iter_attachments()]
    confirmation = text_of(latest(rx, ALICE)).lower()
    assert "decision.pdf" in sent_files or "attach" in confirmation, (
        "the attachment was dropped without a word: the reported person got the text only, and Alice's "
        "confirmation does not say so")


# ----- 6. !confirm of an !include while one's own decision is pending ---------------------------------


def test_confirming_an_include_is_not_blocked_by_ones_own_pending_decision(harness, smtp_receiver):
    rx = smtp_receiver
    app, case, alice_copy = opened(harness, report(body="Bob Builder was there and saw it. Pat kept commenting."))
    assert BOB in {r.member_email for r in the_case(app).recusals if r.active}
    step(harness, app, reply(alice_copy, ALICE, "!party reported pat@example.net Pat Person"))
    step(harness, app, reply(alice_copy, ALICE, "!decide permanent-ban target=reported"))
    carol_copy = rx.to(CAROL)[0]
    step(harness, app, reply(carol_copy, CAROL, "!include Bob", "Bob was only a witness, he should help us."))
    announcement = latest(rx, ALICE, "proposes to include")
    step(harness, app, reply(announcement, ALICE, "!confirm"))
    recusal = next(r for r in the_case(app).recusals if r.member_email == BOB)
    assert not recusal.active, ("Alice's !confirm in answer to the !include announcement was refused: "
                                + text_of(latest(rx, ALICE))[:300])


# ----- 7. reply-all: a member who was Cc'd answers ------------------------------------------------


def test_member_answering_a_colleagues_mail_with_reply_all_is_not_silently_dropped(harness, smtp_receiver):
    """Alice writes a note to the case and Cc's Bob directly; Bob answers with reply-all (To: Alice and
    Alice's reply address). His note is refused without a word to anyone: he never learns it was not filed."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    original = parsed(alice_copy)
    note = EmailMessage()
    note["From"] = ALICE
    note["To"] = str(original["Reply-To"])
    note["Cc"] = BOB
    note["Subject"] = f"Re: {original['Subject']}"
    note["Message-ID"] = make_msgid(domain="example.org")
    note["In-Reply-To"] = original["Message-ID"]
    note.set_content("Bob, could you call the venue?")
    step(harness, app, note.as_bytes())
    answer = EmailMessage()
    answer["From"] = BOB
    answer["To"] = f"{ALICE}, {original['Reply-To']}"
    answer["Subject"] = f"Re: {note['Subject']}"
    answer["Message-ID"] = make_msgid(domain="example.org")
    answer["In-Reply-To"] = note["Message-ID"]
    answer["References"] = f"{original['Message-ID']} {note['Message-ID']}"
    answer.set_content("BOB-NOTE: I called the venue, they have CCTV.\n\n> Bob, could you call the venue?\n")
    bob_before = len(rx.to(BOB))
    step(harness, app, answer.as_bytes())
    filed = got(rx, CAROL, "BOB-NOTE")
    told = len(rx.to(BOB)) > bob_before
    assert filed or told, "Bob's note was neither filed nor refused to him: it vanished"


# ----- 8. a member recorded as the reported person under a sub-address ------------------------------


def test_member_recorded_as_reported_under_a_sub_address_is_recused(harness, smtp_receiver):
    """The witness wrote from memory that it was `Bob+events@example.org` (the address Bob uses for
    event sign-ups); Alice records it with `!party reported`. Bob is the reported person, yet stays
    on the case and receives everything (a plain `bob@` is recused; the `+tag` spelling is not)."""
    rx = smtp_receiver
    app, case, alice_copy = opened(harness)
    step(harness, app, reply(alice_copy, ALICE, "!party reported Bob+events@example.org"))
    bob_before = len(rx.to(BOB))
    step(harness, app, reply(alice_copy, ALICE, body="AFTER-PARTY-NOTE: we should talk to the reported person next week."))
    assert BOB in {r.member_email for r in the_case(app).recusals if r.active}, "Bob, the reported person, is not recused"
    assert not any("AFTER-PARTY-NOTE" in text_of(m) for m in rx.to(BOB)[bob_before:]), "the reported member got the note"


# ----- attacks tried that did NOT work (round 2) ----------------------------------------------------
# - Reporter's HTML follow-up bottom-posted below a <blockquote type="cite">: the text reaches the members.
# - X-Original-From on the reported person's own follow-up naming the reporter: the roles include
#   "reported", so nobody is recused.
# - Recused members: announcements of !include/!recuse/!concerns, confirmations and !list go through
#   routing and skip them (read in committee.py/chores.py/escalation.py; spam digest filters per member).
# - Party mail threading: In-Reply-To of mail to a party is that party's own last message, never a
#   member's Message-ID; subjects to parties are the fixed neutral ones.
# - Known and documented, not counted: the reported person writing from another address (or any
#   outsider; case refs are sequential, so guessable) with the case tag, naming members, recuses them.
