"""SIGTERM on a real `python -m bot serve`: the turn in flight finishes and is answered, new
requests are refused (connection refused, or 503 on a kept-alive connection), the conversation
lock is released, the process exits within the grace period, and after a restart the
conversation goes on where it was."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from backend import db
from bot.stores import RedisTrackerStore, SQLTrackerStore, TrackerStore
from tests.conftest import REDIS_URL
from tests.production.conftest import GREETING, HELP, THANKS
from tests.production.support import (
    SlowActionServer,
    assert_each_answered_once,
    fresh_session,
    say,
    texts,
)
from tests.servers import ServerProcess

GRACE = 10.0


@pytest.fixture(params=["sqlite", "sqlite+redis"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path, trained_models_dir: Path) -> AsyncIterator[tuple[dict[str, str], TrackerStore, Redis | None]]:
    """The server's environment and a view of its conversations: the tracker in SQLite (its
    SQL store), or in Redis with the Redis lock."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    db.upgrade_database(url)
    db.configure(url)
    env = {"DATABASE_URL": url, "MODELS_DIR": str(trained_models_dir), "REDIS_URL": "", "TRACKER_STORE": "sql"}
    redis = None
    store: TrackerStore = SQLTrackerStore()
    if request.param == "sqlite+redis":
        if not REDIS_URL:
            pytest.skip("REDIS_URL not set")
        redis = Redis.from_url(REDIS_URL)
        await redis.flushdb()
        env |= {"REDIS_URL": REDIS_URL, "TRACKER_STORE": "redis"}
        store = RedisTrackerStore(redis)
    yield env, store, redis
    if redis is not None:
        await redis.aclose()
    await db.dispose()


async def test_sigterm_drains_then_a_restart_resumes(stack: tuple[dict[str, str], TrackerStore, Redis | None]) -> None:
    env, store, redis = stack
    async with SlowActionServer() as actions:
        env = {**env, "ACTION_ENDPOINT_URL": actions.url}
        server = ServerProcess(env, grace=GRACE)
        server.start()
        try:
            await server.wait_healthy()
            async with fresh_session() as http:
                status, replies = await say(http, server.base, "an", GREETING[0])
                assert status == 200 and GREETING[1] in texts(replies)

                actions.hold()
                in_flight = asyncio.create_task(say(http, server.base, "an", THANKS[0]))
                await asyncio.wait_for(actions.held.get(), 10)  # the turn is in its action
                server.signal(signal.SIGTERM)
                await asyncio.sleep(0.5)
                try:  # new work is not accepted
                    status, _ = await say(http, server.base, "someone-new", GREETING[0])
                    assert status == 503
                except aiohttp.ClientConnectionError:
                    pass  # refused: the listening socket is closed
                assert not in_flight.done()
                actions.release()
                status, replies = await asyncio.wait_for(in_flight, GRACE)
                assert status == 200 and THANKS[1] in texts(replies)
            assert await server.wait_exit(GRACE + 5) == 0
            if redis is not None:
                assert await redis.get("lock:an") is None  # released, not left to expire
        finally:
            server.stop()

        restarted = ServerProcess(env, grace=GRACE)
        restarted.start()
        try:
            await restarted.wait_healthy()
            async with fresh_session() as http:
                status, replies = await say(http, restarted.base, "an", HELP[0])
                assert status == 200 and HELP[1] in texts(replies)
        finally:
            restarted.stop()
    order = assert_each_answered_once(await store.retrieve("an"), dict([GREETING, THANKS, HELP]))
    assert order == [GREETING[0], THANKS[0], HELP[0]]
