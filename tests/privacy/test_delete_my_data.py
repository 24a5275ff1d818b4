"""A customer has their chat forgotten ("xóa dữ liệu của tôi"), end to end over the REST channel."""

from __future__ import annotations

from sqlalchemy import func, select

from backend import db
from backend.models import OutageSubscription
from backend.services import accounts, billing, notifications, privacy
from backend.services.notifications import ChatRef, Notification
from tests.e2e.conftest import Chat
from tests.privacy.conftest import Service


async def _linked(service: Service, sender: str, code: str, phone: str) -> Chat:
    chat = Chat(service.client, sender)
    await chat.say("tra cứu hóa đơn")
    await chat.say(code)
    assert "Xác thực thành công" in await chat.say(phone)
    return chat


async def _subscriptions(recipient: str) -> int:
    async with db.read_scope() as session:
        return int(await session.scalar(select(func.count()).select_from(OutageSubscription).where(OutageSubscription.recipient_id == recipient)) or 0)


async def _notice(recipient: str) -> None:
    await notifications.notify(Notification(ChatRef("rest", recipient), "test", "utter_goodbye"))


async def test_deny_keeps_everything_then_affirm_forgets_the_chat(service: Service) -> None:
    store = service.runtime.agent.tracker_store
    an = await _linked(service, "an-private", "PE0400012345", "0912345678")
    assert "sự cố đường dây trung thế" in await an.say("mất điện ở phường Bến Thành quận 1")
    await _notice("an-private")
    binh = await _linked(service, "binh-private", "PD0100234567", "0987654321")
    await binh.say("mất điện ở phường Bến Thành quận 1")
    await _notice("binh-private")

    ask = await an.send("xóa dữ liệu của tôi")
    text = ask[-1]["text"]
    assert "lịch sử trò chuyện" in text and "mã khách hàng" in text and "Hóa đơn, thanh toán và yêu cầu dịch vụ vẫn được lưu" in text
    assert [b["payload"] for b in ask[-1]["buttons"]] == ["/affirm", "/deny"]
    assert "không có gì bị xóa" in await an.say("/deny")
    assert [c.code for c in await accounts.linked_customers("rest", "an-private")] == ["PE0400012345"]
    assert await _subscriptions("an-private") == 1
    assert len(await notifications.pending_for("rest", "an-private")) == 1
    assert "312 kWh" in await an.say("tiền điện tháng trước")  # still linked: no questions

    assert "Bạn có muốn xóa không" in await an.say("xoa du lieu cua toi")
    done = await an.say("có")
    assert "Đã xóa dữ liệu" in done and "1 mã khách hàng" in done and "1 đăng ký" in done and "1 thông báo chưa gửi" in done

    assert await store.retrieve("an-private") == []
    assert await accounts.linked_customers("rest", "an-private") == []
    assert await _subscriptions("an-private") == 0
    assert await notifications.pending_for("rest", "an-private") == []
    assert len(await privacy.erasures_of("rest", "an-private")) == 1
    assert (await billing.latest_bill("PE0400012345")).kwh == 312  # bills belong to the contract
    # The next message starts a fresh conversation: the bill needs the ownership check again.
    again = await an.say("tra cứu hóa đơn")
    assert "mã khách hàng" in again and "312 kWh" not in again

    # Another chat is untouched.
    assert [c.code for c in await accounts.linked_customers("rest", "binh-private")] == ["PD0100234567"]
    assert await _subscriptions("binh-private") == 1
    assert len(await notifications.pending_for("rest", "binh-private")) == 1
    assert any(e.get("event") == "user" for e in await store.retrieve("binh-private"))
    assert "đã thanh toán" in await binh.say("tiền điện tháng trước")


async def test_english_and_the_lockout_survives(service: Service) -> None:
    chat = Chat(service.client, "guesser")
    await chat.say("check my bill")
    await chat.say("PE0400012345")
    for phone in ("0900000001", "0900000002", "0900000003"):
        last = await chat.say(phone)
    assert "locked" in last
    ask = await chat.say("please delete my data")
    assert "Bills, payments and service requests are kept" in ask
    assert "Done" in await chat.say("/affirm")
    # Erasing the chat must not hand a phone-number guesser a fresh set of tries.
    await chat.say("check my bill")
    assert "locked" in await chat.say("PE0400012345")


async def test_asking_in_the_middle_of_a_form(service: Service) -> None:
    chat = Chat(service.client, "mid-form")
    assert "mã khách hàng" in await chat.say("tra cứu hóa đơn")
    ask = await chat.say("xóa lịch sử chat")  # not taken for a customer code
    assert "Bạn có muốn xóa không" in ask and "2 chữ cái" not in ask
    assert "Đã xóa dữ liệu" in await chat.say("/affirm")
    assert await service.runtime.agent.tracker_store.retrieve("mid-form") == []
