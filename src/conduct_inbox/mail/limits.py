"""How much of a message the parser reads, and in what pieces.

MIME nesting and part counts, header and HTML sizes, the chunk sizes the input is read in, and
the size from which a base64 body is decoded while the message streams in. They live together
because the entry point, the header helpers, the MIME walk and the blob filter must agree on
them (the blob filter, for one, stops following MIME parts where the walk stops reading them).
"""

_MAX_DEPTH = 24  # MIME nesting we walk; deeper parts are ignored (defect)
_MAX_FORWARD_DEPTH = 5  # message/rfc822 inside message/rfc822 ...
_MAX_PARTS = 500
_HEADER_LIMIT = 65_536  # characters of one header value we decode
_ADDRESS_LIMIT = 16_384  # characters of an address header we parse
_MAX_HTML = 2_000_000  # characters of HTML converted; inscriptis is pure Python
_FEED_CHUNK = 1 << 20  # bytes handed to the MIME parser and the body hash at a time
_HEAD_BYTES = 1 << 20  # bytes read first: where the header block is checked
#: A base64 body at least this long (encoded) is decoded while the message streams in, never
#: handed to the MIME parser whole (see _BlobFilter). Smaller messages take the plain path.
_BLOB_MIN = 1 << 20
#: Text attachments up to this size keep their content whatever the attachment limit: the
#: the case services scan them for the names of committee members (recusal).
TEXT_SCAN_BYTES = 5 * 1024 * 1024
