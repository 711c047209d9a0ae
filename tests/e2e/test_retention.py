"""Retention: `purge --dry-run` lists, `purge` deletes closed cases' contents from the database and
the mailbox, and keeps the case rows (statistics) and the sanctions ledger."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from conduct_inbox.cli import main
from conduct_inbox.shell import retention
from conduct_inbox.shell.daemon import housekeeping_once, run_once
from conduct_inbox.store.models import Case, InboundMessage, OutboxMessage, Party, Sanction
from tests.harness import Harness
from tests.sentinels import database_dump, found_in, member_reply, run_lifecycle, sentinel_report

pytestmark = pytest.mark.harness(extra_config="[retention]\nclosed_case_days = 30\n")


def mailbox_text(harness: Harness) -> bytes:
    return b"".join(
        raw for folder in ("INBOX", "Processed", "Quarantine") for raw in harness.dovecot.folder_messages(harness.user, folder)
    )


def counts(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with app.sessions() as session:
        return {
            name: session.scalar(select(func.count()).select_from(model))
            for name, model in (("cases", Case), ("messages", InboundMessage), ("outbox", OutboxMessage),
                                ("parties", Party), ("sanctions", Sanction))
        }


def test_purge_removes_closed_case_contents_everywhere_and_keeps_the_ledger(harness, smtp_receiver, capsys):
    app = run_lifecycle(harness, smtp_receiver)  # closed at the harness clock's time
    # A temporary ban on the reported party puts an entry in the ledger, which must survive.
    alice_copy = smtp_receiver.to("alice@example.org")[0]
    for suffix, who in (("!reopen", "alice"), ("!decide temporary-ban target=reported until=2027-06-30", "alice"),
                        ("!confirm", "carol"), ("!close", "alice")):
        record = alice_copy if who == "alice" else smtp_receiver.to("carol@example.org")[0]
        harness.deliver(member_reply(record, f"{who}@example.org", suffix, ""))
        run_once(app)
    # A second report, still open, must be left alone.
    harness.deliver(sentinel_report(sender="other-reporter@example.net", name="Other", subject="Open case", body="Still open"))
    run_once(app)
    with app.sessions() as session:
        closed = {c.ref for c in session.scalars(select(Case).where(Case.status == "closed"))}
        still_open = {c.ref for c in session.scalars(select(Case).where(Case.status != "closed"))}
    assert closed and still_open
    assert found_in(mailbox_text(harness)) and found_in(database_dump(harness.database_url))
    before = counts(app)
    app.close()

    config = str(harness.config_path)
    too_early = (harness.clock.current + timedelta(days=29)).isoformat()
    assert main(["purge", "--dry-run", "--config", config, "--at", too_early]) == 0
    assert "would purge 0 case(s)" in capsys.readouterr().out

    later = (harness.clock.current + timedelta(days=31)).isoformat()
    assert main(["purge", "--dry-run", "--config", config, "--at", later]) == 0
    listing = capsys.readouterr().out
    assert all(ref in listing for ref in closed) and not any(ref in listing for ref in still_open)
    assert counts(app) == before, "a dry run deletes nothing"

    assert main(["purge", "--config", config, "--at", later]) == 0
    assert "copies deleted from the mailbox" in capsys.readouterr().out
    after = counts(app)
    assert after["cases"] == before["cases"], "case rows stay for statistics"
    assert after["sanctions"] == before["sanctions"] == 1, "the sanctions ledger stays"
    assert after["messages"] < before["messages"] and after["outbox"] < before["outbox"]
    with app.sessions() as session:
        for case in session.scalars(select(Case)):
            if case.ref in closed:
                assert case.purged_at is not None and case.title == "" and case.parties == []
                assert session.scalar(select(func.count()).select_from(InboundMessage).where(InboundMessage.case_id == case.id)) == 0
            else:
                assert case.purged_at is None and case.title == "Open case"
        [sanction] = session.scalars(select(Sanction)).all()
        assert sanction.target_address == "pat@example.net" and sanction.kind == "temporary-ban"

    assert found_in(database_dump(harness.database_url)) == [], "no sentinel left in the database"
    assert found_in(mailbox_text(harness)) == [], "no sentinel left in the mailbox"
    assert b"Still open" in mailbox_text(harness), "the open case's mail is untouched"

    # A second run finds nothing more to do.
    assert main(["purge", "--dry-run", "--config", config, "--at", later]) == 0
    assert "would purge 0 case(s)" in capsys.readouterr().out


def test_the_daemon_purges_in_its_housekeeping(harness, smtp_receiver, monkeypatch):
    monkeypatch.setattr(retention, "BATCH", 1)  # one case or old message per transaction: several batches
    app = run_lifecycle(harness, smtp_receiver)
    housekeeping_once(app)
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case).where(Case.purged_at.is_not(None))) == 0
    harness.clock.advance(days=31)
    housekeeping_once(app)
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Case).where(Case.purged_at.is_not(None))) >= 1
    assert found_in(database_dump(harness.database_url)) == []


def test_retention_zero_keeps_everything(harness, smtp_receiver, capsys):
    harness.extra_config = "[retention]\nclosed_case_days = 0\n"
    run_lifecycle(harness, smtp_receiver)
    assert main(["purge", "--config", str(harness.config_path), "--at", "2040-01-01T00:00"]) == 0
    assert "retention is off" in capsys.readouterr().out
    assert found_in(database_dump(harness.database_url))


def test_plan_is_empty_without_closed_cases(harness):
    app = harness.app()
    with app.sessions() as session:
        assert retention.plan(session, harness.clock.current + timedelta(days=365), 30).empty
