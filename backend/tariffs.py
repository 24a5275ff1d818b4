"""Electricity tariffs: block-price arithmetic and lookup of the tariff in force on a date.

Vietnamese residential electricity is billed in consecutive blocks (tiers): the first 50 kWh at
one price, the next 50 at a higher one, and so on, then VAT on the whole. `compute_amount` is
that arithmetic, kept pure so bills, the seed and the chatbot's "how much would X kWh cost"
answer all agree to the dong. Prices and the VAT rate are data (the `tariffs` table), never
constants here, because both change by government decision.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from backend.clock import today_vn
from backend.db import is_unavailable, read_connection
from backend.models import Tariff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TierLine:
    """The part of a bill that falls in one tier: `kwh` units at `price` VND (before VAT)."""

    tier: int
    from_kwh: int
    to_kwh: int | None
    kwh: int
    price: int
    amount: int


@dataclass(frozen=True)
class BillAmount:
    """A bill broken down by tier; all amounts in whole VND."""

    lines: list[TierLine]
    subtotal: int
    vat: int
    total: int


@dataclass(frozen=True)
class TariffInfo:
    """A tariff as stored: `tiers` is a list of {"up_to": int | None, "price": int}."""

    code: str
    name: str
    effective_from: date
    vat_percent: int
    tiers: list[dict[str, Any]]


def _check_tiers(tiers: Sequence[Mapping[str, Any]]) -> None:
    if not tiers:
        raise ValueError("a tariff needs at least one tier")
    previous = 0
    for index, tier in enumerate(tiers):
        up_to = tier.get("up_to")
        if int(tier["price"]) < 0:
            raise ValueError(f"tier {index + 1} has a negative price")
        if up_to is None:
            if index != len(tiers) - 1:
                raise ValueError("only the last tier may be open-ended (up_to null)")
            continue
        if int(up_to) <= previous:
            raise ValueError(f"tier bounds must increase, got {up_to} after {previous}")
        previous = int(up_to)


def compute_amount(kwh: int, tiers: list[dict[str, Any]], vat_percent: int) -> BillAmount:
    """Price `kwh` on consecutive tiers, then add VAT rounded half-up to the whole dong.

    With bounds [50, 100, None], tier 1 covers kWh 1-50, tier 2 51-100 and tier 3 the rest.
    Only tiers with consumption appear in `lines`. Raises ValueError for negative kWh, for
    malformed tiers, and for consumption beyond the last tier when that tier is bounded.
    """
    if kwh < 0:
        raise ValueError(f"consumption cannot be negative, got {kwh} kWh")
    if vat_percent < 0:
        raise ValueError(f"VAT cannot be negative, got {vat_percent}%")
    _check_tiers(tiers)

    lines: list[TierLine] = []
    lower = 0  # kWh already priced by the tiers below
    for number, tier in enumerate(tiers, start=1):
        if lower >= kwh:
            break
        up_to = tier.get("up_to")
        upper = kwh if up_to is None else min(kwh, int(up_to))
        units = upper - lower
        price = int(tier["price"])
        lines.append(
            TierLine(
                tier=number,
                from_kwh=lower + 1,
                to_kwh=None if up_to is None else int(up_to),
                kwh=units,
                price=price,
                amount=units * price,
            )
        )
        lower = upper
    if lower < kwh:
        raise ValueError(f"the tiers end at {lower} kWh but {kwh} kWh were used")

    subtotal = sum(line.amount for line in lines)
    # Integer arithmetic so that half a dong always rounds up, with no float error.
    vat = (subtotal * vat_percent + 50) // 100
    return BillAmount(lines=lines, subtotal=subtotal, vat=vat, total=subtotal + vat)


def tariff_info(row: Tariff | Row[Any]) -> TariffInfo:
    return TariffInfo(
        code=row.code,
        name=row.name,
        effective_from=row.effective_from,
        vat_percent=row.vat_percent,
        tiers=[dict(tier) for tier in row.tiers],
    )


# Built once, the columns only: a price question runs it on every turn that asks one.
_IN_FORCE = (
    select(Tariff.code, Tariff.name, Tariff.effective_from, Tariff.vat_percent, Tariff.tiers)
    .where(Tariff.code == bindparam("code"), Tariff.effective_from <= bindparam("on"))
    .order_by(Tariff.effective_from.desc())
    .limit(1)
)


async def load_tariff(session: AsyncSession | AsyncConnection, code: str, on: date) -> TariffInfo:
    """Within an open session: the `code` tariff in force on `on` (see `current_tariff`)."""
    row = (await session.execute(_IN_FORCE, {"code": code, "on": on})).first()
    if row is None:
        raise LookupError(f"no {code!r} tariff in force on {on.isoformat()}")
    return tariff_info(row)


# The tariff in force today, per code, as last read: answers price questions while the database
# cannot be reached (prices change a few times a decade). Filled by every lookup for today and,
# at startup, by `remember_current_tariffs`.
_in_force: dict[str, TariffInfo] = {}


async def current_tariff(code: str, on: date | None = None) -> TariffInfo:
    """The `code` tariff with the latest `effective_from` not after `on` (default: today in Viet
    Nam). Raises LookupError when no such tariff exists. For today, the last tariff read is
    used when the database is unreachable."""
    today = today_vn()
    try:
        async with read_connection() as connection:
            tariff = await load_tariff(connection, code, on or today)
    except LookupError:
        raise
    except Exception as exc:
        remembered = _in_force.get(code)
        if remembered is None or (on or today) < today or not is_unavailable(exc):
            raise
        log.warning("database unreachable: %s tariff answered from memory", code)
        return remembered
    if (on or today) == today:
        _in_force[code] = tariff
    return tariff


async def remember_current_tariffs(codes: Sequence[str] = ("residential", "business")) -> None:
    """Read today's tariffs (at startup) so price questions are answered even if the database
    goes away before anyone asks."""
    for code in codes:
        try:
            await current_tariff(code)
        except LookupError:
            pass
