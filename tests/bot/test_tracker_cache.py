"""The Redis tracker store keeps the events it has seen decoded in the process: what two workers
(two stores on one Redis) read must still be exactly what is stored, whatever the other wrote."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.stores import RedisTrackerStore, StaleTrackerError
from tests.conftest import REDIS_URL


@pytest.fixture
async def workers() -> AsyncIterator[tuple[RedisTrackerStore, RedisTrackerStore]]:
    if not REDIS_URL:
        pytest.skip("REDIS_URL not set")
    client = Redis.from_url(REDIS_URL)
    prefix = f"test-tracker-cache-{uuid.uuid4().hex}:"
    yield RedisTrackerStore(client, prefix=prefix), RedisTrackerStore(client, prefix=prefix)
    await client.aclose()


def _events(n: int, start: int = 0) -> list[dict]:
    return [{"event": "user", "text": f"message {i}", "timestamp": 1000.0 + i} for i in range(start, start + n)]


async def test_each_worker_sees_what_the_other_appended(workers: tuple[RedisTrackerStore, RedisTrackerStore]) -> None:
    a, b = workers
    await a.append("chat", _events(3), 0)
    assert await b.retrieve("chat") == _events(3)
    await b.append("chat", _events(2, 3), 3)
    assert await a.retrieve("chat") == _events(5)  # a had three cached: the two new ones come too
    await a.append("chat", _events(1, 5), 5)
    assert await b.retrieve("chat") == await a.retrieve("chat") == _events(6)


async def test_a_stale_append_is_still_refused(workers: tuple[RedisTrackerStore, RedisTrackerStore]) -> None:
    a, b = workers
    await a.append("chat", _events(2), 0)
    assert await b.retrieve("chat") == _events(2)
    await a.append("chat", _events(1, 2), 2)
    with pytest.raises(StaleTrackerError):
        await b.append("chat", _events(1, 10), 2)
    assert await b.retrieve("chat") == _events(3)


async def test_a_conversation_deleted_and_started_again_elsewhere_is_read_anew(
    workers: tuple[RedisTrackerStore, RedisTrackerStore],
) -> None:
    a, b = workers
    await a.append("chat", _events(3), 0)
    assert await a.retrieve("chat") == _events(3)
    await b.delete("chat")
    assert await a.retrieve("chat") == []
    await a.append("chat", _events(2), 0)
    await b.delete("chat")
    await b.append("chat", _events(4, 100), 0)  # longer than what a cached, different events
    assert await a.retrieve("chat") == _events(4, 100)


async def test_dropping_the_oldest_events_elsewhere_is_noticed(workers: tuple[RedisTrackerStore, RedisTrackerStore]) -> None:
    a, b = workers
    await a.append("chat", _events(4), 0)
    assert await a.retrieve("chat") == _events(4)
    await b.drop_oldest("chat", 2)
    await b.append("chat", _events(3, 4), 2)
    assert await a.retrieve("chat") == _events(5, 2)


async def test_events_read_back_are_what_a_fresh_read_gives(workers: tuple[RedisTrackerStore, RedisTrackerStore]) -> None:
    """A tuple written comes back as a list, from the cache as from Redis."""
    a, _ = workers
    await a.append("chat", [{"event": "slot", "name": "pair", "value": (1, 2), "timestamp": 1.0}], 0)
    fresh = RedisTrackerStore(a.redis, prefix=a.prefix)
    assert await a.retrieve("chat") == await fresh.retrieve("chat") == [{"event": "slot", "name": "pair", "value": [1, 2], "timestamp": 1.0}]


async def test_many_conversations_read_at_once_through_a_small_cache(
    workers: tuple[RedisTrackerStore, RedisTrackerStore],
) -> None:
    """While one conversation's tail is being read, the other conversations' reads evict it from
    the cache: every read still answers, with exactly what is stored."""
    a, b = workers
    a.cache_size = 3
    senders = [f"chat-{n}" for n in range(30)]
    for sender in senders:
        await a.append(sender, _events(2), 0)
    for round_ in range(4):
        for sender in senders:  # each round adds an event elsewhere: a has a tail to fetch
            await b.retrieve(sender)
            await b.append(sender, _events(1, 2 + round_), 2 + round_)
        results = await asyncio.gather(*(a.retrieve(s) for s in senders))
        assert results == [_events(3 + round_)] * len(senders)
    assert len(a._decoded) <= 3


async def test_a_long_conversation_on_one_worker_stays_exact_and_compact(
    workers: tuple[RedisTrackerStore, RedisTrackerStore],
) -> None:
    """Turn after turn on one worker (read, then append), the cached events stay exactly the
    stored ones and are not kept as one piece per turn."""
    a, _ = workers
    for turn in range(40):
        events = await a.retrieve("chat")
        assert events == _events(2 * turn)
        await a.append("chat", _events(2, 2 * turn), 2 * turn)
    assert await a.retrieve("chat") == _events(80)
    assert len(a._decoded["chat"].chunks) < 10
