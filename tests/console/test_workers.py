"""Two server processes on PostgreSQL + Redis: console events cross workers over Redis
pub/sub, and two agents on different workers racing to claim one conversation never both win."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from redis.asyncio import Redis

from backend import db
from backend.seed import seed_demo
from backend.services import handoff, staff
from tests.conftest import POSTGRES_URL, REDIS_URL, empty_all_tables
from tests.console.conftest import PASSWORD, Agent
from tests.servers import ServerProcess

pytestmark = pytest.mark.skipif(not (POSTGRES_URL.startswith("postgresql") and REDIS_URL), reason="DATABASE_URL (PostgreSQL) and REDIS_URL not both set")


@pytest.fixture
def workers(postgres_url: str, trained_models_dir: Path) -> Iterator[list[ServerProcess]]:
    """Two `python -m bot serve` processes on one PostgreSQL database and one Redis."""
    env = {
        "DATABASE_URL": postgres_url, "REDIS_URL": REDIS_URL, "MODELS_DIR": str(trained_models_dir),
        "HANDOFF_HOURS": "00:00-24:00", "HANDOFF_DAYS": "0-6",
        "STAFF_API_TOKEN": "", "SANDBOX_PAYMENT_SECRET": "same-for-both-workers", "URL_SIGNING_SECRET": "same-for-both-workers",
    }
    servers = [ServerProcess(env), ServerProcess(env)]
    for server in servers:
        server.start()
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def cluster(postgres_url: str, workers: list[ServerProcess]) -> AsyncIterator[list[str]]:
    db.configure(postgres_url)
    await empty_all_tables()
    await seed_demo()
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    for name in ("lan", "minh"):
        await staff.create_staff(name, PASSWORD, "agent", display_name=name.title(), max_chats=10)
    await asyncio.gather(*(server.wait_healthy(within=30.0) for server in workers))
    yield [server.base for server in workers]
    await db.dispose()


async def _say(http: ClientSession, base: str, sender: str, text: str) -> list[dict[str, object]]:
    async with http.post(f"{base}/webhooks/rest/webhook", json={"sender": sender, "message": text}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_two_workers_share_the_console(cluster: list[str]) -> None:
    worker_a, worker_b = cluster
    lan, minh = Agent(worker_a, "lan"), Agent(worker_b, "minh")
    customer = ClientSession()
    try:
        assert await lan.login() == 200 and await minh.login() == 200
        ws = await lan.http.ws_connect(f"{worker_a}/console/ws", headers={"Origin": worker_a})

        # a customer on worker B escalates; the agent connected to worker A sees it live
        await _say(customer, worker_b, "khach-x", "/talk_to_human")
        assert await ws.receive_json(timeout=10) == {"type": "queue"}
        assert await _say(customer, worker_b, "khach-x", "alo, có ai không?") == []
        event = await ws.receive_json(timeout=10)
        assert event["role"] == "customer" and event["text"] == "alo, có ai không?"

        # races: two agents on two workers claim the same conversations at once
        senders = [f"race-{i}" for i in range(6)]
        for sender in senders:
            await _say(customer, worker_a if len(sender) % 2 else worker_b, sender, "/talk_to_human")
        for sender in senders:
            info = await handoff.open_handoff(sender)
            assert info is not None
            results = await asyncio.gather(lan.post(f"/console/h/{info.id}/claim"), minh.post(f"/console/h/{info.id}/claim"))
            assert sorted(status for status, _ in results) == [200, 409], results
            owner = await handoff.get_handoff(info.id)
            assert owner is not None and owner.assignee in ("Lan", "Minh")

        # the winner replies on its worker; the customer polls the other worker's outbox
        info = await handoff.open_handoff("khach-x")
        assert info is not None
        assert (await lan.post(f"/console/h/{info.id}/claim"))[0] == 200
        assert (await lan.post(f"/console/h/{info.id}/reply", text="Em nghe đây ạ"))[0] == 200
        async with customer.get(f"{worker_b}/webhooks/rest/outbox", params={"sender": "khach-x"}) as response:
            texts = [m["text"] for m in await response.json()]
        assert "Em nghe đây ạ" in texts
        assert (await lan.post(f"/console/h/{info.id}/handback"))[0] == 200
        replies = await _say(customer, worker_b, "khach-x", "/greet")
        assert replies and "Xin chào" in str(replies[0]["text"])
        await ws.close()
    finally:
        await customer.close()
        await lan.close()
        await minh.close()
