"""Demo data: the 2025 tariffs and three customers whose bills the chatbot can be tried on.

Other parts of the project (conversation tests, the demo script) rely on these exact customers
and figures, so change them only together with those. Seeding is idempotent: every row is
looked up by its natural key and inserted only when missing, so rerunning it (or running it
against a database where demo bills were paid meanwhile) changes nothing that already exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.clock import today_vn, utcnow, vn_datetime
from backend.db import session_scope
from backend.models import Bill, Contract, Customer, ServiceType, Tariff
from backend.periods import Period
from backend.services.outages import Area, add_incident, add_planned_outage
from backend.tariffs import compute_amount, load_tariff

TARIFF_EFFECTIVE_FROM = date(2025, 5, 10)
# VAT on electricity is 8% while the reduced rate is in force (through 2026).
TARIFF_VAT_PERCENT = 8

DEMO_TARIFFS: list[dict[str, Any]] = [
    {
        "code": "residential",
        "name": "Sinh hoạt",
        "tiers": [
            {"up_to": 50, "price": 1984},
            {"up_to": 100, "price": 2050},
            {"up_to": 200, "price": 2380},
            {"up_to": 300, "price": 2998},
            {"up_to": 400, "price": 3350},
            {"up_to": None, "price": 3460},
        ],
    },
    {
        "code": "business",
        "name": "Kinh doanh (dưới 6 kV, giờ bình thường)",
        "tiers": [{"up_to": None, "price": 3152}],
    },
]

DUE_DAY = 20  # bills fall due on the 20th of the month after the period


@dataclass(frozen=True)
class DemoCustomer:
    code: str
    name: str
    phone: str
    address: str
    ward: str
    district: str
    province: str
    tariff_code: str
    contract_number: str
    meter_serial: str
    contract_start: date
    kwh: tuple[int, ...]  # one value per billed month, oldest first
    unpaid: int  # how many of the latest bills are still unpaid
    latest_not_yet_due: bool = False


DEMO_CUSTOMERS = (
    DemoCustomer(
        code="PE0400012345",
        name="Nguyễn Văn An",
        phone="0912345678",
        address="12 Nguyễn Trãi",
        ward="Phường Bến Thành",
        district="Quận 1",
        province="TP. Hồ Chí Minh",
        tariff_code="residential",
        contract_number="HD-PE04-2018-012345",
        meter_serial="MT18E0412345",
        contract_start=date(2018, 3, 15),
        kwh=(228, 247, 296, 341, 305, 312),
        unpaid=1,
    ),
    DemoCustomer(
        code="PD0100234567",
        name="Trần Thị Bình",
        phone="0987654321",
        address="25 Trần Duy Hưng",
        ward="Phường Trung Hòa",
        district="Quận Cầu Giấy",
        province="Hà Nội",
        tariff_code="residential",
        contract_number="HD-PD01-2016-234567",
        meter_serial="MT16D0134567",
        contract_start=date(2016, 9, 1),
        kwh=(186, 203, 251, 287, 264, 219),
        unpaid=0,
    ),
    DemoCustomer(
        code="PE1300056789",
        name="Phạm Thị Dung",
        phone="0938777666",
        address="88 Nguyễn Thị Thập",
        ward="Phường Tân Phong",
        district="Quận 7",
        province="TP. Hồ Chí Minh",
        tariff_code="business",
        contract_number="HD-PE13-2021-056789",
        meter_serial="MT21E1356789",
        contract_start=date(2021, 6, 7),
        kwh=(512, 486, 603, 577, 548, 561),
        unpaid=2,
        # The demo needs one overdue and one not-yet-due bill for this customer.
        latest_not_yet_due=True,
    ),
)


def _due_date(period: Period, today: date, *, keep_open: bool) -> date:
    due = period.shift(1).first_day.replace(day=DUE_DAY)
    if keep_open and due < today:
        # Past the 20th the regular due date of the latest period has gone by; this bill is
        # shown as granted a one-month extension so that it stays "not yet due".
        due = period.shift(2).first_day.replace(day=DUE_DAY)
    return due


async def _seed_tariffs(session: AsyncSession) -> None:
    for spec in DEMO_TARIFFS:
        existing = await session.scalar(
            select(Tariff.id).where(
                Tariff.code == spec["code"], Tariff.effective_from == TARIFF_EFFECTIVE_FROM
            )
        )
        if existing is None:
            session.add(
                Tariff(
                    code=spec["code"],
                    name=spec["name"],
                    effective_from=TARIFF_EFFECTIVE_FROM,
                    vat_percent=TARIFF_VAT_PERCENT,
                    tiers=spec["tiers"],
                )
            )
    await session.flush()


async def _seed_customer(session: AsyncSession, demo: DemoCustomer) -> Customer:
    customer = await session.scalar(select(Customer).where(Customer.code == demo.code))
    if customer is None:
        customer = Customer(
            code=demo.code,
            name=demo.name,
            phone=demo.phone,
            address=demo.address,
            ward=demo.ward,
            district=demo.district,
            province=demo.province,
            tariff_code=demo.tariff_code,
        )
        session.add(customer)
        await session.flush()
    contract = await session.scalar(
        select(Contract.id).where(Contract.contract_number == demo.contract_number)
    )
    if contract is None:
        session.add(
            Contract(
                customer_id=customer.id,
                contract_number=demo.contract_number,
                meter_serial=demo.meter_serial,
                tariff_code=demo.tariff_code,
                start_date=demo.contract_start,
            )
        )
    return customer


async def _seed_bills(
    session: AsyncSession, customer: Customer, demo: DemoCustomer, today: date
) -> None:
    # Timestamps are derived from `today`, not the clock, so a given day always seeds the same
    # rows, and they are capped at the start of `today` so none lies in the future.
    as_of = vn_datetime(today)
    current = Period.containing(today)
    count = len(demo.kwh)
    for index, kwh in enumerate(demo.kwh):
        period = current.shift(index - count)
        exists = await session.scalar(
            select(Bill.id).where(Bill.customer_id == customer.id, Bill.period == str(period))
        )
        if exists is not None:
            continue
        is_latest = index == count - 1
        unpaid = index >= count - demo.unpaid
        # Bills of months before the tariff took effect are priced on it anyway: demo data.
        tariff = await load_tariff(
            session, demo.tariff_code, max(period.last_day, TARIFF_EFFECTIVE_FROM)
        )
        amount = compute_amount(kwh, tariff.tiers, tariff.vat_percent)
        next_month = period.shift(1).first_day
        issued_at = min(vn_datetime(next_month, 8), as_of)
        paid_at: datetime | None = None
        if not unpaid:
            paid_at = min(vn_datetime(next_month.replace(day=5), 10), as_of)
        session.add(
            Bill(
                customer_id=customer.id,
                period=str(period),
                kwh=kwh,
                amount_before_vat=amount.subtotal,
                vat_amount=amount.vat,
                amount=amount.total,
                due_date=_due_date(period, today, keep_open=is_latest and demo.latest_not_yet_due),
                status="unpaid" if unpaid else "paid",
                paid_at=paid_at,
                issued_at=issued_at,
            )
        )


async def seed_demo(today: date | None = None) -> None:
    """Insert the demo tariffs, customers, contracts and the bills of the six months before
    the month of `today` (default: today in Viet Nam), leaving existing rows untouched."""
    today = today or today_vn()
    async with session_scope() as session:
        await _seed_tariffs(session)
        await _seed_service_types(session)
        for demo in DEMO_CUSTOMERS:
            customer = await _seed_customer(session, demo)
            await _seed_bills(session, customer, demo, today)
    await _seed_outages(today)


# (code, Vietnamese name, English name, fee in VND with VAT, needs an existing contract).
# The reconnection fee is demo data; each power corporation publishes its own.
SERVICE_TYPES = (
    ("new_connection", "Cấp điện mới", "New connection", 0, False),
    ("meter_inspection", "Kiểm định công tơ", "Meter inspection", 0, True),
    ("meter_relocation", "Di dời công tơ", "Meter relocation", 0, True),
    ("contract_change", "Thay đổi thông tin hợp đồng", "Contract change", 0, True),
    ("ownership_transfer", "Sang tên hợp đồng", "Ownership transfer", 0, True),
    ("reconnection", "Đóng điện trở lại sau khi bị ngừng cấp điện", "Reconnection", 110_000, True),
    ("usage_purpose_change", "Thay đổi mục đích sử dụng điện", "Change of usage purpose", 0, True),
)


async def _seed_service_types(session: AsyncSession) -> None:
    for code, name_vi, name_en, fee, needs_contract in SERVICE_TYPES:
        if await session.get(ServiceType, code) is None:
            session.add(ServiceType(code=code, name_vi=name_vi, name_en=name_en, fee=fee, needs_existing_contract=needs_contract))


DEMO_INCIDENT_REF = "SCDEMO0001"


async def _seed_outages(today: date) -> None:
    """An incident in Phường Bến Thành (power back two hours after seeding) and maintenance in
    Phường Tân Phong tomorrow 08:00–16:00. Each is added once."""
    await add_incident(
        Area("Phường Bến Thành", "Quận 1", "TP. Hồ Chí Minh"),
        cause="sự cố đường dây trung thế",
        expected_restore_at=utcnow() + timedelta(hours=2),
        ref=DEMO_INCIDENT_REF,
    )
    tomorrow = today + timedelta(days=1)
    await add_planned_outage(
        Area("Phường Tân Phong", "Quận 7", "TP. Hồ Chí Minh"),
        detail="Đường Nguyễn Thị Thập, Nguyễn Văn Linh (trạm biến áp Tân Phong 3)",
        reason="bảo trì, nâng cấp lưới điện",
        start_at=vn_datetime(tomorrow, 8),
        end_at=vn_datetime(tomorrow, 16),
    )
