"""Escalation, the queue, claims, replies through the outbox, hand-back: over HTTP on the real
app, embedded and on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient

from backend.services import handoff, staff
from backend.settings import get_settings
from tests.console.conftest import outbox_texts
from tests.e2e.conftest import Chat


async def _handoff_id(conversation: str) -> int:
    info = await handoff.open_handoff(conversation)
    assert info is not None
    return info.id


async def test_the_bot_stays_quiet_while_an_agent_has_the_chat(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan")
    chat = Chat(client, "khach-1")
    assert "vị trí số 1" in await chat.say("/talk_to_human")
    assert await chat.send("xin chào") == []  # paused: the console gets it, the bot says nothing
    status, page = await lan.get("/console/?filter=waiting")
    assert status == 200 and "xin chào" in page

    handoff_id = await _handoff_id("khach-1")
    assert await lan.post(f"/console/h/{handoff_id}/claim") == (200, {"ok": True, "handoff_id": handoff_id})
    assert any("Lan" in t and "tiếp nhận" in t for t in await outbox_texts(client, "khach-1"))

    assert (await lan.post(f"/console/h/{handoff_id}/reply", text="Chào anh, em kiểm tra ngay."))[0] == 200
    assert await outbox_texts(client, "khach-1") == ["Chào anh, em kiểm tra ngay."]
    assert await chat.send("cảm ơn em") == []
    status, page = await lan.get(f"/console/h/{handoff_id}")
    assert "Chào anh, em kiểm tra ngay." in page and "cảm ơn em" in page and "talk_to_human" in page

    assert (await lan.post(f"/console/h/{handoff_id}/handback"))[0] == 200
    assert any("trợ lý ảo" in t for t in await outbox_texts(client, "khach-1"))
    assert "Xin chào" in await chat.say("xin chào")  # the bot answers again
    assert (await handoff.get_handoff(handoff_id)).resolution == "handed_back"  # type: ignore[union-attr]


async def test_canned_responses_and_private_notes(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan")
    await Chat(client, "khach-2").say("/talk_to_human")
    handoff_id = await _handoff_id("khach-2")
    await lan.post(f"/console/h/{handoff_id}/claim")
    await outbox_texts(client, "khach-2")
    await lan.post(f"/console/h/{handoff_id}/reply", text="/cho")
    await lan.post(f"/console/h/{handoff_id}/note", text="khách nóng tính")
    assert await outbox_texts(client, "khach-2") == ["Anh/chị vui lòng chờ trong giây lát, em đang kiểm tra thông tin ạ."]
    _, page = await lan.get(f"/console/h/{handoff_id}")
    assert "khách nóng tính" in page


async def test_the_customer_can_go_back_to_the_bot_while_waiting(client: TestClient, make_agent) -> None:
    await make_agent("lan")
    chat = Chat(client, "khach-3")
    await chat.say("/talk_to_human")
    assert "tiếp tục hỗ trợ" in await chat.say("thôi, để bot trả lời")
    assert (await handoff.open_handoff("khach-3")) is None
    assert "Xin chào" in await chat.say("xin chào")


async def test_the_queue_button_cancels_too(client: TestClient, make_agent) -> None:
    await make_agent("lan")
    chat = Chat(client, "khach-4")
    replies = await chat.send("/talk_to_human")
    assert replies[0]["buttons"][0]["payload"] == "/deny"
    assert "tiếp tục hỗ trợ" in await chat.say("/deny")


async def test_nobody_online_gives_a_callback_ticket_and_the_bot_keeps_helping(client: TestClient, make_agent) -> None:
    await make_agent("lan", login=False)
    chat = Chat(client, "khach-5")
    assert "Hiện chưa có nhân viên trực tuyến" in await chat.say("/talk_to_human")
    assert "Xin chào" in await chat.say("xin chào")


async def test_outside_business_hours_gives_a_callback_ticket(client: TestClient, make_agent, monkeypatch: pytest.MonkeyPatch) -> None:
    await make_agent("lan")
    monkeypatch.setenv("HANDOFF_DAYS", "")  # no working day at all
    get_settings.cache_clear()
    chat = Chat(client, "khach-6")
    assert "ngoài giờ làm việc" in await chat.say("/talk_to_human")
    assert "Xin chào" in await chat.say("xin chào")


async def test_a_complaint_is_offered_a_person(client: TestClient, make_agent) -> None:
    await make_agent("lan")
    chat = Chat(client, "khach-7")
    replies = await chat.send("/complain")
    assert replies[0]["buttons"][0]["payload"] == "/talk_to_human"
    await chat.say("/talk_to_human")
    assert (await handoff.open_handoff("khach-7")).reason == "complaint"  # type: ignore[union-attr]


async def test_the_second_misunderstanding_button_escalates(client: TestClient, make_agent) -> None:
    await make_agent("lan")
    chat = Chat(client, "khach-8")
    await chat.say("/nlu_fallback")
    replies = await chat.send("/nlu_fallback")
    assert {"title": "Gặp nhân viên", "payload": "/talk_to_human"} in replies[0]["buttons"]
    await chat.say("/talk_to_human")
    assert (await handoff.open_handoff("khach-8")).reason == "misunderstood"  # type: ignore[union-attr]


async def test_two_agents_race_and_exactly_one_wins(client: TestClient, make_agent) -> None:
    lan, minh = await make_agent("lan"), await make_agent("minh")
    await Chat(client, "khach-9").say("/talk_to_human")
    handoff_id = await _handoff_id("khach-9")
    results = await asyncio.gather(*(a.post(f"/console/h/{handoff_id}/claim") for a in (lan, minh)))
    assert sorted(status for status, _ in results) == [200, 409]


async def test_cap_on_concurrent_chats_and_transfer(client: TestClient, make_agent) -> None:
    lan, minh = await make_agent("lan", max_chats=1), await make_agent("minh")
    for sender in ("khach-a", "khach-b"):
        await Chat(client, sender).say("/talk_to_human")
    first, second = await _handoff_id("khach-a"), await _handoff_id("khach-b")
    assert (await lan.post(f"/console/h/{first}/claim"))[0] == 200
    assert await lan.post(f"/console/h/{second}/claim") == (409, {"ok": False, "error": "cap"})
    target = next(s for s in await staff.list_staff() if s.username == "minh")
    assert (await lan.post(f"/console/h/{first}/transfer", to=str(target.id)))[0] == 200
    assert (await handoff.get_handoff(first)).assignee == "Minh"  # type: ignore[union-attr]
    assert (await lan.get(f"/console/h/{first}"))[0] == 403  # no longer Lan's
    assert (await lan.post(f"/console/h/{second}/claim"))[0] == 200  # under the cap again
    assert (await minh.post(f"/console/h/{first}/close", resolution="solved"))[0] == 200
    assert (await handoff.get_handoff(first)).resolution == "solved"  # type: ignore[union-attr]


async def test_send_payment_link_from_the_customer_panel(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan")
    chat = Chat(client, "khach-pay")
    await chat.say("tra cứu hóa đơn")
    await chat.say("PE0400012345")
    await chat.say("0912345678")
    await chat.say("/talk_to_human")
    handoff_id = await _handoff_id("khach-pay")
    await lan.post(f"/console/h/{handoff_id}/claim")
    _, page = await lan.get(f"/console/h/{handoff_id}")
    assert "Nguyễn Văn An" in page and "PE0400012345" in page
    status, body = await lan.post(f"/console/h/{handoff_id}/pay", code="PE0400012345")
    assert status == 200 and body["txn_ref"]
    assert any("Liên kết thanh toán" in t for t in await outbox_texts(client, "khach-pay"))
    # a code the chat never verified cannot be used
    assert (await lan.post(f"/console/h/{handoff_id}/pay", code="PD0100234567"))[0] == 403


async def test_a_paused_conversation_does_not_expire_into_a_new_session(client: TestClient, make_agent) -> None:
    from bot.app import RUNTIME

    await make_agent("lan")
    chat = Chat(client, "khach-old")
    await chat.say("/talk_to_human")
    store = client.server.app[RUNTIME].agent.tracker_store
    events = await store.retrieve("khach-old")
    await store.delete("khach-old")
    await store.append("khach-old", [{**e, "timestamp": e["timestamp"] - 3 * 3600} for e in events], 0)
    assert await chat.send("xin chào, còn ai không?") == []  # still with a person, still quiet


async def test_an_agent_picking_up_a_callback_takes_the_chat_over(client: TestClient, make_agent) -> None:
    lan = await make_agent("lan", login=False)
    chat = Chat(client, "khach-cb")
    assert "Hiện chưa có nhân viên trực tuyến" in await chat.say("/talk_to_human")
    await lan.login()
    status, page = await lan.get("/console/?filter=waiting")
    info = (await handoff.list_handoffs("waiting", (await staff.list_staff())[0]))[0]
    assert info.status == "callback" and info.ref in page
    assert (await lan.post(f"/console/h/{info.id}/claim"))[0] == 200
    assert await chat.send("alo") == []  # the agent has it now
    assert (await lan.post(f"/console/h/{info.id}/close", resolution="solved"))[0] == 200
    assert "Xin chào" in await chat.say("/greet")


async def test_the_same_request_three_times_escalates(client: TestClient, make_agent) -> None:
    await make_agent("lan")
    chat = Chat(client, "khach-repeat")
    await chat.say("/outage_schedule")
    await chat.say("/help")
    await chat.say("/help")
    assert (await handoff.open_handoff("khach-repeat")) is None
    assert "vị trí số 1" in await chat.say("/help")
    assert (await handoff.open_handoff("khach-repeat")).reason == "repeated"  # type: ignore[union-attr]
