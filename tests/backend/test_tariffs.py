"""Block-tariff arithmetic and the choice of the tariff in force on a date."""

from __future__ import annotations

from datetime import date

import pytest

from backend.db import session_scope
from backend.models import Tariff
from backend.seed import DEMO_TARIFFS
from backend.tariffs import TierLine, compute_amount, current_tariff

RESIDENTIAL = DEMO_TARIFFS[0]["tiers"]
BUSINESS = DEMO_TARIFFS[1]["tiers"]


def test_312_kwh_residential_is_priced_on_five_tiers() -> None:
    amount = compute_amount(312, RESIDENTIAL, 8)

    # 50*1984 + 50*2050 + 100*2380 + 100*2998 + 12*3350
    # = 99200 + 102500 + 238000 + 299800 + 40200 = 779700; VAT 8% = 62376.
    assert amount.lines == [
        TierLine(tier=1, from_kwh=1, to_kwh=50, kwh=50, price=1984, amount=99200),
        TierLine(tier=2, from_kwh=51, to_kwh=100, kwh=50, price=2050, amount=102500),
        TierLine(tier=3, from_kwh=101, to_kwh=200, kwh=100, price=2380, amount=238000),
        TierLine(tier=4, from_kwh=201, to_kwh=300, kwh=100, price=2998, amount=299800),
        TierLine(tier=5, from_kwh=301, to_kwh=400, kwh=12, price=3350, amount=40200),
    ]
    assert (amount.subtotal, amount.vat, amount.total) == (779700, 62376, 842076)


def test_zero_kwh_costs_nothing() -> None:
    amount = compute_amount(0, RESIDENTIAL, 8)
    assert (amount.lines, amount.subtotal, amount.vat, amount.total) == ([], 0, 0, 0)


def test_tier_boundary_50_and_51_kwh() -> None:
    at_50 = compute_amount(50, RESIDENTIAL, 8)
    at_51 = compute_amount(51, RESIDENTIAL, 8)

    assert [line.kwh for line in at_50.lines] == [50]
    assert (at_50.subtotal, at_50.vat, at_50.total) == (99200, 7936, 107136)
    # The 51st kWh is the first one at the tier-2 price.
    assert [(line.tier, line.kwh, line.price) for line in at_51.lines] == [
        (1, 50, 1984),
        (2, 1, 2050),
    ]
    assert (at_51.subtotal, at_51.vat, at_51.total) == (101250, 8100, 109350)


def test_open_ended_last_tier() -> None:
    amount = compute_amount(450, RESIDENTIAL, 8)
    last = amount.lines[-1]
    assert (last.tier, last.from_kwh, last.to_kwh, last.kwh, last.price) == (6, 401, None, 50, 3460)
    # 99200 + 102500 + 238000 + 299800 + 335000 + 173000
    assert amount.subtotal == 1247500


def test_business_single_tier() -> None:
    amount = compute_amount(561, BUSINESS, 8)
    # 561 * 3152 = 1768272; 8% = 141461.76 -> 141462
    assert (amount.subtotal, amount.vat, amount.total) == (1768272, 141462, 1909734)


@pytest.mark.parametrize(
    ("price", "expected_vat"),
    [(5, 1), (4, 0), (15, 2), (14, 1)],  # 10% of 5 = 0.5 rounds up; of 14 = 1.4 down
)
def test_vat_rounds_half_up_to_the_dong(price: int, expected_vat: int) -> None:
    amount = compute_amount(1, [{"up_to": None, "price": price}], 10)
    assert amount.vat == expected_vat
    assert amount.total == price + expected_vat


def test_negative_kwh_is_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        compute_amount(-1, RESIDENTIAL, 8)


@pytest.mark.parametrize(
    "tiers",
    [
        [],
        [{"up_to": None, "price": 1}, {"up_to": 50, "price": 2}],
        [{"up_to": 100, "price": 1}, {"up_to": 50, "price": 2}],
    ],
)
def test_malformed_tiers_are_rejected(tiers: list[dict]) -> None:
    with pytest.raises(ValueError):
        compute_amount(10, tiers, 8)


def test_consumption_beyond_a_bounded_last_tier_is_rejected() -> None:
    with pytest.raises(ValueError, match="tiers end at 100"):
        compute_amount(101, [{"up_to": 100, "price": 1000}], 8)


async def test_current_tariff_picks_latest_effective_row(seeded: date) -> None:
    new_tiers = [{"up_to": None, "price": 3300}]
    async with session_scope() as session:
        session.add(
            Tariff(
                code="business",
                name="Kinh doanh 2026",
                effective_from=date(2026, 7, 1),
                vat_percent=10,
                tiers=new_tiers,
            )
        )

    before = await current_tariff("business", date(2026, 6, 30))
    after = await current_tariff("business", date(2026, 7, 1))

    assert (before.effective_from, before.vat_percent) == (date(2025, 5, 10), 8)
    assert before.tiers == BUSINESS
    assert (after.name, after.effective_from, after.vat_percent) == (
        "Kinh doanh 2026",
        date(2026, 7, 1),
        10,
    )
    assert after.tiers == new_tiers
    # Without a date: today's tariff, which by now is the 2026 one.
    assert (await current_tariff("business")).effective_from == date(2026, 7, 1)


async def test_current_tariff_before_any_tariff_raises_lookup_error(seeded: date) -> None:
    with pytest.raises(LookupError):
        await current_tariff("residential", date(2025, 5, 9))
    with pytest.raises(LookupError):
        await current_tariff("industrial", date(2026, 1, 1))
