"""A worker whose conversation lock lapsed mid-turn (it stalled: a slow action, a frozen event
loop) must not write what it computed on the old history: the tracker store's length check,
in the same atomic step as the append, refuses it, and the turn runs again on the new history.
No message is lost, doubled or interleaved with another turn.

Two agents share one tracker store, as two worker processes do. On Redis each has its own
Redis lock with a tiny lifetime and no renewal; on memory and SQL each has a process-local lock
(the extreme case: no exclusion at all between the workers)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from backend import db
from backend.settings import Settings
from bot.action_runner import ActionResult, ActionRunner
from bot.agent import Agent
from bot.channels.base import UserMessage
from bot.runtime import Runtime, build_runtime
from bot.stores import (
    InMemoryLockStore,
    InMemoryTrackerStore,
    LockStore,
    RedisLockStore,
    RedisTrackerStore,
    SQLTrackerStore,
    TrackerStore,
)
from nlu import NLUModel
from tests.conftest import PROJECT_DIR, REDIS_URL, empty_all_tables
from tests.production.conftest import GREETING, HELP, THANKS
from tests.production.support import assert_each_answered_once

LAPSE = 0.2  # the Redis locks' lifetime in these tests


class StallingActions:
    """The project's action runner; after `stall()`, the next action call waits for `resume()`."""

    def __init__(self, runner: ActionRunner) -> None:
        self.runner = runner
        self.stalled = asyncio.Event()
        self._go = asyncio.Event()
        self._go.set()

    def stall(self) -> None:
        self._go.clear()

    def resume(self) -> None:
        self._go.set()

    def action_names(self) -> set[str] | None:
        return self.runner.action_names()

    async def run(self, action_name: str, tracker_state: dict[str, Any], domain: dict[str, Any]) -> ActionResult:
        if not self._go.is_set():
            self.stalled.set()
            await self._go.wait()
        return await self.runner.run(action_name, tracker_state, domain)


@pytest.fixture(params=["memory", "redis", "sql-sqlite", "sql-postgresql"])
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[tuple[TrackerStore, LockStore, LockStore]]:
    """One tracker store, and a lock store for each of two workers."""
    if request.param == "memory":
        yield InMemoryTrackerStore(), InMemoryLockStore(), InMemoryLockStore()
        return
    redis = Redis.from_url(REDIS_URL) if REDIS_URL else None
    prefix = f"fence-{uuid.uuid4().hex[:8]}:"
    locks: tuple[LockStore, LockStore] = (InMemoryLockStore(), InMemoryLockStore())
    if redis is not None:
        locks = (RedisLockStore(redis, lifetime=LAPSE, prefix=prefix, renew=False), RedisLockStore(redis, lifetime=LAPSE, prefix=prefix, renew=False))
    if request.param == "redis":
        if redis is None:
            pytest.skip("REDIS_URL not set")
        yield RedisTrackerStore(redis, prefix=f"tracker-{prefix}"), *locks
    else:
        db.configure(request.getfixturevalue("sqlite_url" if request.param == "sql-sqlite" else "postgres_url"))
        await empty_all_tables()
        yield SQLTrackerStore(), *locks
        await db.dispose()
    if redis is not None:
        await redis.aclose()


@pytest.fixture
async def runtime(project_nlu: NLUModel) -> AsyncIterator[Runtime]:
    runtime = build_runtime(Settings(project_dir=PROJECT_DIR, redis_url=None), model=project_nlu)
    yield runtime
    await runtime.close()


def _worker(runtime: Runtime, tracker_store: TrackerStore, lock_store: LockStore, actions: ActionRunner | None = None) -> Agent:
    base = runtime.agent
    return Agent(base.domain, base.policy, base.nlu, actions or base.actions, tracker_store, lock_store)


def _text(replies: list[dict[str, Any]]) -> str:
    return "\n".join(str(r.get("text", "")) for r in replies)


async def test_a_stalled_turn_cannot_write_over_a_newer_one(runtime: Runtime, stores: tuple[TrackerStore, LockStore, LockStore]) -> None:
    tracker_store, lock_a, lock_b = stores
    stalling = StallingActions(runtime.agent.actions)
    worker_a = _worker(runtime, tracker_store, lock_a, stalling)
    worker_b = _worker(runtime, tracker_store, lock_b)
    sender = f"fence-{uuid.uuid4().hex[:8]}"

    stalling.stall()
    turn_a = asyncio.create_task(worker_a.handle_message(UserMessage(sender, GREETING[0])))
    await asyncio.wait_for(stalling.stalled.wait(), 10)  # A is mid-turn, holding a lock ...
    await asyncio.sleep(LAPSE * 2)  # ... that lapses while it stalls
    thanks = await asyncio.wait_for(worker_b.handle_message(UserMessage(sender, THANKS[0])), 10)  # B takes a turn meanwhile
    stalling.resume()
    greeting = await asyncio.wait_for(turn_a, 10)  # A's write is refused; it runs the turn again

    assert THANKS[1] in _text(thanks)
    assert GREETING[1] in _text(greeting)
    assert HELP[1] in _text(await worker_a.handle_message(UserMessage(sender, HELP[0])))
    order = assert_each_answered_once(await tracker_store.retrieve(sender), dict([GREETING, THANKS, HELP]))
    # B finished first, so its turn is first; the customer's next message comes after both
    assert order == [THANKS[0], GREETING[0], HELP[0]]
    assert [e["event"] for e in await tracker_store.retrieve(sender)].count("session_started") == 1


@pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set")
async def test_a_slow_turn_keeps_its_redis_lock(runtime: Runtime) -> None:
    """With renewal on (the default), a live worker's lock does not lapse however slow its
    action: the other worker waits, and the messages are answered in the order they came."""
    redis = Redis.from_url(REDIS_URL)
    prefix = f"renew-{uuid.uuid4().hex[:8]}:"
    try:
        tracker_store = RedisTrackerStore(redis, prefix=f"tracker-{prefix}")
        stalling = StallingActions(runtime.agent.actions)
        worker_a = _worker(runtime, tracker_store, RedisLockStore(redis, lifetime=LAPSE, prefix=prefix), stalling)
        worker_b = _worker(runtime, tracker_store, RedisLockStore(redis, lifetime=LAPSE, prefix=prefix, wait_timeout=10))
        stalling.stall()
        turn_a = asyncio.create_task(worker_a.handle_message(UserMessage("slow", GREETING[0])))
        await asyncio.wait_for(stalling.stalled.wait(), 10)
        turn_b = asyncio.create_task(worker_b.handle_message(UserMessage("slow", THANKS[0])))
        await asyncio.sleep(LAPSE * 5)  # five lifetimes: without renewal B would have gone ahead
        assert not turn_b.done()
        stalling.resume()
        await asyncio.wait_for(asyncio.gather(turn_a, turn_b), 10)
        order = assert_each_answered_once(await tracker_store.retrieve("slow"), dict([GREETING, THANKS]))
        assert order == [GREETING[0], THANKS[0]]
        assert await redis.get(prefix + "slow") is None  # released
    finally:
        await redis.aclose()
