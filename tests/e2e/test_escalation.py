"""SLA escalations end to end: real reports through Dovecot, mail to aiosmtpd, SQLite and PostgreSQL.

Time is moved with the harness clock (`now` is passed in); nothing sleeps.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from conduct_inbox.cases.deadlines import refresh_next_due, sla_policy
from conduct_inbox.cases.escalate import escalate_once
from conduct_inbox.cli import main
from conduct_inbox.shell.daemon import run_once
from conduct_inbox.store.models import Case, EscalationFired, Event, OutboxMessage, Recusal
from tests.harness import MEMBERS, parsed, report, text_of

MEMBER_EMAILS = [m[1] for m in MEMBERS]  # alice (chair), bob, carol
STEERING = "sam@example.org"
BODY = "He followed me to the hotel after the sprint. SECRET-BODY-5521"


def open_case(harness):
    """Deliver a real report and process it at the harness clock's t0; returns (app, t0)."""
    harness.deliver(report(body=BODY))
    app = harness.app()
    assert run_once(app) == 0
    return app, harness.clock()


def at(harness, app, t0, **delta):
    """Move the clock to t0 + delta and run one `run --once` pass (intake, escalations, outbox)."""
    harness.clock.current = t0 + timedelta(**delta)
    assert run_once(app) == 0


def escalations(receiver, word="Overdue:"):
    """Escalation mails received (their body's heading: "Overdue: case ...", "Reminder: case ..."),
    as {recipient: [subjects]}."""
    found: dict[str, list[str]] = {}
    for mail in receiver.messages:
        subject = str(parsed(mail)["Subject"])
        if re.search(rf"^{word} case ", text_of(mail), re.MULTILINE):
            for rcpt in mail.rcpt_tos:
                found.setdefault(rcpt, []).append(subject)
    return found


def update_case(app, **values):
    """Change the case like a command would (!ack, !reply, !urgent, !close, !spam), then refresh its clock."""
    with app.sessions() as session, session.begin():
        case = session.scalars(select(Case)).one()
        for name, value in values.items():
            setattr(case, name, value)
        refresh_next_due(session, case, sla_policy(app.settings))


def recuse(app, t0, *emails):
    with app.sessions() as session, session.begin():
        case = session.scalars(select(Case)).one()
        for email in emails:
            session.add(Recusal(case_id=case.id, member_email=email, reason="concerns", automatic=False,
                                active=True, created_at=t0))


def the_case(app):
    with app.sessions() as session:
        return session.scalars(select(Case)).one()


def test_ack_overdue_escalates_to_committee_then_steering_once_each(harness, smtp_receiver):
    app, t0 = open_case(harness)
    ref = the_case(app).ref
    at(harness, app, t0, hours=23, minutes=59)
    assert escalations(smtp_receiver) == {}

    at(harness, app, t0, hours=24)
    level1 = escalations(smtp_receiver)
    assert sorted(level1) == sorted(MEMBER_EMAILS)  # every member; the chair (alice) once
    for member in MEMBER_EMAILS:
        [mail] = [m for m in smtp_receiver.to(member) if "Overdue: case" in text_of(m)]
        msg, text = parsed(mail), text_of(mail)
        assert str(msg["Subject"]) == f"[conduct #{ref}] Harassment at the sprint"  # threads with the case
        assert [a.addr_spec for a in msg["To"].addresses] == [member]
        assert re.fullmatch(r"conduct\+[a-z2-7]{21}@example\.org", str(msg["Reply-To"]))
        assert text.startswith("To: Alice Example, Bob Builder, Carol Chen")
        assert ref in text and "acknowledgement overdue" in text and "!ack" in text
        for secret in ("SECRET-BODY", "reporter@example.net", "Robin"):
            assert secret not in mail.content.decode(errors="replace")
    with app.sessions() as session:
        events = session.scalars(select(Event).where(Event.action == "escalation_sent")).all()
        assert [e.detail for e in events] == [{"key": "ack:1", "level": 1}]

    # Once only: another pass, and a restarted daemon, send nothing more.
    before = len(smtp_receiver.messages)
    at(harness, app, t0, hours=30)
    assert run_once(harness.app()) == 0
    assert len(smtp_receiver.messages) == before

    at(harness, app, t0, hours=48)
    assert escalations(smtp_receiver) == {**level1, STEERING: [f"[conduct #{ref}] Harassment at the sprint"]}
    steering_text = text_of(smtp_receiver.to(STEERING)[0])
    assert steering_text.startswith("To: Sam Steering") and "steering committee" in steering_text

    before = len(smtp_receiver.messages)
    restarted = harness.app()
    harness.clock.current = t0 + timedelta(hours=60)
    assert run_once(restarted) == 0
    assert len(smtp_receiver.messages) == before


def test_urgent_case_escalates_after_one_hour_then_two_more(harness, smtp_receiver):
    app, t0 = open_case(harness)
    update_case(app, urgent=True)  # as `!urgent` does
    at(harness, app, t0, minutes=59)
    assert escalations(smtp_receiver) == {}
    at(harness, app, t0, hours=1)
    level1 = escalations(smtp_receiver)
    assert sorted(level1) == sorted(MEMBER_EMAILS)
    assert all(f"Overdue: case {the_case(app).ref} (URGENT)" in text_of(m) for m in smtp_receiver.messages
               if "Overdue: case" in text_of(m))
    at(harness, app, t0, hours=2, minutes=59)
    assert STEERING not in escalations(smtp_receiver)
    at(harness, app, t0, hours=3)
    assert len(escalations(smtp_receiver)[STEERING]) == 1


def test_recused_member_gets_nothing(harness, smtp_receiver):
    app, t0 = open_case(harness)
    recuse(app, t0, "bob@example.org")
    at(harness, app, t0, hours=24)
    assert sorted(escalations(smtp_receiver)) == ["alice@example.org", "carol@example.org"]
    text = text_of(smtp_receiver.to("carol@example.org")[-1])
    assert text.startswith("To: Alice Example, Carol Chen  ·  Excluded: Bob Builder (the case concerns them)")


def test_recused_chair_is_replaced_by_steering(harness, smtp_receiver):
    app, t0 = open_case(harness)
    recuse(app, t0, "alice@example.org")
    at(harness, app, t0, hours=24)
    assert sorted(escalations(smtp_receiver)) == ["bob@example.org", "carol@example.org", STEERING]


def test_too_few_members_left_brings_in_steering(harness, smtp_receiver):
    app, t0 = open_case(harness)
    recuse(app, t0, "bob@example.org", "carol@example.org")
    at(harness, app, t0, hours=24)
    assert sorted(escalations(smtp_receiver)) == ["alice@example.org", STEERING]


def test_response_reminder_at_day_five_overdue_at_day_seven(harness, smtp_receiver):
    app, t0 = open_case(harness)
    update_case(app, human_ack_at=t0 + timedelta(hours=2), status="acknowledged")  # as `!ack` does
    at(harness, app, t0, days=4, hours=23)
    assert escalations(smtp_receiver, "Reminder:") == {}
    at(harness, app, t0, days=5)
    reminders = escalations(smtp_receiver, "Reminder:")
    assert sorted(reminders) == sorted(MEMBER_EMAILS)  # the committee; steering is not bothered
    assert "Response to the reporter due soon" in text_of(smtp_receiver.to("bob@example.org")[-1])
    assert escalations(smtp_receiver) == {}
    at(harness, app, t0, days=7)
    assert sorted(escalations(smtp_receiver)) == sorted(MEMBER_EMAILS)
    overdue = [m for m in smtp_receiver.to("bob@example.org") if re.search(r"^Overdue: case ", text_of(m), re.MULTILINE)]
    assert "!reply" in text_of(overdue[-1])
    at(harness, app, t0, days=8)
    assert STEERING in escalations(smtp_receiver)


def test_reply_restarts_the_response_clock(harness, smtp_receiver):
    app, t0 = open_case(harness)
    update_case(app, human_ack_at=t0 + timedelta(hours=1), status="acknowledged")
    at(harness, app, t0, days=5)
    assert len(escalations(smtp_receiver, "Reminder:")) == 3
    update_case(app, last_response_at=t0 + timedelta(days=6), status="investigating")  # as `!reply` does
    at(harness, app, t0, days=7)
    at(harness, app, t0, days=10, hours=23)
    assert escalations(smtp_receiver) == {}
    assert all(len(s) == 1 for s in escalations(smtp_receiver, "Reminder:").values())
    at(harness, app, t0, days=11)  # a fresh reminder: 5 days after the response
    assert all(len(s) == 2 for s in escalations(smtp_receiver, "Reminder:").values())


@pytest.mark.parametrize("change", [{"status": "closed"}, {"spam": True}], ids=["closed", "spam"])
def test_closed_and_spam_cases_have_no_clock(harness, smtp_receiver, change):
    app, t0 = open_case(harness)
    update_case(app, **change)
    assert the_case(app).next_due_at is None
    before = len(smtp_receiver.messages)
    at(harness, app, t0, days=30)
    later = [m for m in smtp_receiver.messages[before:] if "Weekly overview" not in str(parsed(m)["Subject"])]
    assert later == []


def test_two_daemons_at_once_send_each_escalation_once(harness, smtp_receiver):
    app, t0 = open_case(harness)
    other = harness.app()
    now = t0 + timedelta(hours=24)
    barrier = threading.Barrier(2)
    results: list[int] = []

    def tick(a):
        barrier.wait()
        results.append(escalate_once(a.sessions, a.inbound.ctx, sla_policy(a.settings), now))

    threads = [threading.Thread(target=tick, args=(a,)) for a in (app, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [0, 1]  # exactly one daemon sent it
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EscalationFired)) == 1
        assert session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == "escalation")
        ) == len(MEMBER_EMAILS)


def test_escalations_command_previews_and_sends_nothing(harness, smtp_receiver, capsys):
    app, t0 = open_case(harness)
    ref = the_case(app).ref
    config = str(harness.config_path)
    before = len(smtp_receiver.messages)
    with app.sessions() as session:
        outbox_before = session.scalar(select(func.count()).select_from(OutboxMessage))

    naive = (t0 + timedelta(hours=49)).replace(tzinfo=None).isoformat()  # naive means UTC
    assert main(["escalations", "--config", config, "--at", naive, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["ref"], r["rule"], r["level"], r["key"]) for r in rows] == [(ref, "ack", 1, "ack:1"), (ref, "ack", 2, "ack:2")]
    assert datetime.fromisoformat(rows[0]["due_at"]) == t0 + timedelta(hours=24)
    assert sorted(rows[0]["recipients"]) == sorted(MEMBER_EMAILS)
    assert rows[1]["recipients"] == [STEERING]

    assert main(["escalations", "--config", config, "--at", t0.isoformat(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["escalations", "--config", config, "--at", naive]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(ref in line for line in lines) and STEERING in lines[1]

    assert main(["escalations", "--config", config, "--at", "next tuesday"]) == 2
    capsys.readouterr()

    assert len(smtp_receiver.messages) == before
    with app.sessions() as session:
        assert session.scalar(select(func.count()).select_from(EscalationFired)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == outbox_before
