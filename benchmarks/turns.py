"""Conversation-turn benchmark for the REST channel: N concurrent customers chatting with the bot.

Each simulated customer has its own sender id (unique per run) and behaves like a real chat:
it sends its next message only after the bot has answered the previous one. The script is
greet -> "tra cứu hóa đơn" -> customer code -> phone on file (verification, one of the three
demo customers), then "tiền điện tháng trước" / "tra cứu hóa đơn" / "help" / "cảm ơn" in turn
until the customer has sent --turns messages. A few warm-up requests (not counted) go first.

A turn is an error when the HTTP status is not 200, the request fails or times out, the
answer is not a non-empty JSON list, or it lacks what the customer asked for (a bill must
show its kWh: an apology is an error). Latencies are
those of the successful turns; turns/s is successful turns per wall-clock second.

Against a server that is already running (127.0.0.1 / localhost only):

    python benchmarks/turns.py --url http://127.0.0.1:5005 --customers 50 --turns 20 --label embedded

Or let the script start the server itself on a free port, load it, then stop it:

    python benchmarks/turns.py --start embedded --customers 50 --turns 20
        SQLite in a temporary directory, in-memory tracker and lock stores; runs
        `python -m bot db upgrade` and `python -m bot seed` first.
    DATABASE_URL=postgresql+asyncpg://bot:...@127.0.0.1:5432/bot REDIS_URL=redis://127.0.0.1:6379/0 \\
    python benchmarks/turns.py --start redis-postgres
        PostgreSQL and Redis from those two variables (both required); migrates and seeds them.
    python benchmarks/turns.py --start both
        embedded, then redis-postgres; one table with a row per configuration.

Run it from the project's virtualenv (it needs only the standard library and aiohttp; with
--start it runs `python -m bot` with the same interpreter, from the project directory).
Everything is bounded: requests time out (--request-timeout), each load run stops after
--max-seconds, and a server the script started is always stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as `python benchmarks/turns.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (  # noqa: E402
    PROJECT_DIR,
    BenchmarkError,
    check_local_url,
    free_port,
    health_ok,
    log_tail,
    machine_line,
    percentile,
    run_bot_command,
    stop_process,
)

WEBHOOK_PATH = "/webhooks/rest/webhook"

# The demo customers loaded by `python -m bot seed`: (customer code, phone on file).
DEMO_CUSTOMERS = [
    ("PE0400012345", "0912345678"),
    ("PD0100234567", "0987654321"),
    ("PE1300056789", "0938777666"),
]
# (message, text the reply must contain): an apology instead of a bill is an error too.
FOLLOW_UPS = [("tiền điện tháng trước", "kWh"), ("tra cứu hóa đơn", "kWh"), ("giúp tôi với", "hóa đơn"), ("cảm ơn", "")]
WARMUP_MESSAGES = ["xin chào", "help", "tra cứu hóa đơn", "cảm ơn"]


# ----------------------------------------------------------------------------- the load


def customer_script(index: int, turns: int) -> list[tuple[str, str]]:
    """What customer `index` sends (and must read back): greet, verify, then follow-ups."""
    code, phone = DEMO_CUSTOMERS[index % len(DEMO_CUSTOMERS)]
    opening = [("xin chào", "Xin chào"), ("tra cứu hóa đơn", "mã khách hàng"), (code, "số điện thoại"), (phone, "kWh")]
    # Start the follow-ups at a different point per customer so the mix is even at any moment.
    offset = index % len(FOLLOW_UPS)
    follow_ups = itertools.cycle(FOLLOW_UPS[offset:] + FOLLOW_UPS[:offset])
    return list(itertools.islice(itertools.chain(opening, follow_ups), turns))


@dataclass
class LoadResult:
    label: str
    customers: int
    turns: int = 0  # turns sent (successful or not)
    errors: int = 0
    wall_seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # successful turns only
    timed_out: bool = False
    error_samples: list[str] = field(default_factory=list)

    def record_error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)


async def send_turn(session: aiohttp.ClientSession, url: str, sender: str, message: str, expected: str = "") -> str | None:
    """Send one message; None if the bot answered properly, else a short error description."""
    try:
        async with session.post(url, json={"sender": sender, "message": message}) as response:
            if response.status != 200:
                body = (await response.text())[:120]
                return f"HTTP {response.status} for {message!r}: {body}"
            replies = await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
        return f"{type(exc).__name__} for {message!r}: {exc}"
    if not isinstance(replies, list) or not replies:
        return f"empty or malformed reply for {message!r}: {str(replies)[:120]}"
    text = " ".join(str(r.get("text") or "") for r in replies if isinstance(r, dict))
    if expected not in text:
        return f"reply to {message!r} lacks {expected!r}: {text[:120]}"
    return None


async def simulate_customer(
    session: aiohttp.ClientSession, url: str, sender: str, script: list[tuple[str, str]], result: LoadResult
) -> None:
    for message, expected in script:
        started = time.perf_counter()
        error = await send_turn(session, url, sender, message, expected)
        elapsed_ms = (time.perf_counter() - started) * 1000
        result.turns += 1
        if error is None:
            result.latencies_ms.append(elapsed_ms)
        else:
            result.record_error(f"{sender}: {error}")


async def warm_up(session: aiohttp.ClientSession, url: str, run_id: str, requests: int) -> int:
    """A few sequential requests (not measured) so the first turns do not pay for cold caches.

    Returns how many of them failed."""
    failures = 0
    for i in range(requests):
        message = WARMUP_MESSAGES[i % len(WARMUP_MESSAGES)]
        if await send_turn(session, url, f"bench-{run_id}-warmup", message) is not None:
            failures += 1
    return failures


async def run_load(base_url: str, label: str, args: argparse.Namespace) -> LoadResult:
    """Drive `args.customers` concurrent customers through `args.turns` turns each."""
    url = base_url.rstrip("/") + WEBHOOK_PATH
    run_id = f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    result = LoadResult(label=label, customers=args.customers)
    connector = aiohttp.TCPConnector(limit=args.customers + 1)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        failed = await warm_up(session, url, run_id, args.warmup)
        if args.warmup and failed == args.warmup:
            print(f"warning: all {failed} warm-up requests to {url} failed", file=sys.stderr)
        customers = [
            simulate_customer(
                session, url, f"bench-{run_id}-{label}-{i}", customer_script(i, args.turns), result
            )
            for i in range(args.customers)
        ]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(args.max_seconds):
                await asyncio.gather(*customers)
        except TimeoutError:
            result.timed_out = True
        result.wall_seconds = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------- the report


COLUMNS = [
    ("configuration", "<"),
    ("customers", ">"),
    ("turns", ">"),
    ("errors", ">"),
    ("wall s", ">"),
    ("turns/s", ">"),
    ("p50 ms", ">"),
    ("p95 ms", ">"),
    ("p99 ms", ">"),
    ("max ms", ">"),
]


def table_row(result: LoadResult) -> list[str]:
    values = sorted(result.latencies_ms)
    ok_turns = len(values)
    rate = ok_turns / result.wall_seconds if result.wall_seconds > 0 else math.nan
    label = result.label + (" (timed out)" if result.timed_out else "")
    return [
        label,
        str(result.customers),
        str(result.turns),
        str(result.errors),
        f"{result.wall_seconds:.2f}",
        f"{rate:.1f}",
        *(f"{percentile(values, p):.1f}" for p in (50, 95, 99)),
        f"{values[-1]:.1f}" if values else "nan",
    ]


def render_table(results: list[LoadResult]) -> str:
    rows = [[name for name, _ in COLUMNS]] + [table_row(r) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [f"{cell:{align}{width}}" for cell, (_, align), width in zip(row, COLUMNS, widths, strict=True)]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the server


def server_environment(config: str, tmpdir: Path) -> dict[str, str]:
    """The environment for `python -m bot ...` in configuration `config`."""
    env = dict(os.environ)
    env.update({"PROJECT_DIR": str(PROJECT_DIR), "LOG_JSON": "false", "LOG_LEVEL": "WARNING"})
    if config == "embedded":
        env.pop("REDIS_URL", None)
        env.update(
            {
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmpdir / 'bench.db'}",
                "TRACKER_STORE": "memory",
                "LOCK_STORE": "memory",
            }
        )
    else:
        env.update({"TRACKER_STORE": "redis", "LOCK_STORE": "redis"})
    return env


def require_redis_postgres_env() -> None:
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        raise BenchmarkError(
            "--start redis-postgres needs " + " and ".join(missing) + " in the environment, e.g.\n"
            "  DATABASE_URL=postgresql+asyncpg://bot:PASSWORD@127.0.0.1:5432/bot\n"
            "  REDIS_URL=redis://127.0.0.1:6379/0"
        )
    if not os.environ["DATABASE_URL"].startswith(("postgresql", "postgres")):
        print("warning: DATABASE_URL is not a PostgreSQL URL", file=sys.stderr)


@contextlib.contextmanager
def started_server(config: str, startup_timeout: float) -> Iterator[str]:
    """Migrate, seed and start a server in configuration `config`; yields its base URL.

    The server is stopped and its temporary directory (SQLite file, log) removed on exit."""
    tmpdir = Path(tempfile.mkdtemp(prefix=f"bench-{config}-"))
    process: subprocess.Popen[bytes] | None = None
    keep_tmpdir = False
    try:
        env = server_environment(config, tmpdir)
        print(f"[{config}] migrating and seeding the database ...", file=sys.stderr)
        run_bot_command(["db", "upgrade"], env, timeout=startup_timeout)
        run_bot_command(["seed"], env, timeout=startup_timeout)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log_path = tmpdir / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=PROJECT_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        print(f"[{config}] waiting for {base_url}/health ...", file=sys.stderr)
        deadline = time.monotonic() + startup_timeout
        while not health_ok(base_url):
            if process.poll() is not None:
                keep_tmpdir = True
                raise BenchmarkError(
                    f"[{config}] the server exited with code {process.returncode} before answering "
                    f"/health; log {log_path}:\n{log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                keep_tmpdir = True
                raise BenchmarkError(
                    f"[{config}] /health did not answer within {startup_timeout:.0f} s; "
                    f"log {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(0.25)
        yield base_url
    finally:
        if process is not None:
            stop_process(process)
        if keep_tmpdir:
            print(f"[{config}] kept {tmpdir} for inspection", file=sys.stderr)
        else:
            shutil.rmtree(tmpdir, ignore_errors=True)


# ----------------------------------------------------------------------------- the CLI


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/turns.py",
        description="Concurrent simulated customers against the REST channel; prints turns/s and latency percentiles.",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--url", default="http://127.0.0.1:5005", help="running server to load, on 127.0.0.1/localhost (default: %(default)s)"
    )
    target.add_argument(
        "--start",
        choices=["embedded", "redis-postgres", "both"],
        help="start the server(s) on a free port instead: embedded (SQLite, in-memory stores), "
        "redis-postgres (DATABASE_URL and REDIS_URL from the environment) or both in turn",
    )
    parser.add_argument("--customers", type=positive_int, default=50, help="concurrent customers (default: %(default)s)")
    parser.add_argument("--turns", type=positive_int, default=20, help="messages each customer sends (default: %(default)s)")
    parser.add_argument("--label", help="configuration name in the table with --url (default: 'server')")
    parser.add_argument("--warmup", type=int, default=5, help="warm-up requests, not measured (default: %(default)s)")
    parser.add_argument(
        "--request-timeout", type=float, default=30.0, help="seconds before a turn counts as an error (default: %(default)s)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="stop a load run after this long (default: %(default)s)"
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=180.0, help="seconds to wait for a started server's /health (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results: list[LoadResult] = []
    try:
        if args.start is None:
            base_url = check_local_url(args.url)
            results.append(asyncio.run(run_load(base_url, args.label or "server", args)))
        else:
            configs = ["embedded", "redis-postgres"] if args.start == "both" else [args.start]
            if "redis-postgres" in configs:
                require_redis_postgres_env()  # before anything runs, not after the embedded run
            for config in configs:
                with started_server(config, args.startup_timeout) as base_url:
                    print(f"[{config}] {args.customers} customers x {args.turns} turns ...", file=sys.stderr)
                    results.append(asyncio.run(run_load(base_url, config, args)))
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if not results:
            return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if not results:
            return 130

    print()
    print(machine_line())
    print(render_table(results))
    for result in results:
        for sample in result.error_samples:
            print(f"  [{result.label}] {sample}")
        if result.timed_out:
            print(f"  [{result.label}] stopped after --max-seconds {args.max_seconds:g}; numbers cover the turns done")
    return 1 if any(r.errors or r.timed_out for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
