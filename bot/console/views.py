"""The console's pages and actions: login, queue, conversation, audit log, live WebSocket.

Pages are rendered on the server (Jinja2 with autoescaping: customer text is always escaped);
a little JavaScript keeps the queue and the transcript live. Every action is a plain form POST
with the CSRF token, answered with a redirect (or JSON for `Accept: application/json`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import WSMsgType, web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from backend.clock import VN_TZ, utcnow
from backend.services import accounts, billing, handoff, outages, payments, service_requests, staff
from backend.services.handoff import HandoffError, HandoffInfo
from backend.services.payments import PaymentError
from backend.services.staff import StaffInfo
from bot.agent import Agent
from bot.console import auth
from bot.console.bus import ConsoleBus
from bot.console.conversation import (
    announce,
    end_handoff,
    send_agent_message,
    take_over,
    transcript,
)
from bot.console.hook import message_event
from bot.console.i18n import LANG_COOKIE, language_of, translator

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
FILTERS = ("waiting", "mine", "open", "resolved")
MAX_TEXT = 2000


@dataclass
class Console:
    """What the handlers need: the running agent (once the app started) and the event bus."""

    agent: Callable[[], Agent]
    bus: ConsoleBus
    canned: dict[str, dict[str, str]]


CONSOLE = web.AppKey("console", Console)

_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)


def load_canned() -> dict[str, dict[str, str]]:
    data = yaml.safe_load((HERE / "canned.yml").read_text(encoding="utf-8")) or {}
    return {str(k): {str(lang): str(text) for lang, text in v.items()} for k, v in data.items()}


def expand_canned(text: str, canned: dict[str, dict[str, str]], language: str) -> str:
    """'/chao' (alone or followed by more text) becomes the canned response in the customer's
    language; anything else is sent as typed."""
    if not text.startswith("/"):
        return text
    code, _, rest = text[1:].partition(" ")
    entry = canned.get(code.lower())
    if entry is None:
        return text
    body = entry.get(language) or entry.get("vi") or next(iter(entry.values()))
    return f"{body} {rest}".strip()


def _wait_minutes(info: HandoffInfo) -> int:
    end = info.claimed_at or info.closed_at or utcnow()
    return max(0, int((end - info.created_at).total_seconds() // 60))


def _local(moment: Any) -> str:
    return moment.astimezone(VN_TZ).strftime("%d/%m %H:%M") if moment else ""


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    lang = language_of(request)
    session = request.get(auth.SESSION_KEY)
    html = _env.get_template(template).render(
        t=translator(lang), lang=lang, me=session.staff if session else None,
        csrf=session.csrf_token if session else context.pop("login_csrf", ""), local=_local, wait=_wait_minutes, **context,
    )
    response = web.Response(text=html, status=status, content_type="text/html")
    if request.query.get("lang") in ("vi", "en"):
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, **auth.cookie_options(request))
    return response


def _done(request: web.Request, location: str, **data: Any) -> web.Response:
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"ok": True, **data})
    raise web.HTTPSeeOther(location)


def _failed(request: web.Request, error: HandoffError | str, status: int = 409) -> web.Response:
    code = error.code if isinstance(error, HandoffError) else error
    t = translator(language_of(request))
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response({"ok": False, "error": code}, status=status)
    return render(request, "error.html", status=status, message=t.get(code, t["error"]), detail=str(error))


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type == "application/json":
        body = await request.json()
        return {str(k): str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return {k: str(v) for k, v in (await request.post()).items()}


# -- login -----------------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    token = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or auth.new_login_csrf()
    response = render(request, "login.html", login_csrf=token, error=request.query.get("error"))
    response.set_cookie(auth.LOGIN_CSRF_COOKIE, token, **auth.cookie_options(request))
    return response


async def login(request: web.Request) -> web.Response:
    form = await _form(request)
    if not auth.same(form.get("csrf_token"), request.cookies.get(auth.LOGIN_CSRF_COOKIE)):
        return auth.deny(request, 403, "forbidden")
    result = await staff.login(form.get("username", "")[:60], form.get("password", "")[:200])
    if result.staff is None or result.token is None:
        raise web.HTTPSeeOther("/console/login?error=" + ("locked" if result.locked_until else "login_failed"))
    response = web.HTTPSeeOther("/console/")
    response.set_cookie(auth.SESSION_COOKIE, result.token, max_age=int(staff.SESSION_LIFETIME.total_seconds()), **auth.cookie_options(request))
    raise response


async def logout(request: web.Request) -> web.Response:
    await staff.logout(request.cookies.get(auth.SESSION_COOKIE, ""))
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(auth.SESSION_COOKIE, path="/console")
    raise response


# -- queue -----------------------------------------------------------------------------------------


async def queue_page(request: web.Request) -> web.Response:
    me = auth.current_staff(request)
    which = request.query.get("filter", "waiting")
    if which not in FILTERS:
        which = "waiting"
    await staff.touch(me.id)
    items = await handoff.list_handoffs(which, me)  # type: ignore[arg-type]
    template = "queue_rows.html" if request.query.get("fragment") else "queue.html"
    return render(request, template, items=items, which=which, filters=FILTERS)


# -- one conversation ------------------------------------------------------------------------------


async def _visible(request: web.Request) -> HandoffInfo | web.Response:
    try:
        handoff_id = int(request.match_info["id"])
    except ValueError:
        return _failed(request, "error", 404)
    info = await handoff.get_handoff(handoff_id)
    if info is None:
        return _failed(request, "error", 404)
    if not handoff.can_view(info, auth.current_staff(request)):
        return auth.deny(request, 403, "forbidden")
    return info


async def _customer_panel(info: HandoffInfo) -> list[dict[str, Any]]:
    """Verified customers of the chat with unpaid bills, open tickets and outages in the area."""
    panel = []
    for customer in await accounts.linked_customers(info.channel, info.conversation_id):
        area = await outages.customer_area(customer.code)
        incident = await outages.active_incident(area) if area else None
        requests = await service_requests.requests_for(info.channel, info.recipient_id, [customer.code])
        panel.append({
            "customer": customer,
            "unpaid": await billing.unpaid_bills(customer.code),
            "tickets": [r for r in requests if r.is_open],
            "incident": incident,
        })
    return panel


async def conversation_page(request: web.Request) -> web.Response:
    info = await _visible(request)
    if isinstance(info, web.Response):
        return info
    console = request.app[CONSOLE]
    me = auth.current_staff(request)
    others = [s for s in await staff.list_staff() if s.id != info.assigned_to]
    return render(
        request, "conversation.html", h=info, lines=await transcript(console.agent(), info.conversation_id),
        notes=await handoff.notes(info.id), panel=await _customer_panel(info), staff_list=others,
        mine=info.assigned_to == me.id or me.is_admin, canned=console.canned, resolutions=handoff.RESOLUTIONS,
        intents=sorted(console.agent().domain.intents), corrected=bool(request.query.get("corrected")),  # "bot misunderstood"
    )


def _owner(info: HandoffInfo, me: StaffInfo) -> bool:
    return info.status == "active" and (info.assigned_to == me.id or me.is_admin)


async def _owned(request: web.Request) -> HandoffInfo | web.Response:
    """The conversation of the URL if the signed-in staff member handles it (or is an admin)."""
    info = await _visible(request)
    if isinstance(info, web.Response):
        return info
    if not _owner(info, auth.current_staff(request)):
        return auth.deny(request, 403, "forbidden")
    return info


async def claim(request: web.Request) -> web.Response:
    # Not `_visible`: a conversation someone else just claimed is "taken" (409), not forbidden.
    info = await handoff.get_handoff(int(request.match_info["id"])) if request.match_info["id"].isdigit() else None
    if info is None:
        return _failed(request, "error", 404)
    me = auth.current_staff(request)
    try:
        claimed = await handoff.claim(info.id, me)
    except HandoffError as exc:
        return _failed(request, exc)
    console = request.app[CONSOLE]
    if info.status == "callback":
        await take_over(console.agent(), claimed)
    await announce(claimed, "utter_agent_joined", {"agent": me.display_name})
    await console.bus.publish({"type": "queue"})
    await console.bus.publish(message_event(claimed, "system", "claimed", author=me.display_name))
    return _done(request, f"/console/h/{info.id}", handoff_id=info.id)


async def transfer(request: web.Request) -> web.Response:
    info = await _visible(request)
    if isinstance(info, web.Response):
        return info
    form = await _form(request)
    try:
        moved = await handoff.transfer(info.id, auth.current_staff(request), int(form.get("to") or 0))
    except ValueError:
        return _failed(request, "error", 400)
    except HandoffError as exc:
        return _failed(request, exc)
    console = request.app[CONSOLE]
    await console.bus.publish({"type": "queue"})
    await console.bus.publish(message_event(moved, "system", "transferred", author=moved.assignee))
    return _done(request, "/console/?filter=mine")


async def reply(request: web.Request) -> web.Response:
    info = await _owned(request)
    if isinstance(info, web.Response):
        return info
    me = auth.current_staff(request)
    console = request.app[CONSOLE]
    text = expand_canned((await _form(request)).get("text", "").strip(), console.canned, info.language)
    if not text or len(text) > MAX_TEXT:
        return _failed(request, "error", 400)
    await send_agent_message(console.agent(), info, me.display_name, text)
    await console.bus.publish(message_event(info, "agent", text, author=me.display_name))
    return _done(request, f"/console/h/{info.id}#reply")


async def note(request: web.Request) -> web.Response:
    info = await _visible(request)
    if isinstance(info, web.Response):
        return info
    text = (await _form(request)).get("text", "").strip()
    if not text or len(text) > MAX_TEXT:
        return _failed(request, "error", 400)
    me = auth.current_staff(request)
    await handoff.add_note(info.id, me, text)
    await request.app[CONSOLE].bus.publish(message_event(info, "note", text, author=me.display_name))
    return _done(request, f"/console/h/{info.id}#notes")


async def _finish(request: web.Request, resolution: str, response: str) -> web.Response:
    info = await _visible(request)
    if isinstance(info, web.Response):
        return info
    try:
        closed = await handoff.resolve(info.id, auth.current_staff(request), resolution)
    except HandoffError as exc:
        return _failed(request, exc)
    console = request.app[CONSOLE]
    if info.status in handoff.OPEN_STATUSES:  # a callback ticket's chat was never paused
        await end_handoff(console.agent(), closed, response)
    await console.bus.publish({"type": "queue"})
    await console.bus.publish(message_event(closed, "system", resolution))
    return _done(request, "/console/")


async def handback(request: web.Request) -> web.Response:
    return await _finish(request, "handed_back", "utter_handoff_back")


async def close(request: web.Request) -> web.Response:
    resolution = (await _form(request)).get("resolution", "")
    if resolution not in handoff.RESOLUTIONS:
        return _failed(request, "error", 400)
    return await _finish(request, resolution, "utter_handoff_ended")


async def payment_link(request: web.Request) -> web.Response:
    info = await _owned(request)
    if isinstance(info, web.Response):
        return info
    me = auth.current_staff(request)
    code = (await _form(request)).get("code", "").strip().upper()
    # Only a code this chat has proved it owns: the same rule as the bot's.
    if not await accounts.is_linked(info.channel, info.conversation_id, code):
        return auth.deny(request, 403, "forbidden")
    try:
        link = await payments.create_bill_payment_link(info.chat, code)
    except PaymentError as exc:
        return _failed(request, HandoffError("error", str(exc)))
    values = {
        "customer_code": code, "amount": payments.format_vnd(link.amount, info.language),
        "periods": payments.format_periods(link.periods), "expires_at": link.expires_at.astimezone(VN_TZ).strftime("%H:%M"),
        "url": link.url,
    }
    await announce(info, "utter_payment_link", values)
    console = request.app[CONSOLE]
    await console.bus.publish(message_event(info, "agent", f"[{link.txn_ref}] {link.url}", author=me.display_name))
    return _done(request, f"/console/h/{info.id}", txn_ref=link.txn_ref)


@auth.admin_only
async def audit_page(request: web.Request) -> web.Response:
    return render(request, "audit.html", entries=await handoff.audit_log())


# -- live updates ----------------------------------------------------------------------------------


def _may_see(event: dict[str, Any], me: StaffInfo) -> bool:
    if event.get("type") != "message":
        return True
    return me.is_admin or event.get("status") in ("waiting", "callback") or event.get("assigned_to") == me.id


async def websocket(request: web.Request) -> web.WebSocketResponse:
    me = auth.current_staff(request)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    console = request.app[CONSOLE]
    await staff.touch(me.id)
    async with console.bus.subscribe() as queue:

        async def forward() -> None:
            while True:
                event = await queue.get()
                if _may_see(event, me):
                    await ws.send_json(event)

        sender = asyncio.create_task(forward())
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:  # the page's keep-alive: the agent is present
                    await staff.touch(me.id)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
                await sender
    return ws


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console/login", login_page)
    app.router.add_post("/console/login", login)
    app.router.add_post("/console/logout", logout)
    app.router.add_get("/console/", queue_page)
    app.router.add_get("/console/audit", audit_page)
    app.router.add_get("/console/ws", websocket)
    app.router.add_get("/console/h/{id}", conversation_page)
    for name, handler in (
        ("claim", claim), ("transfer", transfer), ("reply", reply), ("note", note),
        ("handback", handback), ("close", close), ("pay", payment_link),
    ):
        app.router.add_post(f"/console/h/{{id}}/{name}", handler)
    app.router.add_static("/console/static/", HERE / "static")
