"""Zero-downtime model rollout: every worker serves the version activated in the database.

Activation appends a row to `nlu_activations` and announces the version on Redis (channel
`nlu:model`). Each worker's watcher wakes on the announcement (or, without Redis, polls the
database every NLU_WATCH_SECONDS), loads the new version beside the serving one in a thread,
warms it up, and swaps the reference: a turn in flight finishes on the model it started with,
the next turn gets the new one, nobody waits. An archive that fails its checksum (or does not
load) is refused: the worker logs it and keeps serving the old model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

from backend.services import nlu_models
from backend.services.nlu_data import Actor
from bot.nlu_service import NLUService
from bot.nlu_training import load_version
from bot.tasks import stop_task

log = logging.getLogger(__name__)
CHANNEL = "nlu:model"
REDIS_BACKSTOP_SECONDS = 10.0
LISTEN_INTERVAL = 0.1  # how often a worker looks at its pub/sub socket


async def announce(redis: Any, version: str) -> None:
    """Tell every worker at once (they would notice within the poll interval anyway)."""
    if redis is None:
        return
    try:
        await redis.publish(CHANNEL, version)
    except Exception as exc:  # the database is the truth; polling picks it up
        log.warning("could not announce model %s on Redis: %s", version, exc)


async def register_serving(nlu: NLUService) -> None:
    """On a database with no active model (a new deployment), the model this worker loaded
    from models/ becomes version one, so the console has something to compare with."""
    if await nlu_models.active_version() is not None or nlu.model_dir is None:
        return
    info = await nlu_models.register(nlu.model_dir, Actor("startup"))
    if await nlu_models.active_version() is None:  # another worker may have won the race
        await nlu_models.activate(info.version, Actor("startup"), check=False)
        log.info("registered the serving NLU model %s as the active version", info.version)


class ModelWatcher:
    """Keeps one worker's NLU on the active version."""

    def __init__(self, nlu: NLUService, redis: Any = None, poll_seconds: float = 1.0, cache_dir: Path | None = None) -> None:
        self.nlu = nlu
        self.redis = redis
        self.poll_seconds = REDIS_BACKSTOP_SECONDS if redis is not None else poll_seconds
        self._cache = tempfile.TemporaryDirectory(prefix="nlu-cache-") if cache_dir is None else None
        self.cache_dir = cache_dir or Path(self._cache.name)  # type: ignore[union-attr]
        self._refused: dict[str, str] = {}  # version -> checksum that failed
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._syncing = asyncio.Lock()  # the poll loop and an admin's "activate" may sync at once
        self.swaps = 0

    @property
    def serving(self) -> str:
        return self.nlu.model.meta.id

    async def sync(self) -> bool:
        """Serve the active version if it is not served yet; True when the model changed."""
        async with self._syncing:  # two syncs would unpack into the same cache folder at once
            return await self._sync()

    async def _sync(self) -> bool:
        active = await nlu_models.active_version()
        if active is None or active == self.serving:
            return False
        info = await nlu_models.get(active)
        if info is None or self._refused.get(active) == info.checksum:
            return False
        try:
            model = await load_version(active, self.cache_dir)
            await asyncio.to_thread(model.parse, "mất điện ở phường Bến Thành quận 1")  # warm before serving
        except Exception as exc:  # corrupted archive, incompatible bundle: keep the old model
            self._refused[active] = info.checksum
            log.error("refusing NLU model %s (%s); still serving %s", active, exc, self.serving)
            return False
        previous = self.serving
        self.nlu.swap(model)
        self.swaps += 1
        log.info("NLU model %s now serving (was %s)", active, previous)
        return True

    async def start(self) -> None:
        await self._safe_sync()
        self._task = asyncio.create_task(self._run(), name="nlu-model-watcher")

    async def close(self) -> None:
        self._closing = True
        # Bounded: a pub/sub read cut off mid-way must not hold up the worker's shutdown.
        await stop_task(self._task, within=2.0)
        if self._cache is not None:
            self._cache.cleanup()

    async def _safe_sync(self) -> None:
        try:
            await self.sync()
        except Exception as exc:  # the database is briefly away: try again on the next tick
            log.warning("model watcher could not check the active model: %s", exc)

    async def _run(self) -> None:
        listener = asyncio.create_task(self._listen()) if self.redis is not None else None
        try:
            while not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                self._wake.clear()
                if not self._closing:
                    await self._safe_sync()
        finally:
            await stop_task(listener, within=1.0)

    async def _listen(self) -> None:
        """Wake the watcher on every announcement; reconnect after Redis hiccups."""
        while not self._closing:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                while not self._closing:
                    # A non-blocking read, then a sleep: the wait is always in asyncio.sleep, which
                    # a shutdown can cancel at once (a cancelled blocking pub/sub read can hang).
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
                    if message is None:
                        await asyncio.sleep(LISTEN_INTERVAL)
                    elif message.get("type") == "message":
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("model announcements unavailable (%s); polling the database", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), timeout=1.0)
