"""`GET /ready`: may this process take traffic? (`GET /health` only says it is alive.)

Ready means the database answers, Redis answers when it is configured, and the NLU model is
loaded. Each dependency gets `CHECK_SECONDS`, all at once, so the probe answers within about a
second even when a server is gone or unreachable. 200 `{"status": "ready", ...}`, else 503
naming what is not ready; error details stay in the log (by type, never a URL or a password).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from backend.services import monitoring
from bot.runtime import Runtime

log = logging.getLogger(__name__)
CHECK_SECONDS = 1.0


async def _check(name: str, probe: Awaitable[object]) -> str:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await probe
    except TimeoutError:
        log.warning("ready: %s did not answer within %.0f s", name, CHECK_SECONDS)
        return "timeout"
    except Exception as exc:
        log.warning("ready: %s unreachable (%s)", name, type(exc).__name__)
        return "unreachable"
    return "ok"


def register_readiness(app: web.Application, runtime: Callable[[], Runtime | None]) -> None:
    async def ready(request: web.Request) -> web.Response:
        current = runtime()
        redis = current.endpoints.redis if current is not None else None
        probes = [_check("database", monitoring.ping_database())]
        if redis is not None:
            probes.append(_check("redis", redis.ping()))
        states = await asyncio.gather(*probes)
        model = current.agent.nlu.model.meta.id if current is not None else None
        checks = {
            "database": states[0],
            "redis": states[1] if redis is not None else "not configured",
            "nlu": "ok" if model else "not loaded",
        }
        failing = [name for name, state in checks.items() if state not in ("ok", "not configured")]
        if failing:
            return web.json_response({"status": "not ready", "not_ready": failing, "checks": checks}, status=503)
        return web.json_response({"status": "ready", "model": model, "checks": checks})

    app.router.add_get("/ready", ready)
