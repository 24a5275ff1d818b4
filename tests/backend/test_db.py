"""Engine configuration and the transaction helper."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from backend import db
from backend.clock import VN_TZ
from backend.models import Bill, Customer
from backend.settings import get_settings


def _customer(code: str = "PE0000000001") -> Customer:
    return Customer(
        code=code,
        name="Lê Văn Cường",
        phone="0901234567",
        address="1 Lê Lợi",
        ward="Phường Bến Nghé",
        district="Quận 1",
        province="TP. Hồ Chí Minh",
        tariff_code="residential",
    )


async def _customer_count() -> int:
    async with db.session_scope() as session:
        return int(await session.scalar(select(func.count()).select_from(Customer)) or 0)


async def test_session_scope_commits_on_success(backend_db: str) -> None:
    async with db.session_scope() as session:
        session.add(_customer())
    assert await _customer_count() == 1


async def test_session_scope_rolls_back_on_error(backend_db: str) -> None:
    with pytest.raises(RuntimeError):
        async with db.session_scope() as session:
            session.add(_customer())
            await session.flush()
            raise RuntimeError("boom")
    assert await _customer_count() == 0


async def test_objects_stay_readable_after_commit(backend_db: str) -> None:
    async with db.session_scope() as session:
        customer = _customer()
        session.add(customer)
    # expire_on_commit=False: no lazy load (which would fail outside the session).
    assert customer.code == "PE0000000001"
    assert customer.created_at.tzinfo is not None


async def test_foreign_keys_are_enforced(backend_db: str) -> None:
    with pytest.raises(IntegrityError):
        async with db.session_scope() as session:
            session.add(
                Bill(
                    customer_id=999_999,
                    period="2026-10",
                    kwh=1,
                    amount_before_vat=1984,
                    vat_amount=159,
                    amount=2143,
                    due_date=date(2026, 11, 20),
                )
            )


async def test_timestamps_come_back_in_utc(backend_db: str) -> None:
    local = datetime(2026, 11, 26, 7, 30, tzinfo=VN_TZ)
    async with db.session_scope() as session:
        customer = _customer()
        customer.created_at = local
        session.add(customer)
    async with db.session_scope() as session:
        stored = await session.scalar(select(Customer.created_at))
    assert stored == datetime(2026, 11, 26, 0, 30, tzinfo=UTC)
    assert stored is not None and stored.utcoffset() is not None


@pytest.fixture
async def sqlite_engine(sqlite_url: str) -> AsyncIterator[None]:
    db.configure(sqlite_url)
    yield
    await db.dispose()


async def test_sqlite_connections_are_tuned(sqlite_engine: None) -> None:
    async with db.get_engine().connect() as connection:
        pragmas = {
            name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "busy_timeout", "foreign_keys")
        }
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 10000, "foreign_keys": 1}


async def test_engine_falls_back_to_the_settings_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-settings" / "bot.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setattr(db, "_engine", None)
    monkeypatch.setattr(db, "_sessionmaker", None)
    get_settings.cache_clear()
    try:
        engine = db.get_engine()
        async with db.session_scope() as session:
            assert await session.scalar(text("SELECT 1")) == 1
        assert engine.url.database == str(path)
        assert path.parent.is_dir()
    finally:
        await db.dispose()
        get_settings.cache_clear()


def test_plain_driver_names_get_async_drivers() -> None:
    assert db.async_url("postgresql://u:p@h/x").drivername == "postgresql+asyncpg"
    assert db.async_url("postgres://u@h/x").drivername == "postgresql+asyncpg"
    assert db.async_url("sqlite:///var/bot.db").drivername == "sqlite+aiosqlite"
    assert db.async_url("sqlite+aiosqlite:///var/bot.db").drivername == "sqlite+aiosqlite"


async def test_warming_the_pool_leaves_connections_ready(backend_db: str) -> None:
    """A worker opens its PostgreSQL connections before it takes customers; SQLite has no pool
    to fill. Either way the database answers afterwards."""
    opened = await db.warm_pool(4)
    engine = db.get_engine()
    if engine.dialect.name == "postgresql":
        assert opened == 4
        assert engine.pool.checkedin() == 4  # type: ignore[attr-defined]
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    else:
        assert opened == 0
    assert await _customer_count() == 0
