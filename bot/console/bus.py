"""Console events between worker processes: Redis pub/sub when Redis is configured, an
in-process broadcast otherwise.

Each worker keeps one subscription and fans the events out to its own WebSocket clients, so an
agent connected to worker A sees a customer message that worker B received. Events are small
dicts such as {"type": "queue"} (the queue changed: reload it) or {"type": "message",
"handoff_id": 7, "role": "customer", "text": "..."}; they never carry secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.tasks import stop_task

log = logging.getLogger(__name__)
CHANNEL = "console:events"
QUEUE_SIZE = 256


class ConsoleBus:
    def __init__(self, redis: Redis | None) -> None:
        self._redis = redis
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closing = False

    async def start(self) -> None:
        """Subscribe (on Redis) before returning, so no event published afterwards is missed."""
        if self._redis is None:
            return
        self._task = asyncio.create_task(self._listen(), name="console-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def close(self) -> None:
        self._closing = True
        await stop_task(self._task, within=3.0)
        self._task = None

    async def publish(self, event: dict[str, Any]) -> None:
        if self._redis is None:
            self._fan_out(event)
            return
        try:
            await self._redis.publish(CHANNEL, json.dumps(event, ensure_ascii=False, default=str))
        except RedisError:
            log.exception("console event not published; serving it to this worker only")
            self._fan_out(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue receiving every event while the block runs (one per WebSocket client)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def _fan_out(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a stalled client loses events rather than memory
                log.warning("console client too slow; event dropped")

    async def _listen(self) -> None:
        assert self._redis is not None
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                self._ready.set()
                while not self._closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message and message.get("type") == "message":
                        try:
                            self._fan_out(json.loads(message["data"]))
                        except (ValueError, TypeError):
                            log.warning("malformed console event ignored")
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                log.exception("console subscription lost; reconnecting")
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
