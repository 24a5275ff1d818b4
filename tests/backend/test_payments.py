"""Payment links and the gateway's callbacks: VNPay signing, the IPN contract, exactly-once
settlement. Callbacks are signed here by hand (sorted `vnp_*`, quote_plus, HMAC-SHA512), not
with the code under test."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote_plus

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from backend import db
from backend.clock import utcnow
from backend.models import Bill, Customer, Payment, PaymentLink
from backend.payments import (
    PaymentRequest,
    SandboxGateway,
    VnpayGateway,
    build_gateway,
    get_gateway,
)
from backend.payments.gateway import InvalidSignature, MalformedCallback
from backend.services import notifications, payments
from backend.services.notifications import ChatRef
from backend.settings import Settings, get_settings

SECRET = "test-sandbox-secret"
CHAT = ChatRef("rest", "an", "vi")
AN = "PE0400012345"  # one unpaid bill (2026-10, 842 076 VND)
DUNG = "PE1300056789"  # two unpaid bills
BINH = "PD0100234567"  # everything paid


@pytest.fixture(autouse=True)
def sandbox_secret() -> Iterator[str]:
    """The sandbox gateway with a known secret, so that tests can sign callbacks themselves."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PAYMENT_GATEWAY", "sandbox")
        patch.setenv("SANDBOX_PAYMENT_SECRET", SECRET)
        get_settings.cache_clear()
        get_gateway.cache_clear()
        yield SECRET
    get_settings.cache_clear()
    get_gateway.cache_clear()


def sign(params: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    data = "&".join(f"{k}={quote_plus(v)}" for k, v in sorted(params.items()))
    digest = hmac.new(secret.encode(), data.encode(), hashlib.sha512).hexdigest()
    return {**params, "vnp_SecureHash": digest}


def callback(
    txn_ref: str,
    amount: int,
    code: str = "00",
    *,
    status: str | None = None,
    txn_no: str = "14123456",
    pay_date: datetime | None = None,
) -> dict[str, str]:
    """A signed IPN as VNPay sends it; `amount` in VND."""
    moment = (pay_date or utcnow()).astimezone(UTC) + timedelta(hours=7)
    return sign(
        {
            "vnp_Amount": str(amount * 100),
            "vnp_BankCode": "NCB",
            "vnp_OrderInfo": "Thanh toan tien dien",
            "vnp_PayDate": moment.strftime("%Y%m%d%H%M%S"),
            "vnp_ResponseCode": code,
            "vnp_TmnCode": "SANDBOX1",
            "vnp_TransactionNo": txn_no,
            "vnp_TransactionStatus": status or ("00" if code == "00" else "02"),
            "vnp_TxnRef": txn_ref,
        }
    )


async def bills_of(code: str) -> dict[str, Bill]:
    async with db.read_scope() as session:
        rows = await session.scalars(
            select(Bill).join(Customer, Customer.id == Bill.customer_id).where(Customer.code == code)
        )
        return {bill.period: bill for bill in rows}


async def count(model: type) -> int:
    async with db.read_scope() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def link_status(txn_ref: str) -> str:
    async with db.read_scope() as session:
        return str(await session.scalar(select(PaymentLink.status).where(PaymentLink.txn_ref == txn_ref)))


# -- VNPay signing -------------------------------------------------------------------------------


def test_vnpay_payment_url_is_signed_as_vnpay_specifies() -> None:
    gateway = VnpayGateway(
        "DEMOTMN1",
        "SECRETSECRETSECRET",
        "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html",
        "http://127.0.0.1:5005/payments/return",
    )
    created = datetime(2026, 11, 26, 3, 30, tzinfo=UTC)  # 10:30 in Viet Nam
    request = PaymentRequest(
        txn_ref="261126ABCDEF",
        amount=842_076,
        order_info="Thanh toán tiền điện PE0400012345 kỳ 10/2026",
        locale="vi",
        created_at=created,
        expires_at=created + timedelta(minutes=15),
        client_ip="127.0.0.1",
    )
    # Written out by hand: parameters sorted by name, values as quote_plus writes them.
    expected_query = (
        "vnp_Amount=84207600"
        "&vnp_Command=pay"
        "&vnp_CreateDate=20261126103000"
        "&vnp_CurrCode=VND"
        "&vnp_ExpireDate=20261126104500"
        "&vnp_IpAddr=127.0.0.1"
        "&vnp_Locale=vn"
        "&vnp_OrderInfo=Thanh+toan+tien+dien+PE0400012345+ky+10+2026"
        "&vnp_OrderType=billpayment"
        "&vnp_ReturnUrl=http%3A%2F%2F127.0.0.1%3A5005%2Fpayments%2Freturn"
        "&vnp_TmnCode=DEMOTMN1"
        "&vnp_TxnRef=261126ABCDEF"
        "&vnp_Version=2.1.0"
    )
    digest = hmac.new(b"SECRETSECRETSECRET", expected_query.encode(), hashlib.sha512).hexdigest()
    assert gateway.payment_url(request) == (
        f"https://sandbox.vnpayment.vn/paymentv2/vpcpay.html?{expected_query}&vnp_SecureHash={digest}"
    )
    english = gateway.payment_url(PaymentRequest(**{**request.__dict__, "locale": "en"}))
    assert "vnp_Locale=en" in english


def test_vnpay_callbacks_are_verified() -> None:
    gateway = VnpayGateway("DEMOTMN1", "k3y", "https://pay.example/vpcpay.html", "http://x/payments/return")
    params = sign({"vnp_Amount": "1000000", "vnp_ResponseCode": "00", "vnp_TmnCode": "DEMOTMN1",
                   "vnp_TransactionNo": "77", "vnp_TransactionStatus": "00", "vnp_TxnRef": "R1",
                   "vnp_PayDate": "20261126103000"}, "k3y")
    parsed = gateway.parse_callback({**params, "vnp_SecureHashType": "HmacSHA512", "utm_source": "x"})
    assert parsed.succeeded and parsed.amount == 10_000 and parsed.gateway_txn_no == "77"
    assert parsed.pay_date == datetime(2026, 11, 26, 3, 30, tzinfo=UTC)
    # VNPay may send the digest in upper case.
    assert gateway.parse_callback({**params, "vnp_SecureHash": params["vnp_SecureHash"].upper()}).succeeded
    with pytest.raises(InvalidSignature):
        gateway.parse_callback({**params, "vnp_Amount": "2000000"})
    with pytest.raises(InvalidSignature):
        gateway.parse_callback({k: v for k, v in params.items() if k != "vnp_SecureHash"})
    with pytest.raises(InvalidSignature):
        gateway.parse_callback({**params, "vnp_OrderInfo": "\ud800"})  # not encodable: refused, no crash
    with pytest.raises(MalformedCallback):
        gateway.parse_callback(sign({"vnp_TmnCode": "OTHER", "vnp_TxnRef": "R1", "vnp_ResponseCode": "00"}, "k3y"))


def test_vnpay_needs_its_keys_and_never_shows_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_GATEWAY", "vnpay")
    monkeypatch.setenv("VNPAY_HASH_SECRET", "very-secret-value")
    with pytest.raises(ValidationError) as error:
        Settings()
    assert "VNPAY_TMN_CODE" in str(error.value)
    assert "very-secret-value" not in str(error.value)
    monkeypatch.setenv("VNPAY_TMN_CODE", "DEMOTMN1")
    settings = Settings()
    gateway = build_gateway(settings)
    assert isinstance(gateway, VnpayGateway)
    assert "very-secret-value" not in repr(gateway) + repr(settings)
    assert gateway.return_url == "http://127.0.0.1:5005/payments/return"


# -- links ---------------------------------------------------------------------------------------


async def test_a_link_covers_all_unpaid_bills(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, DUNG.lower())
    bills = await bills_of(DUNG)
    unpaid = sorted(p for p, b in bills.items() if b.status == "unpaid")
    assert link.periods == tuple(unpaid) and len(unpaid) == 2
    assert link.amount == sum(bills[p].amount for p in unpaid)
    assert link.url == f"http://127.0.0.1:5005/payments/sandbox/{link.txn_ref}"
    assert link.expires_at - link.created_at == timedelta(minutes=15)
    assert link.status == "pending" and link.customer_code == DUNG and link.is_open()


async def test_a_link_for_one_month_and_nothing_to_pay(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, DUNG, "2026-09")
    assert link.periods == ("2026-09",)
    with pytest.raises(payments.NothingToPay):
        await payments.create_bill_payment_link(CHAT, DUNG, "2026-05")  # paid long ago
    with pytest.raises(payments.NothingToPay):
        await payments.create_bill_payment_link(CHAT, BINH)
    with pytest.raises(payments.UnknownCustomer):
        await payments.create_bill_payment_link(CHAT, "PE9999999999")
    with pytest.raises(ValueError):
        await payments.create_bill_payment_link(CHAT, DUNG, "September")


async def test_asking_again_gives_the_pending_link_again(seeded: date) -> None:
    first = await payments.create_bill_payment_link(CHAT, AN)
    again = await payments.create_bill_payment_link(ChatRef("rest", "an", "en"), AN)
    assert again.txn_ref == first.txn_ref and again.language == "en"
    other_chat = await payments.create_bill_payment_link(ChatRef("rest", "someone-else"), AN)
    assert other_chat.txn_ref != first.txn_ref
    # Too little time left: a fresh link instead.
    late = await payments.create_bill_payment_link(CHAT, AN, now=utcnow() + timedelta(minutes=12))
    assert late.txn_ref != first.txn_ref


# -- IPN -----------------------------------------------------------------------------------------


async def test_valid_ipn_pays_the_bill_records_the_payment_and_queues_the_confirmation(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, AN)
    answer = await payments.handle_ipn(callback(link.txn_ref, link.amount))
    assert answer.as_json() == {"RspCode": "00", "Message": "Confirm Success"}
    bill = (await bills_of(AN))["2026-10"]
    assert bill.status == "paid" and bill.paid_at is not None
    async with db.read_scope() as session:
        payment = await session.scalar(select(Payment))
    assert payment is not None
    assert (payment.txn_ref, payment.amount, payment.gateway, payment.gateway_txn_no, payment.bank_code) == (
        link.txn_ref, 842_076, "sandbox", "14123456", "NCB",
    )
    assert payment.raw_callback["vnp_TxnRef"] == link.txn_ref
    assert await link_status(link.txn_ref) == "paid"
    [message] = await notifications.pending_for("rest", "an")
    assert message.payload["response"] == "utter_payment_received"
    assert message.payload["values"] == {
        "amount": "842.076 đ",
        "periods": "10/2026",
        "customer_code": AN,
        "txn_ref": link.txn_ref,
        "description": f"tiền điện kỳ 10/2026 của mã khách hàng {AN}",
    }
    assert await payments.return_result(callback(link.txn_ref, link.amount)) == payments.ReturnResult(
        "paid", link.txn_ref, 842_076, AN, ("2026-10",), f"tiền điện kỳ 10/2026 của mã khách hàng {AN}", "vi"
    )


async def test_bad_signature_wrong_amount_and_unknown_order(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, AN)
    forged = callback(link.txn_ref, link.amount)
    forged["vnp_Amount"] = "100"
    assert (await payments.handle_ipn(forged)).rsp_code == "97"
    assert (await payments.handle_ipn({})).rsp_code == "97"
    assert (await payments.handle_ipn(callback(link.txn_ref, link.amount + 1))).rsp_code == "04"
    assert (await payments.handle_ipn(callback("NOSUCHORDER", link.amount))).rsp_code == "01"
    other_secret = sign({k: v for k, v in callback(link.txn_ref, link.amount).items() if k != "vnp_SecureHash"}, "wrong")
    assert (await payments.handle_ipn(other_secret)).as_json() == {"RspCode": "97", "Message": "Invalid signature"}
    assert (await bills_of(AN))["2026-10"].status == "unpaid"
    assert await count(Payment) == 0 and await link_status(link.txn_ref) == "pending"


async def test_repeated_ipn_is_already_confirmed(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, AN)
    params = callback(link.txn_ref, link.amount)
    assert (await payments.handle_ipn(params)).rsp_code == "00"
    paid_at = (await bills_of(AN))["2026-10"].paid_at
    assert (await payments.handle_ipn(params)).as_json() == {"RspCode": "02", "Message": "Order already confirmed"}
    assert (await bills_of(AN))["2026-10"].paid_at == paid_at
    assert await count(Payment) == 1
    assert len(await notifications.pending_for("rest", "an")) == 1


async def test_expired_link_is_closed_without_paying_anything(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, AN, now=utcnow() - timedelta(hours=1))
    answer = await payments.handle_ipn(callback(link.txn_ref, link.amount))
    assert answer.rsp_code == "02"
    assert await link_status(link.txn_ref) == "expired"
    assert (await bills_of(AN))["2026-10"].status == "unpaid"
    assert await count(Payment) == 0 and await notifications.pending_for("rest", "an") == []
    assert (await payments.return_result(callback(link.txn_ref, link.amount))).outcome == "not_paid"


async def test_late_ipn_for_a_payment_made_in_time_is_accepted(seeded: date) -> None:
    start = utcnow() - timedelta(minutes=30)
    link = await payments.create_bill_payment_link(CHAT, AN, now=start)
    answer = await payments.handle_ipn(callback(link.txn_ref, link.amount, pay_date=start + timedelta(minutes=10)))
    assert answer.rsp_code == "00"
    assert (await bills_of(AN))["2026-10"].paid_at == (start + timedelta(minutes=10)).replace(microsecond=0)


async def test_cancelled_and_failed_payments_change_no_bill(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, DUNG, "2026-09")
    cancelled = callback(link.txn_ref, link.amount, "24", txn_no="0")
    assert (await payments.return_result(cancelled)).outcome == "not_paid"
    assert (await payments.handle_ipn(cancelled)).as_json() == {"RspCode": "00", "Message": "Confirm Success"}
    assert await link_status(link.txn_ref) == "cancelled"
    # A success that arrives afterwards cannot reopen it.
    assert (await payments.handle_ipn(callback(link.txn_ref, link.amount))).rsp_code == "02"

    other = await payments.create_bill_payment_link(CHAT, DUNG, "2026-10")
    assert (await payments.handle_ipn(callback(other.txn_ref, other.amount, "51", txn_no="0"))).rsp_code == "00"
    assert await link_status(other.txn_ref) == "failed"
    assert all(b.status == "unpaid" for p, b in (await bills_of(DUNG)).items() if p >= "2026-09")
    assert await count(Payment) == 0


async def test_twenty_concurrent_deliveries_settle_once(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, DUNG)
    params = callback(link.txn_ref, link.amount)
    answers = await asyncio.gather(*(payments.handle_ipn(params) for _ in range(20)))
    assert sorted(a.rsp_code for a in answers) == ["00"] + ["02"] * 19
    assert await count(Payment) == 1
    assert len(await notifications.pending_for("rest", "an")) == 1
    assert all(b.status == "paid" for b in (await bills_of(DUNG)).values())


async def test_bill_paid_by_another_link_is_not_paid_twice(seeded: date) -> None:
    month = await payments.create_bill_payment_link(CHAT, DUNG, "2026-10")
    everything = await payments.create_bill_payment_link(CHAT, DUNG)
    assert (await payments.handle_ipn(callback(month.txn_ref, month.amount, txn_no="1"))).rsp_code == "00"
    paid_at = (await bills_of(DUNG))["2026-10"].paid_at
    later = utcnow() + timedelta(minutes=1)
    assert (await payments.handle_ipn(callback(everything.txn_ref, everything.amount, txn_no="2", pay_date=later))).rsp_code == "00"
    bills = await bills_of(DUNG)
    assert bills["2026-10"].paid_at == paid_at  # untouched by the second payment
    assert bills["2026-09"].status == "paid"
    assert await count(Payment) == 2  # the money was received twice: recorded, for a refund


async def test_return_result_before_the_ipn_and_for_garbage(seeded: date) -> None:
    link = await payments.create_bill_payment_link(CHAT, AN)
    assert (await payments.return_result(callback(link.txn_ref, link.amount))).outcome == "processing"
    assert (await payments.return_result({"vnp_TxnRef": link.txn_ref})).outcome == "invalid"
    assert (await payments.return_result(callback("NOSUCHORDER", 1))) == payments.ReturnResult("invalid")


# -- fees ----------------------------------------------------------------------------------------


async def test_fee_link_is_paid_by_its_ipn(seeded: date) -> None:
    link = await payments.create_fee_payment_link(CHAT, AN, "SR-2026-0001", 150_000, "Phí đóng điện lại")
    assert link.purpose == "fee" and link.periods == () and link.amount == 150_000
    same = await payments.create_fee_payment_link(CHAT, AN, "SR-2026-0001", 150_000, "Phí đóng điện lại")
    assert same.txn_ref == link.txn_ref
    assert not await payments.fee_paid("SR-2026-0001")
    assert (await payments.handle_ipn(callback(link.txn_ref, 150_000))).rsp_code == "00"
    assert await payments.fee_paid("SR-2026-0001") and not await payments.fee_paid("SR-OTHER")
    assert (await bills_of(AN))["2026-10"].status == "unpaid"  # a fee pays no bill
    [message] = await notifications.pending_for("rest", "an")
    assert message.payload["values"]["description"] == "Phí đóng điện lại"
    with pytest.raises(payments.FeeAlreadyPaid):
        await payments.create_fee_payment_link(CHAT, AN, "SR-2026-0001", 150_000, "Phí đóng điện lại")


async def test_fee_link_arguments_are_checked(seeded: date) -> None:
    for amount in (0, -5, 10**12, 1.5, True):
        with pytest.raises(ValueError):
            await payments.create_fee_payment_link(CHAT, None, "SR-1", amount, "Phí")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await payments.create_fee_payment_link(CHAT, None, "", 1000, "Phí")
    with pytest.raises(ValueError):
        await payments.create_fee_payment_link(CHAT, None, "SR-1", 1000, "   ")
    with pytest.raises(payments.UnknownCustomer):
        await payments.create_fee_payment_link(CHAT, "PE9999999999", "SR-1", 1000, "Phí")
    anonymous = await payments.create_fee_payment_link(CHAT, None, "SR-1", 1000, "Phí khảo sát")
    assert anonymous.customer_code is None


def test_sandbox_is_the_default_gateway() -> None:
    assert isinstance(get_gateway(), SandboxGateway)
