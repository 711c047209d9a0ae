"""Prometheus metrics (issue 14, item 12): a real `conduct-inbox run` with `[metrics] listen`
takes a report from the tests' Dovecot, sends its mail through aiosmtpd, and /metrics then shows
the counts and times, read from the database, with no address, subject or case reference.
Without the key the daemon listens on no TCP port at all."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conduct_inbox.config import load_settings
from conduct_inbox.errors import ConfigError
from conduct_inbox.store.models import Case, OutboxMessage
from tests.daemons import conduct_inbox, finish, set_mailbox
from tests.harness import report, write_config
from tests.procs import wait_until

SENDER = "metrics-reporter@example.net"
SUBJECT = "Unwelcome remarks in the hallway track"
NAME = "Quinn Quietly"

_SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> tuple[str, dict[str, float]]:
    """The /metrics text and its samples ("name" or "name{labels}" -> value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    samples = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            assert match, line
            samples[match[1] + (match[2] or "")] = float(match[3])
    return body, samples


def listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN state on sockets that process `pid` or its children hold."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    inodes: set[str] = set()
    for each in pids:
        for fd in Path(f"/proc/{each}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_run_exposes_counts_and_times_from_the_database(harness, smtp_receiver, notify, started, database):
    port = free_port()
    harness.extra_config = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    set_mailbox(harness, poll_seconds=1)
    proc = conduct_inbox(harness.config_path, "run", notify_socket=notify.path)
    started.append(proc)
    assert notify.wait_for("READY=1", 15), finish(proc, 5)[1]
    assert port in listening_ports(proc.pid)

    _, before = scrape(port)
    assert before["conduct_inbox_reports_received"] == 0
    assert before["conduct_inbox_database_up"] == 1

    harness.deliver(report(sender=SENDER, subject=SUBJECT, name=NAME))

    def all_sent() -> bool:
        with database.sessions() as session:
            pending = session.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.status == "pending"))
            sent = session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent"))
        return bool(smtp_receiver.to(SENDER)) and pending == 0 and bool(sent)

    assert wait_until(all_sent, 30), "the acknowledgement was not sent"
    with database.sessions() as session:
        sent = session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent"))
        ref = session.scalars(select(Case.ref)).one()

    body, samples = scrape(port)
    assert samples["conduct_inbox_reports_received"] == 1
    assert samples['conduct_inbox_cases_opened{kind="normal"}'] == 1
    assert samples['conduct_inbox_cases_opened{kind="auto"}'] == 0
    assert samples['conduct_inbox_cases_opened{kind="spam"}'] == 0
    assert samples["conduct_inbox_mails_sent"] == sent == len(smtp_receiver.messages) >= 2  # reporter and members
    assert samples["conduct_inbox_mails_failed"] == 0
    assert samples["conduct_inbox_outbox_pending"] == 0
    assert samples["conduct_inbox_outbox_oldest_pending_age_seconds"] == 0
    # No member has acknowledged the case: it waits, for a few seconds by now.
    assert 0 < samples["conduct_inbox_oldest_unacknowledged_case_age_seconds"] < 120
    last_poll = samples["conduct_inbox_mailbox_last_poll_success_timestamp_seconds"]
    assert abs(last_poll - time.time()) < 60
    assert samples["conduct_inbox_database_up"] == 1

    # Counts and times only: nothing of the mail, its people or its case.
    for secret in (SENDER, "example.net", "example.org", "@", SUBJECT, "hallway", NAME, "Quinn", ref):
        assert secret not in body, secret

    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err
    with pytest.raises(OSError):
        scrape(port)  # the endpoint ended with the daemon


def test_without_the_key_nothing_listens(harness, notify, started):
    proc = conduct_inbox(harness.config_path, "run", notify_socket=notify.path)
    started.append(proc)
    assert notify.wait_for("READY=1", 15), finish(proc, 5)[1]
    assert listening_ports(proc.pid) == set()
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err


def test_a_port_in_use_is_one_line_and_exit_2(harness, started):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        harness.extra_config = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
        proc = conduct_inbox(harness.config_path, "run")
        started.append(proc)
        code, err = finish(proc)
    assert code == 2, err
    assert "metrics.listen: cannot listen there" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["9464", "localhost:9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                   "::1:9464", "127.0.0.1:port"])
def test_listen_must_be_an_ip_address_and_a_port(tmp_path: Path, value: str) -> None:
    path = write_config(tmp_path, database_url="sqlite:///x.db", mailbox={"maildir": str(tmp_path)},
                        smtp={"maildir": str(tmp_path)}, extra=f'[metrics]\nlisten = "{value}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert [line.split(":")[0] for line in info.value.problems] == ["metrics.listen"]


@pytest.mark.parametrize("value, off", [("127.0.0.1:9464", False), ("[::1]:9464", False), ("0.0.0.0:9464", False),
                                        ("", True)])
def test_listen_accepts_addresses_the_admin_chooses(tmp_path: Path, value: str, off: bool) -> None:
    path = write_config(tmp_path, database_url="sqlite:///x.db", mailbox={"maildir": str(tmp_path)},
                        smtp={"maildir": str(tmp_path)}, extra=f'[metrics]\nlisten = "{value}"\n')
    assert (load_settings(path, environ={}).metrics.listen == "") is off


def test_absent_table_is_off(tmp_path: Path) -> None:
    path = write_config(tmp_path, database_url="sqlite:///x.db", mailbox={"maildir": str(tmp_path)},
                        smtp={"maildir": str(tmp_path)})
    assert load_settings(path, environ={}).metrics.listen == ""
