"""Notifications to customers through the persisted outbox.

A service that changes something a customer should hear about (a payment received, a ticket
moved, power restored) adds a `Notification` in the same transaction as the change, so the
message exists exactly when the change does. Channels deliver from the outbox later; the
REST channel lets its client poll for them.

Platform channels (Telegram, Zalo) also write the bot's replies here first (`enqueue_messages`)
and an outbox worker delivers them: `claim_due` hands a worker the due messages of chats that
nobody else is sending to, with a lease, in per-chat order; `settle` records what happened.
A worker that dies leaves leases that expire, and another worker (or the restart) takes over.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, tuple_, update
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
    attempts: int = 0  # delivery attempts recorded so far (worker claims only)


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
    _announce()


# Called (synchronously, after the commit) when this process added outbox rows, so an outbox
# worker in the same process sends them at once instead of at its next poll. Rows added inside
# another service's transaction (`enqueue`) are found by the poll.
_listeners: list[Callable[[], None]] = []


def add_listener(listener: Callable[[], None]) -> None:
    _listeners.append(listener)


def remove_listener(listener: Callable[[], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _announce() -> None:
    for listener in list(_listeners):
        listener()


def _item(row: OutboxMessage) -> OutboxItem:
    return OutboxItem(
        row.id, row.channel, row.recipient_id, row.kind, row.language, json.loads(row.payload), row.created_at, row.attempts
    )


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


# -- platform channels: replies and the outbox worker ------------------------------------------


async def enqueue_messages(
    channel: str,
    recipient_id: str,
    messages: Sequence[dict[str, Any]],
    *,
    kind: str = "reply",
    language: str = "vi",
    dedupe_prefix: str | None = None,
) -> int:
    """Write already rendered bot messages for one chat, in order, in one transaction.

    Each message becomes a row with payload {"message": <message dict>} (the agent's
    `render_notification` hands it back unchanged). With `dedupe_prefix` (e.g. the platform's
    update id) the rows get keys `<prefix>:<n>`, so processing the same update twice cannot
    queue its replies twice. Returns the number of messages given.
    """
    if not messages:
        return 0
    now = utcnow()
    rows = [
        {
            "channel": channel,
            "recipient_id": recipient_id,
            "kind": kind,
            "payload": json.dumps({"message": message}, ensure_ascii=False, default=str),
            "language": language,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "dedupe_key": f"{dedupe_prefix}:{n}"[:120] if dedupe_prefix else None,
            "created_at": now,
        }
        for n, message in enumerate(messages)
    ]
    async with session_scope() as session:
        statement = (await upsert_insert(session, OutboxMessage)).on_conflict_do_nothing(index_elements=["dedupe_key"])
        # One INSERT per row, in order: ids then follow the order the bot produced the messages.
        for row in rows:
            await session.execute(statement.values(**row))
    _announce()
    return len(messages)


async def claim_due(
    channels: Iterable[str],
    worker: str,
    *,
    max_chats: int = 100,
    per_chat: int = 10,
    lease_seconds: float = 120.0,
) -> list[OutboxItem]:
    """Claim due messages for `worker`: for up to `max_chats` chats, the chat's oldest pending
    message and the due ones after it (at most `per_chat`), ordered by chat then id.

    A chat's messages go out one after the other: a message is only claimable while it is its
    chat's oldest pending one (its head), not leased by a live worker, and due. The rows after
    a claimed head are taken in the same transaction; nobody else can claim them, because
    their head stays pending (leased to us) until it is sent. On PostgreSQL the heads are
    locked FOR UPDATE SKIP LOCKED, so concurrent workers take different chats without waiting
    (a worker that skips a locked head finds no other head for that chat: the head is still
    the chat's oldest pending row); SQLite serialises writers anyway (BEGIN IMMEDIATE).
    """
    channels = list(channels)
    if not channels or max_chats <= 0:
        return []
    now = utcnow()
    outbox = OutboxMessage
    ready = and_(outbox.next_attempt_at <= now, or_(outbox.lease_until.is_(None), outbox.lease_until < now))
    # The chats whose oldest pending message (their head) is itself ready: one aggregate pass
    # over the pending rows. (A correlated "no older pending row" subquery took seconds on
    # PostgreSQL before the table had statistics; this plan does not depend on them.)
    claimable_heads = (
        select(func.min(outbox.id))
        .where(outbox.status == "pending", outbox.channel.in_(channels))
        .group_by(outbox.channel, outbox.recipient_id)
        .having(func.min(outbox.id) == func.min(case((ready, outbox.id))))
        .order_by(func.min(outbox.id))
        .limit(max_chats)
    )
    async with session_scope() as session:
        head_ids = list(await session.scalars(claimable_heads))
        if not head_ids:
            return []
        # Lock them, checking again: another worker may have claimed one meanwhile.
        heads = (
            await session.execute(
                select(outbox.id, outbox.channel, outbox.recipient_id)
                .where(outbox.id.in_(head_ids), outbox.status == "pending", ready)
                .order_by(outbox.id)
                .with_for_update(skip_locked=True, of=outbox)
            )
        ).all()
        if not heads:
            return []
        chats = sorted({(h.channel, h.recipient_id) for h in heads})
        # The first `per_chat` pending rows of each claimed chat, in order (window function in a
        # subquery: PostgreSQL allows no FOR UPDATE beside one).
        ranked = (
            select(outbox.id, func.row_number().over(partition_by=(outbox.channel, outbox.recipient_id), order_by=outbox.id).label("n"))
            .where(outbox.status == "pending", tuple_(outbox.channel, outbox.recipient_id).in_(chats))
            .subquery()
        )
        candidates = await session.scalars(
            select(outbox)
            .where(outbox.id.in_(select(ranked.c.id).where(ranked.c.n <= per_chat)))
            .order_by(outbox.channel, outbox.recipient_id, outbox.id)
            .with_for_update(of=outbox)
        )
        claimed: list[OutboxMessage] = []
        stopped: set[tuple[str, str]] = set()
        for row in candidates:
            chat = (row.channel, row.recipient_id)
            if chat in stopped:
                continue
            # A message waiting for its retry, or still held by another worker, holds back the
            # ones after it: order before throughput.
            if row.next_attempt_at > now or (row.lease_until is not None and row.lease_until >= now):
                stopped.add(chat)
                continue
            claimed.append(row)
        if claimed:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_([r.id for r in claimed]))
                .values(lease_until=now + timedelta(seconds=lease_seconds), claimed_by=worker)
            )
        return [_item(r) for r in claimed]


@dataclass(frozen=True)
class Retry:
    """A message to try again at `at` (the platform's retry_after, or the backoff)."""

    id: int
    at: datetime
    reason: str


@dataclass(frozen=True)
class Failure:
    """A message that will not be delivered, and why (recorded in `last_error`)."""

    id: int
    reason: str


async def settle(
    worker: str,
    *,
    sent: Sequence[int] = (),
    retry: Sequence[Retry] = (),
    failed: Sequence[Failure] = (),
    released: Sequence[int] = (),
) -> int:
    """Record a worker's outcomes in one transaction; rows the worker no longer holds (its lease
    expired and another worker claimed them) are left alone. Returns the rows updated.

    `sent` become 'sent'; `retry` stay pending with a later `next_attempt_at`; `failed` become
    'failed' with the reason; `released` (claimed, never attempted) are simply handed back.
    Every attempt (sent, retry, failed) counts in `attempts`.
    """
    mine = and_(OutboxMessage.claimed_by == worker, OutboxMessage.status == "pending")
    free = {"lease_until": None, "claimed_by": None}
    updated = 0
    async with session_scope() as session:
        if sent:
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(list(sent)), mine)
                .values(status="sent", sent_at=utcnow(), attempts=OutboxMessage.attempts + 1, last_error=None, **free)
            )
            updated += result.rowcount or 0
        if released:
            result = await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(list(released)), mine).values(**free))
            updated += result.rowcount or 0
        for outcome in retry:
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outcome.id, mine)
                .values(next_attempt_at=outcome.at, last_error=outcome.reason[:500], attempts=OutboxMessage.attempts + 1, **free)
            )
            updated += result.rowcount or 0
        for outcome in failed:
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == outcome.id, mine)
                .values(status="failed", last_error=outcome.reason[:500], attempts=OutboxMessage.attempts + 1, **free)
            )
            updated += result.rowcount or 0
    return updated


async def release_claims(worker: str) -> int:
    """Hand back every pending message `worker` still holds (a clean shutdown), so another
    worker or the restart sends them at once instead of after the lease."""
    async with session_scope() as session:
        result = await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.claimed_by == worker, OutboxMessage.status == "pending")
            .values(lease_until=None, claimed_by=None)
        )
        return result.rowcount or 0

