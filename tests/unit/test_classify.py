"""The classification table on its own: a parsed message and hand-made store facts in, what the
daemon will do with the mail out (open a case, pass it to the committee, forward a follow-up,
fail an outgoing mail, or only record it). No server, no database."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from conduct_inbox.core.classify import RULES, CaseFacts, Facts, Policy, classify
from conduct_inbox.mail.parse import parse

POLICY = Policy(address="conduct@example.org", own_list_ids=("conduct.example.org",), trusted_authserv_id="mx.example.org")
CASE = CaseFacts(id=7, ref="2026-0007", party_addresses=frozenset({"reporter@example.net", "pat@example.net"}), status="open")
REPORTER, PAT, ALICE, STRANGER = "reporter@example.net", "pat@example.net", "alice@example.org", "witness@example.net"


def mail(sender: str = REPORTER, *, subject: str = "Harassment at the sprint", headers: dict[str, str] | None = None,
         body: str = "Someone kept making comments after I asked them to stop."):
    """A plain message to conduct@, parsed as the intake parses it."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = POLICY.address
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg["Date"] = "Tue, 24 Nov 2026 08:59:00 +0000"
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return parse(msg.as_bytes())


def bounce_mail(recipient: str = REPORTER):
    """A delivery status notification saying our mail to `recipient` failed."""
    raw = (
        "Return-Path: <>\r\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        "To: conduct+bounce-12-abcdef@example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_msgid(domain='mx.example.net')}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nDelivery to the following recipient failed.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--B--\r\n"
    )
    return parse(raw.encode())


#: A signed bounce for a row already sent, naming that row's recipient: the one DSN that fails a mail.
GENUINE_BOUNCE = Facts(bounce_row=12, bounce_row_sent=True, bounce_names_recipient=True)


# ----- a new report ------------------------------------------------------------------------------


def test_a_strangers_mail_about_no_case_opens_a_new_case():
    result = classify(mail(STRANGER), Facts(), POLICY)
    assert (result.kind, result.case, result.flags) == ("new_report", None, frozenset())


@pytest.mark.parametrize("headers", [
    {"X-Spam-Flag": "YES"},
    {"X-Spam-Flag": "yes, score=9.1"},
    {"Authentication-Results": "mx.example.org; dmarc=fail (p=reject) header.from=example.net"},
], ids=["spam-header", "spam-header-with-score", "dmarc-fail-from-our-server"])
def test_spam_still_becomes_a_case_but_is_flagged_for_the_digest(headers):
    result = classify(mail(headers=headers), Facts(), POLICY)
    assert result.kind == "new_report" and result.flags == frozenset({"spam"})


@pytest.mark.parametrize("headers", [
    {"X-Spam-Flag": "NO"},
    {"Authentication-Results": "mx.elsewhere.example; dmarc=fail header.from=example.net"},
    {"Authentication-Results": 'mx.example.org; spf=pass smtp.mailfrom="dmarc=fail header.from=x"@example.net'},
    {"Authentication-Results": "mx.example.org; dmarc=pass header.from=example.net"},
], ids=["spam-no", "dmarc-fail-from-another-server", "dmarc-fail-inside-a-quoted-string", "dmarc-pass"])
def test_a_report_that_is_not_spam_is_not_flagged(headers):
    result = classify(mail(headers=headers), Facts(), POLICY)
    assert result.kind == "new_report" and "spam" not in result.flags


@pytest.mark.parametrize("headers", [
    {"Auto-Submitted": "auto-replied"},
    {"Auto-Submitted": "auto-generated; owner-email=x@example.net"},
    {"X-Autoreply": "yes"},
    {"X-Conduct-Inbox-Loop": "1"},
    {"Precedence": "bulk"},
    {"List-Id": "<announce.example.com>"},
], ids=["auto-replied", "auto-generated", "x-autoreply", "forged-loop-header", "precedence-bulk", "foreign-list"])
def test_automatic_mail_with_no_case_is_recorded_as_automatic_never_answered(headers):
    result = classify(mail(headers=headers), Facts(), POLICY)
    assert result.kind == "new_report" and "auto" in result.flags


@pytest.mark.parametrize("headers", [
    {"Auto-Submitted": "no"},
    {"List-Id": "Conduct <conduct.example.org>", "Precedence": "list"},
], ids=["auto-submitted-no", "our-own-group"])
def test_a_person_writing_directly_or_through_our_own_group_gets_an_acknowledgement(headers):
    result = classify(mail(headers=headers), Facts(), POLICY)
    assert result.kind == "new_report" and result.flags == frozenset()


# ----- our own mail and bounces -----------------------------------------------------------------


def test_our_own_mail_coming_back_is_never_processed_again():
    assert classify(mail(ALICE), Facts(own_message=True), POLICY).kind == "own_loop"


def test_our_loop_header_alone_does_not_make_a_report_vanish():
    """Anyone can add the header; only a Message-ID we sent proves the mail is ours."""
    result = classify(mail(headers={"X-Conduct-Inbox-Loop": "1"}), Facts(), POLICY)
    assert result.kind == "new_report"


def test_a_genuine_bounce_fails_the_outgoing_mail_it_names():
    result = classify(bounce_mail(), GENUINE_BOUNCE, POLICY)
    assert (result.kind, result.bounce_row) == ("bounce", 12)


@pytest.mark.parametrize("facts", [
    Facts(),
    Facts(bounce_row=12, bounce_row_sent=False, bounce_names_recipient=True),
    Facts(bounce_row=12, bounce_row_sent=True, bounce_names_recipient=False),
], ids=["unsigned", "mail-not-yet-sent", "names-another-recipient"])
def test_a_bounce_that_proves_nothing_is_only_recorded(facts):
    """Forged or stray DSNs cannot cancel mail, and are not reports either."""
    result = classify(bounce_mail(), facts, POLICY)
    assert result.kind == "machine"


def test_a_signed_bounce_address_on_ordinary_mail_is_not_a_bounce():
    result = classify(mail(STRANGER), GENUINE_BOUNCE, POLICY)
    assert result.kind == "new_report"


# ----- committee mail ---------------------------------------------------------------------------


def test_a_members_mail_on_their_reply_token_goes_to_the_committee_desk():
    result = classify(mail(ALICE, subject="Re: [conduct #2026-0007] !ack"), Facts(case=CASE, token_owners=frozenset({ALICE})), POLICY)
    assert (result.kind, result.case) == ("committee", CASE)


def test_a_personal_token_without_a_case_goes_to_the_committee_desk():
    result = classify(mail(ALICE, subject="!digest"), Facts(token_owners=frozenset({ALICE})), POLICY)
    assert (result.kind, result.case) == ("committee", None)


def test_a_members_dmarc_passed_mail_about_a_case_goes_to_the_committee_desk():
    facts = Facts(case=CASE, member_dmarc_pass=True, member_sender=True)
    assert classify(mail(ALICE, subject="Re: [conduct #2026-0007] !ack"), facts, POLICY).kind == "committee"


def test_a_members_dmarc_passed_mail_about_no_case_is_a_report_of_their_own():
    facts = Facts(member_dmarc_pass=True, member_sender=True)
    assert classify(mail(ALICE, subject="Something happened"), facts, POLICY).kind == "new_report"


def test_mail_claiming_a_members_address_without_a_token_is_not_a_strangers_follow_up():
    """It goes to the desk, which refuses it: a forged From: must never forward to or recuse anyone."""
    facts = Facts(case=CASE, member_sender=True)
    assert classify(mail(ALICE, subject="Re: [conduct #2026-0007] more"), facts, POLICY).kind == "committee"


def test_a_member_who_is_a_party_writing_without_a_token_is_a_party_follow_up():
    case = CaseFacts(id=8, ref="2026-0008", party_addresses=frozenset({ALICE}), status="open")
    facts = Facts(case=case, member_sender=True)
    assert classify(mail(ALICE, subject="Re: [conduct #2026-0008] my side"), facts, POLICY).kind == "followup"


# ----- follow-ups --------------------------------------------------------------------------------


@pytest.mark.parametrize("sender", [REPORTER, PAT, "Pat+conduct@Example.NET"], ids=["reporter", "party", "party-plus-address"])
def test_a_partys_mail_on_a_case_is_a_follow_up(sender):
    result = classify(mail(sender, subject="Re: [conduct #2026-0007] more"), Facts(case=CASE), POLICY)
    assert (result.kind, result.case) == ("followup", CASE)


def test_a_non_partys_mail_on_a_case_is_a_stray_follow_up():
    result = classify(mail(STRANGER, subject="Re: [conduct #2026-0007] I saw it too"), Facts(case=CASE), POLICY)
    assert (result.kind, result.case) == ("stray_followup", CASE)


def test_a_reporters_vacation_reply_on_a_case_is_never_answered():
    msg = mail(REPORTER, subject="Out of office: [conduct #2026-0007]", headers={"Auto-Submitted": "auto-replied"})
    result = classify(msg, Facts(case=CASE), POLICY)
    assert (result.kind, result.case, result.flags) == ("auto_followup", CASE, frozenset({"auto"}))


# ----- the order of the table -------------------------------------------------------------------

#: Facts under which every rule would match; peeling one fact at a time shows which rule comes first.
EVERYTHING = Facts(own_message=True, bounce_row=12, bounce_row_sent=True, bounce_names_recipient=True, case=CASE,
                   token_owners=frozenset({ALICE}))


def test_the_table_is_own_loop_bounce_committee_follow_up_new_report():
    assert [rule.__name__ for rule in RULES] == ["own_loop", "bounce", "committee_mail", "followup", "new_report"]


def test_our_own_mail_wins_over_everything_else():
    assert classify(bounce_mail(), EVERYTHING, POLICY).kind == "own_loop"


def test_a_bounce_wins_over_a_reply_token_and_a_case():
    """A DSN sent to a token address (a member's mail bounced) must not run as a command."""
    facts = Facts(bounce_row=12, bounce_row_sent=True, bounce_names_recipient=True, case=CASE, token_owners=frozenset({ALICE}))
    assert classify(bounce_mail(), facts, POLICY).kind == "bounce"
    assert classify(bounce_mail(), Facts(case=CASE, token_owners=frozenset({ALICE})), POLICY).kind == "machine"


def test_a_reply_token_wins_over_a_follow_up_even_from_a_party():
    facts = Facts(case=CASE, token_owners=frozenset({REPORTER}))
    assert classify(mail(REPORTER, subject="Re: [conduct #2026-0007]"), facts, POLICY).kind == "committee"


def test_a_case_wins_over_a_new_report_even_for_spam():
    msg = mail(STRANGER, subject="Re: [conduct #2026-0007]", headers={"X-Spam-Flag": "YES"})
    assert classify(msg, Facts(case=CASE), POLICY).kind == "stray_followup"
