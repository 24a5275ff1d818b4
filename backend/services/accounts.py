"""Customer lookup and proof of ownership: which chats may see which customer's data.

A chat (channel + sender id) proves it speaks for a customer by giving the customer code and
the phone number on file; it is then linked to that customer. Wrong phone numbers are counted
per chat and code, and too many in a short time lock that pair for a while, so the phone number
cannot be guessed by trying. Every public function runs in its own transaction.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.clock import ensure_aware
from backend.db import read_scope, session_scope, upsert_insert
from backend.identifiers import normalize_customer_code, normalize_phone
from backend.models import ChannelLink, Customer, VerificationAttempt
from backend.settings import get_settings

VerificationStatus = Literal["ok", "wrong_phone", "locked", "unknown_code"]

# INSERT ... ON CONFLICT DO NOTHING lets concurrent verifications of the same chat race to
# create the link without an IntegrityError aborting the transaction (which on PostgreSQL
# would also discard the attempt being recorded). Both supported databases have it.
@dataclass(frozen=True)
class CustomerInfo:
    code: str
    name: str
    phone: str
    address: str
    ward: str
    district: str
    province: str
    tariff_code: str


@dataclass(frozen=True)
class Verification:
    """Outcome of `verify_ownership`; `customer` is set only when `status` is 'ok'."""

    status: VerificationStatus
    attempts_left: int  # wrong numbers this chat may still give for this code before the lock
    locked_until: datetime | None  # UTC; set when status is 'locked'
    customer: CustomerInfo | None


@dataclass(frozen=True)
class _LockState:
    failures: int  # failed attempts in the current counting window
    locked_until: datetime | None


def customer_info(row: Customer) -> CustomerInfo:
    return CustomerInfo(
        code=row.code,
        name=row.name,
        phone=row.phone,
        address=row.address,
        ward=row.ward,
        district=row.district,
        province=row.province,
        tariff_code=row.tariff_code,
    )


async def _lock_state(
    session: AsyncSession, channel: str, sender_id: str, code: str, now: datetime
) -> _LockState:
    """Count recent failures of (channel, sender_id, code) and find any lock in force.

    Failures count only after the last success and within the lock window before `now`.
    A lock starts when `max_attempts` failures fall within one window and lasts a window from
    the last of them. It is derived from the newest failures rather than from the sliding
    count, because the count drops as soon as the first of those failures ages out of the
    window, a few minutes before the lock is due to end.
    """
    settings = get_settings()
    max_attempts = settings.verification_max_attempts
    window = timedelta(minutes=settings.verification_lock_minutes)
    attempts_of_pair = (
        VerificationAttempt.channel == channel,
        VerificationAttempt.sender_id == sender_id,
        VerificationAttempt.customer_code == code,
    )
    last_success = await session.scalar(
        select(VerificationAttempt.created_at)
        .where(*attempts_of_pair, VerificationAttempt.success.is_(True))
        .order_by(VerificationAttempt.created_at.desc())
        .limit(1)
    )
    failures_query = select(VerificationAttempt.created_at).where(
        *attempts_of_pair, VerificationAttempt.success.is_(False)
    )
    if last_success is not None:
        failures_query = failures_query.where(VerificationAttempt.created_at > last_success)
    newest_failures = list(
        await session.scalars(
            failures_query.order_by(VerificationAttempt.created_at.desc()).limit(max_attempts)
        )
    )

    locked_until = None
    if len(newest_failures) >= max_attempts and newest_failures[0] - newest_failures[-1] < window:
        end = newest_failures[0] + window
        if end > now:
            locked_until = end
    failures = sum(1 for failed_at in newest_failures if failed_at > now - window)
    return _LockState(failures=failures, locked_until=locked_until)


async def _throttled_until(
    session: AsyncSession, channel: str, sender_id: str, code: str, now: datetime
) -> datetime | None:
    """Rate limits beyond one chat and one code: a chat guessing across many codes, or many
    chats guessing one code, is slowed down for an hour from its oldest counted failure."""
    settings = get_settings()
    hour_ago = now - timedelta(hours=1)
    failed = (VerificationAttempt.success.is_(False), VerificationAttempt.created_at > hour_ago)
    for scope, limit in (
        ((VerificationAttempt.channel == channel, VerificationAttempt.sender_id == sender_id), settings.verification_chat_failures_per_hour),
        ((VerificationAttempt.customer_code == code,), settings.verification_code_failures_per_hour),
    ):
        times = list(
            await session.scalars(
                select(VerificationAttempt.created_at).where(*scope, *failed).order_by(VerificationAttempt.created_at.desc()).limit(limit)
            )
        )
        if len(times) >= limit:
            return times[-1] + timedelta(hours=1)
    return None


async def _link(
    session: AsyncSession, channel: str, sender_id: str, customer_id: int, now: datetime
) -> None:
    await session.execute(
        (await upsert_insert(session, ChannelLink))
        .values(channel=channel, sender_id=sender_id, customer_id=customer_id, linked_at=now)
        .on_conflict_do_nothing(index_elements=["channel", "sender_id", "customer_id"])
    )


async def find_customer(code: str) -> CustomerInfo | None:
    """The customer with this code (any letter case, surrounding blanks ignored), if any."""
    async with read_scope() as session:
        row = await session.scalar(
            select(Customer).where(Customer.code == normalize_customer_code(code))
        )
        return customer_info(row) if row is not None else None


async def verify_ownership(
    channel: str, sender_id: str, code: str, phone: str, *, now: datetime | None = None
) -> Verification:
    """Check that the chat knows the phone number on file for customer `code`; link it if so.

    - 'unknown_code': no such customer; nothing is recorded.
    - 'locked': too many recent wrong numbers from this chat for this code; nothing is
      recorded, and even the right number is refused until `locked_until`.
    - 'wrong_phone': recorded as a failure; `attempts_left` before the lock.
    - the failure that reaches the limit returns 'locked' straight away.
    - 'ok': recorded as a success (which clears the failure count) and the chat is linked.
    `now` (timezone-aware, default the current time) exists so tests can move the clock.
    """
    now = ensure_aware(now)
    settings = get_settings()
    max_attempts = settings.verification_max_attempts
    window = timedelta(minutes=settings.verification_lock_minutes)
    code = normalize_customer_code(code)

    async with session_scope() as session:
        # Locking the customer row serialises concurrent attempts on PostgreSQL, so a burst of
        # guesses cannot all read "2 failures so far" and slip past the limit. (SQLite ignores
        # FOR UPDATE; its BEGIN IMMEDIATE already serialises writers.) NO KEY UPDATE still lets
        # other transactions insert rows that reference this customer.
        customer = await session.scalar(
            select(Customer).where(Customer.code == code).with_for_update(key_share=True)
        )
        if customer is None:
            return Verification("unknown_code", max_attempts, None, None)

        state = await _lock_state(session, channel, sender_id, code, now)
        if state.locked_until is not None:
            return Verification("locked", 0, state.locked_until, None)
        throttled_until = await _throttled_until(session, channel, sender_id, code, now)
        if throttled_until is not None:
            return Verification("locked", 0, throttled_until, None)

        # Constant-time comparison: response timing must not reveal how much of a guess was right.
        matched = hmac.compare_digest(
            normalize_phone(phone).encode(), normalize_phone(customer.phone).encode()
        )
        session.add(
            VerificationAttempt(
                channel=channel,
                sender_id=sender_id,
                customer_code=code,
                success=matched,
                created_at=now,
            )
        )
        if matched:
            await _link(session, channel, sender_id, customer.id, now)
            return Verification("ok", max_attempts, None, customer_info(customer))

        failures = state.failures + 1
        if failures >= max_attempts:
            return Verification("locked", 0, now + window, None)
        return Verification("wrong_phone", max_attempts - failures, None, None)


async def lock_status(
    channel: str, sender_id: str, code: str, *, now: datetime | None = None
) -> datetime | None:
    """Until when (channel, sender_id, code) is locked out of verification, or None."""
    async with read_scope() as session:
        state = await _lock_state(
            session, channel, sender_id, normalize_customer_code(code), ensure_aware(now)
        )
        return state.locked_until


async def linked_customers(channel: str, sender_id: str) -> list[CustomerInfo]:
    """The customers this chat is linked to, in the order it linked them."""
    async with read_scope() as session:
        rows = await session.scalars(
            select(Customer)
            .join(ChannelLink, ChannelLink.customer_id == Customer.id)
            .where(ChannelLink.channel == channel, ChannelLink.sender_id == sender_id)
            .order_by(ChannelLink.linked_at, ChannelLink.id)
        )
        return [customer_info(row) for row in rows]


async def is_linked(channel: str, sender_id: str, code: str) -> bool:
    """Whether this chat has proved ownership of customer `code`."""
    async with read_scope() as session:
        linked = await session.scalar(
            select(
                exists().where(
                    ChannelLink.channel == channel,
                    ChannelLink.sender_id == sender_id,
                    ChannelLink.customer_id == Customer.id,
                    Customer.code == normalize_customer_code(code),
                )
            )
        )
        return bool(linked)


async def unlink(channel: str, sender_id: str, code: str) -> bool:
    """Remove the link between this chat and customer `code`; False if there was none."""
    customer_id = (
        select(Customer.id).where(Customer.code == normalize_customer_code(code)).scalar_subquery()
    )
    async with session_scope() as session:
        result = await session.execute(
            delete(ChannelLink)
            .where(
                ChannelLink.channel == channel,
                ChannelLink.sender_id == sender_id,
                ChannelLink.customer_id == customer_id,
            )
            .execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount > 0
