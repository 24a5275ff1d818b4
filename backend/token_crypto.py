"""Encryption at rest for the platform tokens kept in the database (`channel_tokens`).

A Zalo OA's access and refresh tokens let anyone who holds them write to every follower of the
OA, so a database dump, a backup or a read-only replica must not hand them over. With
`TOKEN_ENCRYPTION_KEY` set (32 random bytes, URL-safe base64), every token is stored as
`enc1:` + base64(nonce + AES-256-GCM ciphertext), with the channel's name as associated data
(a token copied onto another channel's row does not decrypt). Without the key, tokens are
stored as they are (development); a value stored before the key was set is read as it is and
encrypted at its next write (the next refresh).
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.settings import get_settings

PREFIX = "enc1:"
NONCE_BYTES = 12


class TokenKeyError(RuntimeError):
    """Encrypted tokens cannot be read: the key is missing or is not the one they were sealed with."""


def parse_key(text: str) -> bytes:
    """The 32-byte key from its URL-safe base64 form; ValueError says what is wrong."""
    text = text.strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("TOKEN_ENCRYPTION_KEY must be URL-safe base64") from None
    if len(key) != 32:
        raise ValueError(f"TOKEN_ENCRYPTION_KEY must decode to 32 bytes, not {len(key)}")
    return key


def new_key() -> str:
    """A fresh key in the form TOKEN_ENCRYPTION_KEY takes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _key() -> bytes | None:
    secret = get_settings().token_encryption_key
    return parse_key(secret.get_secret_value()) if secret is not None else None


def encrypting() -> bool:
    """Whether tokens are stored encrypted (TOKEN_ENCRYPTION_KEY is set)."""
    return get_settings().token_encryption_key is not None


def seal(value: str | None, channel: str) -> str | None:
    """What to store for `value` (None stays None)."""
    key = _key()
    if value is None or key is None:
        return value
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, value.encode(), channel.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(stored: str | None, channel: str) -> str | None:
    """The token `stored` holds; a value without the prefix was stored before encryption was on."""
    if stored is None or not stored.startswith(PREFIX):
        return stored
    key = _key()
    if key is None:
        raise TokenKeyError(f"the {channel} tokens in the database are encrypted: set TOKEN_ENCRYPTION_KEY")
    try:
        raw = base64.urlsafe_b64decode(stored[len(PREFIX) :])
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], channel.encode()).decode()
    except (InvalidTag, binascii.Error, ValueError):
        raise TokenKeyError(
            f"the {channel} tokens in the database do not decrypt with this TOKEN_ENCRYPTION_KEY "
            "(another key sealed them, or the row was altered): set that key, or re-authorise the OA"
        ) from None
