"""The service over HTTP with the project's domain, rules, actions and NLU, on three stacks:
SQLite with the in-memory tracker store, SQLite with the SQL tracker store, and PostgreSQL with
Redis (when DATABASE_URL and REDIS_URL are set). The test sees the runtime too, to look into the
tracker store the way an operator would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from backend import db
from backend.seed import seed_demo
from backend.settings import Settings
from bot.app import create_app
from bot.runtime import Runtime, build_runtime
from nlu import ModelRegistry, NLUModel
from tests.conftest import PROJECT_DIR, empty_all_tables, service_backend


@dataclass
class Service:
    client: TestClient
    runtime: Runtime


@pytest.fixture(scope="session")
def privacy_nlu(trained_models_dir: Path) -> NLUModel:
    return NLUModel.load(ModelRegistry(trained_models_dir).newest())


@pytest.fixture(params=["sqlite-memory", "sqlite-sql", "redis-postgres"])
async def service(
    request: pytest.FixtureRequest, privacy_nlu: NLUModel, trained_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Service]:
    database_url, redis_url = service_backend(request, with_redis=request.param == "redis-postgres")
    monkeypatch.setenv("TRACKER_STORE", "sql" if request.param == "sqlite-sql" else "auto")
    db.configure(database_url)
    await empty_all_tables()
    await seed_demo()
    settings = Settings(database_url=database_url, redis_url=redis_url, project_dir=PROJECT_DIR, models_dir=trained_models_dir)
    runtime = build_runtime(settings, model=privacy_nlu)
    if redis_url:
        await runtime.endpoints.redis.flushdb()
    async with TestClient(TestServer(create_app(settings, runtime))) as client:
        yield Service(client, runtime)
    await db.dispose()
