"""Notifications to customers through the persisted outbox.

A service that changes something a customer should hear about (a payment received, a ticket
moved, power restored) adds a `Notification` in the same transaction as the change, so the
message exists exactly when the change does. Channels deliver from the outbox later; the
REST channel lets its client poll for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.clock import utcnow
from backend.db import session_scope, upsert_insert
from backend.models import OutboxMessage


@dataclass(frozen=True)
class ChatRef:
    """Where a customer talks to us: the channel and the id the channel knows them by."""

    channel: str
    recipient_id: str
    language: str = "vi"


@dataclass(frozen=True)
class Notification:
    """A domain response (`utter_...`) with its values, to render in the customer's language."""

    chat: ChatRef
    kind: str
    response: str
    values: dict[str, Any] = field(default_factory=dict)
    dedupe_key: str | None = None


@dataclass(frozen=True)
class OutboxItem:
    id: int
    channel: str
    recipient_id: str
    kind: str
    language: str
    payload: dict[str, Any]
    created_at: datetime


async def enqueue(session: AsyncSession, notification: Notification) -> None:
    """Add to the outbox inside the caller's transaction; a repeated dedupe_key is ignored."""
    chat = notification.chat
    payload = {"response": notification.response, "values": notification.values}
    statement = (await upsert_insert(session, OutboxMessage)).values(
        channel=chat.channel,
        recipient_id=chat.recipient_id,
        kind=notification.kind,
        payload=json.dumps(payload, ensure_ascii=False, default=str),
        language=chat.language,
        status="pending",
        attempts=0,
        next_attempt_at=utcnow(),
        dedupe_key=notification.dedupe_key,
        created_at=utcnow(),
    )
    await session.execute(statement.on_conflict_do_nothing(index_elements=["dedupe_key"]))


async def notify(notification: Notification) -> None:
    """Add one notification in a transaction of its own."""
    async with session_scope() as session:
        await enqueue(session, notification)


def _item(row: OutboxMessage) -> OutboxItem:
    return OutboxItem(row.id, row.channel, row.recipient_id, row.kind, row.language, json.loads(row.payload), row.created_at)


async def take_for_recipient(channel: str, recipient_id: str, limit: int = 20) -> list[OutboxItem]:
    """Hand over the pending messages of one chat, oldest first, and mark them sent (the REST
    poll: the client that asks receives them, once)."""
    async with session_scope() as session:
        rows = list(
            await session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.channel == channel,
                    OutboxMessage.recipient_id == recipient_id,
                    OutboxMessage.status == "pending",
                )
                .order_by(OutboxMessage.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if rows:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([r.id for r in rows]))
                .values(status="sent", sent_at=utcnow(), attempts=OutboxMessage.attempts + 1)
            )
        return [_item(r) for r in rows]


async def pending_for(channel: str, recipient_id: str) -> list[OutboxItem]:
    """What is still waiting for a chat (for tests and the staff console)."""
    async with session_scope() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.channel == channel, OutboxMessage.recipient_id == recipient_id, OutboxMessage.status == "pending")
            .order_by(OutboxMessage.id)
        )
        return [_item(r) for r in rows]
