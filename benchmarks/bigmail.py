"""Big mail: peak memory of the daemon (`conduct-inbox run`, a child process) while it takes in a
report with a 25 MB attachment.

The daemon is warmed up with a small report (parser worker running), then its idle memory is
taken; while the big report is appended and processed, the summed VmRSS of the daemon and its
children (parser worker, forkserver, resource tracker) is sampled every 5 ms, and each process's
VmHWM is read as well (it catches spikes between samples). The run ends when the
acknowledgement and the committee copies have reached the receiver.
Target: peak - idle <= 4 x the message size (the raw message, base64 included).

    .venv/bin/python benchmarks/bigmail.py [--mb 25] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import os
import time
from email.message import EmailMessage
from email.utils import make_msgid

import _common as C  # noqa: E402  (puts src/ and the repository root on sys.path)
from sqlalchemy import select

from conduct_inbox.store import db
from conduct_inbox.store.models import InboundMessage

FACTOR = 4


def big_report(mb: float) -> tuple[str, bytes]:
    sender = "big-reporter@example.net"
    msg = EmailMessage()
    msg["From"] = f"Big Reporter <{sender}>"
    msg["To"] = "conduct@example.org"
    msg["Subject"] = "Recording of the incident"
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg["Date"] = "Tue, 24 Nov 2026 08:59:00 +0000"
    msg.set_content("The attached recording shows what happened during the evening session.\n")
    msg.add_attachment(os.urandom(int(mb * 1024 * 1024)), maintype="video", subtype="mp4", filename="recording.mp4")
    return sender, msg.as_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=25, help="attachment size in MiB (default 25)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    sender, raw = big_report(args.mb)
    size_mb = len(raw) / 2**20
    print(f"bigmail: {args.mb:g} MiB attachment, {size_mb:.1f} MiB message, {args.database}; {C.machine()}")

    with C.dovecot_server() as dovecot, C.Receiver() as receiver, C.scratch_database(args.database) as url:
        user = dovecot.new_user()
        folder = C.work_dir()
        config = C.config_file(folder, dovecot, user, receiver.port, url, poll_seconds=30, idle=True)
        log = open(folder / "daemon.log", "wb")
        proc = C.start_daemon(config, stderr=log)
        try:
            C.warm_up(dovecot, user, receiver, folder)
            C.wait_until(lambda: receiver.count() >= 1 + len(C.MEMBER_EMAILS), 10)
            time.sleep(2)
            idle = C.tree_memory(proc.pid)
            base = receiver.count()
            with C.Sampler(proc.pid) as sampler:
                t0 = time.monotonic()
                dovecot.append(user, raw)
                t_appended = time.monotonic()
                done = C.wait_until(lambda: receiver.count() >= base + 1 + len(C.MEMBER_EMAILS), 300, step=0.05)
                t_done = time.monotonic()
                time.sleep(0.5)
            after = C.tree_memory(proc.pid)
            if not done:
                raise RuntimeError(f"the big report was not acknowledged; daemon log {folder / 'daemon.log'}")
            if not any(r[0] == sender for _, _, r in receiver.since(base)):
                raise RuntimeError("no acknowledgement to the big report's sender")
        finally:
            C.stop_daemon(proc)
            log.close()
        engine = db.make_engine(url)
        with db.session_factory(engine)() as session:
            status = session.scalars(select(InboundMessage.status).order_by(InboundMessage.id.desc()).limit(1)).first()
        engine.dispose()

    idle_mb = idle.rss_kb / 1024
    sampled_peak = sampler.peak_rss_kb / 1024 - idle_mb
    # Upper bound: every process at its own peak at the same moment.
    rise = {p: (hwm - idle.rss_by_pid.get(p, 0)) / 1024 for p, hwm in sampler.hwm_kb.items()}
    hwm_bound = sum(max(0.0, v) for v in rise.values())
    names = {**idle.names, **after.names}
    limit = FACTOR * size_mb
    ok = hwm_bound <= limit
    print(f"ingest of the big report: {t_done - t0:.1f} s (APPEND {t_appended - t0:.1f} s); inbound status {status}")
    print(f"idle tree RSS {idle_mb:.0f} MB (PSS {idle.pss_kb / 1024:.0f} MB)")
    print("peak rise by process (VmHWM - idle RSS), MB: "
          + ", ".join(f"{names.get(p, p)} {v:+.0f}" for p, v in rise.items()))
    print(f"tree peak above idle: sampled every 5 ms {sampled_peak:.0f} MB; "
          f"bound from per-process peaks {hwm_bound:.0f} MB = {hwm_bound / size_mb:.1f} x message")
    print(f"<= {FACTOR} x {size_mb:.1f} MB = {limit:.0f} MB: {C.verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
