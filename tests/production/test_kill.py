"""Two workers under the supervisor (PostgreSQL + Redis); one is killed with SIGKILL in the
middle of a turn. The customer's client resends the same message (same `message_id`): it is
answered once, after the dead worker's lock expires; a second resend gets the same answer
without a second turn; the conversation goes on; the supervisor has started a new worker."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from backend import db
from bot.stores import RedisTrackerStore
from tests.conftest import POSTGRES_URL, REDIS_URL, empty_all_tables
from tests.production.conftest import GREETING, HELP, THANKS
from tests.production.support import (
    ServerProcess,
    SlowActionServer,
    assert_each_answered_once,
    fresh_session,
    listeners,
    pid_of_connection,
    say,
    texts,
)

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL.startswith("postgresql") and REDIS_URL), reason="DATABASE_URL (PostgreSQL) and REDIS_URL not both set"
)
LOCK_SECONDS = 2
GRACE = 3.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield client
    await client.aclose()


async def _workers_up(server: ServerProcess, count: int, within: float = 60.0) -> list[int]:
    """The supervisor's workers, once `count` of them are listening."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pids = server.children()
        if len(pids) == count and listeners(server.port) == count:
            return pids
        await asyncio.sleep(0.2)
    raise AssertionError(f"expected {count} workers listening, have {server.children()}")


async def resend(http: aiohttp.ClientSession, base: str, sender: str, text: str, message_id: str) -> tuple[int, Any]:
    """What a channel client does after losing a request: send it again, with the same id,
    until a worker takes it (a connection may be refused while workers restart)."""
    for _ in range(50):
        try:
            return await say(http, base, sender, text, message_id=message_id)
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.2)
    raise AssertionError("no worker took the resent message")


async def test_a_worker_killed_mid_turn_loses_nothing(postgres_url: str, trained_models_dir: Path, redis: Redis) -> None:
    db.configure(postgres_url)
    await empty_all_tables()
    await db.dispose()
    async with SlowActionServer() as actions:
        env = {
            "DATABASE_URL": postgres_url, "REDIS_URL": REDIS_URL, "MODELS_DIR": str(trained_models_dir),
            "ACTION_ENDPOINT_URL": actions.url, "LOCK_LIFETIME_SECONDS": str(LOCK_SECONDS),
        }
        server = ServerProcess(env, workers=2, grace=GRACE)
        server.start()
        try:
            await server.wait_healthy()
            await _workers_up(server, 2)
            async with fresh_session() as http:
                status, replies = await say(http, server.base, "binh", GREETING[0], message_id="m1")
                assert status == 200 and GREETING[1] in texts(replies)

                actions.hold()
                in_flight = asyncio.create_task(say(http, server.base, "binh", THANKS[0], message_id="m2"))
                caller_port = await asyncio.wait_for(actions.held.get(), 10)  # mid-turn, in its action
                victim = pid_of_connection(caller_port, server.children())
                assert victim is not None
                os.kill(victim, signal.SIGKILL)
                with pytest.raises(aiohttp.ClientError):  # the customer's request died with the worker
                    await in_flight
                assert await redis.exists("lock:binh")  # the dead worker's lock is still there ...
                actions.release()

                # ... the client resends the same message: answered once the lock has expired
                status, replies = await resend(http, server.base, "binh", THANKS[0], "m2")
                assert status == 200 and THANKS[1] in texts(replies)
                status, again = await resend(http, server.base, "binh", THANKS[0], "m2")  # one resend too many
                assert status == 200 and again == replies
                status, replies = await say(http, server.base, "binh", HELP[0], message_id="m3")
                assert status == 200 and HELP[1] in texts(replies)

            workers = await _workers_up(server, 2)
            assert victim not in workers  # the supervisor replaced it

            server.signal(signal.SIGTERM)  # the supervisor stops every worker, and itself
            assert await server.wait_exit(GRACE + 15) == 0
            assert not [pid for pid in workers if alive(pid)]
        finally:
            server.stop()
    order = assert_each_answered_once(await RedisTrackerStore(redis).retrieve("binh"), dict([GREETING, THANKS, HELP]))
    assert order == [GREETING[0], THANKS[0], HELP[0]]
