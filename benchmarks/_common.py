"""What the benchmark scripts share: starting and stopping `python -m bot` processes, the
environment of the production configuration (PostgreSQL + Redis), a trained model, the fake
Telegram in its own process, percentiles, markdown tables and py-spy profiles.

Every server started here listens on 127.0.0.1 only and is stopped when its context exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class BenchmarkError(Exception):
    """A problem that stops the benchmark (bad arguments, a server that does not start)."""


# ----------------------------------------------------------------------------- numbers


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most events in any `window` seconds (a sliding window over sorted `times`)."""
    ordered = sorted(times)
    best = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """A markdown table with padded columns; column indexes in `right` are right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return (
        f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; Python {platform.python_version()} ({platform.python_implementation()})"
    )


# ----------------------------------------------------------------------------- processes


def check_local_url(url: str) -> str:
    """`url` if it points at this machine; the benchmarks never load anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOCAL_HOSTS:
        raise BenchmarkError(f"--url must be http://127.0.0.1:<port> or http://localhost:<port>, got {url!r}")
    return url


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_bot_command(argv: list[str], env: dict[str, str], timeout: float) -> str:
    """Run `python -m bot <argv>` to completion; raise with its output if it fails."""
    command = [sys.executable, "-m", "bot", *argv]
    try:
        done = subprocess.run(command, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"`python -m bot {' '.join(argv)}` did not finish in {timeout:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise BenchmarkError(f"`python -m bot {' '.join(argv)}` failed ({done.returncode}):\n{output}")
    return done.stdout


def health_ok(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def log_tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def require_production_env() -> tuple[str, str]:
    """DATABASE_URL (PostgreSQL) and REDIS_URL from the environment, or a BenchmarkError."""
    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        raise BenchmarkError(
            " and ".join(missing) + " must be set, e.g.\n"
            "  DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench_load\n"
            "  REDIS_URL=redis://127.0.0.1:6379/6\n"
            "(a database and a Redis database number used by nothing else: the benchmark writes to both)"
        )
    database_url, redis_url = os.environ["DATABASE_URL"], os.environ["REDIS_URL"]
    if not database_url.startswith(("postgresql", "postgres")):
        raise BenchmarkError("DATABASE_URL must be a PostgreSQL URL (postgresql+asyncpg://...)")
    for url in (database_url, redis_url):
        host = urlsplit(url).hostname
        if host not in LOCAL_HOSTS:
            raise BenchmarkError(f"the benchmark only talks to servers on this machine, not {host!r}")
    return database_url, redis_url


def production_environment(database_url: str, redis_url: str, models_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of `python -m bot ...` for PostgreSQL + Redis, several workers: shared
    signing secrets (a link made by one worker is checked by another), quiet logs."""
    env = dict(os.environ)
    for name in ("TELEGRAM_BOT_TOKEN", "ZALO_ACCESS_TOKEN", "ZALO_REFRESH_TOKEN", "ACTION_ENDPOINT_URL"):
        env.pop(name, None)  # channels are off unless a benchmark turns one on
    env.update(
        {
            "PROJECT_DIR": str(PROJECT_DIR),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "TRACKER_STORE": "redis",
            "LOCK_STORE": "redis",
            "MODELS_DIR": str(models_dir),
            "LOG_JSON": "false",
            "LOG_LEVEL": "WARNING",
            "SANDBOX_PAYMENT_SECRET": "benchmark-sandbox-secret",
            "URL_SIGNING_SECRET": "benchmark-url-secret",
        }
    )
    env.update(extra)
    return env


def newest_model(models_dir: Path) -> Path | None:
    candidates = [p for p in models_dir.glob("*") if p.is_dir()] if models_dir.is_dir() else []
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


@contextlib.contextmanager
def trained_models(models_dir: str | None) -> Iterator[Path]:
    """A models folder with a trained model: `models_dir` if given, else the project's models/
    when it has one, else a model trained now into a temporary folder (removed afterwards).
    Trained once here, so that several workers never train at the same time."""
    if models_dir:
        path = Path(models_dir)
        if newest_model(path) is None:
            raise BenchmarkError(f"--models {path} holds no trained model")
        yield path
        return
    if newest_model(PROJECT_DIR / "models") is not None:
        yield PROJECT_DIR / "models"
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        print("training the NLU model into a temporary folder ...", file=sys.stderr)
        command = [sys.executable, "-m", "nlu", "train", "--data", "data/", "--config", "config.yml", "--out", str(folder)]
        done = subprocess.run(command, cwd=PROJECT_DIR, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise BenchmarkError(f"training failed:\n{(done.stdout + done.stderr)[-2000:]}")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def serve_supports_workers() -> bool:
    """Does `python -m bot serve` take --workers (one port, SO_REUSEPORT)?"""
    done = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--help"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60, check=False
    )
    return "--workers" in done.stdout


@dataclass
class Servers:
    """Started `python -m bot serve` processes: the base URLs to send to, and the processes."""

    urls: list[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    mode: str = "ports"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]


@contextlib.contextmanager
def started_servers(env: dict[str, str], workers: int, mode: str, logdir: Path, startup_timeout: float = 180.0) -> Iterator[Servers]:
    """`workers` bot workers: mode "ports" starts that many `python -m bot serve` processes on
    ports of their own; mode "reuseport" starts one `python -m bot serve --workers N` whose
    workers share a port. Waits for /health on every URL; stops everything on exit."""
    servers = Servers([], mode=mode)
    try:
        commands: list[tuple[list[str], int]] = []
        if mode == "reuseport":
            port = free_port()
            commands.append((["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)], port))
        else:
            for _ in range(workers):
                port = free_port()
                commands.append((["serve", "--host", "127.0.0.1", "--port", str(port)], port))
        for n, (argv, port) in enumerate(commands):
            log_path = logdir / f"server-{n}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bot", *argv], cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            servers.processes.append(process)
            servers.logs.append(log_path)
            servers.urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + startup_timeout
        for url, process, log_path in zip(servers.urls, servers.processes, servers.logs, strict=True):
            while not health_ok(url):
                if process.poll() is not None:
                    raise BenchmarkError(f"the server on {url} exited with code {process.returncode}; log {log_path}:\n{log_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{url}/health did not answer within {startup_timeout:.0f} s; log {log_path}:\n{log_tail(log_path)}")
                time.sleep(0.25)
        yield servers
    finally:
        for process in servers.processes:
            stop_process(process)


def _children(pid: int) -> list[int]:
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(c) for c in children.read_text().split()]
    return found


def cpu_seconds(pids: Sequence[int]) -> tuple[float, float]:
    """(user, system) CPU seconds the processes and their children have used so far; Linux
    only (zeros elsewhere). Tells how much of the machine the workers actually got; system
    time is mostly the kernel's TCP work for each round trip to PostgreSQL and Redis."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    user = system = 0.0
    todo = list(pids)
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) / ticks
            system += int(fields[12]) / ticks
            todo += _children(pid)
    return user, system


def peak_rss_mb(pids: Sequence[int]) -> list[float]:
    """The peak resident memory (VmHWM, MiB) of each process and its children so far; Linux
    only (empty elsewhere)."""
    peaks = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
            todo += _children(pid)
    return peaks


# ----------------------------------------------------------------------------- the fake Telegram

FAKE_TELEGRAM_TOKEN = "7000001:BENCH_token"


def _serve_fake(port_pipe: Any, token: str, limits: dict[str, float] | None) -> None:
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))
    from tests.fakes.telegram import FakeTelegram, RateLimits

    async def main() -> None:
        fake = await FakeTelegram(token, limits=RateLimits(**limits) if limits else None).start()
        port_pipe.send(fake.port)
        await asyncio.Event().wait()

    asyncio.run(main())


@contextlib.contextmanager
def fake_telegram(token: str = FAKE_TELEGRAM_TOKEN, limits: dict[str, float] | None = None) -> Iterator[int]:
    """The fake Telegram Bot API (tests/fakes) in a process of its own (so it does not compete
    with the sender for the GIL); yields its port. `limits` (RateLimits' fields) makes it answer
    429 with retry_after as Telegram does when a bot sends too fast."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve_fake, args=(child, token, limits), daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise BenchmarkError("the fake Telegram server did not start")
        yield parent.recv()
    finally:
        process.terminate()
        process.join(5)


def fake_calls(port: int, since: int = 0) -> list[dict[str, Any]]:
    """Every request the fake Telegram received (method, params, time, ok, throttled)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/calls?since={since}", timeout=60) as response:
        return json.loads(response.read())


def fake_stats(port: int) -> dict[str, int]:
    """Counts of the fake Telegram's calls: all, delivered sends, sends answered 429."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/stats", timeout=30) as response:
        return json.loads(response.read())


# ----------------------------------------------------------------------------- py-spy


def py_spy() -> str | None:
    """The py-spy executable (beside this interpreter or on PATH), if installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pids: Sequence[int], seconds: float, outdir: Path, subprocesses: bool = False) -> Iterator[list[Path]]:
    """Sample the processes with py-spy (`record --format raw`, collapsed stacks) for at most
    `seconds`, or until the context exits; yields the paths the profiles will be in then."""
    executable = py_spy()
    if executable is None:
        raise BenchmarkError("--profile needs py-spy (`.venv/bin/pip install py-spy`)")
    outputs: list[Path] = []
    recorders: list[subprocess.Popen[bytes]] = []
    for pid in pids:
        out = outdir / f"profile-{pid}.txt"
        command = [executable, "record", "--pid", str(pid), "--rate", "100", "--duration", str(max(1, int(seconds))),
                   "--format", "raw", "--output", str(out), "--nonblocking"]
        if subprocesses:
            command.append("--subprocesses")
        recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(outdir / f"py-spy-{pid}.log").open("wb")))
        outputs.append(out)
    try:
        yield outputs
    finally:
        for recorder in recorders:
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
            try:
                recorder.wait(timeout=30)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait(timeout=5)


def _frame_name(frame: str) -> str:
    """py-spy's 'function (path/to/file.py:123)' as 'function (module/file.py)', without the line."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3.", str(PROJECT_DIR) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            if marker.startswith("lib/python3."):
                where = "stdlib/" + where.split("/", 1)[-1]
            break
    return f"{name} ({where})" if where else name


PROJECT_PACKAGES = ("bot/", "nlu/", "actions/", "backend/")


@dataclass
class Hotspots:
    samples: int  # busy samples (the event loop's idle wait excluded)
    by_self: list[tuple[str, float]]  # (function, % of samples with it on top), any code
    by_owner: list[tuple[str, float]]  # (project function, % of samples where it is the deepest project frame)


def _is_project(frame: str) -> bool:
    return any(f"({pkg}" in frame for pkg in PROJECT_PACKAGES)


def hotspots(profiles: Sequence[Path], top: int = 15) -> Hotspots:
    """Read py-spy raw profiles (collapsed stacks): the functions most often on top of the stack
    (any code), and the project functions that own the most time, a sample being owned by the
    deepest project frame on its stack (so the library code a project function calls, such as
    SQLAlchemy under a service function, counts for that function)."""
    on_top: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    samples = 0
    for path in profiles:
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
            if not frames or frames[-1].endswith("(selectors.py)"):
                continue  # the event loop waiting for I/O is not work
            samples += count
            on_top[frames[-1]] += count
            owner = next((f for f in reversed(frames) if _is_project(f)), "(outside project code: event loop, aiohttp, ...)")
            owners[owner] += count
    if not samples:
        return Hotspots(0, [], [])
    share = lambda counter: [(name, 100 * n / samples) for name, n in counter.most_common(top)]  # noqa: E731
    return Hotspots(samples, share(on_top), share(owners))


def profile_report(spots: Hotspots) -> str:
    """The two hotspot tables, as markdown."""
    if not spots.samples:
        return "profile: no samples (see py-spy-*.log in the run folder; py-spy needs ptrace permission)"
    by_self = markdown_table(["function on top of the stack", "% of busy samples"], [[n, f"{p:.1f}"] for n, p in spots.by_self], right=(1,))
    by_owner = markdown_table(
        ["project function (deepest project frame)", "% of busy samples"], [[n, f"{p:.1f}"] for n, p in spots.by_owner], right=(1,)
    )
    return (
        f"profile: {spots.samples} busy samples over all workers (py-spy, 100 Hz; the event loop's idle wait excluded; "
        "a worker waiting for a CPU counts where it was, typically in a socket write)\n\n" + by_self + "\n\n" + by_owner
    )
