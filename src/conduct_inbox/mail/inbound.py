"""What parsing one received mail gives: `InboundMessage`, with its `Attachment`s and the
`ForwardedMessage`s found in it. Plain frozen data, no behaviour beyond header look-up; the
parser worker pickles these to the daemon, so they must stay importable from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int  # of the decoded content, also when the content is omitted
    sha256: str  # of the decoded content, also when the content is omitted
    inline: bool
    content: bytes = field(repr=False)
    #: True when the content was left out (b"") because it is larger than the parser's
    #: attachment limit (`max_attachment_bytes`); size and sha256 still describe it.
    content_omitted: bool = False
    #: True when the attachment's words were read for the member scan (its text is in
    #: `InboundMessage.readable`); False for what cannot be read (an image, an unknown format).
    scanned: bool = False


@dataclass(frozen=True)
class Readable:
    """One piece of text a person could read in a message, for the member-name scan.

    `source` says where it came from and is what `!new` uses to leave out the forwarding
    member's own words: "subject", "body" (the top-level text parts, every alternative),
    "attachment", "filename", "forwarded" (a forwarded message's headers and text).
    """

    source: str
    text: str = field(repr=False)


@dataclass(frozen=True)
class ForwardedMessage:
    subject: str
    from_address: str | None
    from_name: str | None
    text: str


@dataclass(frozen=True)
class InboundMessage:
    """Everything the pipeline needs to know about one received mail."""

    message_id: str | None
    subject: str
    from_address: str | None
    from_name: str | None
    reporter_address: str | None
    reporter_name: str | None
    reply_to: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    delivered_to: tuple[str, ...]
    return_path: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None
    case_ref: str | None
    text: str
    own_text: str
    html_converted: bool
    attachments: tuple[Attachment, ...]
    forwarded: tuple[ForwardedMessage, ...]
    auto_submitted: str | None
    precedence: str | None
    list_id: str | None
    has_list_headers: bool
    loop_header: bool
    is_dsn: bool
    dsn_failed_recipients: tuple[str, ...]
    dsn_original_message_id: str | None
    dsn_permanent: bool
    authentication_results: tuple[str, ...]
    headers: tuple[tuple[str, str], ...]
    body_hash: str
    size: int
    defects: tuple[str, ...]
    #: Everything a person could read in the message (DESIGN "Routing and recusal"), for the scan.
    readable: tuple[Readable, ...] = ()

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive), decoded; None when absent."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None
