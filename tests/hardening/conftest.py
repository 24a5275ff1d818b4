"""The whole app listening on a real port, for tests that call it over the network as an
outside client would (schemathesis, fuzzing with `requests`), with Telegram and Zalo on against
the local fakes.

The app runs in an event loop of its own, in a thread, on the embedded default (SQLite and
in-memory stores), seeded with the demo data. Being in this process lets a test look at memory
(tracemalloc) and at the outbox; `live.run(coro)` runs a coroutine in the app's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from backend import db
from backend.payments import get_gateway
from backend.seed import seed_demo
from backend.settings import get_settings
from bot.app import create_app
from bot.runtime import build_runtime
from nlu import NLUModel
from tests.channels.conftest import (
    TG_SECRET,
    TG_TOKEN,
    ZALO_ACCESS,
    ZALO_APP_ID,
    ZALO_APP_SECRET,
    ZALO_REFRESH,
    channel_settings,
    free_port,
)
from tests.conftest import empty_all_tables
from tests.e2e.conftest import STAFF_TOKEN, project_nlu  # noqa: F401 - the session fixture
from tests.fakes.telegram import FakeTelegram
from tests.fakes.zalo import FakeZalo

T = TypeVar("T")
SANDBOX_SECRET = "hardening-sandbox-secret"


class LiveApp:
    """The app on http://127.0.0.1:<port>, served from its own event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-app", daemon=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.telegram: FakeTelegram | None = None
        self.zalo: FakeZalo | None = None
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run `coro` in the app's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self, database_url: str, models: Path, nlu: NLUModel, **settings: Any) -> LiveApp:
        self.thread.start()
        self.run(self._start(database_url, models, nlu, settings))
        return self

    async def _start(self, database_url: str, models: Path, nlu: NLUModel, extra: dict[str, Any]) -> None:
        db.configure(database_url)
        await empty_all_tables()
        await seed_demo()
        self.telegram = await FakeTelegram(TG_TOKEN).start()
        self.zalo = await FakeZalo(ZALO_APP_ID, ZALO_APP_SECRET, ZALO_ACCESS, ZALO_REFRESH).start()
        settings = channel_settings(database_url, None, models, self.telegram, self.zalo, self.port, **extra)
        self.app = create_app(settings, build_runtime(settings, model=nlu))
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        for fake in (self.telegram, self.zalo):
            if fake is not None:
                await fake.close()
        await db.dispose()


@pytest.fixture(scope="module")
def live(project_nlu: NLUModel, trained_models_dir: Path, sqlite_url: str) -> Iterator[LiveApp]:  # noqa: F811
    """The app, seeded, with both platforms on (their fakes), on the embedded default. The
    payment sandbox signs with a known secret so tests can sign callbacks too."""
    env = pytest.MonkeyPatch()
    # endpoints.yml reads REDIS_URL from the environment: embedded means memory stores.
    env.setenv("TRACKER_STORE", "memory")
    env.setenv("LOCK_STORE", "memory")
    env.setenv("SANDBOX_PAYMENT_SECRET", SANDBOX_SECRET)
    get_settings.cache_clear()
    get_gateway.cache_clear()
    app = LiveApp()
    try:
        yield app.start(sqlite_url, trained_models_dir, project_nlu)
    finally:
        app.stop()
        env.undo()
        get_settings.cache_clear()
        get_gateway.cache_clear()


def auth_headers(path: str) -> dict[str, str]:
    """What the legitimate caller of `path` sends: the staff token, Telegram's secret."""
    if path.startswith("/api/"):
        return {"Authorization": f"Bearer {STAFF_TOKEN}"}
    if path == "/webhooks/telegram":
        return {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    return {}
