"""Console sessions, roles and CSRF.

Every route under /console except the login page and static files needs a live staff session
(cookie `console_session`, HttpOnly, SameSite=Strict): 401 without one, 403 for a role that may
not. Every POST carries the session's CSRF token (form field `csrf_token` or header
`X-CSRF-Token`); the login form, before any session, uses a double-submit cookie. WebSockets
must come from the console's own origin.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from backend.services import staff
from backend.services.staff import SessionInfo, StaffInfo

SESSION_COOKIE = "console_session"
LOGIN_CSRF_COOKIE = "console_login_csrf"
SESSION_KEY = web.RequestKey("console_session", SessionInfo)
PUBLIC_PATHS = ("/console/login", "/console/static/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def cookie_options(request: web.Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "Strict", "path": "/console", "secure": request.secure}


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def session_of(request: web.Request) -> SessionInfo:
    return request[SESSION_KEY]


def current_staff(request: web.Request) -> StaffInfo:
    return request[SESSION_KEY].staff


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "") or request.headers.get("Upgrade", "").lower() == "websocket"


def deny(request: web.Request, status: int, key: str) -> web.Response:
    """401/403 as JSON for API clients, as a small page with a way out for browsers."""
    from bot.console.i18n import language_of, translator  # local: i18n is only needed here

    t = translator(language_of(request))
    if _wants_json(request):
        return web.json_response({"error": t[key]}, status=status)
    body = (
        f'<!doctype html><html lang="{language_of(request)}"><meta charset="utf-8"><title>{status}</title>'
        f'<link rel="stylesheet" href="/console/static/console.css"><main class="narrow"><h1>{status}</h1>'
        f'<p>{t[key]}</p><p><a href="/console/login">{t["login"]}</a></p></main></html>'
    )
    return web.Response(text=body, status=status, content_type="text/html")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is not None and origin.split("://", 1)[-1] == request.host


@web.middleware
async def console_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/console"):
        return await handler(request)
    if request.path.startswith(PUBLIC_PATHS):
        return _secure(await handler(request))
    session = await staff.session_for(request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        return deny(request, 401, "unauthorized")
    request[SESSION_KEY] = session
    if request.headers.get("Upgrade", "").lower() == "websocket" and not _same_origin(request):
        return deny(request, 403, "forbidden")
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        given = request.headers.get("X-CSRF-Token")
        if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            given = str((await request.post()).get("csrf_token") or "")
        if not same(given, session.csrf_token):
            return deny(request, 403, "forbidden")
    return _secure(await handler(request))


def _secure(response: web.StreamResponse) -> web.StreamResponse:
    """No caching of staff pages, no framing, scripts from this origin only."""
    if not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        )
    return response


def admin_only(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        if not current_staff(request).is_admin:
            return deny(request, 403, "forbidden")
        return await handler(request)

    return wrapped
