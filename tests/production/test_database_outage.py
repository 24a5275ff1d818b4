"""PostgreSQL goes away (a TCP proxy in front of it is cut) while the tracker lives in Redis:
greetings, help and tariff questions are still answered (tariffs from memory), a bill lookup
gets an apology with the hotline instead of an error, HTTP routes that need the database answer
503 with `Retry-After`; when the database is back, the waiting outbox message is delivered and
bills are answered again, with no restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.engine import make_url

from backend import db
from backend.seed import seed_demo
from backend.services import notifications
from backend.settings import Settings
from bot.app import create_app
from bot.runtime import build_runtime
from nlu import NLUModel
from tests.conftest import POSTGRES_URL, PROJECT_DIR, REDIS_URL, empty_all_tables
from tests.production.conftest import GREETING, HELP
from tests.production.support import TcpProxy

pytestmark = pytest.mark.skipif(
    not (POSTGRES_URL.startswith("postgresql") and REDIS_URL), reason="DATABASE_URL (PostgreSQL) and REDIS_URL not both set"
)
HOTLINE = "1900 1006"


@pytest.fixture
async def service(postgres_url: str, trained_models_dir: Path, project_nlu: NLUModel) -> AsyncIterator[tuple[TestClient, TcpProxy]]:
    real = make_url(postgres_url)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    await proxy.start()
    url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    db.configure(url)
    await empty_all_tables()
    await seed_demo()
    settings = Settings(database_url=url, redis_url=REDIS_URL, project_dir=PROJECT_DIR, models_dir=trained_models_dir, hotline=HOTLINE)
    runtime = build_runtime(settings, model=project_nlu)
    assert runtime.endpoints.redis is not None
    await runtime.endpoints.redis.flushdb()
    async with TestClient(TestServer(create_app(settings, runtime))) as client:
        yield client, proxy
    await proxy.close()
    await db.dispose()


async def _say(client: TestClient, text: str, sender: str = "an") -> str:
    response = await asyncio.wait_for(client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text}), 10)
    assert response.status == 200, await response.text()
    return "\n".join(str(r.get("text", "")) for r in await response.json())


async def _outbox(client: TestClient, sender: str = "an") -> tuple[int, Any, str | None]:
    response = await asyncio.wait_for(client.get("/webhooks/rest/outbox", params={"sender": sender}), 10)
    return response.status, await response.json(), response.headers.get("Retry-After")


async def test_database_outage(service: tuple[TestClient, TcpProxy]) -> None:
    client, proxy = service
    # before: the chat proves it owns PE0400012345, and a notice waits in its outbox
    await _say(client, "tra cứu hóa đơn")
    await _say(client, "PE0400012345")
    assert "842.076" in await _say(client, "0912345678")
    await notifications.notify(notifications.Notification(notifications.ChatRef("rest", "an"), "notice", "utter_goodbye"))

    await proxy.cut()
    assert GREETING[1] in await _say(client, GREETING[0])
    assert HELP[1] in await _say(client, HELP[0])
    assert "1.984" in await _say(client, "giá điện bậc thang")  # the residential tier-1 price, from memory
    apology = await _say(client, "tra cứu hóa đơn tháng này")
    assert "Xin lỗi" in apology and "tạm gián đoạn" in apology and HOTLINE in apology
    status, _, retry_after = await _outbox(client)
    assert status == 503 and retry_after

    await proxy.restore()
    back = time.monotonic()
    while (found := await _outbox(client))[0] != 200:
        assert time.monotonic() - back < 5, "the database came back but the service did not"
        await asyncio.sleep(0.2)
    assert "Cảm ơn bạn đã liên hệ" in str(found[1])  # the notice that waited through the outage
    assert "842.076" in await _say(client, "tiền điện tháng trước")
