"""The project's own exceptions; adapters translate library errors into these.

    ConductInboxError
    ├── ConfigError                 bad configuration (exit 2)
    ├── DatabaseNotCurrent          schema not at the alembic head
    ├── MalformedMessage            input that is not a mail message at all
    ├── MailboxUnavailable          IMAP/Maildir cannot be reached or logged into (retry later)
    ├── DeliveryOutage              SMTP as a whole is unusable: connect, AUTH, MAIL FROM, 4xx (retry later)
    ├── TokenUnavailable            no OAuth2 access token could be obtained (an outage of the mailbox / SMTP)
    ├── InstanceLocked              another daemon already owns this SQLite database
    └── EncryptionError             missing, malformed or wrong encryption key; sealed data altered
        └── KeyNotConfigured        data is sealed with a key the configuration does not hold

Messages of these exceptions never carry addresses, names, subjects or report text:
they are logged and may reach alerts.
"""


class ConductInboxError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(ConductInboxError):
    """Configuration is invalid; `problems` has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class DatabaseNotCurrent(ConductInboxError):
    """The database schema is not at the migration head: run `conduct-inbox db upgrade`."""


class MalformedMessage(ConductInboxError):
    """The input is not a mail message (empty, binary junk, no header block)."""


class MailboxUnavailable(ConductInboxError):
    """The mailbox cannot be reached, logged into or selected right now."""


class DeliveryOutage(ConductInboxError):
    """Outgoing mail cannot be sent at all right now (connection, AUTH, MAIL FROM, 4xx)."""


class TokenUnavailable(ConductInboxError):
    """No OAuth2 access token could be obtained (token endpoint unreachable, refresh token or client
    secret refused, ...). The message is one line starting with "oauth2: ", naming the cause and
    never a secret or token; the mailbox and SMTP adapters turn it into their outage errors.

    `needs_login` is true when only a person can fix it (`conduct-inbox oauth login`)."""

    def __init__(self, message: str, needs_login: bool = False):
        super().__init__(message)
        self.needs_login = needs_login


class InstanceLocked(ConductInboxError):
    """Another daemon already runs against this database."""


class EncryptionError(ConductInboxError):
    """Encrypted data cannot be read: no key, another key, or altered data. Never returns garbage."""


class KeyNotConfigured(EncryptionError):
    """The database holds data sealed with a key that is neither the configured one nor the
    previous one: configuration to fix (`db rekey` exits 2 for it)."""


def where(exc: BaseException) -> str:
    """Where an unexpected error happened (type, file:line of each frame), without its message:
    exception texts can quote addresses or report text, and they must not reach the logs."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    return type(exc).__name__ + " at " + " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))
