"""Zalo's single-use refresh tokens, shared by workers through the database (SQLite and
PostgreSQL): one refresh at a time, the new pair stored before use, nothing burned twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from pydantic import ValidationError
from sqlalchemy import select

from backend import db
from backend.models import ChannelToken
from backend.services import channel_tokens
from backend.settings import Settings, get_settings
from backend.token_crypto import TokenKeyError, new_key
from bot.channels.middleware import RetryLater
from bot.channels.zalo import ZaloConfig, ZaloTokens
from tests.channels.conftest import (
    ZALO_ACCESS,
    ZALO_APP_ID,
    ZALO_APP_SECRET,
    ZALO_OA_SECRET,
    ZALO_REFRESH,
)
from tests.fakes.zalo import FakeZalo


@pytest.fixture
async def fake() -> AsyncIterator[FakeZalo]:
    server = await FakeZalo(ZALO_APP_ID, ZALO_APP_SECRET, ZALO_ACCESS, ZALO_REFRESH).start()
    yield server
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def config(fake: FakeZalo, access: str = ZALO_ACCESS, refresh: str = ZALO_REFRESH) -> ZaloConfig:
    return ZaloConfig(ZALO_APP_ID, ZALO_APP_SECRET, ZALO_OA_SECRET, access, refresh, fake.url, fake.url)


async def test_two_workers_refreshing_at_once_use_the_refresh_token_once(backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession) -> None:
    fake.oauth_delay = 0.3  # both workers are waiting while the first refresh is in flight
    first, second = ZaloTokens(config(fake), http, "worker-1"), ZaloTokens(config(fake), http, "worker-2")
    await first.seed()
    await second.seed()
    fake.expire(ZALO_ACCESS)
    stale_1, stale_2 = await first.get(), await second.get()
    assert stale_1.version == stale_2.version == 1

    new_1, new_2 = await asyncio.gather(first.refresh(stale_1), second.refresh(stale_2))

    assert fake.refresh_uses == {ZALO_REFRESH: 1}
    assert new_1.access_token == new_2.access_token == "at-2"
    stored = await channel_tokens.current("zalo")
    assert stored is not None and stored.version == 2 and stored.refresh_token == "rt-2"
    # A third worker starting later finds the stored pair, not the configured (burned) one.
    third = ZaloTokens(config(fake), http, "worker-3")
    await third.seed()
    assert (await third.get()).access_token == "at-2"


async def test_many_concurrent_refreshes_in_one_worker_call_oauth_once(backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession) -> None:
    tokens = ZaloTokens(config(fake), http, "worker-1")
    await tokens.seed()
    stale = await tokens.get()
    results = await asyncio.gather(*(tokens.refresh(stale) for _ in range(10)))
    assert {r.access_token for r in results} == {"at-2"} and sum(fake.refresh_uses.values()) == 1


async def test_seeding_keeps_refreshed_tokens_but_takes_a_reauthorised_pair(backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession) -> None:
    tokens = ZaloTokens(config(fake), http, "worker-1")
    await tokens.seed()
    await tokens.refresh(await tokens.get())
    await tokens.seed()  # a restart with the same environment
    assert (await channel_tokens.current("zalo")).refresh_token == "rt-2"  # type: ignore[union-attr]

    fake.valid_access.add("at-new")
    fake.valid_refresh.add("rt-new")
    reauthorised = ZaloTokens(config(fake, "at-new", "rt-new"), http, "worker-1")
    await reauthorised.seed()  # the operator put a new pair in the environment
    stored = await channel_tokens.current("zalo")
    assert stored is not None and stored.access_token == "at-new" and stored.refresh_token == "rt-new" and stored.version == 3


async def test_a_refused_refresh_frees_the_lease(backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession) -> None:
    fake.valid_refresh.clear()  # the refresh token was revoked (or burned elsewhere)
    tokens = ZaloTokens(config(fake), http, "worker-1")
    await tokens.seed()
    with pytest.raises(RetryLater, match="refresh refused"):
        await tokens.refresh(await tokens.get())
    claim = await channel_tokens.claim_refresh("zalo", 1, "worker-2")
    assert isinstance(claim, channel_tokens.Tokens) and claim.version == 1  # free to try again


async def test_only_a_refresh_token_configured_refreshes_before_the_first_send(backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession) -> None:
    tokens = ZaloTokens(config(fake, access=""), http, "worker-1")
    await tokens.seed()
    assert (await tokens.get()).access_token == "at-2"


def test_tokens_never_show_in_a_repr() -> None:
    tokens = channel_tokens.Tokens("zalo", "secret-access", "secret-refresh", None, 1)
    assert "secret" not in repr(tokens)
    assert "rt-1" not in repr(ZaloConfig("1", "app-secret", "oa-secret", "at-1", "rt-1", "https://a", "https://b"))


@pytest.fixture
def use_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str | None], None]]:
    """Set TOKEN_ENCRYPTION_KEY (None: unset it) as a restarted worker would read it."""

    def use(key: str | None) -> None:
        if key is None:
            monkeypatch.delenv("TOKEN_ENCRYPTION_KEY", raising=False)
        else:
            monkeypatch.setenv("TOKEN_ENCRYPTION_KEY", key)
        get_settings.cache_clear()

    yield use
    use(None)


@pytest.fixture
def encryption_key(use_key: Callable[[str | None], None]) -> str:
    key = new_key()
    use_key(key)
    return key


async def _stored_row(channel: str = "zalo") -> ChannelToken:
    async with db.read_scope() as session:
        row = await session.scalar(select(ChannelToken).where(ChannelToken.channel == channel))
        assert row is not None
        return row


async def test_with_a_key_the_database_never_holds_a_token_in_clear(
    backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession, encryption_key: str
) -> None:
    tokens = ZaloTokens(config(fake), http, "worker-1")
    await tokens.seed()
    row = await _stored_row()
    assert row.access_token.startswith("enc1:") and ZALO_ACCESS not in row.access_token
    assert row.refresh_token is not None and ZALO_REFRESH not in row.refresh_token

    await tokens.refresh(await tokens.get())  # the platform got the real refresh token back
    assert fake.refresh_uses == {ZALO_REFRESH: 1}
    row = await _stored_row()
    assert "at-2" not in row.access_token and "rt-2" not in (row.refresh_token or "")
    stored = await channel_tokens.current("zalo")
    assert stored is not None and (stored.access_token, stored.refresh_token) == ("at-2", "rt-2")


async def test_tokens_stored_before_the_key_are_read_and_encrypted_at_the_next_refresh(
    backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession, use_key: Callable[[str | None], None]
) -> None:
    tokens = ZaloTokens(config(fake), http, "worker-1")
    await tokens.seed()
    assert (await _stored_row()).access_token == ZALO_ACCESS  # no key: stored as it is

    use_key(new_key())
    restarted = ZaloTokens(config(fake), http, "worker-1")
    await restarted.seed()
    assert (await restarted.get()).access_token == ZALO_ACCESS
    await restarted.refresh(await restarted.get())
    assert (await _stored_row()).access_token.startswith("enc1:")
    assert (await restarted.get()).access_token == "at-2"


async def test_encrypted_tokens_without_their_key_are_a_clear_error(
    backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession, encryption_key: str, use_key: Callable[[str | None], None]
) -> None:
    await ZaloTokens(config(fake), http, "worker-1").seed()

    use_key(new_key())  # another key
    with pytest.raises(TokenKeyError, match="do not decrypt with this TOKEN_ENCRYPTION_KEY"):
        await channel_tokens.current("zalo")

    use_key(None)  # no key at all
    with pytest.raises(TokenKeyError, match="encrypted: set TOKEN_ENCRYPTION_KEY"):
        await channel_tokens.current("zalo")

    use_key(encryption_key)
    assert (await channel_tokens.current("zalo")).access_token == ZALO_ACCESS  # type: ignore[union-attr]


async def test_a_token_moved_onto_another_channel_does_not_decrypt(
    backend_db: str, fake: FakeZalo, http: aiohttp.ClientSession, encryption_key: str
) -> None:
    await ZaloTokens(config(fake), http, "worker-1").seed()
    sealed = (await _stored_row()).access_token
    await channel_tokens.seed("other", "x", None)
    async with db.session_scope() as session:
        row = await session.get(ChannelToken, "other")
        assert row is not None
        row.access_token = sealed
    with pytest.raises(TokenKeyError):
        await channel_tokens.current("other")


@pytest.mark.parametrize("key", ["not base64 at all!", "c2hvcnQ=", "a" * 44])
def test_a_malformed_key_stops_the_settings_with_its_name(key: str) -> None:
    with pytest.raises(ValidationError, match="TOKEN_ENCRYPTION_KEY must"):
        Settings(token_encryption_key=key)
