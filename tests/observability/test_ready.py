"""/ready says whether this process can take traffic; /health only that it is alive."""

from __future__ import annotations

import asyncio
import time

from aiohttp.test_utils import TestClient

from backend import db
from tests.observability.conftest import closed_port


async def test_ready_when_database_and_model_are_there(make_client) -> None:
    client = await make_client()
    response = await client.get("/ready")
    body = await response.json()
    assert response.status == 200
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "redis": "not configured", "nlu": "ok"}
    health = await (await client.get("/health")).json()
    assert body["model"] == health["model"]


async def test_ready_with_redis_and_postgres(client: TestClient) -> None:
    body = await (await client.get("/ready")).json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok" and body["checks"]["nlu"] == "ok"


async def test_not_ready_when_the_database_is_unreachable(make_client, sqlite_url: str) -> None:
    client = await make_client()
    await db.dispose()
    db.configure(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/gone")  # the database went away
    try:
        started = time.monotonic()
        response = await client.get("/ready")
        elapsed = time.monotonic() - started
        body = await response.json()
        health = await client.get("/health")
    finally:
        await db.dispose()
        db.configure(sqlite_url)
    assert response.status == 503
    assert body["status"] == "not ready" and body["not_ready"] == ["database"]
    assert body["checks"]["database"] in ("unreachable", "timeout") and body["checks"]["nlu"] == "ok"
    assert elapsed < 5  # a probe never hangs
    assert health.status == 200  # liveness does not depend on the database
    assert "gone" not in str(body)  # nothing of the URL leaks


async def test_a_silent_database_times_out_instead_of_hanging(make_client, sqlite_url: str) -> None:
    held: list[asyncio.StreamWriter] = []  # accepts connections, never answers

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await make_client()
    await db.dispose()
    db.configure(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/silent")
    try:
        started = time.monotonic()
        response = await client.get("/ready")
        elapsed = time.monotonic() - started
    finally:
        await db.dispose()
        db.configure(sqlite_url)
        server.close()
        for writer in held:
            writer.close()
    assert response.status == 503
    assert (await response.json())["checks"]["database"] == "timeout"
    assert elapsed < 3


async def test_not_ready_when_redis_is_unreachable(make_client) -> None:
    client = await make_client(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    started = time.monotonic()
    response = await client.get("/ready")
    elapsed = time.monotonic() - started
    body = await response.json()
    assert response.status == 503
    assert body["not_ready"] == ["redis"]
    assert body["checks"] == {"database": "ok", "redis": body["checks"]["redis"], "nlu": "ok"}
    assert body["checks"]["redis"] in ("unreachable", "timeout")
    assert elapsed < 5
    assert (await client.get("/health")).status == 200
