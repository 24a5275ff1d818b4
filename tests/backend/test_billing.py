"""Bill queries as the chatbot uses them, on the seeded demo data."""

from __future__ import annotations

from datetime import date

import pytest

from backend.services import bill_for_period, bill_history, latest_bill, unpaid_bills


async def test_latest_bill(seeded: date) -> None:
    bill = await latest_bill("pe0400012345", today=seeded)

    assert bill is not None
    assert (bill.customer_code, bill.period, bill.kwh, bill.status) == (
        "PE0400012345",
        "2026-10",
        312,
        "unpaid",
    )
    assert (bill.amount_before_vat, bill.vat_amount, bill.amount) == (779700, 62376, 842076)
    assert bill.paid_at is None
    # Due 2026-11-20, and "today" is the 26th.
    assert bill.overdue is True
    earlier = await latest_bill("PE0400012345", today=date(2026, 11, 20))
    assert earlier is not None and earlier.overdue is False


async def test_bill_for_period(seeded: date) -> None:
    bill = await bill_for_period("PE0400012345", "2026-08", today=seeded)

    assert bill is not None and (bill.period, bill.status, bill.overdue) == (
        "2026-08",
        "paid",
        False,
    )
    assert bill.paid_at is not None and bill.paid_at.tzinfo is not None
    assert await bill_for_period("PE0400012345", "2025-01") is None
    with pytest.raises(ValueError):
        await bill_for_period("PE0400012345", "08/2026")


async def test_unpaid_bills_oldest_first(seeded: date) -> None:
    unpaid = await unpaid_bills("PE1300056789", today=seeded)
    assert [bill.period for bill in unpaid] == ["2026-09", "2026-10"]
    assert [bill.period for bill in await unpaid_bills("PE0400012345")] == ["2026-10"]


async def test_bill_history_newest_first_and_limited(seeded: date) -> None:
    history = await bill_history("PD0100234567", months=3, today=seeded)
    assert [bill.period for bill in history] == ["2026-10", "2026-09", "2026-08"]
    assert len(await bill_history("PD0100234567")) == 6
    with pytest.raises(ValueError):
        await bill_history("PD0100234567", months=0)


async def test_unknown_customer_has_no_bills(seeded: date) -> None:
    assert await latest_bill("PX0000000000") is None
    assert await bill_for_period("PX0000000000", "2026-10") is None
    assert await unpaid_bills("PX0000000000") == []
    assert await bill_history("PX0000000000") == []
