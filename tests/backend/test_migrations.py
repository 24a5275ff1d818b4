"""The migrations: they build exactly the schema the models describe, and can be rerun."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String
from sqlalchemy.engine import Connection

from backend import db
from backend.models import Base


def _schema_differences(connection: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_models(backend_db: str) -> None:
    async with db.get_engine().connect() as connection:
        differences = await connection.run_sync(_schema_differences, Base.metadata)
    assert differences == []


async def test_schema_comparison_notices_a_missing_column(backend_db: str) -> None:
    # Guards the test above against passing vacuously.
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["customers"].append_column(Column("email", String(200)))

    async with db.get_engine().connect() as connection:
        differences = await connection.run_sync(_schema_differences, drifted)

    assert [(diff[0], diff[3].name) for diff in differences] == [("add_column", "email")]


def _sqlite_state(path: Path) -> tuple[str, set[str], str]:
    with sqlite3.connect(path) as connection:
        version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        journal = connection.execute("PRAGMA journal_mode").fetchone()[0]
    return (version[0] if version else "", tables, journal)


def test_upgrade_creates_the_directory_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "bot.db"
    url = f"sqlite+aiosqlite:///{path}"
    head = ScriptDirectory.from_config(db.alembic_config(url)).get_current_head()

    db.upgrade_database(url)
    db.upgrade_database(url)

    version, tables, journal = _sqlite_state(path)
    assert version == head
    assert set(Base.metadata.tables) <= tables
    assert journal == "wal"


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    url = f"sqlite+aiosqlite:///{path}"
    db.upgrade_database(url)

    command.downgrade(db.alembic_config(url), "base")
    assert _sqlite_state(path)[1] == {"alembic_version"}

    db.upgrade_database(url)
    assert set(Base.metadata.tables) <= _sqlite_state(path)[1]


async def test_upgrade_also_works_from_inside_an_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    db.upgrade_database(f"sqlite+aiosqlite:///{path}")
    assert set(Base.metadata.tables) <= _sqlite_state(path)[1]
