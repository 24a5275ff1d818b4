"""A chat's personal data: erased when the customer asks, and old transcripts purged.

`erase_chat` removes what the backend keeps about one chat, in one transaction: its links to
customer codes, its ownership checks, its power-restored alerts, its outbox messages
(undelivered notices and, on Telegram/Zalo, the copies of the bot's replies) and the customer
text kept with its handoffs (last message, summary, staff notes). Bills, payments, payment links
and service requests stay: they belong to the electricity contract, and the law keeps them.
An audit entry records that a chat was erased (the SHA-256 of its id) and when, nothing else.

The conversation history lives in the tracker store, which belongs to the bot and may sit in
another process's memory. The action therefore ends with `erase_conversation_event()`: a Rasa
`restart` carrying a marker, and the runtime deletes the conversation instead of appending the
turn (see `erases_conversation`). A real Rasa server treats it as a plain restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.clock import ensure_aware, utcnow
from backend.db import read_scope, session_scope
from backend.models import (
    AuditEntry,
    ChannelLink,
    Handoff,
    HandoffNote,
    OutageReport,
    OutageSubscription,
    OutboxMessage,
    VerificationAttempt,
)
from backend.settings import get_settings

ERASE_MARKER = "erase_conversation"
ERASED = "erased"  # what an erased handoff's conversation id becomes
QUEUED = ("waiting", "active")  # a person has it or is about to: the purge leaves it alone
OPEN_HANDOFFS = (*QUEUED, "callback")


def erase_conversation_event() -> dict[str, Any]:
    """The event an action returns to have the runtime delete the whole conversation."""
    return {"event": "restart", "timestamp": None, "metadata": {ERASE_MARKER: True}}


def erases_conversation(events: list[dict[str, Any]]) -> bool:
    """Whether these events (one turn's) ask for the conversation to be deleted."""
    return any(e.get("event") == "restart" and (e.get("metadata") or {}).get(ERASE_MARKER) for e in events)


def chat_fingerprint(channel: str, conversation_id: str) -> str:
    """The SHA-256 of a chat's id: enough to answer "was this chat erased, and when?" for
    someone who knows the id, without keeping the id itself."""
    return hashlib.sha256(f"{channel}:{conversation_id}".encode()).hexdigest()


@dataclass(frozen=True)
class Erasure:
    """What `erase_chat` removed; the customer is told the first three."""

    links: int
    subscriptions: int
    notices: int  # outbox messages not yet delivered
    replies: int  # delivered or failed outbox messages (copies of the bot's replies)
    verification_attempts: int
    handoffs: int  # handoffs whose customer text was removed


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


async def _erase_attempts(session: AsyncSession, channel: str, conversation_id: str, now: datetime) -> int:
    """Delete the chat's ownership checks, except the recent failures that still count towards
    a lockout: erasing must not give a phone-number guesser a fresh set of tries."""
    settings = get_settings()
    window = max(timedelta(hours=1), timedelta(minutes=settings.verification_lock_minutes))
    rows = (
        await session.execute(
            select(VerificationAttempt.id, VerificationAttempt.customer_code, VerificationAttempt.success, VerificationAttempt.created_at)
            .where(VerificationAttempt.channel == channel, VerificationAttempt.sender_id == conversation_id)
        )
    ).all()
    last_success: dict[str, datetime] = {}
    for row in rows:
        if row.success:
            last_success[row.customer_code] = max(row.created_at, last_success.get(row.customer_code, row.created_at))

    def still_counts(row: Any) -> bool:
        after_success = row.customer_code not in last_success or row.created_at > last_success[row.customer_code]
        return not row.success and row.created_at > now - window and after_success

    doomed = [row.id for row in rows if not still_counts(row)]
    if doomed:
        await session.execute(delete(VerificationAttempt).where(VerificationAttempt.id.in_(doomed)))
    return len(doomed)


async def _scrub_handoffs(session: AsyncSession, which: ColumnElement[bool], now: datetime, *, close_open: bool) -> int:
    """Remove the customer text of the matching handoffs (last message, summary, staff notes)
    and the chat ids; the rows stay for the queue statistics and the audit log."""
    ids = list(await session.scalars(select(Handoff.id).where(which, Handoff.conversation_id != ERASED)))
    if not ids:
        return 0
    await session.execute(delete(HandoffNote).where(HandoffNote.handoff_id.in_(ids)))
    if close_open:  # nobody can call back a chat that no longer exists
        await session.execute(
            update(Handoff)
            .where(Handoff.id.in_(ids), Handoff.status.in_(OPEN_HANDOFFS))
            .values(status="cancelled", closed_at=now)
        )
    await session.execute(
        update(Handoff)
        .where(Handoff.id.in_(ids))
        .values(conversation_id=ERASED, recipient_id="", last_message=None, summary={}, updated_at=now)
    )
    return len(ids)


async def erase_chat(channel: str, conversation_id: str, recipient_id: str, *, now: datetime | None = None) -> Erasure:
    """Erase what the backend keeps about one chat (see the module docstring) and audit it.

    `conversation_id` is the tracker's sender id (links, ownership checks and handoffs are keyed
    by it), `recipient_id` the id the channel delivers to (outbox, alerts, outage reports).
    """
    now = ensure_aware(now)
    async with session_scope() as session:
        links = _count(
            await session.execute(delete(ChannelLink).where(ChannelLink.channel == channel, ChannelLink.sender_id == conversation_id))
        )
        attempts = await _erase_attempts(session, channel, conversation_id, now)
        subscriptions = _count(
            await session.execute(
                delete(OutageSubscription).where(OutageSubscription.channel == channel, OutageSubscription.recipient_id == recipient_id)
            )
        )
        # Reports stay with their incident (how many people lost power, where), without the chat.
        await session.execute(
            update(OutageReport).where(OutageReport.channel == channel, OutageReport.recipient_id == recipient_id).values(recipient_id="")
        )
        of_chat = (OutboxMessage.channel == channel, OutboxMessage.recipient_id == recipient_id)
        notices = _count(await session.execute(delete(OutboxMessage).where(*of_chat, OutboxMessage.status == "pending")))
        replies = _count(await session.execute(delete(OutboxMessage).where(*of_chat)))
        handoffs = await _scrub_handoffs(session, Handoff.conversation_id == conversation_id, now, close_open=True)
        erasure = Erasure(links, subscriptions, notices, replies, attempts, handoffs)
        session.add(
            AuditEntry(
                staff_id=None,
                action="chat_erased",
                handoff_id=None,
                detail={"chat_sha256": chat_fingerprint(channel, conversation_id), **asdict(erasure)},
                created_at=now,
            )
        )
    return erasure


async def erasures_of(channel: str, conversation_id: str) -> list[datetime]:
    """When this chat was erased (from the audit log), oldest first."""
    fingerprint = chat_fingerprint(channel, conversation_id)
    async with read_scope() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.action == "chat_erased").order_by(AuditEntry.id)
        )
        return [row.created_at for row in rows if (row.detail or {}).get("chat_sha256") == fingerprint]


# -- retention -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendPurge:
    """What `purge_before` removed (or, in a dry run, would remove)."""

    handoffs: int  # closed handoffs whose customer text was removed
    verification_attempts: int
    outbox_messages: int  # delivered or failed; undelivered ones are left to the outbox worker


async def purge_before(cutoff: datetime, *, dry_run: bool = False) -> BackendPurge:
    """Remove the customer text of handoffs closed before `cutoff`, and the ownership checks and
    delivered outbox messages written before it. The tracker side is the bot's (bot/privacy.py)."""
    cutoff = ensure_aware(cutoff)
    old_handoff = (
        Handoff.status.not_in(QUEUED),
        func.coalesce(Handoff.closed_at, Handoff.updated_at) < cutoff,
        Handoff.conversation_id != ERASED,
    )
    old_attempt = VerificationAttempt.created_at < cutoff
    old_outbox = (OutboxMessage.status != "pending", OutboxMessage.created_at < cutoff)
    if dry_run:
        async with read_scope() as session:
            return BackendPurge(
                int(await session.scalar(select(func.count()).select_from(Handoff).where(*old_handoff)) or 0),
                int(await session.scalar(select(func.count()).select_from(VerificationAttempt).where(old_attempt)) or 0),
                int(await session.scalar(select(func.count()).select_from(OutboxMessage).where(*old_outbox)) or 0),
            )
    async with session_scope() as session:
        handoffs = await _scrub_handoffs(session, and_(*old_handoff), utcnow(), close_open=False)
        attempts = _count(await session.execute(delete(VerificationAttempt).where(old_attempt)))
        outbox = _count(await session.execute(delete(OutboxMessage).where(*old_outbox)))
        return BackendPurge(handoffs, attempts, outbox)
