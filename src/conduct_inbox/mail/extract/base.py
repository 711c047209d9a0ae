"""Limits, the results and the text sink shared by the extract readers."""

from __future__ import annotations

from dataclasses import dataclass

#: Total declared uncompressed size of an office document's zip members we agree to read;
#: zipfile never yields more than a member's declared size, so this bounds zip bombs.
MAX_UNZIPPED_BYTES = 64 * 1024 * 1024
MAX_ZIP_MEMBERS = 5_000
MAX_PDF_PAGES = 500
#: Annotations read per PDF page, and form fields (and their kids) per PDF.
MAX_PDF_ANNOTATIONS = 2_000
MAX_PDF_FIELDS = 20_000
#: Characters of RTF source converted (its text is a fraction of it): a few seconds of the
#: converter's work at worst (dense control words), within the parser worker's time limit.
MAX_RTF_CHARS = 16_000_000
#: Characters of text taken from one attachment, and from all attachments of one message.
MAX_TEXT_CHARS = 6_000_000
MAX_TOTAL_CHARS = 24_000_000
#: Bytes charset detection looks at (the whole text is then decoded with what it found).
_SNIFF_BYTES = 256 * 1024
_MAX_HTML_CHARS = 2_000_000  # inscriptis is pure Python


class Budget:
    """Characters still allowed for one message's attachment texts (shared across forwards)."""

    def __init__(self, chars: int = MAX_TOTAL_CHARS) -> None:
        self.chars = chars


@dataclass(frozen=True)
class Extracted:
    """`text` read from an attachment; `complete` is False when limits cut it short."""

    text: str
    complete: bool = True


class _Truncated(Exception):
    """Raised inside a walker once its character limit is reached."""


class _Sink:
    """Collects text pieces up to a character limit."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def add(self, text: str | None) -> None:
        if text:
            self.parts.append(text)
            self.size += len(text)
            if self.size > self.limit:
                raise _Truncated

    def text(self) -> str:
        return "".join(self.parts)[: self.limit]


def _ext(filename: str | None) -> str:
    name = (filename or "").lower().strip()
    return name[name.rfind(".") :] if "." in name else ""
