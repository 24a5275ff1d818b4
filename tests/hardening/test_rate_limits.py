"""Inbound rate limits, as a client notices them: 429 with Retry-After for the REST channel and
per client address, other senders and addresses unaffected, X-Forwarded-For believed only from
trusted proxies, Telegram and Zalo chats throttled with a 200 and one polite notice, loopback
exempt by default, and one budget shared by every app instance on Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from backend import db
from backend.seed import seed_demo
from backend.settings import Settings
from bot.app import create_app
from bot.ratelimit import SLOW_DOWN_REPLY, MemoryLimiter, Rate, RedisLimiter
from bot.runtime import build_runtime
from nlu import NLUModel
from tests.channels.conftest import (
    TG_TOKEN,
    ZALO_ACCESS,
    ZALO_APP_ID,
    ZALO_APP_SECRET,
    ZALO_REFRESH,
    Stack,
    TelegramUser,
    ZaloUser,
    channel_settings,
    free_port,
    tg_chat,
    zalo_user,
)
from tests.conftest import PROJECT_DIR, REDIS_URL, empty_all_tables, needs_redis
from tests.e2e.conftest import STAFF_TOKEN, project_nlu  # noqa: F401 - the session fixture
from tests.fakes.telegram import FakeTelegram
from tests.fakes.zalo import FakeZalo

# Limits apply to loopback too in these tests (the default exempts it).
LIMITED = {"rate_limit_exempt": ""}


@pytest.fixture
async def seeded(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    db.configure(sqlite_url)
    await empty_all_tables()
    await seed_demo()
    monkeypatch.setenv("TRACKER_STORE", "memory")
    monkeypatch.setenv("LOCK_STORE", "memory")
    yield sqlite_url
    await db.dispose()


@contextlib.asynccontextmanager
async def serve(database_url: str, models: Path, nlu: NLUModel, **settings: Any) -> AsyncIterator[TestClient]:
    """The app on the embedded default (memory budgets) unless `redis_url` is given."""
    config = Settings(**{"database_url": database_url, "redis_url": None, "project_dir": PROJECT_DIR, "models_dir": models, "staff_api_token": STAFF_TOKEN, **settings})
    async with TestClient(TestServer(create_app(config, build_runtime(config, model=nlu)))) as client:
        yield client


async def say(client: TestClient, sender: str, text: str = "xin chào", **headers: str) -> Any:
    return await client.post("/webhooks/rest/webhook", json={"sender": sender, "message": text}, headers=headers)


# -- the REST channel ---------------------------------------------------------------------------


async def test_a_sender_over_its_limit_gets_429_with_retry_after_and_others_do_not(
    seeded: str, trained_models_dir: Path, project_nlu: NLUModel  # noqa: F811
) -> None:
    async with serve(seeded, trained_models_dir, project_nlu, rate_limit_per_sender="3/min", **LIMITED) as client:
        for _ in range(3):
            assert (await say(client, "an")).status == 200
        refused = await say(client, "an")
        assert refused.status == 429
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 20  # one message every 20 s at 3/min
        body = await refused.json()
        assert body["retry_after"] == retry_after and "too many requests" in body["error"]
        # Another customer is not held up by An.
        assert (await say(client, "binh")).status == 200


async def test_a_sender_may_write_again_after_retry_after(seeded: str, trained_models_dir: Path, project_nlu: NLUModel) -> None:  # noqa: F811
    async with serve(seeded, trained_models_dir, project_nlu, rate_limit_per_sender="2/s", **LIMITED) as client:
        # At once, so the budget is spent before it refills (the check comes before the turn).
        answers = await asyncio.gather(*(say(client, "an") for _ in range(6)))
        refused = [a for a in answers if a.status == 429]
        assert refused and len(refused) <= 4
        await asyncio.sleep(max(int(a.headers["Retry-After"]) for a in refused))
        assert (await say(client, "an")).status == 200


async def test_loopback_is_exempt_by_default(seeded: str, trained_models_dir: Path, project_nlu: NLUModel) -> None:  # noqa: F811
    """Benchmarks and health checks on the same host are not limited (README: rate limits)."""
    async with serve(seeded, trained_models_dir, project_nlu, rate_limit_per_sender="2/min", rate_limit_per_ip="2/min") as client:
        for _ in range(5):
            assert (await say(client, "an")).status == 200


# -- per client address ---------------------------------------------------------------------------


async def outbox(client: TestClient, forwarded_for: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    response = await client.get("/webhooks/rest/outbox", params={"sender": "nobody"}, headers=headers)
    return response.status


async def test_per_address_limit_uses_forwarded_for_from_a_trusted_proxy(seeded: str, trained_models_dir: Path, project_nlu: NLUModel) -> None:  # noqa: F811
    # The test client connects from 127.0.0.1, a trusted proxy by default.
    async with serve(seeded, trained_models_dir, project_nlu, rate_limit_per_ip="4/min", **LIMITED) as client:
        assert [await outbox(client, "203.0.113.7") for _ in range(5)] == [200, 200, 200, 200, 429]
        # A client cannot escape by prepending made-up hops: the proxy's own entry is the last one.
        assert await outbox(client, "198.51.100.1, 203.0.113.7") == 429
        # Someone else behind the same proxy is not affected.
        assert await outbox(client, "203.0.113.8") == 200
        # IPv6 clients are counted per /64.
        assert [await outbox(client, f"2001:db8:1:2::{n}") for n in range(1, 6)] == [200, 200, 200, 200, 429]
        assert await outbox(client, "2001:db8:1:3::1") == 200
        # Health probes and the platforms' callbacks are not limited per address.
        for _ in range(6):
            assert (await client.get("/health", headers={"X-Forwarded-For": "203.0.113.7"})).status == 200
            ipn = await client.get("/payments/vnpay/ipn", headers={"X-Forwarded-For": "203.0.113.7"})
            assert ipn.status == 200


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(seeded: str, trained_models_dir: Path, project_nlu: NLUModel) -> None:  # noqa: F811
    async with serve(seeded, trained_models_dir, project_nlu, rate_limit_per_ip="3/min", trusted_proxies="", **LIMITED) as client:
        # Every request counts against the peer (127.0.0.1), whatever it claims to forward for.
        assert [await outbox(client, f"203.0.113.{n}") for n in range(4)] == [200, 200, 200, 429]
        refused = await client.get("/webhooks/rest/outbox", params={"sender": "x"})
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1


def test_bad_limit_settings_stop_startup_naming_the_variable() -> None:
    for field, value, variable in (
        ("rate_limit_per_sender", "fast", "RATE_LIMIT_PER_SENDER"),
        ("rate_limit_per_ip", "10/fortnight", "RATE_LIMIT_PER_IP"),
        ("trusted_proxies", "10.0.0.0/8, proxy.local", "TRUSTED_PROXIES"),
        ("rate_limit_exempt", "::1, 300.1.1.1", "RATE_LIMIT_EXEMPT"),
    ):
        with pytest.raises(ValueError, match=variable):
            create_app(Settings(project_dir=PROJECT_DIR, **{field: value}))


def test_rates_read_like_the_readme_says() -> None:
    assert Rate.parse("20/min", "X") == Rate(20, 60)
    assert Rate.parse(" 5 / s ", "X") == Rate(5, 1)
    assert Rate.parse("1000/hour", "X") == Rate(1000, 3600)
    assert Rate.parse("off", "X") is None and Rate.parse("0", "X") is None


# -- the budget itself ----------------------------------------------------------------------------


async def test_the_budget_is_a_burst_then_a_steady_rate() -> None:
    now = [1000.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    rate = Rate(3, 60)  # a burst of 3, then one every 20 s
    assert [(await limiter.hit("k", rate)).allowed for _ in range(4)] == [True, True, True, False]
    refused = await limiter.hit("k", rate)
    assert refused.retry_after == pytest.approx(20)
    now[0] += 20
    assert (await limiter.hit("k", rate)).allowed
    assert not (await limiter.hit("k", rate)).allowed
    now[0] += 60  # a quiet minute refills the whole burst
    assert [(await limiter.hit("k", rate)).allowed for _ in range(4)] == [True, True, True, False]


async def test_the_memory_budget_is_bounded() -> None:
    limiter = MemoryLimiter(max_keys=100)
    for n in range(1000):
        await limiter.hit(f"sender-{n}", Rate(5, 60))
    assert len(limiter) <= 100


async def test_an_unreachable_redis_lets_requests_through() -> None:
    port = free_port()  # nothing listens there
    limiter = RedisLimiter(Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1), owned=True)
    started = time.monotonic()
    assert all([(await limiter.hit("k", Rate(1, 60))).allowed for _ in range(3)])
    assert time.monotonic() - started < 5
    await limiter.close()


# -- shared across workers ----------------------------------------------------------------------


@needs_redis
async def test_instances_on_redis_share_one_budget(seeded: str, trained_models_dir: Path, project_nlu: NLUModel) -> None:  # noqa: F811
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    limits = {"redis_url": REDIS_URL, "rate_limit_per_sender": "3/min", "rate_limit_per_ip": "5/min", **LIMITED}
    async with (
        serve(seeded, trained_models_dir, project_nlu, **limits) as first,
        serve(seeded, trained_models_dir, project_nlu, **limits) as second,
    ):
        assert (await say(first, "an")).status == 200
        assert (await say(second, "an")).status == 200
        assert (await say(first, "an")).status == 200
        refused = await say(second, "an")
        assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
        assert (await say(second, "binh")).status == 200
        # The per-address budget is shared too (X-Forwarded-For from the trusted loopback proxy).
        statuses = [await outbox(client, "203.0.113.9") for client in (first, second, first, second, first, second)]
        assert statuses == [200, 200, 200, 200, 200, 429]


# -- Telegram and Zalo ----------------------------------------------------------------------------


@pytest.fixture
async def platform_stack(seeded: str, trained_models_dir: Path, project_nlu: NLUModel) -> AsyncIterator[Stack]:  # noqa: F811
    """Both channels on, each chat limited to 2 messages a minute, loopback not exempt."""
    telegram = await FakeTelegram(TG_TOKEN).start()
    zalo = await FakeZalo(ZALO_APP_ID, ZALO_APP_SECRET, ZALO_ACCESS, ZALO_REFRESH).start()
    port = free_port()
    settings = channel_settings(seeded, None, trained_models_dir, telegram, zalo, port, rate_limit_per_sender="2/min", rate_limit_per_ip="1/min", **LIMITED)
    try:
        async with TestClient(TestServer(create_app(settings, build_runtime(settings, model=project_nlu)), port=port)) as client:
            yield Stack(client, telegram, zalo, settings)
    finally:
        await telegram.close()
        await zalo.close()


async def test_a_telegram_chat_over_its_limit_is_told_once_and_the_platform_gets_200(platform_stack: Stack) -> None:
    flooding, other = TelegramUser(platform_stack, tg_chat(1)), TelegramUser(platform_stack, tg_chat(2))
    answers = []
    for n in range(5):  # per address the limit is 1/min: the platform's address must not count
        response = await flooding.post(flooding.text_update(f"xin chào {n}"))
        assert response.status == 200
        answers.append(await response.json())
    assert [a.get("throttled", False) for a in answers] == [False, False, True, True, True]
    await platform_stack.idle("telegram", str(flooding.chat_id))
    notices = [c for c in platform_stack.telegram.sent(flooding.chat_id) if c.text == SLOW_DOWN_REPLY]
    assert len(notices) == 1
    assert "Xin chào" in await other.say("xin chào")


async def test_a_zalo_user_over_its_limit_is_told_once(platform_stack: Stack) -> None:
    user = ZaloUser(platform_stack, zalo_user(1))
    answers = []
    for n in range(4):
        response = await user.post(user.text_event(f"xin chào {n}"))
        assert response.status == 200
        answers.append(await response.json())
    assert [a.get("throttled", False) for a in answers] == [False, False, True, True]
    await platform_stack.idle("zalo", user.user_id)
    assert [s.text for s in platform_stack.zalo.to(user.user_id)].count(SLOW_DOWN_REPLY) == 1
