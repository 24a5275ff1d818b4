"""Customer lookup and proof of ownership: which chats may see which customer's data.

A chat (channel + sender id) proves it speaks for a customer by giving the customer code and
the phone number on file; it is then linked to that customer. Wrong phone numbers are counted
per chat and code, and too many in a short time lock that pair for a while, so the phone number
cannot be guessed by trying. Every public function runs in its own transaction.
"""

from __future__ import annotations

import functools
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    CursorResult,
    Row,
    Select,
    bindparam,
    delete,
    exists,
    insert,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.clock import ensure_aware
from backend.db import read_connection, read_scope, session_scope, upsert_insert
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


# The columns a CustomerInfo is made of: lookups select these (no ORM objects on the hot paths
# of a turn) and build the value straight from the row.
_CUSTOMER_COLUMNS = (
    Customer.code,
    Customer.name,
    Customer.phone,
    Customer.address,
    Customer.ward,
    Customer.district,
    Customer.province,
    Customer.tariff_code,
)


# Prebuilt statements (bound parameters, no per-call construction or cache-key work) for the
# lookups that run on most turns.
_CUSTOMER_BY_CODE = select(*_CUSTOMER_COLUMNS).where(Customer.code == bindparam("code"))
# Locking the customer row serialises concurrent attempts on PostgreSQL (see verify_ownership).
_CUSTOMER_TO_VERIFY = (
    select(Customer.id, *_CUSTOMER_COLUMNS).where(Customer.code == bindparam("code")).with_for_update(key_share=True)
)
_RECORD_ATTEMPT = insert(VerificationAttempt)
_LINKED_CUSTOMERS = (
    select(*_CUSTOMER_COLUMNS)
    .join(ChannelLink, ChannelLink.customer_id == Customer.id)
    .where(ChannelLink.channel == bindparam("channel"), ChannelLink.sender_id == bindparam("sender_id"))
    .order_by(ChannelLink.linked_at, ChannelLink.id)
)


def customer_info(row: Customer | Row[Any]) -> CustomerInfo:
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


@dataclass(frozen=True)
class _Attempts:
    """The recent attempts the lockout and the throttles look at, read in one statement."""

    of_pair: list[tuple[datetime, bool]]  # newest first, at most `max_attempts`
    chat_failures: list[datetime]  # this chat's failures in the last hour, newest first
    code_failures: list[datetime]  # this code's failures in the last hour, newest first


@functools.lru_cache(maxsize=8)
def _attempts_statement(max_attempts: int, chat_limit: int | None, code_limit: int | None) -> Select[Any]:
    """The statement of `_recent_attempts`, built once per set of limits (they are settings):
    bound parameters channel, sender_id, code and, with the throttles, hour_ago."""
    attempt = VerificationAttempt
    chat = (attempt.channel == bindparam("channel"), attempt.sender_id == bindparam("sender_id"))
    of_code = attempt.customer_code == bindparam("code")
    parts = [
        select(literal_column("0").label("part"), attempt.created_at, attempt.success)
        .where(*chat, of_code)
        # At equal times a success sorts first: failures count only after the last success.
        .order_by(attempt.created_at.desc(), attempt.success.desc())
        .limit(max_attempts)
    ]
    failed = (attempt.success.is_(False), attempt.created_at > bindparam("hour_ago"))
    for part, scope, limit in ((1, chat, chat_limit), (2, (of_code,), code_limit)):
        if limit is not None:
            parts.append(
                select(literal_column(str(part)).label("part"), attempt.created_at, attempt.success)
                .where(*scope, *failed)
                .order_by(attempt.created_at.desc())
                .limit(limit)
            )
    # Each part keeps its own ORDER BY / LIMIT inside a subquery (SQLite allows neither on the
    # members of a compound select).
    subqueries = [part.subquery() for part in parts]
    if len(subqueries) == 1:
        return select(*subqueries[0].c)
    return union_all(*(select(*sub.c) for sub in subqueries))  # type: ignore[return-value]


async def _recent_attempts(
    executor: AsyncSession | AsyncConnection, channel: str, sender_id: str, code: str, now: datetime, *, throttles: bool
) -> _Attempts:
    """One round trip for what used to take four queries: the newest attempts of (chat, code)
    and, with `throttles`, the last hour's failures of the chat and of the code (each list
    capped at the count its rule needs)."""
    settings = get_settings()
    statement = _attempts_statement(
        settings.verification_max_attempts,
        settings.verification_chat_failures_per_hour if throttles else None,
        settings.verification_code_failures_per_hour if throttles else None,
    )
    params: dict[str, Any] = {"channel": channel, "sender_id": sender_id, "code": code}
    if throttles:
        params["hour_ago"] = now - timedelta(hours=1)
    found = _Attempts([], [], [])
    for part, created_at, success in await executor.execute(statement, params):
        if part == 0:
            found.of_pair.append((created_at, bool(success)))
        else:
            (found.chat_failures if part == 1 else found.code_failures).append(created_at)
    # A compound select keeps no order across its parts: put each list back in newest-first.
    for times in (found.chat_failures, found.code_failures):
        times.sort(reverse=True)
    found.of_pair.sort(reverse=True)
    return found


def _lock_state(attempts: _Attempts, now: datetime) -> _LockState:
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
    # The failures since the last success, newest first: the newest attempts up to a success.
    newest_failures: list[datetime] = []
    for created_at, success in attempts.of_pair:
        if success:
            break
        newest_failures.append(created_at)

    locked_until = None
    if len(newest_failures) >= max_attempts and newest_failures[0] - newest_failures[-1] < window:
        end = newest_failures[0] + window
        if end > now:
            locked_until = end
    failures = sum(1 for failed_at in newest_failures if failed_at > now - window)
    return _LockState(failures=failures, locked_until=locked_until)


def _throttled_until(attempts: _Attempts) -> datetime | None:
    """Rate limits beyond one chat and one code: a chat guessing across many codes, or many
    chats guessing one code, is slowed down for an hour from its oldest counted failure."""
    settings = get_settings()
    for times, limit in (
        (attempts.chat_failures, settings.verification_chat_failures_per_hour),
        (attempts.code_failures, settings.verification_code_failures_per_hour),
    ):
        if len(times) >= limit:
            return times[limit - 1] + timedelta(hours=1)
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
    async with read_connection() as connection:
        row = (await connection.execute(_CUSTOMER_BY_CODE, {"code": normalize_customer_code(code)})).first()
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
        connection = await session.connection()  # Core statements: no ORM work per query
        customer = (await connection.execute(_CUSTOMER_TO_VERIFY, {"code": code})).first()
        if customer is None:
            return Verification("unknown_code", max_attempts, None, None)

        attempts = await _recent_attempts(connection, channel, sender_id, code, now, throttles=True)
        state = _lock_state(attempts, now)
        if state.locked_until is not None:
            return Verification("locked", 0, state.locked_until, None)
        throttled_until = _throttled_until(attempts)
        if throttled_until is not None:
            return Verification("locked", 0, throttled_until, None)

        # Constant-time comparison: response timing must not reveal how much of a guess was right.
        matched = hmac.compare_digest(
            normalize_phone(phone).encode(), normalize_phone(customer.phone).encode()
        )
        await connection.execute(
            _RECORD_ATTEMPT,
            {"channel": channel, "sender_id": sender_id, "customer_code": code, "success": matched, "created_at": now},
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
    now = ensure_aware(now)
    async with read_connection() as connection:
        attempts = await _recent_attempts(connection, channel, sender_id, normalize_customer_code(code), now, throttles=False)
    return _lock_state(attempts, now).locked_until


async def linked_customers(channel: str, sender_id: str) -> list[CustomerInfo]:
    """The customers this chat is linked to, in the order it linked them."""
    async with read_connection() as connection:
        rows = await connection.execute(_LINKED_CUSTOMERS, {"channel": channel, "sender_id": sender_id})
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
