"""Signed, expiring links: the bot can hand a customer a URL (a consumption chart) that only
works for what it names and only for a while, without a login."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from functools import lru_cache

from backend.settings import get_settings


@lru_cache(maxsize=1)
def _key() -> bytes:
    secret = get_settings().url_signing_secret
    return secret.get_secret_value().encode() if secret else secrets.token_bytes(32)


def sign(subject: str, expires_at: int) -> str:
    return hmac.new(_key(), f"{subject}|{expires_at}".encode(), hashlib.sha256).hexdigest()


def signed_query(subject: str, ttl_seconds: int = 3600) -> str:
    expires_at = int(time.time()) + ttl_seconds
    return f"exp={expires_at}&sig={sign(subject, expires_at)}"


def verify(subject: str, expires_at: str, signature: str) -> bool:
    """True only for an unexpired link signed for exactly this subject."""
    if not expires_at.isdigit() or int(expires_at) < time.time():
        return False
    return hmac.compare_digest(sign(subject, int(expires_at)), signature)
