"""The database engine and encryption key the configuration describes (light: read-only commands use it)."""

from __future__ import annotations

from sqlalchemy import Engine

from conduct_inbox.config import Settings
from conduct_inbox.store import db
from conduct_inbox.store.crypto import Cipher, load_cipher


def engine_for(settings: Settings) -> Engine:
    """The engine the configuration describes, with its encryption key if one is set."""
    return db.make_engine(settings.database.url, cipher_for(settings))


def cipher_for(settings: Settings) -> Cipher | None:
    """The configured key; during a rotation a Keyring that also opens values under the previous key."""
    security = settings.security
    return load_cipher(security.encryption_key.get_secret_value(), "", security.previous_encryption_key.get_secret_value())
