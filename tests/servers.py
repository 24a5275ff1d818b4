"""Real `python -m bot serve` processes for the tests that need the service as it runs in
production (several workers, signals, restarts): a free port, the process, its health."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.conftest import PROJECT_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`python -m bot serve` on a free port, with the environment given."""

    def __init__(self, env: dict[str, str], *, workers: int = 1, grace: float = 10.0) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PROJECT_DIR": str(PROJECT_DIR), "LOG_LEVEL": "WARNING", **env}
        self.command = [sys.executable, "-m", "bot", "serve", "--port", str(self.port), "--workers", str(workers), "--grace", str(grace)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, cwd=PROJECT_DIR, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def wait_healthy(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.poll() is None, self.stderr()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.base}/health") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise AssertionError(f"server did not start: {self.stderr()}")

    def children(self) -> list[int]:
        """Worker pids of a supervisor."""
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait_exit(self, within: float) -> int:
        assert self.process is not None
        deadline = time.monotonic() + within
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"server still running {within} s after the signal")
            await asyncio.sleep(0.1)
        return self.process.returncode

    def stderr(self) -> str:
        if self.process is None or self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pids = self.children()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pid in pids:  # a supervisor killed before its workers
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
