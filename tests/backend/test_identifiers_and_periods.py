"""Phone/customer-code normalisation and billing-period arithmetic."""

from __future__ import annotations

from datetime import date

import pytest

from backend.identifiers import normalize_customer_code, normalize_phone
from backend.periods import Period


@pytest.mark.parametrize(
    "typed",
    [
        "0912345678",
        "0912 345 678",
        "0912.345.678",
        "0912-345-678",
        "(091) 234-5678",
        "+84 912 345 678",
        "+84912345678",
        "84912345678",
        "0084 912 345 678",
    ],
)
def test_phone_numbers_normalise_to_national_form(typed: str) -> None:
    assert normalize_phone(typed) == "0912345678"


def test_non_numbers_do_not_become_valid_numbers() -> None:
    assert normalize_phone("abc") == "abc"
    assert normalize_phone("849") == "849"  # too short to be +84 and a subscriber number


def test_customer_code_normalisation() -> None:
    assert normalize_customer_code("  pe0400012345 ") == "PE0400012345"


def test_period_parse_shift_and_bounds() -> None:
    period = Period.parse("2026-01")
    assert str(period.shift(-1)) == "2025-12"
    assert str(period.shift(13)) == "2027-02"
    assert Period.containing(date(2024, 2, 10)).last_day == date(2024, 2, 29)
    assert Period.parse("2026-10") > Period.parse("2026-09")


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "10/2026", "", "2026-00"])
def test_malformed_periods_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        Period.parse(text)
