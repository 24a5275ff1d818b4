"""Tracker and lock stores: in memory always, Redis and SQL (SQLite/PostgreSQL) when configured."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from backend import db
from bot.stores import (
    InMemoryLockStore,
    InMemoryTrackerStore,
    RedisLockStore,
    RedisTrackerStore,
    SQLTrackerStore,
    StaleTrackerError,
    TrackerStore,
)
from tests.conftest import REDIS_URL, empty_all_tables, needs_redis


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    if not REDIS_URL:
        pytest.skip("REDIS_URL not set")
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture(params=["memory", "redis", "sql-sqlite", "sql-postgresql"])
async def tracker_store(request: pytest.FixtureRequest) -> AsyncIterator[TrackerStore]:
    """Every store; the SQL one on SQLite and on PostgreSQL (when configured)."""
    if request.param == "memory":
        yield InMemoryTrackerStore()
    elif request.param == "redis":
        if not REDIS_URL:
            pytest.skip("REDIS_URL not set")
        client = Redis.from_url(REDIS_URL)
        yield RedisTrackerStore(client, prefix=f"test-tracker-{uuid.uuid4().hex}:")
        await client.aclose()
    else:
        url = request.getfixturevalue("sqlite_url" if request.param == "sql-sqlite" else "postgres_url")
        db.configure(url)
        await empty_all_tables()
        yield SQLTrackerStore()
        await db.dispose()


def _events(n: int, start: int = 0) -> list[dict]:
    return [{"event": "user", "text": f"message {i}", "timestamp": 1000.0 + i} for i in range(start, start + n)]


async def test_new_conversation_is_empty(tracker_store: TrackerStore) -> None:
    assert await tracker_store.retrieve("nobody") == []


async def test_appended_events_come_back_in_order(tracker_store: TrackerStore) -> None:
    await tracker_store.append("c1", _events(3), 0)
    await tracker_store.append("c1", _events(2, 3), 3)
    assert [e["text"] for e in await tracker_store.retrieve("c1")] == [f"message {i}" for i in range(5)]


async def test_stale_writer_is_refused_and_writes_nothing(tracker_store: TrackerStore) -> None:
    await tracker_store.append("c2", _events(2), 0)
    with pytest.raises(StaleTrackerError):
        await tracker_store.append("c2", _events(1, 9), 1)
    assert len(await tracker_store.retrieve("c2")) == 2


async def test_unicode_survives_the_store(tracker_store: TrackerStore) -> None:
    event = {"event": "user", "text": "tiền điện tháng trước 😀 '; DROP TABLE x; --", "timestamp": 1.0}
    await tracker_store.append("c3", [event], 0)
    assert (await tracker_store.retrieve("c3"))[0]["text"] == event["text"]


async def test_delete_forgets_the_conversation(tracker_store: TrackerStore) -> None:
    await tracker_store.append("c4", _events(1), 0)
    await tracker_store.delete("c4")
    assert await tracker_store.retrieve("c4") == []


async def _order_under_lock(lock_store, conversation: str) -> list[int]:
    order: list[int] = []

    async def turn(i: int) -> None:
        async with lock_store.lock(conversation):
            order.append(i)
            await asyncio.sleep(0.005)
            order.append(i)

    await asyncio.gather(*(turn(i) for i in range(10)))
    return order


async def test_memory_lock_serialises_one_conversation_in_arrival_order() -> None:
    order = await _order_under_lock(InMemoryLockStore(), "c")
    assert order == [i for i in range(10) for _ in range(2)]


async def test_memory_lock_lets_different_conversations_run_together() -> None:
    store = InMemoryLockStore()
    inside = 0
    peak = 0

    async def turn(conversation: str) -> None:
        nonlocal inside, peak
        async with store.lock(conversation):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(turn(f"c{i}") for i in range(5)))
    assert peak == 5


@needs_redis
async def test_redis_lock_serialises_one_conversation(redis_client: Redis) -> None:
    store = RedisLockStore(redis_client, prefix=f"test-lock-{uuid.uuid4().hex}:")
    order = await _order_under_lock(store, "c")
    assert order == [i for i in range(10) for _ in range(2)]


@needs_redis
async def test_redis_lock_excludes_another_worker_until_released(redis_client: Redis) -> None:
    prefix = f"test-lock-{uuid.uuid4().hex}:"
    worker_a = RedisLockStore(redis_client, prefix=prefix)
    worker_b = RedisLockStore(redis_client, prefix=prefix, wait_timeout=5)
    events: list[str] = []

    async def a() -> None:
        async with worker_a.lock("conv"):
            events.append("a-start")
            await asyncio.sleep(0.1)
            events.append("a-end")

    async def b() -> None:
        await asyncio.sleep(0.02)
        async with worker_b.lock("conv"):
            events.append("b")

    await asyncio.gather(a(), b())
    assert events == ["a-start", "a-end", "b"]
    assert await redis_client.get(prefix + "conv") is None  # released


@needs_redis
async def test_redis_lock_release_by_a_non_owner_does_nothing(redis_client: Redis) -> None:
    prefix = f"test-lock-{uuid.uuid4().hex}:"
    store = RedisLockStore(redis_client, prefix=prefix, lifetime=0.05)
    async with store.lock("conv") as token:
        await asyncio.sleep(0.1)  # our lock expired ...
        await redis_client.set(prefix + "conv", "someone-else")  # ... and another worker took it
        assert not await store.extend("conv", token)
    assert await redis_client.get(prefix + "conv") == b"someone-else"
