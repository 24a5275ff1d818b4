"""The staff HTTP API: move service requests through their statuses, confirm and restore
outage incidents. Every route needs `Authorization: Bearer <STAFF_API_TOKEN>`; each change is
announced to the customers concerned through the outbox."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from aiohttp import web

from backend.services import outages, service_requests
from backend.services.service_requests import RequestError, RequestInfo
from backend.settings import Settings


def _request_json(info: RequestInfo) -> dict[str, Any]:
    return {
        "ticket_id": info.ticket_id,
        "service_type": info.service_type.code,
        "status": info.status,
        "customer_code": info.customer_code,
        "preferred_date": info.preferred_date.isoformat(),
        "fee": info.fee,
        "history": [{"status": e.status, "note": e.note, "actor": e.actor, "at": e.at.isoformat()} for e in info.history],
    }


def _incident_json(info: outages.IncidentInfo) -> dict[str, Any]:
    return {
        "ref": info.ref,
        "ward": info.area.ward,
        "district": info.area.district,
        "province": info.area.province,
        "cause": info.cause,
        "status": info.status,
        "expected_restore_at": info.expected_restore_at.isoformat() if info.expected_restore_at else None,
        "restored_at": info.restored_at.isoformat() if info.restored_at else None,
        "reports": info.reports,
    }


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    body = {"error": message} | ({"field": field} if field else {})
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body must be valid JSON", "body")
    return body if isinstance(body, dict) else _error(400, "the body must be a JSON object", "body")


def register_staff_api(app: web.Application, settings: Settings) -> None:
    token = settings.staff_api_token.get_secret_value() if settings.staff_api_token else ""

    @web.middleware
    async def require_token(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        if not token:
            return _error(503, "the staff API is off: set STAFF_API_TOKEN")
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
            return _error(401, "a valid bearer token is required")
        return await handler(request)

    async def get_request(request: web.Request) -> web.Response:
        info = await service_requests.get_request(request.match_info["ticket_id"])
        return web.json_response(_request_json(info)) if info else _error(404, "no such ticket")

    async def patch_request(request: web.Request) -> web.Response:
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        status, note = body.get("status"), body.get("note")
        if not isinstance(status, str):
            return _error(400, "'status' is required", "status")
        if note is not None and not isinstance(note, str):
            return _error(400, "'note' must be a string", "note")
        actor = str(body.get("actor") or "staff")[:60]
        try:
            info = await service_requests.update_status(request.match_info["ticket_id"], status, note=note, actor=f"staff:{actor}")
        except LookupError:
            return _error(404, "no such ticket")
        except RequestError as exc:
            return _error(400, exc.problem, exc.field)
        return web.json_response(_request_json(info))

    async def patch_incident(request: web.Request) -> web.Response:
        body = await _body(request)
        if isinstance(body, web.Response):
            return body
        ref = request.match_info["ref"]
        expected = body.get("expected_restore_at")
        if not isinstance(expected, str | None):
            return _error(400, "'expected_restore_at' must be an ISO 8601 time with an offset", "expected_restore_at")
        if not isinstance(body.get("cause"), str | None):
            return _error(400, "'cause' must be a string", "cause")
        try:
            expected_at = datetime.fromisoformat(expected) if isinstance(expected, str) else None
        except ValueError:
            return _error(400, "'expected_restore_at' must be an ISO 8601 time with an offset", "expected_restore_at")
        if expected_at is not None and expected_at.tzinfo is None:
            return _error(400, "'expected_restore_at' needs a UTC offset, e.g. +07:00", "expected_restore_at")
        if body.get("status") not in (None, "active", "restored"):
            return _error(400, "'status' can only be set to 'restored'", "status")
        try:
            info = await outages.get_incident(ref)
            if info is None:
                return _error(404, "no such incident")
            if body.get("cause") is not None or expected_at is not None:
                info = await outages.update_incident(ref, cause=body.get("cause"), expected_restore_at=expected_at)
            if body.get("status") == "restored":
                info, notified = await outages.restore_incident(ref)
                return web.json_response(_incident_json(info) | {"notified": notified})
        except LookupError:
            return _error(404, "no such incident")
        return web.json_response(_incident_json(info))

    app.middlewares.append(require_token)
    app.router.add_get("/api/service-requests/{ticket_id}", get_request)
    app.router.add_patch("/api/service-requests/{ticket_id}", patch_request)
    app.router.add_patch("/api/outages/{ref}", patch_incident)
