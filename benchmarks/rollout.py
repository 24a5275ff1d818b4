"""Model rollout benchmark: how long until every worker serves a newly activated NLU model,
and what customers notice meanwhile.

Starts the workers itself, trains two versions from the database's training data, then, while
simulated customers keep chatting over REST, activates them alternately and measures, per
activation, when each worker's /health first reports the new version, and the latency and
errors of the turns in the two seconds after the activation against those before.

    DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench_rollout \\
    REDIS_URL=redis://127.0.0.1:6379/12 python benchmarks/rollout.py --workers 2
        PostgreSQL + Redis (activation announced on Redis pub/sub); the database is migrated
        and seeded, and the Redis database is flushed.
    python benchmarks/rollout.py --embedded
        one worker on a temporary SQLite file, no Redis (the worker polls the database).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as `python benchmarks/rollout.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import PROJECT_DIR, free_port, machine_line, percentile  # noqa: E402

MESSAGES = ["xin chào", "giá điện bậc 1 bao nhiêu", "cảm ơn", "mất điện ở phường Bến Thành", "giúp tôi với", "tạm biệt"]


def _bot(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bot", *args], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"python -m bot {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


async def _health(http: aiohttp.ClientSession, base: str) -> str | None:
    try:
        async with http.get(f"{base}/health") as response:
            return (await response.json())["model"] if response.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None


def prepare(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """Migrate, empty and seed the database, train a model folder and two versions."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    env = {**os.environ, "PROJECT_DIR": str(PROJECT_DIR), "LOG_LEVEL": "WARNING", "MODELS_DIR": str(tmp / "models"),
           "URL_SIGNING_SECRET": "bench", "SANDBOX_PAYMENT_SECRET": "bench", "RATE_LIMIT_PER_SENDER": "off"}
    if args.embedded:
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp / 'bot.db'}"
        env.pop("REDIS_URL", None)
        args.workers = 1
    elif not (env.get("DATABASE_URL", "").startswith("postgresql") and env.get("REDIS_URL")):
        raise SystemExit("set DATABASE_URL (PostgreSQL) and REDIS_URL, or pass --embedded")
    _bot(env, "db", "upgrade")

    async def empty() -> None:
        from backend import db
        from tests.conftest import empty_all_tables

        db.configure(env["DATABASE_URL"])
        await empty_all_tables()
        await db.dispose()
        if env.get("REDIS_URL"):
            from redis.asyncio import Redis

            redis = Redis.from_url(env["REDIS_URL"])
            await redis.flushdb()
            await redis.aclose()

    asyncio.run(empty())
    _bot(env, "seed")
    subprocess.run([sys.executable, "-m", "nlu", "train", "--data", "data/", "--config", "config.yml", "--out", env["MODELS_DIR"]],
                   cwd=PROJECT_DIR, check=True, capture_output=True)
    return env, [_bot(env, "nlu", "retrain").split()[1].rstrip(":") for _ in range(2)]


async def measure(args: argparse.Namespace, env: dict[str, str], versions: list[str], bases: list[str]) -> None:
    from backend import db
    from backend.services import nlu_data, nlu_models
    from bot.model_rollout import announce

    redis = None
    if env.get("REDIS_URL"):
        from redis.asyncio import Redis

        redis = Redis.from_url(env["REDIS_URL"])
    db.configure(env["DATABASE_URL"])
    rows = []
    turns: list[tuple[float, float, bool]] = []  # (started, seconds, ok)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            for _ in range(600):
                if all([await _health(http, b) for b in bases]):
                    break
                await asyncio.sleep(0.2)
            stop = asyncio.Event()

            async def customer(i: int) -> None:
                n = 0
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        body = {"sender": f"rollout-{i}", "message": MESSAGES[n % len(MESSAGES)]}
                        async with http.post(f"{bases[(i + n) % len(bases)]}/webhooks/rest/webhook", json=body) as response:
                            ok = response.status == 200 and bool(await response.json())
                    except (TimeoutError, aiohttp.ClientError):
                        ok = False
                    turns.append((started, time.monotonic() - started, ok))
                    n += 1

            load = [asyncio.create_task(customer(i)) for i in range(args.customers)]
            await asyncio.sleep(3.0)
            for k in range(args.activations):
                version = versions[k % 2]
                before = time.monotonic()
                await nlu_models.activate(version, nlu_data.Actor("benchmark"), check=False)
                await announce(redis, version)
                reached: dict[str, float] = {}
                while len(reached) < len(bases) and time.monotonic() - before < 30:
                    for b in bases:
                        if b not in reached and await _health(http, b) == version:
                            reached[b] = time.monotonic() - before
                    await asyncio.sleep(0.02)
                await asyncio.sleep(3.0)
                window = [t for t in turns if before <= t[0] < before + 2.0]
                baseline = [t for t in turns if before - 2.5 <= t[0] < before]
                rows.append((k + 1, sorted(reached.values()), window, baseline))
            stop.set()
            await asyncio.gather(*load)
    finally:
        await db.dispose()
        if redis is not None:
            await redis.aclose()

    print(f"\n{machine_line()}; {args.workers} worker(s), {'SQLite, polling' if args.embedded else 'PostgreSQL + Redis pub/sub'}, "
          f"{args.customers} customers\n")
    print("| activation | all workers serving after (s) | turns in the 2 s after | errors | p50 / p99 ms after | p50 / p99 ms before |")
    print("|---|---|---|---|---|---|")

    def ms(sample: list[tuple[float, float, bool]], q: float) -> str:
        values = sorted(t[1] * 1000 for t in sample if t[2])
        return f"{percentile(values, q):.0f}" if values else "-"

    for k, reach, window, baseline in rows:
        reach_text = f"{max(reach):.2f}" if len(reach) == args.workers else f"only {len(reach)} of {args.workers}"
        errors = sum(not t[2] for t in window)
        print(f"| {k} | {reach_text} | {len(window)} | {errors} | {ms(window, 50)} / {ms(window, 99)} | {ms(baseline, 50)} / {ms(baseline, 99)} |")
    print(f"\n{len(turns)} turns in all, {sum(not t[2] for t in turns)} errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--embedded", action="store_true", help="one worker on SQLite without Redis")
    parser.add_argument("--activations", type=int, default=4)
    parser.add_argument("--customers", type=int, default=12)
    args = parser.parse_args()
    env, versions = prepare(args)
    ports = [free_port() for _ in range(args.workers)]
    workers = [subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(p)], cwd=PROJECT_DIR, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for p in ports]
    try:
        asyncio.run(measure(args, env, versions, [f"http://127.0.0.1:{p}" for p in ports]))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()


if __name__ == "__main__":
    main()
