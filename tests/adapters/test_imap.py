"""ImapMailbox against a real Dovecot on loopback."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from conduct_inbox.adapters import imap
from conduct_inbox.adapters.imap import ImapMailbox
from conduct_inbox.errors import MailboxUnavailable
from tests.fixtures.dovecot import DovecotServer, _free_ports


def message(n: int) -> bytes:
    return (
        f"From: reporter{n}@example.test\r\nTo: conduct@example.test\r\n"
        f"Subject: report {n}\r\nMessage-ID: <r{n}@example.test>\r\n\r\nbody {n}\r\n"
    ).encode()


@pytest.fixture()
def user(dovecot: DovecotServer) -> str:
    return dovecot.new_user()


@pytest.fixture()
def mailbox(dovecot: DovecotServer, user: str) -> Iterator[ImapMailbox]:
    mb = dovecot.mailbox(user)
    mb.connect()
    yield mb
    mb.close()


@pytest.fixture(scope="module")
def bare_dovecot() -> Iterator[DovecotServer]:
    """A Dovecot that advertises neither MOVE, UIDPLUS nor IDLE, like a minimal server."""
    server = DovecotServer(capability="IMAP4rev1 LITERAL+")
    server.start()
    yield server
    server.cleanup()


def test_connect_creates_processed_and_quarantine_folders(dovecot: DovecotServer, user: str) -> None:
    mb = dovecot.mailbox(user, processed_folder="Done", quarantine_folder="Held")
    mb.connect()
    mb.connect()  # idempotent: the folders exist now, a second connect replaces the connection
    mb.close()
    with dovecot.client(user) as c:
        folders = {name for _, _, name in c.list_folders()}
        subscribed = {name for _, _, name in c.list_sub_folders()}
    assert {"INBOX", "Done", "Held"} <= folders
    assert {"Done", "Held"} <= subscribed


def test_identity_has_no_username(dovecot: DovecotServer, user: str) -> None:
    mb = dovecot.mailbox(user)
    assert mb.identity == f"imap://127.0.0.1:{dovecot.port}/INBOX"
    assert "conduct-" not in repr(mb)


def test_plain_imap_refused_for_remote_host() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ImapMailbox("imap.example.org", 143, "none", "u", "p")
    ImapMailbox("localhost", 143, "none", "u", "p")  # loopback is fine
    ImapMailbox("::1", 143, "none", "u", "p")


def test_uids_lists_seen_and_unseen(dovecot: DovecotServer, user: str, mailbox: ImapMailbox) -> None:
    a = dovecot.append(user, message(1), flags=[r"\Seen"])
    b = dovecot.append(user, message(2))
    c = dovecot.append(user, message(3), flags=[r"\Seen", r"\Answered"])
    assert mailbox.uids() == [a, b, c]


def test_fetch_returns_bytes_and_leaves_messages_unseen(
    dovecot: DovecotServer, user: str, mailbox: ImapMailbox
) -> None:
    a = dovecot.append(user, message(1))
    b = dovecot.append(user, message(2))
    assert mailbox.uids() == [a, b]
    got = mailbox.fetch([a, b, 999])
    assert got == {a: message(1), b: message(2)}  # a missing UID is simply absent
    assert mailbox.fetch([]) == {}
    for _, _, flags in dovecot.folder_state(user):
        assert b"\\Seen" not in flags


@pytest.mark.parametrize("use_move", [None, False], ids=["MOVE", "COPY+UID-EXPUNGE"])
def test_move_moves_exactly_the_given_uids(
    dovecot: DovecotServer, user: str, use_move: bool | None
) -> None:
    uids = [dovecot.append(user, message(n)) for n in range(5)]
    # Someone else flagged this one \Deleted: our move must not expunge it.
    other_deleted = dovecot.append(user, message(9), flags=[r"\Deleted"])
    mb = dovecot.mailbox(user, use_move=use_move)
    mb.connect()
    mb.move([uids[1], uids[3]], "processed")
    mb.move([uids[4]], "quarantine")
    mb.move([], "processed")
    assert mb.uids() == [uids[0], uids[2], other_deleted]
    mb.close()
    assert dovecot.folder_messages(user, "Processed") == [message(1), message(3)]
    assert dovecot.folder_messages(user, "Quarantine") == [message(4)]
    assert dovecot.folder_messages(user, "INBOX") == [message(0), message(2), message(9)]


def test_move_without_uidplus_copies_and_flags_but_never_expunges(bare_dovecot: DovecotServer) -> None:
    user = bare_dovecot.new_user()
    keep, go = bare_dovecot.append(user, message(1)), bare_dovecot.append(user, message(2))
    mb = bare_dovecot.mailbox(user)
    mb.connect()
    mb.move([go], "processed")
    mb.close()
    assert bare_dovecot.folder_messages(user, "Processed") == [message(2)]
    state = {uid: flags for uid, _, flags in bare_dovecot.folder_state(user)}
    assert set(state) == {keep, go}  # left for a later expunge, not expunged blindly
    assert b"\\Deleted" in state[go] and b"\\Deleted" not in state[keep]


def test_wait_for_mail_without_idle_sleeps_then_says_poll(bare_dovecot: DovecotServer) -> None:
    mb = bare_dovecot.mailbox(bare_dovecot.new_user())
    mb.connect()
    start = time.monotonic()
    assert mb.wait_for_mail(0.3) is True
    assert 0.25 < time.monotonic() - start < 2
    mb.close()


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_and_starttls_verify_the_server(dovecot: DovecotServer, user: str, security: str) -> None:
    dovecot.append(user, message(1))
    mb = dovecot.mailbox(user, security)
    mb.connect()
    assert mb.fetch(mb.uids()) == {1: message(1)}
    mb.close()
    # A context that does not trust the test CA must refuse the server.
    untrusted = dovecot.mailbox(user, security, ssl_context=ssl.create_default_context())
    with pytest.raises(MailboxUnavailable):
        untrusted.connect()


def test_wrong_password_is_unavailable_and_names_nobody(dovecot: DovecotServer, user: str) -> None:
    mb = ImapMailbox("127.0.0.1", dovecot.port, "none", user, "wrong-password", timeout=10)
    with pytest.raises(MailboxUnavailable) as info:
        mb.connect()
    text = str(info.value)
    assert "login refused" in text and "password" in text
    assert "conduct-" not in text and "example.test" not in text and "wrong-password" not in text
    # The library's error (which may quote the login) is not chained into tracebacks.
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(MailboxUnavailable):
        mb.uids()  # not connected


def test_server_down_is_unavailable(user: str) -> None:
    mb = ImapMailbox("127.0.0.1", _free_ports(1)[0], "none", user, "x", timeout=5)
    with pytest.raises(MailboxUnavailable, match=r"connection failed: connection refused by 127\.0\.0\.1:\d+$"):
        mb.connect()


def test_uidvalidity_is_stable_and_changes_when_the_folder_is_recreated(
    dovecot: DovecotServer, user: str
) -> None:
    mb = dovecot.mailbox(user, folder="Reports")
    with dovecot.client(user) as c:
        c.create_folder("Reports")
    first = mb.connect()
    assert mb.connect() == first
    mb.close()
    assert dovecot.mailbox(user, folder="Reports").connect() == first
    with dovecot.client(user) as c:
        c.delete_folder("Reports")
        time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock in seconds
        c.create_folder("Reports")
    assert mb.connect() != first
    mb.close()


def test_wait_for_mail_wakes_soon_after_delivery(
    dovecot: DovecotServer, user: str, mailbox: ImapMailbox
) -> None:
    delivered_at: list[float] = []

    def deliver() -> None:
        time.sleep(0.3)
        dovecot.deliver_lmtp(user, message(1))
        delivered_at.append(time.monotonic())

    t = threading.Thread(target=deliver)
    t.start()
    try:
        assert mailbox.wait_for_mail(10) is True
        woke = time.monotonic()
    finally:
        t.join()
    assert woke - delivered_at[0] < 1.5  # Dovecot itself waits ~0.5 s before telling
    assert mailbox.uids() == [1]  # the connection is usable after IDLE


def test_wait_for_mail_reports_mail_that_came_before_the_wait(
    dovecot: DovecotServer, user: str, mailbox: ImapMailbox
) -> None:
    assert mailbox.uids() == []
    dovecot.deliver_lmtp(user, message(1))
    start = time.monotonic()
    assert mailbox.wait_for_mail(5) is True
    assert time.monotonic() - start < 1.5


def test_wait_for_mail_times_out_quietly(mailbox: ImapMailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imap, "MAX_IDLE_SECONDS", 0.3)  # force IDLE to be re-issued within the wait
    start = time.monotonic()
    assert mailbox.wait_for_mail(1.0) is False
    assert 0.9 < time.monotonic() - start < 2.5
    assert mailbox.uids() == []


def test_interrupt_from_another_thread_ends_a_wait_at_once(mailbox: ImapMailbox) -> None:
    """The daemon's stop: a thread blocked in IDLE gives up its wait, and the mailbox reconnects."""
    outcome: list[object] = []

    def wait() -> None:
        try:
            outcome.append(mailbox.wait_for_mail(30))
        except MailboxUnavailable as exc:
            outcome.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.5)  # let it enter IDLE (nothing to pass a clock to: this is a socket wait)
    start = time.monotonic()
    mailbox.interrupt()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - start < 3
    assert outcome and outcome[0] is not True  # no mail was claimed
    mailbox.connect()
    assert mailbox.uids() == []


def test_restart_breaks_the_connection_and_connect_recovers(
    dovecot_running: DovecotServer, user: str
) -> None:
    dovecot = dovecot_running
    dovecot.append(user, message(1))
    mb = dovecot.mailbox(user)
    first = mb.connect()
    dovecot.restart()
    with pytest.raises(MailboxUnavailable) as info:
        mb.uids()
    assert "conduct-" not in str(info.value)
    assert mb.connect() == first
    assert mb.uids() == [1]
    mb.close()


def test_idle_error_raises_unavailable(dovecot_running: DovecotServer, user: str) -> None:
    dovecot = dovecot_running
    mb = dovecot.mailbox(user)
    mb.connect()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            mb.wait_for_mail(20)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    start = time.monotonic()
    dovecot.stop()
    t.join(timeout=10)
    assert not t.is_alive()
    assert time.monotonic() - start < 5
    assert len(errors) == 1 and isinstance(errors[0], MailboxUnavailable)
    dovecot.start()
    mb.connect()
    mb.close()
