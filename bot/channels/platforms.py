"""The messaging platforms in the app: Telegram and Zalo routes, their shared dedupe store and
background tasks, and the process's outbox worker.

`register_platform_channels(app, settings, host)` adds the routes (a channel whose token is
unset answers 404) and the startup and shutdown hooks: at startup the shared store (Redis when
REDIS_URL is set, memory otherwise) and, when any platform is on, one outbox worker; at
shutdown the webhook tasks are finished first (their replies reach the outbox), then the worker
delivers what it holds and hands back the rest, then the platform clients close. These hooks
run in `on_shutdown`, before the runtime (which the tasks use) closes in `on_cleanup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from backend.settings import Settings
from bot.channels import telegram
from bot.channels.base import ChannelHost
from bot.channels.middleware import KeyValueStore, RateLimiter, TaskSet, build_key_value_store
from bot.channels.telegram import TelegramChannel, TelegramConfig, TelegramSender
from bot.channels.zalo import ZaloChannel, ZaloConfig
from bot.config_files import ConfigFileError, read_yaml_with_env
from bot.outbox_worker import OutboxWorker, Sender
from bot.tasks import stop_task

log = logging.getLogger(__name__)


def read_credentials(settings: Settings) -> dict[str, dict[str, Any]]:
    """credentials.yml (Rasa style, `${VAR}` / `${VAR:-default}` from the environment)."""
    path = settings.project_dir / "credentials.yml"
    if not path.exists():
        return {}
    doc = read_yaml_with_env(path)
    for key, section in doc.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigFileError(path, str(key), "must be a mapping")
    return {str(k): v or {} for k, v in doc.items()}


class PlatformChannels:
    """Telegram and Zalo of one app, and what they share."""

    def __init__(self, settings: Settings, host: Callable[[], ChannelHost]) -> None:
        self.settings = settings
        self.host = host
        credentials = read_credentials(settings)
        path = str(settings.project_dir / "credentials.yml")
        self.tasks = TaskSet()
        self.store: KeyValueStore | None = None
        ttl = settings.webhook_dedupe_ttl_seconds
        self.telegram = TelegramChannel(
            TelegramConfig.from_settings(settings, credentials.get("telegram", {})), store=self._store, tasks=self.tasks, dedupe_ttl=ttl
        )
        self.zalo = ZaloChannel(ZaloConfig.from_settings(settings, credentials.get("zalo", {}), path), store=self._store, tasks=self.tasks, dedupe_ttl=ttl)
        self.worker: OutboxWorker | None = None
        self._recovery: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    def _store(self) -> KeyValueStore:
        assert self.store is not None, "the app has not started"
        return self.store

    def register(self, app: web.Application) -> None:
        self.telegram.register(app, self.host)
        self.zalo.register(app, self.host)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)

    def senders(self) -> list[Sender]:
        """One sender per platform that is on (the outbox worker's)."""
        settings = self.settings
        senders: list[Sender] = []
        if self.telegram.enabled:
            assert self._http is not None
            limiter = RateLimiter(settings.telegram_rate_limit, settings.telegram_chat_rate_limit, settings.channel_chat_burst)
            senders.append(TelegramSender(self.telegram.bot, limiter, self.telegram.payloads, self._http))
        if self.zalo.enabled:
            senders.append(self.zalo.sender(RateLimiter(settings.zalo_rate_limit, settings.zalo_chat_rate_limit, settings.channel_chat_burst)))
        return senders

    async def _start(self, app: web.Application) -> None:
        self.store = build_key_value_store(self.settings.redis_url)
        if not (self.telegram.enabled or self.zalo.enabled):
            return
        settings = self.settings
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        worker = OutboxWorker(
            [],
            lambda item: self.host().render_notification(item),
            poll_seconds=settings.outbox_poll_seconds,
            lease_seconds=settings.outbox_lease_seconds,
            max_attempts=settings.outbox_max_attempts,
        )
        await self.telegram.start()
        await self.zalo.start(owner=worker.worker_id)
        worker.senders = {s.channel: s for s in self.senders()}
        await worker.start()
        self.worker = worker
        self._recovery = asyncio.create_task(self._recover_loop(), name="inbound-recovery")

    async def recover(self) -> int:
        """Handle the updates that a worker acknowledged and died before handling."""
        settings, handled = self.settings, 0
        for channel in (self.telegram, self.zalo):
            if channel.enabled and channel.edge is not None:
                handled += await channel.edge.recover(settings.inbound_recover_after_seconds, lease_seconds=settings.outbox_lease_seconds)
        return handled

    async def _recover_loop(self) -> None:
        while True:
            try:
                await self.recover()
            except Exception as exc:  # the database is away: look again at the next poll
                log.warning("inbound recovery failed: %s", exc)
            await asyncio.sleep(self.settings.inbound_recover_poll_seconds)

    async def _stop(self, app: web.Application) -> None:
        await stop_task(self._recovery)
        self._recovery = None
        await self.tasks.drain(grace_seconds=30)
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        await self.telegram.stop()
        await self.zalo.stop()
        if self._http is not None:
            await self._http.close()
        if self.store is not None:
            await self.store.close()


PLATFORMS = web.AppKey("platform_channels", PlatformChannels)


def register_platform_channels(app: web.Application, settings: Settings, host: Callable[[], ChannelHost]) -> PlatformChannels:
    """Add Telegram and Zalo (routes, worker, hooks) to `app`; `app[PLATFORMS]` holds them."""
    platforms = PlatformChannels(settings, host)
    platforms.register(app)
    app[PLATFORMS] = platforms
    return platforms


async def run_polling(settings: Settings, host: str, port: int, stop: asyncio.Event | None = None) -> None:
    """`python -m bot telegram poll`: the whole server on host:port (charts, payment pages,
    REST) with Telegram updates fetched by long polling instead of the webhook, for local
    development without a public https URL. Ctrl-C stops it."""
    from bot.app import create_app

    app = create_app(settings)
    platforms = app[PLATFORMS]
    if not platforms.telegram.enabled:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("polling Telegram; serving on http://%s:%d", host, port)
        poller = asyncio.create_task(telegram.poll(platforms.telegram, stop))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({poller, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (poller, stopped):
            task.cancel()
        await asyncio.gather(poller, stopped, return_exceptions=True)
    finally:
        await runner.cleanup()
