"""Latency: delivery (LMTP into Dovecot) -> acknowledgement accepted by the SMTP receiver, with
the daemon (`conduct-inbox run`, a child process) waiting in IMAP IDLE.

Reports arrive one every --interval s (default 0.25) over Dovecot's LMTP. Dovecot's own
IDLE notification floor is measured in the same run: a bare imapclient client idles on a
second mailbox, and every report is also delivered there (the order alternates); its latency
is delivery -> the EXISTS that covers the message. Target: p50 <= floor p50 + 100 ms and
p99 <= floor p99 + 300 ms.

    .venv/bin/python benchmarks/latency.py [--count 200] [--interval 0.25] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import smtplib
import threading
import time

import _common as C  # noqa: E402  (puts src/ and the repository root on sys.path)

P50_MARGIN, P99_MARGIN = 0.100, 0.300


class IdleWatcher(threading.Thread):
    """A bare imapclient IDLE on a mailbox: records (monotonic time, EXISTS count) as they arrive."""

    def __init__(self, dovecot: C.DovecotServer, user: str):
        super().__init__(daemon=True)
        self.client = dovecot.client(user)
        self.client.select_folder("INBOX")
        self.events: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.client.idle()
            while not self.stop.is_set():
                responses = self.client.idle_check(timeout=0.2)
                now = time.monotonic()
                for r in responses:
                    if isinstance(r, tuple) and len(r) >= 2 and r[1] == b"EXISTS":
                        self.events.append((now, int(r[0])))
            self.client.idle_done()
            self.client.logout()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def seen_at(self, count: int) -> float | None:
        """When the mailbox was first reported to hold at least `count` messages."""
        return next((t for t, n in self.events if n >= count), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="reports to deliver (default 200)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between reports (default 0.25)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    print(f"latency: {args.count} reports, one every {args.interval * 1000:.0f} ms, {args.database}; {C.machine()}")

    with C.dovecot_server() as dovecot, C.Receiver() as receiver, C.scratch_database(args.database) as url:
        user, floor_user = dovecot.new_user(), dovecot.new_user()
        folder = C.work_dir()
        config = C.config_file(folder, dovecot, user, receiver.port, url, poll_seconds=300, idle=True)
        log = open(folder / "daemon.log", "wb")
        daemon = C.start_daemon(config, stderr=log)
        try:
            C.warm_up(dovecot, user, receiver, folder)  # the start-up poll takes it and starts the parser
            dovecot.deliver_lmtp(floor_user, C.report(0, tag="floorseed")[1])  # the floor mailbox exists
            watcher = IdleWatcher(dovecot, floor_user)
            watcher.start()
            time.sleep(1.5)  # the daemon's IDLE connection is idling by now
            base = receiver.count()

            delivered: dict[str, float] = {}
            floor_delivered: list[float] = []
            lmtp = smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=10)
            start = time.monotonic()
            for k in range(args.count):
                due = start + k * args.interval
                time.sleep(max(0.0, due - time.monotonic()))
                sender, raw = C.report(k, tag="lat")
                floor_raw = C.report(k, tag="floor")[1]

                def to_daemon() -> None:
                    lmtp.sendmail("mta@example.net", [user], raw)  # noqa: B023 (called in this iteration)
                    delivered[sender] = time.monotonic()  # noqa: B023

                def to_floor() -> None:
                    lmtp.sendmail("mta@example.net", [floor_user], floor_raw)  # noqa: B023
                    floor_delivered.append(time.monotonic())

                for step in ((to_daemon, to_floor) if k % 2 == 0 else (to_floor, to_daemon)):
                    step()
            lmtp.quit()
            expected = args.count * (1 + len(C.MEMBER_EMAILS))
            if not receiver.wait_count(base + expected, 60):
                raise RuntimeError(f"only {receiver.count() - base} of {expected} messages arrived")
            time.sleep(1.0)
            watcher.stop.set()
            watcher.join(5)
            if watcher.error:
                raise RuntimeError(f"floor IDLE client failed: {watcher.error!r}")
        finally:
            code = C.stop_daemon(daemon)
            log.close()
        acks = {r[0]: t for t, _, r in receiver.since(base) if r[0] in delivered}
        ours = [acks[s] - delivered[s] for s in delivered]
        floor = []
        for i, t in enumerate(floor_delivered):
            seen = watcher.seen_at(i + 2)  # the seed message is number 1
            if seen is not None:
                floor.append(seen - t)
        missing = args.count - len(floor)

    p50, p99 = C.pct(ours, 50), C.pct(ours, 99)
    f50, f99 = C.pct(floor, 50), C.pct(floor, 99)
    ok50, ok99 = p50 <= f50 + P50_MARGIN, p99 <= f99 + P99_MARGIN
    ms = lambda v: f"{v * 1000:.0f} ms"  # noqa: E731
    print(f"floor (bare IDLE, delivery -> EXISTS): p50 {ms(f50)}, p99 {ms(f99)}, max {ms(max(floor))}"
          + (f" ({missing} notifications not matched)" if missing else ""))
    print(f"ours (delivery -> ack at receiver):    p50 {ms(p50)}, p99 {ms(p99)}, max {ms(max(ours))}, "
          f"mean {ms(sum(ours) / len(ours))}")
    print(f"p50 {ms(p50)} <= floor {ms(f50)} + 100 ms: {C.verdict(ok50)}")
    print(f"p99 {ms(p99)} <= floor {ms(f99)} + 300 ms: {C.verdict(ok99)}")
    print(f"over the floor: p50 +{ms(p50 - f50)}, p99 +{ms(p99 - f99)}; daemon exit code {code}")
    return 0 if ok50 and ok99 else 1


if __name__ == "__main__":
    raise SystemExit(main())
