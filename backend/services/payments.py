"""Cashless payment: payment links for bills and service fees, and the gateway's callbacks.

A chat asks for a link (all unpaid bills of a customer, one month's bill, or a service fee);
the customer pays on the gateway's page; the gateway then calls our IPN endpoint, and
`handle_ipn` settles the link: it records the payment, marks the covered bills paid and queues
the confirmation for the chat, all in one transaction. The IPN is the only thing that marks
anything paid; the browser's return (`return_result`) only reports.

IPN contract (VNPay's): the answer is an `IpnResponse` whose RspCode tells the gateway whether
to deliver again. Checks run in VNPay's order: signature (97), order (01), amount (04),
already settled (02). Non-success results (24 = customer cancelled, others = failed) close
the link unpaid and answer 00: we processed them. Anything unexpected answers 99.

Expired links: the link's window is the vnp_ExpireDate the gateway enforces. A callback for a
link whose window closed before the payment (judged by the gateway's signed vnp_PayDate, or by
the time of arrival when it has none) closes the link as 'expired' and answers 02 ("already
confirmed": a final state, so VNPay stops retrying, as in its reference IPN handlers). No bill
changes and no payment is recorded; a warning is logged with the order reference, because if
money did move it has to be refunded by hand. A late IPN for a payment made in time is
accepted normally.

Each public function runs in its own transaction.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from backend.clock import VN_TZ, ensure_aware
from backend.db import read_scope, session_scope
from backend.identifiers import normalize_customer_code
from backend.models import Bill, Customer, Payment, PaymentLink, PaymentLinkBill
from backend.money import format_vnd
from backend.payments import (
    CallbackError,
    GatewayCallback,
    InvalidSignature,
    PaymentGateway,
    PaymentRequest,
    get_gateway,
)
from backend.periods import Period
from backend.services.notifications import ChatRef, Notification, enqueue
from backend.settings import get_settings

log = logging.getLogger(__name__)

LinkStatus = Literal["pending", "paid", "expired", "cancelled", "failed"]
ReturnOutcome = Literal["paid", "processing", "not_paid", "invalid"]

MAX_AMOUNT = 9_999_999_999  # whole VND; VNPay's field carries at most 12 digits of VND x 100
MAX_REFERENCE = 64
MAX_DESCRIPTION = 255


class PaymentError(Exception):
    """A payment link cannot be made; the message says why."""


class UnknownCustomer(PaymentError):
    def __init__(self, customer_code: str) -> None:
        super().__init__(f"no customer with code {customer_code!r}")
        self.customer_code = customer_code


class NothingToPay(PaymentError):
    """The customer has no unpaid bill (for `period`, when one was named)."""

    def __init__(self, customer_code: str, period: str | None) -> None:
        which = f"for {period}" if period else "at all"
        super().__init__(f"customer {customer_code} has no unpaid bill {which}")
        self.customer_code = customer_code
        self.period = period


class FeeAlreadyPaid(PaymentError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"the fee for {reference!r} is already paid")
        self.reference = reference


@dataclass(frozen=True)
class PaymentLinkInfo:
    """A payment link as a chat shows it; `url` is where the customer pays."""

    txn_ref: str
    url: str
    purpose: Literal["bills", "fee"]
    customer_code: str | None
    reference: str | None
    description: str
    order_info: str  # what the gateway is told is being paid (its vnp_OrderInfo)
    amount: int  # whole VND
    periods: tuple[str, ...]  # 'YYYY-MM' of the covered bills, oldest first; () for a fee
    status: LinkStatus
    language: str
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None

    def is_open(self, now: datetime | None = None) -> bool:
        """Whether the link can still be paid."""
        return self.status == "pending" and ensure_aware(now) < self.expires_at


@dataclass(frozen=True)
class IpnResponse:
    """The answer to a gateway's IPN; `as_json()` is the body VNPay expects."""

    rsp_code: str
    message: str

    def as_json(self) -> dict[str, str]:
        return {"RspCode": self.rsp_code, "Message": self.message}


CONFIRMED = IpnResponse("00", "Confirm Success")
ORDER_NOT_FOUND = IpnResponse("01", "Order not found")
ALREADY_CONFIRMED = IpnResponse("02", "Order already confirmed")
INVALID_AMOUNT = IpnResponse("04", "Invalid amount")
INVALID_SIGNATURE = IpnResponse("97", "Invalid signature")
UNKNOWN_ERROR = IpnResponse("99", "Unknown error")


@dataclass(frozen=True)
class ReturnResult:
    """What the customer's browser is told on the return page.

    'paid': our records say paid. 'processing': the gateway says it succeeded but its IPN has
    not reached us yet. 'not_paid': cancelled, failed or expired. 'invalid': the parameters are
    not a signed callback about one of our links (nothing else is filled in then).
    """

    outcome: ReturnOutcome
    txn_ref: str | None = None
    amount: int | None = None
    customer_code: str | None = None
    periods: tuple[str, ...] = ()
    description: str = ""
    language: str = "vi"


# -- helpers -------------------------------------------------------------------------------------


def format_periods(periods: Sequence[str]) -> str:
    """['2026-09', '2026-10'] -> '09/2026, 10/2026'."""
    return ", ".join(f"{p[5:7]}/{p[:4]}" for p in periods)


def _new_txn_ref(now: datetime) -> str:
    """Our order reference: the Vietnamese date and 64 random bits, e.g. '261126A1B2C3D4E5F6A7B8C9'.

    Unguessable, because the sandbox page of a link is reached by it.
    """
    return f"{now.astimezone(VN_TZ):%y%m%d}{secrets.token_hex(8).upper()}"


def _bills_description(customer_code: str, periods: Sequence[str], language: str) -> str:
    if language == "en":
        noun = "bills" if len(periods) > 1 else "bill"
        return f"electricity {noun} for {format_periods(periods)}, customer code {customer_code}"
    return f"tiền điện kỳ {format_periods(periods)} của mã khách hàng {customer_code}"


def _order_info(link: PaymentLink, customer_code: str | None, periods: Sequence[str]) -> str:
    if link.purpose == "bills" and customer_code:
        return f"Thanh toan tien dien {customer_code} ky {' '.join(p[5:7] + ' ' + p[:4] for p in periods)}"
    return link.description


def _info(
    link: PaymentLink,
    customer_code: str | None,
    periods: Sequence[str],
    gateway: PaymentGateway,
    client_ip: str = "127.0.0.1",
) -> PaymentLinkInfo:
    order_info = _order_info(link, customer_code, periods)
    request = PaymentRequest(
        txn_ref=link.txn_ref,
        amount=link.amount,
        order_info=order_info,
        locale="en" if link.language == "en" else "vi",
        created_at=link.created_at,
        expires_at=link.expires_at,
        client_ip=client_ip,
    )
    return PaymentLinkInfo(
        txn_ref=link.txn_ref,
        url=gateway.payment_url(request),
        purpose="fee" if link.purpose == "fee" else "bills",
        customer_code=customer_code,
        reference=link.reference,
        description=link.description,
        order_info=order_info,
        amount=link.amount,
        periods=tuple(periods),
        status=cast(LinkStatus, link.status),  # guarded by a CHECK constraint
        language=link.language,
        created_at=link.created_at,
        expires_at=link.expires_at,
        paid_at=link.paid_at,
    )


async def _covered_bills(session: AsyncSession, link_id: int, *, lock: bool = False) -> list[Bill]:
    query = (
        select(Bill)
        .join(PaymentLinkBill, PaymentLinkBill.bill_id == Bill.id)
        .where(PaymentLinkBill.payment_link_id == link_id)
        .order_by(Bill.period)
    )
    return list(await session.scalars(query.with_for_update(of=Bill) if lock else query))


async def _customer_code(session: AsyncSession, customer_id: int | None) -> str | None:
    if customer_id is None:
        return None
    return await session.scalar(select(Customer.code).where(Customer.id == customer_id))


def _still_usable(now: datetime) -> datetime:
    """A pending link is handed out again only if a third of its window is left to pay in."""
    return now + timedelta(minutes=get_settings().payment_link_minutes) / 3


def _new_link(chat: ChatRef, gateway: PaymentGateway, now: datetime, **fields: Any) -> PaymentLink:
    return PaymentLink(
        txn_ref=_new_txn_ref(now),
        gateway=gateway.name,
        status="pending",
        channel=chat.channel,
        recipient_id=chat.recipient_id,
        language=chat.language,
        created_at=now,
        expires_at=now + timedelta(minutes=get_settings().payment_link_minutes),
        **fields,
    )


# -- creating links ------------------------------------------------------------------------------


async def create_bill_payment_link(
    chat: ChatRef,
    customer_code: str,
    period: str | None = None,
    *,
    client_ip: str = "127.0.0.1",
    now: datetime | None = None,
) -> PaymentLinkInfo:
    """A link paying all unpaid bills of `customer_code`, or only its bill for `period` ('YYYY-MM').

    The caller must have checked that `chat` owns the customer code; the confirmation goes to
    `chat` in its language. Asking again while a link for the same bills is still pending (with
    a third of its time left) gives that link again, so one bill is not offered twice.
    Raises UnknownCustomer, NothingToPay, or ValueError for a malformed period.
    """
    now = ensure_aware(now)
    code = normalize_customer_code(customer_code)
    wanted = str(Period.parse(period)) if period else None
    gateway = get_gateway()
    async with session_scope() as session:
        customer = await session.scalar(select(Customer).where(Customer.code == code))
        if customer is None:
            raise UnknownCustomer(code)
        query = select(Bill).where(Bill.customer_id == customer.id, Bill.status == "unpaid")
        if wanted:
            query = query.where(Bill.period == wanted)
        bills = list(await session.scalars(query.order_by(Bill.period)))
        if not bills:
            raise NothingToPay(code, wanted)
        periods = [bill.period for bill in bills]

        candidates = await session.scalars(
            select(PaymentLink).where(
                PaymentLink.customer_id == customer.id,
                PaymentLink.purpose == "bills",
                PaymentLink.status == "pending",
                PaymentLink.gateway == gateway.name,
                PaymentLink.channel == chat.channel,
                PaymentLink.recipient_id == chat.recipient_id,
                PaymentLink.expires_at > _still_usable(now),
            )
        )
        for candidate in candidates:
            covered = {bill.id for bill in await _covered_bills(session, candidate.id)}
            if covered == {bill.id for bill in bills}:
                candidate.language = chat.language
                return _info(candidate, code, periods, gateway, client_ip)

        link = _new_link(
            chat,
            gateway,
            now,
            customer_id=customer.id,
            purpose="bills",
            reference=None,
            description=_bills_description(code, periods, "vi"),
            amount=sum(bill.amount for bill in bills),
        )
        session.add(link)
        await session.flush()
        session.add_all(PaymentLinkBill(payment_link_id=link.id, bill_id=bill.id) for bill in bills)
        return _info(link, code, periods, gateway, client_ip)


async def create_fee_payment_link(
    chat: ChatRef,
    customer_code: str | None,
    reference: str,
    amount: int,
    description: str,
    *,
    client_ip: str = "127.0.0.1",
    now: datetime | None = None,
) -> PaymentLinkInfo:
    """A link paying a service fee of `amount` VND for `reference` (e.g. a ticket id).

    `description` says what the fee is for, in the chat's language; it appears on the
    gateway's page and in the confirmation. A pending link for the same reference and amount
    from the same chat is handed out again. The fee counts as paid once a payment exists for a
    link of `reference` (see `fee_paid`). Raises ValueError for a bad amount, reference or
    description, UnknownCustomer, or FeeAlreadyPaid.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise ValueError(f"amount must be a whole number of VND in 1..{MAX_AMOUNT}, got {amount!r}")
    reference = reference.strip()
    if not reference or len(reference) > MAX_REFERENCE:
        raise ValueError(f"reference must be 1..{MAX_REFERENCE} characters")
    description = " ".join(description.split())
    if not description or len(description) > MAX_DESCRIPTION:
        raise ValueError(f"description must be 1..{MAX_DESCRIPTION} characters")
    now = ensure_aware(now)
    gateway = get_gateway()
    async with session_scope() as session:
        code: str | None = None
        customer_id: int | None = None
        if customer_code:
            code = normalize_customer_code(customer_code)
            customer_id = await session.scalar(select(Customer.id).where(Customer.code == code))
            if customer_id is None:
                raise UnknownCustomer(code)
        if await session.scalar(select(_fee_payment_exists(reference))):
            raise FeeAlreadyPaid(reference)
        existing = await session.scalar(
            select(PaymentLink)
            .where(
                PaymentLink.purpose == "fee",
                PaymentLink.reference == reference,
                PaymentLink.amount == amount,
                PaymentLink.status == "pending",
                PaymentLink.gateway == gateway.name,
                PaymentLink.channel == chat.channel,
                PaymentLink.recipient_id == chat.recipient_id,
                PaymentLink.expires_at > _still_usable(now),
            )
            .order_by(PaymentLink.expires_at.desc())
            .limit(1)
        )
        if existing is not None:
            return _info(existing, code, (), gateway, client_ip)
        link = _new_link(
            chat,
            gateway,
            now,
            customer_id=customer_id,
            purpose="fee",
            reference=reference,
            description=description,
            amount=amount,
        )
        session.add(link)
        await session.flush()
        return _info(link, code, (), gateway, client_ip)


def _fee_payment_exists(reference: str) -> Any:
    return exists().where(
        Payment.txn_ref == PaymentLink.txn_ref,
        PaymentLink.purpose == "fee",
        PaymentLink.reference == reference,
    )


async def fee_paid(reference: str) -> bool:
    """Whether the service fee for `reference` has been paid (a payment exists for its link)."""
    async with read_scope() as session:
        return bool(await session.scalar(select(_fee_payment_exists(reference.strip()))))


async def payment_link(txn_ref: str, *, client_ip: str = "127.0.0.1") -> PaymentLinkInfo | None:
    """The link with this order reference, if it exists (for the sandbox's page)."""
    gateway = get_gateway()
    async with read_scope() as session:
        link = await session.scalar(select(PaymentLink).where(PaymentLink.txn_ref == txn_ref))
        if link is None:
            return None
        periods = [bill.period for bill in await _covered_bills(session, link.id)]
        code = await _customer_code(session, link.customer_id)
        return _info(link, code, periods, gateway, client_ip)


# -- callbacks -----------------------------------------------------------------------------------


async def handle_ipn(params: Mapping[str, str], *, now: datetime | None = None) -> IpnResponse:
    """Settle a link from the gateway's server-to-server callback (see the module docstring).

    Safe to deliver any number of times, also concurrently: the link row is locked (FOR UPDATE
    on PostgreSQL; SQLite runs one writer at a time) and payments.txn_ref is unique, so the
    bills are marked paid, the payment recorded and the confirmation queued exactly once.
    """
    gateway = get_gateway()
    try:
        callback = gateway.parse_callback(params)
    except InvalidSignature:
        return INVALID_SIGNATURE
    except CallbackError:
        log.warning("IPN with a valid signature but unreadable fields")
        return UNKNOWN_ERROR
    try:
        return await _settle(callback, gateway.name, ensure_aware(now))
    except IntegrityError:
        # Only reachable if two deliveries were not serialised by the row lock: the payment
        # is recorded once all the same, by whichever transaction committed first.
        if await _payment_recorded(callback.txn_ref):
            return ALREADY_CONFIRMED
        log.exception("IPN for order %s violated a constraint", callback.txn_ref)
        return UNKNOWN_ERROR
    except Exception:  # the contract answers 99 to anything unexpected, never an HTTP 500
        log.exception("IPN for order %s failed", callback.txn_ref)
        return UNKNOWN_ERROR


async def _payment_recorded(txn_ref: str) -> bool:
    async with read_scope() as session:
        return bool(await session.scalar(select(exists().where(Payment.txn_ref == txn_ref))))


async def _settle(callback: GatewayCallback, gateway: str, now: datetime) -> IpnResponse:
    async with session_scope() as session:
        link = await session.scalar(
            select(PaymentLink).where(PaymentLink.txn_ref == callback.txn_ref).with_for_update()
        )
        if link is None or link.gateway != gateway:
            return ORDER_NOT_FOUND
        if callback.amount != link.amount:
            return INVALID_AMOUNT
        if link.status != "pending":
            return ALREADY_CONFIRMED
        if (callback.pay_date or now) > link.expires_at:
            link.status = "expired"
            link.response_code = callback.response_code[:2]
            if callback.succeeded:
                log.warning(
                    "order %s was paid after its link expired; bills left unpaid, refund needed",
                    link.txn_ref,
                )
            return ALREADY_CONFIRMED
        if not callback.succeeded:
            link.status = "cancelled" if callback.cancelled else "failed"
            link.response_code = callback.response_code[:2]
            return CONFIRMED
        if not callback.gateway_txn_no:
            log.warning("successful IPN for order %s without a transaction number", link.txn_ref)
            return UNKNOWN_ERROR

        paid_at = callback.pay_date or now
        bills = await _covered_bills(session, link.id, lock=True)
        settled = [bill for bill in bills if bill.status == "unpaid"]
        for bill in settled:
            bill.status = "paid"
            bill.paid_at = paid_at
        if len(settled) < len(bills):
            # Another link paid some of these bills first: the money is still received and
            # recorded, but someone has to refund or credit the difference.
            log.warning("order %s covers bills that were already paid: refund or credit", link.txn_ref)
        link.status = "paid"
        link.paid_at = paid_at
        link.response_code = callback.response_code
        session.add(
            Payment(
                txn_ref=link.txn_ref,
                gateway=gateway,
                gateway_txn_no=callback.gateway_txn_no[:64],
                amount=link.amount,
                bank_code=(callback.bank_code or "")[:20] or None,
                paid_at=paid_at,
                raw_callback=callback.raw,
                recorded_at=now,
            )
        )
        code = await _customer_code(session, link.customer_id)
        periods = [bill.period for bill in bills]
        description = (
            _bills_description(code or "", periods, link.language)
            if link.purpose == "bills"
            else link.description
        )
        await enqueue(
            session,
            Notification(
                ChatRef(link.channel, link.recipient_id, link.language),
                kind="payment_received",
                response="utter_payment_received",
                values={
                    "amount": format_vnd(link.amount, link.language),
                    "periods": format_periods(periods),
                    "customer_code": code or "",
                    "txn_ref": link.txn_ref,
                    "description": description,
                },
                dedupe_key=f"payment:{link.txn_ref}",
            ),
        )
        # Flush here so that a duplicate surfaces as IntegrityError inside handle_ipn.
        await session.flush()
        log.info("order %s paid: %d VND", link.txn_ref, link.amount)
        return CONFIRMED


async def return_result(params: Mapping[str, str]) -> ReturnResult:
    """What to tell the customer whose browser the gateway sent back with `params`.

    Reports only: what our records say after the IPN, or 'processing' while a success the
    gateway reports has not reached us by IPN yet. Nothing changes here, because the browser
    can be closed, replayed or tampered with.
    """
    gateway = get_gateway()
    try:
        callback = gateway.parse_callback(params)
    except CallbackError:
        return ReturnResult("invalid")
    async with read_scope() as session:
        link = await session.scalar(
            select(PaymentLink).where(
                PaymentLink.txn_ref == callback.txn_ref, PaymentLink.gateway == gateway.name
            )
        )
        if link is None:
            return ReturnResult("invalid")
        periods = tuple(bill.period for bill in await _covered_bills(session, link.id))
        code = await _customer_code(session, link.customer_id)
    outcome: ReturnOutcome
    if link.status == "paid":
        outcome = "paid"
    elif link.status == "pending" and callback.succeeded and callback.amount == link.amount:
        outcome = "processing"
    else:
        outcome = "not_paid"
    description = (
        _bills_description(code or "", periods, link.language)
        if link.purpose == "bills"
        else link.description
    )
    return ReturnResult(
        outcome, link.txn_ref, link.amount, code, periods, description, link.language
    )
