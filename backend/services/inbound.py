"""The inbound journal: platform updates acknowledged (200) but not yet handled.

The webhook writes the verified body here before it answers, and the row is deleted once the
update has been handled. If the worker dies in between (SIGKILL, OOM, a node lost), the row
stays, and any worker's recovery loop claims it after `older_than` seconds with a lease and
handles it again. Handling twice is harmless: the turn is keyed by the platform's update id
(the tracker answers a repeated message id with the recorded replies, and the outbox drops a
reply it already holds), so recovery adds no second answer.

Rows hold a message only while it is in flight, so the journal keeps no chat history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, or_, select, update

from backend.clock import utcnow
from backend.db import session_scope, upsert_insert
from backend.models import InboundUpdate


@dataclass(frozen=True)
class Pending:
    id: int
    channel: str
    update_id: str
    payload: str
    attempts: int


async def hold(channel: str, update_id: str, payload: str) -> bool:
    """Journal an update; False when it is already journaled (a platform's retry of an update
    still in flight, or being recovered)."""
    async with session_scope() as session:
        insert = await upsert_insert(session, InboundUpdate)
        result = await session.execute(
            insert.values(channel=channel, update_id=update_id, payload=payload, received_at=utcnow(), attempts=0)
            .on_conflict_do_nothing(index_elements=["channel", "update_id"])
        )
        return bool(result.rowcount)


async def release(channel: str, update_id: str) -> None:
    """The update has been handled (or deliberately dropped): forget it."""
    async with session_scope() as session:
        await session.execute(delete(InboundUpdate).where(InboundUpdate.channel == channel, InboundUpdate.update_id == update_id))


async def claim_stale(channels: Sequence[str], older_than: float, lease_seconds: float, limit: int = 50) -> list[Pending]:
    """Updates of `channels` journaled more than `older_than` seconds ago and not leased by a
    live recovery: leased to the caller for `lease_seconds`, oldest first."""
    if not channels:
        return []
    now = utcnow()
    stale = (
        select(InboundUpdate.id)
        .where(
            InboundUpdate.channel.in_(list(channels)),
            InboundUpdate.received_at < now - timedelta(seconds=older_than),
            or_(InboundUpdate.lease_until.is_(None), InboundUpdate.lease_until < now),
        )
        .order_by(InboundUpdate.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    async with session_scope() as session:
        ids = list(await session.scalars(stale))
        if not ids:
            return []
        rows = await session.execute(
            update(InboundUpdate)
            .where(InboundUpdate.id.in_(ids))
            .values(lease_until=now + timedelta(seconds=lease_seconds), attempts=InboundUpdate.attempts + 1)
            .returning(InboundUpdate.id, InboundUpdate.channel, InboundUpdate.update_id, InboundUpdate.payload, InboundUpdate.attempts)
        )
        return sorted((Pending(*row) for row in rows.all()), key=lambda p: p.id)


async def count(channel: str | None = None) -> int:
    """Updates in flight."""
    async with session_scope() as session:
        query = select(func.count()).select_from(InboundUpdate)
        if channel is not None:
            query = query.where(InboundUpdate.channel == channel)
        return int(await session.scalar(query) or 0)
