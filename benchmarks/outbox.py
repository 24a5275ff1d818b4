"""Outbox benchmark: how fast the outbox worker drains a backlog into Telegram, in per-chat order.

A backlog of --messages outbox rows spread over --chats chats (written interleaved, as real
traffic would: message k of every chat, then k + 1) is delivered by --workers outbox workers
through the real python-telegram-bot client to a fake Telegram Bot API (tests/fakes) running
in a separate process on 127.0.0.1. Throughput is messages accepted by the fake per second of
wall-clock time, from the workers' start to the last message. Afterwards the fake's record is
checked: every message exactly once, and each chat's messages in the order they were written.

Telegram's own limits (about 30 messages/s per bot, 1/s per chat) would cap any run at 30/s,
so the throughput rows run with the rate limiter off: they measure the outbox machinery
(claiming, sending, recording, on SQLite or PostgreSQL). One extra row (--limited) runs with
the production limits to show they hold.

    python benchmarks/outbox.py                      # SQLite in a temporary directory
    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/test python benchmarks/outbox.py --database both

With PostgreSQL the script creates a scratch database next to the one in DATABASE_URL and
drops it afterwards. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import FAKE_TELEGRAM_TOKEN as TOKEN  # noqa: E402
from benchmarks._common import fake_calls, fake_telegram  # noqa: E402  (the fake in its own process)

# -- databases ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def scratch_database(kind: str) -> Any:
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.ext.asyncio import create_async_engine

    from backend import db

    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite+aiosqlite:///{folder}/bench.db"
            await asyncio.to_thread(db.upgrade_database, url)
            db.configure(url)
            try:
                yield url
            finally:
                await db.dispose()
        return
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgresql"):
        raise SystemExit("--database postgresql needs DATABASE_URL=postgresql+asyncpg://...")
    name = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(base, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(db.upgrade_database, url)
        db.configure(url)
        yield url
    finally:
        await db.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def write_backlog(messages: int, chats: int) -> None:
    """`messages` rows over `chats` chats, interleaved, in one transaction."""
    from sqlalchemy import insert

    from backend import db
    from backend.clock import utcnow
    from backend.models import OutboxMessage

    now = utcnow()
    rows = [
        {
            "channel": "telegram",
            "recipient_id": str(100_000 + n % chats),
            "kind": "bench",
            "payload": json.dumps({"message": {"text": f"{n % chats}:{n // chats}"}}),
            "language": "vi",
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for n in range(messages)
    ]
    async with db.session_scope() as session:
        for start in range(0, len(rows), 1000):
            await session.execute(insert(OutboxMessage), rows[start : start + 1000])


async def sent_count() -> int:
    from sqlalchemy import func, select

    from backend import db
    from backend.models import OutboxMessage

    async with db.read_scope() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "sent")) or 0)


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Result:
    database: str
    workers: int
    limits: str
    messages: int
    chats: int
    seconds: float
    ordered: bool
    duplicates: int
    missing: int

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


class Counting:
    """A sender that tells when `target` messages have gone out, across workers."""

    channel = "telegram"

    def __init__(self, inner: Any, target: int, done: asyncio.Event, delivered: list[int]) -> None:
        self.inner, self.target, self.done, self.delivered = inner, target, done, delivered

    async def deliver(self, item: Any, messages: list[dict[str, Any]]) -> None:
        await self.inner.deliver(item, messages)
        self.delivered[0] += 1
        if self.delivered[0] >= self.target:
            self.done.set()


async def run(kind: str, workers: int, messages: int, chats: int, limited: bool, port: int) -> Result:
    from bot.channels.middleware import MemoryKeyValueStore, RateLimiter
    from bot.channels.telegram import (
        ButtonPayloads,
        TelegramConfig,
        TelegramSender,
        build_application,
        close_application,
    )
    from bot.outbox_worker import OutboxWorker

    async with scratch_database(kind):
        await write_backlog(messages, chats)
        before = len(fake_calls(port))
        applications = [build_application(TelegramConfig(TOKEN, None, f"http://127.0.0.1:{port}/bot")) for _ in range(workers)]
        store = MemoryKeyValueStore()
        done, delivered = asyncio.Event(), [0]
        outbox_workers = []
        for n, application in enumerate(applications):
            limiter = RateLimiter(30 / workers, 1, 3) if limited else RateLimiter(0, 0)
            sender = Counting(TelegramSender(application.bot, limiter, ButtonPayloads(lambda: store)), messages, done, delivered)
            outbox_workers.append(
                OutboxWorker([sender], lambda item: [item.payload["message"]], worker_id=f"bench-{n}", poll_seconds=0.05, max_chats=100, per_chat=10)
            )
        started = time.perf_counter()
        for worker in outbox_workers:
            await worker.start()
        await done.wait()
        seconds = time.perf_counter() - started
        for worker in outbox_workers:
            await worker.stop()
        for application in applications:
            await close_application(application)
        assert await sent_count() == messages, "every row recorded as sent"

    calls = [c for c in fake_calls(port)[before:] if c["method"] == "sendMessage" and c["ok"]]
    by_chat: dict[str, list[int]] = defaultdict(list)
    for call in calls:
        chat, k = call["params"]["text"].split(":")
        by_chat[chat].append(int(k))
    ordered = all(seq == sorted(seq) for seq in by_chat.values())
    seen = {(chat, k) for chat, seq in by_chat.items() for k in seq}
    duplicates = len(calls) - len(seen)
    missing = messages - len(seen)
    return Result(kind, workers, "Telegram's" if limited else "off", messages, chats, seconds, ordered, duplicates, missing)


def table(results: list[Result]) -> str:
    header = ("database", "workers", "rate limits", "messages", "chats", "seconds", "messages/s", "per-chat order", "duplicates", "missing")
    rows = [
        (r.database, str(r.workers), r.limits, str(r.messages), str(r.chats), f"{r.seconds:.2f}", f"{r.rate:,.0f}", "kept" if r.ordered else "BROKEN", str(r.duplicates), str(r.missing))
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Result]:
    import logging

    logging.basicConfig(level=logging.WARNING)
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = []
    with fake_telegram() as port:
        for kind in databases:
            for workers in args.workers:
                result = await run(kind, workers, args.messages, args.chats, False, port)
                print(f"  {kind}, {workers} worker(s): {result.rate:,.0f} messages/s", file=sys.stderr)
                results.append(result)
            if args.limited:
                results.append(await run(kind, 1, args.limited, min(args.chats, args.limited), True, port))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limited", type=int, default=150, help="messages for the row with Telegram's limits (0: skip it)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print(table(results))
    ok = all(r.ordered and not r.duplicates and not r.missing for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
