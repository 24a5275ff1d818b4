"""Alembic environment for the backend schema, on the same async drivers the service uses.

Alembic itself is synchronous, so the migrations run inside `AsyncConnection.run_sync` on a
private event loop (`asyncio.run`); `backend.db.upgrade_database` makes sure none is running
in the calling thread.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from backend.db import async_url, build_engine
from backend.models import Base
from backend.settings import get_settings

config = context.config
target_metadata = Base.metadata

# Only the alembic CLI has an ini file; when the service migrates programmatically, its own
# logging setup must not be replaced.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return str(url or get_settings().database_url)


def _configure_context(**options: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=async_url(_database_url()).get_backend_name() == "sqlite",
        # Our SQLite engine issues BEGIN itself (see backend.db), so DDL is transactional on
        # both databases and a failed upgrade leaves the schema as it was.
        transactional_ddl=True,
        **options,
    )


def _run_on(connection: Connection) -> None:
    _configure_context(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = build_engine(_database_url(), for_migrations=True)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_on)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    """`alembic upgrade --sql`: print the DDL instead of running it."""
    _configure_context(
        url=async_url(_database_url()).render_as_string(hide_password=False),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    asyncio.run(_run_online())
