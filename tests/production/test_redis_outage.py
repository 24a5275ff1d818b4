"""Redis (tracker, locks, dedupe, console events) stops under load and comes back empty: while
it is down every request is answered at once with 503 and `Retry-After` (never a 500, never a
hang); within 5 s of its return the service answers again by itself."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from backend import db
from backend.settings import Settings
from bot.app import create_app
from bot.runtime import build_runtime
from nlu import NLUModel
from tests.conftest import PROJECT_DIR
from tests.production.conftest import GREETING, HELP
from tests.production.support import PrivateRedis, private_redis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
CUSTOMERS = 8


@pytest.fixture
async def service(
    sqlite_url: str, trained_models_dir: Path, project_nlu: NLUModel, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[TestClient, PrivateRedis]]:
    with private_redis() as redis_server:
        monkeypatch.setenv("REDIS_URL", redis_server.url)  # endpoints.yml reads ${REDIS_URL}
        db.configure(sqlite_url)
        settings = Settings(database_url=sqlite_url, redis_url=redis_server.url, project_dir=PROJECT_DIR, models_dir=trained_models_dir)
        runtime = build_runtime(settings, model=project_nlu)
        async with TestClient(TestServer(create_app(settings, runtime))) as client:
            yield client, redis_server
        await db.dispose()


async def _say(client: TestClient, sender: str, text: str) -> tuple[int, str | None, str]:
    """Status, Retry-After and the reply texts; a request that takes 5 s fails the test."""
    response = await asyncio.wait_for(client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text}), 5)
    body = await response.json()
    replies = "\n".join(str(r.get("text", "")) for r in body) if isinstance(body, list) else ""
    return response.status, response.headers.get("Retry-After"), replies


async def test_redis_restart_under_load(service: tuple[TestClient, PrivateRedis]) -> None:
    client, redis_server = service
    senders = [f"khach-{i}" for i in range(CUSTOMERS)]
    for status, _, replies in await asyncio.gather(*(_say(client, s, GREETING[0]) for s in senders)):
        assert status == 200 and GREETING[1] in replies

    stop_load = asyncio.Event()
    statuses: list[int] = []

    async def customer(sender: str) -> None:
        """Keeps talking through the outage, like customers do, and checks every answer."""
        while not stop_load.is_set():
            status, retry_after, replies = await _say(client, sender, HELP[0])
            statuses.append(status)
            assert status in (200, 503), status
            if status == 503:
                assert retry_after and int(retry_after) > 0
                await asyncio.sleep(0.1)
            else:
                assert replies  # (repeated "help" ends up offering a person: any answer will do)

    load = [asyncio.create_task(customer(s)) for s in senders]
    await asyncio.sleep(0.3)
    redis_server.stop()
    await asyncio.sleep(1.0)
    down = len(statuses)
    status, retry_after, _ = await _say(client, "while-down", GREETING[0])
    assert status == 503 and retry_after

    redis_server.start()  # same port, empty
    back = time.monotonic()
    while True:
        status, _, replies = await _say(client, "after", GREETING[0])
        if status == 200:
            break
        assert time.monotonic() - back < 5, "the service did not recover within 5 s of Redis returning"
        await asyncio.sleep(0.1)
    assert GREETING[1] in replies
    await asyncio.sleep(0.5)
    stop_load.set()
    await asyncio.gather(*load)  # every answer was a 200 or a 503 with Retry-After
    assert 503 in statuses[:down] and statuses[-1] == 200
    for status, _, _ in await asyncio.gather(*(_say(client, s, HELP[0]) for s in senders)):
        assert status == 200
