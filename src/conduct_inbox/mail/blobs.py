"""The blob filter: large base64 bodies decoded while the message streams in, so that the MIME
parser never holds them whole (see the comment below). `_BlobFilter` sits between the input and
the parser and leaves a marker line for each `_Blob`; `_blob_of` finds a part's blob again by
its marker when the MIME walk reads the part.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import secrets
from collections.abc import Callable
from email.message import Message

from conduct_inbox.mail.charsets import Defects
from conduct_inbox.mail.limits import _BLOB_MIN, _MAX_PARTS

# --- large base64 bodies -----------------------------------------------------------------------
#
# The MIME parser keeps every body line as a string until the part ends, then joins them: a
# 25 MB attachment costs about four times its size at once. _BlobFilter sits between the input
# and the parser: where a part that is neither text, multipart nor message/* and declares
# base64 starts its body with at least _BLOB_MIN bytes of nothing but base64 characters and line
# breaks, it decodes those bytes as they stream by (sha256, size, and the content only up to the
# keep limit) and hands the parser one marker line instead. Base64 decoding skips line breaks and
# the run ends on whole 4-character groups (the 0-3 characters left are passed on), so the
# marker's decoded content followed by decoding the rest of the payload equals decoding the
# payload whole. The filter follows the MIME structure only conservatively: whenever it is
# unsure where the parser is (bare CRs, a header block it cannot follow, an unknown boundary), it
# passes the input through unchanged. The marker holds a random token drawn for every parse.


class _Blob:
    """One large base64 body, decoded while the message streamed in."""

    __slots__ = ("hasher", "size", "text_hasher", "chunks", "keep_limit", "kept")

    def __init__(self, keep_limit: int | None) -> None:
        self.hasher = hashlib.sha256()
        self.size = 0
        #: sha256 of the base64 text (whole groups), for a payload the email package cannot decode.
        self.text_hasher = hashlib.sha256()
        self.chunks: list[bytes] = []
        self.keep_limit = keep_limit
        self.kept = True  # False once the content outgrew keep_limit and was dropped

    def add(self, text: bytes) -> None:
        """Decode whole 4-character groups of base64 text."""
        self.text_hasher.update(text)
        data = binascii.a2b_base64(text)
        self.hasher.update(data)
        self.size += len(data)
        if self.kept:
            if self.keep_limit is not None and self.size > self.keep_limit:
                self.kept, self.chunks = False, []
            else:
                self.chunks.append(data)

    def described(self, tail: bytes, as_text: bool) -> tuple[int, str]:
        """(size, sha256) of the content followed by `tail`; of the base64 text if `as_text`."""
        digest = (self.text_hasher if as_text else self.hasher).copy()
        digest.update(tail)
        return (self.size // 3 * 4 if as_text else self.size) + len(tail), digest.hexdigest()

    def take(self, tail: bytes, as_text: bool) -> bytes:
        """The whole content (kept chunks, then `tail`); the chunks are released."""
        chunks, self.chunks = self.chunks, []
        if as_text:  # whole groups without padding: encoding the bytes again gives the same text
            chunks = [base64.b64encode(b"".join(chunks))]
        chunks.append(tail)
        return b"".join(chunks)


class _Blobs:
    """The blobs of one parse, found again by the marker that stands in for them."""

    def __init__(self, keep_limit: int | None) -> None:
        self.prefix = f"!conduct-inbox-blob-{secrets.token_hex(16)}-"
        self.keep_limit = keep_limit
        self.items: list[_Blob] = []

    def new(self) -> tuple[_Blob, bytes]:
        blob = _Blob(self.keep_limit)
        self.items.append(blob)
        # 16 + 32 + 8 letters and digits: base64 groups stay aligned behind a marker.
        return blob, f"{self.prefix}{len(self.items) - 1:08d}!\n".encode("ascii")

    def find(self, payload: str) -> tuple[_Blob, str] | None:
        if not payload.startswith(self.prefix):
            return None
        end = payload.find("!", len(self.prefix))
        number = payload[len(self.prefix) : end]
        if end < 0 or not number.isdigit() or int(number) >= len(self.items):
            return None
        return self.items[int(number)], payload[end + 1 :]


def _decode_rest(rest: str, defects: Defects) -> tuple[bytes, bool]:
    """Decode what followed a blob's marker in its payload (0-3 characters, padding, junk) as
    _payload decodes a whole payload (the blob in front of it ends on whole groups); True
    when the payload cannot be decoded and, as the email package does, stays base64 text."""
    try:
        return binascii.a2b_base64(rest.encode("ascii", "surrogateescape")), False
    except (binascii.Error, ValueError):
        defects.add("damaged base64 content")
    # What the email package does next (email._encoded_words.decode_b).
    data = b"".join(rest.encode("ascii", "replace").splitlines())
    try:
        return base64.b64decode(data + b"==="[: -len(data) % 4], validate=True), False
    except (binascii.Error, ValueError):
        pass
    for padding in (b"", b"=="):
        try:
            return binascii.a2b_base64(data + padding), False
        except (binascii.Error, ValueError):
            pass
    return data, True  # one character too many to decode


def _blob_of(part: Message, payload: object, blobs: _Blobs | None, defects: Defects) -> tuple[_Blob, bytes, bool] | None:
    """(blob, decoded rest, as text) when a part's payload is a blob marker (see _decode_rest)."""
    if blobs is None or not blobs.items or not isinstance(payload, str):
        return None
    found = blobs.find(payload)
    if found is None:
        return None
    blob, rest = found
    tail, as_text = _decode_rest(rest, defects)
    if as_text:
        # The text as the email package keeps it: its bytes, where get_payload() replaced 8-bit ones.
        marker = payload[: len(payload) - len(rest)].encode("ascii")
        try:
            kept = part.get_payload(decode=True)
        except Exception:  # the email package on input it did not foresee
            kept = None
        if isinstance(kept, bytes) and kept.startswith(marker):
            tail = kept[len(marker) :]
    return blob, tail, as_text


_RUN_BREAK = re.compile(rb"[^A-Za-z0-9+/\r\n]|\r(?!\n)")  # what ends a run of base64 lines
_HEADER_START = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:")  # the parser's header line test
#: A boundary parameter we read as the email package does; anything less plain is not followed.
_BOUNDARY_PARAM = re.compile(rb'(?:^|;)\s*boundary\s*=\s*(?:"([^"\\\r\n]*)"|([^\s;"\\]+))\s*(?=;|$)', re.IGNORECASE)
_LONG_LINE = 1 << 16  # a line longer than this is passed on before its end is seen
_DECODE_AT = 1 << 18  # base64 characters gathered before they are decoded
_MAX_BOUNDARIES = 64  # more multipart boundaries than this: the filter stops and passes all on
_MAX_ENTITIES = 2 * _MAX_PARTS  # more MIME parts than this: likewise (the walk reads 500)

_HEAD, _BODY, _RUN, _BLOB, _PASS = range(5)


@functools.lru_cache(maxsize=64)
def _delimiter_pattern(pattern: bytes) -> re.Pattern[bytes]:
    return re.compile(pattern, re.MULTILINE)


class _BlobFilter:
    """Between the input and the MIME parser: replaces large base64 bodies by blob markers."""

    def __init__(self, sink: Callable[[bytes], object], blobs: _Blobs) -> None:
        self._sink = sink
        self._blobs = blobs
        self._out: list[bytes] = []
        #: Boundaries of the multiparts we are in, outermost first: as the parser's stack of
        #: end-of-part matchers, a delimiter line of any of them ends the parts inside it.
        self._stack: list[bytes] = []
        self._delimiters: re.Pattern[bytes] | None = None  # finds their delimiter lines
        self._partial = b""  # the start of a line not complete yet (or a CR that may pair with a LF)
        self._line_start = True  # whether the next byte starts a line
        self._state = _HEAD
        self._entities = 0
        self._new_entity()
        self._run: list[bytes] = []  # a run not yet long enough to be a blob, kept as it came
        self._run_size = 0
        self._last_nl = True  # the run so far ends with a line break
        self._blob: _Blob | None = None
        self._chars = bytearray()  # base64 characters of the blob not decoded yet

    def _new_entity(self, usable: bool = True) -> None:
        self._entities += 1
        if self._entities > _MAX_ENTITIES:
            self._state = _PASS
        self._ctype: bytearray | None = None
        self._cte: bytearray | None = None
        self._collecting: bytearray | None = None
        self._usable = usable  # False once the header block did something we do not follow
        self._header_lines = 0
        self._from_last = False

    # -- input ---------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk if self._partial else chunk
        self._partial = b""
        pos, end = 0, len(data)
        while pos < end:
            if self._state in (_RUN, _BLOB):
                pos = self._take_run(data, pos, final=False)
                continue
            if self._state in (_BODY, _PASS):
                pos = self._skip_body(data, pos)
                if pos >= end or self._partial:
                    break
            nl = data.find(b"\n", pos)
            if nl < 0:
                if end - pos > _LONG_LINE:
                    self._long_line(data[pos:])
                else:
                    self._partial = data[pos:]
                break
            self._line(data[pos : nl + 1])
            pos = nl + 1
        self._flush()

    def close(self) -> None:
        data, self._partial = self._partial, b""
        pos = 0
        if self._state in (_RUN, _BLOB):
            if data:
                pos = self._take_run(data, 0, final=True)
            if self._state in (_RUN, _BLOB):
                self._end_run(at_line_start=False)
                self._state = _BODY
        if pos < len(data):
            self._out.append(data[pos:])
        self._flush()

    def _skip_body(self, data: bytes, pos: int) -> int:
        """Pass a body on up to the next boundary line (or up to an incomplete last line)."""
        complete = data.rfind(b"\n", pos) + 1  # what follows is a line not complete yet
        found = None
        if self._state == _BODY and self._delimiters is not None and complete > pos:
            found = self._delimiters.search(data, pos, complete)
            if found is not None and found.start() == pos and not self._line_start:
                found = self._delimiters.search(data, pos + 1, complete)
        if found is not None:
            if found.start() > pos:
                self._out.append(data[pos : found.start()])
                self._line_start = True
            return found.start()  # the boundary line goes through _line
        stop = complete if complete > pos else pos
        if stop > pos:
            self._out.append(data[pos:stop])
            self._line_start = True
        rest = len(data) - stop
        if rest > _LONG_LINE or self._state == _PASS:
            self._out.append(data[stop:])
            self._line_start = self._line_start and rest == 0
        elif rest:
            self._partial = data[stop:]
        return len(data)

    def _flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            self._sink(b"".join(out))

    # -- lines outside runs ----------------------------------------------------------------------

    def _long_line(self, data: bytes) -> None:
        """Part of a line too long to hold: pass it on; it is no boundary and no header we track."""
        self._out.append(data)
        if self._line_start and self._state == _HEAD:
            self._usable = False
            self._collecting = None
        self._line_start = False

    def _line(self, line: bytes) -> None:
        start, self._line_start = self._line_start, True
        self._out.append(line)
        if not start:
            return  # the end of a long line
        text = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        bare_cr = b"\r" in text  # the parser also breaks lines there; we do not follow it
        if text.startswith(b"--") and self._delimiter(text, bare_cr):
            return
        if self._state != _HEAD:
            return
        if not text:
            self._end_headers()
            return
        if bare_cr:
            self._state = _BODY
            return
        self._header_lines += 1
        if text[:1] in (b" ", b"\t"):
            if self._collecting is not None:
                self._collecting += b"\n" + text
            return
        self._collecting = None
        if not _HEADER_START.match(text):
            self._state = _BODY  # the parser starts the body at this line
            return
        self._from_last = text.startswith(b"From ") and self._header_lines > 1
        colon = text.find(b":")
        if colon <= 0:
            return
        name = text[:colon].lower()
        if name == b"content-type" and self._ctype is None:
            self._ctype = self._collecting = bytearray(text[colon + 1 :])
        elif name == b"content-transfer-encoding" and self._cte is None:
            self._cte = self._collecting = bytearray(text[colon + 1 :])

    def _delimiter(self, text: bytes, bare_cr: bool) -> bool:
        """Follow a delimiter line of one of the multiparts we are in; False if it is none."""
        for level in range(len(self._stack) - 1, -1, -1):  # the innermost first, as the parser
            boundary = self._stack[level]
            if not text.startswith(boundary, 2):
                continue
            rest = text[2 + len(boundary) :]
            close = rest.startswith(b"--")
            if (rest[2:] if close else rest).strip(b" \t\r"):
                continue
            del self._stack[level if close else level + 1 :]
            self._set_delimiters()
            if close:
                self._state = _BODY  # the epilogue
            else:
                self._state = _HEAD
                self._new_entity(usable=not bare_cr)
            return True
        return False

    def _set_delimiters(self) -> None:
        if not self._stack:
            self._delimiters = None
            return
        names = b"|".join(re.escape(b) for b in sorted(set(self._stack)))
        # The parser's delimiter line: --boundary, maybe "--", blanks (we also allow CRs).
        self._delimiters = _delimiter_pattern(rb"^--(?:" + names + rb")(?:--)?[ \t\r]*$")

    def _end_headers(self) -> None:
        """The blank line after a header block: decide how to read the body."""
        ctype = ""
        if self._ctype is not None:
            ctype = bytes(self._ctype).decode("latin-1").partition(";")[0].strip().lower()
            if ctype.count("/") != 1:
                ctype = "text/plain"
            if ctype.startswith("multipart/"):
                params = bytes(self._ctype).partition(b";")[2]
                found = _BOUNDARY_PARAM.findall(b";" + params)
                boundary = (found[0][0] or found[0][1]).rstrip() if len(found) == 1 else b""
                if boundary and boundary.isascii() and b"boundary" not in params.lower().replace(b"boundary", b"", 1):
                    if len(self._stack) >= _MAX_BOUNDARIES or boundary in self._stack:
                        self._state = _PASS  # too deep, or nested alike: no blobs from here on
                        return
                    self._stack.append(boundary)
                    self._set_delimiters()
                # else: a multipart whose boundary we do not follow; its delimiters stay body lines
        maintype = ctype.partition("/")[0]
        usable = self._usable and not self._from_last
        # Exactly "base64" (folded or with trailing blanks, the email package would not decode it).
        base64_body = self._cte is not None and bytes(self._cte).lstrip(b" \t").lower() == b"base64"
        if maintype == "message" and ctype != "message/delivery-status" and usable:
            self._state = _HEAD  # the parser reads an inner message: its header block follows
            self._new_entity()
        elif usable and base64_body and maintype not in ("", "text", "multipart", "message"):
            self._state = _RUN
            self._run, self._run_size, self._last_nl = [], 0, True
        else:
            self._state = _BODY

    # -- runs of base64 lines ------------------------------------------------------------------

    def _take_run(self, data: bytes, pos: int, final: bool) -> int:
        """Consume the run from data[pos:]; return where the input continues outside it."""
        m = _RUN_BREAK.search(data, pos)
        if m is None:
            self._consume(data[pos:])
            return len(data)
        stop = m.start()
        if stop == len(data) - 1 and not final and data[stop:] == b"\r":
            self._consume(data[pos:stop])
            self._partial = b"\r"  # may pair with a LF in the next chunk
            return len(data)
        if stop > pos:
            self._consume(data[pos:stop])
        at_line_start = self._last_nl
        self._end_run(at_line_start)
        self._state = _BODY
        self._line_start = at_line_start
        return stop

    def _consume(self, seg: bytes) -> None:
        if not seg:
            return
        self._last_nl = seg.endswith(b"\n")
        if self._state == _BLOB:
            self._decode(seg)
            return
        self._run.append(seg)
        self._run_size += len(seg)
        if self._run_size >= _BLOB_MIN:
            self._blob, marker = self._blobs.new()
            self._out.append(marker)
            self._state = _BLOB
            run, self._run, self._run_size = self._run, [], 0
            for piece in run:
                self._decode(piece)

    def _decode(self, seg: bytes) -> None:
        self._chars += seg.translate(None, b"\r\n")
        if len(self._chars) >= _DECODE_AT:
            self._decode_groups()

    def _decode_groups(self) -> None:
        whole = len(self._chars) - len(self._chars) % 4
        if whole and self._blob is not None:
            self._blob.add(bytes(self._chars[:whole]))
            del self._chars[:whole]

    def _end_run(self, at_line_start: bool) -> None:
        if self._state == _RUN:  # too short to matter: pass it on as it came
            self._out.extend(self._run)
            self._run, self._run_size = [], 0
            return
        self._decode_groups()
        leftover, self._chars, self._blob = bytes(self._chars), bytearray(), None
        if leftover:
            # A line break keeps what follows (a boundary, a padding line) at a line start.
            self._out.append(leftover + b"\n" if at_line_start else leftover)
