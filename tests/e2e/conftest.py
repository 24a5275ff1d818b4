"""The whole service over HTTP (aiohttp test client) on the project's real domain, rules,
actions and NLU, seeded with the demo data.

`stack` embedded: SQLite + in-memory stores. `stack` redis-postgres: PostgreSQL + Redis, when
DATABASE_URL and REDIS_URL are set (skipped with a reason otherwise).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from backend import db
from backend.seed import seed_demo
from backend.settings import Settings
from bot.app import create_app
from bot.runtime import build_runtime
from nlu import ModelRegistry, NLUModel
from tests.conftest import PROJECT_DIR, empty_all_tables, service_backend

STAFF_TOKEN = "staff-test-token"


@pytest.fixture(scope="session")
def project_nlu(trained_models_dir: Path) -> NLUModel:
    return NLUModel.load(ModelRegistry(trained_models_dir).newest())


@asynccontextmanager
async def serving(
    database_url: str, redis_url: str | None, model: NLUModel, models_dir: Path, **overrides: Any
) -> AsyncIterator[TestClient]:
    """The whole service on `database_url` (emptied and seeded with the demo data) and, when
    given, `redis_url` (flushed), behind a test client; `overrides`: more settings."""
    db.configure(database_url)
    await empty_all_tables()
    await seed_demo()
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        project_dir=PROJECT_DIR,
        models_dir=models_dir,
        staff_api_token=STAFF_TOKEN,
        **overrides,
    )
    runtime = build_runtime(settings, model=model)
    if redis_url:
        await runtime.endpoints.redis.flushdb()
    try:
        async with TestClient(TestServer(create_app(settings, runtime))) as test_client:
            yield test_client
    finally:
        await db.dispose()


@pytest.fixture(params=["embedded", "redis-postgres"])
async def client(request: pytest.FixtureRequest, project_nlu: NLUModel, trained_models_dir: Path) -> AsyncIterator[TestClient]:
    database_url, redis_url = service_backend(request, with_redis=request.param != "embedded")
    async with serving(database_url, redis_url, project_nlu, trained_models_dir) as test_client:
        yield test_client


class Chat:
    """One customer talking to the bot over the REST channel."""

    def __init__(self, client: TestClient, sender: str) -> None:
        self.client = client
        self.sender = sender

    async def send(self, text: Any) -> list[dict[str, Any]]:
        response = await self.client.post("/webhooks/rest/webhook", json={"sender": self.sender, "message": text})
        assert response.status == 200, await response.text()
        return await response.json()

    async def say(self, text: str) -> str:
        """All reply texts joined, as a customer would read them."""
        return "\n".join(r.get("text", "") for r in await self.send(text))
