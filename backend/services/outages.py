"""Outages: customers' reports grouped into incidents per ward, known incidents with cause and
expected restoration, planned maintenance, and the "power is back" notice to every reporter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.areas import area_key, mentions_area
from backend.clock import ensure_aware, today_vn, vn_datetime
from backend.db import read_scope, session_scope, upsert_insert
from backend.identifiers import normalize_customer_code
from backend.models import (
    Customer,
    OutageIncident,
    OutageReport,
    OutageSubscription,
    PlannedOutage,
)
from backend.services.notifications import ChatRef, Notification, enqueue
from backend.services.service_requests import next_ticket_number

# Reports in the same ward join the incident whose latest report is this recent.
GROUPING_WINDOW = timedelta(hours=2)


@dataclass(frozen=True)
class Area:
    ward: str
    district: str
    province: str

    @property
    def key(self) -> str:
        return area_key(self.ward)


@dataclass(frozen=True)
class IncidentInfo:
    ref: str
    area: Area
    cause: str | None
    source: str
    status: str
    started_at: datetime
    expected_restore_at: datetime | None
    restored_at: datetime | None
    reports: int


@dataclass(frozen=True)
class PlannedInfo:
    area: Area
    detail: str
    reason: str
    start_at: datetime
    end_at: datetime


@dataclass(frozen=True)
class ReportResult:
    report_ref: str
    incident: IncidentInfo
    known_before: bool  # staff already knew, or others had reported it
    planned: PlannedInfo | None  # maintenance under way in that area, if any


async def _incident_info(session: AsyncSession, row: OutageIncident) -> IncidentInfo:
    reports = await session.scalar(select(func.count()).where(OutageReport.incident_id == row.id))
    return IncidentInfo(
        row.ref,
        Area(row.ward, row.district, row.province),
        row.cause,
        row.source,
        row.status,
        row.started_at,
        row.expected_restore_at,
        row.restored_at,
        int(reports or 0),
    )


def _planned_info(row: PlannedOutage) -> PlannedInfo:
    return PlannedInfo(Area(row.ward, row.district, row.province), row.detail, row.reason, row.start_at, row.end_at)


async def known_areas() -> list[Area]:
    """Every ward the backend knows: customers', incidents', planned outages'."""
    async with read_scope() as session:
        rows = set()
        for model in (Customer, OutageIncident, PlannedOutage):
            rows |= set((await session.execute(select(model.ward, model.district, model.province).distinct())).all())
        return [Area(*r) for r in sorted(rows)]


async def find_area(*texts: str) -> Area | None:
    """The known ward named by the first text that names exactly one; the known areas are
    read once for all the texts."""
    areas = await known_areas()
    for text in texts:
        matches = [a for a in areas if mentions_area(text, a.ward, a.district)]
        if len({m.key for m in matches}) == 1:
            return matches[0]
    return None


async def customer_area(customer_code: str) -> Area | None:
    async with read_scope() as session:
        row = await session.scalar(select(Customer).where(Customer.code == normalize_customer_code(customer_code)))
        return Area(row.ward, row.district, row.province) if row else None


async def _planned_now(session: AsyncSession, area: Area, now: datetime) -> PlannedInfo | None:
    row = await session.scalar(
        select(PlannedOutage)
        .where(PlannedOutage.area_key == area.key, PlannedOutage.start_at <= now, PlannedOutage.end_at > now)
        .limit(1)
    )
    return _planned_info(row) if row else None


async def report_outage(
    chat: ChatRef, area: Area, *, location_text: str, customer_code: str | None = None, now: datetime | None = None
) -> ReportResult:
    """Record a report (reference BC + date + number), attach it to the area's active incident
    or open one, and subscribe the chat to the restoration notice."""
    now = ensure_aware(now)
    async with session_scope() as session:
        incident = await session.scalar(
            select(OutageIncident)
            .where(OutageIncident.area_key == area.key, OutageIncident.status == "active")
            .order_by(OutageIncident.started_at.desc())
            .limit(1)
            .with_for_update()
        )
        if incident is not None and incident.source == "reports":
            latest = await session.scalar(select(func.max(OutageReport.created_at)).where(OutageReport.incident_id == incident.id))
            if latest is not None and ensure_aware(latest) < now - GROUPING_WINDOW:
                incident = None  # an old, unconfirmed cluster: this is a new event
        known_before = incident is not None
        if incident is None:
            incident = await _new_incident(session, area, source="reports", started_at=now)
        customer_id = None
        if customer_code:
            customer_id = await session.scalar(select(Customer.id).where(Customer.code == normalize_customer_code(customer_code)))
        prefix = f"BC{today_vn(now):%Y%m%d}"
        report = OutageReport(
            ref=f"{prefix}{await next_ticket_number(session, prefix):04d}",
            incident_id=incident.id,
            customer_id=customer_id,
            location_text=location_text[:255],
            channel=chat.channel,
            recipient_id=chat.recipient_id,
            created_at=now,
        )
        session.add(report)
        await session.execute(
            (await upsert_insert(session, OutageSubscription))
            .values(incident_id=incident.id, channel=chat.channel, recipient_id=chat.recipient_id, language=chat.language, created_at=now)
            .on_conflict_do_nothing(index_elements=["incident_id", "channel", "recipient_id"])
        )
        await session.flush()
        return ReportResult(report.ref, await _incident_info(session, incident), known_before, await _planned_now(session, area, now))


async def active_incident(area: Area) -> IncidentInfo | None:
    async with read_scope() as session:
        row = await session.scalar(
            select(OutageIncident).where(OutageIncident.area_key == area.key, OutageIncident.status == "active").limit(1)
        )
        return await _incident_info(session, row) if row else None


async def get_incident(ref: str) -> IncidentInfo | None:
    async with read_scope() as session:
        row = await session.scalar(select(OutageIncident).where(OutageIncident.ref == ref.upper()))
        return await _incident_info(session, row) if row else None


async def update_incident(
    ref: str, *, cause: str | None = None, expected_restore_at: datetime | None = None
) -> IncidentInfo:
    """Staff confirm an incident: its cause and when power should be back."""
    async with session_scope() as session:
        row = await session.scalar(select(OutageIncident).where(OutageIncident.ref == ref.upper()).with_for_update())
        if row is None:
            raise LookupError(ref)
        if cause is not None:
            row.cause = cause.strip()[:255]
        if expected_restore_at is not None:
            row.expected_restore_at = ensure_aware(expected_restore_at)
        row.source = "staff"
        return await _incident_info(session, row)


async def restore_incident(ref: str, *, now: datetime | None = None) -> tuple[IncidentInfo, int]:
    """Mark the power back and tell every subscribed chat, once. Returns (incident, notified)."""
    now = ensure_aware(now)
    async with session_scope() as session:
        row = await session.scalar(select(OutageIncident).where(OutageIncident.ref == ref.upper()).with_for_update())
        if row is None:
            raise LookupError(ref)
        if row.status == "restored":
            return await _incident_info(session, row), 0
        row.status = "restored"
        row.restored_at = now
        subscriptions = list(await session.scalars(select(OutageSubscription).where(OutageSubscription.incident_id == row.id)))
        for sub in subscriptions:
            await enqueue(
                session,
                Notification(
                    chat=ChatRef(sub.channel, sub.recipient_id, sub.language),
                    kind="outage_restored",
                    response="utter_power_restored",
                    values={"ward": row.ward, "district": row.district, "incident_ref": row.ref},
                    dedupe_key=f"outage:{row.ref}:restored:{sub.id}",
                ),
            )
        return await _incident_info(session, row), len(subscriptions)


async def planned_outages(area: Area | None, start: date, end: date) -> list[PlannedInfo]:
    """Planned outages overlapping the days start..end (Vietnamese calendar), by start time."""
    window_start, window_end = vn_datetime(start), vn_datetime(end) + timedelta(days=1)
    async with read_scope() as session:
        query = select(PlannedOutage).where(PlannedOutage.start_at < window_end, PlannedOutage.end_at > window_start)
        if area is not None:
            query = query.where(PlannedOutage.area_key == area.key)
        return [_planned_info(r) for r in await session.scalars(query.order_by(PlannedOutage.start_at).limit(20))]


async def _new_incident(
    session: AsyncSession,
    area: Area,
    *,
    source: str,
    started_at: datetime,
    cause: str | None = None,
    expected_restore_at: datetime | None = None,
    ref: str | None = None,
) -> OutageIncident:
    """A new active incident, numbered SC + date + sequence unless `ref` is given."""
    if ref is None:
        prefix = f"SC{today_vn(started_at):%Y%m%d}"
        ref = f"{prefix}{await next_ticket_number(session, prefix):03d}"
    row = OutageIncident(
        ref=ref,
        ward=area.ward,
        district=area.district,
        province=area.province,
        area_key=area.key,
        cause=cause,
        source=source,
        status="active",
        started_at=started_at,
        expected_restore_at=ensure_aware(expected_restore_at) if expected_restore_at else None,
    )
    session.add(row)
    await session.flush()
    return row


async def add_incident(
    area: Area, *, cause: str, expected_restore_at: datetime | None, started_at: datetime | None = None, ref: str | None = None
) -> IncidentInfo:
    """An incident staff know about (also used by the demo seed); returns the existing one
    for `ref` if it is there already."""
    async with session_scope() as session:
        if ref:
            existing = await session.scalar(select(OutageIncident).where(OutageIncident.ref == ref))
            if existing is not None:
                return await _incident_info(session, existing)
        row = await _new_incident(
            session, area, source="staff", started_at=ensure_aware(started_at), cause=cause, expected_restore_at=expected_restore_at, ref=ref
        )
        return await _incident_info(session, row)


async def add_planned_outage(area: Area, *, detail: str, reason: str, start_at: datetime, end_at: datetime) -> None:
    """Add a planned outage unless the same area and start time is there already."""
    async with session_scope() as session:
        exists = await session.scalar(
            select(PlannedOutage.id).where(PlannedOutage.area_key == area.key, PlannedOutage.start_at == ensure_aware(start_at))
        )
        if exists is None:
            session.add(
                PlannedOutage(
                    ward=area.ward,
                    district=area.district,
                    province=area.province,
                    area_key=area.key,
                    detail=detail,
                    reason=reason,
                    start_at=ensure_aware(start_at),
                    end_at=ensure_aware(end_at),
                )
            )


