"""The HTTP app factory: REST channel, /model/parse, /health. One app for every deployment."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from backend import db
from backend.settings import Settings, get_settings
from bot.channels.platforms import register_platform_channels
from bot.channels.rest import RestInput, bad_request
from bot.charts import register_chart_routes
from bot.console import register_console
from bot.metrics import observe_requests, register_metrics
from bot.nlu_admin import register_nlu_admin
from bot.openapi import register_openapi
from bot.payments_web import register_payment_routes
from bot.ratelimit import ip_rate_limit, register_rate_limits
from bot.readiness import register_readiness
from bot.resilience import register_resilience
from bot.runtime import Runtime, build_runtime
from bot.staff_api import register_staff_api

log = logging.getLogger(__name__)
RUNTIME = web.AppKey("runtime", Runtime)
MAX_BODY_BYTES = 64 * 1024


async def health(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    meta = runtime.agent.nlu.model.meta
    return web.json_response({"status": "ok", "model": meta.id})


async def model_parse(request: web.Request) -> web.Response:
    try:
        body: Any = await request.json()
    except ValueError:
        return bad_request("body", "the body must be valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("text"), str):
        return bad_request("text", "'text' is required and must be a string")
    if len(body["text"]) > 10_000:
        return bad_request("text", "'text' must be at most 10000 characters")
    return web.json_response(request.app[RUNTIME].agent.nlu.parse(body["text"]))


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error is JSON with a status, never an HTML page or a stack trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> web.Application:
    settings = settings or get_settings()
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[observe_requests, json_errors, ip_rate_limit])
    register_rate_limits(app, settings)  # per address (the middleware) and per sender (the channels)

    async def start(app: web.Application) -> None:
        await db.require_current_schema()
        app[RUNTIME] = runtime or build_runtime(settings)

    async def stop(app: web.Application) -> None:
        await app[RUNTIME].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    register_resilience(app)  # 503 + Retry-After on outages and while draining; tariffs kept in memory
    register_console(app, lambda: app[RUNTIME].agent, lambda: app[RUNTIME].endpoints.redis, settings)
    register_nlu_admin(app, settings, lambda: app[RUNTIME].agent, lambda: app[RUNTIME].endpoints.redis)  # inbox, model rollout
    app.router.add_get("/health", health)
    register_readiness(app, lambda: app.get(RUNTIME))  # /ready: database, Redis, NLU model
    register_metrics(app, settings, lambda: app[RUNTIME].agent.nlu.model.meta.id if RUNTIME in app else None)
    register_staff_api(app, settings)
    register_chart_routes(app)
    register_payment_routes(app, settings)
    for channel in (RestInput(),):
        channel.register(app, lambda: app[RUNTIME].agent)
    register_platform_channels(app, settings, lambda: app[RUNTIME].agent)  # Telegram, Zalo, outbox worker
    app.router.add_post("/model/parse", model_parse)
    register_openapi(app)
    return app
