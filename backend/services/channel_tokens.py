"""The OAuth tokens of a messaging platform, shared by every worker through the database.

Zalo's refresh tokens are single use. If two workers refreshed with the same one, the second
would be refused and, worse, whichever pair was stored last might hold a dead refresh token.
So a refresh is a small protocol here, not an HTTP call:

1. `current()` gives the stored tokens and their `version`.
2. A worker whose access token was refused calls `claim_refresh(channel, version, owner)`.
   Exactly one caller wins (a conditional UPDATE on the version and an expired lease); the
   others get `Busy` (somebody is refreshing: wait and read again) or the newer tokens.
3. The winner calls the platform outside any transaction, then `store_refresh()` writes the
   new pair and bumps the version in one statement, before anyone uses the new access token.
   If the call failed, `abandon_refresh()` frees the lease.

A worker that dies between the platform's answer and `store_refresh()` loses the new refresh
token (the platform has already burned the old one); nothing can prevent that window, and the
lease keeps it to one refresh at a time. The OA then has to be re-authorised (see README).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from backend.clock import utcnow
from backend.db import read_scope, session_scope, upsert_insert
from backend.models import ChannelToken
from backend.token_crypto import seal, unseal


@dataclass(frozen=True)
class Tokens:
    """A platform's current tokens; `version` grows by one with every refresh."""

    channel: str
    access_token: str
    refresh_token: str | None
    access_expires_at: datetime | None
    version: int

    def __repr__(self) -> str:  # never show a token in a log line or a traceback
        return f"Tokens(channel={self.channel!r}, version={self.version}, access_expires_at={self.access_expires_at})"


@dataclass(frozen=True)
class Busy:
    """Another worker holds the refresh lease until `until`."""

    until: datetime


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _tokens(row: ChannelToken) -> Tokens:
    """The row's tokens, decrypted (backend/token_crypto.py: stored encrypted when
    TOKEN_ENCRYPTION_KEY is set)."""
    access = unseal(row.access_token, row.channel) or ""
    return Tokens(row.channel, access, unseal(row.refresh_token, row.channel), row.access_expires_at, row.version)


async def seed(channel: str, access_token: str, refresh_token: str | None) -> Tokens:
    """Store the tokens the operator configured, unless the database already holds tokens that
    descend from the same configuration (after a refresh the configured refresh token is burned,
    and the stored one must win). A different configured refresh token means the OA was
    re-authorised: the new pair replaces the stored one."""
    print_ = fingerprint(refresh_token or access_token)
    now = utcnow()
    async with session_scope() as session:
        statement = (await upsert_insert(session, ChannelToken)).values(
            channel=channel,
            access_token=seal(access_token, channel),
            refresh_token=seal(refresh_token, channel),
            access_expires_at=None,
            version=1,
            seed_fingerprint=print_,
            updated_at=now,
        )
        await session.execute(statement.on_conflict_do_nothing(index_elements=["channel"]))
        row = await session.get(ChannelToken, channel, with_for_update=True)
        assert row is not None
        if row.seed_fingerprint != print_:
            row.access_token, row.refresh_token = seal(access_token, channel), seal(refresh_token, channel)
            row.access_expires_at = None
            row.version, row.seed_fingerprint, row.updated_at = row.version + 1, print_, now
            row.refresh_owner, row.refresh_lease_until = None, None
        return _tokens(row)


async def current(channel: str) -> Tokens | None:
    async with read_scope() as session:
        row = await session.scalar(select(ChannelToken).where(ChannelToken.channel == channel))
        return _tokens(row) if row else None


async def claim_refresh(channel: str, version: int, owner: str, lease_seconds: float = 30.0) -> Tokens | Busy | None:
    """Try to become the one worker that refreshes `version` of the tokens.

    Returns the tokens to refresh (we own the lease), the newer `Tokens` if someone already
    refreshed past `version` (use them, do not refresh), `Busy` while another worker holds the
    lease, or None when the channel has no stored tokens at all.
    """
    now = utcnow()
    async with session_scope() as session:
        claimed = await session.execute(
            update(ChannelToken)
            .where(
                ChannelToken.channel == channel,
                ChannelToken.version == version,
                or_(ChannelToken.refresh_lease_until.is_(None), ChannelToken.refresh_lease_until < now),
            )
            .values(refresh_owner=owner, refresh_lease_until=now + timedelta(seconds=lease_seconds))
        )
        row = await session.get(ChannelToken, channel)
        if row is None:
            return None
        if claimed.rowcount == 1:
            return _tokens(row)
        if row.version != version:
            return _tokens(row)
        return Busy(row.refresh_lease_until or now)


async def store_refresh(
    channel: str, version: int, access_token: str, refresh_token: str, expires_at: datetime | None
) -> Tokens:
    """Save the pair a refresh of `version` returned, as version + 1, and free the lease.

    Conditional on the version only, not on the lease: if our lease ran out while the platform
    was answering, the pair we hold is still the only valid one (nobody else can have refreshed
    with the token we burned), so it must be stored all the same.
    """
    async with session_scope() as session:
        await session.execute(
            update(ChannelToken)
            .where(ChannelToken.channel == channel, ChannelToken.version == version)
            .values(
                access_token=seal(access_token, channel),
                refresh_token=seal(refresh_token, channel),
                access_expires_at=expires_at,
                version=version + 1,
                refresh_owner=None,
                refresh_lease_until=None,
                updated_at=utcnow(),
            )
        )
        row = await session.get(ChannelToken, channel)
        assert row is not None
        return _tokens(row)


async def abandon_refresh(channel: str, owner: str) -> None:
    """Free our refresh lease after a failed refresh, so another attempt need not wait it out."""
    async with session_scope() as session:
        await session.execute(
            update(ChannelToken)
            .where(ChannelToken.channel == channel, ChannelToken.refresh_owner == owner)
            .values(refresh_owner=None, refresh_lease_until=None)
        )
