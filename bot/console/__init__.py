"""The agent console: support staff take over escalated chats in a real-time web page.

`register_console(app, ...)` adds the /console routes, the session/CSRF guard, and at startup
the event bus (Redis pub/sub or in-process) and the agent's handoff hook.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from redis.asyncio import Redis

from backend.settings import Settings
from bot.agent import Agent
from bot.console.auth import console_guard
from bot.console.bus import ConsoleBus
from bot.console.hook import ConsoleHook
from bot.console.nlu_views import register_nlu_console
from bot.console.views import CONSOLE, Console, add_routes, load_canned


def register_console(
    app: web.Application, agent: Callable[[], Agent], redis: Callable[[], Redis | None], settings: Settings | None = None
) -> None:
    """Serve the console from `app`; `agent` and `redis` are read once the runtime exists."""

    async def start(app: web.Application) -> None:
        bus = ConsoleBus(redis())
        await bus.start()
        app[CONSOLE] = Console(agent, bus, load_canned())
        agent().handoff = ConsoleHook(agent(), bus)

    async def stop(app: web.Application) -> None:
        await app[CONSOLE].bus.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.middlewares.append(console_guard)
    add_routes(app)
    register_nlu_console(app, agent, redis, settings)  # training data, inbox, model versions


__all__ = ["register_console"]
