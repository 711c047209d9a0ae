"""The project's own exceptions, all of them; adapters translate library errors into these.

    ConductInboxError
    ├── ConfigError                 bad configuration (CLI exit 2)
    ├── DatabaseNotCurrent          schema not at the alembic head (CLI exit 1)
    ├── InstanceLocked              another daemon already owns this SQLite database (CLI exit 1)
    ├── BackupFailed                a backup or restore cannot be made or trusted (CLI exit 1)
    ├── MalformedMessage            input that is not a mail message at all (mail.parse; `inspect` exits 1)
    ├── ParseFailed                 the parser raised or its worker process died: a failed attempt
    ├── ParseTimeout                the parser did not finish within its time limit: a failed attempt
    ├── MailboxUnavailable          IMAP/Maildir cannot be reached or logged into (retry later)
    ├── MailUnavailable             one outgoing mail's stored bytes cannot be read: that row fails
    ├── TokenUnavailable            no OAuth2 access token could be obtained (an outage of the mailbox / SMTP)
    ├── Refused                     a member's command cannot be applied: the reason goes to them alone
    └── EncryptionError             missing, malformed or wrong encryption key; sealed data altered
        └── KeyNotConfigured        data is sealed with a key the configuration does not hold (`db` commands exit 2)

Any other ConductInboxError that reaches the CLI exits 1 with its message. Private exceptions
(a leading underscore: _Outage, _Truncated, _Bad, ...) are control flow inside one module and
never leave it. An outage of outgoing
mail as a whole is not an exception: a Sender reports it in `ports.BatchResult.outage`.

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


class MailUnavailable(ConductInboxError):
    """One mail's bytes cannot be had (stored altered or corrupt): that row fails, the batch goes on."""


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


class BackupFailed(ConductInboxError):
    """A backup or restore could not be made; the message says why in one line."""


class ParseFailed(ConductInboxError):
    """The parser raised or its worker died; `kind` is a content-free description."""

    def __init__(self, kind: str):
        self.kind = kind
        super().__init__(kind)


class ParseTimeout(ConductInboxError):
    """The parser did not finish within the time limit."""


class Refused(ConductInboxError):
    """A command cannot be applied; the message goes to the sender only."""


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
