"""Ingest throughput: N reports waiting in the INBOX until every case exists and every
acknowledgement and committee copy has been accepted by the SMTP receiver.

Ours: the real daemon (build_app + Daemon, as shell/wiring.build_daemon wires it: on_commit kicks the
outbox flush), IDLE off, one poll at start. Baseline, in the same run and against the same
Dovecot and receiver: the protocol work alone - one imapclient FETCH of the same messages,
parsing each with `email`, and as many outgoing messages sent with aiosmtplib over one connection.
Target: our throughput >= 0.6 x baseline, per database.

    .venv/bin/python benchmarks/ingest.py [-n 2000] [--database sqlite|postgresql|both] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import email
import email.policy
import io
import pstats
import resource
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import _common as C  # noqa: E402  (puts src/ and the repository root on sys.path)
import aiosmtplib
from imapclient import IMAPClient
from sqlalchemy import func, select

from conduct_inbox.config import load_settings
from conduct_inbox.shell.app import build_app
from conduct_inbox.shell.daemon import Daemon
from conduct_inbox.shell.dispatch_worker import DispatchWorker
from conduct_inbox.store.models import Case, InboundMessage

PER_REPORT = 1 + len(C.MEMBER_EMAILS)  # the acknowledgement and one copy per member
TARGET = 0.6


def outgoing_like(raws: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """What the daemon sends for these reports, in size and count: an ack and a copy per member."""
    out = []
    for i, (sender, raw) in enumerate(raws):
        ack = EmailMessage()
        ack["From"] = "Test Conduct Committee <conduct@example.org>"
        ack["To"] = sender
        ack["Subject"] = f"[conduct #2026-{i:04d}] We received your report"
        ack["Message-ID"] = f"<ack-{i}@example.org>"
        ack.set_content("Thank you for your report. " * 40)
        out.append((sender, ack.as_bytes()))
        for member in C.MEMBER_EMAILS:
            copy = EmailMessage()
            copy["From"] = "Test Conduct Committee <conduct@example.org>"
            copy["To"] = member
            copy["Subject"] = f"[conduct #2026-{i:04d}] Incident report"
            copy["Message-ID"] = f"<copy-{i}-{member}>"
            copy.set_content(raw.decode("ascii", "replace"))
            out.append((member, copy.as_bytes()))
    return out


def baseline(dovecot: C.DovecotServer, receiver: C.Receiver, reports: list[tuple[str, bytes]]) -> dict[str, float]:
    user = dovecot.new_user()
    C.preload(dovecot, user, [raw for _, raw in reports])
    mails = outgoing_like(reports)
    base = receiver.count()

    async def send() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=receiver.port, start_tls=False, use_tls=False)
        await smtp.connect()
        for rcpt, data in mails:
            await smtp.sendmail("conduct+bounce-1@example.org", [rcpt], data)
        await smtp.quit()

    t0 = time.monotonic()
    client = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=30)
    client.login(user, dovecot.password)
    client.select_folder("INBOX")
    uids = client.search("ALL")
    data = client.fetch(uids, ["BODY.PEEK[]"])
    t_fetch = time.monotonic()
    for item in data.values():
        msg = email.message_from_bytes(item[b"BODY[]"], policy=email.policy.default)
        body = msg.get_body(("plain", "html"))
        if body is not None:
            body.get_content()
        for part in msg.iter_attachments():
            part.get_content()
    t_parse = time.monotonic()
    client.logout()
    asyncio.run(send())
    if not receiver.wait_count(base + len(mails), timeout=120):
        raise RuntimeError("baseline: receiver did not get every message")
    t_end = max(t for t, _, _ in receiver.since(base))
    assert len(uids) == len(reports)
    return {"seconds": t_end - t0, "fetch": t_fetch - t0, "parse": t_parse - t_fetch, "send": t_end - t_parse,
            "messages_out": len(mails)}


def ours(dovecot: C.DovecotServer, receiver: C.Receiver, url: str, reports: list[tuple[str, bytes]],
         profile: Path | None) -> dict[str, float]:
    n = len(reports)
    user = dovecot.new_user()
    C.preload(dovecot, user, [raw for _, raw in reports])
    folder = C.work_dir()
    config = C.config_file(folder, dovecot, user, receiver.port, url, poll_seconds=3600, idle=False)
    settings = load_settings(config, environ={})
    # As `conduct-inbox run` wires it: the outbox is sent from a worker process, forked before
    # anything is opened, and up (as in a daemon running when the reports arrive) before the clock starts.
    worker = DispatchWorker(settings, fork_first=True)
    worker.start()
    if not worker.wait_ready(60):
        raise RuntimeError("the dispatch worker did not start")
    app = build_app(settings)
    daemon = Daemon(app, poll_seconds=3600, idle=False, dispatch_worker=worker)  # kicks its flush after each commit
    marks: dict[str, float] = {}
    profiles: list[cProfile.Profile] = []
    original = app.intake.poll_once

    def poll_once():  # type: ignore[no-untyped-def]
        # Runs on the daemon's worker thread; profiled there when asked (cProfile is per thread).
        prof = cProfile.Profile() if profile else None
        if prof:
            profiles.append(prof)
            prof.enable()
        try:
            return original()
        finally:
            if prof:
                prof.disable()
            marks.setdefault("intake_done", time.monotonic())

    app.intake.poll_once = poll_once  # type: ignore[method-assign]
    base = receiver.count()
    expected = n * PER_REPORT

    async def scenario() -> None:
        running = asyncio.create_task(daemon.run())
        try:
            ok = await asyncio.to_thread(receiver.wait_count, base + expected, 60 + n * 0.5)
            if not ok:
                raise RuntimeError(f"only {receiver.count() - base} of {expected} messages arrived")
        finally:
            daemon.request_stop()
            await asyncio.wait_for(running, 30)

    main_prof = cProfile.Profile() if profile else None
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    if main_prof:
        main_prof.enable()
    asyncio.run(scenario())
    if main_prof:
        main_prof.disable()
    arrivals = receiver.since(base)
    t_end = max(t for t, _, _ in arrivals)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    done = marks.get("intake_done", t_end)
    by_intake_done = sum(1 for t, _, _ in arrivals if t <= done)
    time.sleep(0.5)
    extra = receiver.count() - base - expected
    with app.sessions() as session:
        cases = session.scalar(select(func.count()).select_from(Case))
        pending = session.scalar(select(func.count()).select_from(InboundMessage).where(InboundMessage.status == "pending"))
    app.close()
    acked = {rcpts[0] for _, _, rcpts in arrivals if rcpts[0] not in C.MEMBER_EMAILS}
    per_member = {m: sum(1 for _, _, r in arrivals if r[0] == m) for m in C.MEMBER_EMAILS}
    problems = []
    if cases != n:
        problems.append(f"{cases} cases for {n} reports")
    if pending:
        problems.append(f"{pending} inbound messages still pending")
    if acked != {s for s, _ in reports}:
        problems.append(f"{len(acked)} distinct reporters acknowledged of {n}")
    if any(v != n for v in per_member.values()):
        problems.append(f"member copies {per_member}")
    if extra:
        problems.append(f"{extra} unexpected extra messages")
    if problems:
        raise RuntimeError("; ".join(problems))
    if profile:
        for name, prof in (("intake-thread", profiles[0] if profiles else None), ("event-loop-thread", main_prof)):
            if prof is None:
                continue
            path = profile / f"ingest-{'pg' if 'postgresql' in url else 'sqlite'}-{name}.prof"
            prof.dump_stats(path)
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out).strip_dirs()
            stats.sort_stats("tottime").print_stats(18)
            stats.sort_stats("cumulative").print_stats(30)
            print(f"\n--- cProfile {name} ({path}) ---\n{out.getvalue()}")
    return {"seconds": t_end - t0, "intake": done - t0, "sent_by_intake_done": by_intake_done,
            "cpu": cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000, help="reports (default 2000)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="cProfile the daemon; write .prof files here")
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    reports = C.report_mix(args.n)
    avg = sum(len(r) for _, r in reports) / len(reports)
    print(f"ingest: {args.n} reports, {avg:.0f} bytes average, {PER_REPORT} outgoing each; {C.machine()}")
    failed = False
    with C.dovecot_server() as dovecot, C.Receiver() as receiver:
        for backend in C.backends(args.database):
            with C.scratch_database(backend) as url:
                b = baseline(dovecot, receiver, reports)
                o = ours(dovecot, receiver, url, reports, args.profile)
            b_rate, o_rate = args.n / b["seconds"], args.n / o["seconds"]
            ratio = o_rate / b_rate
            ok = ratio >= TARGET
            failed |= not ok
            print(f"[{backend}] baseline: {b['seconds']:.2f} s = {b_rate:.0f} reports/s "
                  f"(fetch {b['fetch']:.2f} s, parse {b['parse']:.2f} s, send {b['messages_out']} mails {b['send']:.2f} s)")
            print(f"[{backend}] ours:     {o['seconds']:.2f} s = {o_rate:.0f} reports/s "
                  f"(intake pass done at {o['intake']:.2f} s, {o['sent_by_intake_done']} mails sent by then; "
                  f"daemon process CPU {o['cpu']:.2f} s)")
            print(f"[{backend}] ratio {ratio:.2f} (target >= {TARGET}): {C.verdict(ok)}")
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
