"""Database connection for the backend: the process-wide async engine, transactions, migrations.

Services open their own transaction with `session_scope()`; nothing outside `backend/` should
need an engine or a session. The schema is created and changed only by `upgrade_database()`,
which runs the Alembic migrations in `backend/migrations`.

Both SQLite (aiosqlite, development and small deployments) and PostgreSQL (asyncpg) are
supported; SQLite connections are tuned here so that several coroutines can share one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from backend.settings import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Plain driver names people put in DATABASE_URL, mapped to the async drivers this code needs.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}

_engine: AsyncEngine | None = None
_sessionmaker: async_sessionmaker[AsyncSession] | None = None
_read_sessionmaker: async_sessionmaker[AsyncSession] | None = None
_read_engine: AsyncEngine | None = None
READ_ONLY = "backend_read_only"


def async_url(url: str | URL) -> URL:
    """`url` with an async driver: 'postgresql://' becomes 'postgresql+asyncpg://' and so on."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory and URI-style databases."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def ensure_sqlite_directory(url: str | URL) -> None:
    """Create the directory of a SQLite database file, since SQLite will not create it."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    path = _sqlite_file(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def _tune_sqlite(engine: AsyncEngine, *, foreign_keys: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The sqlite3 driver only BEGINs before DML, so SELECTs would run outside the
        # transaction and SAVEPOINT/DDL would not be transactional. Turn that off and let
        # SQLAlchemy's begin event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # WAL lets readers proceed while one connection writes; busy_timeout makes a
            # writer wait for the lock instead of failing at once; SQLite leaves foreign keys
            # unenforced unless asked on every connection.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            # A read-only scope takes no write lock: with WAL its reads run alongside the one
            # writer instead of queueing behind it. It issues no BEGIN at all, so a one-query
            # lookup (most of the traffic) is a single round trip to the SQLite thread.
            return
        # IMMEDIATE takes the write lock up front. With a deferred BEGIN a transaction that
        # reads and then writes fails with SQLITE_BUSY (which busy_timeout does not retry) when
        # another connection committed in between; this way it simply waits its turn, and
        # read-check-write sequences such as the verification lockout are serialised.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def build_engine(url: str | URL, *, for_migrations: bool = False) -> AsyncEngine:
    """A new async engine for `url`, tuned for its database; the caller disposes of it.

    `for_migrations` gives a pool-less engine and, on SQLite, leaves foreign keys unenforced:
    Alembic rebuilds SQLite tables by copy-and-drop, and with enforcement on, dropping the old
    table would cascade deletes into the tables that reference it.
    """
    parsed = async_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        ensure_sqlite_directory(parsed)
        options: dict[str, Any] = {"poolclass": NullPool} if for_migrations else {}
        engine = create_async_engine(parsed, **options)
        _tune_sqlite(engine, foreign_keys=not for_migrations)
        return engine
    if for_migrations:
        return create_async_engine(parsed, poolclass=NullPool)
    # A bounded connect: an unreachable server must turn into an error the service can answer
    # with (503, an apology), not a request that hangs for asyncpg's default minute.
    connect_args: dict[str, Any] = {"timeout": 5}
    if parsed.host in _LOOPBACK and not {"ssl", "sslmode"} & set(parsed.query):
        connect_args["ssl"] = False  # asyncpg would first ask a local server for TLS on every connect
    settings = get_settings()
    # No pre-ping (a round trip on every checkout; asyncpg's is three): connections are
    # recycled by age, one the server closed is dropped at checkout (`_drop_closed`), and a
    # connection lost mid-query invalidates the pool, so the next request opens fresh ones.
    engine = create_async_engine(
        parsed,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_recycle=settings.database_pool_recycle_seconds,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "checkout", _drop_closed)
    return engine


_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has closed (a restart, an idle timeout): the pool
    then opens a new one instead of handing out a connection whose first query fails. A local
    check, no round trip."""
    connection = getattr(dbapi_connection, "_connection", None)
    if connection is not None and connection.is_closed():
        raise DisconnectionError("the database closed this pooled connection")


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc`, or an error that caused it, says the database cannot be reached or lost
    the connection (refused, reset, timed out, shutting down), as opposed to a bug or a broken
    constraint: the caller should answer "try again later", not "error"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, (OperationalError, InterfaceError, PoolTimeout, OSError)):
            return True
        if type(current).__module__.startswith("asyncpg") and type(current).__name__ in _ASYNCPG_UNAVAILABLE:
            return True
        current = current.__cause__ or current.__context__
    return False


_ASYNCPG_UNAVAILABLE = {
    "ConnectionDoesNotExistError",
    "PostgresConnectionError",
    "ConnectionFailureError",
    "CannotConnectNowError",
    "AdminShutdownError",
    "CrashShutdownError",
    "TooManyConnectionsError",
}


def configure(url: str) -> None:
    """Point the backend at `url`, replacing any engine configured before.

    The previous engine is not disposed of here: call `dispose()` first if it was used.
    """
    global _engine, _sessionmaker, _read_sessionmaker, _read_engine
    _engine = build_engine(url)
    if _engine.dialect.name == "sqlite":
        # aiosqlite logs every statement with its parameters at DEBUG: customers' messages and
        # phone numbers. Never wanted, whoever turns DEBUG on (bot/observability.py does the same).
        quiet = logging.getLogger("aiosqlite")
        quiet.setLevel(max(quiet.level, logging.INFO))
    _sessionmaker = async_sessionmaker(_engine, expire_on_commit=False)
    read_options: dict[str, Any] = {READ_ONLY: True}
    if _engine.dialect.name == "postgresql":
        # Reads need no transaction of their own: no BEGIN and COMMIT round trips per lookup.
        read_options["isolation_level"] = "AUTOCOMMIT"
    _read_engine = _engine.execution_options(**read_options)
    _read_sessionmaker = async_sessionmaker(_read_engine, expire_on_commit=False)


def current_url() -> str:
    """The configured database URL, password included (for a child process's environment)."""
    return get_engine().url.render_as_string(hide_password=False)


def get_engine() -> AsyncEngine:
    """The configured engine, configured from the settings on first use if need be."""
    if _engine is None:
        configure(get_settings().database_url)
    assert _engine is not None
    return _engine


def _get_sessionmaker() -> async_sessionmaker[AsyncSession]:
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker


_sqlite_writer: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None


def _sqlite_write_turn() -> asyncio.Lock | None:
    """On SQLite, this process's writers queue on an asyncio lock: SQLite admits one writer at a
    time, and waiting here costs nothing, while waiting in SQLite's busy handler sleeps in steps
    of up to 100 ms."""
    global _sqlite_writer
    if get_engine().dialect.name != "sqlite":
        return None
    loop = asyncio.get_running_loop()
    if _sqlite_writer is None or _sqlite_writer[0] is not loop:
        _sqlite_writer = (loop, asyncio.Lock())
    return _sqlite_writer[1]


@asynccontextmanager
async def session_scope() -> AsyncIterator[AsyncSession]:
    """A session in a transaction: committed when the block ends, rolled back if it raises."""
    async with _sqlite_write_turn() or contextlib.nullcontext(), _get_sessionmaker()() as session, session.begin():
        yield session


@asynccontextmanager
async def read_scope() -> AsyncIterator[AsyncSession]:
    """A session for reads only. On SQLite it does not take the write lock, so lookups (the
    bulk of the traffic) do not wait for each other; on PostgreSQL it runs in autocommit (each
    query sees the latest committed data; no snapshot across queries). It must not be used to
    write."""
    get_engine()
    assert _read_sessionmaker is not None
    async with _read_sessionmaker() as session, session.begin():
        yield session


@asynccontextmanager
async def read_connection() -> AsyncIterator[AsyncConnection]:
    """`read_scope` without an ORM session, for the Core selects on a turn's hot paths (a lookup
    costs about half the CPU of one through a session). The same rules: reads only."""
    get_engine()
    assert _read_engine is not None
    async with _read_engine.connect() as connection:
        yield connection


async def warm_pool(count: int | None = None) -> int:
    """Open `count` pooled connections (default: the pool size) at once and put them back, so a
    worker that has just started answers its first burst of customers without first connecting
    to PostgreSQL for each of them (a connect and asyncpg's type setup take longer than a whole
    turn). Nothing to do on SQLite. Returns how many connections were opened."""
    engine = get_engine()
    if engine.dialect.name != "postgresql":
        return 0
    wanted = get_settings().database_pool_size if count is None else count
    held: list[AsyncConnection] = []
    try:
        # All checked out together: the pool must open new ones instead of handing the same
        # connection back each time.
        opened = await asyncio.gather(*(engine.connect() for _ in range(wanted)), return_exceptions=True)
        held = [c for c in opened if isinstance(c, AsyncConnection)]
        await asyncio.gather(*(c.execute(text("SELECT 1")) for c in held))
    finally:
        await asyncio.gather(*(c.close() for c in held), return_exceptions=True)
    return len(held)


async def dispose() -> None:
    """Close the pooled connections (e.g. at shutdown, or before the event loop goes away).

    The engine stays configured; it opens new connections if it is used again.
    """
    if _engine is not None:
        await _engine.dispose()


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for the backend migrations, without any alembic.ini.

    The URL is handed to env.py through `Config.attributes` rather than the `sqlalchemy.url`
    option because that option goes through ConfigParser interpolation, which mangles the
    '%' of URL-encoded passwords.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = url or get_settings().database_url
    return config


def upgrade_database(url: str | None = None) -> None:
    """Migrate the database at `url` (default: the settings URL) to the latest schema.

    Synchronous, for CLIs and test fixtures. The migrations run on their own event loop, so if
    this thread is already running one, they are run from a worker thread instead.
    """
    config = alembic_config(url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, "head")
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, config, "head").result()


class SchemaOutOfDate(RuntimeError):
    """The database has not been migrated to the schema this code expects."""


async def require_current_schema() -> None:
    """Refuse to serve on a database that `python -m bot db upgrade` has not brought up to date:
    every lookup would fail, and the customer would only see apologies."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    try:
        async with read_scope() as session:
            current = await session.scalar(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:
        current = None
    if current != head:
        raise SchemaOutOfDate(
            f"the database is at migration {current or 'none'}, this code needs {head}: "
            "run `python -m bot db upgrade`"
        )


async def upsert_insert(session: AsyncSession, table: Any) -> Any:
    """The dialect's INSERT (PostgreSQL or SQLite), which offers ON CONFLICT DO NOTHING; the
    portable one does not, and catching IntegrityError would abort a PostgreSQL transaction."""
    dialect = (await session.connection()).dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
