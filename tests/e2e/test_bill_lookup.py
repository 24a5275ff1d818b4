"""The foundation's demo conversation, in Vietnamese and English, over the REST channel."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from aiohttp.test_utils import TestClient

from tests.e2e.conftest import Chat


def _previous_period() -> str:
    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{month:02d}/{year}"


async def test_vietnamese_bill_lookup_with_ownership_check(client: TestClient) -> None:
    chat = Chat(client, "an-vi")
    greeting = await chat.send("xin chào")
    assert "Xin chào" in greeting[0]["text"]
    assert any(b["payload"] == "/lookup_bill" for b in greeting[0]["buttons"])
    assert "mã khách hàng" in await chat.say("tra cứu hóa đơn")
    assert "số điện thoại" in await chat.say("PE0400012345")
    bill = await chat.say("0912345678")
    assert "312 kWh" in bill
    assert "842.076 đ" in bill
    assert "chưa thanh toán" in bill
    assert _previous_period() in bill
    replies = await chat.send("tra cứu hóa đơn")
    buttons = [b["payload"] for r in replies for b in r.get("buttons", [])]
    assert any(p.startswith("/pay_bill") for p in buttons)  # an offer to pay


async def test_linked_chat_gets_last_month_at_once(client: TestClient) -> None:
    chat = Chat(client, "an-linked")
    await chat.say("tra cứu hóa đơn")
    await chat.say("PE0400012345")
    await chat.say("0912345678")
    answer = await chat.say("tiền điện tháng trước")
    assert "312 kWh" in answer and _previous_period() in answer
    older = await chat.say("hóa đơn tháng 8")
    assert "08/" in older and "đã thanh toán" in older


async def test_english_bill_lookup(client: TestClient) -> None:
    chat = Chat(client, "an-en")
    assert "Hello" in await chat.say("hi")
    assert "customer code" in await chat.say("check my bill")
    assert "phone number" in await chat.say("PE0400012345")
    bill = await chat.say("0912345678")
    assert "842,076 VND" in bill and "312 kWh" in bill and "not paid" in bill


async def test_code_given_with_the_request_skips_one_question(client: TestClient) -> None:
    chat = Chat(client, "binh")
    assert "số điện thoại" in await chat.say("cho mình xem hóa đơn của mã PD0100234567")
    assert "đã thanh toán" in await chat.say("0987 654 321")


async def test_wrong_phone_is_refused_and_three_lock_the_code(client: TestClient) -> None:
    chat = Chat(client, "intruder")
    await chat.say("tra cứu hóa đơn")
    await chat.say("PE0400012345")
    first = await chat.say("0900000001")
    assert "không khớp" in first and "2 lần" in first
    assert "không khớp" in await chat.say("0900000002")
    locked = await chat.say("0900000003")
    assert "tạm khóa" in locked and "15 phút" in locked
    # Even the right phone is refused now: the code is locked for this chat.
    await chat.say("tra cứu hóa đơn")
    again = await chat.say("PE0400012345")
    assert "tạm khóa" in again
    assert "312 kWh" not in await chat.say("0912345678")
    # Another chat is not affected.
    other = Chat(client, "owner")
    await other.say("tra cứu hóa đơn")
    await other.say("PE0400012345")
    assert "312 kWh" in await other.say("0912345678")


async def test_unknown_code_is_named_and_asked_again(client: TestClient) -> None:
    chat = Chat(client, "typo")
    await chat.say("tra cứu hóa đơn")
    answer = await chat.say("PE9999999999")
    assert "không tìm thấy" in answer and "PE9999999999" in answer
    assert "mã khách hàng" in answer  # asked again


async def test_wrong_shape_code_gets_the_shape_explained(client: TestClient) -> None:
    chat = Chat(client, "shape")
    await chat.say("tra cứu hóa đơn")
    answer = await chat.say("PE123")
    assert "2 chữ cái" in answer


async def test_customer_can_cancel_the_check(client: TestClient) -> None:
    chat = Chat(client, "cancel")
    await chat.say("tra cứu hóa đơn")
    assert "hủy" in (await chat.say("thôi hủy đi")).lower()
    assert "Xin chào" in await chat.say("xin chào")


async def test_another_chat_never_sees_a_bill_without_the_phone(client: TestClient) -> None:
    owner = Chat(client, "owner-2")
    await owner.say("tra cứu hóa đơn")
    await owner.say("PE0400012345")
    await owner.say("0912345678")
    stranger = Chat(client, "stranger")
    answer = await stranger.say("tra cứu hóa đơn PE0400012345")
    assert "312" not in answer and "số điện thoại" in answer


async def test_help_and_goodbye(client: TestClient) -> None:
    chat = Chat(client, "helpme")
    assert "Tra cứu hóa đơn" in await chat.say("bạn giúp được gì")
    assert "Cảm ơn" in await chat.say("tạm biệt")


async def test_two_misunderstandings_in_a_row_offer_the_hotline(client: TestClient) -> None:
    chat = Chat(client, "lost")
    first = await chat.say("asdkjh qwpeoi zmxn")
    assert "chưa hiểu" in first or "chỉ hỗ trợ" in first
    second = await chat.say("lkjqwe poiuy")
    assert "1900" in second
