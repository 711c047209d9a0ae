"""Big reports: the parser streams large base64 attachments (same result as the plain parser),
leaves out content over the attachment limit, runs in a small worker process fed by temporary
file, and IMAP fetches large messages in pieces."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduct_inbox.adapters import imap, imap_client
from conduct_inbox.adapters.parsing import INLINE_BYTES, InlineParser, ParseFailed, ParseTimeout, WorkerParser
from conduct_inbox.errors import MalformedMessage
from conduct_inbox.mail import blobs as blobs_module
from conduct_inbox.mail import parse as parse_module
from conduct_inbox.mail.parse import TEXT_SCAN_BYTES, InboundMessage, parse, parse_file
from conduct_inbox.ports import MailCopy
from tests.faults import faulty_parse
from tests.fixtures.dovecot import DovecotServer

CORPUS = Path(__file__).parent.parent / "data" / "eml"
MB = 1024 * 1024


def _b64_lines(data: bytes, width: int = 76, nl: str = "\n") -> str:
    text = base64.b64encode(data).decode()
    return nl.join(text[i : i + width] for i in range(0, len(text), width))


def _report(parts: list[tuple[str, str, bytes]], nl: str = "\n") -> bytes:
    """A report with a text body and (content type, filename, content) base64 attachments."""
    out = [
        "From: Reporter <reporter@example.net>", "To: conduct@example.org", "Subject: recording",
        "Message-ID: <big@example.net>", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b1"',
        "", "--b1", "Content-Type: text/plain; charset=utf-8", "", "What happened is attached.",
    ]
    for ctype, filename, data in parts:
        out += ["--b1", f'Content-Type: {ctype}; name="{filename}"', "Content-Transfer-Encoding: base64",
                f'Content-Disposition: attachment; filename="{filename}"', "", _b64_lines(data, nl=nl)]
    out += ["--b1--", ""]
    return nl.join(out).encode()


# _BLOB_MIN is read by the entry point (parse) and by the blob filter (blobs): set it in both.
def _unfiltered(raw: bytes) -> InboundMessage | str:
    saved = parse_module._BLOB_MIN
    parse_module._BLOB_MIN = blobs_module._BLOB_MIN = 1 << 62
    try:
        return parse(raw)
    except MalformedMessage as exc:
        return f"malformed: {exc}"
    finally:
        parse_module._BLOB_MIN = blobs_module._BLOB_MIN = saved


def _filtered(raw: bytes, blob_min: int, chunk: int) -> InboundMessage | str:
    saved = parse_module._BLOB_MIN, parse_module._FEED_CHUNK
    parse_module._BLOB_MIN, parse_module._FEED_CHUNK = blob_min, chunk
    blobs_module._BLOB_MIN = blob_min
    try:
        return parse(raw)
    except MalformedMessage as exc:
        return f"malformed: {exc}"
    finally:
        parse_module._BLOB_MIN, parse_module._FEED_CHUNK = saved
        blobs_module._BLOB_MIN = saved[0]


# --- streaming large base64 bodies: the same result ---------------------------------------------


def test_large_attachment_bypasses_the_mime_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 * MB)
    raw = _report([("application/pdf", "minutes.pdf", data)], nl="\r\n")
    plain = _unfiltered(raw)
    fed: list[int] = []
    original = parse_module.email.feedparser.BytesFeedParser.feed

    def counting_feed(self: object, chunk: bytes) -> None:
        fed.append(len(chunk))
        original(self, chunk)  # type: ignore[arg-type]

    monkeypatch.setattr(parse_module.email.feedparser.BytesFeedParser, "feed", counting_feed)
    msg = parse(raw)
    [pdf] = msg.attachments
    assert (pdf.filename, pdf.size, pdf.sha256, pdf.content) == ("minutes.pdf", len(data), hashlib.sha256(data).hexdigest(), data)
    assert msg.text == "What happened is attached."
    assert msg == plain
    assert sum(fed) < 10_000, "the base64 text went through the MIME parser"


@pytest.mark.parametrize("name", sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.eml")))
def test_corpus_through_the_filter_parses_the_same(name: str) -> None:
    raw = (CORPUS / name).read_bytes()
    expected = _unfiltered(raw)
    for blob_min, chunk in ((16, 1 << 20), (64, 7), (4, 1)):
        assert _filtered(raw, blob_min, chunk) == expected, (blob_min, chunk)


_PDF = "Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n"


@pytest.mark.parametrize("part", [
    "--b1\r\r\n" + _PDF + "\n{body}\n--b1--\n",  # the parser ends the header block at once
    "--b1\nContent-Type: application/pdf\rX-A: 1\nContent-Transfer-Encoding: base64\n\n{body}\n--b1--\n",
    "--b1\nContent-Type: application/pdf\nX-A: 1\r--b1\nContent-Type: text/plain\n"
    "Content-Transfer-Encoding: base64\n\n{body}\n--b1--\n",  # a boundary after a bare CR
    "--b1\n" + _PDF + "\r\r\n{body}\n--b1--\n",
    "--b1\n" + _PDF + "From x\n\n{body}\n--b1--\n",  # the parser reads the From line as body
    "--b1\n" + _PDF + "\n{body}=\n--b1\n" + _PDF + "\n{body}\n--b1--\n",
    "--b1\n" + _PDF + "\n{body}-\n--b1\n--b1--\n",
    "--b1\n" + _PDF + "\n{body}",  # no closing boundary, no final line break
], ids=["boundary-cr", "header-cr", "hidden-boundary", "blank-cr", "from-last", "two", "junk", "eof"])
def test_structures_the_filter_must_not_misread(part: str) -> None:
    body = _b64_lines(bytes(range(256)) * 11 + b"z")
    raw = ('From: a@example.org\nSubject: s\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\n'
           + part.format(body=body)).encode()
    expected = _unfiltered(raw)
    for blob_min, chunk in ((64, 1 << 20), (16, 3), (1000, 1)):
        assert _filtered(raw, blob_min, chunk) == expected, (blob_min, chunk)


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    boundary = draw(st.sampled_from(["b1", "=_x y", "b1--"]))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        data = draw(st.binary(max_size=600))
        body = _b64_lines(data, draw(st.sampled_from([76, 64, 4, 2000])), nl)
        body = draw(st.sampled_from([body, body.rstrip("="), body[:-1], body + nl + "junk!", "x" + body, body + "\r"]))
        kind = draw(st.sampled_from(["pdf", "text", "forward", "odd"]))
        if kind == "pdf":
            parts.append(f"Content-Type: application/pdf{nl}Content-Transfer-Encoding: base64{nl}{nl}{body}")
        elif kind == "odd":
            cte = draw(st.sampled_from(["base64", " BASE64 ", "base64\r", f"base64{nl} x"]))
            extra = draw(st.sampled_from(["", f"From someone{nl}", f"Content-Type: text/plain{nl}"]))
            parts.append(f"Content-type: image/png{nl}Content-Transfer-Encoding: {cte}{nl}{extra}{nl}{body}")
        elif kind == "text":
            parts.append(f"Content-Type: text/plain{nl}Content-Transfer-Encoding: base64{nl}{nl}{body}")
        else:
            parts.append(
                f"Content-Type: message/rfc822{nl}{nl}From: x@example.org{nl}Subject: inner{nl}"
                f'Content-Type: multipart/mixed; boundary="in"{nl}{nl}--in{nl}Content-Type: text/plain{nl}{nl}hi{nl}'
                f"--in{nl}Content-Type: video/mp4{nl}Content-Transfer-Encoding: base64{nl}{nl}{body}{nl}--in--{nl}"
            )
    text = (f"From: a@example.org{nl}Subject: s{nl}MIME-Version: 1.0{nl}"
            f'Content-Type: multipart/mixed; boundary="{boundary}"{nl}{nl}preamble{nl}')
    text += "".join(f"--{boundary}{nl}{part}{nl}" for part in parts) + f"--{boundary}--{nl}"
    raw = bytearray(text.encode())
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        op = draw(st.sampled_from(["flip", "cut", "junk", "cr"]))
        if op == "flip" and raw:
            raw[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del raw[at:]
        elif op == "cr":
            raw[at:at] = b"\r"
        else:
            raw[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_messages(), st.sampled_from([(8, 1 << 20), (32, 5), (100, 1), (300, 64)]))
def test_filtered_parse_equals_the_plain_parse(raw: bytes, setting: tuple[int, int]) -> None:
    assert _filtered(raw, *setting) == _unfiltered(raw)


# --- the attachment limit -------------------------------------------------------------------------


def test_content_over_the_limit_is_left_out_but_described() -> None:
    video, notes, logo = os.urandom(3 * MB), b"Alex said it again.\n" * 100_000, os.urandom(200_000)
    raw = _report([("video/mp4", "clip.mp4", video), ("text/plain", "notes.txt", notes), ("image/png", "logo.png", logo)])
    limited = parse(raw, max_attachment_bytes=1 * MB)
    clip, text, image = limited.attachments
    assert (clip.size, clip.sha256, clip.content, clip.content_omitted) == (len(video), hashlib.sha256(video).hexdigest(), b"", True)
    assert len(notes) > 1 * MB and len(notes) <= TEXT_SCAN_BYTES
    assert (text.content, text.content_omitted) == (notes, False), "text attachments up to 5 MB are scanned for names"
    assert (image.content, image.content_omitted) == (logo, False)
    unlimited = parse(raw)
    assert [a.content for a in unlimited.attachments] == [video, notes, logo]
    assert [(a.size, a.sha256) for a in unlimited.attachments] == [(a.size, a.sha256) for a in limited.attachments]
    assert InlineParser(max_attachment_bytes=1 * MB)(raw).attachments[0].content_omitted


def test_text_attachment_over_the_scan_size_and_the_limit_is_left_out() -> None:
    text = b"x" * (TEXT_SCAN_BYTES + 10)
    [att] = parse(_report([("text/plain", "log.txt", text)]), max_attachment_bytes=MB).attachments
    assert (att.size, att.content_omitted, att.content) == (len(text), True, b"")


def test_twenty_five_megabyte_attachment_from_a_file_in_little_memory(tmp_path: Path) -> None:
    video = os.urandom(25 * MB)
    path = tmp_path / "big.eml"
    path.write_bytes(_report([("video/mp4", "recording.mp4", video)], nl="\r\n"))
    digest = hashlib.sha256(video).hexdigest()
    del video
    tracemalloc.start()
    try:
        start = time.perf_counter()
        msg = parse_file(path, max_attachment_bytes=10 * MB)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [att] = msg.attachments
    assert (att.filename, att.size, att.sha256, att.content_omitted) == ("recording.mp4", 25 * MB, digest, True)
    assert msg.text == "What happened is attached."
    assert peak < 16 * MB, f"peak {peak / MB:.1f} MB for a {path.stat().st_size / MB:.1f} MB message"
    assert elapsed < 10


# --- the worker process ---------------------------------------------------------------------------


@pytest.fixture()
def worker() -> Iterator[WorkerParser]:
    parser = WorkerParser(timeout=5.0, max_attachment_bytes=1 * MB)
    yield parser
    parser.close()


def _mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_worker_is_lean_and_parses_small_and_large_reports(worker: WorkerParser) -> None:
    small = _report([("image/png", "a.png", b"\x89PNG small")])
    assert worker(small).attachments[0].content == b"\x89PNG small"
    video = os.urandom(INLINE_BYTES + MB)
    big = worker(_report([("video/mp4", "clip.mp4", video)]))
    assert (big.attachments[0].size, big.attachments[0].content_omitted) == (len(video), True)
    pid = worker._worker.process.pid  # type: ignore[union-attr]
    maps = _mapped_files(pid)
    assert "sqlalchemy" not in maps and "pydantic" not in maps, "the worker imported the daemon's modules"
    rss_kb = int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])
    assert rss_kb < 60 * 1024, f"worker uses {rss_kb // 1024} MB"


def test_large_report_travels_by_private_file_deleted_after_the_parse(worker: WorkerParser) -> None:
    raw = _report([("video/mp4", "clip.mp4", os.urandom(INLINE_BYTES))])
    worker(raw)
    folder = Path(worker._folder or "")
    assert folder.is_dir() and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert list(folder.iterdir()) == []
    with pytest.raises(ParseFailed, match="not a mail message"):
        worker(b"\0" * (INLINE_BYTES + 1))
    assert list(folder.iterdir()) == []
    worker.close()
    assert not folder.exists()


def test_parent_keeps_no_copy_of_a_large_report(worker: WorkerParser) -> None:
    raw = _report([("video/mp4", "clip.mp4", os.urandom(8 * MB))])
    worker(raw)  # the worker is running
    tracemalloc.start()
    try:
        msg = worker(raw)
        del msg
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < MB and peak < 2 * MB, (current, peak)


def test_worker_faults_are_failed_attempts_and_the_worker_is_replaced() -> None:
    parser = WorkerParser(timeout=0.5, function=faulty_parse)
    try:
        good = b"From: a@example.org\nSubject: fine\n\nhello\n"
        assert parser(good).subject == "fine"
        first = parser._worker.process.pid  # type: ignore[union-attr]
        with pytest.raises(ParseFailed, match="RecursionError"):
            parser(b"From: a@example.org\nX-Test-Fault: crash\n\nx\n")
        with pytest.raises(ParseFailed, match="died"):
            parser(b"From: a@example.org\nX-Test-Fault: die\n\nx\n")
        start = time.monotonic()
        with pytest.raises(ParseTimeout):
            parser(b"From: a@example.org\nX-Test-Fault: hang\n\nx\n")
        assert time.monotonic() - start < 5
        assert parser(good).subject == "fine"
        assert parser._worker.process.pid != first  # type: ignore[union-attr]
        hanging = parser._worker
        with pytest.raises(ParseTimeout):
            parser(b"From: a@example.org\nX-Test-Fault: hang\n\nx\n" + b"x" * INLINE_BYTES)
        assert hanging is not None and hanging.process.poll() is not None, "the hanging worker was not killed"
    finally:
        parser.close()


def test_closing_ends_the_worker() -> None:
    parser = WorkerParser(timeout=5.0)
    parser(b"From: a@example.org\nSubject: hi\n\nhello\n")
    process = parser._worker.process  # type: ignore[union-attr]
    parser.close()
    assert process.poll() is not None


# --- IMAP: large messages in pieces ---------------------------------------------------------------


def test_large_messages_are_fetched_in_pieces_unchanged_and_unseen(
    dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap, "LARGE_MESSAGE_BYTES", 64 * 1024)
    monkeypatch.setattr(imap_client, "FETCH_PIECE_BYTES", 16 * 1024)
    user = dovecot.new_user()
    small = b"From: a@example.org\r\nSubject: small\r\n\r\nhello\r\n"
    large = _report([("video/mp4", "clip.mp4", os.urandom(150_000))], nl="\r\n")
    head = b"From: a@example.org\r\nSubject: exact\r\n\r\n"
    exact = head + b"x" * (8 * 16 * 1024 - len(head) - 2) + b"\r\n"  # a whole number of pieces
    uids = [dovecot.append(user, raw) for raw in (small, large, exact)]
    pieces: list[str] = []
    mailbox = dovecot.mailbox(user)
    mailbox.connect()
    try:
        original = imap.IMAPClient.fetch

        def spy(self: object, messages: object, data: list[str], *args: object, **kwargs: object) -> object:
            pieces.extend(d for d in data if "<" in d)
            return original(self, messages, data, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(imap.IMAPClient, "fetch", spy)
        got = mailbox.fetch([*uids, 999])
        assert got == dict(zip(uids, (small, large, exact)))
        assert len(pieces) >= 10, "the large messages were not fetched in pieces"
        assert mailbox.delete_copies([MailCopy(None, len(large), hashlib.sha256(large).hexdigest())]) == 0
    finally:
        mailbox.close()
    flags = {uid: f for uid, _, f in dovecot.folder_state(user)}
    assert all(b"\\Seen" not in flags[uid] for uid in uids)


def test_retention_deletes_a_large_copy_checked_in_pieces(dovecot: DovecotServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imap_client, "FETCH_PIECE_BYTES", 16 * 1024)
    user = dovecot.new_user()
    large = _report([("video/mp4", "clip.mp4", os.urandom(100_000))], nl="\r\n")
    other = large.replace(b"Subject: recording", b"Subject: recordinG")
    dovecot.append(user, large, folder="Processed")
    dovecot.append(user, other, folder="Processed")
    mailbox = dovecot.mailbox(user)
    mailbox.connect()
    try:
        assert mailbox.delete_copies([MailCopy("big@example.net", len(large), hashlib.sha256(large).hexdigest())]) == 1
    finally:
        mailbox.close()
    assert dovecot.folder_messages(user, "Processed") == [other]
