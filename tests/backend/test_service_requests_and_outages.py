"""Ticket numbering, request validation and outage grouping on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from backend.clock import VN_TZ, today_vn, utcnow
from backend.seed import seed_demo
from backend.services import notifications, outages, service_requests
from backend.services.notifications import ChatRef
from backend.services.service_requests import RequestError

CHAT = ChatRef("rest", "tester", "vi")


async def _request(**overrides: object) -> service_requests.RequestInfo:
    fields = {
        "contact_phone": "0912345678",
        "description": "công tơ quay nhanh",
        "preferred_date": today_vn() + timedelta(days=1),
        "customer_code": "PE0400012345",
    } | overrides
    return await service_requests.create_request(CHAT, str(fields.pop("service_type", "meter_inspection")), **fields)  # type: ignore[arg-type]


async def test_concurrent_requests_get_distinct_consecutive_tickets(backend_db: str) -> None:
    await seed_demo()
    created = await asyncio.gather(*(_request() for _ in range(15)))
    tickets = sorted(r.ticket_id for r in created)
    prefix = f"YC{today_vn():%Y%m%d}"
    assert tickets == [f"{prefix}{n:03d}" for n in range(1, 16)]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"contact_phone": "12345"}, "contact_phone"),
        ({"preferred_date": date(2020, 1, 1)}, "preferred_date"),
        ({"service_type": "teleportation"}, "service_type"),
        ({"customer_code": "PE9999999999"}, "customer_code"),
        ({"service_type": "new_connection", "customer_code": None, "address": ""}, "address"),
    ],
)
async def test_bad_requests_name_the_field(backend_db: str, overrides: dict, field: str) -> None:
    await seed_demo()
    with pytest.raises(RequestError) as error:
        await _request(**overrides)
    assert error.value.field == field


async def test_status_change_is_recorded_and_notified_once(backend_db: str) -> None:
    await seed_demo()
    request = await _request()
    updated = await service_requests.update_status(request.ticket_id, "completed", note="Đạt chuẩn", actor="staff:lan")
    assert [e.status for e in updated.history] == ["received", "completed"]
    pending = await notifications.pending_for("rest", "tester")
    assert len(pending) == 1 and pending[0].payload["values"]["ticket_id"] == request.ticket_id


async def test_reports_in_one_ward_join_and_an_old_cluster_does_not(backend_db: str) -> None:
    await seed_demo()
    area = outages.Area("Phường Trung Hòa", "Quận Cầu Giấy", "Hà Nội")
    now = utcnow()
    first = await outages.report_outage(ChatRef("rest", "a"), area, location_text="Trung Hòa", now=now)
    second = await outages.report_outage(ChatRef("rest", "b"), area, location_text="Trung Hòa", now=now + timedelta(minutes=30))
    assert not first.known_before and second.known_before
    assert first.incident.ref == second.incident.ref and second.incident.reports == 2
    later = await outages.report_outage(ChatRef("rest", "c"), area, location_text="Trung Hòa", now=now + timedelta(hours=5))
    assert later.incident.ref != first.incident.ref


async def test_restoration_notifies_each_subscriber_once(backend_db: str) -> None:
    await seed_demo()
    area = outages.Area("Phường Bến Thành", "Quận 1", "TP. Hồ Chí Minh")
    for sender in ("x", "y", "x"):
        await outages.report_outage(ChatRef("rest", sender), area, location_text="Bến Thành")
    incident, notified = await outages.restore_incident("SCDEMO0001")
    assert incident.status == "restored" and notified == 2
    assert (await outages.restore_incident("SCDEMO0001"))[1] == 0
    assert len(await notifications.pending_for("rest", "x")) == 1


async def test_seeded_maintenance_is_tomorrow_eight_to_four(backend_db: str) -> None:
    await seed_demo()
    tomorrow = today_vn() + timedelta(days=1)
    area = await outages.find_area("P. Tân Phong, Q.7")
    assert area is not None
    planned = await outages.planned_outages(area, tomorrow, tomorrow)
    assert len(planned) == 1
    assert planned[0].start_at.astimezone(VN_TZ).hour == 8 and planned[0].end_at.astimezone(VN_TZ).hour == 16
