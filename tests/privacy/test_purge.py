"""Retention: `python -m bot privacy purge` removes transcripts older than
TRANSCRIPT_RETENTION_DAYS and keeps the recent ones, on every tracker store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from backend import db
from backend.clock import utcnow
from backend.models import OutboxMessage
from backend.seed import seed_demo
from backend.services import accounts, handoff, notifications
from backend.services.notifications import ChatRef, Notification
from backend.services.privacy import purge_before
from backend.settings import get_settings
from bot.cli import main
from bot.privacy import TranscriptPurge, purge_transcripts
from bot.stores import SQLTrackerStore, StaleTrackerError, TrackerStore
from tests.conftest import empty_all_tables
from tests.e2e.conftest import Chat
from tests.privacy.conftest import Service

YEAR_AND_A_BIT = 400 * 24 * 3600.0
RETENTION = 365 * 24 * 3600.0


async def _age(store: TrackerStore, sender: str, seconds: float) -> None:
    """Move a whole conversation back in time (as if it had happened `seconds` ago)."""
    events = await store.retrieve(sender)
    await store.delete(sender)
    await store.append(sender, [{**e, "timestamp": e["timestamp"] - seconds} for e in events], 0)


def _texts(events: list[dict]) -> list[str]:
    return [e["text"] for e in events if e.get("event") == "user"]


async def test_old_sessions_go_recent_ones_stay(service: Service) -> None:
    agent = service.runtime.agent
    store = agent.tracker_store
    await Chat(service.client, "old").say("xin chào")
    await _age(store, "old", YEAR_AND_A_BIT)
    mixed = Chat(service.client, "mixed")
    await mixed.say("xin chào")
    await _age(store, "mixed", YEAR_AND_A_BIT)
    await mixed.say("hi")  # a new session today
    await Chat(service.client, "recent").say("xin chào")
    recent_before = await store.retrieve("recent")
    cutoff = time.time() - RETENTION

    dry = await purge_transcripts(store, agent.lock_store, cutoff, dry_run=True)
    assert (dry.deleted, dry.trimmed) == (1, 1)
    assert _texts(await store.retrieve("old")) == ["xin chào"]

    done = await purge_transcripts(store, agent.lock_store, cutoff)
    assert (done.deleted, done.trimmed, done.events) == (1, 1, dry.events)
    assert await store.retrieve("old") == []
    kept = await store.retrieve("mixed")
    assert _texts(kept) == ["hi"] and kept[0]["name"] == "action_session_start"
    assert await store.retrieve("recent") == recent_before
    # The trimmed conversation goes on as usual, in the language it had today.
    assert "welcome" in await mixed.say("thanks")
    assert _texts(await store.retrieve("mixed")) == ["hi", "thanks"]
    assert await purge_transcripts(store, agent.lock_store, cutoff) == TranscriptPurge()  # nothing left to do


async def test_backend_keeps_recent_handoffs_checks_and_messages(backend_db: str) -> None:
    await seed_demo()
    old = utcnow() - timedelta(days=400)
    summary = {"customer_codes": ["PE0400012345"], "customer_name": "Nguyễn Văn An"}
    aged = await handoff.escalate(ChatRef("rest", "aged"), "aged", "customer_request", summary, now=old)
    fresh = await handoff.escalate(ChatRef("rest", "fresh"), "fresh", "customer_request", summary)
    await accounts.verify_ownership("rest", "aged", "PE0400012345", "0900000001", now=old)
    await accounts.verify_ownership("rest", "fresh", "PE0400012345", "0912345678")
    for sender in ("aged", "fresh"):
        await notifications.notify(Notification(ChatRef("rest", sender), "test", "utter_goodbye"))
        await notifications.take_for_recipient("rest", sender)  # delivered
    await notifications.notify(Notification(ChatRef("rest", "aged"), "test", "utter_goodbye"))  # not yet
    async with db.session_scope() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.recipient_id == "aged").values(created_at=old))

    cutoff = utcnow() - timedelta(days=365)
    assert await purge_before(cutoff, dry_run=True) == await purge_before(cutoff, dry_run=True)
    result = await purge_before(cutoff)
    assert (result.handoffs, result.verification_attempts, result.outbox_messages) == (1, 1, 1)
    scrubbed = await handoff.get_handoff(aged.handoff.id)
    assert scrubbed is not None and scrubbed.summary == {} and scrubbed.conversation_id == "erased"
    assert (await handoff.get_handoff(fresh.handoff.id)).summary == summary
    assert await accounts.is_linked("rest", "fresh", "PE0400012345")
    assert len(await notifications.pending_for("rest", "aged")) == 1  # undelivered: the worker's
    assert (await purge_before(cutoff)).handoffs == 0


@pytest.fixture
def purge_cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., str]]:
    """`python -m bot privacy purge ARGS` on the SQLite database with the SQL tracker store,
    retention 30 days; returns what it printed."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("TRACKER_STORE", "sql")
    monkeypatch.setenv("TRANSCRIPT_RETENTION_DAYS", "30")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(*args: str) -> str:
        get_settings.cache_clear()
        assert main(["privacy", "purge", *args]) == 0
        return capsys.readouterr().out

    yield run
    get_settings.cache_clear()
    root.handlers[:] = handlers  # main() configures logging for the process
    root.setLevel(level)


def test_cli_purges_the_sql_tracker_store(sqlite_url: str, purge_cli: Callable[..., str]) -> None:
    async def prepare() -> None:
        db.configure(sqlite_url)
        await empty_all_tables()
        store = SQLTrackerStore()
        now = time.time()
        await store.append("cli-old", [{"event": "action", "name": "action_session_start", "timestamp": now - YEAR_AND_A_BIT}], 0)
        await store.append("cli-new", [{"event": "action", "name": "action_session_start", "timestamp": now}], 0)
        await db.dispose()

    async def remaining() -> list[str]:
        db.configure(sqlite_url)
        store = SQLTrackerStore()
        try:
            return [s for s in ("cli-old", "cli-new") if await store.retrieve(s)]
        finally:
            await db.dispose()

    asyncio.run(prepare())
    dry = purge_cli("--dry-run")
    assert "1 conversations deleted" in dry and "dry run" in dry
    assert asyncio.run(remaining()) == ["cli-old", "cli-new"]
    assert "1 conversations deleted" in purge_cli()
    assert asyncio.run(remaining()) == ["cli-new"]


async def test_sql_store_drops_the_oldest_and_appends_go_on(backend_db: str) -> None:
    """Renumbering after a trim keeps the (sender_id, seq) fence working, on SQLite and PostgreSQL."""
    store = SQLTrackerStore()
    await store.append("trim", [{"event": "slot", "name": "n", "value": i, "timestamp": float(i)} for i in range(5)], 0)
    await store.drop_oldest("trim", 2)
    assert [e["value"] for e in await store.retrieve("trim")] == [2, 3, 4]
    with pytest.raises(StaleTrackerError):
        await store.append("trim", [{"event": "slot", "name": "n", "value": 5, "timestamp": 5.0}], 5)
    await store.append("trim", [{"event": "slot", "name": "n", "value": 5, "timestamp": 5.0}], 3)
    assert [e["value"] for e in await store.retrieve("trim")] == [2, 3, 4, 5]
