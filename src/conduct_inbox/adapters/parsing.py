"""Runs the parser in a worker process under a time limit, so a hostile message cannot hang
or crash the daemon: the worker is killed and replaced, and the message counts a failed attempt.

The worker is `python -m conduct_inbox.adapters.parse_worker` (see there), a small process that imports
only the mail parser. A message larger than INLINE_BYTES reaches it as a file in a private
temporary folder (mode 0700, the file 0600), which the worker unlinks as soon as it has opened
it and reads in chunks; smaller ones travel through its standard input.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from conduct_inbox.adapters import parse_worker
from conduct_inbox.errors import MalformedMessage, ParseFailed, ParseTimeout
from conduct_inbox.mail.parse import InboundMessage, parse

log = logging.getLogger(__name__)

ParseFunction = Callable[[bytes], InboundMessage]

#: Messages up to this size are sent through the pipe; larger ones as a temporary file.
INLINE_BYTES = 1 << 20
#: How long a new worker may take to start (imports), apart from the parse time limit.
START_SECONDS = 60.0


class _Died(Exception):
    """The worker closed its pipe (it exited or was killed)."""


class _Late(Exception):
    """The deadline passed."""


class _Worker:
    """One worker process and its two pipes (non-blocking on our side)."""

    def __init__(self, setup: dict[str, Any], deadline: float):
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        # -P: the working directory is not put on the path (nothing there can shadow a module).
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "conduct_inbox.adapters.parse_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._out = self.process.stdin.fileno()
        self._in = self.process.stdout.fileno()
        try:
            os.set_blocking(self._out, False)
            os.set_blocking(self._in, False)
            self.send(setup, deadline)
            if self.receive(deadline) != ("ready",):
                raise _Died()
        except BaseException:
            self.kill()
            raise

    def send(self, obj: object, deadline: float) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self._write(parse_worker.HEADER.pack(len(data)), deadline)
        self._write(data, deadline)

    def receive(self, deadline: float) -> Any:
        (length,) = parse_worker.HEADER.unpack(self._read(parse_worker.HEADER.size, deadline))
        return pickle.loads(self._read(length, deadline))

    def _wait(self, fd: int, event: int, deadline: float) -> None:
        poller = select.poll()
        poller.register(fd, event)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Late()
            if poller.poll(min(left, 3600.0) * 1000):
                return

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(self._out, select.POLLOUT, deadline)
            try:
                written = os.write(self._out, view)
            except BlockingIOError:
                continue
            except OSError:  # BrokenPipeError: the worker is gone
                raise _Died() from None
            view = view[written:]

    def _read(self, length: int, deadline: float) -> bytearray:
        buffer = bytearray(length)
        view = memoryview(buffer)
        got = 0
        while got < length:
            self._wait(self._in, select.POLLIN, deadline)
            try:
                count = os.readv(self._in, [view[got:]])
            except BlockingIOError:
                continue
            except OSError:
                raise _Died() from None
            if count == 0:
                raise _Died()
            got += count
        view.release()
        return buffer

    def kill(self) -> None:
        try:
            self.process.kill()
        except OSError:
            pass
        self._reap(None)

    def stop(self, grace: float = 5.0) -> None:
        """Close its input (it exits at the end of it); kill it if it has not after `grace` s."""
        self._close_pipes()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def _reap(self, timeout: float | None) -> None:
        self._close_pipes()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


class WorkerParser:
    """Callable: raw bytes -> InboundMessage, computed in a separate process with a deadline.

    `function` (default: mail.parse.parse) must be importable by name: it is called in the worker.
    Attachments larger than `max_attachment_bytes` come without their content (see parse()).
    """

    def __init__(
        self,
        timeout: float,
        case_tag: str = "conduct",
        function: ParseFunction | None = None,
        max_attachment_bytes: int | None = None,
    ):
        self.timeout = timeout
        self.case_tag = case_tag
        self.max_attachment_bytes = max_attachment_bytes
        self.function: ParseFunction = function or functools.partial(
            parse, case_tag=case_tag, max_attachment_bytes=max_attachment_bytes
        )
        # Fails here, not on the first message, if the worker could not import it.
        self._function = pickle.dumps(function) if function is not None else None
        self._worker: _Worker | None = None
        self._folder: str | None = None
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, raw: bytes) -> InboundMessage:
        with self._lock:
            reply = self._call(raw)
        kind, value = reply
        del reply
        if kind == "ok":
            return cast(InboundMessage, value)  # what the worker's parse (or `function`) returned
        if kind == "malformed":
            raise ParseFailed(f"not a mail message: {value}")
        raise ParseFailed(str(value))

    def _call(self, raw: bytes) -> tuple[str, object]:
        try:
            worker = self._ready()
        except (_Died, _Late, OSError):
            self._kill()
            raise ParseFailed("parser process did not start") from None
        path = self._spill(raw) if len(raw) > INLINE_BYTES else None
        deadline = time.monotonic() + self.timeout
        try:
            worker.send(("file", path) if path else ("bytes", bytes(raw)), deadline)
            reply: tuple[str, object] = worker.receive(deadline)
            return reply
        except _Late:
            self._kill()
            raise ParseTimeout() from None
        except _Died:
            self._kill()
            raise ParseFailed("parser process died") from None
        except Exception as exc:  # a reply that does not unpickle
            self._kill()
            raise ParseFailed(type(exc).__name__) from None
        finally:
            if path:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass  # the worker unlinks it once open

    def _ready(self) -> _Worker:
        if self._worker is not None and self._worker.process.poll() is not None:
            self._kill()  # it exited since the last message
        if self._worker is None:
            setup = {
                "sys_path": list(sys.path),
                "function": self._function,
                "case_tag": self.case_tag,
                "max_attachment_bytes": self.max_attachment_bytes,
            }
            self._worker = _Worker(setup, time.monotonic() + max(START_SECONDS, self.timeout))
        return self._worker

    def _spill(self, raw: bytes) -> str:
        """Write `raw` to a new file in the private folder; return its path."""
        if self._folder is None or not os.path.isdir(self._folder):
            self._folder = tempfile.mkdtemp(prefix="conduct-inbox-parse-")  # mode 0700
        self._count += 1
        path = os.path.join(self._folder, f"{self._count}.eml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with open(fd, "wb", buffering=0, closefd=True) as out:
                view = memoryview(raw)
                while view:
                    view = view[out.write(view) or 0 :]
        except BaseException:
            os.unlink(path)
            raise
        return path

    def _kill(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()

    def close(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
            if worker is not None:
                worker.stop()
            folder, self._folder = self._folder, None
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


class InlineParser:
    """Parses in this process (for `inspect` and tests of the pure core): errors become ParseFailed."""

    def __init__(
        self,
        case_tag: str = "conduct",
        function: ParseFunction | None = None,
        max_attachment_bytes: int | None = None,
    ):
        self.function: ParseFunction = function or functools.partial(
            parse, case_tag=case_tag, max_attachment_bytes=max_attachment_bytes
        )

    def __call__(self, raw: bytes) -> InboundMessage:
        try:
            return self.function(raw)
        except MalformedMessage as exc:
            raise ParseFailed(f"not a mail message: {exc}") from None
        except Exception as exc:
            raise ParseFailed(type(exc).__name__) from None

    def close(self) -> None:
        pass
