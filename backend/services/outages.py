"""Outages: customers' reports grouped into incidents per ward, known incidents with cause and
expected restoration, planned maintenance, and the "power is back" notice to every reporter."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.areas import area_key, mentions_area
from backend.clock import ensure_aware, today_vn, vn_datetime
from backend.db import get_engine, read_scope, session_scope, upsert_insert
from backend.identifiers import normalize_customer_code
from backend.models import (
    OPEN_INCIDENT,
    Customer,
    OutageIncident,
    OutageReport,
    OutageSubscription,
    PlannedOutage,
)
from backend.services.notifications import ChatRef, enqueue_to_each
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


def _incident_info(row: OutageIncident) -> IncidentInfo:
    return IncidentInfo(
        row.ref,
        Area(row.ward, row.district, row.province),
        row.cause,
        row.source,
        row.status,
        row.started_at,
        row.expected_restore_at,
        row.restored_at,
        row.report_count,
    )


def _planned_info(row: PlannedOutage) -> PlannedInfo:
    return PlannedInfo(Area(row.ward, row.district, row.province), row.detail, row.reason, row.start_at, row.end_at)


# The known wards change rarely (a new customer, incident or planned outage in a new ward) but
# are read on every outage message, and reading them means a DISTINCT over all customers: this
# process keeps them for a short while (per engine, so a reconfigured backend reads afresh), and
# forgets them at once when it adds an incident or a planned outage itself.
AREAS_TTL_SECONDS = 60.0
_areas_cache: tuple[object, float, list[Area]] | None = None


async def known_areas() -> list[Area]:
    """Every ward the backend knows: customers', incidents', planned outages' (at most
    AREAS_TTL_SECONDS old)."""
    global _areas_cache
    engine = get_engine()
    if _areas_cache is not None and _areas_cache[0] is engine and _areas_cache[1] > time.monotonic():
        return _areas_cache[2]
    async with read_scope() as session:
        rows = set()
        for model in (Customer, OutageIncident, PlannedOutage):
            rows |= set((await session.execute(select(model.ward, model.district, model.province).distinct())).all())
    areas = [Area(*r) for r in sorted(rows)]
    _areas_cache = (engine, time.monotonic() + AREAS_TTL_SECONDS, areas)
    return areas


def _forget_areas() -> None:
    global _areas_cache
    _areas_cache = None


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


class _IncidentGone(Exception):
    """The incident a report was joining was restored or lapsed meanwhile: look again."""


async def report_outage(
    chat: ChatRef, area: Area, *, location_text: str, customer_code: str | None = None, now: datetime | None = None
) -> ReportResult:
    """Record a report (reference BC + date + report number), attach it to the area's open
    incident or open one, and subscribe the chat to the restoration notice.

    A burst of reports for one ward must not queue on the incident: the incident is found
    without a lock, the report and the subscription are inserted, and only the last statement,
    one UPDATE of the incident's report counter, locks the incident row until the commit right
    after it. Opening an incident is a transaction of its own, guarded by the unique index on
    open incidents (INSERT ... ON CONFLICT DO NOTHING), so concurrent first reports join one.
    """
    now = ensure_aware(now)
    opened_here = False
    for _ in range(5):
        try:
            async with session_scope() as session:
                incident = await _open_incident(session, area)
                if incident is not None and not _went_quiet(incident, now):
                    report_ref, info = await _add_report(session, incident.id, chat, location_text, customer_code, now)
                    planned = await _planned_now(session, area, now)
                    return ReportResult(report_ref, info, not opened_here, planned)
        except _IncidentGone:
            continue
        opened_here = await _open_new_incident(area, now, quiet=incident)
    raise RuntimeError(f"could not attach an outage report in {area.ward}: its incident kept changing")


async def _open_incident(session: AsyncSession, area: Area) -> OutageIncident | None:
    """The ward's open incident (active, not lapsed), read without a lock."""
    return await session.scalar(
        select(OutageIncident).where(
            OutageIncident.area_key == area.key, OutageIncident.status == "active", OutageIncident.lapsed_at.is_(None)
        )
    )


def _went_quiet(incident: OutageIncident, now: datetime) -> bool:
    """A cluster of reports nobody confirmed, with no report for GROUPING_WINDOW: a new report
    is a new event."""
    last = incident.last_report_at
    return incident.source == "reports" and last is not None and ensure_aware(last) < now - GROUPING_WINDOW


async def _add_report(
    session: AsyncSession, incident_id: int, chat: ChatRef, location_text: str, customer_code: str | None, now: datetime
) -> tuple[str, IncidentInfo]:
    """Insert the report and the chat's subscription, then count the report on the incident
    (the one statement that locks the incident row); raises _IncidentGone if the incident is
    no longer open."""
    report_id = await _next_report_id(session)
    report_ref = f"BC{today_vn(now):%Y%m%d}{report_id:04d}"
    customer_id = None
    if customer_code:
        customer_id = select(Customer.id).where(Customer.code == normalize_customer_code(customer_code)).scalar_subquery()
    await session.execute(
        insert(OutageReport).values(
            id=report_id,
            ref=report_ref,
            incident_id=incident_id,
            customer_id=customer_id,
            location_text=location_text[:255],
            channel=chat.channel,
            recipient_id=chat.recipient_id,
            created_at=now,
        )
    )
    await session.execute(
        (await upsert_insert(session, OutageSubscription))
        .values(incident_id=incident_id, channel=chat.channel, recipient_id=chat.recipient_id, language=chat.language, created_at=now)
        .on_conflict_do_nothing(index_elements=["incident_id", "channel", "recipient_id"])
    )
    counted = await session.scalar(
        update(OutageIncident)
        .where(OutageIncident.id == incident_id, OutageIncident.status == "active", OutageIncident.lapsed_at.is_(None))
        .values(report_count=OutageIncident.report_count + 1, last_report_at=now)
        .returning(OutageIncident)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    if counted is None:
        raise _IncidentGone
    return report_ref, _incident_info(counted)


async def _next_report_id(session: AsyncSession) -> int:
    """The id the next report gets, which also numbers its reference: from the table's sequence
    on PostgreSQL (no lock, no counter row every report of the day queues on); SQLite admits one
    writer at a time, so the next id after the largest is safe there."""
    if session.bind.dialect.name == "postgresql":
        query = select(func.nextval(func.pg_get_serial_sequence(OutageReport.__tablename__, "id")))
    else:
        query = select(func.coalesce(func.max(OutageReport.id), 0) + 1)
    return int(await session.scalar(query))


async def _open_new_incident(area: Area, now: datetime, *, quiet: OutageIncident | None) -> bool:
    """Open a reports incident in the ward (lapsing `quiet`, the open one that went quiet, if
    given); False when another report opened one first (that one is used then)."""
    try:
        async with session_scope() as session:
            if quiet is not None:
                await session.execute(
                    update(OutageIncident)
                    .where(
                        OutageIncident.id == quiet.id,
                        OutageIncident.lapsed_at.is_(None),
                        OutageIncident.last_report_at < now - GROUPING_WINDOW,
                    )
                    .values(lapsed_at=now)
                )
            if await _new_incident(session, area, source="reports", started_at=now) is None:
                raise _IncidentGone  # rolls back, the incident number included
    except _IncidentGone:
        return False
    return True


async def active_incident(area: Area) -> IncidentInfo | None:
    async with read_scope() as session:
        row = await session.scalar(
            select(OutageIncident)
            .where(OutageIncident.area_key == area.key, OutageIncident.status == "active")
            .order_by(OutageIncident.lapsed_at.is_not(None), OutageIncident.started_at.desc())
            .limit(1)
        )
        return _incident_info(row) if row else None


async def get_incident(ref: str) -> IncidentInfo | None:
    async with read_scope() as session:
        row = await session.scalar(select(OutageIncident).where(OutageIncident.ref == ref.upper()))
        return _incident_info(row) if row else None


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
        return _incident_info(row)


async def restore_incident(ref: str, *, now: datetime | None = None) -> tuple[IncidentInfo, int]:
    """Mark the power back and tell every subscribed chat, once. Returns (incident, notified)."""
    now = ensure_aware(now)
    async with session_scope() as session:
        row = await session.scalar(select(OutageIncident).where(OutageIncident.ref == ref.upper()).with_for_update())
        if row is None:
            raise LookupError(ref)
        if row.status == "restored":
            return _incident_info(row), 0
        row.status = "restored"
        row.restored_at = now
        # One INSERT ... SELECT for all the subscribers, however many: the incident stays locked
        # (and the staff request waits) for one statement, not one per subscriber.
        sub = OutageSubscription
        notified = await enqueue_to_each(
            session,
            select(sub.channel, sub.recipient_id, sub.language, sub.id.label("key")).where(sub.incident_id == row.id),
            kind="outage_restored",
            response="utter_power_restored",
            values={"ward": row.ward, "district": row.district, "incident_ref": row.ref},
            dedupe_prefix=f"outage:{row.ref}:restored:",
        )
        return _incident_info(row), notified


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
) -> OutageIncident | None:
    """A new open incident, numbered SC + date + sequence unless `ref` is given; None when the
    ward has an open incident already (the unique index on open incidents)."""
    if ref is None:
        prefix = f"SC{today_vn(started_at):%Y%m%d}"
        ref = f"{prefix}{await next_ticket_number(session, prefix):03d}"
    statement = (
        (await upsert_insert(session, OutageIncident))
        .values(
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
            report_count=0,
        )
        .on_conflict_do_nothing(index_elements=["area_key"], index_where=OPEN_INCIDENT)
        .returning(OutageIncident)
    )
    row = await session.scalar(statement, execution_options={"populate_existing": True})
    _forget_areas()
    return row


async def add_incident(
    area: Area, *, cause: str, expected_restore_at: datetime | None, started_at: datetime | None = None, ref: str | None = None
) -> IncidentInfo:
    """An incident staff know about (also used by the demo seed); returns the existing one
    for `ref` if it is there already. It becomes the ward's open incident, which new reports
    join; one that was open stays active (restoring it still tells its reporters)."""
    async with session_scope() as session:
        if ref:
            existing = await session.scalar(select(OutageIncident).where(OutageIncident.ref == ref))
            if existing is not None:
                return _incident_info(existing)
        started_at = ensure_aware(started_at)
        await session.execute(
            update(OutageIncident)
            .where(OutageIncident.area_key == area.key, OutageIncident.status == "active", OutageIncident.lapsed_at.is_(None))
            .values(lapsed_at=started_at)
        )
        row = await _new_incident(
            session, area, source="staff", started_at=started_at, cause=cause, expected_restore_at=expected_restore_at, ref=ref
        )
        assert row is not None  # the ward's open incident was lapsed just above, in this transaction
        return _incident_info(row)


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
    _forget_areas()


