"""Human handoff: escalated conversations, the agents' queue, claims, transfers and closes.

A conversation escalated to a person gets a `Handoff` row. Outside business hours (Asia/
Ho_Chi_Minh, `HANDOFF_HOURS`, `HANDOFF_DAYS`) or with no agent online it becomes a callback
ticket instead. Claiming is one conditional UPDATE (`WHERE status = 'waiting'`): whichever
transaction commits first wins, on every worker and both databases. Every claim, transfer and
close is written to the audit log in the same transaction as the change.

The tracker side of a handoff (the Rasa `pause` and `resume` events) belongs to the bot; this
module only keeps the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.clock import VN_TZ, today_vn, utcnow
from backend.db import read_scope, session_scope
from backend.models import AuditEntry, Handoff, HandoffNote, StaffUser
from backend.services import staff
from backend.services.notifications import ChatRef
from backend.services.service_requests import next_ticket_number
from backend.services.staff import StaffInfo
from backend.settings import get_settings

OPEN_STATUSES = ("waiting", "active")
RESOLUTIONS = ("solved", "handed_back", "duplicate", "no_response", "other")
QueueFilter = Literal["waiting", "mine", "open", "resolved"]


class HandoffError(Exception):
    """A console action that cannot be done; `code` says why ('taken', 'cap', 'not_yours', ...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class HandoffInfo:
    id: int
    ref: str
    conversation_id: str
    channel: str
    recipient_id: str
    language: str
    status: str
    reason: str
    summary: dict[str, Any]
    last_message: str | None
    assigned_to: int | None
    assignee: str | None
    resolution: str | None
    created_at: datetime
    claimed_at: datetime | None
    closed_at: datetime | None

    @property
    def chat(self) -> ChatRef:
        return ChatRef(self.channel, self.recipient_id, self.language)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class Escalation:
    """Outcome of `escalate`: 'queued' (with `position`), 'already' queued, or 'callback'
    (`why`: 'closed' outside business hours, 'no_agent' when nobody is online)."""

    outcome: Literal["queued", "already", "callback"]
    handoff: HandoffInfo
    position: int = 0
    why: str | None = None


@dataclass(frozen=True)
class NoteInfo:
    author: str
    text: str
    created_at: datetime


@dataclass(frozen=True)
class AuditInfo:
    actor: str | None
    action: str
    handoff_ref: str | None
    detail: dict[str, Any]
    created_at: datetime


# -- business hours ------------------------------------------------------------------------------


def _parse_hours(value: str) -> tuple[time, time]:
    start, end = value.split("-")
    begin = time.fromisoformat(start.strip())
    finish = time(23, 59, 59) if end.strip() == "24:00" else time.fromisoformat(end.strip())
    return begin, finish


def _parse_days(value: str) -> set[int]:
    """'0-5' or '0,1,2' (Monday is 0) -> weekday numbers."""
    days: set[int] = set()
    for part in value.split(","):
        if "-" in part:
            first, last = (int(p) for p in part.split("-"))
            days.update(range(first, last + 1))
        elif part.strip():
            days.add(int(part))
    return days


def within_business_hours(now: datetime | None = None) -> bool:
    """Whether agents work now, on the Viet Nam clock (settings `HANDOFF_HOURS`, e.g.
    '07:00-21:00', and `HANDOFF_DAYS`, e.g. '0-6' with Monday = 0)."""
    local = (now or utcnow()).astimezone(VN_TZ)
    settings = get_settings()
    begin, end = _parse_hours(settings.handoff_hours)
    days = _parse_days(settings.handoff_days)
    return local.weekday() in days and begin <= local.time().replace(tzinfo=None) <= end


# -- rows -> info ----------------------------------------------------------------------------------


async def _info(session: AsyncSession, row: Handoff) -> HandoffInfo:
    assignee = await session.scalar(select(StaffUser.display_name).where(StaffUser.id == row.assigned_to)) if row.assigned_to else None
    return HandoffInfo(
        row.id, row.ref, row.conversation_id, row.channel, row.recipient_id, row.language, row.status, row.reason,
        dict(row.summary or {}), row.last_message, row.assigned_to, assignee, row.resolution, row.created_at,
        row.claimed_at, row.closed_at,
    )


def _audit(session: AsyncSession, actor: int | None, action: str, handoff_id: int | None, **detail: Any) -> None:
    session.add(AuditEntry(staff_id=actor, action=action, handoff_id=handoff_id, detail=detail, created_at=utcnow()))


# -- the customer side ---------------------------------------------------------------------------


async def escalate(
    chat: ChatRef, conversation_id: str, reason: str, summary: dict[str, Any], *, now: datetime | None = None
) -> Escalation:
    """Put a conversation in the agents' queue, or open a callback ticket when nobody can take
    it now. A conversation already waiting or with an agent is not queued twice."""
    now = now or utcnow()
    why = None
    if not within_business_hours(now):
        why = "closed"
    elif await staff.agents_online(now=now) == 0:
        why = "no_agent"
    async with session_scope() as session:
        existing = await session.scalar(
            select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_STATUSES)).limit(1)
        )
        if existing is not None:
            return Escalation("already", await _info(session, existing), await _position(session, existing))
        prefix = f"HT{today_vn(now).strftime('%Y%m%d')}"
        ref = f"{prefix}{await next_ticket_number(session, prefix):03d}"
        row = Handoff(
            ref=ref, conversation_id=conversation_id, channel=chat.channel, recipient_id=chat.recipient_id,
            language=chat.language, status="callback" if why else "waiting", reason=reason[:40], summary=summary,
            created_at=now, updated_at=now,
        )
        session.add(row)
        await session.flush()
        _audit(session, None, "callback" if why else "escalated", row.id, reason=reason)
        info = await _info(session, row)
        if why:
            return Escalation("callback", info, why=why)
        return Escalation("queued", info, await _position(session, row))


async def _position(session: AsyncSession, row: Handoff) -> int:
    if row.status != "waiting":
        return 0
    ahead = await session.scalar(
        select(func.count()).select_from(Handoff).where(Handoff.status == "waiting", Handoff.id < row.id)
    )
    return int(ahead or 0) + 1


async def open_handoff(conversation_id: str) -> HandoffInfo | None:
    """The waiting or claimed handoff of a conversation, if any."""
    async with read_scope() as session:
        row = await session.scalar(
            select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_STATUSES)).limit(1)
        )
        return await _info(session, row) if row else None


async def record_customer_message(handoff_id: int, text: str) -> None:
    async with session_scope() as session:
        await session.execute(update(Handoff).where(Handoff.id == handoff_id).values(last_message=text[:500], updated_at=utcnow()))


async def cancel_by_customer(conversation_id: str) -> HandoffInfo | None:
    """The customer went back to the bot: the open handoff ends ('cancelled' when still waiting,
    'resolved' as handed back when an agent had it)."""
    async with session_scope() as session:
        row = await session.scalar(
            select(Handoff).where(Handoff.conversation_id == conversation_id, Handoff.status.in_(OPEN_STATUSES)).limit(1)
        )
        if row is None:
            return None
        now = utcnow()
        if row.status == "waiting":
            row.status = "cancelled"
        else:
            row.status, row.resolution = "resolved", "customer_left"
        row.closed_at = row.updated_at = now
        _audit(session, None, "customer_cancelled", row.id)
        return await _info(session, row)


# -- the console side ----------------------------------------------------------------------------


def can_view(handoff: HandoffInfo, viewer: StaffInfo) -> bool:
    """Admins see everything; an agent sees the queue (waiting and callback) and their own."""
    return viewer.is_admin or handoff.status in ("waiting", "callback") or handoff.assigned_to == viewer.id


async def get_handoff(handoff_id: int) -> HandoffInfo | None:
    async with read_scope() as session:
        row = await session.get(Handoff, handoff_id)
        return await _info(session, row) if row else None


async def list_handoffs(which: QueueFilter, viewer: StaffInfo, *, limit: int = 200) -> list[HandoffInfo]:
    """The console's queue: 'waiting' (and callbacks), 'mine', every 'open' one, or 'resolved'."""
    query = select(Handoff)
    if which == "waiting":
        query = query.where(Handoff.status.in_(("waiting", "callback"))).order_by(Handoff.id)
    elif which == "mine":
        query = query.where(Handoff.assigned_to == viewer.id, Handoff.status == "active").order_by(Handoff.id)
    elif which == "open":
        query = query.where(Handoff.status.in_(("waiting", "active", "callback"))).order_by(Handoff.id)
    else:
        query = query.where(Handoff.status.in_(("resolved", "cancelled"))).order_by(Handoff.id.desc())
    async with read_scope() as session:
        rows = list(await session.scalars(query.limit(limit)))
        found = [await _info(session, r) for r in rows]
    return [h for h in found if can_view(h, viewer)]


async def _active_count(session: AsyncSession, staff_id: int) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Handoff).where(Handoff.assigned_to == staff_id, Handoff.status == "active")
    )
    return int(count or 0)


async def _lock_staff(session: AsyncSession, staff_id: int) -> StaffUser:
    """The staff row, locked on PostgreSQL: claims of one agent are serialised, so two tabs
    cannot together go over the agent's cap. (SQLite serialises every write already.)"""
    row = await session.scalar(select(StaffUser).where(StaffUser.id == staff_id).with_for_update())
    if row is None or not row.active:
        raise HandoffError("no_agent", "no such agent")
    return row


# Called (synchronously, after the commit) with each claimed handoff; the bot's metrics observe
# the wait. The backend stays free of any metrics library.
_claim_listeners: list[Callable[[HandoffInfo], None]] = []


def add_claim_listener(listener: Callable[[HandoffInfo], None]) -> None:
    if listener not in _claim_listeners:
        _claim_listeners.append(listener)


async def claim(handoff_id: int, agent: StaffInfo) -> HandoffInfo:
    """Take a waiting (or callback) conversation. Raises HandoffError('taken') when someone else
    got it first and HandoffError('cap') when the agent already has `max_chats` open."""
    async with session_scope() as session:
        me = await _lock_staff(session, agent.id)
        if await _active_count(session, agent.id) >= me.max_chats:
            raise HandoffError("cap", f"at most {me.max_chats} conversations at a time")
        now = utcnow()
        result = await session.execute(
            update(Handoff)
            .where(Handoff.id == handoff_id, Handoff.status.in_(("waiting", "callback")))
            .values(status="active", assigned_to=agent.id, claimed_at=now, updated_at=now)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise HandoffError("taken", "this conversation is no longer waiting")
        _audit(session, agent.id, "claimed", handoff_id)
        claimed = await _info(session, await session.get_one(Handoff, handoff_id))
    for listener in list(_claim_listeners):
        listener(claimed)
    return claimed


async def transfer(handoff_id: int, by: StaffInfo, to_staff_id: int) -> HandoffInfo:
    """Give a claimed conversation to another agent (its owner or an admin may)."""
    async with session_scope() as session:
        row = await session.scalar(select(Handoff).where(Handoff.id == handoff_id).with_for_update())
        if row is None or row.status != "active":
            raise HandoffError("not_open", "this conversation is not being handled")
        if row.assigned_to != by.id and not by.is_admin:
            raise HandoffError("not_yours", "only its agent or an admin can transfer it")
        target = await _lock_staff(session, to_staff_id)
        if target.id == row.assigned_to:
            raise HandoffError("same", "that agent has it already")
        if await _active_count(session, target.id) >= target.max_chats:
            raise HandoffError("cap", f"{target.display_name} already has {target.max_chats} conversations")
        previous = row.assigned_to
        row.assigned_to, row.updated_at = target.id, utcnow()
        _audit(session, by.id, "transferred", row.id, from_staff=previous, to_staff=target.id)
        return await _info(session, row)


async def resolve(handoff_id: int, by: StaffInfo, resolution: str) -> HandoffInfo:
    """Close a conversation ('handed_back' to the bot, or a resolution tag); owner or admin."""
    if resolution not in RESOLUTIONS:
        raise HandoffError("resolution", f"the resolution must be one of {', '.join(RESOLUTIONS)}")
    async with session_scope() as session:
        row = await session.scalar(select(Handoff).where(Handoff.id == handoff_id).with_for_update())
        if row is None or row.status not in ("active", "callback", "waiting"):
            raise HandoffError("not_open", "this conversation is already closed")
        if row.status == "active" and row.assigned_to != by.id and not by.is_admin:
            raise HandoffError("not_yours", "only its agent or an admin can close it")
        now = utcnow()
        row.status, row.resolution, row.closed_at, row.updated_at = "resolved", resolution, now, now
        if row.assigned_to is None:
            row.assigned_to = by.id
        _audit(session, by.id, "handed_back" if resolution == "handed_back" else "closed", row.id, resolution=resolution)
        return await _info(session, row)


async def add_note(handoff_id: int, by: StaffInfo, text: str) -> NoteInfo:
    async with session_scope() as session:
        note = HandoffNote(handoff_id=handoff_id, staff_id=by.id, text=text, created_at=utcnow())
        session.add(note)
        return NoteInfo(by.display_name, text, note.created_at)


async def notes(handoff_id: int) -> list[NoteInfo]:
    async with read_scope() as session:
        rows = await session.execute(
            select(HandoffNote, StaffUser.display_name)
            .join(StaffUser, StaffUser.id == HandoffNote.staff_id)
            .where(HandoffNote.handoff_id == handoff_id)
            .order_by(HandoffNote.id)
        )
        return [NoteInfo(name, note.text, note.created_at) for note, name in rows]


async def audit_log(limit: int = 200) -> list[AuditInfo]:
    async with read_scope() as session:
        rows = await session.execute(
            select(AuditEntry, StaffUser.username, Handoff.ref)
            .outerjoin(StaffUser, StaffUser.id == AuditEntry.staff_id)
            .outerjoin(Handoff, Handoff.id == AuditEntry.handoff_id)
            .order_by(AuditEntry.id.desc())
            .limit(limit)
        )
        return [AuditInfo(user, entry.action, ref, dict(entry.detail or {}), entry.created_at) for entry, user, ref in rows]


async def waiting_count() -> int:
    async with read_scope() as session:
        return int(await session.scalar(select(func.count()).select_from(Handoff).where(Handoff.status == "waiting")) or 0)


__all__ = [
    "Escalation", "HandoffError", "HandoffInfo", "NoteInfo", "AuditInfo", "OPEN_STATUSES", "RESOLUTIONS",
    "add_claim_listener", "add_note", "audit_log", "can_view", "cancel_by_customer", "claim", "escalate", "get_handoff",
    "list_handoffs", "notes", "open_handoff", "record_customer_message", "resolve", "transfer",
    "waiting_count", "within_business_hours",
]
