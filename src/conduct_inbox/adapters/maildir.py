"""The conduct@ mailbox as a local Maildir, for the demo mode without an IMAP server.

Maildir has no UIDs, so this adapter gives each message (by its unique base name, the part
before ':') an increasing integer UID, kept with a UIDVALIDITY in a small JSON file in the
Maildir. The processed and quarantine folders are Maildir++ subfolders `.Processed`, `.Quarantine`.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from email.parser import BytesHeaderParser
from pathlib import Path

from conduct_inbox.errors import MailboxUnavailable
from conduct_inbox.ports import Destination, MailCopy

logger = logging.getLogger(__name__)

STATE_FILE = "conduct-inbox-uids.json"
LOCK_FILE = "conduct-inbox-uids.lock"
SUBFOLDERS: dict[Destination, str] = {"processed": ".Processed", "quarantine": ".Quarantine"}

_counter = itertools.count()


def _make_maildir(path: Path, subfolder: bool = False) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    if subfolder:
        (path / "maildirfolder").touch()  # Maildir++ marker for MUAs and IMAP servers


def _unique_name() -> str:
    """A Maildir base name unique across processes and hosts (time, pid, counter, randomness)."""
    host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
    return f"{time.time_ns()}.P{os.getpid()}Q{next(_counter)}R{os.urandom(6).hex()}.{host}"


def deliver_to_maildir(path: str | os.PathLike[str], raw: bytes) -> str:
    """Drop a message into PATH/new atomically (write to tmp/, then rename); return its base name."""
    root = Path(path)
    _make_maildir(root)
    name = _unique_name()
    tmp = root / "tmp" / name
    with open(tmp, "xb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, root / "new" / name)
    return name


def _base(filename: str) -> str:
    return filename.split(":", 1)[0]


@contextmanager
def _translated(action: str) -> Iterator[None]:
    """Filesystem errors become MailboxUnavailable (type only: paths stay in debug logs)."""
    try:
        yield
    except OSError as exc:
        logger.debug("Maildir %s failed", action, exc_info=True)
        raise MailboxUnavailable(f"Maildir {action} failed: {type(exc).__name__}") from None
    except ValueError as exc:  # a corrupt state file
        raise MailboxUnavailable(f"Maildir {action} failed: {type(exc).__name__}") from None


class MaildirMailbox:
    """A local Maildir as the intake folder, with UIDs that survive restarts."""

    def __init__(self, path: str | os.PathLike[str], poll_interval: float = 0.2) -> None:
        self.path = Path(path).absolute()
        self.poll_interval = poll_interval
        self.identity = f"maildir://{self.path}"
        self._uidvalidity: int | None = None
        #: base name -> (uid, current path), from the last scan.
        self._files: dict[str, tuple[int, Path]] = {}
        self._interrupted = threading.Event()

    def __repr__(self) -> str:
        return f"MaildirMailbox({self.identity!r})"

    def connect(self) -> int:
        """Create the Maildir and its subfolders if absent; return the persisted UIDVALIDITY."""
        with _translated("connect"):
            _make_maildir(self.path)
            for sub in SUBFOLDERS.values():
                _make_maildir(self.path / sub, subfolder=True)
            with self._state() as state:
                self._uidvalidity = int(state["uidvalidity"])
        return self._uidvalidity

    def close(self) -> None:
        self._uidvalidity = None

    # -- UID bookkeeping -----------------------------------------------------------------------

    @contextmanager
    def _state(self) -> Iterator[dict]:
        """Load the UID state under an exclusive lock; save it afterwards if it changed."""
        with open(self.path / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.path / STATE_FILE
            try:
                state = json.loads(path.read_text())
            except FileNotFoundError:
                # A new (or lost) state starts a new UID epoch, so cached UIDs cannot be misread.
                state = {"uidvalidity": int(time.time()), "next_uid": 1, "uids": {}}
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before or not path.exists():
                tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(state, sort_keys=True))
                os.replace(tmp, path)

    def _scan(self) -> dict[str, tuple[int, Path]]:
        """Assign UIDs to new messages (in arrival order) and forget ones that are gone."""
        present: dict[str, Path] = {}
        for sub in ("cur", "new"):
            for entry in os.scandir(self.path / sub):
                if entry.is_file() and not entry.name.startswith("."):
                    present[_base(entry.name)] = Path(entry.path)
        with self._state() as state:
            uids: dict[str, int] = state["uids"]
            fresh = sorted(
                (b for b in present if b not in uids),
                key=lambda b: (present[b].stat().st_mtime_ns, b),
            )
            for base in fresh:
                uids[base] = state["next_uid"]
                state["next_uid"] += 1
            for base in [b for b in uids if b not in present]:
                del uids[base]  # moved away; next_uid never goes back, so UIDs are not reused
            self._files = {b: (uids[b], p) for b, p in present.items()}
        return self._files

    def _require_connected(self) -> None:
        if self._uidvalidity is None:
            raise MailboxUnavailable("Maildir not connected")

    # -- Mailbox protocol ----------------------------------------------------------------------

    def uids(self) -> list[int]:
        """Every message in new/ and cur/, read or not, by ascending UID."""
        self._require_connected()
        with _translated("scan"):
            return sorted(uid for uid, _ in self._scan().values())

    def fetch(self, uids: Sequence[int]) -> dict[int, bytes]:
        """Raw bytes by UID; UIDs whose files are gone are absent."""
        self._require_connected()
        wanted = set(uids)
        if not wanted:
            return {}
        out: dict[int, bytes] = {}
        with _translated("fetch"):
            files = self._files
            if not wanted <= {uid for uid, _ in files.values()}:
                files = self._scan()
            for uid, path in files.values():
                if uid not in wanted:
                    continue
                try:
                    out[uid] = path.read_bytes()
                except FileNotFoundError:
                    # A mail reader moved it from new/ to cur/ meanwhile: find it again.
                    again = self._scan().get(_base(path.name))
                    if again is not None and again[0] == uid:
                        out[uid] = again[1].read_bytes()
        return out

    def move(self, uids: Sequence[int], destination: Destination) -> None:
        """Rename exactly these messages into the destination folder's cur/."""
        self._require_connected()
        wanted = set(uids)
        if not wanted:
            return
        target = self.path / SUBFOLDERS[destination] / "cur"
        with _translated("move"):
            for base, (uid, path) in list(self._scan().items()):
                if uid not in wanted:
                    continue
                name = path.name if ":" in path.name else f"{path.name}:2,"
                try:
                    os.rename(path, target / name)
                except FileNotFoundError:
                    logger.warning("Maildir message uid %d vanished before its move", uid)
                self._files.pop(base, None)
            self._scan()  # forget the moved ones in the state file

    def contains(self, message_id: str) -> bool:
        """Whether any message in the Maildir or its subfolders has this Message-ID."""
        parser = BytesHeaderParser()
        with _translated("search"):
            for folder in (self.path, *(self.path / sub for sub in SUBFOLDERS.values())):
                for part in ("cur", "new"):
                    for entry in os.scandir(folder / part):
                        if entry.is_file():
                            with open(entry.path, "rb") as handle:
                                if (parser.parse(handle)["Message-ID"] or "").strip() == message_id:
                                    return True
        return False

    def delete_copies(self, copies: Sequence[MailCopy]) -> int:
        """Delete the byte-identical copies of these messages from the processed and quarantine folders."""
        wanted = {(c.size, c.sha256) for c in copies}
        sizes = {size for size, _ in wanted}
        deleted = 0
        with _translated("retention delete"):
            for sub in SUBFOLDERS.values():
                for part in ("cur", "new"):
                    for entry in os.scandir(self.path / sub / part):
                        if not entry.is_file():
                            continue
                        size = entry.stat().st_size
                        if size not in sizes:  # hash only the files that could match
                            continue
                        digest = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
                        if (size, digest) in wanted:
                            os.unlink(entry.path)
                            deleted += 1
        return deleted

    def wait_for_mail(self, timeout: float) -> bool:
        """Poll new/ and cur/ until a message without a UID appears (True) or `timeout` (False)."""
        self._require_connected()
        deadline = time.monotonic() + max(0.0, timeout)
        with _translated("poll"):
            while True:
                if self._has_unknown():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if self._interrupted.wait(min(self.poll_interval, left)):
                    self._interrupted.clear()
                    return False

    def interrupt(self) -> None:
        """Make a wait_for_mail in another thread return now."""
        self._interrupted.set()

    def _has_unknown(self) -> bool:
        known = self._files
        for sub in ("cur", "new"):
            for entry in os.scandir(self.path / sub):
                if not entry.name.startswith(".") and _base(entry.name) not in known:
                    return True
        return False
