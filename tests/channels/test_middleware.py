"""The shared channel pieces on their own: text splitting, rate limits, the dedupe store,
places, Zalo's MAC, configuration from settings and credentials.yml, and channels that are off."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from backend.settings import Settings
from bot.channels.middleware import (
    MemoryKeyValueStore,
    RateLimiter,
    RedisKeyValueStore,
    is_public_https,
    split_text,
    utf16_len,
)
from bot.channels.places import coordinates, location_text, nearest_ward
from bot.channels.platforms import read_credentials, register_platform_channels
from bot.channels.telegram import ButtonPayloads, TelegramConfig
from bot.channels.zalo import ZaloConfig, ZaloSender, signature
from bot.config_files import ConfigFileError
from tests.conftest import PROJECT_DIR, REDIS_URL, needs_redis

# -- splitting ----------------------------------------------------------------------------------


def test_split_keeps_words_whole_and_loses_nothing() -> None:
    rng = random.Random(7)
    words = ["điện", "hóa", "đơn", "kWh\n", "🙂", "\n\n", "Nguyễn", "x" * 25]
    for _ in range(500):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 300)))
        limit = rng.randint(30, 200)
        parts = split_text(text, limit, utf16_len)
        assert all(utf16_len(p) <= limit for p in parts)
        assert [w for p in parts for w in p.split()] == text.split()


def test_split_prefers_paragraphs_and_cuts_overlong_words() -> None:
    text = "a" * 30 + "\n\n" + "b " * 20
    assert split_text(text, 40)[0] == "a" * 30
    assert split_text("x" * 10, 4) == ["xxxx", "xxxx", "xx"]
    assert split_text("ngắn", 4096) == ["ngắn"]
    assert utf16_len("🙂") == 2  # Telegram counts UTF-16 code units


# -- rate limits ------------------------------------------------------------------------------


async def test_per_chat_limit_allows_a_burst_then_spaces_messages() -> None:
    limiter = RateLimiter(per_second=0, per_chat_per_second=20, burst=3)
    started = time.monotonic()
    for _ in range(3):
        await limiter.wait("chat")
    assert time.monotonic() - started < 0.03  # the burst
    for _ in range(4):
        await limiter.wait("chat")
    assert time.monotonic() - started >= 0.18  # then 20/s
    other = time.monotonic()
    await limiter.wait("another chat")  # chats do not wait for each other
    assert time.monotonic() - other < 0.03


async def test_global_limit_covers_all_chats_without_bursting() -> None:
    limiter = RateLimiter(per_second=100, per_chat_per_second=0)
    stamps: list[float] = []

    async def send(n: int) -> None:
        await limiter.wait(f"chat-{n}")
        stamps.append(time.monotonic())

    await asyncio.gather(*(send(n) for n in range(31)))
    assert stamps[-1] - stamps[0] >= 0.29  # 31 messages at 100/s, whatever the chats
    assert max(sum(1 for t in stamps if start <= t < start + 0.1) for start in stamps) <= 11


async def test_two_workers_sharing_a_budget_never_exceed_it_in_any_second() -> None:
    """Two workers at 10/s each (a platform allowing 20/s) on a busy event loop that wakes
    waiters late: no one-second window holds more than 20 messages."""
    limiters = [RateLimiter(per_second=10, per_chat_per_second=0) for _ in range(2)]
    stamps: list[float] = []
    rng = random.Random(3)

    async def send(limiter: RateLimiter, n: int) -> None:
        await limiter.wait(f"chat-{n}")
        stamps.append(time.monotonic())
        time.sleep(rng.uniform(0, 0.012))  # noqa: ASYNC251 - the busy loop is the point

    await asyncio.gather(*(send(limiters[n % 2], n) for n in range(50)))
    stamps.sort()
    assert max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps) <= 20
    assert stamps[-1] - stamps[0] < 3.0  # and the budget is used: 50 messages at 20/s


async def test_global_limit_serves_waiters_in_arrival_order() -> None:
    """With a backlog, no message waits behind ones that came after it (a racing limiter let
    unlucky messages wait for minutes, past their outbox lease)."""
    limiter = RateLimiter(per_second=50, per_chat_per_second=0)
    order: list[int] = []

    async def send(n: int) -> None:
        await limiter.wait(f"chat-{n}")
        order.append(n)

    tasks = []
    for n in range(30):
        tasks.append(asyncio.create_task(send(n)))
        await asyncio.sleep(0)  # each queues before the next arrives
    await asyncio.gather(*tasks)
    assert order == list(range(30))


# -- dedupe / shared store ------------------------------------------------------------------


async def test_memory_store_remembers_keys_for_their_ttl() -> None:
    store = MemoryKeyValueStore()
    assert await store.add("seen:1", ttl=60) and not await store.add("seen:1", ttl=60)
    assert await store.add("short", ttl=0)  # expires at once
    assert await store.add("short", ttl=60)
    await store.put("k", "v", ttl=60)
    assert await store.get("k") == "v" and await store.get("missing") is None


async def test_memory_store_stays_bounded() -> None:
    store = MemoryKeyValueStore(max_keys=10)
    for n in range(25):
        await store.add(f"k{n}", ttl=60)
    assert len(store._data) <= 10 and await store.add("k24", ttl=60) is False


@needs_redis
async def test_redis_store_is_shared_between_workers() -> None:
    first, second = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    key = f"seen:test:{random.random()}"
    try:
        assert await RedisKeyValueStore(first).add(key, ttl=60)
        assert not await RedisKeyValueStore(second).add(key, ttl=60)
        assert 0 < await first.ttl("channels:" + key) <= 60
    finally:
        await first.delete("channels:" + key)
        await first.aclose()
        await second.aclose()


async def test_long_button_payloads_are_kept_under_a_short_key() -> None:
    store = MemoryKeyValueStore()
    payloads = ButtonPayloads(lambda: store)
    short = '/lookup_bill{"customer_code": "PE0400012345"}'
    assert await payloads.encode(short) == short
    long = '/create_service_request{"service_type": "usage_purpose_change", "x": 1}'
    key = await payloads.encode(long)
    assert len(key.encode()) <= 64 and await payloads.decode(key) == long
    assert await payloads.decode("~unknown") is None  # expired: the press is answered, not guessed


# -- places -----------------------------------------------------------------------------------


def test_a_location_becomes_the_nearest_demo_ward() -> None:
    ben_thanh = nearest_ward(10.7721, 106.6983)
    assert ben_thanh is not None and ben_thanh.ward == "Phường Bến Thành"
    assert location_text(10.7721, 106.6983) == '/report_outage{"location": "Phường Bến Thành, Quận 1"}'
    assert location_text(16.0544, 108.2022) == "/report_outage"  # Đà Nẵng: not a demo ward
    assert coordinates("10.5", 106) == (10.5, 106.0)
    assert coordinates("north", 1) is None and coordinates(91, 0) is None and coordinates(float("nan"), 0) is None


# -- Zalo -------------------------------------------------------------------------------------


def test_zalo_mac_is_sha256_of_app_id_body_timestamp_secret() -> None:
    body = b'{"event_name":"user_send_text","timestamp":"1700000000000"}'
    expected = hashlib.sha256(b"123" + body + b"1700000000000" + b"secret").hexdigest()
    assert signature("123", body, "1700000000000", "secret") == expected


def test_zalo_buttons() -> None:
    buttons = ZaloSender.buttons(
        [
            {"title": "Tra cứu", "payload": "/lookup_bill"},
            {"title": "Trả tiền", "payload": "https://pay.example.vn/x"},
            {"title": "Trang nội bộ", "payload": "http://127.0.0.1:5005/payments/sandbox/x"},
            {"title": "", "payload": "/x"},
        ]
    )
    assert buttons == [
        {"title": "Tra cứu", "type": "oa.query.hide", "payload": "/lookup_bill"},
        {"title": "Trả tiền", "type": "oa.open.url", "payload": {"url": "https://pay.example.vn/x"}},
    ]


def test_public_https() -> None:
    assert is_public_https("https://cskh.example.vn/charts/a.png")
    assert not is_public_https("http://cskh.example.vn/a.png")
    assert not is_public_https("https://127.0.0.1/a.png") and not is_public_https("https://localhost/a")


# -- configuration ------------------------------------------------------------------------------


def test_credentials_yml_is_read_with_environment_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "from-env-via-credentials")
    monkeypatch.setenv("ZALO_APP_ID", "42")
    monkeypatch.setenv("ZALO_OA_SECRET_KEY", "oa")
    monkeypatch.setenv("ZALO_REFRESH_TOKEN", "rt")
    settings = Settings(_env_file=None, project_dir=PROJECT_DIR)
    credentials = read_credentials(settings)
    telegram = TelegramConfig.from_settings(settings, credentials["telegram"])
    assert telegram.token == "from-env-via-credentials" and telegram.base_url == "https://api.telegram.org/bot"
    assert telegram.base_file_url == "https://api.telegram.org/file/bot"
    zalo = ZaloConfig.from_settings(settings, credentials["zalo"])
    assert zalo.enabled and zalo.app_id == "42" and zalo.api_base_url == "https://openapi.zalo.me"


def test_settings_win_over_credentials_yml(tmp_path: Path) -> None:
    (tmp_path / "credentials.yml").write_text("telegram:\n  access_token: from-file\n  base_url: http://file.example/bot\n")
    settings = Settings(_env_file=None, project_dir=tmp_path, telegram_bot_token="from-settings")
    config = TelegramConfig.from_settings(settings, read_credentials(settings)["telegram"])
    assert config.token == "from-settings" and config.base_url == "http://file.example/bot"
    assert "from-settings" not in repr(config)


def test_zalo_on_without_what_verifies_webhooks_stops_startup(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, project_dir=tmp_path, zalo_access_token="at", zalo_app_id="1")
    with pytest.raises(ConfigFileError, match="zalo.oa_secret_key: ZALO_OA_SECRET_KEY"):
        ZaloConfig.from_settings(settings, {})


def test_bad_telegram_secret_is_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="TELEGRAM_WEBHOOK_SECRET"):
        Settings(_env_file=None, telegram_webhook_secret="has spaces!")


# -- channels that are off ---------------------------------------------------------------------


async def test_channels_without_a_token_answer_404(tmp_path: Path) -> None:
    app = web.Application()
    platforms = register_platform_channels(app, Settings(_env_file=None, project_dir=tmp_path), lambda: None)  # type: ignore[arg-type, return-value]
    async with TestClient(TestServer(app)) as client:
        for path in ("/webhooks/telegram", "/webhooks/zalo"):
            response = await client.post(path, json={"update_id": 1}, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
            assert response.status == 404 and "not configured" in (await response.json())["error"]
        assert platforms.worker is None  # no platform on: no outbox worker either
