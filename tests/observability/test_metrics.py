"""GET /metrics: what a Prometheus server scraping one worker sees after customers talk to it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from backend.services import handoff, notifications
from bot.channels.middleware import MemoryKeyValueStore, RateLimiter
from bot.channels.telegram import (
    ButtonPayloads,
    TelegramConfig,
    TelegramSender,
    build_application,
    close_application,
)
from bot.outbox_worker import OutboxWorker
from tests.channels.conftest import TG_TOKEN
from tests.conftest import PROJECT_DIR
from tests.e2e.conftest import Chat
from tests.fakes.telegram import FakeTelegram
from tests.observability.conftest import scrape, value


async def test_turns_intents_fallback_and_the_model_are_counted(client: TestClient) -> None:
    before = await scrape(client)
    chat = Chat(client, "metrics-1")
    await chat.say("xin chào")
    await chat.say("/lookup_bill")  # a button: an intent, but no classifier confidence
    await chat.say("qwzx plorf vbnm")  # nonsense: below the confidence threshold
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("bot_turn_seconds_count", channel="rest") == 3
    assert delta("bot_turn_seconds_sum", channel="rest") > 0
    assert delta("bot_turn_seconds_bucket", channel="rest", le="+Inf") == 3
    assert delta("bot_intent_total", intent="greet") == 1
    assert delta("bot_intent_total", intent="lookup_bill") == 1
    assert delta("bot_intent_total", intent="nlu_fallback") == 1
    assert delta("bot_nlu_fallback_total") == 1
    assert delta("bot_nlu_confidence_count") == 2  # the button press is not a classification
    assert delta("bot_http_requests_total", method="POST", route="/webhooks/rest/webhook", status="200") == 3
    serving = (await (await client.get("/health")).json())["model"]
    assert value(after, "bot_model_info", version=serving) == 1
    assert [labels for (name, labels) in after if name == "bot_model_info"] == [frozenset({("version", serving)})]


async def test_requests_are_counted_by_route_pattern_and_carry_a_request_id(client: TestClient) -> None:
    before = await scrape(client)
    response = await client.get("/console/h/12345")
    assert response.headers["X-Request-ID"]
    await client.get("/no/such/page")
    traced = await client.get("/health", headers={"X-Request-ID": "lb-7f3a"})
    assert traced.headers["X-Request-ID"] == "lb-7f3a"  # the proxy's id is kept
    after = await scrape(client)
    routes = {dict(labels).get("route") for (name, labels) in after if name == "bot_http_requests_total"}
    assert "/console/h/{id}" in routes and "/console/h/12345" not in routes  # bounded cardinality
    assert value(after, "bot_http_requests_total", method="GET", route="unmatched", status="404") == (
        value(before, "bot_http_requests_total", method="GET", route="unmatched", status="404") + 1
    )


async def test_the_metrics_token_is_required_when_set(make_client) -> None:
    client = await make_client(metrics_token="scrape-secret")
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    samples = await scrape(client, Authorization="Bearer scrape-secret")
    assert value(samples, "bot_handoff_queue_length") == 0


async def test_the_handoff_queue_and_the_wait_until_claimed(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan")
    before = await scrape(client)
    await Chat(client, "metrics-queue").say("/talk_to_human")
    queued = await scrape(client)
    assert value(queued, "bot_handoff_queue_length") == value(before, "bot_handoff_queue_length") + 1

    info = await handoff.open_handoff("metrics-queue")
    assert info is not None
    await asyncio.sleep(0.05)
    assert (await lan.post(f"/console/h/{info.id}/claim"))[0] == 200
    after = await scrape(client)
    assert value(after, "bot_handoff_queue_length") == value(before, "bot_handoff_queue_length")
    assert value(after, "bot_handoff_wait_seconds_count") == value(before, "bot_handoff_wait_seconds_count") + 1
    waited = value(after, "bot_handoff_wait_seconds_sum") - value(before, "bot_handoff_wait_seconds_sum")
    assert 0.05 <= waited < 60
    assert value(after, "bot_http_requests_total", method="POST", route="/console/h/{id}/claim", status="200") >= 1


@pytest.fixture
async def telegram_sender() -> AsyncIterator[tuple[FakeTelegram, TelegramSender]]:
    fake = await FakeTelegram(TG_TOKEN).start()
    application = build_application(TelegramConfig(TG_TOKEN, None, fake.base_url))
    store = MemoryKeyValueStore()
    yield fake, TelegramSender(application.bot, RateLimiter(0, 0), ButtonPayloads(lambda: store))
    await close_application(application)
    await fake.close()


async def test_outbox_backlog_and_failed_sends(client: TestClient, telegram_sender: tuple[FakeTelegram, TelegramSender]) -> None:
    fake, sender = telegram_sender
    before = await scrape(client)
    assert ("bot_outbox_backlog", frozenset({("channel", "telegram")})) in before  # 0 is reported, not missing
    await notifications.enqueue_messages("telegram", "7001", [{"text": "một"}, {"text": "hai"}])
    queued = await scrape(client)
    assert value(queued, "bot_outbox_backlog", channel="telegram") == value(before, "bot_outbox_backlog", channel="telegram") + 2

    fake.fail("sendMessage", 403, description="Forbidden: bot was blocked by the user")  # once
    worker = OutboxWorker([sender], lambda item: [item.payload["message"]], worker_id="metrics-test")
    assert await worker.run_once() == 2
    after = await scrape(client)
    assert value(after, "bot_outbox_backlog", channel="telegram") == value(before, "bot_outbox_backlog", channel="telegram")
    failed = value(after, "bot_outbox_failures_total", channel="telegram", outcome="failed")
    assert failed == value(before, "bot_outbox_failures_total", channel="telegram", outcome="failed") + 1  # "hai" went out


# Two worker processes, one turn each (forked from one parent here: one import instead of two).
_WORKERS = """
import os
from bot.metrics import TurnScope, observe_parse
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        with TurnScope("c", "telegram"):
            observe_parse({"intent": {"name": "greet", "confidence": 0.9}, "intent_ranking": [{}, {}]}, "chào")
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
"""


async def test_several_processes_add_up_with_prometheus_multiproc_dir(
    make_client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes count into PROMETHEUS_MULTIPROC_DIR; whichever answers the scrape
    reports them all."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = await asyncio.create_subprocess_exec(sys.executable, "-c", _WORKERS, cwd=PROJECT_DIR, env=env)
    assert await workers.wait() == 0
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    client = await make_client()
    samples = await scrape(client)
    assert value(samples, "bot_turn_seconds_count", channel="telegram") == 2
    assert value(samples, "bot_intent_total", intent="greet") == 2
    assert value(samples, "bot_model_info", version=(await (await client.get("/health")).json())["model"]) == 1
