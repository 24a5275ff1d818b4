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

from sqlalchemy import (
    Integer,
    Select,
    String,
    Text,
    and_,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

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


BULK_ANALYZE_ROWS = 500  # outbox rows added at once that make the statistics worth refreshing


async def enqueue_to_each(
    session: AsyncSession, chats: Select[Any], *, kind: str, response: str, values: dict[str, Any], dedupe_prefix: str
) -> int:
    """Add one notification per chat that `chats` selects (its columns: channel, recipient_id,
    language, and key, which makes the dedupe key `dedupe_prefix + key`), in one INSERT ... SELECT
    inside the caller's transaction: ten thousand subscribers are one statement, not ten
    thousand. Rows whose dedupe key exists already are skipped; returns the rows added."""
    payload = json.dumps({"response": response, "values": values}, ensure_ascii=False, default=str)
    now = utcnow()
    source = chats.subquery()
    rows = select(
        source.c.channel,
        source.c.recipient_id,
        literal(kind, String),
        literal(payload, Text),
        source.c.language,
        literal("pending", String),
        literal(0, Integer),
        literal(now, OutboxMessage.next_attempt_at.type),
        literal(dedupe_prefix, String).concat(cast(source.c.key, String)),
        literal(now, OutboxMessage.created_at.type),
    ).where(true())  # SQLite parses INSERT ... SELECT ... ON CONFLICT only after a WHERE
    columns = ["channel", "recipient_id", "kind", "payload", "language", "status", "attempts", "next_attempt_at", "dedupe_key", "created_at"]
    statement = (await upsert_insert(session, OutboxMessage)).from_select(columns, rows)
    result = await session.execute(statement.on_conflict_do_nothing(index_elements=["dedupe_key"]))
    added = result.rowcount or 0
    if added >= BULK_ANALYZE_ROWS and session.bind.dialect.name == "postgresql":
        # Fresh statistics before the outbox workers claim: planned on the stale ones (a table
        # "of a few rows" that now holds ten thousand pending), the claim's head check became a
        # nested loop over every pending row, tens of seconds per claim.
        await session.execute(sql_text("ANALYZE outbox"))
    return added


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
    older = aliased(OutboxMessage)
    # 'pending' as a literal, not a parameter: only then can the planners (PostgreSQL's generic
    # plans for prepared statements, SQLite's always) use the partial indexes on pending rows.
    pending = outbox.status == literal_column("'pending'")
    # Heads that are ready, oldest first: a walk over the pending rows in id order (partial
    # index ix_outbox_pending) that stops after `max_chats` heads, each checked by one probe of
    # ix_outbox_pending_chat, instead of aggregating every pending row on each claim.
    is_head = ~exists().where(
        older.status == literal_column("'pending'"),
        older.channel == outbox.channel,
        older.recipient_id == outbox.recipient_id,
        older.id < outbox.id,
    )
    heads_query = (
        select(outbox.id, outbox.channel, outbox.recipient_id)
        .where(
            pending,
            outbox.channel.in_(channels),
            outbox.next_attempt_at <= now,
            or_(outbox.lease_until.is_(None), outbox.lease_until < now),
            is_head,
        )
        .order_by(outbox.id)
        .limit(max_chats)
        .with_for_update(skip_locked=True, of=outbox)
    )
    async with session_scope() as session:
        heads = (await session.execute(heads_query)).all()
        if not heads:
            return []
        if per_chat <= 1:
            rows = list(await session.scalars(select(outbox).where(outbox.id.in_([h.id for h in heads])).order_by(outbox.id)))
        else:
            # The first `per_chat` pending rows of each claimed chat. Nobody else can claim the
            # rows after a head: their head stays pending (leased to us) until it is sent.
            ranked = (
                select(outbox.id, func.row_number().over(partition_by=(outbox.channel, outbox.recipient_id), order_by=outbox.id).label("n"))
                .where(pending, tuple_(outbox.channel, outbox.recipient_id).in_([(h.channel, h.recipient_id) for h in heads]))
                .subquery()
            )
            rows = list(await session.scalars(select(outbox).join(ranked, ranked.c.id == outbox.id).where(ranked.c.n <= per_chat)))
        rows.sort(key=lambda r: (r.channel, r.recipient_id, r.id))
        claimed: list[OutboxMessage] = []
        stopped: set[tuple[str, str]] = set()
        for row in rows:
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


async def extend_leases(worker: str, ids: Sequence[int], lease_seconds: float) -> list[int]:
    """Renew `worker`'s leases on `ids` (still pending, still its own) for `lease_seconds` from
    now: a worker whose sends wait on the platform's rate limit keeps its rows instead of
    letting another worker claim and send them a second time. Returns the ids renewed."""
    if not ids:
        return []
    async with session_scope() as session:
        result = await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(list(ids)), OutboxMessage.claimed_by == worker, OutboxMessage.status == "pending")
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
            .returning(OutboxMessage.id)
        )
        return [int(i) for i in result.scalars()]


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

