"""Telegram end to end: webhook -> PTB Application -> agent -> outbox -> worker -> fake Bot API."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from backend import db
from backend.clock import utcnow
from backend.models import InboundUpdate, OutboxMessage
from backend.services import inbound, notifications
from backend.settings import get_settings
from bot.app import RUNTIME
from bot.channels import telegram
from bot.channels.middleware import TEXT_ONLY_REPLY
from tests.channels.conftest import CHANNEL_LOOP, TG_SECRET, TG_TOKEN, Stack, TelegramUser, tg_chat
from tests.e2e.conftest import STAFF_TOKEN

pytestmark = CHANNEL_LOOP

AN, AN_PHONE = "PE0400012345", "0912345678"
NEAR_BEN_THANH = (10.7721, 106.6983)  # Bến Thành market


async def linked(user: TelegramUser) -> None:
    await user.send("tra cứu hóa đơn")
    await user.send(AN)
    assert "Xác thực thành công" in await user.say(AN_PHONE)


async def tracker_events(stack: Stack, chat_id: int) -> list[dict]:
    return await stack.client.server.app[RUNTIME].agent.tracker_store.retrieve(f"telegram:{chat_id}")


async def outbox_rows(recipient: str) -> int:
    async with db.read_scope() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.recipient_id == recipient)) or 0)


async def test_bill_lookup_conversation_then_payment_link(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    user = TelegramUser(stack, tg_chat(1001))
    greeting = await user.send("xin chào")
    assert "Xin chào" in greeting[0].text
    assert "mã khách hàng" in await user.say("tra cứu hóa đơn")
    assert "số điện thoại" in await user.say(AN)
    answer = await user.say(AN_PHONE)
    assert "Xác thực thành công" in answer and "312 kWh" in answer and "842.076 đ" in answer

    pay = await user.say("thanh toán tiền điện")
    assert re.search(r"http://127\.0\.0\.1:\d+/payments/sandbox/\w+", pay)
    assert stack.telegram.of("sendChatAction")[0].params["action"] == "typing"
    # Logs carry ids, never the token or the customer's phone number.
    assert TG_TOKEN not in caplog.text and AN_PHONE not in caplog.text


async def test_buttons_round_trip_as_inline_keyboard(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1002))
    [greeting] = await user.send("xin chào")
    lookup = next(b for b in greeting.buttons if b["text"] == "Tra cứu hóa đơn")
    assert lookup["callback_data"] == "/lookup_bill"

    replies = await user.press(lookup["callback_data"])
    assert "mã khách hàng" in replies[0].text
    assert len(stack.telegram.of("answerCallbackQuery")) == 1


async def test_long_button_payloads_go_through_the_shared_store(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1003))
    await linked(user)
    payload = '/lookup_bill{"customer_code": "PE0400012345", "bill_view": "breakdown"}'
    assert len(payload.encode()) > 64
    await notifications.enqueue_messages("telegram", str(tg_chat(1003)), [{"text": "Chọn:", "buttons": [{"title": "Chi tiết", "payload": payload}]}])
    await stack.idle("telegram", str(tg_chat(1003)))
    [button] = stack.telegram.sent(tg_chat(1003))[-1].buttons
    assert button["callback_data"].startswith("~") and len(button["callback_data"].encode()) <= 64
    replies = await user.press(button["callback_data"])
    assert "Bậc 1: 50 kWh" in "\n".join(r.text for r in replies)


async def test_commands_start_help_menu(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1004))
    [start] = await user.send("/start")
    assert "Xin chào" in start.text and start.buttons
    for command in ("/help", "/menu"):
        [menu] = await user.send(command)
        assert "Tôi có thể giúp bạn" in menu.text and menu.buttons


async def test_missing_or_wrong_secret_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1005))
    calls = len(stack.telegram.calls)
    for secret in (None, "wrong-secret", TG_SECRET + "x", "", TG_SECRET.upper()):
        response = await user.post(user.text_update("xin chào"), secret=secret)
        assert response.status == 401, secret
    await asyncio.sleep(0.2)
    assert await tracker_events(stack, tg_chat(1005)) == []
    assert await outbox_rows(str(tg_chat(1005))) == 0
    assert len(stack.telegram.calls) == calls


async def test_malformed_bodies_get_400_after_the_secret_passes(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1006))
    for body in (b"{not json", b"[1, 2]", b'{"message": {}}', b'{"update_id": "x"}'):
        response = await user.post(body)
        assert response.status == 400, body
        assert "error" in await response.json()
    assert (await user.post(b"{not json", secret="bad")).status == 401  # the secret is checked first
    assert await outbox_rows(str(tg_chat(1006))) == 0


async def test_a_retried_update_is_processed_once(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1007))
    update = user.text_update("xin chào")
    first, second = await user.post(update), await user.post(update)
    assert (await first.json()) == {"ok": True} and (await second.json())["duplicate"] is True
    await stack.idle("telegram", str(tg_chat(1007)))
    assert len(stack.telegram.sent(tg_chat(1007))) == 1
    user_events = [e for e in await tracker_events(stack, tg_chat(1007)) if e["event"] == "user"]
    assert len(user_events) == 1


async def test_long_text_is_split_at_word_boundaries(stack: Stack) -> None:
    words = [f"từ{n}" for n in range(2500)]
    text = " ".join(words)  # about 12,000 characters
    await notifications.enqueue_messages("telegram", str(tg_chat(1008)), [{"text": text}])
    await stack.idle("telegram", str(tg_chat(1008)))
    parts = [c.text for c in stack.telegram.sent(tg_chat(1008))]
    sizes = [len(p.encode("utf-16-le")) // 2 for p in parts]
    assert len(parts) == 5 and all(4000 < size <= 4096 for size in sizes[:-1])
    assert " ".join(parts).split() == words  # no word broken, none lost, order kept


NON_TEXT = {
    "sticker": {"sticker": {"file_id": "s1", "file_unique_id": "us1", "type": "regular", "width": 512, "height": 512, "is_animated": False, "is_video": False}},
    "photo": {"photo": [{"file_id": "p1", "file_unique_id": "up1", "width": 90, "height": 90}], "caption": "hóa đơn nè"},
    "voice": {"voice": {"file_id": "v1", "file_unique_id": "uv1", "duration": 3}},
    "document": {"document": {"file_id": "d1", "file_unique_id": "ud1", "file_name": "hoadon.pdf"}},
    "contact": {"contact": {"phone_number": "0912345678", "first_name": "An"}},
}


async def test_non_text_messages_get_a_polite_reply(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1009))
    for kind, content in NON_TEXT.items():
        [reply] = await user.deliver(user.message(**content))
        assert reply.text == TEXT_ONLY_REPLY, kind
    assert await tracker_events(stack, tg_chat(1009)) == []  # nothing for the agent to read


async def test_shared_location_reports_the_outage_then_power_restored(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1010))
    latitude, longitude = NEAR_BEN_THANH
    answer = "\n".join(c.text for c in await user.deliver(user.message(location={"latitude": latitude, "longitude": longitude})))
    assert "Bến Thành" in answer and re.search(r"\bBC\w+", answer)  # the report's reference

    restored = await stack.client.patch("/api/outages/SCDEMO0001", json={"status": "restored"}, headers={"Authorization": f"Bearer {STAFF_TOKEN}"})
    assert restored.status == 200
    await stack.telegram.wait_for(lambda: any("Điện đã được cấp lại" in c.text for c in stack.telegram.sent(tg_chat(1010))))


async def test_location_while_the_outage_form_asks_where(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1011))
    assert "phường" in (await user.say("nhà tôi mất điện")).lower()
    answer = "\n".join(c.text for c in await user.deliver(user.message(location={"latitude": 21.0130, "longitude": 105.8010})))
    assert "Trung Hòa" in answer


async def test_location_far_from_known_wards_asks_for_the_ward(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1012))
    answer = "\n".join(c.text for c in await user.deliver(user.message(location={"latitude": 16.0544, "longitude": 108.2022})))
    assert "phường/xã" in answer


@pytest.fixture
def public_url_of_the_test_server(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The bill action builds chart links from the process settings: point them at this server."""
    monkeypatch.setenv("PUBLIC_BASE_URL", stack.settings.public_base_url)
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.mark.usefixtures("public_url_of_the_test_server")
async def test_consumption_chart_is_uploaded_with_its_caption(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1013))
    await linked(user)
    replies = await user.send('/lookup_bill{"bill_view": "chart"}')
    [photo] = [c for c in replies if c.method == "sendPhoto"]
    assert "312 kWh" in photo.text
    # PUBLIC_BASE_URL is a local address Telegram could not fetch: the PNG was uploaded.
    assert photo.params["photo"]["bytes"] > 1000


async def test_an_image_nobody_can_fetch_becomes_a_link(stack: Stack) -> None:
    await notifications.enqueue_messages("telegram", str(tg_chat(1015)), [{"text": "Biểu đồ", "image": "http://127.0.0.1:9/nowhere.png"}])
    await stack.idle("telegram", str(tg_chat(1015)))
    [message] = stack.telegram.sent(tg_chat(1015))
    assert message.method == "sendMessage" and message.text == "Biểu đồ\nhttp://127.0.0.1:9/nowhere.png"


async def test_an_edited_message_is_not_a_new_turn(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1016))
    original = user.text_update("tra cứu hóa đơn")
    await user.deliver(original)
    edited = {"update_id": original["update_id"] + 100_000, "edited_message": {**original["message"], "text": "xin chào", "edit_date": 1}}
    assert await user.deliver(edited) == []


async def test_group_chats_are_not_served(stack: Stack) -> None:
    group = -tg_chat(200)
    user = TelegramUser(stack, group)
    user.chat = {"id": group, "type": "group", "title": "Nhà mình"}
    response = await user.post(user.text_update("tra cứu hóa đơn"))
    assert response.status == 200
    await stack.idle("telegram", str(group))
    assert stack.telegram.sent(group) == []


async def test_long_polling_feeds_the_same_pipeline(stack: Stack) -> None:
    user = TelegramUser(stack, tg_chat(1014))
    stack.telegram.updates.append(user.text_update("xin chào"))
    stop = asyncio.Event()
    poller = asyncio.create_task(telegram.poll(stack.platforms.telegram, stop, wait_seconds=0))
    try:
        await stack.telegram.wait_for(lambda: bool(stack.telegram.sent(tg_chat(1014))))
    finally:
        stop.set()
        await asyncio.wait_for(poller, 5)
    assert stack.telegram.of("deleteWebhook") and "Xin chào" in stack.telegram.sent(tg_chat(1014))[0].text


async def test_an_update_left_by_a_dead_worker_is_recovered_and_answered_once(stack: Stack) -> None:
    """The inbound journal: an update a worker acknowledged and never handled (it died) is
    answered by the recovery; a handled update leaves nothing behind; a platform's retry of an
    update still in flight is not handled twice."""
    user = TelegramUser(stack, tg_chat(90))
    assert "Xin chào" in await user.say("xin chào")
    assert await inbound.count("telegram") == 0  # handled: nothing left in flight

    orphan = user.text_update("cảm ơn")
    raw = json.dumps(orphan).encode()
    assert await inbound.hold("telegram", str(orphan["update_id"]), raw.decode())  # what the dead worker wrote
    response = await user.post(raw)  # Telegram's retry reaches a live worker meanwhile
    assert response.status == 200 and (await response.json()).get("duplicate") is True
    assert await stack.platforms.recover() == 0  # too fresh: its worker may still be at it
    async with db.session_scope() as session:  # ... a minute later
        await session.execute(update(InboundUpdate).values(received_at=utcnow() - timedelta(minutes=2)))
    before = len(stack.telegram.sent(user.chat_id))
    assert await stack.platforms.recover() == 1
    await stack.idle("telegram", str(user.chat_id))
    answered = [c.text for c in stack.telegram.sent(user.chat_id)[before:]]
    assert len(answered) == 1 and "không có gì" in answered[0]  # once, though it came twice
    assert await inbound.count("telegram") == 0
    assert await stack.platforms.recover() == 0
