"""Customer lookup, proof of ownership with its lockout, and chat links."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from backend.db import session_scope
from backend.models import ChannelLink, VerificationAttempt
from backend.services import (
    find_customer,
    is_linked,
    linked_customers,
    lock_status,
    unlink,
    verify_ownership,
)

CODE = "PE0400012345"
PHONE = "0912345678"
WRONG = "0900000000"
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


async def _count(model: type) -> int:
    async with session_scope() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_find_customer_ignores_case_and_blanks(seeded: date) -> None:
    customer = await find_customer(" pe0400012345 ")
    assert customer is not None and customer.code == CODE
    assert await find_customer("PX9999999999") is None


async def test_right_phone_links_the_chat(seeded: date) -> None:
    result = await verify_ownership("telegram", "1001", CODE, PHONE, now=T0)

    assert result.status == "ok"
    assert result.customer is not None and result.customer.name == "Nguyễn Văn An"
    assert result.attempts_left == 3 and result.locked_until is None
    assert await is_linked("telegram", "1001", CODE)
    assert [c.code for c in await linked_customers("telegram", "1001")] == [CODE]
    # The link belongs to that chat only.
    assert not await is_linked("telegram", "1002", CODE)
    assert not await is_linked("zalo", "1001", CODE)


async def test_wrong_phone_twice_then_right_phone_works(seeded: date) -> None:
    first = await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(0))
    second = await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(1))
    third = await verify_ownership("telegram", "1001", CODE, PHONE, now=minutes(2))

    assert (first.status, first.attempts_left, first.customer) == ("wrong_phone", 2, None)
    assert (second.status, second.attempts_left) == ("wrong_phone", 1)
    assert third.status == "ok"
    assert await is_linked("telegram", "1001", CODE)


async def test_three_wrong_phones_lock_even_the_right_phone_for_15_minutes(seeded: date) -> None:
    for minute in (0, 1):
        await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(minute))
    third = await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(2))

    assert (third.status, third.attempts_left, third.locked_until) == ("locked", 0, minutes(17))
    assert await lock_status("telegram", "1001", CODE, now=minutes(10)) == minutes(17)

    refused = await verify_ownership("telegram", "1001", CODE, PHONE, now=minutes(16))
    assert (refused.status, refused.locked_until, refused.customer) == ("locked", minutes(17), None)
    assert not await is_linked("telegram", "1001", CODE)

    assert await lock_status("telegram", "1001", CODE, now=minutes(17)) is None
    accepted = await verify_ownership("telegram", "1001", CODE, PHONE, now=minutes(17))
    assert accepted.status == "ok"
    assert await is_linked("telegram", "1001", CODE)


async def test_attempts_while_locked_are_not_recorded(seeded: date) -> None:
    for minute in (0, 1, 2, 5, 6):
        await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(minute))
    assert await _count(VerificationAttempt) == 3


async def test_lock_lasts_15_minutes_from_the_last_failure(seeded: date) -> None:
    # Failures spread over 14 minutes: the first one leaves the 15-minute window at minute
    # 15, but the lock must still run until 15 minutes after the last one.
    for minute in (0, 10, 14):
        await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(minute))

    still_locked = await verify_ownership("telegram", "1001", CODE, PHONE, now=minutes(28))
    assert (still_locked.status, still_locked.locked_until) == ("locked", minutes(29))
    assert (await verify_ownership("telegram", "1001", CODE, PHONE, now=minutes(29))).status == "ok"


async def test_after_a_lock_expires_the_count_starts_again(seeded: date) -> None:
    for minute in (0, 1, 2):
        await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(minute))

    again = await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(17))
    assert (again.status, again.attempts_left) == ("wrong_phone", 2)


async def test_failures_older_than_the_window_do_not_count(seeded: date) -> None:
    for minute in (0, 1):
        await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(minute))

    later = await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(16.5))
    assert (later.status, later.attempts_left) == ("wrong_phone", 2)


async def test_success_clears_earlier_failures(seeded: date) -> None:
    for minute in (0, 1):
        await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(minute))
    await verify_ownership("telegram", "1001", CODE, PHONE, now=minutes(2))

    for minute in (3, 4):
        result = await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(minute))
    assert (result.status, result.attempts_left) == ("wrong_phone", 1)


async def test_lock_is_per_chat(seeded: date) -> None:
    for minute in (0, 1, 2):
        await verify_ownership("telegram", "1001", CODE, WRONG, now=minutes(minute))

    other_sender = await verify_ownership("telegram", "2002", CODE, PHONE, now=minutes(3))
    other_channel = await verify_ownership("zalo", "1001", CODE, PHONE, now=minutes(3))
    other_code = await verify_ownership(
        "telegram", "1001", "PD0100234567", "0987654321", now=minutes(3)
    )

    assert (other_sender.status, other_channel.status, other_code.status) == ("ok", "ok", "ok")
    assert await lock_status("telegram", "2002", CODE, now=minutes(3)) is None
    assert await lock_status("telegram", "1001", CODE, now=minutes(3)) == minutes(17)


async def test_unknown_code_is_reported_and_not_recorded(seeded: date) -> None:
    result = await verify_ownership("telegram", "1001", "PX0000000000", PHONE, now=T0)

    assert (result.status, result.customer, result.locked_until) == ("unknown_code", None, None)
    assert await _count(VerificationAttempt) == 0
    assert await linked_customers("telegram", "1001") == []


@pytest.mark.parametrize("typed", ["+84 912 345 678", "0912.345.678", "84912345678"])
async def test_phone_number_formats_are_accepted(seeded: date, typed: str) -> None:
    result = await verify_ownership("telegram", "1001", "pe0400012345", typed, now=T0)
    assert result.status == "ok"


async def test_concurrent_verifications_create_one_link(seeded: date) -> None:
    results = await asyncio.gather(
        *(verify_ownership("zalo", "777", CODE, PHONE, now=T0) for _ in range(10))
    )

    assert {result.status for result in results} == {"ok"}
    assert await _count(ChannelLink) == 1
    assert len(await linked_customers("zalo", "777")) == 1


async def test_concurrent_guesses_cannot_exceed_the_limit(seeded: date) -> None:
    results = await asyncio.gather(
        *(verify_ownership("zalo", "666", CODE, WRONG, now=T0) for _ in range(10))
    )

    assert Counter(result.status for result in results) == {"wrong_phone": 2, "locked": 8}
    assert await _count(VerificationAttempt) == 3


async def test_linked_customers_in_link_order_and_unlink(seeded: date) -> None:
    await verify_ownership("rest", "web-1", "PD0100234567", "0987654321", now=minutes(0))
    await verify_ownership("rest", "web-1", CODE, PHONE, now=minutes(1))
    await verify_ownership("rest", "web-1", CODE, PHONE, now=minutes(2))  # already linked

    assert [c.code for c in await linked_customers("rest", "web-1")] == ["PD0100234567", CODE]

    assert await unlink("rest", "web-1", "pd0100234567") is True
    assert await unlink("rest", "web-1", "PD0100234567") is False
    assert await unlink("rest", "web-1", "PX0000000000") is False
    assert [c.code for c in await linked_customers("rest", "web-1")] == [CODE]


async def test_naive_now_is_refused(seeded: date) -> None:
    with pytest.raises(ValueError, match="naive"):
        await verify_ownership("rest", "x", CODE, PHONE, now=datetime(2026, 11, 26, 9, 0))


async def test_a_chat_guessing_across_many_codes_is_slowed_down(seeded: None) -> None:
    from backend.services import accounts as service

    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    codes = ["PE0400012345", "PD0100234567", "PE1300056789"]
    results = []
    for i in range(10):
        # Five minutes apart: no single code sees three failures within 15 minutes.
        result = await service.verify_ownership("rest", "guesser", codes[i % 3], f"09000000{i:02d}", now=now + timedelta(minutes=5 * i))
        results.append(result.status)
    assert set(results) == {"wrong_phone"}
    # Each code alone would allow more tries; the chat as a whole has used its hourly budget.
    refused = await service.verify_ownership("rest", "guesser", "PD0100234567", "0987654321", now=now + timedelta(minutes=46))
    assert refused.status == "locked" and refused.locked_until == now + timedelta(hours=1)
    later = await service.verify_ownership("rest", "guesser", "PD0100234567", "0987654321", now=now + timedelta(hours=1, minutes=1))
    assert later.status == "ok"


async def test_many_chats_guessing_one_code_are_slowed_down(seeded: None) -> None:
    from backend.services import accounts as service

    now = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    for i in range(20):
        await service.verify_ownership("rest", f"bot-{i}", "PE0400012345", "0900000000", now=now)
    blocked = await service.verify_ownership("rest", "someone-new", "PE0400012345", "0900000001", now=now + timedelta(minutes=1))
    assert blocked.status == "locked"
