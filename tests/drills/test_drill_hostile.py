"""Hostile-input drill: mutations of the project's .eml corpus (tests/data/eml) and hand-made
pathological messages go through the whole pipeline — delivered to a Maildir, taken in by the
intake with its worker parser and time limit, applied to SQLite, sent through aiosmtpd.

Every message must end as a case (or joined to one), machine mail, a dropped loop or a
quarantine entry with an alert to the committee: never an exception out of the loop, never a
hang, never silence; and what we send about it must be accepted by the SMTP server.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from conduct_inbox.adapters.maildir import deliver_to_maildir
from conduct_inbox.core import tokens
from conduct_inbox.shell.app import App
from conduct_inbox.store import db
from conduct_inbox.store.models import Event, InboundMessage, OutboxMessage, Quarantine
from tests.fixtures.database import BACKENDS, fresh_postgres_database
from tests.fixtures.smtp_receiver import SmtpReceiver
from tests.harness import MEMBERS, SECRET, Clock, maildir_app

CORPUS = sorted((Path(__file__).parent.parent / "data" / "eml").rglob("*.eml"))
PARSE_TIMEOUT = 2  # seconds; three attempts at most before quarantine
MESSAGE_LIMIT = 30.0  # seconds one message may take through the whole pipeline, retries included
DONE = {"processed", "duplicate", "machine", "dropped", "quarantined"}
COMMITTEE_KINDS = {"refused", "command_error", "note", "commands", "personal"}
#: Quarantine reasons (intake.py) that mean the parser could not read the input: its worker raised,
#: died or timed out. Everything else ("processing failed (...)", "database error", "repeated
#: conflicts", and "too many attempts", which only a crash between attempts leaves) is our fault.
PARSER_REASONS = re.compile(r"parser time limit exceeded|parser failed \(.{1,150}\)")


# ----- the pipeline ----------------------------------------------------------------------------


@dataclass
class Pipeline:
    app: App
    maildir: Path
    receiver: SmtpReceiver
    clock: Clock
    slowest: float = 0.0

    def count(self, model: type, *where: object) -> int:
        with self.app.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def feed(self, raw: bytes) -> InboundMessage:
        """Deliver one message and run intake passes until it is done; then send what it caused."""
        alerts_before = self.count(OutboxMessage, OutboxMessage.kind == "alert")
        outbox_before = self.count(OutboxMessage) and self._max_outbox()
        last_id = self.count(InboundMessage) and self._newest().id
        deliver_to_maildir(self.maildir, raw)
        started = time.monotonic()
        for _ in range(self.app.intake.max_attempts + 1):
            self.app.intake.poll_once()  # must not raise, whatever the message
            row = self._newest()
            if row is not None and row.id != last_id and row.status != "pending":
                break
        asyncio.run(self.app.dispatcher.flush_all(self.clock()))
        elapsed = time.monotonic() - started
        self.slowest = max(self.slowest, elapsed)
        assert elapsed < MESSAGE_LIMIT, f"one message took {elapsed:.1f}s"
        assert row is not None and row.id != last_id, "the message was never recorded"
        self.check(row, alerts_before, outbox_before)
        self.clock.advance(hours=1)  # keeps the per-address acknowledgement limit out of the way
        return row

    def _max_outbox(self) -> int:
        with self.app.sessions() as session:
            return int(session.scalar(select(func.max(OutboxMessage.id))) or 0)

    def _newest(self) -> InboundMessage | None:
        with self.app.sessions() as session:
            return session.scalars(select(InboundMessage).order_by(InboundMessage.id.desc()).limit(1)).first()

    def check(self, row: InboundMessage, alerts_before: int, outbox_before: int) -> None:
        assert row.status in DONE, f"inbound #{row.id} left {row.status} (attempts {row.attempts}, {row.error})"
        if row.status == "quarantined":
            assert self.count(Quarantine, Quarantine.inbound_id == row.id) == 1
            with self.app.sessions() as session:
                reason = session.scalars(select(Quarantine.reason).where(Quarantine.inbound_id == row.id)).one()
            # Quarantine is a normal end only for input the parser could not read (it crashed on it
            # or ran past its time limit). Our own code raising while applying a parsed message
            # ("processing failed (TypeError)", a database error, ...) is a bug: the drill fails.
            assert PARSER_REASONS.fullmatch(reason or ""), f"inbound #{row.id} quarantined because our own code failed: {reason}"
            alerts = self.count(OutboxMessage, OutboxMessage.kind == "alert")
            assert alerts >= alerts_before + len(MEMBERS), "quarantined without an alert to the committee"
        elif row.status == "processed":
            # A case (new or joined), or committee mail on a reply token, refused and audited.
            assert row.case_id is not None or (row.kind in COMMITTEE_KINDS and self.count(
                Event, Event.action.in_(("command_refused", "command_rejected", "note_added")))), row.kind
        elif row.status == "duplicate":
            assert row.duplicate_of_id is not None
        elif row.status == "machine":
            assert row.kind in ("bounce", "machine")
        else:  # dropped
            assert row.kind == "own_loop"
        with self.app.sessions() as session:
            stuck = session.execute(
                select(OutboxMessage.id, OutboxMessage.kind, OutboxMessage.status, OutboxMessage.last_code)
                .where(OutboxMessage.id > outbox_before, OutboxMessage.status != "sent")).all()
        assert stuck == [], f"mail caused by the message not accepted by the SMTP server: {stuck}"


@pytest.fixture(scope="module", params=BACKENDS)
def pipeline(request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    """One app (one worker parser) for every message of the module, per database backend."""
    with ExitStack() as stack:
        folder = Path(tempfile.mkdtemp(prefix="ci-hostile-"))
        stack.callback(shutil.rmtree, folder, ignore_errors=True)
        if request.param == "sqlite":
            url = f"sqlite:///{folder}/cases.db"
        else:
            url = stack.enter_context(fresh_postgres_database())
        engine = db.make_engine(url)
        db.upgrade(engine)
        engine.dispose()
        receiver = SmtpReceiver()
        receiver.up()
        stack.callback(receiver.down)
        clock = Clock()
        app = maildir_app(folder, url, receiver, clock=clock, smtp={"retry_initial_seconds": 1, "retry_max_seconds": 2},
                          intake={"parse_timeout_seconds": PARSE_TIMEOUT})
        stack.callback(app.close)
        yield Pipeline(app, folder / "Maildir", receiver, clock)


# ----- mutations -------------------------------------------------------------------------------

Mutation = Callable[[bytes, random.Random], bytes]


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[:at], sep, raw[at + len(sep):]
    return raw, b"", b""


def _nl(raw: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in raw else b"\n"


def truncate(raw: bytes, rnd: random.Random) -> bytes:
    return raw[: rnd.randrange(1, max(2, len(raw)))]


def cut_boundaries(raw: bytes, rnd: random.Random) -> bytes:
    lines = raw.split(b"\n")
    marks = [i for i, line in enumerate(lines) if line.startswith(b"--")]
    if not marks:
        return truncate(raw, rnd)
    i = rnd.choice(marks)
    choice = rnd.randrange(3)
    if choice == 0:
        lines[i] = lines[i][: rnd.randrange(2, max(3, len(lines[i])))]  # boundary cut mid-line
    elif choice == 1:
        del lines[i:]  # everything from a boundary on is lost
    else:
        for j in reversed(marks):
            del lines[j]  # no boundary at all
    return b"\n".join(lines)


CHARSETS = [b"utf-7", b"x-unknown-8bit", b"utf-16", b"utf-32-be", b"cp037", b"base64", b"zlib", b"rot13", b"idna",
            b"uu_codec", b"hex", b"punycode", b"", b"\"", b"utf-8*en", b"iso-2022-jp", b"x" * 300]


def wrong_charset(raw: bytes, rnd: random.Random) -> bytes:
    label = rnd.choice(CHARSETS)
    out = re.sub(rb"charset=\"?[^\";\s]*\"?", b'charset="' + label + b'"', raw, flags=re.IGNORECASE)
    head, sep, body = _split(out)
    junk = bytes(rnd.randrange(128, 256) for _ in range(rnd.randrange(1, 200)))
    at = rnd.randrange(0, len(body) + 1)
    subject = b"Subject: =?" + label + b"?B?" + b"////" * 20 + b"?=" + _nl(raw)
    return subject + head + sep + body[:at] + junk + body[at:]


def huge_header(raw: bytes, rnd: random.Random) -> bytes:
    nl = _nl(raw)
    size = rnd.choice((70_000, 300_000, 2_000_000))
    name = rnd.choice((b"Subject", b"X-Huge", b"From", b"References", b"Content-Type"))
    if rnd.random() < 0.5:
        value = (b"w" * 70 + nl + b" ") * (size // 73)  # folded
    else:
        value = b"v" * size  # one line
    return name + b": " + value + nl + raw


def many_headers(raw: bytes, rnd: random.Random) -> bytes:
    nl = _nl(raw)
    count = rnd.choice((5_000, 20_000))
    return b"".join(b"X-Junk-%d: value %d" % (i, i) + nl for i in range(count)) + raw


def deep_nesting(raw: bytes, rnd: random.Random) -> bytes:
    head, sep, body = _split(raw)
    nl = _nl(raw)
    depth = rnd.choice((30, 200, 1_500))
    head = re.sub(rb"(?im)^content-(type|transfer-encoding):.*(\r?\n[ \t].*)*\r?\n?", b"", head)
    inner = b"Content-Type: text/plain" + nl + nl + body
    if rnd.random() < 0.5:
        for i in range(depth):
            b = b"n%d" % i
            inner = (b'Content-Type: multipart/mixed; boundary="' + b + b'"' + nl + nl + b"--" + b + nl
                     + inner + nl + b"--" + b + b"--" + nl)
    else:
        for i in range(min(depth, 300)):
            inner = b"Content-Type: message/rfc822" + nl + nl + b"Subject: level %d" % i + nl + inner
    return head + nl + b"MIME-Version: 1.0" + nl + inner


def binary_junk(raw: bytes, rnd: random.Random) -> bytes:
    junk = rnd.randbytes(rnd.randrange(1, 20_000))
    at = rnd.randrange(0, len(raw) + 1)
    return raw[:at] + junk + raw[at:]


def ten_thousand_recipients(raw: bytes, rnd: random.Random) -> bytes:
    nl = _nl(raw)
    name = rnd.choice((b"To", b"Cc", b"Delivered-To"))
    people = (b"," + nl + b" ").join(b"Person %d <p%d@example.net>" % (i, i) for i in range(10_000))
    return name + b": " + people + nl + raw


BAIT_HEADERS = [
    b"In-Reply-To: " + b"a" * 65_000,
    b"Message-ID: " + b"<" * 60_000,
    b"Subject: " + b"[conduct #" * 6_000,
    b"Subject: " + b"Re: Fwd: AW: " * 5_000,
    b"Subject: " + b"=?utf-8?q?" * 6_000,
    b"Subject: !" + b"!a " * 20_000,
    b"From: '" + b"x" * 60_000 + b" via Group' <g@example.net>",
    b"Reply-To: " + b"@" * 60_000,
    b"Return-Path: <>",
    b"Auto-Submitted: " + b";" * 60_000,
    b"Delivered-To: conduct+bounce-" + b"9" * 5_000 + b"@example.org",
    b"To: conduct+" + b"a" * 5_000 + b"@example.org",
]
BAIT_BODIES = [
    b">" * 300_000,
    b"-- \n" * 50_000,
    b"On Mon, 1 Jan 2024 someone wrote:\n> x\n" * 10_000,
    b"---------- Forwarded message ---------\nFrom: a@b.c\nSubject: x\n\nbody\n" * 2_000,
    b"Alice " + b"- " * 100_000 + b"Example",
    b"\n" * 500_000,
    b"Message-ID: <" + b"m" * 997 + b"\n" * 1 + b"Status: 5." * 50_000,
    b"<div>" * 30_000,
]


def regex_bait(raw: bytes, rnd: random.Random) -> bytes:
    nl = _nl(raw)
    head, sep, body = _split(raw)
    if rnd.random() < 0.5:
        return rnd.choice(BAIT_HEADERS) + nl + raw
    return head + (sep or nl + nl) + rnd.choice(BAIT_BODIES) + body


def line_endings(raw: bytes, rnd: random.Random) -> bytes:
    lone = rnd.choice((b"\r", b"\n\r", b"\r\r\n", b"\x00\n"))
    return raw.replace(b"\r\n", b"\n").replace(b"\n", lone)


MUTATIONS: list[Mutation] = [truncate, cut_boundaries, wrong_charset, huge_header, many_headers, deep_nesting,
                             binary_junk, ten_thousand_recipients, regex_bait, line_endings]


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(source=st.sampled_from(CORPUS), mutation=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32 - 1))
def test_mutated_corpus_messages_all_end_somewhere_visible(pipeline, source, mutation, seed):
    raw = mutation(source.read_bytes(), random.Random(seed))
    pipeline.feed(raw)


# ----- pathological messages, one of each, always -----------------------------------------------


def _mail(headers: bytes = b"", body: bytes = b"hello\n", ctype: bytes = b"text/plain; charset=utf-8") -> bytes:
    return (b"From: Pat <pat@example.net>\nTo: conduct@example.org\nSubject: hostile\n"
            b"Message-ID: <%d@hostile.example.net>\n" % random.getrandbits(64)
            + headers + b"MIME-Version: 1.0\nContent-Type: " + ctype + b"\n\n" + body)


PATHOLOGICAL = {
    "empty": b"",
    "only-whitespace": b" \r\n\r\n \t",
    "not-mail": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40,
    "nul-in-headers": b"From: a@example.net\nSubject: x\x00y\nX\x00Y: z\n\nbody\n",
    "headers-only": b"From: a@example.net\nSubject: no body",
    "ten-thousand-recipients": _mail(b"To: " + b",\n ".join(b"p%d@example.net" for i in range(10_000)) + b"\n"),
    # About half a second of parsing per header: far past the limit, cut there.
    "parse-past-the-time-limit": _mail(b"".join(b"References: " + b"a" * 65_000 + b"\n" for _ in range(30))),
    "multipart-3000-deep": b"From: a@example.net\nSubject: deep\nMIME-Version: 1.0\n" + b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(3000)) + b"text\n",
    "rfc822-500-deep": b"From: a@example.net\nSubject: deep\nMIME-Version: 1.0\n" + b"".join(
        b"Content-Type: message/rfc822\n\nSubject: l%d\n" % i for i in range(500)) + b"\nhello\n",
    "html-nesting": _mail(body=b"<blockquote>" * 40_000 + b"x", ctype=b"text/html"),
    "html-wide-table": _mail(body=b"<table><tr>" + b"<td>x</td>" * 20_000 + b"</tr></table>", ctype=b"text/html"),
    "text-attachment-names": _mail(
        body=b'--B\nContent-Type: text/plain\n\nhi\n--B\nContent-Type: text/plain\nContent-Disposition: attachment; '
             b'filename="n.txt"\n\n' + b"Alice Example Bob Builder Carol Chen Ali CC " * 50_000 + b"\n--B--\n",
        ctype=b'multipart/mixed; boundary="B"'),
    "base64-garbage": _mail(b"Content-Transfer-Encoding: base64\n", body=b"!!!!====%%%%" * 10_000),
    "long-quote-line": _mail(body=b">" * 3_000_000 + b"\n"),
    "bounce-shaped-junk": b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.net\nTo: conduct+bounce-1@example.org\n"
                          b"Subject: Undelivered Mail\nMIME-Version: 1.0\n"
                          b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\n\n'
                          b"--R\nContent-Type: message/delivery-status\n\n" + b"Status: 5.\n" * 50_000 + b"--R--\n",
    "subject-commands": _mail(b"Subject: " + b"!close !ban !assign " * 3_000 + b"\n"),
    # A member's malformed command about an unknown case on their personal token: must be refused
    # with an answer, not crash the workflow into quarantine.
    "personal-token-bad-command": (b"From: alice@example.org\nTo: "
                                   + tokens.reply_address("conduct", "example.org",
                                                          tokens.mint(SECRET.encode(), "personal", None, "alice@example.org")).encode()
                                   + b"\nSubject: [conduct #2026-9999] !decide bogus\nMessage-ID: <bad-command@example.org>\n\nplease\n"),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_message_ends_somewhere_visible(pipeline, name):
    row = pipeline.feed(PATHOLOGICAL[name])
    if name in ("empty", "only-whitespace", "not-mail", "nul-in-headers"):
        assert (row.status, row.attempts) == ("quarantined", 3)  # not mail: kept raw, committee told
    if name == "parse-past-the-time-limit":
        assert (row.status, row.error) == ("quarantined", "parser time limit exceeded")


def test_the_loop_went_on_and_stayed_fast(pipeline):
    """Runs last in this module: everything above went through one app, one worker parser."""
    report = (b"From: Robin <robin@example.net>\nTo: conduct@example.org\nSubject: after the storm\n"
              b"Message-ID: <after-the-storm@example.net>\n\nA normal report after all that.\n")
    row = pipeline.feed(report)
    assert row.status == "processed" and row.case_id is not None
    assert pipeline.receiver.to("robin@example.net"), "the next report was not acknowledged"
    print(f"\nslowest message through the pipeline: {pipeline.slowest:.1f}s")
