"""Zalo OA end to end: signed webhook events -> agent -> outbox -> worker -> fake Zalo API."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

from sqlalchemy import func, select, update

from backend import db
from backend.clock import utcnow
from backend.models import ChannelToken, OutboxMessage
from backend.services import notifications
from bot.app import RUNTIME
from bot.channels.middleware import TEXT_ONLY_REPLY
from tests.channels.conftest import (
    CHANNEL_LOOP,
    ZALO_OA_SECRET,
    Stack,
    ZaloUser,
    zalo_signature,
    zalo_user,
)

pytestmark = CHANNEL_LOOP

AN, AN_PHONE = "PE0400012345", "0912345678"


async def tracker_events(stack: Stack, user_id: str) -> list[dict]:
    return await stack.client.server.app[RUNTIME].agent.tracker_store.retrieve(f"zalo:{user_id}")


async def rows(user_id: str) -> list[OutboxMessage]:
    async with db.read_scope() as session:
        return list(await session.scalars(select(OutboxMessage).where(OutboxMessage.recipient_id == user_id).order_by(OutboxMessage.id)))


async def wait_row(user_id: str, predicate, within: float = 10.0) -> OutboxMessage:  # noqa: ANN001
    for _ in range(int(within / 0.05)):
        found = [r for r in await rows(user_id) if predicate(r)]
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no outbox row for {user_id} matched")


async def test_bill_lookup_conversation_then_payment_link(stack: Stack) -> None:
    user = ZaloUser(stack, zalo_user(1))
    greeting = await user.send("xin chào")
    assert "Xin chào" in greeting[0].text
    assert "mã khách hàng" in await user.say("tra cứu hóa đơn")
    assert "số điện thoại" in await user.say(AN)
    answer = await user.say(AN_PHONE)
    assert "Xác thực thành công" in answer and "312 kWh" in answer
    assert re.search(r"/payments/sandbox/\w+", await user.say("thanh toán tiền điện"))
    assert all(s.access_token == "at-1" for s in stack.zalo.to(user.user_id))


async def test_buttons_round_trip(stack: Stack) -> None:
    user = ZaloUser(stack, zalo_user(2))
    [greeting] = await user.send("xin chào")
    button = next(b for b in greeting.buttons if b["title"] == "Tra cứu hóa đơn")
    assert button == {"title": "Tra cứu hóa đơn", "type": "oa.query.hide", "payload": "/lookup_bill"}
    # Zalo sends a pressed oa.query.hide button back as a text message holding the payload.
    assert "mã khách hàng" in await user.say(button["payload"])


async def test_bad_or_missing_signature_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    user = ZaloUser(stack, zalo_user(3))
    event = user.text_event("xin chào")
    raw = json.dumps(event).encode()
    forged = [
        None,
        "mac=" + "0" * 64,
        zalo_signature(raw, event["timestamp"], secret=ZALO_OA_SECRET + "x"),
        zalo_signature(raw, str(int(event["timestamp"]) + 1)),  # the timestamp is signed too
        zalo_signature(raw + b" ", event["timestamp"]),
    ]
    for signature in forged:
        assert (await user.post(raw, signature=signature)).status == 401, signature
    # The same MAC without the optional "mac=" prefix is accepted.
    assert (await user.post(raw, signature=zalo_signature(raw, event["timestamp"])[4:])).status == 200
    await stack.idle("zalo", user.user_id)
    assert len(stack.zalo.to(user.user_id)) == 1


async def test_unreadable_events(stack: Stack) -> None:
    user = ZaloUser(stack, zalo_user(4))
    # Not JSON: the signature covers the event's timestamp, so it cannot be verified at all.
    assert (await user.post(b"{broken", signature="mac=" + "0" * 64)).status == 401
    # Signed, but not an event we can read: 400 naming the problem.
    missing_sender = user.text_event("xin chào")
    del missing_sender["sender"]
    response = await user.post(missing_sender)
    assert response.status == 400 and "sender" in (await response.json())["error"]
    no_name = user.text_event("xin chào")
    no_name["event_name"] = ""
    assert (await user.post(no_name)).status == 400
    assert await rows(user.user_id) == []


async def test_duplicate_delivery_is_processed_once(stack: Stack) -> None:
    user = ZaloUser(stack, zalo_user(5))
    event = user.text_event("xin chào")
    assert (await user.post(event)).status == 200
    assert (await (await user.post(event)).json())["duplicate"] is True
    await stack.idle("zalo", user.user_id)
    assert len(stack.zalo.to(user.user_id)) == 1
    events = await tracker_events(stack, user.user_id)
    assert len([e for e in events if e["event"] == "user"]) == 1


async def test_non_text_messages_get_a_polite_reply(stack: Stack) -> None:
    user = ZaloUser(stack, zalo_user(6))
    attachments = {
        "user_send_image": [{"type": "image", "payload": {"url": "https://zalo.example/i.jpg", "thumbnail": "https://zalo.example/t.jpg"}}],
        "user_send_sticker": [{"type": "sticker", "payload": {"id": "st1", "url": "https://zalo.example/s.png"}}],
        "user_send_file": [{"type": "file", "payload": {"url": "https://zalo.example/f.pdf", "name": "hoadon.pdf", "size": "1024"}}],
        "user_send_audio": [{"type": "audio", "payload": {"url": "https://zalo.example/a.aac"}}],
    }
    for event_name, attachment in attachments.items():
        [reply] = await user.deliver(user.event(event_name, {"attachments": attachment}))
        assert reply.text == TEXT_ONLY_REPLY, event_name


async def test_follow_gets_the_welcome_and_unfollow_is_quiet(stack: Stack) -> None:
    user = ZaloUser(stack, zalo_user(7))
    [welcome] = await user.deliver(user.event("follow", follower={"id": user.user_id}, oa_id="oa-1", source="oa_profile"))
    assert "Xin chào" in welcome.text and welcome.buttons
    assert await user.deliver(user.event("unfollow", follower={"id": user.user_id}, oa_id="oa-1")) == []
    # Receipts and the OA's own messages are acknowledged and ignored.
    assert await user.deliver(user.event("user_seen_message", {"msg_ids": ["m1"]})) == []


async def test_shared_location_reports_the_outage(stack: Stack) -> None:
    user = ZaloUser(stack, zalo_user(8))
    location = {"attachments": [{"type": "location", "payload": {"coordinates": {"latitude": "10.7721", "longitude": "106.6983"}}}]}
    answer = "\n".join(s.text for s in await user.deliver(user.event("user_send_location", location)))
    assert "Bến Thành" in answer and re.search(r"\bBC\w+", answer)


async def test_outside_the_interaction_window_is_recorded_not_retried(stack: Stack) -> None:
    stack.zalo.fail(-230)
    await notifications.enqueue_messages("zalo", zalo_user(9), [{"text": "Hóa đơn đã thanh toán"}, {"text": "Cảm ơn bạn"}])
    await stack.idle("zalo", zalo_user(9))
    first, second = await rows(zalo_user(9))
    assert first.status == "failed" and "-230" in (first.last_error or "") and first.attempts == 1
    assert second.status == "sent"  # a permanent failure does not hold the chat back


async def test_rate_limited_send_waits_and_is_then_delivered(stack: Stack) -> None:
    stack.zalo.fail(-32)
    await notifications.enqueue_messages("zalo", zalo_user(10), [{"text": "một"}, {"text": "hai"}])
    first = await wait_row(zalo_user(10), lambda r: r.attempts == 1 and r.status == "pending")
    assert "-32" in (first.last_error or "") and first.next_attempt_at > utcnow() + timedelta(seconds=20)
    assert stack.zalo.to(zalo_user(10)) == []  # "hai" waits behind "một": order
    async with db.session_scope() as session:  # fast-forward the 30 s wait
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == first.id).values(next_attempt_at=utcnow()))
    stack.platforms.worker.wake()
    await stack.zalo.wait_for(lambda: [s.text for s in stack.zalo.to(zalo_user(10))] == ["một", "hai"])


async def test_server_error_is_retried_with_backoff(stack: Stack) -> None:
    stack.zalo.fail(http_status=500)
    await notifications.enqueue_messages("zalo", zalo_user(11), [{"text": "thử lại"}])
    await stack.zalo.wait_for(lambda: [s.text for s in stack.zalo.to(zalo_user(11))] == ["thử lại"])
    [row] = await rows(zalo_user(11))
    assert row.attempts == 2 or row.status == "pending"


async def test_expired_access_token_is_refreshed_and_the_message_resent(stack: Stack) -> None:
    stack.zalo.expire("at-1")
    await notifications.enqueue_messages("zalo", zalo_user(12), [{"text": "sau khi làm mới"}])
    await stack.zalo.wait_for(lambda: bool(stack.zalo.to(zalo_user(12))))
    [sent] = stack.zalo.to(zalo_user(12))
    assert sent.access_token == "at-2"
    assert stack.zalo.refresh_uses == {"rt-1": 1}
    async with db.read_scope() as session:
        stored = await session.get(ChannelToken, "zalo")
        assert stored is not None and stored.version == 2 and stored.refresh_token == "rt-2" and stored.access_expires_at is not None
        count = await session.scalar(select(func.count()).select_from(ChannelToken))
        assert count == 1
