"""Garbage at every door: the REST channel, the Telegram and Zalo webhooks (signed as the
platforms sign) and VNPay's IPN get arbitrary and almost-valid input from hypothesis over real
HTTP. The answer is always a 4xx or a polite reply, never a 5xx or a hang; what reaches the
chats afterwards is never the "something went wrong" apology; an oversized body is refused
with 413 without the process's memory growing.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from backend import db
from backend.models import OutboxMessage
from backend.payments import vnpay
from bot.channels.middleware import ERROR_REPLY
from bot.channels.platforms import PLATFORMS
from tests.channels.conftest import ZALO_APP_ID, zalo_signature
from tests.hardening.conftest import SANDBOX_SECRET, LiveApp, auth_headers

TIMEOUT = 10  # seconds: an answer later than this is a hang
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=15,
)
# Text a customer might send, and text nobody should: control characters, lone surrogates,
# scripts, emoji, SQL, very long words.
texts = st.text(max_size=300) | st.sampled_from(
    ["", " ", "\x00\x01\x1b[31m", "\ud800", "'; DROP TABLE bills; --", "🙂" * 50, "x" * 5000, "PE0400012345 0912345678"]
)


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def wait_until_quiet(live: LiveApp, within: float = 30.0) -> None:
    """Until the webhook tasks have finished and the outbox worker has sent everything."""

    async def quiet() -> None:
        assert live.app is not None
        platforms = live.app[PLATFORMS]
        deadline = time.monotonic() + within
        while True:
            if not len(platforms.tasks):
                async with db.read_scope() as session:
                    pending = await session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending"))
                if not pending and not len(platforms.tasks):
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"still busy after {within} s")
            await asyncio.sleep(0.05)

    live.run(quiet(), timeout=within + 5)


# -- REST -----------------------------------------------------------------------------------------

rest_bodies = st.fixed_dictionaries(
    {"sender": st.text(max_size=140) | json_values, "message": texts | json_values},
    optional={"metadata": json_values, "message_id": json_values},
)


@FUZZ
@given(body=rest_bodies | json_values)
def test_rest_answers_any_json_with_replies_or_a_400(live: LiveApp, http: requests.Session, body: Any) -> None:
    response = http.post(f"{live.url}/webhooks/rest/webhook", data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert response.status_code in (200, 400), response.text
    answer = response.json()
    if response.status_code == 200:
        assert isinstance(answer, list) and all(isinstance(m.get("recipient_id"), str) for m in answer)
        assert ERROR_REPLY not in [m.get("text") for m in answer]
    else:
        assert isinstance(answer["error"], str) and answer["field"] in ("body", "sender", "message", "metadata")


@FUZZ
@given(raw=st.binary(max_size=3000))
def test_rest_answers_any_bytes_without_a_5xx(live: LiveApp, http: requests.Session, raw: bytes) -> None:
    response = http.post(f"{live.url}/webhooks/rest/webhook", data=raw, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert response.status_code in (200, 400)
    assert isinstance(response.json(), list | dict)


@FUZZ
@given(text=st.text(max_size=12_000))
def test_model_parse_answers_any_text(live: LiveApp, http: requests.Session, text: str) -> None:
    response = http.post(f"{live.url}/model/parse", json={"text": text}, timeout=TIMEOUT)
    if len(text) > 10_000 or len(json.dumps({"text": text})) > 64 * 1024:
        assert response.status_code in (400, 413)
    else:
        assert response.status_code == 200
        assert isinstance(response.json()["intent"]["name"], str)


# -- Telegram -------------------------------------------------------------------------------------

CHATS = range(7_100_000_001, 7_100_000_006)
telegram_chats = st.fixed_dictionaries(
    {"id": st.sampled_from(CHATS) | st.integers(), "type": st.sampled_from(["private", "group", "supergroup", "channel"]) | st.text(max_size=8)}
)
telegram_messages = st.fixed_dictionaries(
    {"message_id": st.integers(min_value=1, max_value=2**31), "date": st.integers(min_value=0, max_value=2**32), "chat": telegram_chats},
    optional={
        "text": texts,
        "from": st.fixed_dictionaries({"id": st.integers(min_value=1, max_value=2**40), "is_bot": st.booleans(), "first_name": st.text(max_size=20)}),
        "location": st.fixed_dictionaries({"latitude": st.floats(-200, 200), "longitude": st.floats(-200, 200)}),
        "sticker": json_values,
        "entities": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["bot_command", "url", "bold"]), "offset": st.integers(-5, 50), "length": st.integers(-5, 50)}), max_size=2),
    },
)
# Fresh ids for the well-formed updates: a repeated update_id is (rightly) dropped as a duplicate.
_ids = itertools.count(5_000_000)
fresh_ids = st.builds(lambda: next(_ids))
private_text_updates = st.fixed_dictionaries(
    {
        "update_id": fresh_ids,
        "message": st.fixed_dictionaries(
            {
                "message_id": fresh_ids,
                "date": st.just(int(time.time())),
                "chat": st.fixed_dictionaries({"id": st.sampled_from(CHATS), "type": st.just("private")}),
                "from": st.fixed_dictionaries({"id": st.sampled_from(CHATS), "is_bot": st.just(False), "first_name": st.text(max_size=20)}),
                "text": texts,
            }
        ),
    }
)
odd_updates = st.fixed_dictionaries(
    {"update_id": st.integers(min_value=0, max_value=2**31)},
    optional={
        "message": telegram_messages | json_values,
        "callback_query": st.fixed_dictionaries(
            {"id": st.text(max_size=10), "from": st.fixed_dictionaries({"id": st.sampled_from(CHATS), "is_bot": st.just(False), "first_name": st.just("An")}), "chat_instance": st.just("ci")},
            optional={"data": st.text(max_size=80), "message": telegram_messages},
        ),
        "edited_message": json_values,
    },
)


def test_telegram_webhook_takes_any_update_and_every_chat_gets_a_polite_answer(live: LiveApp, http: requests.Session) -> None:
    assert live.telegram is not None
    answered: list[int] = []

    @FUZZ
    @given(update=private_text_updates | private_text_updates | odd_updates | json_values)
    def post(update: Any) -> None:
        response = http.post(f"{live.url}/webhooks/telegram", data=json.dumps(update), headers={**auth_headers("/webhooks/telegram"), "Content-Type": "application/json"}, timeout=TIMEOUT)
        assert response.status_code in (200, 400), response.text
        message = update.get("message") if isinstance(update, dict) else None
        chat = message.get("chat", {}) if isinstance(message, dict) else {}
        if response.status_code == 200 and chat.get("type") == "private" and isinstance(message.get("text"), str) and message["text"].strip():
            answered.append(chat["id"])

    post()
    wait_until_quiet(live)
    sent = live.telegram.sent()
    assert not [c for c in sent if ERROR_REPLY in c.text], "a chat got the 'something went wrong' apology"
    for chat_id in set(answered) & set(CHATS):
        assert live.telegram.sent(chat_id), f"chat {chat_id} wrote and got no answer"


def test_telegram_webhook_refuses_a_wrong_secret(live: LiveApp, http: requests.Session) -> None:
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}, {"X-Telegram-Bot-Api-Secret-Token": ""}):
        response = http.post(f"{live.url}/webhooks/telegram", json={"update_id": 1}, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 401


# -- Zalo -----------------------------------------------------------------------------------------

ZALO_USERS = [f"84900000{n}" for n in range(5)]
zalo_text_events = st.fixed_dictionaries(
    {
        "app_id": st.just(ZALO_APP_ID),
        "event_name": st.just("user_send_text"),
        "timestamp": st.just(str(int(time.time() * 1000))),
        "sender": st.fixed_dictionaries({"id": st.sampled_from(ZALO_USERS)}),
        "recipient": st.just({"id": "oa-1"}),
        "message": st.fixed_dictionaries({"msg_id": fresh_ids.map(lambda n: f"fuzz-{n}"), "text": texts}),
    }
)
odd_zalo_events = st.fixed_dictionaries(
    {
        "app_id": st.just(ZALO_APP_ID),
        "event_name": st.sampled_from(["user_send_text", "user_send_location", "user_send_image", "user_send_sticker", "follow", "unfollow", "user_seen_message", "oa_send_text"])
        | st.text(max_size=20),
        "timestamp": st.integers(min_value=0, max_value=2**45).map(str) | st.integers(),
    },
    optional={
        "sender": st.fixed_dictionaries({"id": st.sampled_from(ZALO_USERS) | st.integers() | json_values}),
        "follower": st.fixed_dictionaries({"id": st.sampled_from(ZALO_USERS) | json_values}),
        "message": st.fixed_dictionaries(
            {"msg_id": st.text(min_size=1, max_size=20)},
            optional={"text": texts | json_values, "attachments": st.lists(json_values, max_size=3)},
        )
        | json_values,
        "user_id_by_app": st.text(max_size=20),
    },
)


def test_zalo_webhook_takes_any_signed_event_and_every_user_gets_a_polite_answer(live: LiveApp, http: requests.Session) -> None:
    assert live.zalo is not None
    answered: set[str] = set()

    @FUZZ
    @given(event=zalo_text_events | zalo_text_events | odd_zalo_events)
    def post(event: dict[str, Any]) -> None:
        raw = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", "X-ZEvent-Signature": zalo_signature(raw, str(event["timestamp"]))}
        response = http.post(f"{live.url}/webhooks/zalo", data=raw, headers=headers, timeout=TIMEOUT)
        assert response.status_code in (200, 400), response.text
        if event["event_name"] == "user_send_text" and isinstance(event.get("message"), dict) and str(event["message"].get("text", "")).strip():
            answered.add(str(event["sender"]["id"]))
        unsigned = http.post(f"{live.url}/webhooks/zalo", data=raw, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
        assert unsigned.status_code == 401

    post()
    wait_until_quiet(live)
    assert not [s for s in live.zalo.sent if ERROR_REPLY in s.text], "a user got the 'something went wrong' apology"
    for user in answered & set(ZALO_USERS):
        assert live.zalo.to(user), f"user {user} wrote and got no answer"


@FUZZ
@given(raw=st.binary(max_size=2000), signature=st.from_regex(r"(mac=)?[!-~]{0,80}", fullmatch=True))
def test_zalo_webhook_refuses_garbage_it_cannot_verify(live: LiveApp, http: requests.Session, raw: bytes, signature: str) -> None:
    headers = {"Content-Type": "application/json", "X-ZEvent-Signature": signature}
    response = http.post(f"{live.url}/webhooks/zalo", data=raw, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401


# -- VNPay IPN ------------------------------------------------------------------------------------

RSP_CODES = {"00", "01", "02", "04", "97", "99"}
vnp_params = st.dictionaries(
    st.sampled_from(["vnp_TxnRef", "vnp_Amount", "vnp_ResponseCode", "vnp_TransactionStatus", "vnp_TransactionNo", "vnp_PayDate", "vnp_TmnCode", "vnp_OrderInfo", "vnp_BankCode"])
    | st.text(max_size=15),
    st.text(max_size=60) | st.integers(min_value=-(10**15), max_value=10**15).map(str),
    max_size=12,
)


@FUZZ
@given(params=vnp_params, sign=st.booleans(), repeat=st.booleans())
def test_ipn_answers_any_query_in_vnpays_terms(live: LiveApp, http: requests.Session, params: dict[str, str], sign: bool, repeat: bool) -> None:
    if sign:
        params = vnpay.signed(params, SANDBOX_SECRET.encode())
    query = list(params.items()) + ([next(iter(params.items()))] if repeat and params else [])
    response = http.get(f"{live.url}/payments/vnpay/ipn", params=query, timeout=TIMEOUT)
    assert response.status_code == 200
    answer = response.json()
    assert answer["RspCode"] in RSP_CODES and isinstance(answer["Message"], str)
    if not sign or (repeat and params):
        assert answer["RspCode"] == "97"


@FUZZ
@given(params=vnp_params)
def test_payment_return_page_answers_any_query_with_a_page(live: LiveApp, http: requests.Session, params: dict[str, str]) -> None:
    response = http.get(f"{live.url}/payments/return", params=params, timeout=TIMEOUT)
    assert response.status_code in (200, 400)
    assert response.headers["Content-Type"].startswith("text/html")


# -- size and memory ------------------------------------------------------------------------------

BIG = b'{"sender": "big", "message": "' + b"a" * (1024 * 1024) + b'"}'
EDGES = ["/webhooks/rest/webhook", "/model/parse", "/webhooks/telegram", "/webhooks/zalo", "/api/outages/SCDEMO0001"]


def test_an_oversized_body_gets_413_everywhere(live: LiveApp, http: requests.Session) -> None:
    for path in EDGES:
        method = http.patch if path.startswith("/api/") else http.post
        response = method(f"{live.url}{path}", data=BIG, headers={**auth_headers(path), "Content-Type": "application/json"}, timeout=TIMEOUT)
        assert response.status_code == 413, path
        assert "error" in response.json()


def test_oversized_bodies_do_not_grow_memory(live: LiveApp, http: requests.Session) -> None:
    def flood(times: int) -> None:
        for n in range(times):
            path = EDGES[n % 2]  # the REST channel and /model/parse
            assert http.post(f"{live.url}{path}", data=BIG, headers={"Content-Type": "application/json"}, timeout=TIMEOUT).status_code == 413

    flood(20)  # warm-up: connection pools, caches, first-use allocations
    tracemalloc.start()
    try:
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        flood(150)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 150 MB went in; what stays behind must be noise (logs, counters), not the bodies.
    assert after - before < 512 * 1024, f"memory grew by {(after - before) // 1024} KB"
