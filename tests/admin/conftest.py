"""Fixtures of the NLU administration tests: the project's training data in the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend import db
from backend.services import nlu_data
from backend.settings import Settings
from tests.conftest import PROJECT_DIR, empty_all_tables

ADMIN = nlu_data.Actor("test-admin")


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[str]:
    """The embedded default's database, emptied."""
    db.configure(sqlite_url)
    await empty_all_tables()
    yield sqlite_url
    await db.dispose()


@pytest.fixture
async def with_data(backend_db: str) -> str:
    """SQLite and (when configured) PostgreSQL, holding data/'s training data."""
    await nlu_data.import_files(PROJECT_DIR / "data", ADMIN)
    return backend_db


def settings_for(url: str, models_dir: Path) -> Settings:
    return Settings(database_url=url, redis_url=None, project_dir=PROJECT_DIR, models_dir=models_dir)
