"""Bad input at the REST edge: clear 4xx errors naming the field, polite replies, nothing lost."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from bot.app import RUNTIME
from tests.e2e.conftest import Chat

WEBHOOK = "/webhooks/rest/webhook"


async def stored_events(client: TestClient, sender: str) -> list[dict]:
    return await client.server.app[RUNTIME].agent.tracker_store.retrieve(sender)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"message": "hi"}', "sender"),
        (b'{"sender": "", "message": "hi"}', "sender"),
        (b'{"sender": "x", "message": 42}', "message"),
        (b'{"sender": "x"}', "message"),
        (b'{"sender": "x", "message": "hi", "metadata": "nope"}', "metadata"),
    ],
)
async def test_malformed_requests_get_400_naming_the_field(client: TestClient, body: bytes, field: str) -> None:
    response = await client.post(WEBHOOK, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["field"] == field
    assert await stored_events(client, "x") == []


async def test_too_long_message_is_refused_and_not_stored(client: TestClient) -> None:
    response = await client.post(WEBHOOK, json={"sender": "long", "message": "a" * 4097})
    assert response.status == 400
    assert (await response.json())["field"] == "message"
    assert await stored_events(client, "long") == []


async def test_huge_body_is_refused_with_413(client: TestClient) -> None:
    response = await client.post(WEBHOOK, data=b"x" * 200_000, headers={"Content-Type": "application/json"})
    assert response.status == 413


async def test_empty_message_gets_a_polite_reprompt(client: TestClient) -> None:
    replies = await Chat(client, "empty").send("   ")
    assert "chưa nhập" in replies[0]["text"]
    assert await stored_events(client, "empty") == []


@pytest.mark.parametrize(
    "text",
    ["😀😀😀", "'; DROP TABLE bills; --", "<script>alert(1)</script>", "Привет 你好 xin chào", "\u0000\u0007 hi", "\ud800"],
)
async def test_odd_messages_are_handled_like_any_other(client: TestClient, text: str) -> None:
    chat = Chat(client, "odd")
    response = await client.post(WEBHOOK, json={"sender": "odd", "message": text})
    assert response.status == 200
    replies = await response.json()
    assert replies and all(r["recipient_id"] == "odd" for r in replies)
    assert "Xin chào" in await chat.say("xin chào")  # the conversation still works afterwards


async def test_sql_looking_customer_code_is_just_a_wrong_shape(client: TestClient) -> None:
    chat = Chat(client, "sqli")
    await chat.say("tra cứu hóa đơn")
    answer = await chat.say("PE0400012345' OR '1'='1")
    assert "312" not in answer


async def test_model_parse_endpoint(client: TestClient) -> None:
    response = await client.post("/model/parse", json={"text": "tra cứu hóa đơn PE0400012345"})
    parsed = await response.json()
    assert parsed["intent"]["name"] == "lookup_bill"
    assert {"entity": "customer_code", "value": "PE0400012345"}.items() <= parsed["entities"][0].items()
    assert len(parsed["intent_ranking"]) <= 10
    bad = await client.post("/model/parse", json={"txt": 1})
    assert bad.status == 400


async def test_health(client: TestClient) -> None:
    response = await client.get("/health")
    assert response.status == 200 and (await response.json())["status"] == "ok"


async def test_unknown_route_is_json_404(client: TestClient) -> None:
    response = await client.get("/nope")
    assert response.status == 404 and "error" in await response.json()
