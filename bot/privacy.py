"""Retention of conversation transcripts: `python -m bot privacy purge [--dry-run]`.

Events older than TRANSCRIPT_RETENTION_DAYS go a whole session at a time: a tracker has to start
at a session start to replay into the right state, so the sessions before the first recent event
are dropped and the session that holds it is kept whole; a conversation with nothing recent is
deleted. Each conversation is changed under its conversation lock, like a turn. The backend's
share (handoff texts, ownership checks, delivered outbox messages) is
backend.services.privacy.purge_before. A customer's own "delete my data" is actions/privacy.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from backend import db
from backend.clock import ensure_aware
from backend.services.privacy import purge_before
from backend.settings import Settings
from bot.endpoints import build_endpoints
from bot.stores import InMemoryTrackerStore, LockStore, LockTimeout, TrackerStore


@dataclass
class TranscriptPurge:
    deleted: int = 0  # conversations with nothing recent
    trimmed: int = 0  # conversations that lost their old sessions
    events: int = 0
    busy: int = 0  # held by a turn for too long; the next run takes them


def _time(e: dict[str, Any]) -> float:
    return float(e.get("timestamp") or 0)


def expired_prefix(events: list[dict[str, Any]], cutoff: float) -> int:
    """How many leading events are past retention: all of them when none is recent, else those
    before the start of the session holding the first recent event."""
    first_recent = next((i for i, e in enumerate(events) if _time(e) >= cutoff), len(events))
    if first_recent == len(events):
        return len(events)
    starts = [
        i for i in range(first_recent + 1) if events[i].get("event") == "action" and events[i].get("name") == "action_session_start"
    ]
    return starts[-1] if starts else 0


async def purge_transcripts(store: TrackerStore, locks: LockStore, cutoff: float, *, dry_run: bool = False) -> TranscriptPurge:
    """Drop events older than `cutoff` (a Unix time) from every conversation of `store`."""
    result = TranscriptPurge()
    for sender in await store.senders_with_events_before(cutoff):
        try:
            async with locks.lock(sender):
                events = await store.retrieve(sender)
                drop = expired_prefix(events, cutoff)
                if drop == 0:
                    continue
                result.events += drop
                if drop == len(events):
                    result.deleted += 1
                    if not dry_run:
                        await store.delete(sender)
                else:
                    result.trimmed += 1
                    if not dry_run:
                        await store.drop_oldest(sender, drop)
        except LockTimeout:
            result.busy += 1
    return result


async def run_purge(settings: Settings, *, dry_run: bool = False, now: datetime | None = None) -> list[str]:
    """The whole purge for these settings; returns the report, one line per store."""
    days = settings.transcript_retention_days
    if days == 0:
        return ["TRANSCRIPT_RETENTION_DAYS is 0: transcripts are kept forever, nothing purged"]
    cutoff = ensure_aware(now) - timedelta(days=days)
    lines = [f"retention {days} days: removing what is older than {cutoff:%Y-%m-%d %H:%M} UTC" + (" (dry run: nothing changes)" if dry_run else "")]
    db.configure(settings.database_url)
    # The stores come from endpoints.yml as the server's do; the actions loaded beside them are
    # not used here, so their registration lines would only clutter a daily job's log.
    logging.getLogger("rasa_sdk.executor").setLevel(logging.WARNING)
    endpoints = build_endpoints(settings.project_dir / "endpoints.yml", settings)
    try:
        await db.require_current_schema()
        store = endpoints.tracker_store
        if isinstance(store, InMemoryTrackerStore):
            lines.append("tracker store: in memory, nothing outlives the server process; skipped")
        else:
            t = await purge_transcripts(store, endpoints.lock_store, cutoff.timestamp(), dry_run=dry_run)
            lines.append(
                f"tracker store ({type(store).__name__}): {t.deleted} conversations deleted, {t.trimmed} trimmed, "
                f"{t.events} events removed, {t.busy} busy (left for the next run)"
            )
        b = await purge_before(cutoff, dry_run=dry_run)
        lines.append(
            f"backend: {b.handoffs} handoff transcripts removed, {b.verification_attempts} ownership checks deleted, "
            f"{b.outbox_messages} delivered outbox messages deleted"
        )
    finally:
        await endpoints.close()
        await db.dispose()
    return lines
