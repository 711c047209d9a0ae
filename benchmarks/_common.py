"""Shared helpers for the benchmarks: real servers (the test fixtures' classes), scratch
databases, synthetic reports, a receiver in its own process, and process-tree memory sampling.

Benchmarks are scripts, not tests: run them from the repository root with the project venv,
e.g. `.venv/bin/python benchmarks/ingest.py --help`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "src")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from sqlalchemy import create_engine, text  # noqa: E402

from conduct_inbox.store import db  # noqa: E402
from tests.fixtures.database import POSTGRES_ADMIN_URL  # noqa: E402
from tests.fixtures.dovecot import DovecotServer, running_dovecot  # noqa: E402
from tests.harness import MEMBERS, write_config  # noqa: E402
from tests.procs import proc_stats, wait_until  # noqa: E402

MEMBER_EMAILS = [m[1] for m in MEMBERS]
BACKENDS = ("sqlite", "postgresql")
PYTHON = sys.executable


# ----- output -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> str:
    return f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"


# ----- databases ----------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_database(backend: str, migrate: bool = True) -> Iterator[str]:
    """A fresh database URL (SQLite file in a temp dir, or a new PostgreSQL database), dropped after."""
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="ci-bench-db-")
        url = f"sqlite:///{folder}/cases.db"
        try:
            if migrate:
                _migrate(url)
            yield url
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    if backend != "postgresql":
        raise ValueError(backend)
    name = f"ci_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rpartition("/")[0]
    url = f"{base}/{name}"
    try:
        if migrate:
            _migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(url: str) -> None:
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()


def backends(choice: str) -> list[str]:
    return list(BACKENDS) if choice == "both" else [choice]


# ----- config ---------------------------------------------------------------------------------------


def config_file(folder: Path, dovecot: DovecotServer, user: str, smtp_port: int, database_url: str,
                *, poll_seconds: int = 3600, idle: bool = False, extra: str = "") -> Path:
    """The project's test config (tests.harness.write_config) for a Dovecot user and a receiver."""
    return write_config(
        folder,
        database_url=database_url,
        mailbox={"host": dovecot.host, "port": dovecot.port, "security": "none", "username": user,
                 "password": dovecot.password, "poll_seconds": poll_seconds, "idle": idle},
        smtp={"host": "127.0.0.1", "port": smtp_port, "security": "none", "retry_initial_seconds": 1,
              "retry_max_seconds": 2},
        extra=extra,
    )


dovecot_server = running_dovecot


# ----- synthetic reports ------------------------------------------------------------------------------

# Plain words only: no roster names or aliases (they trigger recusal), no urgent phrases.
_WORDS = (
    "during the sprint session a participant kept interrupting me and made remarks about my accent "
    "after I asked them to stop they continued in the hallway and later in the project chat channel "
    "several people saw it happen and one of them offered to confirm what was said I would like the "
    "committee to look into this and let me know what options exist the event was otherwise great "
    "and I want to keep contributing but this made the second day very uncomfortable for me"
).split()

_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def report(i: int, *, size: int = 2000, rng: random.Random | None = None, html: bool = False,
           attachment: int = 0, tag: str = "") -> tuple[str, bytes]:
    """A report from a distinct sender: (sender address, raw bytes of about `size` bytes)."""
    rng = rng or random.Random(i)
    sender = f"reporter{tag}{i}@example.net"
    msg = EmailMessage()
    msg["From"] = f"Reporter {i} <{sender}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = f"Incident report {tag}{i} about the sprint"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg["Date"] = "Tue, 24 Nov 2026 08:59:00 +0000"
    words: list[str] = []
    length = 0
    target = max(200, size - 700 - attachment * 4 // 3)
    while length < target:
        w = rng.choice(_WORDS)
        words.append(w)
        length += len(w) + 1
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) >= 12:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    body = "\n".join(lines) + "\n"
    msg.set_content(body)
    if html:
        paragraphs = "".join(f"<p>{ln}</p>" for ln in lines)
        msg.add_alternative(f"<html><body>{paragraphs}</body></html>", subtype="html")
    if attachment:
        blob = _PNG + bytes(rng.getrandbits(8) for _ in range(attachment))
        msg.add_attachment(blob, maintype="image", subtype="png", filename=f"screenshot-{i}.png")
    return sender, msg.as_bytes()


def report_mix(n: int, tag: str = "") -> list[tuple[str, bytes]]:
    """n ~2 KB reports: every 5th with an HTML alternative, every 7th with a ~1.5 KB attachment."""
    rng = random.Random(1234)
    out = []
    for i in range(n):
        html = i % 5 == 1
        att = 1500 if i % 7 == 3 else 0
        out.append(report(i, rng=rng, html=html, attachment=att, tag=tag, size=2000 if not html else 2600))
    return out


def preload(dovecot: DovecotServer, user: str, raws: Sequence[bytes], chunk: int = 250) -> None:
    """MULTIAPPEND the messages into the user's INBOX."""
    with dovecot.client(user) as c:
        for start in range(0, len(raws), chunk):
            c.multiappend("INBOX", list(raws[start:start + chunk]))


# ----- the receiver, in its own process ------------------------------------------------------------


def _receiver_main(conn: Any, port: int) -> None:
    """Child process: tests.fixtures.smtp_receiver.SmtpReceiver, recording the arrival time of each mail."""
    sys.path[:0] = [str(ROOT), str(ROOT / "src")]
    from tests.fixtures.smtp_receiver import SmtpReceiver

    arrivals: list[tuple[float, str, tuple[str, ...]]] = []
    lock = threading.Lock()

    class Timed(SmtpReceiver):
        def _record(self, record: Any) -> None:  # called on aiosmtpd's thread after parsing
            with lock:
                arrivals.append((time.monotonic(), record.mail_from, record.rcpt_tos))
            # Keep no message objects: thousands of them would only cost memory.

    receiver = Timed(port=port)
    receiver.up()
    conn.send("ready")
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == "count":
                with lock:
                    conn.send(len(arrivals))
            elif cmd == "since":
                with lock:
                    conn.send(arrivals[arg:])
            elif cmd == "stop":
                break
    finally:
        receiver.down()
        conn.send("stopped")


class Receiver:
    """An aiosmtpd receiver (the tests' SmtpReceiver) in a child process, so that its CPU work
    (aiosmtpd plus parsing every message) does not share a GIL with the code being measured."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_receiver_main, args=(child, self.port), daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> Receiver:
        self._proc.start()
        if not self._conn.poll(30) or self._conn.recv() != "ready":
            raise RuntimeError("receiver did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with self._lock:
                self._conn.send(("stop", None))
                self._conn.poll(10) and self._conn.recv()
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()

    def count(self) -> int:
        with self._lock:
            self._conn.send(("count", None))
            return int(self._conn.recv())

    def since(self, index: int) -> list[tuple[float, str, tuple[str, ...]]]:
        with self._lock:
            self._conn.send(("since", index))
            return list(self._conn.recv())

    def wait_count(self, count: int, timeout: float, poll: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count() >= count:
                return True
            time.sleep(poll)
        return self.count() >= count


# ----- the daemon as a child process, and its memory ---------------------------------------------------


def start_daemon(config: Path, *, stderr: Any = subprocess.DEVNULL, extra_args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """`conduct-inbox run` (the real entry point) as a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    return subprocess.Popen(
        [PYTHON, "-m", "conduct_inbox.cli", "run", "--config", str(config), *extra_args],
        env=env, stdout=subprocess.DEVNULL, stderr=stderr, cwd=str(ROOT),
    )


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (by /proc/*/stat ppid)."""
    parents = {child: int(fields[1]) for child, fields in proc_stats().items()}
    tree, frontier = [pid], [pid]
    while frontier:
        nxt = [c for c, p in parents.items() if p in frontier]
        tree.extend(nxt)
        frontier = nxt
    return tree


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM (kB) of one process; {} if it has gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out


def pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split between the processes sharing them)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(a.decode(errors="replace") for a in args if a)
    for marker, name in (("forkserver", "forkserver"), ("resource_tracker", "resource_tracker"),
                         ("conduct_inbox.cli", "daemon"), ("spawn_main", "worker")):
        if marker in text:
            return name
    return text[:40]


@dataclass
class TreeMemory:
    rss_kb: int  # sum of VmRSS over the tree now (shared pages counted in every process)
    pss_kb: int  # sum of PSS over the tree now (shared pages split): the tree's real footprint
    hwm_kb: dict[int, int]  # per-process VmHWM
    rss_by_pid: dict[int, int]
    names: dict[int, str]


def tree_memory(pid: int) -> TreeMemory:
    rss, pss, hwm, by, names = 0, 0, {}, {}, {}
    for p in descendants(pid):
        s = status_kb(p)
        if not s:
            continue
        rss += s.get("VmRSS", 0)
        pss += pss_kb(p)
        by[p] = s.get("VmRSS", 0)
        hwm[p] = s.get("VmHWM", 0)
        names[p] = process_name(p)
    for p in names:  # a forkserver's child is the parser worker (it inherits the command line)
        if names[p] == "forkserver" and _ppid(p) in names and names[_ppid(p)] == "forkserver":
            names[p] = "parser-worker"
    return TreeMemory(rss, pss, hwm, by, names)


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


class Sampler:
    """Samples the summed VmRSS of a process tree every `interval` s in a thread; keeps the peak
    and every process's last VmHWM (which catches spikes between samples)."""

    def __init__(self, pid: int, interval: float = 0.005):
        self.pid, self.interval = pid, interval
        self.peak_rss_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tree = [pid]
        self._tree_at = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if now - self._tree_at > 0.2:  # new children (parser workers) appear rarely
                self._tree, self._tree_at = descendants(self.pid), now
            total = 0
            for p in self._tree:
                s = status_kb(p)
                total += s.get("VmRSS", 0)
                if s:
                    self.hwm_kb[p] = max(self.hwm_kb.get(p, 0), s.get("VmHWM", 0))
            self.peak_rss_kb = max(self.peak_rss_kb, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def work_dir() -> Path:
    """A temp folder for config files and logs, removed when the benchmark exits."""
    import atexit

    folder = Path(tempfile.mkdtemp(prefix="ci-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def warm_up(dovecot: DovecotServer, user: str, receiver: Any, folder: Path) -> None:
    """Deliver one report and wait for its acknowledgement: the daemon is up, its parser started."""
    sender, raw = report(0, tag="warm")
    dovecot.append(user, raw)
    if not wait_until(lambda: any(r[0] == sender for _, _, r in receiver.since(0)), 30):
        raise RuntimeError(f"no acknowledgement for the warm-up report; daemon log: {folder / 'daemon.log'}")
