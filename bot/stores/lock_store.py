"""Per-conversation locks: one turn of a conversation at a time, all conversations concurrent.

In memory: a FIFO asyncio lock per conversation. Redis: the same local FIFO (so messages that
reach one worker keep their order) plus a Redis lock with an owner token and a lifetime, taken
with SET NX PX and released or extended only by its owner (atomic Lua scripts).

While a turn runs, its Redis lock is renewed every third of the lifetime, so a slow action does
not let the lock lapse; the lifetime only matters when the holder dies or stalls (SIGKILL, a
frozen event loop, a network split). The lock alone can then not stop the stalled holder from
writing late: the tracker store's `append(..., expected_length)` is the fence (see
bot/stores/tracker_store.py), and the agent retries a turn that lost that race.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.tasks import stop_task

log = logging.getLogger(__name__)

class LockTimeout(RuntimeError):
    """The conversation stayed locked longer than we are willing to wait."""


class _LocalLocks:
    """asyncio locks keyed by conversation, dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str, wait_seconds: float) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            try:
                await asyncio.wait_for(lock.acquire(), wait_seconds)
            except TimeoutError:
                raise LockTimeout(key) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class LockStore(ABC):
    @abstractmethod
    def lock(self, sender_id: str) -> AbstractAsyncContextManager[object]:
        """Hold the conversation for one turn; raises LockTimeout if it stays busy."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class InMemoryLockStore(LockStore):
    def __init__(self, wait_timeout: float = 30.0) -> None:
        self._local = _LocalLocks()
        self.wait_timeout = wait_timeout

    def lock(self, sender_id: str) -> AbstractAsyncContextManager[object]:
        return self._local.hold(sender_id, self.wait_timeout)


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class RedisLockStore(LockStore):
    """`renew=False` turns the renewal off: only tests use it, to make a lock lapse mid-turn."""

    def __init__(
        self, redis: Redis, lifetime: float = 60.0, wait_timeout: float = 30.0, prefix: str = "lock:", *, renew: bool = True
    ) -> None:
        self.redis = redis
        self.lifetime_ms = int(lifetime * 1000)
        self.wait_timeout = wait_timeout
        self.prefix = prefix
        self.renew = renew
        self._local = _LocalLocks()
        self._release = redis.register_script(_RELEASE)
        self._extend = redis.register_script(_EXTEND)

    @asynccontextmanager
    async def lock(self, sender_id: str) -> AsyncIterator[str]:  # type: ignore[override]
        deadline = time.monotonic() + self.wait_timeout
        async with self._local.hold(sender_id, self.wait_timeout):
            key = self.prefix + sender_id
            token = secrets.token_hex(16)
            delay = 0.002
            while not await self.redis.set(key, token, nx=True, px=self.lifetime_ms):
                if time.monotonic() > deadline:
                    raise LockTimeout(sender_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            renewal = asyncio.get_running_loop().create_task(self._keep(sender_id, token)) if self.renew else None
            try:
                yield token
            finally:
                await stop_task(renewal)
                await self._release(keys=[key], args=[token])

    async def extend(self, sender_id: str, token: str) -> bool:
        """Renew the lifetime if we still own the lock."""
        return bool(await self._extend(keys=[self.prefix + sender_id], args=[token, self.lifetime_ms]))

    async def _keep(self, sender_id: str, token: str) -> None:
        """Renew the lock while the turn runs; stop once it is lost (another worker may have it
        now, and the tracker's length check will refuse this turn's late write)."""
        every = self.lifetime_ms / 3000
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.extend(sender_id, token):
                    log.warning("conversation %s: lock lost mid-turn (expired); its write will be fenced", sender_id)
                    return
            except (RedisError, OSError):  # Redis is away: the turn's own calls will fail and say so
                log.warning("conversation %s: could not renew the lock", sender_id)
