"""Encryption at rest: report contents and addresses sealed with authenticated ciphers from `cryptography`.

One 32-byte key (``conduct-inbox keygen``) yields two subkeys through HKDF:

- AES-256-GCM with a random nonce for contents (raw messages, bodies, subjects, outbox mail), and
- AES-SIV, deterministic, for values the daemon looks up by equality (addresses, Message-IDs):
  the same address always seals to the same bytes, so indexes and ``==`` keep working.

A sealed value starts with a magic prefix and the key's fingerprint, so reading it without a key, or
with another key, is a clear error naming the problem, never garbage. Values written before the key
was configured stay readable; ``conduct-inbox db reseal`` encrypts them.

Rotation: a `Keyring` seals with the new key and opens values sealed with either the new or the
previous key (each value names its key by fingerprint); ``conduct-inbox db rekey`` (db.rekey)
moves every value to the new key, after which the previous key can go.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from conduct_inbox.errors import EncryptionError

KEY_BYTES = 32
_RANDOM = b"\x00ci1"  # AES-GCM: magic, 4-byte fingerprint, 12-byte nonce, ciphertext + tag
_FIXED = b"\x00cd1"  # AES-SIV: magic, 4-byte fingerprint, synthetic IV + ciphertext
_TEXT = "ci1:"  # text columns hold the sealed bytes in URL-safe base64 behind this prefix
_FINGERPRINT = 4
_NONCE = 12


def generate_key() -> str:
    """A new random key, as the text to put in the key file."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode()


def parse_key(text: str) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode())
    except (ValueError, TypeError):
        raise EncryptionError("the encryption key is not valid base64 (make one with `conduct-inbox keygen`)") from None
    if len(key) != KEY_BYTES:
        raise EncryptionError(
            f"the encryption key must be {KEY_BYTES} bytes of base64, got {len(key)} (make one with `conduct-inbox keygen`)"
        )
    return key


def _subkey(key: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=b"conduct-inbox " + purpose).derive(key)


class Cipher:
    """Seals and opens column values with one key."""

    def __init__(self, key: bytes):
        self._gcm = AESGCM(_subkey(key, b"contents", 32))
        self._siv = AESSIV(_subkey(key, b"lookups", 64))
        self.fingerprint = hmac.new(key, b"conduct-inbox key fingerprint", hashlib.sha256).digest()[:_FINGERPRINT]

    @classmethod
    def from_text(cls, text: str) -> Cipher:
        return cls(parse_key(text))

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    def seal(self, plain: bytes, *, deterministic: bool = False) -> bytes:
        if deterministic:
            return _FIXED + self.fingerprint + self._siv.encrypt(plain, None)
        nonce = os.urandom(_NONCE)
        return _RANDOM + self.fingerprint + nonce + self._gcm.encrypt(nonce, plain, None)

    def open(self, sealed: bytes) -> bytes:
        magic, fingerprint, rest = sealed[:4], sealed[4 : 4 + _FINGERPRINT], sealed[4 + _FINGERPRINT :]
        if fingerprint != self.fingerprint:
            raise EncryptionError(
                f"data was encrypted with another key (fingerprint {fingerprint.hex()}, configured {self.fingerprint_hex})"
            )
        try:
            if magic == _FIXED:
                return self._siv.decrypt(rest, None)
            return self._gcm.decrypt(rest[:_NONCE], rest[_NONCE:], None)
        except InvalidTag:
            raise EncryptionError("encrypted data failed authentication: it was altered or is corrupt") from None


class Keyring(Cipher):
    """The current key, plus the previous one during a rotation: seals with the current key,
    opens a value with whichever of the two keys its fingerprint names."""

    def __init__(self, key: bytes, previous: bytes):
        super().__init__(key)
        self.previous = Cipher(previous)
        if self.previous.fingerprint == self.fingerprint:
            raise EncryptionError("the previous encryption key is the same key as the current one")

    def open(self, sealed: bytes) -> bytes:
        if sealed[4 : 4 + _FINGERPRINT] == self.previous.fingerprint:
            return self.previous.open(sealed)
        fingerprint = sealed[4 : 4 + _FINGERPRINT]
        if fingerprint != self.fingerprint:
            raise EncryptionError(
                f"data was encrypted with another key (fingerprint {fingerprint.hex()}, configured "
                f"{self.fingerprint_hex}, previous {self.previous.fingerprint_hex})"
            )
        return super().open(sealed)


def previous_of(cipher: Cipher | None) -> Cipher | None:
    """The previous key of a keyring during a rotation; None otherwise."""
    return cipher.previous if isinstance(cipher, Keyring) else None


def fingerprint_of(stored: bytes | str) -> bytes | None:
    """The fingerprint of the key a stored value is sealed with; None for a plain value.

    Works on a prefix too: the first 16 characters of a text value, 8 bytes of a binary one."""
    if not is_sealed(stored):
        return None
    if isinstance(stored, str):
        head = stored[len(_TEXT) : len(_TEXT) + 12]
        try:
            raw = base64.urlsafe_b64decode(head.encode() + b"=" * (-len(head) % 4))
        except ValueError:
            return b""
        return raw[4 : 4 + _FINGERPRINT]
    return bytes(stored[4 : 4 + _FINGERPRINT])


#: How many leading characters (text) or bytes (binary) of a stored value fingerprint_of needs.
FINGERPRINT_PREFIX_TEXT = len(_TEXT) + 12
FINGERPRINT_PREFIX_BYTES = 4 + _FINGERPRINT


def is_sealed(value: bytes | str) -> bool:
    if isinstance(value, str):
        return value.startswith(_TEXT)
    return value[:4] in (_RANDOM, _FIXED)


def seal_value(cipher: Cipher | None, value: bytes | str, *, deterministic: bool = False) -> bytes | str:
    """What to store for `value`: sealed when a key is configured, as it is otherwise."""
    if cipher is None:
        return value
    if isinstance(value, str):
        sealed = cipher.seal(value.encode("utf-8", "surrogatepass"), deterministic=deterministic)
        return _TEXT + base64.urlsafe_b64encode(sealed).decode()
    return cipher.seal(value, deterministic=deterministic)


def open_value(cipher: Cipher | None, stored: bytes | str) -> bytes | str:
    """The plain value of what was stored; plain values (written before encryption) pass through."""
    if not is_sealed(stored):
        return stored
    if cipher is None:
        raise EncryptionError("the database holds encrypted data but no key is configured (security.encryption_key_file)")
    if isinstance(stored, str):
        try:
            sealed = base64.urlsafe_b64decode(stored[len(_TEXT) :].encode())
        except ValueError:
            raise EncryptionError("encrypted data is corrupt") from None
        return cipher.open(sealed).decode("utf-8", "surrogatepass")
    return cipher.open(bytes(stored))


def load_cipher(key_text: str, key_file: str, previous_text: str = "") -> Cipher | None:
    """The configured cipher: the key itself (from a credential) or the file named; None when neither is set.

    With `previous_text` (the key being rotated away from), a Keyring that still opens its values."""
    if key_text and previous_text:
        return Keyring(parse_key(key_text), parse_key(previous_text))
    if previous_text:
        raise EncryptionError("a previous encryption key is set but no current one (security.encryption_key_file)")
    if key_text:
        return Cipher.from_text(key_text)
    if not key_file:
        return None
    try:
        return Cipher.from_text(Path(key_file).read_text())
    except OSError as exc:
        raise EncryptionError(f"cannot read the encryption key file {key_file}: {exc.strerror}") from None
