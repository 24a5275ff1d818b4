"""What the fault tests need around the service: a real server process, a private Redis they may
stop, a TCP proxy in front of PostgreSQL they may cut, a slow action server, and a reading of a
stored conversation as a customer would read it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiohttp import web
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection

import actions
from tests.servers import free_port

# -- reading a conversation ---------------------------------------------------------------------


def transcript(events: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The conversation as the customer saw it: each message with the bot texts that followed."""
    turns: list[tuple[str, list[str]]] = []
    for e in events:
        if e.get("event") == "user":
            turns.append((str(e.get("text")), []))
        elif e.get("event") == "bot" and turns:
            turns[-1][1].append(str(e.get("text") or ""))
    return turns


def assert_each_answered_once(events: list[dict[str, Any]], expected: dict[str, str]) -> list[str]:
    """Every message in `expected` is stored exactly once and followed by its own reply (a text
    containing the value), nothing else was stored; returns the messages in stored order."""
    turns = transcript(events)
    said = [text for text, _ in turns]
    assert sorted(said) == sorted(expected), f"stored messages {said}, expected each of {list(expected)} once"
    for text, replies in turns:
        assert any(expected[text] in reply for reply in replies), f"{text!r} was answered with {replies}"
    return said


# -- talking to a server process ----------------------------------------------------------------


def fresh_session() -> aiohttp.ClientSession:
    """No kept-alive connections: each request finds whichever worker is listening now."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=30))


async def say(http: aiohttp.ClientSession, base: str, sender: str, text: str, message_id: str | None = None) -> tuple[int, Any]:
    """One REST message: the status and the JSON body."""
    body = {"sender": sender, "message": text, **({"message_id": message_id} if message_id else {})}
    async with http.post(f"{base}/webhooks/rest/webhook", json=body) as response:
        return response.status, await response.json()


def texts(replies: Any) -> str:
    return "\n".join(str(r.get("text", "")) for r in replies)


# -- a server process ---------------------------------------------------------------------------


def listeners(port: int) -> int:
    """How many sockets listen on `port` (one per worker with SO_REUSEPORT)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                count += int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"
    return count


def pid_of_connection(local_port: int, candidates: list[int]) -> int | None:
    """Which of `candidates` holds the TCP socket bound to 127.0.0.1:`local_port` (Linux /proc)."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == local_port and fields[9] != "0":  # 0: TIME_WAIT, no owner
                    sockets.add(f"socket:[{fields[9]}]")
    for pid in candidates:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in sockets:
                        return pid
    return None


# -- a slow action server -----------------------------------------------------------------------


class SlowActionServer:
    """A rasa_sdk action server (the service's ACTION_ENDPOINT_URL) in the test process, running
    the project's real actions. After `hold()`, calls wait until `release()`: a slow action, for
    as long as the test needs a turn to stay in flight. `held` has the caller's local port."""

    def __init__(self) -> None:
        self.executor = ActionExecutor()
        self.executor.register_package(actions)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/webhook"
        self._open = asyncio.Event()
        self._open.set()
        self.held: asyncio.Queue[int] = asyncio.Queue()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> SlowActionServer:
        app = web.Application()
        app.router.add_post("/webhook", self._webhook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
        assert self._runner is not None
        await self._runner.cleanup()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def _webhook(self, request: web.Request) -> web.Response:
        call = await request.json()
        if not self._open.is_set():
            peer = request.transport.get_extra_info("peername") if request.transport else None
            self.held.put_nowait(int(peer[1]) if peer else 0)
            await self._open.wait()
        try:
            result = await self.executor.run(call)
        except ActionExecutionRejection as exc:
            return web.json_response({"error": str(exc), "action_name": call.get("next_action")}, status=400)
        return web.json_response(result.model_dump() if result is not None else {"events": [], "responses": []})


# -- a private Redis ------------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own on a free port, without persistence, to stop and start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- a TCP proxy that can be cut ------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target`; `cut()` closes every connection and refuses new
    ones (the database "goes away"), `restore()` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port, reuse_address=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
