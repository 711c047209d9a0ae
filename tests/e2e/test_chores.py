"""The urgent webhook, the daily spam digest and sanction reminders, end to end."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from conduct_inbox.shell.daemon import housekeeping_once, run_once
from conduct_inbox.store.models import Case
from tests.harness import parsed, report, text_of
from tests.mailers import reply


class WebhookReceiver:
    """A loopback HTTP server recording POST bodies; `status` is what it answers."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def test_urgent_case_posts_its_reference_once(dovecot, smtp_receiver, database, make_harness, webhook):
    harness = make_harness(database.url, extra_config=f'[sla]\nurgent_webhook_url = "{webhook.url}"\n')
    webhook.status = 500  # the first attempt fails: it is tried again on the next pass
    harness.deliver(report(sender="robin@example.net", body="I feel unsafe, he follows me home. WEBHOOK-BODY"))
    harness.deliver(report(sender="other@example.net", body="A calm report about a rude comment."))
    app = harness.app()
    run_once(app)
    assert len(webhook.bodies) == 1
    webhook.status = 204
    run_once(app)
    run_once(app)
    with app.sessions() as session:
        urgent_ref = session.scalars(select(Case.ref).where(Case.urgent.is_(True))).one()
    assert webhook.bodies[1:] == [{"case": urgent_ref, "urgent": True}], "one successful POST, the reference only"
    assert "robin" not in json.dumps(webhook.bodies) and "WEBHOOK-BODY" not in json.dumps(webhook.bodies)


def test_spam_goes_out_in_one_daily_digest_respecting_recusal(dovecot, smtp_receiver, database, make_harness):
    harness = make_harness(database.url)
    harness.deliver(report(sender="spammer1@example.net", subject="Cheap watches", headers={"X-Spam-Flag": "YES"}))
    harness.deliver(report(sender="spammer2@example.net", subject="Bob Builder is a fraud",
                           body="Bob Builder took the money.", headers={"X-Spam-Flag": "YES"}))
    app = harness.app()
    run_once(app)
    assert smtp_receiver.messages == [], "spam sends nothing one by one"
    housekeeping_once(app)
    run_once(app)
    with app.sessions() as session:
        refs = dict(session.execute(select(Case.title, Case.ref)).all())
    alice = [m for m in smtp_receiver.to("alice@example.org") if "Spam digest" in str(parsed(m)["Subject"])]
    bob = [m for m in smtp_receiver.to("bob@example.org") if "Spam digest" in str(parsed(m)["Subject"])]
    assert len(alice) == 1 and refs["Cheap watches"] in text_of(alice[0]) and refs["Bob Builder is a fraud"] in text_of(alice[0])
    assert len(bob) == 1 and refs["Cheap watches"] in text_of(bob[0])
    assert refs["Bob Builder is a fraud"] not in text_of(bob[0]), "a recused member's digest omits that case"

    # Later the same day: nothing again, even with new spam; the next day, only the new one.
    harness.clock.advance(hours=3)
    harness.deliver(report(sender="spammer3@example.net", subject="Crypto offer", headers={"X-Spam-Flag": "YES"}))
    run_once(app)
    housekeeping_once(app)
    run_once(app)
    assert len([m for m in smtp_receiver.to("alice@example.org") if "Spam digest" in str(parsed(m)["Subject"])]) == 1
    harness.clock.advance(hours=22)
    housekeeping_once(app)
    run_once(app)
    digests = [m for m in smtp_receiver.to("alice@example.org") if "Spam digest" in str(parsed(m)["Subject"])]
    assert len(digests) == 2
    assert "Crypto offer" in text_of(digests[1]) and "Cheap watches" not in text_of(digests[1])


def test_members_are_reminded_once_before_a_sanction_ends(dovecot, smtp_receiver, database, make_harness):
    harness = make_harness(database.url, extra_config="[sla]\nsanction_reminder_days = 14\n")
    app = harness.app()
    harness.deliver(report(body="Pat keeps harassing people."))
    run_once(app)
    alice_copy, carol_copy = smtp_receiver.to("alice@example.org")[0], smtp_receiver.to("carol@example.org")[0]
    for record, who, suffix in ((alice_copy, "alice", "!party reported pat@example.net Pat Person"),
                                (alice_copy, "alice", "!decide temporary-ban target=reported until=2026-12-31"),
                                (carol_copy, "carol", "!confirm"), (alice_copy, "alice", "!recuse")):
        harness.deliver(reply(record, f"{who}@example.org", suffix, ""))
        run_once(app)

    def reminders(address: str) -> list:
        return [m for m in smtp_receiver.to(address) if "the temporary-ban (" in text_of(m)]

    housekeeping_once(app)  # 37 days before the end: too early
    run_once(app)
    assert reminders("bob@example.org") == []
    harness.clock.advance(days=25)
    housekeeping_once(app)
    housekeeping_once(app)
    run_once(app)
    assert len(reminders("bob@example.org")) == 1 and len(reminders("carol@example.org")) == 1
    assert "2026-12-31" in text_of(reminders("bob@example.org")[0])
    assert reminders("alice@example.org") == [], "the recused member is not reminded"


def test_statistics_go_to_the_steering_address_every_n_months(dovecot, smtp_receiver, database, make_harness):
    harness = make_harness(database.url)
    config = harness.config_path
    config.write_text(config.read_text().replace(
        'steering_address = "steering@example.org"\n', 'steering_address = "steering@example.org"\nstatistics_every_months = 3\n', 1))
    for i in range(6):
        harness.deliver(report(sender=f"person{i}@example.net", name=f"Person Number{i}"))
    app = harness.app()
    run_once(app)
    harness.clock.advance(days=10)  # into December 2026
    housekeeping_once(app)
    housekeeping_once(app)
    run_once(app)
    [stats] = smtp_receiver.to("steering@example.org")
    body = text_of(stats)
    assert "2025-12-01 to 2026-11-30" in str(parsed(stats)["Subject"])
    assert "2026-11" in body and "6" in body
    assert "@" not in body and "Person" not in body and "2026-0001" not in body
    harness.clock.advance(days=31)  # January: only one month later
    housekeeping_once(app)
    run_once(app)
    assert len(smtp_receiver.to("steering@example.org")) == 1
    harness.clock.advance(days=60)  # March: three months after December
    housekeeping_once(app)
    run_once(app)
    assert len(smtp_receiver.to("steering@example.org")) == 2


def test_a_once_per_period_marker_moved_by_another_daemon_is_never_overwritten(database, make_harness):
    from conduct_inbox.cases.chores import _advance_marker, _Overtaken
    from conduct_inbox.store.models import DatabaseMeta

    with database.sessions() as session, session.begin():
        _advance_marker(session, "spam_digest_at", None, "first")
    for stale in (None, "older"):  # what a second daemon read before the first one wrote
        with pytest.raises(_Overtaken):
            with database.sessions() as session, session.begin():
                _advance_marker(session, "spam_digest_at", stale, "second")
    with database.sessions() as session, session.begin():
        _advance_marker(session, "spam_digest_at", "first", "third")
    with database.sessions() as session:
        assert session.get(DatabaseMeta, "spam_digest_at").value == "third"
