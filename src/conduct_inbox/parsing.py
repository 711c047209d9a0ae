"""Runs the parser in a worker process under a time limit, so a hostile message cannot hang
or crash the daemon: the worker is killed and replaced, and the message counts a failed attempt."""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

from .errors import MalformedMessage
from .mail.parse import InboundMessage, parse

log = logging.getLogger(__name__)

ParseFunction = Callable[[bytes], InboundMessage]


class ParseFailed(Exception):
    """The parser raised or its worker died; `kind` is a content-free description."""

    def __init__(self, kind: str):
        self.kind = kind
        super().__init__(kind)


class ParseTimeout(Exception):
    """The parser did not finish within the time limit."""


def _run(function: ParseFunction, raw: bytes) -> InboundMessage:
    return function(raw)


class WorkerParser:
    """Callable: raw bytes -> InboundMessage, computed in a separate process with a deadline."""

    def __init__(self, timeout: float, case_tag: str = "conduct", function: ParseFunction | None = None):
        self.timeout = timeout
        self.function: ParseFunction = function or functools.partial(parse, case_tag=case_tag)
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: the daemon has threads (IDLE, asyncio), and fork() with threads is unsafe.
            context = multiprocessing.get_context("forkserver")
            self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context)
        return self._pool

    def __call__(self, raw: bytes) -> InboundMessage:
        future = self._executor().submit(_run, self.function, raw)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            self._kill()
            raise ParseTimeout() from None
        except BrokenProcessPool:
            self._kill()
            raise ParseFailed("parser process died") from None
        except MalformedMessage as exc:
            raise ParseFailed(f"not a mail message: {exc}") from None
        except Exception as exc:
            raise ParseFailed(type(exc).__name__) from None

    def _kill(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class InlineParser:
    """Parses in this process (for `inspect` and tests of the pure core): errors become ParseFailed."""

    def __init__(self, case_tag: str = "conduct", function: ParseFunction | None = None):
        self.function: ParseFunction = function or functools.partial(parse, case_tag=case_tag)

    def __call__(self, raw: bytes) -> InboundMessage:
        try:
            return self.function(raw)
        except MalformedMessage as exc:
            raise ParseFailed(f"not a mail message: {exc}") from None
        except Exception as exc:
            raise ParseFailed(type(exc).__name__) from None

    def close(self) -> None:
        pass
