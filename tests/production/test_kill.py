"""Two workers under the supervisor (PostgreSQL + Redis); one is killed with SIGKILL in the
middle of a turn. The customer's client resends the same message (same `message_id`): it is
answered once, after the dead worker's lock expires; a second resend gets the same answer
without a second turn; the conversation goes on; the supervisor has started a new worker."""

from __future__ import annotations

import asyncio
import contextlib
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
from backend.services import inbound
from bot.stores import RedisTrackerStore
from tests.channels.conftest import TG_SECRET, TG_TOKEN
from tests.conftest import POSTGRES_URL, REDIS_URL, empty_all_tables
from tests.fakes.telegram import FakeTelegram
from tests.production.conftest import GREETING, HELP, THANKS
from tests.production.support import (
    SlowActionServer,
    assert_each_answered_once,
    fresh_session,
    listeners,
    pid_of_connection,
    say,
    texts,
)
from tests.servers import ServerProcess

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


async def _empty_database(url: str) -> None:
    db.configure(url)
    await empty_all_tables()
    await db.dispose()


def _worker_env(postgres_url: str, models: Path, actions: SlowActionServer, **extra: str) -> dict[str, str]:
    """PostgreSQL + Redis workers whose actions run on the test's (holdable) action server."""
    return {
        "DATABASE_URL": postgres_url, "REDIS_URL": REDIS_URL, "MODELS_DIR": str(models),
        "ACTION_ENDPOINT_URL": actions.url, "LOCK_LIFETIME_SECONDS": str(LOCK_SECONDS), **extra,
    }


@contextlib.asynccontextmanager
async def _two_workers(env: dict[str, str]) -> AsyncIterator[ServerProcess]:
    """The supervisor with two workers listening; stopped however the test ends."""
    server = ServerProcess(env, workers=2, grace=GRACE)
    server.start()
    try:
        await server.wait_healthy()
        await _workers_up(server, 2)
        yield server
    finally:
        server.stop()


async def _kill_the_worker_in_its_action(actions: SlowActionServer, server: ServerProcess) -> int:
    """SIGKILL the worker whose turn is held in the action server (`actions.hold()` first)."""
    caller_port = await asyncio.wait_for(actions.held.get(), 10)  # mid-turn, in its action
    victim = pid_of_connection(caller_port, server.children())
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    return victim


async def test_a_worker_killed_mid_turn_loses_nothing(postgres_url: str, trained_models_dir: Path, redis: Redis) -> None:
    await _empty_database(postgres_url)
    async with SlowActionServer() as actions, _two_workers(_worker_env(postgres_url, trained_models_dir, actions)) as server:
        async with fresh_session() as http:
            status, replies = await say(http, server.base, "binh", GREETING[0], message_id="m1")
            assert status == 200 and GREETING[1] in texts(replies)

            actions.hold()
            in_flight = asyncio.create_task(say(http, server.base, "binh", THANKS[0], message_id="m2"))
            victim = await _kill_the_worker_in_its_action(actions, server)
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
    order = assert_each_answered_once(await RedisTrackerStore(redis).retrieve("binh"), dict([GREETING, THANKS, HELP]))
    assert order == [GREETING[0], THANKS[0], HELP[0]]


async def test_a_telegram_update_acknowledged_by_a_killed_worker_is_still_answered(
    postgres_url: str, trained_models_dir: Path, redis: Redis
) -> None:
    """Telegram gets its 200 before the turn runs and never sends that update again. The worker
    dies mid-turn: the update waits in the inbound journal, and a surviving worker answers it,
    once."""
    await _empty_database(postgres_url)
    telegram = await FakeTelegram(TG_TOKEN).start()
    chat = 7_700_000_000 + os.getpid()
    updates = iter(range(900_000, 900_100))

    def update(text: str) -> dict[str, Any]:
        person = {"id": chat, "is_bot": False, "first_name": "Bình", "language_code": "vi"}
        message = {"message_id": next(updates), "date": int(time.time()), "chat": {"id": chat, "type": "private"}, "from": person, "text": text}
        return {"update_id": next(updates), "message": message}

    def answers(piece: str) -> int:
        return sum(1 for c in telegram.sent(chat) if piece in (c.text or ""))

    try:
        async with SlowActionServer() as actions, _two_workers(
            _worker_env(
                postgres_url, trained_models_dir, actions,
                TELEGRAM_BOT_TOKEN=TG_TOKEN, TELEGRAM_WEBHOOK_SECRET=TG_SECRET, TELEGRAM_API_BASE_URL=telegram.base_url,
                TELEGRAM_CHAT_RATE_LIMIT="0", OUTBOX_POLL_SECONDS="0.2",
                INBOUND_RECOVER_AFTER_SECONDS="3", INBOUND_RECOVER_POLL_SECONDS="0.5",
            )
        ) as server:
            async with fresh_session() as http:
                hook = f"{server.base}/webhooks/telegram"
                headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}

                async def post(text: str) -> None:
                    async with http.post(hook, json=update(text), headers=headers) as response:
                        assert response.status == 200, await response.text()

                await post(GREETING[0])
                await telegram.wait_for(lambda: answers(GREETING[1]) == 1, within=30)

                actions.hold()
                await post(THANKS[0])  # acknowledged: Telegram is done with this update
                await _kill_the_worker_in_its_action(actions, server)
                actions.release()

                await telegram.wait_for(lambda: answers(THANKS[1]) >= 1, within=40)
                await post(HELP[0])  # the conversation goes on
                await telegram.wait_for(lambda: answers(HELP[1]) == 1, within=30)
                await asyncio.sleep(1.0)  # a second answer to the recovered update would come now
            assert answers(THANKS[1]) == 1
            db.configure(postgres_url)
            assert await inbound.count("telegram") == 0  # nothing left in flight
            await db.dispose()
            server.signal(signal.SIGTERM)
            assert await server.wait_exit(GRACE + 15) == 0
    finally:
        await telegram.close()
    order = assert_each_answered_once(await RedisTrackerStore(redis).retrieve(f"telegram:{chat}"), dict([GREETING, THANKS, HELP]))
    assert order == [GREETING[0], THANKS[0], HELP[0]]
