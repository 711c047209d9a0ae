"""Parser faults we cannot cause with real input: a parser that crashes or hangs on a marker header.

Used only through the daemon's real worker-process parser, so the timeout and kill paths are real.
"""

import os
import time

from conduct_inbox.mail.parse import InboundMessage, parse


def faulty_parse(raw: bytes) -> InboundMessage:
    if b"X-Test-Fault: hang" in raw:
        time.sleep(3600)
    if b"X-Test-Fault: crash" in raw:
        raise RecursionError("simulated parser crash")
    if b"X-Test-Fault: die" in raw:
        os._exit(70)  # the worker process dies outright
    return parse(raw)
