"""Every outbound call gives up in bounded time: against a platform that accepts the connection
and then never answers, the Telegram and Zalo senders, Zalo's token refresh and the action
server client fail within their timeout with the error the caller retries on, instead of
holding the outbox worker or a customer's turn forever."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from telegram import Bot

from backend import db
from bot.action_runner import ActionError, HttpActionRunner
from bot.channels.middleware import MemoryKeyValueStore, RateLimiter, RetryLater, TaskSet
from bot.channels.telegram import AiohttpRequest, ButtonPayloads, TelegramSender
from bot.channels.zalo import ZaloChannel, ZaloConfig, ZaloSender, ZaloTokens
from tests.conftest import empty_all_tables

BOUND = 0.5  # the timeout the clients are given here, in seconds
SLACK = 3.0  # how much later than that the failure may arrive on a busy machine


class HungServer:
    """Accepts connections, reads what is sent, never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> HungServer:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while await reader.read(65536):
            pass

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def hung() -> AsyncIterator[HungServer]:
    server = await HungServer().start()
    yield server
    await server.close()


@pytest.fixture
async def database(sqlite_url: str) -> AsyncIterator[None]:
    """Zalo keeps its tokens in the database."""
    db.configure(sqlite_url)
    await empty_all_tables()
    yield
    await db.dispose()


async def fails_in_time(call: object, expected: type[BaseException]) -> BaseException:
    started = time.monotonic()
    with pytest.raises(expected) as caught:
        await asyncio.wait_for(call, BOUND + SLACK + 5)  # type: ignore[arg-type]
    assert time.monotonic() - started < BOUND + SLACK
    return caught.value


async def test_telegram_send_gives_up_on_a_hung_bot_api(hung: HungServer) -> None:
    request = AiohttpRequest(connect_timeout=BOUND, read_timeout=BOUND, write_timeout=BOUND, pool_timeout=BOUND)
    bot = Bot("7000001:TEST_token", base_url=f"{hung.url}/bot", request=request)
    sender = TelegramSender(bot, RateLimiter(0, 0), ButtonPayloads(lambda: MemoryKeyValueStore()))
    try:
        error = await fails_in_time(sender.send("42", {"text": "Xin chào"}), RetryLater)
    finally:
        await request.shutdown()
    assert "timed out" in str(error)
    assert hung.connections >= 1


async def test_zalo_send_and_token_refresh_give_up_on_a_hung_api(hung: HungServer, database: None) -> None:
    config = ZaloConfig("app", "secret", "oa-secret", "at-1", "rt-1", hung.url, hung.url)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BOUND)) as http:
        tokens = ZaloTokens(config, http, owner="test")
        await tokens.seed()
        sender = ZaloSender(config, tokens, http, RateLimiter(0, 0))
        error = await fails_in_time(sender.send("8490001", {"text": "Xin chào"}), RetryLater)
        assert "Timeout" in str(error)
        error = await fails_in_time(tokens.refresh(await tokens.get()), RetryLater)
        assert "Timeout" in str(error)


async def test_the_zalo_channel_bounds_every_call(database: None) -> None:
    """The session the channel makes for its sender and token refreshes has a total timeout."""
    config = ZaloConfig("app", "secret", "oa-secret", "at-1", "rt-1", "http://127.0.0.1:9", "http://127.0.0.1:9")
    channel = ZaloChannel(config, store=MemoryKeyValueStore, tasks=TaskSet(), dedupe_ttl=60)
    await channel.start(owner="test")
    try:
        assert channel.http is not None
        assert channel.http.timeout.total is not None and channel.http.timeout.total <= 30
    finally:
        await channel.stop()


async def test_action_server_call_gives_up_on_a_hung_server(hung: HungServer) -> None:
    runner = HttpActionRunner(f"{hung.url}/webhook", timeout=BOUND)
    try:
        error = await fails_in_time(runner.run("action_lookup_bill", {"sender_id": "an", "events": []}, {}), ActionError)
    finally:
        await runner.close()
    assert "unreachable" in str(error)
