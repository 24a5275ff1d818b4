"""Telegram and Zalo end to end: the real app (aiohttp test server) with both channels on,
talking to fake Telegram and Zalo servers on 127.0.0.1. Parameterised like tests/e2e: embedded
(SQLite + memory) and redis-postgres (when DATABASE_URL and REDIS_URL are set).

A test plays the platform: it posts updates to the webhook the way Telegram or Zalo would,
then waits until the bot has finished (no webhook task running, nothing pending in the outbox
for the chat) and reads what reached the fake server.

The stack and the fakes are per module (seeding the demo data is the slow part), so the
modules using them run on a module-scoped event loop (`pytestmark = CHANNEL_LOOP`) and every
test talks from chat ids of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from backend import db
from backend.models import OutboxMessage
from backend.seed import seed_demo
from backend.settings import Settings
from bot.app import create_app
from bot.channels.platforms import PLATFORMS, PlatformChannels
from bot.runtime import build_runtime
from nlu import NLUModel
from tests.conftest import PROJECT_DIR, empty_all_tables, service_backend
from tests.e2e.conftest import STAFF_TOKEN, project_nlu  # noqa: F401 - the session fixture
from tests.fakes.telegram import Call, FakeTelegram
from tests.fakes.zalo import FakeZalo, Sent
from tests.servers import free_port

TG_TOKEN = "7000001:TEST_token-for-fake"
TG_SECRET = "tg_secret-123"
ZALO_APP_ID = "4321987650001"
ZALO_APP_SECRET = "zalo-app-secret"
ZALO_OA_SECRET = "zalo-oa-secret-key"
ZALO_ACCESS, ZALO_REFRESH = "at-1", "rt-1"


# Chat ids differ between test runs: other runs of this suite may share the Redis database
# (conversations are keyed by chat id there).
RUN = secrets.randbelow(900_000) + 100_000


def tg_chat(n: int) -> int:
    """Telegram chat id number `n` of this run."""
    return RUN * 10_000 + n


def zalo_user(n: int) -> str:
    """Zalo user id number `n` of this run."""
    return f"84{RUN}{n:05d}"


CHANNEL_LOOP = pytest.mark.asyncio(loop_scope="module")


def channel_settings(database_url: str, redis_url: str | None, models: Path, telegram: FakeTelegram, zalo: FakeZalo, port: int, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "project_dir": PROJECT_DIR,
        "models_dir": models,
        "staff_api_token": STAFF_TOKEN,
        "public_base_url": f"http://127.0.0.1:{port}",
        "telegram_bot_token": TG_TOKEN,
        "telegram_webhook_secret": TG_SECRET,
        "telegram_api_base_url": telegram.base_url,
        "zalo_app_id": ZALO_APP_ID,
        "zalo_app_secret": ZALO_APP_SECRET,
        "zalo_oa_secret_key": ZALO_OA_SECRET,
        "zalo_access_token": ZALO_ACCESS,
        "zalo_refresh_token": ZALO_REFRESH,
        "zalo_api_base_url": zalo.url,
        "zalo_oauth_base_url": zalo.url,
        "outbox_poll_seconds": 0.1,
        # Fast tests: the platform limits are tested on their own (test_middleware.py).
        "telegram_chat_rate_limit": 0,
        "zalo_chat_rate_limit": 0,
        **extra,
    }
    return Settings(**values)


@dataclass
class Stack:
    client: TestClient
    telegram: FakeTelegram
    zalo: FakeZalo
    settings: Settings

    @property
    def platforms(self) -> PlatformChannels:
        return self.client.server.app[PLATFORMS]

    async def idle(self, channel: str, recipient: str, within: float = 15.0) -> None:
        """Wait until the webhook tasks are done and nothing is pending for this chat."""
        deadline = time.monotonic() + within
        while True:
            if not len(self.platforms.tasks):
                async with db.read_scope() as session:
                    pending = await session.scalar(
                        select(OutboxMessage.id)
                        .where(OutboxMessage.channel == channel, OutboxMessage.recipient_id == recipient, OutboxMessage.status == "pending")
                        .limit(1)
                    )
                if pending is None and not len(self.platforms.tasks):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"{channel} {recipient}: still busy after {within} s")
            await asyncio.sleep(0.02)


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["embedded", "redis-postgres"])
async def stack(request: pytest.FixtureRequest, project_nlu: NLUModel, trained_models_dir: Path) -> AsyncIterator[Stack]:  # noqa: F811
    """The app with both channels on, and fresh fakes of both platforms (per variant)."""
    stores = pytest.MonkeyPatch()
    database_url, redis_url = service_backend(request, with_redis=request.param != "embedded")
    if redis_url is None:
        # endpoints.yml reads REDIS_URL from the environment: embedded means memory stores.
        stores.setenv("TRACKER_STORE", "memory")
        stores.setenv("LOCK_STORE", "memory")
    db.configure(database_url)
    await empty_all_tables()
    await seed_demo()
    port = free_port()
    fake_telegram = await FakeTelegram(TG_TOKEN).start()
    fake_zalo = await FakeZalo(ZALO_APP_ID, ZALO_APP_SECRET, ZALO_ACCESS, ZALO_REFRESH).start()
    settings = channel_settings(database_url, redis_url, trained_models_dir, fake_telegram, fake_zalo, port)
    runtime = build_runtime(settings, model=project_nlu)
    stores.undo()
    if redis_url:
        await runtime.endpoints.redis.flushdb()
    try:
        async with TestClient(TestServer(create_app(settings, runtime), port=port)) as client:
            yield Stack(client, fake_telegram, fake_zalo, settings)
    finally:
        await fake_telegram.close()
        await fake_zalo.close()
        await db.dispose()


# -- Telegram ---------------------------------------------------------------------------------

_update_ids = itertools.count(10_000)
_message_ids = itertools.count(500)


class TelegramUser:
    """A private chat with the bot, as Telegram would deliver its updates."""

    def __init__(self, stack: Stack, chat_id: int, language_code: str = "vi") -> None:
        """`chat_id`: from `tg_chat(n)`."""
        self.stack = stack
        self.chat_id = chat_id
        self.user = {"id": chat_id, "is_bot": False, "first_name": "An", "language_code": language_code}
        self.chat = {"id": chat_id, "type": "private", "first_name": "An"}

    def message(self, **content: Any) -> dict[str, Any]:
        return {
            "update_id": next(_update_ids),
            "message": {"message_id": next(_message_ids), "date": int(time.time()), "chat": self.chat, "from": self.user, **content},
        }

    def text_update(self, text: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return self.message(**content)

    async def post(self, update: dict[str, Any] | bytes, secret: str | None = TG_SECRET) -> Any:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        if isinstance(update, bytes):
            return await self.stack.client.post("/webhooks/telegram", data=update, headers={**headers, "Content-Type": "application/json"})
        return await self.stack.client.post("/webhooks/telegram", json=update, headers=headers)

    async def deliver(self, update: dict[str, Any]) -> list[Call]:
        """Post an update, wait for the bot, return the messages it sent to this chat."""
        before = len(self.stack.telegram.sent(self.chat_id))
        response = await self.post(update)
        assert response.status == 200, await response.text()
        await self.stack.idle("telegram", str(self.chat_id))
        return self.stack.telegram.sent(self.chat_id)[before:]

    async def send(self, text: str) -> list[Call]:
        return await self.deliver(self.text_update(text))

    async def say(self, text: str) -> str:
        return "\n".join(c.text for c in await self.send(text))

    async def press(self, callback_data: str) -> list[Call]:
        update = {
            "update_id": next(_update_ids),
            "callback_query": {
                "id": f"cbq-{next(_message_ids)}",
                "from": self.user,
                "chat_instance": "ci-1",
                "data": callback_data,
                "message": {"message_id": next(_message_ids), "date": int(time.time()), "chat": self.chat, "text": "menu"},
            },
        }
        return await self.deliver(update)


# -- Zalo -------------------------------------------------------------------------------------

_msg_ids = itertools.count(1)


def zalo_signature(raw: bytes, timestamp: str, app_id: str = ZALO_APP_ID, secret: str = ZALO_OA_SECRET) -> str:
    return "mac=" + hashlib.sha256(app_id.encode() + raw + timestamp.encode() + secret.encode()).hexdigest()


class ZaloUser:
    """A Zalo user writing to the OA, as Zalo would deliver the events."""

    def __init__(self, stack: Stack, user_id: str) -> None:
        self.stack = stack
        self.user_id = user_id

    def event(self, event_name: str, message: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "app_id": ZALO_APP_ID,
            "user_id_by_app": f"app-{self.user_id}",
            "event_name": event_name,
            "timestamp": str(int(time.time() * 1000)),
            **extra,
        }
        if message is not None:
            body["sender"] = {"id": self.user_id}
            body["recipient"] = {"id": "oa-1"}
            body["message"] = {"msg_id": f"msg-{next(_msg_ids)}", **message}
        return body

    def text_event(self, text: str) -> dict[str, Any]:
        return self.event("user_send_text", {"text": text})

    async def post(self, event: dict[str, Any] | bytes, signature: str | None = "auto") -> Any:
        raw = event if isinstance(event, bytes) else json.dumps(event, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if signature == "auto":
            timestamp = json.loads(raw)["timestamp"] if not isinstance(event, bytes) else ""
            headers["X-ZEvent-Signature"] = zalo_signature(raw, str(timestamp))
        elif signature is not None:
            headers["X-ZEvent-Signature"] = signature
        return await self.stack.client.post("/webhooks/zalo", data=raw, headers=headers)

    async def deliver(self, event: dict[str, Any]) -> list[Sent]:
        before = len(self.stack.zalo.to(self.user_id))
        response = await self.post(event)
        assert response.status == 200, await response.text()
        await self.stack.idle("zalo", self.user_id)
        return self.stack.zalo.to(self.user_id)[before:]

    async def send(self, text: str) -> list[Sent]:
        return await self.deliver(self.text_event(text))

    async def say(self, text: str) -> str:
        return "\n".join(s.text for s in await self.send(text))
