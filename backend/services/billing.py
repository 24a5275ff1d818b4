"""Bills of a customer as the chatbot shows them: latest, by month, unpaid, history.

Whether a bill is overdue is decided here, on the Vietnamese calendar, so every channel tells
the customer the same thing. Every public function runs in its own transaction and returns
frozen `BillInfo` values; an unknown customer code simply has no bills.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import Row, Select, bindparam, select

from backend.clock import today_vn
from backend.db import read_connection
from backend.identifiers import normalize_customer_code
from backend.models import Bill, Customer
from backend.periods import Period


@dataclass(frozen=True)
class BillInfo:
    """One monthly bill; amounts in VND, `overdue` = unpaid and due before today."""

    customer_code: str
    period: str
    kwh: int
    amount_before_vat: int
    vat_amount: int
    amount: int
    due_date: date
    status: Literal["unpaid", "paid"]
    paid_at: datetime | None
    overdue: bool


def _bill_info(bill: Row[Any], code: str, today: date) -> BillInfo:
    return BillInfo(
        customer_code=code,
        period=bill.period,
        kwh=bill.kwh,
        amount_before_vat=bill.amount_before_vat,
        vat_amount=bill.vat_amount,
        amount=bill.amount,
        due_date=bill.due_date,
        status="paid" if bill.status == "paid" else "unpaid",
        paid_at=bill.paid_at,
        overdue=bill.status == "unpaid" and bill.due_date < today,
    )


# Only the columns a BillInfo needs, as plain rows: no ORM objects on a turn's hot path.
_BILL_COLUMNS = (
    Bill.period,
    Bill.kwh,
    Bill.amount_before_vat,
    Bill.vat_amount,
    Bill.amount,
    Bill.due_date,
    Bill.status,
    Bill.paid_at,
)


# The bills of the customer with code :code. Each lookup's statement is built once (bound
# parameters), so a turn does no statement construction or cache-key work.
_BILLS_OF = select(*_BILL_COLUMNS).join(Customer, Customer.id == Bill.customer_id).where(Customer.code == bindparam("code"))
_LATEST = _BILLS_OF.order_by(Bill.period.desc()).limit(1)
_FOR_PERIOD = _BILLS_OF.where(Bill.period == bindparam("period"))
_UNPAID = _BILLS_OF.where(Bill.status == "unpaid").order_by(Bill.period)
_HISTORY = _BILLS_OF.order_by(Bill.period.desc()).limit(bindparam("months"))


async def _fetch(query: Select[Any], code: str, today: date | None, **params: Any) -> list[BillInfo]:
    day = today or today_vn()
    async with read_connection() as connection:
        return [_bill_info(bill, code, day) for bill in await connection.execute(query, {"code": code, **params})]


async def latest_bill(code: str, *, today: date | None = None) -> BillInfo | None:
    """The customer's most recent bill, paid or not. `today` overrides the overdue date."""
    code = normalize_customer_code(code)
    bills = await _fetch(_LATEST, code, today)
    return bills[0] if bills else None


async def bill_for_period(code: str, period: str, *, today: date | None = None) -> BillInfo | None:
    """The bill for month `period` ('YYYY-MM'; ValueError if malformed), if there is one."""
    code = normalize_customer_code(code)
    wanted = str(Period.parse(period))
    bills = await _fetch(_FOR_PERIOD, code, today, period=wanted)
    return bills[0] if bills else None


async def unpaid_bills(code: str, *, today: date | None = None) -> list[BillInfo]:
    """The customer's unpaid bills, oldest first (the order in which they should be paid)."""
    code = normalize_customer_code(code)
    return await _fetch(_UNPAID, code, today)


async def bill_history(code: str, months: int = 12, *, today: date | None = None) -> list[BillInfo]:
    """The customer's last `months` bills (one per month), newest first."""
    if months < 1:
        raise ValueError(f"months must be at least 1, got {months}")
    code = normalize_customer_code(code)
    return await _fetch(_HISTORY, code, today, months=months)
