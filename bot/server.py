"""`python -m bot serve`: one worker process, or a supervisor of N identical ones on one port.

Each worker is a whole service (`create_app`) listening with SO_REUSEPORT, so the kernel
spreads connections across them and nothing is shared in memory: conversations, locks, webhook
dedupe and console events live in Redis, everything else in PostgreSQL. That is why N > 1
needs both (`scaling_problem`).

The supervisor forwards SIGTERM/SIGINT to the workers (each drains: in-flight turns finish,
new requests are refused, locks released) and gives them `grace` seconds before killing them;
a worker that dies on its own is started again, with a growing pause if it keeps dying at once.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

from sqlalchemy.engine import make_url

from backend.settings import Settings

log = logging.getLogger(__name__)
# Secrets that are random per process when unset; workers must agree on them (a chart link or a
# sandbox payment page signed by one worker is checked by another), so the supervisor draws one.
SHARED_SECRETS = ("URL_SIGNING_SECRET", "SANDBOX_PAYMENT_SECRET")
QUICK_DEATH_SECONDS = 10.0
MAX_QUICK_DEATHS = 5
CLEANUP_SECONDS = 10.0  # after the grace period: closing stores and clients
GC_THRESHOLDS = (20_000, 20, 10)  # a worker's collector, once it has started (freeze_startup_heap)


def scaling_problem(settings: Settings) -> str | None:
    """Why this configuration cannot run several workers, or None if it can."""
    if not settings.redis_url:
        return (
            "--workers > 1 needs REDIS_URL: without it conversations, conversation locks and webhook "
            "dedupe live in each process's memory, and workers would each see a different conversation"
        )
    stores = {os.environ.get("TRACKER_STORE", "auto"), os.environ.get("LOCK_STORE", "auto")}
    if "memory" in stores:
        return "--workers > 1 cannot use TRACKER_STORE=memory or LOCK_STORE=memory: memory is not shared between processes"
    if make_url(settings.database_url).get_backend_name() == "sqlite":
        return (
            "--workers > 1 needs a PostgreSQL DATABASE_URL: SQLite lets one process write at a time "
            "(the others wait or fail with 'database is locked'); run one worker on SQLite"
        )
    return None


def run_worker(host: str, port: int, *, reuse_port: bool = False, grace: float = 30.0) -> None:
    """Serve until SIGTERM/SIGINT, then drain: the listening socket closes at once, requests in
    flight get `grace` seconds, then the stores close. A shutdown hook that hangs cannot keep
    the process alive: it exits `CLEANUP_SECONDS` after the grace period regardless (status 1)."""
    from aiohttp import web

    from bot.app import create_app

    app = create_app()

    async def exit_deadline(app: web.Application) -> None:
        timer = threading.Timer(grace + CLEANUP_SECONDS, _give_up)
        timer.daemon = True
        timer.start()

    app.on_startup.append(warm_up)
    app.on_startup.append(freeze_startup_heap)
    app.on_shutdown.insert(0, exit_deadline)
    web.run_app(app, host=host, port=port, reuse_port=reuse_port or None, shutdown_timeout=grace, print=None, access_log=None)


async def warm_up(app: object) -> None:
    """Before the socket opens: the database pool's connections, so the first customers after a
    start or a rollout do not each wait for a new connection."""
    from backend import db

    try:
        opened = await db.warm_pool()
    except Exception as exc:  # the turns will connect on demand (and answer 503 if they cannot)
        log.warning("could not open the database connections ahead: %s", exc)
    else:
        log.debug("%d database connections opened ahead", opened)


async def freeze_startup_heap(app: object) -> None:
    """Once the worker is up (libraries imported, model loaded and warmed), move every object it
    holds into the collector's permanent generation. The imports alone leave about 250,000
    tracked objects; each full collection walked them all, a pause of 100-170 ms that hit
    whichever turns were in flight (the p99 of the load benchmark). Frozen objects are still
    freed by reference counting; only the cyclic collector skips them.

    Then the youngest generation is collected after 20,000 new container objects instead of 700:
    a turn creates thousands of them, and at 700 the collector ran in the middle of most turns,
    promoting their short-lived objects to older generations, where they piled up until the
    next full pass (load benchmark: p99 154-156 ms before, 118-144 ms after, 8-15 % less CPU
    per turn)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    log.debug("startup heap frozen: %d objects", gc.get_freeze_count())


def _give_up() -> None:
    log.error("shutdown still not finished %.0f s after the grace period; exiting anyway", CLEANUP_SECONDS)
    logging.shutdown()
    os._exit(1)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    quick_deaths: int = 0
    restart_at: float | None = None  # when a dead worker is due to start again


class Supervisor:
    """Starts `count` workers, restarts the ones that die, stops them all on a signal."""

    def __init__(self, host: str, port: int, count: int, grace: float, settings: Settings) -> None:
        self.host, self.port, self.count, self.grace = host, port, count, grace
        self.workers: list[_Worker] = []
        self._stopping = False
        self.env = dict(os.environ)
        for name in SHARED_SECRETS:
            if not self.env.get(name):
                self.env[name] = secrets.token_urlsafe(32)
        # The platforms' send limits are per bot, the limiters per process: each worker gets its share.
        self.env["TELEGRAM_RATE_LIMIT"] = str(settings.telegram_rate_limit / count)
        self.env["ZALO_RATE_LIMIT"] = str(settings.zalo_rate_limit / count)

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "bot", "serve", "--host", self.host, "--port", str(self.port)]
        command += ["--grace", str(self.grace), "--reuse-port"]
        # A session of its own: a Ctrl-C in the terminal reaches the supervisor only, which then
        # stops each worker once (a second signal would cut a worker's drain short).
        process = subprocess.Popen(command, env={**self.env, "BOT_WORKER_INDEX": str(index)}, start_new_session=True)
        log.info("worker %d started (pid %d)", index, process.pid)
        return process

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("%s: stopping %d workers (grace %.0f s)", signal.Signals(signum).name, len(self.workers), self.grace)
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.workers = [_Worker(i, self._spawn(i)) for i in range(self.count)]
        status = 0
        while not self._stopping:
            now = time.monotonic()
            for worker in self.workers:
                if self._stopping or worker.process.poll() is None:
                    continue
                if worker.restart_at is None:  # just found dead
                    lived = now - worker.started
                    worker.quick_deaths = worker.quick_deaths + 1 if lived < QUICK_DEATH_SECONDS else 0
                    log.error("worker %d (pid %d) exited with %s after %.1f s", worker.index, worker.process.pid, worker.process.returncode, lived)
                    if worker.quick_deaths >= MAX_QUICK_DEATHS:
                        log.error("worker %d keeps dying at startup; stopping the service", worker.index)
                        self._stopping, status = True, 1
                        break
                    worker.restart_at = now + (min(0.5 * 2**worker.quick_deaths, 10.0) if worker.quick_deaths else 0.0)
                if now >= worker.restart_at:
                    worker.process, worker.started, worker.restart_at = self._spawn(worker.index), now, None
            time.sleep(0.2)
        self._stop_all()
        return status

    def _stop_all(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace + CLEANUP_SECONDS + 2  # a worker gives up by itself before
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d (pid %d) did not stop in time; killed", worker.index, worker.process.pid)
                worker.process.kill()
                worker.process.wait()
        log.info("all workers stopped")


def serve(host: str, port: int, workers: int, grace: float, settings: Settings, *, reuse_port: bool = False) -> int:
    """The `serve` command: one worker in this process, or a supervisor of `workers`."""
    if workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    if workers == 1:
        if not reuse_port:  # a supervised worker: the supervisor said it already
            print(f"serving on http://{host}:{port} (REST: POST /webhooks/rest/webhook)", flush=True)
        run_worker(host, port, reuse_port=reuse_port, grace=grace)
        return 0
    problem = scaling_problem(settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print(f"serving on http://{host}:{port} with {workers} workers (REST: POST /webhooks/rest/webhook)", flush=True)
    return Supervisor(host, port, workers, grace, settings).run()
