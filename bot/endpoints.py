"""Builds the tracker store, lock store and action runner from endpoints.yml and settings.

`type: auto` (the default) means Redis when REDIS_URL is set and in-memory when it is not,
so the embedded default needs no servers and production needs no file edits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from backend.settings import Settings
from bot.action_runner import ActionRunner, HttpActionRunner, InProcessActionRunner
from bot.config_files import ConfigFileError, read_yaml_with_env
from bot.resilience import redis_client
from bot.stores import (
    InMemoryLockStore,
    InMemoryTrackerStore,
    LockStore,
    RedisLockStore,
    RedisTrackerStore,
    SQLTrackerStore,
    TrackerStore,
)

TRACKER_TYPES = {"auto", "memory", "redis", "sql"}
LOCK_TYPES = {"auto", "memory", "redis"}


@dataclass
class Endpoints:
    tracker_store: TrackerStore
    lock_store: LockStore
    action_runner: ActionRunner
    redis: Redis | None

    async def close(self) -> None:
        await self.tracker_store.close()
        await self.lock_store.close()
        if isinstance(self.action_runner, HttpActionRunner):
            await self.action_runner.close()
        if self.redis is not None:
            await self.redis.aclose()


def _section(doc: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigFileError(path, key, "must be a mapping")
    return value


def build_endpoints(path: Path, settings: Settings) -> Endpoints:
    doc = read_yaml_with_env(path) if path.exists() else {}
    tracker_cfg = _section(doc, "tracker_store", path)
    lock_cfg = _section(doc, "lock_store", path)
    tracker_type = str(tracker_cfg.get("type") or "auto")
    lock_type = str(lock_cfg.get("type") or "auto")
    if tracker_type not in TRACKER_TYPES:
        raise ConfigFileError(path, "tracker_store.type", f"must be one of {sorted(TRACKER_TYPES)}")
    if lock_type not in LOCK_TYPES:
        raise ConfigFileError(path, "lock_store.type", f"must be one of {sorted(LOCK_TYPES)}")
    redis_url = tracker_cfg.get("url") or lock_cfg.get("url") or settings.redis_url
    if "redis" in (tracker_type, lock_type) and not redis_url:
        raise ConfigFileError(path, "tracker_store.url", "a Redis store needs a url (or REDIS_URL)")
    redis = redis_client(redis_url) if redis_url else None

    if tracker_type == "auto":
        tracker_type = "redis" if redis else "memory"
    if lock_type == "auto":
        lock_type = "redis" if redis else "memory"
    tracker_store: TrackerStore
    if tracker_type == "redis":
        tracker_store = RedisTrackerStore(redis)  # type: ignore[arg-type]
    elif tracker_type == "sql":
        tracker_store = SQLTrackerStore()
    else:
        tracker_store = InMemoryTrackerStore()
    lock_store: LockStore
    if lock_type == "redis":
        lock_store = RedisLockStore(redis, lifetime=settings.lock_lifetime_seconds)  # type: ignore[arg-type]
    else:
        lock_store = InMemoryLockStore()

    action_cfg = _section(doc, "action_endpoint", path)
    runner: ActionRunner
    if action_cfg.get("url"):
        runner = HttpActionRunner(str(action_cfg["url"]), timeout=float(action_cfg.get("timeout", 10)))
    else:
        runner = InProcessActionRunner(str(action_cfg.get("package") or "actions"))
    return Endpoints(tracker_store, lock_store, runner, redis)
