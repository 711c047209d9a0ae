"""MaildirMailbox and deliver_to_maildir on a real directory."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conduct_inbox.adapters.maildir import MaildirMailbox, deliver_to_maildir
from conduct_inbox.errors import MailboxUnavailable


def message(n: int) -> bytes:
    return f"From: r{n}@example.test\r\nSubject: report {n}\r\n\r\nbody {n}\r\n".encode()


def files_in(folder: Path) -> list[Path]:
    return sorted(p for sub in ("new", "cur") for p in (folder / sub).iterdir())


@pytest.fixture()
def box(tmp_path: Path) -> MaildirMailbox:
    mb = MaildirMailbox(tmp_path / "Maildir")
    mb.connect()
    return mb


def test_connect_creates_the_maildir_and_its_folders(tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    mb = MaildirMailbox(root)
    assert mb.identity == f"maildir://{root}"
    uidvalidity = mb.connect()
    for folder in (root, root / ".Processed", root / ".Quarantine"):
        assert all((folder / sub).is_dir() for sub in ("cur", "new", "tmp"))
    assert MaildirMailbox(root).connect() == uidvalidity == mb.connect()


def test_deliver_is_atomic_and_uids_follow_arrival(box: MaildirMailbox) -> None:
    names = [deliver_to_maildir(box.path, message(n)) for n in range(3)]
    assert len(set(names)) == 3
    assert not list((box.path / "tmp").iterdir())
    assert box.uids() == [1, 2, 3]
    assert box.fetch([1, 2, 3, 42]) == {1: message(0), 2: message(1), 3: message(2)}
    assert box.fetch([]) == {}


def test_uids_are_stable_across_instances_and_reads(box: MaildirMailbox) -> None:
    for n in range(3):
        deliver_to_maildir(box.path, message(n))
    assert box.uids() == [1, 2, 3]
    # A mail reader marks the second message read: new/X -> cur/X:2,S keeps its UID.
    second = sorted((box.path / "new").iterdir())[1]
    second.rename(box.path / "cur" / f"{second.name}:2,S")
    other = MaildirMailbox(box.path)
    assert other.connect() == box.connect()
    assert other.uids() == [1, 2, 3]
    assert other.fetch([2]) == {2: message(1)}
    assert box.fetch([2]) == {2: message(1)}  # the first instance finds the renamed file too


def test_move_moves_exactly_the_given_uids(box: MaildirMailbox) -> None:
    for n in range(4):
        deliver_to_maildir(box.path, message(n))
    box.uids()
    box.move([2, 4], "processed")
    box.move([3], "quarantine")
    box.move([], "processed")
    assert box.uids() == [1]
    assert [p.read_bytes() for p in files_in(box.path / ".Processed")] == sorted([message(1), message(3)])
    assert [p.read_bytes() for p in files_in(box.path / ".Quarantine")] == [message(2)]
    assert all(":2," in p.name for p in files_in(box.path / ".Processed"))
    box.move([2], "processed")  # already gone: nothing happens
    # UIDs are never reused, also by a fresh instance.
    deliver_to_maildir(box.path, message(9))
    fresh = MaildirMailbox(box.path)
    fresh.connect()
    assert fresh.uids() == [1, 5]


def test_wait_for_mail_sees_new_files(box: MaildirMailbox) -> None:
    deliver_to_maildir(box.path, message(0))
    assert box.wait_for_mail(0) is True  # not yet listed: may be new
    box.uids()
    start = time.monotonic()
    assert box.wait_for_mail(0.3) is False
    assert time.monotonic() - start >= 0.3

    timer = threading.Timer(0.2, deliver_to_maildir, (box.path, message(1)))
    timer.start()
    start = time.monotonic()
    try:
        assert box.wait_for_mail(5) is True
    finally:
        timer.join()
    assert time.monotonic() - start < 1
    assert box.uids() == [1, 2]


def test_lost_state_starts_a_new_uid_epoch(box: MaildirMailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    deliver_to_maildir(box.path, message(0))
    box.uids()
    first = box.connect()
    (box.path / "conduct-inbox-uids.json").unlink()
    monkeypatch.setattr(time, "time", lambda: first + 100.0)  # a later second, without sleeping
    assert MaildirMailbox(box.path).connect() != first


def test_unusable_maildir_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(MailboxUnavailable, match="Maildir connect failed"):
        MaildirMailbox(blocker / "Maildir").connect()
    with pytest.raises(MailboxUnavailable):
        MaildirMailbox(tmp_path / "x").uids()  # not connected


def test_interrupt_from_another_thread_ends_a_wait_at_once(box: MaildirMailbox) -> None:
    box.connect()
    threading.Timer(0.2, box.interrupt).start()
    start = time.monotonic()
    assert box.wait_for_mail(30) is False
    assert time.monotonic() - start < 3
