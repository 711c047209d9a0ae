"""SIGHUP re-reads the configuration of a running `conduct-inbox run` (real process, Dovecot,
aiosmtpd, SQLite): a removed member's tokens die at once, an added member gets the next report's
copy, an invalid file keeps the running configuration and names each problem."""

from __future__ import annotations

from sqlalchemy import select

from conduct_inbox.store.models import Case
from tests.daemons import CAROL, hangup, processed, set_mailbox, start, stop
from tests.harness import MEMBERS, parsed, report
from tests.mailers import reply
from tests.procs import wait_until

DAVE = "[[committee.members]]\nname = \"Dave Doe\"\nemail = \"dave@example.org\"\naliases = []\nchair = false\n"


def test_removed_member_token_dies_at_once(harness, smtp_receiver, notify, started, database):
    assert CAROL in harness.config_path.read_text()
    proc = start(harness, notify, started)
    harness.deliver(report(body="Someone shouted at me."))
    assert wait_until(lambda: smtp_receiver.to("carol@example.org"), 15)
    carol_copy = smtp_receiver.to("carol@example.org")[0]

    harness.config_path.write_text(harness.config_path.read_text().replace(CAROL, ""))
    hangup(proc, notify)
    before = len(smtp_receiver.messages)
    harness.deliver(reply(carol_copy, "carol@example.org", "!status investigating", "CAROL-NOTE-AFTER-REMOVAL"))
    assert processed(harness, 2)
    err = stop(proc)

    with database.sessions() as session:
        case = session.scalars(select(Case)).one()
        assert case.status != "investigating"
    later = smtp_receiver.messages[before:]
    # Carol is a stranger now: no command of hers applies, nothing confirms it to her, and her
    # mail reaches the remaining members only as a non-party's message on the case
    assert not any("carol@example.org" in m.rcpt_tos for m in later)
    assert later and all("Message from someone who is not a party" in str(parsed(m).get_body(("plain",)).get_content())
                         for m in later)
    assert sorted(r for m in later for r in m.rcpt_tos) == ["alice@example.org", "bob@example.org"]
    assert "non-party" in err
    assert "configuration reloaded: 2 committee members" in err


def test_added_member_gets_the_next_report(harness, smtp_receiver, notify, started, database):
    proc = start(harness, notify, started)
    text = harness.config_path.read_text()
    harness.config_path.write_text(text.replace(CAROL, CAROL + "\n" + DAVE))
    set_mailbox(harness, poll_seconds=2)  # read at start only
    hangup(proc, notify)
    harness.deliver(report(sender="second@example.net", body="It happened again."))
    assert wait_until(lambda: smtp_receiver.to("dave@example.org"), 15)
    copy = smtp_receiver.to("dave@example.org")[0]
    assert "+" in str(parsed(copy)["Reply-To"])  # a personal reply address, like the others'
    err = stop(proc)
    assert "a restart is needed for changes to mailbox.poll_seconds" in err
    assert "2" not in err.split("a restart is needed for changes to", 1)[1].split("\n", 1)[0]  # names, no values


def test_invalid_file_keeps_running_configuration(harness, smtp_receiver, notify, started, database):
    proc = start(harness, notify, started)
    good = harness.config_path.read_text()
    bad = good.replace('email = "carol@example.org"', 'email = "carol-at-example"').replace(
        'name = "Test Conduct Committee"', 'name = "Test Conduct Committee"\nquorum = 0', 1
    ) + "\n" + DAVE.replace("dave@", "dave-without-at")
    harness.config_path.write_text(bad)
    hangup(proc, notify)
    harness.deliver(report(body="After the broken reload."))
    # the running roster: every member of the old file gets the copy, nobody of the broken one
    for _, address, _, _ in MEMBERS:
        assert wait_until(lambda a=address: smtp_receiver.to(a), 15), address
    assert not any("dave" in r for m in smtp_receiver.messages for r in m.rcpt_tos)
    err = stop(proc)
    refused = [line for line in err.splitlines() if "reload refused, the running configuration stays:" in line]
    assert any("committee.quorum" in line for line in refused), err
    assert any("committee.members[2].email" in line for line in refused), err
    assert any("committee.members[3].email" in line for line in refused), err
    assert "carol-at-example" not in err and "dave-without-at" not in err and "test-token-secret" not in err
    assert len(refused) == 3 and "configuration reloaded" not in err
