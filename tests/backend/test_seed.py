"""The demo data other parts of the project rely on, and that seeding it twice is harmless."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select

from backend.db import session_scope
from backend.models import Base, Bill, Contract, Customer
from backend.seed import DEMO_TARIFFS, seed_demo
from backend.services import bill_history, find_customer, unpaid_bills
from backend.tariffs import compute_amount

EXPECTED_PERIODS = ["2026-10", "2026-09", "2026-08", "2026-07", "2026-06", "2026-05"]


async def _snapshot() -> tuple[dict[str, int], list[tuple]]:
    async with session_scope() as session:
        counts = {
            table.name: await session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }
        bills = (
            await session.execute(
                select(
                    Customer.code,
                    Bill.period,
                    Bill.kwh,
                    Bill.amount,
                    Bill.status,
                    Bill.due_date,
                    Bill.paid_at,
                )
                .join(Customer, Customer.id == Bill.customer_id)
                .order_by(Customer.code, Bill.period)
            )
        ).all()
    return counts, [tuple(row) for row in bills]


async def test_seeding_twice_changes_nothing(seeded: date) -> None:
    before = await _snapshot()
    await seed_demo(seeded)
    after = await _snapshot()

    assert after == before
    counts = before[0]
    assert counts["customers"] == 3
    assert counts["contracts"] == 3
    assert counts["tariffs"] == 2
    assert counts["bills"] == 18


async def test_nguyen_van_an_latest_bill_unpaid_312_kwh(seeded: date) -> None:
    customer = await find_customer("PE0400012345")
    assert customer is not None
    assert (customer.name, customer.phone, customer.tariff_code) == (
        "Nguyễn Văn An",
        "0912345678",
        "residential",
    )
    assert (customer.address, customer.ward, customer.district, customer.province) == (
        "12 Nguyễn Trãi",
        "Phường Bến Thành",
        "Quận 1",
        "TP. Hồ Chí Minh",
    )

    bills = await bill_history("PE0400012345", today=seeded)

    assert [bill.period for bill in bills] == EXPECTED_PERIODS
    latest, *earlier = bills
    assert (latest.status, latest.kwh, latest.amount) == ("unpaid", 312, 842076)
    assert latest.due_date == date(2026, 11, 20)
    assert [bill.status for bill in earlier] == ["paid"] * 5
    assert all(180 <= bill.kwh <= 350 for bill in earlier)
    assert all(bill.paid_at is not None for bill in earlier)


async def test_bill_amounts_follow_the_tariff(seeded: date) -> None:
    tiers = {spec["code"]: spec["tiers"] for spec in DEMO_TARIFFS}
    for code, tariff in [
        ("PE0400012345", "residential"),
        ("PD0100234567", "residential"),
        ("PE1300056789", "business"),
    ]:
        for bill in await bill_history(code, today=seeded):
            expected = compute_amount(bill.kwh, tiers[tariff], 8)
            assert (bill.amount_before_vat, bill.vat_amount, bill.amount) == (
                expected.subtotal,
                expected.vat,
                expected.total,
            )
            assert bill.due_date.day == 20


async def test_tran_thi_binh_has_six_paid_bills(seeded: date) -> None:
    bills = await bill_history("PD0100234567", today=seeded)
    assert [bill.period for bill in bills] == EXPECTED_PERIODS
    assert {bill.status for bill in bills} == {"paid"}
    assert await unpaid_bills("PD0100234567", today=seeded) == []


async def test_pham_thi_dung_has_one_overdue_and_one_open_bill(seeded: date) -> None:
    unpaid = await unpaid_bills("PE1300056789", today=seeded)

    assert [(bill.period, bill.overdue) for bill in unpaid] == [
        ("2026-09", True),
        ("2026-10", False),
    ]
    assert unpaid[0].due_date == date(2026, 10, 20)
    assert unpaid[1].due_date >= seeded


async def test_pham_thi_dung_before_the_20th_keeps_the_regular_due_date(backend_db: str) -> None:
    today = date(2026, 11, 10)
    await seed_demo(today)

    unpaid = await unpaid_bills("PE1300056789", today=today)

    assert [(bill.period, bill.due_date, bill.overdue) for bill in unpaid] == [
        ("2026-09", date(2026, 10, 20), True),
        ("2026-10", date(2026, 11, 20), False),
    ]


async def test_seed_for_the_real_today_gives_the_demo_situation(backend_db: str) -> None:
    # What the chatbot will show when the demo is seeded and used on the same day.
    await seed_demo()

    latest = (await bill_history("PE0400012345", months=1))[0]
    assert (latest.status, latest.kwh) == ("unpaid", 312)
    assert [bill.overdue for bill in await unpaid_bills("PE1300056789")] == [True, False]


async def test_each_customer_has_one_contract_on_its_tariff(seeded: date) -> None:
    async with session_scope() as session:
        rows = (
            await session.execute(
                select(Customer.code, Customer.tariff_code, Contract.tariff_code).join(
                    Contract, Contract.customer_id == Customer.id
                )
            )
        ).all()
    assert sorted(code for code, _, _ in rows) == ["PD0100234567", "PE0400012345", "PE1300056789"]
    assert all(customer == contract for _, customer, contract in rows)
