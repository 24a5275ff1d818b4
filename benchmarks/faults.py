"""Chaos run, too long for CI: customers chat with `python -m bot serve --workers N` while
workers are killed with SIGKILL and Redis is restarted, then every conversation is checked.

Each customer holds conversation after conversation until --seconds have passed, each a fixed
script of messages sent one after the other, each with its own `message_id`; a request that fails (connection refused or reset, 503) is resent with the same id,
as a channel client would, until it is answered. Meanwhile a random worker is SIGKILLed every
--kill-every seconds (the supervisor restarts it) and, with --redis-restarts, the script's own
Redis (append-only file, fsync always, like a production Redis) is stopped and started again.

At the end each conversation in Redis must hold the customer's messages exactly once, in the
order sent, each followed by a reply. The table counts kills, restarts, resends, 503s, and lost,
doubled or reordered messages (all three must be 0).

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bot \\
    python benchmarks/faults.py --workers 3 --customers 20 --seconds 60 --redis-restarts 2

PostgreSQL comes from DATABASE_URL (migrated and seeded by the script); Redis is the script's own
redis-server on a free port (the `redis-server` binary must be installed). Everything is bounded:
the run stops after --seconds, and the server and Redis it started are always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ["xin chào", "giúp tôi với", "bạn là ai", "giá điện bậc thang", "cảm ơn", "tạm biệt"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stats:
    def __init__(self) -> None:
        self.kills = self.redis_restarts = self.resends = self.unavailable = 0
        self.latencies: list[float] = []


class DurableRedis:
    """redis-server with an append-only file in a temporary directory: a restart keeps the data."""

    def __init__(self, directory: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory,
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        self.spawn()
        client = Redis.from_url(self.url)
        for _ in range(100):
            with contextlib.suppress(Exception):
                if await client.ping():
                    break
            await asyncio.sleep(0.05)
        await client.aclose()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def workers_of(supervisor: subprocess.Popen[bytes]) -> list[int]:
    path = Path(f"/proc/{supervisor.pid}/task/{supervisor.pid}/children")
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


async def customer(http: aiohttp.ClientSession, base: str, name: str, stats: Stats, deadline: float, senders: list[str]) -> None:
    """New conversations, one after the other, until the deadline."""
    for conversation in range(10_000):
        if time.monotonic() >= deadline:
            return
        senders.append(f"{name}-{conversation}")
        await converse(http, base, senders[-1], stats, deadline)


async def converse(http: aiohttp.ClientSession, base: str, sender: str, stats: Stats, deadline: float) -> None:
    for number, text in enumerate(SCRIPT):
        body = {"sender": sender, "message": text, "message_id": f"{sender}-{number}"}
        started = time.monotonic()
        while time.monotonic() < deadline + 30:  # a conversation under way is finished
            try:
                async with http.post(f"{base}/webhooks/rest/webhook", json=body) as response:
                    if response.status == 200 and await response.json():
                        stats.latencies.append(time.monotonic() - started)
                        break
                    stats.unavailable += response.status == 503
            except (aiohttp.ClientError, TimeoutError):
                pass
            stats.resends += 1
            await asyncio.sleep(0.2)
        else:
            return


async def chaos(supervisor: subprocess.Popen[bytes], redis: DurableRedis, args: argparse.Namespace, stats: Stats, stop: asyncio.Event) -> None:
    restarts_due = sorted(random.uniform(2, args.seconds * 0.6) for _ in range(args.redis_restarts))
    started = time.monotonic()
    next_kill = started + args.kill_every
    while not stop.is_set():
        await asyncio.sleep(0.1)
        now = time.monotonic()
        if now >= next_kill and (pids := workers_of(supervisor)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(random.choice(pids), signal.SIGKILL)
                stats.kills += 1
            next_kill = now + args.kill_every
        if restarts_due and now - started >= restarts_due[0]:
            restarts_due.pop(0)
            redis.stop()
            await asyncio.sleep(1.0)
            await redis.start()
            stats.redis_restarts += 1


def start_server(port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bot", "serve", "--port", str(port), "--workers", str(workers), "--grace", "5"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)


def check(conversations: dict[str, list[dict[str, object]]]) -> tuple[int, int, int, int]:
    """(answered, lost, doubled, reordered) messages over all conversations."""
    answered = lost = doubled = reordered = 0
    for events in conversations.values():
        said: list[str] = []
        for e in events:
            if e.get("event") == "user":
                said.append(str(e.get("text")))
            elif e.get("event") == "bot" and said and not said[-1].endswith("\0"):
                said[-1] += "\0"  # answered
        texts = [s.rstrip("\0") for s in said]
        answered += sum(s.endswith("\0") for s in said)
        lost += sum(text not in texts for text in SCRIPT)
        doubled += sum(max(0, texts.count(text) - 1) for text in SCRIPT)
        reordered += [t for t in SCRIPT if t in texts] != list(dict.fromkeys(texts))
    return answered, lost, doubled, reordered


async def run(args: argparse.Namespace) -> int:
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgresql"):
        print("error: set DATABASE_URL to a PostgreSQL database (it is migrated, conversations go to Redis)", file=sys.stderr)
        return 2
    stats = Stats()
    with tempfile.TemporaryDirectory() as directory:
        redis = DurableRedis(directory)
        await redis.start()
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis.url, "LOCK_LIFETIME_SECONDS": str(args.lock_seconds), "LOG_LEVEL": "ERROR"}
        supervisor = start_server(port, args.workers, env)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=15)) as http:
                for _ in range(300):  # the workers load (or train) the NLU model first
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"{base}/health") as response:
                            if response.status == 200 and len(workers_of(supervisor)) == args.workers:
                                break
                    await asyncio.sleep(0.2)
                run_id = f"{int(time.time())}"
                senders: list[str] = []
                deadline = time.monotonic() + args.seconds
                stop = asyncio.Event()
                chaos_task = asyncio.create_task(chaos(supervisor, redis, args, stats, stop))
                started = time.monotonic()
                await asyncio.gather(*(customer(http, base, f"chaos-{run_id}-{i}", stats, deadline, senders) for i in range(args.customers)))
                elapsed = time.monotonic() - started
                stop.set()
                await chaos_task
            client = Redis.from_url(redis.url)
            conversations = {s: [json.loads(raw) for raw in await client.lrange(f"tracker:{s}", 0, -1)] for s in senders}
            await client.aclose()
        finally:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(timeout=30)
            except subprocess.TimeoutExpired:
                supervisor.kill()
            redis.stop()
    answered, lost, doubled, reordered = check(conversations)
    p50 = statistics.median(stats.latencies) * 1000 if stats.latencies else 0
    p95 = statistics.quantiles(stats.latencies, n=20)[18] * 1000 if len(stats.latencies) > 1 else 0
    print("| workers | customers | conversations | messages | answered | kills | Redis restarts | resends | 503s | lost | doubled | reordered | p50 ms | p95 ms | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.workers} | {args.customers} | {len(senders)} | {len(senders) * len(SCRIPT)} | {answered} | {stats.kills} | {stats.redis_restarts} | "
        f"{stats.resends} | {stats.unavailable} | {lost} | {doubled} | {reordered} | {p50:.0f} | {p95:.0f} | {elapsed:.0f} |"
    )
    return 0 if lost == doubled == reordered == 0 and answered == len(senders) * len(SCRIPT) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0, help="start new conversations for this long")
    parser.add_argument("--kill-every", type=float, default=3.0, help="SIGKILL a random worker this often (seconds)")
    parser.add_argument("--redis-restarts", type=int, default=1)
    parser.add_argument("--lock-seconds", type=float, default=3.0, help="LOCK_LIFETIME_SECONDS of the workers")
    args = parser.parse_args()
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        for step in (["db", "upgrade"], ["seed"]):
            subprocess.run([sys.executable, "-m", "bot", *step], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
