"""Background tasks that read Redis pub/sub stop when told to, every time.

A cancellation that lands inside redis-py's timed pub/sub read can be lost (about one in ten
here, measured with a bare cancel()), and a task that survived its shutdown kept a worker, or
the test run, waiting forever. Both pub/sub readers of a worker are started and stopped at
random moments, many times, on the real Redis."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.console.bus import ConsoleBus
from bot.model_rollout import ModelWatcher
from bot.tasks import stop_task
from tests.conftest import REDIS_URL, needs_redis

pytestmark = needs_redis


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def others() -> set[asyncio.Task]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}


async def test_the_model_watcher_always_stops(backend_db: str, redis: Redis) -> None:
    rng = random.Random(7)
    for _ in range(40):
        watcher = ModelWatcher(nlu=None, redis=redis)  # type: ignore[arg-type]  # no active version: never touched
        await watcher.start()
        await asyncio.sleep(rng.uniform(0, 0.03))
        await watcher.close()
        assert others() == set()


async def test_the_console_bus_always_stops(redis: Redis) -> None:
    rng = random.Random(11)
    for _ in range(40):
        bus = ConsoleBus(redis)
        await bus.start()
        await asyncio.sleep(rng.uniform(0, 0.03))
        await bus.close()
        assert others() == set()


async def test_stop_task_outlasts_a_swallowed_cancellation() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                if swallowed < 2:  # what a lost cancellation looks like from outside
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert await stop_task(task, within=3)
    assert task.cancelled() and swallowed == 2
