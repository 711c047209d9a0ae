"""Eighth attack round on issue 16 (cases tier): the roster check for people new on the roster
(`cases/rescan.py` `exclude_newcomers`)."""

from __future__ import annotations

from tests.case_store import Store

STELLA = "stella@example.org"
_SAM = '[[steering.members]]\nname = "Sam Steering"\nemail = "sam@example.org"\n'
_WITH_STELLA = (_SAM, _SAM + '[[steering.members]]\nname = "Stella Stone"\nemail = "stella@example.org"\n')
_STELLA_NEW_ADDRESS = (_SAM, _SAM + '[[steering.members]]\nname = "Stella Stone"\nemail = "stella.stone@example.org"\n')


def _start(store: Store) -> int:
    from conduct_inbox.cases.rescan import exclude_newcomers
    with store.sessions() as session, session.begin():
        return exclude_newcomers(store.inbound.ctx, session, store.now)


def test_a_newcomer_named_only_in_an_attachment_is_excluded(store: Store, stores):
    """BROKE. Robin's report names Stella Stone only in an attached text file (README: attachments
    whose bytes are text are scanned like the body). Stella joins the steering committee; the
    check at the next start must exclude her. cases/rescan.py `exclude_newcomers` scans only
    `InboundMessage.subject` and `body_text`, not the attachments (nor HTML alternatives) that
    `scanning.py` reads at intake, so she stays on the case."""
    case = store.report(body="Details attached.",
                        attachments=[("statement.txt", "text/plain", b"Stella Stone grabbed me at the sprint dinner.")])
    assert _start(store) == 0
    store.inbound = stores.inbound(_WITH_STELLA)
    _start(store)
    assert STELLA in store.case(case.ref).recused_members()


def test_a_newcomer_named_in_the_body_is_excluded(store: Store, stores):
    """HELD. Control: the same report with the name in the body excludes Stella."""
    case = store.report(body="Stella Stone grabbed me at the sprint dinner.")
    _start(store)
    store.inbound = stores.inbound(_WITH_STELLA)
    assert _start(store) == 1
    assert STELLA in store.case(case.ref).recused_members()


def test_a_member_removed_and_re_added_is_checked_against_cases_from_while_they_were_away(store: Store, stores):
    """BROKE. Stella is on the steering committee, leaves (config change, restart), and a report
    naming her arrives while she is off the roster (nobody to exclude). She is re-added: the case
    must be kept from her. cases/rescan.py `newcomers` keeps her hash in `database_meta` for good
    (never removed when she leaves), so on re-adding she is not new and is never checked."""
    store.inbound = stores.inbound(_WITH_STELLA)
    _start(store)  # first start: records Sam, Stella and the committee
    store.inbound = stores.inbound()
    _start(store)
    case = store.report(body="Stella Stone grabbed me at the sprint dinner.")
    assert STELLA not in store.case(case.ref).recused_members()
    store.inbound = stores.inbound(_WITH_STELLA)
    _start(store)
    assert STELLA in store.case(case.ref).recused_members()


def test_a_member_whose_address_changes_is_checked_under_the_new_address(store: Store, stores):
    """HELD. Stella joins, then her roster address changes (same name): a case naming her that
    arrived before must exclude her under the new address too."""
    case = store.report(body="Stella Stone grabbed me at the sprint dinner.")
    _start(store)
    store.inbound = stores.inbound(_STELLA_NEW_ADDRESS)
    _start(store)
    assert "stella.stone@example.org" in store.case(case.ref).recused_members()


def test_a_newcomer_recorded_as_a_party_is_excluded(store: Store, stores):
    """HELD. Alice records Stella (not yet on the roster) as the reported party with `!party`;
    Stella then joins: the check must exclude her from the case."""
    from tests.mailers import ALICE
    case = store.report(body="Someone grabbed me at the sprint dinner.")
    store.command(ALICE, f"!party reported {STELLA} Stella Stone", case=case)
    _start(store)
    store.inbound = stores.inbound(_WITH_STELLA)
    _start(store)
    assert STELLA in store.case(case.ref).recused_members()


def test_a_newcomer_named_only_in_a_members_note_is_excluded(store: Store, stores):
    """HELD. Alice's internal note says the report is about Stella Stone (the report only says "the new
    volunteer"); Stella then joins: the case's mail names her, so she must be excluded."""
    from tests.mailers import ALICE
    case = store.report(body="The new volunteer grabbed me at the sprint dinner.")
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "", "Internal: the new volunteer is Stella Stone.", case=case)
    _start(store)
    store.inbound = stores.inbound(_WITH_STELLA)
    _start(store)
    assert STELLA in store.case(case.ref).recused_members()


def test_a_newcomer_named_only_in_the_html_alternative_is_excluded(store: Store, stores):
    """HELD. Robin's report has a plain "view this in HTML" stub and names Stella Stone only in
    its HTML alternative (README: a plain stub does not hide the HTML). Stella joins: the check
    excludes her."""
    from email.message import EmailMessage
    msg = EmailMessage()
    msg["From"] = "Robin Reporter <reporter@example.net>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = "Harassment at the sprint"
    msg["Date"] = "Tue, 24 Nov 2026 08:59:00 +0000"
    msg.set_content("View this message in HTML.")
    msg.add_alternative("<p>Stella Stone grabbed me at the sprint dinner.</p>", subtype="html")
    store.take_in(msg.as_bytes())
    case = store.case()
    _start(store)
    store.inbound = stores.inbound(_WITH_STELLA)
    _start(store)
    assert STELLA in store.case(case.ref).recused_members()


def test_a_newcomer_named_only_in_a_forwarded_message_is_excluded(store: Store, stores):
    """BROKE. Robin forwards, as an attached message, a mail from Stella Stone's address that
    names her; Robin's own text does not. Stella joins: the check must exclude her (README: forwarded
    messages are scanned like the body). cases/rescan.py `exclude_newcomers` reads only
    `InboundMessage.subject`/`body_text`, not forwarded parts."""
    from email.message import EmailMessage
    inner = EmailMessage()
    inner["From"] = "Stella Stone <stella@example.org>"
    inner["Subject"] = "you again"
    inner.set_content("I will be at the dinner. Stella Stone")
    msg = EmailMessage()
    msg["From"] = "Robin Reporter <reporter@example.net>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = "Harassment at the sprint"
    msg["Date"] = "Tue, 24 Nov 2026 08:59:00 +0000"
    msg.set_content("See the message I forward.")
    msg.add_attachment(inner)
    store.take_in(msg.as_bytes())
    case = store.case()
    _start(store)
    store.inbound = stores.inbound(_WITH_STELLA)
    _start(store)
    assert STELLA in store.case(case.ref).recused_members()


def test_a_newcomer_named_in_a_decided_case_is_excluded(store: Store, stores):
    """HELD. A decided (not closed) case naming Stella: she joins, the check excludes her."""
    from tests.mailers import ALICE
    case = store.report(body="Stella Stone grabbed me at the sprint dinner.")
    store.command(ALICE, "!ack", case=case)
    store.command(ALICE, "!decide no-action", case=case)
    assert store.case(case.ref).status != "closed"
    _start(store)
    store.inbound = stores.inbound(_WITH_STELLA)
    _start(store)
    assert STELLA in store.case(case.ref).recused_members()
