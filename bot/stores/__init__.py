"""Where conversations live (TrackerStore) and how a conversation is held by one turn (LockStore)."""

from bot.stores.lock_store import InMemoryLockStore, LockStore, LockTimeout, RedisLockStore
from bot.stores.tracker_store import (
    InMemoryTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
    StaleTrackerError,
    TrackerStore,
)

__all__ = [
    "InMemoryLockStore",
    "InMemoryTrackerStore",
    "LockStore",
    "LockTimeout",
    "RedisLockStore",
    "RedisTrackerStore",
    "SQLTrackerStore",
    "StaleTrackerError",
    "TrackerStore",
]
