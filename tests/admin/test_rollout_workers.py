"""Activation reaches every worker: two `python -m bot serve` processes on PostgreSQL + Redis
switch to a newly activated model while customers keep writing, and no request fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, ClientTimeout
from redis.asyncio import Redis

from backend import db
from backend.seed import seed_demo
from backend.services import nlu_data, nlu_models
from bot.model_rollout import announce
from bot.nlu_training import run_job
from tests.admin.conftest import ADMIN, settings_for
from tests.conftest import POSTGRES_URL, PROJECT_DIR, REDIS_URL, empty_all_tables
from tests.servers import ServerProcess

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL.startswith("postgresql") and REDIS_URL), reason="DATABASE_URL (PostgreSQL) and REDIS_URL not both set"
)
MESSAGES = ["xin chào", "tra cứu hóa đơn", "giá điện bậc 1 bao nhiêu", "cảm ơn", "mất điện ở phường Bến Thành", "tạm biệt"]


@pytest.fixture
async def prepared(postgres_url: str) -> AsyncIterator[str]:
    db.configure(postgres_url)
    await empty_all_tables()
    await seed_demo()
    await nlu_data.import_files(PROJECT_DIR / "data", ADMIN)
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    yield postgres_url
    await db.dispose()


@pytest.fixture
def workers(prepared: str, trained_models_dir: Path) -> Iterator[list[str]]:
    env = {
        "DATABASE_URL": prepared, "REDIS_URL": REDIS_URL, "MODELS_DIR": str(trained_models_dir), "STAFF_API_TOKEN": "",
        "SANDBOX_PAYMENT_SECRET": "same-for-both-workers", "URL_SIGNING_SECRET": "same-for-both-workers",
    }
    servers = [ServerProcess(env, grace=15.0), ServerProcess(env, grace=15.0)]
    for server in servers:
        server.start()
    try:
        yield [server.base for server in servers]
    finally:
        for server in servers:
            server.stop()


async def _model(http: ClientSession, base: str) -> str | None:
    try:
        async with http.get(f"{base}/health") as response:
            return (await response.json())["model"] if response.status == 200 else None
    except OSError:
        return None


async def test_activation_reaches_both_workers_under_load(workers: list[str], tmp_path: Path) -> None:
    async with ClientSession(timeout=ClientTimeout(total=30)) as http:
        for _ in range(300):
            if all([await _model(http, base) for base in workers]):
                break
            await asyncio.sleep(0.2)
        first = await nlu_models.active_version()
        assert first is not None
        assert [await _model(http, base) for base in workers] == [first, first]

        job, _ = await nlu_models.create_job(ADMIN)
        new = await run_job(job.id, settings_for("", tmp_path))
        assert new is not None and new != first

        results: list[tuple[int, int]] = []  # (status, number of replies)
        stop = asyncio.Event()

        async def customer(i: int) -> None:
            n = 0
            while not stop.is_set():
                base = workers[(i + n) % 2]
                body = {"sender": f"load-{i}", "message": MESSAGES[n % len(MESSAGES)]}
                async with http.post(f"{base}/webhooks/rest/webhook", json=body) as response:
                    replies = await response.json() if response.status == 200 else []
                    results.append((response.status, len(replies)))
                n += 1

        load = [asyncio.create_task(customer(i)) for i in range(12)]
        await asyncio.sleep(1.0)
        await nlu_models.activate(new, ADMIN)
        redis = Redis.from_url(REDIS_URL)
        await announce(redis, new)
        await redis.aclose()
        activated = time.monotonic()
        reached: dict[str, float] = {}
        while len(reached) < 2 and time.monotonic() - activated < 15:
            for base in workers:
                if base not in reached and await _model(http, base) == new:
                    reached[base] = time.monotonic() - activated
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*load)

    print(f"\nactivation reached the workers after {sorted(round(t, 2) for t in reached.values())} s; {len(results)} requests")
    assert len(reached) == 2, f"only {reached} switched to {new}"
    assert results and all(status == 200 for status, _ in results), [r for r in results if r[0] != 200][:5]
    assert all(count > 0 for _, count in results), "a message went unanswered"
