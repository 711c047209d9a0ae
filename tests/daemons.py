"""Running `conduct-inbox` as a child process, as systemd does: the notify socket, starting and
stopping, SIGHUP, editing the config file, and a relay that delivers our probe mail to Dovecot."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from conduct_inbox.store import crypto
from tests.harness import Harness
from tests.procs import wait_until


def set_mailbox(harness: Harness, **values: object) -> None:
    """Change [mailbox] keys in the harness config file."""
    path = harness.config_path
    text = path.read_text()
    for key, value in values.items():
        rendered = str(value).lower() if isinstance(value, bool) else str(value)
        lines = [ln for ln in text.split("\n") if not ln.startswith(f"{key} = ")]
        text = "\n".join(lines).replace("[mailbox]\n", f"[mailbox]\n{key} = {rendered}\n", 1)
    path.write_text(text)


class Notifications:
    """A NOTIFY_SOCKET like systemd's: an AF_UNIX datagram socket that collects what arrives."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ci-n-"))  # short: AF_UNIX paths are limited
        self.path = self.dir / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.received: list[str] = []

    def wait_for(self, line: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not any(line in msg.split("\n") for msg in self.received):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                self.received.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return False
        return True

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
        self.dir.rmdir()


def conduct_inbox(config: Path, *args: str, notify_socket: Path | None = None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCT_INBOX_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    if notify_socket is not None:
        env["NOTIFY_SOCKET"] = str(notify_socket)
    return subprocess.Popen(
        [sys.executable, "-m", "conduct_inbox.cli", *args, "--config", str(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 20) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"conduct-inbox did not exit in {timeout}s:\n{err.decode(errors='replace')}") from None
    return proc.returncode, err.decode(errors="replace")


def hangup(proc: subprocess.Popen[bytes], notify: Notifications) -> None:
    """SIGHUP, then wait for the daemon to say it is ready again (RELOADING=1 ... READY=1)."""
    notify.received.clear()
    proc.send_signal(signal.SIGHUP)
    assert notify.wait_for("RELOADING=1", 10)
    assert notify.wait_for("READY=1", 10)
    assert proc.poll() is None


class Relay:
    """Plays the mail server: what aiosmtpd accepts for our plus-addresses is delivered to Dovecot over LMTP."""

    def __init__(self, receiver, dovecot, user: str):  # type: ignore[no-untyped-def]
        self.receiver, self.dovecot, self.user = receiver, dovecot, user
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        done = 0
        while not self.stop.wait(0.1):
            messages = self.receiver.messages
            for record in messages[done:]:
                if any("+probe-" in rcpt for rcpt in record.rcpt_tos):
                    self.dovecot.deliver_lmtp(self.user, record.content)
            done = len(messages)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


# ----- a `conduct-inbox run` process for reload tests, and key files -----------------------------

CAROL = "[[committee.members]]\nname = \"Carol Chen\"\nemail = \"carol@example.org\"\naliases = [\"CC\"]\nchair = false\n"


def start(harness, notify: Notifications, started: list) -> subprocess.Popen[bytes]:
    set_mailbox(harness, poll_seconds=1)
    proc = conduct_inbox(harness.config_path, "run", notify_socket=notify.path)
    started.append(proc)
    assert notify.wait_for("READY=1", 15), finish(proc, 5)[1]
    return proc


def processed(harness, count: int) -> bool:
    return wait_until(lambda: harness.folder_count("Processed") >= count, 15)


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 0, err
    return err


def set_keys(harness: Any, current: str, previous: str = "") -> None:
    """[security] with these keys, as files: the current key and, during a rotation, the previous one."""
    lines = [line for line in harness.config_path.read_text().splitlines()
             if not line.startswith(("encryption_key_file", "previous_encryption_key_file"))]
    keys = []
    for name, key in (("encryption_key_file", current), ("previous_encryption_key_file", previous)):
        if key:
            path = harness.folder / f"{name}.{crypto.Cipher.from_text(key).fingerprint_hex}"
            path.write_text(key + "\n")
            keys.append(f'{name} = "{path}"')
    at = lines.index("[security]") + 1
    harness.config_path.write_text("\n".join(lines[:at] + keys + lines[at:]) + "\n")
