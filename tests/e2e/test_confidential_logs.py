"""Logs carry case refs and ids only: sentinel names, addresses, subjects and text never appear."""

from __future__ import annotations

import logging

from conduct_inbox.adapters.parsing import WorkerParser
from conduct_inbox.shell.daemon import run_once
from tests.faults import faulty_parse
from tests.harness import report

SENTINELS = ("Zyxwv Sentinelname", "sentinel-addr-93@example.net", "SENTINEL-SUBJECT-5521", "SENTINEL-BODY-8812")


def test_no_log_line_carries_report_contents(harness, smtp_receiver, caplog):
    caplog.set_level(logging.DEBUG, logger="conduct_inbox")
    smtp_receiver.reject_rcpt[SENTINELS[1]] = f"550 5.1.1 <{SENTINELS[1]}>: unknown user"
    harness.parser = WorkerParser(timeout=1.0, function=faulty_parse)
    kwargs = dict(name=SENTINELS[0], sender=SENTINELS[1], subject=SENTINELS[2], body=SENTINELS[3])
    harness.deliver(report(**kwargs))
    harness.deliver(report(headers={"X-Test-Fault": "crash"}, **kwargs))
    app = harness.app()
    for _ in range(4):
        run_once(app)
    smtp_receiver.down()
    harness.deliver(report(message_id="<other@example.net>", **kwargs))
    run_once(app)
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "quarantined" in logged and "failed for good" in logged and "outage" in logged  # the paths ran
    for sentinel in SENTINELS:
        assert sentinel.lower() not in logged.lower()


def test_one_info_line_per_mail_handed_to_smtp(harness, smtp_receiver, caplog):
    """Each accepted mail: one INFO line with its outbox row id and case ref, no address or subject."""
    from sqlalchemy import select

    from conduct_inbox.store.models import Case, OutboxMessage

    caplog.set_level(logging.DEBUG, logger="conduct_inbox")
    harness.deliver(report(name=SENTINELS[0], sender=SENTINELS[1], subject=SENTINELS[2], body=SENTINELS[3]))
    app = harness.app()
    run_once(app)
    with app.sessions() as session:
        ref = session.scalars(select(Case.ref)).one()
        sent = session.scalars(select(OutboxMessage.id).where(OutboxMessage.sent_at.is_not(None))).all()
    assert len(sent) == len(smtp_receiver.messages) >= 4  # the acknowledgement and a copy per member
    lines = [r for r in caplog.records if r.getMessage().startswith("outbox row ") and " sent " in r.getMessage()]
    assert all(r.levelno == logging.INFO for r in lines)
    assert sorted(r.getMessage() for r in lines) == sorted(f"outbox row {row_id} sent (case {ref})" for row_id in sent)
    logged = "\n".join(r.getMessage() for r in caplog.records).lower()
    for secret in (*SENTINELS, "@example.org", "harassment"):
        assert secret.lower() not in logged
