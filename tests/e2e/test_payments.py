"""Paying bills from the chat over the REST channel, through the built-in sandbox gateway.

The test client plays the browser: it opens the link the bot sent, submits the sandbox's form
without following the redirect (the return URL is on PUBLIC_BASE_URL, not on the test server),
and then opens the return page on the test server.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from backend import db
from backend.models import Payment
from backend.payments import get_gateway
from backend.settings import Settings, get_settings
from bot.app import create_app
from nlu import NLUModel
from tests.e2e.conftest import Chat, serving

AN, AN_PHONE = "PE0400012345", "0912345678"
DUNG, DUNG_PHONE = "PE1300056789", "0938777666"
PUBLIC = "http://127.0.0.1:5005"


class _Forms(HTMLParser):
    """The forms of a page: (action, {hidden field: value}, button text)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str], str]] = []
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}, ""))
        elif tag == "input" and self.forms:
            self.forms[-1][1][values["name"]] = values.get("value", "")
        elif tag == "button":
            self._in_button = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False

    def handle_data(self, data: str) -> None:
        if self._in_button and self.forms:
            action, fields, text = self.forms[-1]
            self.forms[-1] = (action, fields, text + data)


async def linked_chat(client: TestClient, sender: str, code: str = AN, phone: str = AN_PHONE) -> Chat:
    chat = Chat(client, sender)
    await chat.say("tra cứu hóa đơn")
    await chat.say(code)
    assert "Xác thực thành công" in await chat.say(phone)
    return chat


async def ask_for_link(chat: Chat, text: str = "thanh toán tiền điện") -> tuple[str, str]:
    """The reply text and the payment URL of its button."""
    replies = await chat.send(text)
    message = next(r for r in replies if "/payments/sandbox/" in r.get("text", ""))
    [button] = message["buttons"]
    assert button["payload"] in message["text"]  # channels without buttons still show the URL
    return message["text"], button["payload"]


async def open_pay_page(client: TestClient, url: str) -> dict[str, tuple[str, dict[str, str]]]:
    """GET the sandbox page like a browser; its forms by button ('pay' / 'cancel')."""
    assert url.startswith(f"{PUBLIC}/payments/sandbox/")
    response = await client.get(urlsplit(url).path)
    assert response.status == 200
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    parser = _Forms()
    parser.feed(await response.text())
    forms = {("pay" if "Pay" in text else "cancel"): (action, fields) for action, fields, text in parser.forms}
    assert set(forms) == {"pay", "cancel"}
    return forms


async def press(client: TestClient, form: tuple[str, dict[str, str]]) -> str:
    """Submit a sandbox form; then open the return page it redirects to. Returns that page."""
    action, fields = form
    response = await client.post(action, data=fields, allow_redirects=False)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    assert location.startswith(f"{PUBLIC}/payments/return?")
    target = urlsplit(location)
    page = await client.get(f"{target.path}?{target.query}")
    assert page.status == 200
    return await page.text()


async def outbox(client: TestClient, sender: str) -> list[dict[str, object]]:
    response = await client.get("/webhooks/rest/outbox", params={"sender": sender})
    assert response.status == 200
    return await response.json()


async def payments_count() -> int:
    async with db.read_scope() as session:
        return int(await session.scalar(select(func.count()).select_from(Payment)) or 0)


async def test_linked_customer_pays_in_the_sandbox_and_gets_a_confirmation(client: TestClient) -> None:
    chat = await linked_chat(client, "pay-an")
    text, url = await ask_for_link(chat)
    assert "842.076 đ" in text and "10/2026" in text and "giờ Việt Nam" in text
    forms = await open_pay_page(client, url)
    assert await outbox(client, "pay-an") == []

    page = await press(client, forms["pay"])
    assert "Thanh toán thành công" in page and "Payment successful" in page and "842.076 đ" in page

    assert "đã thanh toán" in await chat.say("tra cứu hóa đơn")
    [confirmation] = await outbox(client, "pay-an")
    assert "Đã nhận thanh toán 842.076 đ" in str(confirmation["text"])
    assert await outbox(client, "pay-an") == []  # handed over once
    assert "không có hóa đơn nào cần thanh toán" in await chat.say("thanh toán tiền điện")
    # The link is spent: its page no longer offers the buttons, and pressing again changes nothing.
    spent = await client.get(urlsplit(url).path)
    assert "đã được thanh toán" in await spent.text() and "<form" not in await spent.text()
    await press(client, forms["pay"])
    assert await payments_count() == 1


async def test_cancelling_in_the_sandbox_pays_nothing(client: TestClient) -> None:
    chat = await linked_chat(client, "cancel-an")
    _, url = await ask_for_link(chat)
    page = await press(client, (await open_pay_page(client, url))["cancel"])
    assert "Chưa thanh toán" in page
    assert "chưa thanh toán" in await chat.say("tra cứu hóa đơn")
    assert await outbox(client, "cancel-an") == []
    _, new_url = await ask_for_link(chat)  # a new link is offered
    assert new_url != url


async def test_english_customer_gets_an_english_link_and_confirmation(client: TestClient) -> None:
    chat = Chat(client, "pay-en")
    await chat.say("check my bill")
    await chat.say(AN)
    await chat.say(AN_PHONE)
    text, url = await ask_for_link(chat, "/pay_bill")
    assert "Payment link" in text and "842,076 VND" in text
    await press(client, (await open_pay_page(client, url))["pay"])
    [confirmation] = await outbox(client, "pay-en")
    assert "Payment received: 842,076 VND" in str(confirmation["text"])


async def test_unlinked_chat_proves_ownership_before_getting_a_link(client: TestClient) -> None:
    chat = Chat(client, "pay-new")
    first = await chat.say("thanh toán tiền điện")
    assert "mã khách hàng" in first and "/payments/" not in first
    assert "số điện thoại" in await chat.say(DUNG)
    replies = await chat.send(DUNG_PHONE)
    text = "\n".join(r.get("text", "") for r in replies)
    assert "Xác thực thành công" in text and "/payments/sandbox/" in text
    assert "09/2026" in text and "10/2026" in text  # both unpaid bills


async def test_a_stranger_cannot_get_a_link_for_someone_elses_code(client: TestClient) -> None:
    await linked_chat(client, "owner-pay")
    stranger = Chat(client, "stranger-pay")
    answer = await stranger.say(f"gửi link thanh toán cho mã {AN}")
    assert "số điện thoại" in answer and "/payments/" not in answer and "842" not in answer
    wrong = await stranger.say("0900000001")
    assert "không khớp" in wrong and "/payments/" not in wrong


async def test_several_linked_codes_are_offered_as_buttons(client: TestClient) -> None:
    chat = await linked_chat(client, "two-codes")
    await chat.say(f"liên kết mã {DUNG}")
    assert "Xác thực thành công" in await chat.say(DUNG_PHONE)
    replies = await chat.send("thanh toán tiền điện")
    payloads = [b["payload"] for b in replies[-1]["buttons"]]
    assert payloads == [f'/pay_bill{{"customer_code": "{c}"}}' for c in (AN, DUNG)]
    text, _ = await ask_for_link(chat, payloads[1])
    assert DUNG in text and "09/2026, 10/2026" in text


def _months_ago(count: int) -> tuple[int, str]:
    """(month number, 'MM/YYYY') of the month `count` months before the current one in Viet Nam."""
    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    index = today.year * 12 + today.month - 1 - count
    return index % 12 + 1, f"{index % 12 + 1:02d}/{index // 12}"


async def test_a_named_month_is_paid_alone(client: TestClient) -> None:
    chat = await linked_chat(client, "one-month", DUNG, DUNG_PHONE)
    month, label = _months_ago(2)  # Dung's older unpaid bill
    text, _ = await ask_for_link(chat, f"mình muốn đóng tiền điện tháng {month} ngay")
    assert label in text and _months_ago(1)[1] not in text
    paid_month, paid_label = _months_ago(4)
    answer = await chat.say(f"mình muốn đóng tiền điện tháng {paid_month} ngay")
    assert "không có hóa đơn nào cần thanh toán" in answer and paid_label in answer


async def test_twenty_concurrent_ipn_deliveries_settle_once(client: TestClient) -> None:
    chat = await linked_chat(client, "ipn-burst")
    _, url = await ask_for_link(chat)
    _, signed = (await open_pay_page(client, url))["pay"]

    async def deliver() -> str:
        response = await client.get("/payments/vnpay/ipn", params=signed)
        assert response.status == 200
        return (await response.json())["RspCode"]

    codes = await asyncio.gather(*(deliver() for _ in range(20)))
    assert sorted(codes) == ["00"] + ["02"] * 19
    assert await payments_count() == 1
    assert len(await outbox(client, "ipn-burst")) == 1
    assert "đã thanh toán" in await chat.say("tra cứu hóa đơn")


async def test_bad_input_gets_an_answer_never_a_500(client: TestClient) -> None:
    async def ipn(query: str) -> dict[str, str]:
        response = await client.get(f"/payments/vnpay/ipn{query}")
        assert response.status == 200
        return await response.json()

    assert await ipn("") == {"RspCode": "97", "Message": "Invalid signature"}
    assert (await ipn("?vnp_TxnRef=X&vnp_SecureHash=zz%FF%00"))["RspCode"] == "97"
    assert (await ipn("?vnp_Amount=1&vnp_Amount=2&vnp_SecureHash=ab"))["RspCode"] == "97"
    assert (await ipn("?vnp_OrderInfo=" + "A" * 5000 + "&vnp_SecureHash=ab"))["RspCode"] == "97"
    assert (await ipn("?" + "&".join(f"p{i}=1" for i in range(500))))["RspCode"] == "97"

    page = await client.get("/payments/return?vnp_TxnRef=<script>&vnp_SecureHash=1")
    assert page.status == 400 and "<script>" not in await page.text()
    assert (await client.get("/payments/return")).status == 400
    assert (await client.get("/payments/sandbox/NOSUCHREF")).status == 404
    assert (await client.get("/payments/sandbox/%3Cscript%3E")).status == 404
    assert (await client.post("/payments/sandbox/NOSUCHREF", data={"a": "b"})).status == 400

    chat = await linked_chat(client, "tamper")
    _, url = await ask_for_link(chat)
    action, fields = (await open_pay_page(client, url))["pay"]
    tampered = {**fields, "vnp_Amount": "100"}
    assert (await client.post(action, data=tampered, allow_redirects=False)).status == 400
    cross_site = await client.post(action, data=fields, headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False)
    assert cross_site.status == 403
    assert (await client.post(action, data=b"\xff\xfe", headers={"Content-Type": "application/x-www-form-urlencoded"})).status in (400, 404)
    assert "chưa thanh toán" in await chat.say("tra cứu hóa đơn")


async def test_sandbox_pages_are_gone_when_vnpay_is_configured(client: TestClient) -> None:
    chat = await linked_chat(client, "real-gateway")
    _, url = await ask_for_link(chat)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAYMENT_GATEWAY", "vnpay")
        patch.setenv("VNPAY_TMN_CODE", "DEMOTMN1")
        patch.setenv("VNPAY_HASH_SECRET", "not-a-real-secret")
        get_settings.cache_clear()
        get_gateway.cache_clear()
        try:
            assert (await client.get(urlsplit(url).path)).status == 404
            text, vnpay_url = await ask_for_link_vnpay(chat)
            assert vnpay_url.startswith("https://sandbox.vnpayment.vn/paymentv2/vpcpay.html?")
            assert "vnp_TmnCode=DEMOTMN1" in vnpay_url and "not-a-real-secret" not in vnpay_url
            assert vnpay_url in text
        finally:
            get_settings.cache_clear()
            get_gateway.cache_clear()
    get_settings.cache_clear()
    get_gateway.cache_clear()


async def ask_for_link_vnpay(chat: Chat) -> tuple[str, str]:
    replies = await chat.send("thanh toán tiền điện")
    message = next(r for r in replies if "vnpayment" in r.get("text", ""))
    return message["text"], message["buttons"][0]["payload"]


async def test_ipn_from_outside_the_allowed_sources_is_refused(
    sqlite_url: str, project_nlu: NLUModel, trained_models_dir: Path
) -> None:
    """With VNPAY_IPN_ALLOWED_IPS set, a correctly signed IPN from anywhere else settles nothing;
    from VNPay's network (seen through our proxy) it settles the bill."""
    allowed = "203.0.113.0/24, 2001:db8::/32"
    async with serving(sqlite_url, None, project_nlu, trained_models_dir, vnpay_ipn_allowed_ips=allowed) as guarded:
        chat = await linked_chat(guarded, "ipn-sources")
        _, url = await ask_for_link(chat)
        _, signed = (await open_pay_page(guarded, url))["pay"]

        # The test client connects from loopback, a trusted proxy: its X-Forwarded-For counts.
        for outsider in ({"X-Forwarded-For": "198.51.100.7"}, {}, {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}):
            refused = await guarded.get("/payments/vnpay/ipn", params=signed, headers=outsider)
            assert refused.status == 403 and (await refused.json())["RspCode"] == "99"
        assert await payments_count() == 0

        accepted = await guarded.get("/payments/vnpay/ipn", params=signed, headers={"X-Forwarded-For": "203.0.113.9"})
        assert accepted.status == 200 and (await accepted.json())["RspCode"] == "00"
        assert await payments_count() == 1
        assert "đã thanh toán" in await chat.say("tra cứu hóa đơn")


def test_a_malformed_ipn_source_list_stops_startup_with_its_name() -> None:
    settings = Settings(vnpay_ipn_allowed_ips="203.0.113.0/24, vnpay.vn")
    with pytest.raises(ValueError, match="VNPAY_IPN_ALLOWED_IPS: 'vnpay.vn'"):
        create_app(settings, runtime=None)
