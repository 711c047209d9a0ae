"""Attacks the recusal property test (tests/e2e/test_recusal_property.py) found, each as one plain,
deterministic report through the real daemon (Maildir, aiosmtpd, database).

DESIGN "Routing and recusal": content is scanned for roster members before it can reach any
member — every alternative of every text part (a plain stub must not hide the HTML), HTML as
rendered text (`&nbsp;` resolved), every attachment whose bytes are text whatever its declared
type or charset (BOMs, UTF-16, undeclared legacy charsets, JSON), forwarded messages in any
transfer encoding, and names by Unicode confusable skeleton (a Cyrillic `А` in `Аlice`).
A member named there must be recused and get no copy of the report.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from conduct_inbox.adapters.maildir import deliver_to_maildir
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, OutboxMessage
from tests import adversary
from tests.harness import maildir_app


@pytest.fixture
def daemon(smtp_receiver, database):
    folder = Path(tempfile.mkdtemp(prefix="ci-attack-"))
    app = maildir_app(folder, database.url, smtp_receiver, mailbox={"poll_seconds": 1})
    yield app, folder / "Maildir"
    app.close()


# (carrier, naming, variant): each names Bob Builder (or Alice Example) where a person can read it.
HIDDEN_NAMINGS = {
    "confusable_cyrillic_in_body": ("body", f"{adversary.CYRILLIC_A}lice Example", 0, "alice@example.org"),
    "alternative_plain_stub_html_names": ("alternative_html", "Bob Builder", 0, "bob@example.org"),
    "html_attachment_nbsp_between_names": ("html_attachment", "Bob Builder", 0, "bob@example.org"),
    "utf16_bom_text_attachment_without_charset": ("utf16_attachment", "Bob Builder", 1, "bob@example.org"),
    "octet_stream_json_chat_export": ("json_octet", "Bob Builder", 0, "bob@example.org"),
    "latin1_attachment_without_charset_accented_name": ("latin1_attachment", "Bób Builder", 0, "bob@example.org"),
    "forwarded_message_rfc822_base64": ("forwarded_base64", "Bob Builder", 0, "bob@example.org"),
}


@pytest.mark.one_database  # the member scan of content: the database plays no part
@pytest.mark.parametrize("attack", sorted(HIDDEN_NAMINGS))
def test_a_member_named_where_a_person_can_read_it_is_recused_and_gets_no_copy(daemon, attack):
    app, maildir = daemon
    carrier, naming, variant, named = HIDDEN_NAMINGS[attack]
    raw = adversary.mail(sender="robin@example.net", name="Robin Reporter", subject="Report about the sprint",
                         body="Something happened at the sprint.", carrier=carrier, naming=naming, variant=variant)
    deliver_to_maildir(maildir, raw)
    run_once(app)
    with app.sessions() as session:
        case = session.scalars(select(Case).options(selectinload(Case.recusals)).order_by(Case.id.desc())).first()
        assert case is not None
        recipients = set(session.scalars(select(OutboxMessage.recipient).where(OutboxMessage.case_id == case.id)))
    assert named in case.recused_members(), f"{attack}: {named} is not recused"
    assert named not in recipients, f"{attack}: the report went to {named}, who it names"
