"""Many customers at once: no message lost, every conversation's events in the order sent."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from bot.app import RUNTIME
from tests.e2e.conftest import Chat

CUSTOMERS = 50
MESSAGES = 20
SCRIPT = ["xin chào", "tra cứu hóa đơn", "PE0400012345", "0912345678", "tiền điện tháng trước", "cảm ơn", "help"]


async def _customer(client: TestClient, index: int) -> None:
    chat = Chat(client, f"load-{index}")
    for turn in range(MESSAGES):
        replies = await chat.send(f"{SCRIPT[turn % len(SCRIPT)]} #{turn}" if turn % len(SCRIPT) in (0, 5, 6) else SCRIPT[turn % len(SCRIPT)])
        assert replies, f"customer {index} got no reply to turn {turn}"


async def test_fifty_concurrent_customers_lose_nothing_and_keep_order(client: TestClient) -> None:
    await asyncio.gather(*(_customer(client, i) for i in range(CUSTOMERS)))
    store = client.server.app[RUNTIME].agent.tracker_store
    for index in range(CUSTOMERS):
        events = await store.retrieve(f"load-{index}")
        texts = [e["text"] for e in events if e["event"] == "user"]
        expected = [
            f"{SCRIPT[t % len(SCRIPT)]} #{t}" if t % len(SCRIPT) in (0, 5, 6) else SCRIPT[t % len(SCRIPT)] for t in range(MESSAGES)
        ]
        assert texts == expected
        bot_turns = sum(1 for e in events if e["event"] == "bot")
        assert bot_turns >= MESSAGES


async def test_messages_of_one_conversation_sent_together_are_processed_one_at_a_time(client: TestClient) -> None:
    texts = [f"xin chào {i}" for i in range(10)]
    results = await asyncio.gather(*(Chat(client, "burst").send(t) for t in texts))
    assert all(results)
    events = await client.server.app[RUNTIME].agent.tracker_store.retrieve("burst")
    users = [i for i, e in enumerate(events) if e["event"] == "user"]
    assert len(users) == 10
    # Each turn is complete (ends with action_listen) before the next user event starts.
    for start, end in zip(users, users[1:] + [len(events)], strict=True):
        turn = events[start:end]
        assert turn[-1]["event"] == "action" and turn[-1]["name"] == "action_listen"
