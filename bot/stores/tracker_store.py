"""Tracker stores: a conversation is an append-only list of Rasa event dicts.

`append` names the length the caller read; if the stored list has grown meanwhile (another
worker wrote), it refuses with StaleTrackerError instead of interleaving events.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from backend import db
from backend.models import TrackerEvent


class StaleTrackerError(RuntimeError):
    """The conversation changed since it was read; nothing was written."""


class TrackerStore(ABC):
    @abstractmethod
    async def retrieve(self, sender_id: str) -> list[dict[str, Any]]:
        """All events of the conversation, oldest first ([] if new)."""

    @abstractmethod
    async def append(self, sender_id: str, events: list[dict[str, Any]], expected_length: int) -> None:
        """Add events after the first `expected_length` ones, atomically."""

    @abstractmethod
    async def delete(self, sender_id: str) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class InMemoryTrackerStore(TrackerStore):
    def __init__(self) -> None:
        self._conversations: dict[str, list[dict[str, Any]]] = {}

    async def retrieve(self, sender_id: str) -> list[dict[str, Any]]:
        return list(self._conversations.get(sender_id, []))

    async def append(self, sender_id: str, events: list[dict[str, Any]], expected_length: int) -> None:
        stored = self._conversations.setdefault(sender_id, [])
        if len(stored) != expected_length:
            raise StaleTrackerError(sender_id)
        stored.extend(events)

    async def delete(self, sender_id: str) -> None:
        self._conversations.pop(sender_id, None)


_APPEND_IF_LENGTH = """
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return redis.call('LLEN', KEYS[1])
"""


class RedisTrackerStore(TrackerStore):
    """One Redis list per conversation, `tracker:<sender>`; appends checked by a Lua script."""

    def __init__(self, redis: Redis, prefix: str = "tracker:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._append = redis.register_script(_APPEND_IF_LENGTH)

    def _key(self, sender_id: str) -> str:
        return self.prefix + sender_id

    async def retrieve(self, sender_id: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in await self.redis.lrange(self._key(sender_id), 0, -1)]

    async def append(self, sender_id: str, events: list[dict[str, Any]], expected_length: int) -> None:
        if not events:
            return
        payload = [json.dumps(e, ensure_ascii=False) for e in events]
        result = await self._append(keys=[self._key(sender_id)], args=[expected_length, *payload])
        if int(result) < 0:
            raise StaleTrackerError(sender_id)

    async def delete(self, sender_id: str) -> None:
        await self.redis.delete(self._key(sender_id))


class SQLTrackerStore(TrackerStore):
    """Events as rows (sender_id, seq) in the backend database; the unique key fences writers."""

    async def retrieve(self, sender_id: str) -> list[dict[str, Any]]:
        async with db.read_scope() as session:
            rows = await session.scalars(
                select(TrackerEvent.data).where(TrackerEvent.sender_id == sender_id).order_by(TrackerEvent.seq)
            )
            return [json.loads(data) for data in rows]

    async def append(self, sender_id: str, events: list[dict[str, Any]], expected_length: int) -> None:
        if not events:
            return
        try:
            async with db.session_scope() as session:
                latest = await session.scalar(
                    select(TrackerEvent.seq).where(TrackerEvent.sender_id == sender_id).order_by(TrackerEvent.seq.desc()).limit(1)
                )
                if (latest + 1 if latest is not None else 0) != expected_length:
                    raise StaleTrackerError(sender_id)
                session.add_all(
                    TrackerEvent(
                        sender_id=sender_id,
                        seq=expected_length + i,
                        type_name=str(e.get("event")),
                        timestamp=float(e.get("timestamp") or 0),
                        data=json.dumps(e, ensure_ascii=False),
                    )
                    for i, e in enumerate(events)
                )
        except IntegrityError as exc:
            raise StaleTrackerError(sender_id) from exc

    async def delete(self, sender_id: str) -> None:
        async with db.session_scope() as session:
            await session.execute(delete(TrackerEvent).where(TrackerEvent.sender_id == sender_id))
