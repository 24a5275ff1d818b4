"""What operations asks the database: does it answer, and how long are the queues.

Both are read at scrape or probe time by `bot/metrics.py` and `bot/readiness.py`: lookups on
the indexed status columns (`ix_handoffs_status`, `ix_outbox_due`), cheap enough for every scrape.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text

from backend.db import read_scope
from backend.models import Handoff, OutboxMessage


async def ping_database() -> None:
    """Raises unless the database answers a trivial query."""
    async with read_scope() as session:
        await session.execute(text("SELECT 1"))


@dataclass(frozen=True)
class QueueLengths:
    handoffs_waiting: int  # conversations waiting for an agent to claim them
    outbox_pending: dict[str, int]  # messages not yet delivered (or collected), per channel


async def queue_lengths() -> QueueLengths:
    """The agents' queue and the outbox backlog, in one read transaction."""
    async with read_scope() as session:
        waiting = await session.scalar(select(func.count()).select_from(Handoff).where(Handoff.status == "waiting"))
        rows = await session.execute(
            select(OutboxMessage.channel, func.count()).where(OutboxMessage.status == "pending").group_by(OutboxMessage.channel)
        )
        return QueueLengths(int(waiting or 0), {channel: int(count) for channel, count in rows})
