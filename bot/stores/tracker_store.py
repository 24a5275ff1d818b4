"""Tracker stores: a conversation is an append-only list of Rasa event dicts.

`append` names the length the caller read; if the stored list has grown meanwhile (another
worker wrote), it refuses with StaleTrackerError instead of interleaving events.
"""

from __future__ import annotations

import json
import marshal
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, select, update
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

    @abstractmethod
    async def senders_with_events_before(self, timestamp: float) -> list[str]:
        """Conversations holding an event older than `timestamp` (the retention purge)."""

    @abstractmethod
    async def drop_oldest(self, sender_id: str, count: int) -> None:
        """Remove the first `count` events, atomically; later appends count from what is left."""

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

    async def senders_with_events_before(self, timestamp: float) -> list[str]:
        return [s for s, events in self._conversations.items() if any(_time(e) < timestamp for e in events)]

    async def drop_oldest(self, sender_id: str, count: int) -> None:
        del self._conversations.get(sender_id, [])[:count]


_APPEND_IF_LENGTH = """
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
return redis.call('LLEN', KEYS[1])
"""


class _Decoded:
    """A conversation's events as this process last read or wrote them, and the stored form of
    the last one (what proves the cached prefix is still the stored one).

    The events are kept marshalled, in chunks (one per read or write), not as dicts: a cache of
    thousands of conversations as dicts and lists is hundreds of thousands of objects that every
    full pass of the garbage collector walks, a pause of 100-300 ms under load. Unmarshalling a
    conversation costs a fraction of decoding its JSON, and each caller gets its own copy."""

    __slots__ = ("chunks", "length", "last_raw")
    MAX_CHUNKS = 8

    def __init__(self, events: list[dict[str, Any]], last_raw: bytes) -> None:
        self.chunks = [marshal.dumps(events)]
        self.length = len(events)
        self.last_raw = last_raw

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for chunk in self.chunks:
            events.extend(marshal.loads(chunk))
        return events

    def extend(self, events: list[dict[str, Any]], last_raw: bytes) -> None:
        """Add `events` (read or written after the cached ones)."""
        self.chunks.append(marshal.dumps(events))
        self.length += len(events)
        self.last_raw = last_raw

    def compact(self, everything: list[dict[str, Any]]) -> None:
        """Make a long chain of chunks one again; `everything`: the events, just unmarshalled."""
        if len(self.chunks) >= self.MAX_CHUNKS:
            self.chunks = [marshal.dumps(everything)]


class RedisTrackerStore(TrackerStore):
    """One Redis list per conversation, `tracker:<sender>`; appends checked by a Lua script.

    Decoding a whole conversation on every turn costs more the longer it gets, so the events
    this process has seen are kept (for the `cache_size` most recent conversations) and a turn
    fetches only the tail other workers appended since. The list is append-only except for
    `delete` and `drop_oldest`; either one changes the element at the cached length - 1 (gone,
    or a later event), which is checked in the same round trip, so a stale prefix is never
    used: the whole list is read again instead."""

    def __init__(self, redis: Redis, prefix: str = "tracker:", cache_size: int = 2000) -> None:
        self.redis = redis
        self.prefix = prefix
        self._append = redis.register_script(_APPEND_IF_LENGTH)
        self.cache_size = cache_size
        self._decoded: OrderedDict[str, _Decoded] = OrderedDict()

    def _key(self, sender_id: str) -> str:
        return self.prefix + sender_id

    def _remember(self, sender_id: str, decoded: _Decoded) -> None:
        self._decoded[sender_id] = decoded
        self._decoded.move_to_end(sender_id)
        while len(self._decoded) > self.cache_size:
            self._decoded.popitem(last=False)

    async def retrieve(self, sender_id: str) -> list[dict[str, Any]]:
        key = self._key(sender_id)
        cached = self._decoded.get(sender_id)
        if cached is not None and cached.length:
            known = cached.length
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.lindex(key, known - 1)
                pipe.lrange(key, known, -1)
                last, tail = await pipe.execute()
            # Checked after the read: a write by this process meanwhile changed last_raw.
            if last == cached.last_raw and cached.length == known:
                events = cached.events()
                if tail:
                    added = [json.loads(raw) for raw in tail]
                    events.extend(added)
                    cached.extend(added, tail[-1])
                cached.compact(events)
                # Other conversations' turns ran during the read: this entry may have been
                # evicted or replaced meanwhile. Keep it only if nothing newer took its place.
                current = self._decoded.get(sender_id)
                if current is cached:
                    self._decoded.move_to_end(sender_id)
                elif current is None:
                    self._remember(sender_id, cached)
                return events
        raw_events = await self.redis.lrange(key, 0, -1)
        events = [json.loads(raw) for raw in raw_events]
        if raw_events:
            self._remember(sender_id, _Decoded(events, raw_events[-1]))
        else:
            self._decoded.pop(sender_id, None)
        return events

    async def append(self, sender_id: str, events: list[dict[str, Any]], expected_length: int) -> None:
        if not events:
            return
        payload = [json.dumps(e, ensure_ascii=False) for e in events]
        try:
            result = await self._append(keys=[self._key(sender_id)], args=[expected_length, *payload])
        except BaseException:
            self._decoded.pop(sender_id, None)  # written or not: read it all next time
            raise
        if int(result) < 0:
            raise StaleTrackerError(sender_id)
        # Remember what was written, decoded from the stored form, exactly as a later read sees it.
        cached = self._decoded.get(sender_id)
        written = [json.loads(p) for p in payload]
        if cached is not None and cached.length == expected_length:
            cached.extend(written, payload[-1].encode())
            self._decoded.move_to_end(sender_id)
        elif expected_length == 0:
            self._remember(sender_id, _Decoded(written, payload[-1].encode()))
        else:
            self._decoded.pop(sender_id, None)

    async def delete(self, sender_id: str) -> None:
        self._decoded.pop(sender_id, None)
        await self.redis.delete(self._key(sender_id))

    async def senders_with_events_before(self, timestamp: float) -> list[str]:
        # A daily maintenance scan, never on a customer's turn. Events are appended in time
        # order, so the first one of a list is its oldest.
        found = []
        async for key in self.redis.scan_iter(match=self.prefix + "*", count=500, _type="list"):
            first = await self.redis.lindex(key, 0)
            if first is not None and _time(json.loads(first)) < timestamp:
                found.append(key.decode()[len(self.prefix) :] if isinstance(key, bytes) else key[len(self.prefix) :])
        return found

    async def drop_oldest(self, sender_id: str, count: int) -> None:
        self._decoded.pop(sender_id, None)
        await self.redis.ltrim(self._key(sender_id), count, -1)


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

    async def senders_with_events_before(self, timestamp: float) -> list[str]:
        async with db.read_scope() as session:
            return list(await session.scalars(select(TrackerEvent.sender_id).where(TrackerEvent.timestamp < timestamp).distinct()))

    async def drop_oldest(self, sender_id: str, count: int) -> None:
        # Renumber what is left from 0 (appends check the last seq), through negative numbers so
        # that no row ever takes a seq another row still holds (unique (sender_id, seq)).
        mine = TrackerEvent.sender_id == sender_id
        async with db.session_scope() as session:
            await session.execute(delete(TrackerEvent).where(mine, TrackerEvent.seq < count))
            await session.execute(update(TrackerEvent).where(mine).values(seq=count - TrackerEvent.seq - 1))
            await session.execute(update(TrackerEvent).where(mine).values(seq=-TrackerEvent.seq - 1))


def _time(e: dict[str, Any]) -> float:
    return float(e.get("timestamp") or 0)
