"""Shared fixtures.

Backend tests run on SQLite always and on PostgreSQL when DATABASE_URL is set; Redis tests run
when REDIS_URL is set. Without them those variants skip with a visible reason.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from backend import db
from backend.models import Base

POSTGRES_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
PROJECT_DIR = Path(__file__).resolve().parent.parent

needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL.startswith("postgresql"), reason="DATABASE_URL (PostgreSQL) not set"
)
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL not set")


async def _admin_execute(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _run_in_thread(coro_factory) -> None:  # noqa: ANN001
    """Run a coroutine to completion even when the caller is inside an event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(coro_factory())).result()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "test.db"
    url = f"sqlite+aiosqlite:///{path}"
    db.upgrade_database(url)
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped afterwards."""
    if not POSTGRES_URL.startswith("postgresql"):
        pytest.skip("DATABASE_URL (PostgreSQL) not set")
    base = make_url(POSTGRES_URL)
    name = f"bot_test_{uuid.uuid4().hex[:10]}"
    _run_in_thread(lambda: _admin_execute(POSTGRES_URL, f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    db.upgrade_database(url)
    yield url
    _run_in_thread(lambda: _admin_execute(POSTGRES_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each backend test runs once on SQLite and once on PostgreSQL (when configured)."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


def service_backend(request: pytest.FixtureRequest, *, with_redis: bool) -> tuple[str, str | None]:
    """(database URL, Redis URL) for a whole-service fixture's variant: SQLite alone, or
    PostgreSQL with Redis (skipped unless DATABASE_URL and REDIS_URL are both set)."""
    if not with_redis:
        return request.getfixturevalue("sqlite_url"), None
    if not (POSTGRES_URL and REDIS_URL):
        pytest.skip("DATABASE_URL and REDIS_URL not both set")
    return request.getfixturevalue("postgres_url"), REDIS_URL


async def empty_all_tables() -> None:
    async with db.session_scope() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())


@pytest.fixture
async def backend_db(database_url: str) -> AsyncIterator[str]:
    """The backend configured on an empty, migrated database; yields its URL."""
    db.configure(database_url)
    await empty_all_tables()
    yield database_url
    await db.dispose()


@pytest.fixture(scope="session")
def trained_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's NLU trained once per test session from data/ and config.yml."""
    from nlu.cli import train

    models = tmp_path_factory.mktemp("models")
    train(PROJECT_DIR / "data", PROJECT_DIR / "config.yml", models)
    return models
