"""Service requests (new connection, meter inspection, reconnection, ...): created from chat,
tracked by ticket id, moved through their statuses by staff, each change told to the customer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.clock import today_vn, utcnow
from backend.db import read_scope, session_scope, upsert_insert
from backend.identifiers import normalize_customer_code, normalize_phone
from backend.models import (
    REQUEST_STATUSES,
    Customer,
    ServiceRequest,
    ServiceRequestEvent,
    ServiceType,
    TicketCounter,
)
from backend.services.notifications import ChatRef, Notification, enqueue

MAX_DESCRIPTION_CHARS = 1000
MAX_DAYS_AHEAD = 90
OPEN_STATUSES = ("received", "in_progress", "scheduled")
# What each status means to a customer, in Vietnamese and English.
STATUS_LABELS = {
    "received": ("đã tiếp nhận", "received"),
    "in_progress": ("đang xử lý", "in progress"),
    "scheduled": ("đã hẹn lịch thực hiện", "scheduled"),
    "completed": ("đã hoàn thành", "completed"),
    "cancelled": ("đã hủy", "cancelled"),
    "rejected": ("bị từ chối", "rejected"),
}


class RequestError(ValueError):
    """A request that cannot be accepted; `field` names what to fix."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class ServiceTypeInfo:
    code: str
    name_vi: str
    name_en: str
    fee: int
    needs_existing_contract: bool


@dataclass(frozen=True)
class RequestEvent:
    status: str
    note: str | None
    actor: str
    at: datetime


@dataclass(frozen=True)
class RequestInfo:
    ticket_id: str
    service_type: ServiceTypeInfo
    customer_code: str | None
    address: str | None
    contact_phone: str
    description: str
    preferred_date: date
    status: str
    fee: int
    channel: str
    recipient_id: str
    created_at: datetime
    history: tuple[RequestEvent, ...]

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def _type_info(row: ServiceType) -> ServiceTypeInfo:
    return ServiceTypeInfo(row.code, row.name_vi, row.name_en, row.fee, row.needs_existing_contract)


async def service_types() -> list[ServiceTypeInfo]:
    async with read_scope() as session:
        return [_type_info(r) for r in await session.scalars(select(ServiceType).order_by(ServiceType.code))]


async def service_type(code: str) -> ServiceTypeInfo | None:
    async with read_scope() as session:
        row = await session.get(ServiceType, code)
        return _type_info(row) if row else None


async def next_ticket_number(session: AsyncSession, prefix: str) -> int:
    """Atomically the next number for `prefix` (one counter row per prefix, bumped in place)."""
    insert = (await upsert_insert(session, TicketCounter)).values(prefix=prefix, last=1)
    statement = insert.on_conflict_do_update(
        index_elements=["prefix"], set_={"last": TicketCounter.last + 1}
    ).returning(TicketCounter.last)
    return int((await session.execute(statement)).scalar_one())


async def _load(session: AsyncSession, ticket_id: str) -> RequestInfo | None:
    row = await session.scalar(select(ServiceRequest).where(ServiceRequest.ticket_id == ticket_id.upper()))
    if row is None:
        return None
    kind = await session.get(ServiceType, row.service_type)
    code = await session.scalar(select(Customer.code).where(Customer.id == row.customer_id)) if row.customer_id else None
    events = await session.scalars(
        select(ServiceRequestEvent).where(ServiceRequestEvent.request_id == row.id).order_by(ServiceRequestEvent.id)
    )
    assert kind is not None
    return RequestInfo(
        ticket_id=row.ticket_id,
        service_type=_type_info(kind),
        customer_code=code,
        address=row.address,
        contact_phone=row.contact_phone,
        description=row.description,
        preferred_date=row.preferred_date,
        status=row.status,
        fee=row.fee,
        channel=row.channel,
        recipient_id=row.recipient_id,
        created_at=row.created_at,
        history=tuple(RequestEvent(e.status, e.note, e.actor, e.created_at) for e in events),
    )


async def create_request(
    chat: ChatRef,
    service_type_code: str,
    *,
    contact_phone: str,
    description: str,
    preferred_date: date,
    customer_code: str | None = None,
    address: str | None = None,
    today: date | None = None,
) -> RequestInfo:
    """Validate and store a request; its ticket id is YC + date + a sequence number of the day."""
    today = today or today_vn()
    phone = normalize_phone(contact_phone)
    if not phone.startswith("0") or len(phone) not in (10, 11) or not phone.isdigit():
        raise RequestError("contact_phone", "not a Vietnamese phone number")
    if preferred_date < today:
        raise RequestError("preferred_date", "is in the past")
    if (preferred_date - today).days > MAX_DAYS_AHEAD:
        raise RequestError("preferred_date", f"is more than {MAX_DAYS_AHEAD} days ahead")
    description = description.strip()[:MAX_DESCRIPTION_CHARS]
    async with session_scope() as session:
        kind = await session.get(ServiceType, service_type_code)
        if kind is None:
            raise RequestError("service_type", f"unknown service type {service_type_code!r}")
        customer_id = None
        if kind.needs_existing_contract:
            if not customer_code:
                raise RequestError("customer_code", "this service is for an existing contract")
            customer_id = await session.scalar(
                select(Customer.id).where(Customer.code == normalize_customer_code(customer_code))
            )
            if customer_id is None:
                raise RequestError("customer_code", "unknown customer code")
        elif not address or len(address.strip()) < 5:
            raise RequestError("address", "an address is needed for a new connection")
        prefix = f"YC{today:%Y%m%d}"
        ticket_id = f"{prefix}{await next_ticket_number(session, prefix):03d}"
        row = ServiceRequest(
            ticket_id=ticket_id,
            service_type=kind.code,
            customer_id=customer_id,
            address=address.strip() if address else None,
            contact_phone=phone,
            description=description,
            preferred_date=preferred_date,
            status="received",
            fee=kind.fee,
            channel=chat.channel,
            recipient_id=chat.recipient_id,
            language=chat.language,
        )
        session.add(row)
        await session.flush()
        session.add(ServiceRequestEvent(request_id=row.id, status="received", note=None, actor="bot"))
        await session.flush()
        info = await _load(session, ticket_id)
        assert info is not None
        return info


async def get_request(ticket_id: str) -> RequestInfo | None:
    async with read_scope() as session:
        return await _load(session, ticket_id)


async def requests_for(channel: str, recipient_id: str, customer_codes: list[str]) -> list[RequestInfo]:
    """Requests this chat made or that belong to customers it is linked to, newest first."""
    async with read_scope() as session:
        codes = [normalize_customer_code(c) for c in customer_codes]
        conditions = [(ServiceRequest.channel == channel) & (ServiceRequest.recipient_id == recipient_id)]
        if codes:
            conditions.append(ServiceRequest.customer_id.in_(select(Customer.id).where(Customer.code.in_(codes))))
        tickets = await session.scalars(
            select(ServiceRequest.ticket_id).where(or_(*conditions)).order_by(ServiceRequest.id.desc()).limit(10)
        )
        found = [await _load(session, t) for t in list(tickets)]
        return [r for r in found if r is not None]


async def update_status(ticket_id: str, status: str, *, note: str | None = None, actor: str = "staff") -> RequestInfo:
    """Move a request to `status`, record it in the history and tell the customer's chat."""
    if status not in REQUEST_STATUSES:
        raise RequestError("status", f"must be one of {', '.join(REQUEST_STATUSES)}")
    async with session_scope() as session:
        row = await session.scalar(
            select(ServiceRequest).where(ServiceRequest.ticket_id == ticket_id.upper()).with_for_update()
        )
        if row is None:
            raise LookupError(ticket_id)
        row.status = status
        row.updated_at = utcnow()
        event = ServiceRequestEvent(request_id=row.id, status=status, note=(note or "").strip()[:500] or None, actor=actor[:60])
        session.add(event)
        await session.flush()
        await enqueue(
            session,
            Notification(
                chat=ChatRef(row.channel, row.recipient_id, row.language),
                kind="ticket_update",
                response="utter_request_status_changed",
                values={
                    "ticket_id": row.ticket_id,
                    "status_vi": STATUS_LABELS[status][0],
                    "status_en": STATUS_LABELS[status][1],
                    "note": event.note or "",
                },
                dedupe_key=f"request:{row.ticket_id}:{event.id}",
            ),
        )
        info = await _load(session, row.ticket_id)
        assert info is not None
        return info
