"""The parser worker: `python -m conduct_inbox.adapters.parse_worker`, started and driven by
`parsing.WorkerParser` over its standard input and output.

It imports only the mail parser (not the daemon's database, configuration or CLI modules), so it
stays small. Frames in both directions: an 8-byte big-endian length, then a pickle.

    parent -> worker   first {"sys_path": [...], "function": pickled callable or None,
                              "case_tag": str, "max_attachment_bytes": int | None}
                       then   ("bytes", raw) or ("file", path)   one message each
    worker -> parent   ("ready",) after the first frame, then one reply per message:
                       ("ok", InboundMessage) | ("malformed", reason) | ("error", exception type name)

A message passed as a file is unlinked as soon as the worker has opened it. The worker exits at
the end of its input (the daemon closed the pipe or died). It never writes report content
anywhere but to the parent.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import time
from typing import Any, BinaryIO

HEADER = struct.Struct(">Q")


def read_frame(stream: BinaryIO) -> Any:
    """The next frame's object; None at the end of the input."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (length,) = HEADER.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        return None
    return pickle.loads(data)


def write_frame(stream: BinaryIO, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _open_and_unlink(path: str) -> BinaryIO:
    stream = open(path, "rb")  # noqa: SIM115 - closed by the caller
    try:
        os.unlink(path)
    except OSError:
        pass  # the parent deletes it as well
    return stream


def _exit_with(parent: int) -> None:
    """End this process when the daemon is gone, also while a parse hangs."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def main() -> int:
    # Ctrl-C in a terminal reaches the whole process group; the daemon decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    # Anything else that writes to stdout must not corrupt the frames.
    os.dup2(2, 1)
    setup = read_frame(requests)
    if setup is None:
        return 0
    sys.path[:] = list(setup["sys_path"])
    from conduct_inbox.errors import MalformedMessage
    from conduct_inbox.mail.parse import parse, parse_file

    function = pickle.loads(setup["function"]) if setup["function"] is not None else None
    case_tag: str = setup["case_tag"]
    limit: int | None = setup["max_attachment_bytes"]
    del setup
    write_frame(replies, ("ready",))
    while True:
        request = read_frame(requests)
        if request is None:
            return 0
        kind, value = request
        del request
        result: tuple[str, object]
        try:
            if kind == "file":
                with _open_and_unlink(value) as stream:
                    if function is None:
                        result = ("ok", parse_file(stream, case_tag=case_tag, max_attachment_bytes=limit))
                    else:
                        result = ("ok", function(stream.read()))
            elif function is None:
                result = ("ok", parse(value, case_tag=case_tag, max_attachment_bytes=limit))
            else:
                result = ("ok", function(value))
        except MalformedMessage as exc:
            result = ("malformed", str(exc))
        except Exception as exc:  # the parent turns it into a failed attempt
            result = ("error", type(exc).__name__)
        del value
        try:
            write_frame(replies, result)
        except BrokenPipeError:
            return 0
        except Exception as exc:  # an unpicklable result from a custom function
            write_frame(replies, ("error", type(exc).__name__))
        del result


if __name__ == "__main__":
    raise SystemExit(main())
