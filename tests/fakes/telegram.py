"""A fake Telegram Bot API on 127.0.0.1 (aiohttp), for tests and the outbox benchmark.

Answers the methods the bot uses the way Telegram does (`{"ok": true, "result": ...}`), records
every request (method, decoded parameters, time), serves queued updates to getUpdates, and can
be told to fail: `fail("sendMessage", 429, retry_after=1)`, `fail("sendMessage", 500)`,
`fail("sendMessage", 403, description="Forbidden: bot was blocked by the user")`.

python-telegram-bot posts form data whose non-string values are JSON, or multipart when a file
is uploaded; both are decoded here so tests can look at `reply_markup` as a dict.

With `limits=RateLimits()` it also enforces Telegram's flood limits on sends the way the real
API does (429 "Too Many Requests: retry after N" with `parameters.retry_after`): at most
`per_second` messages in any one-second window over all chats, and per chat a bucket of
`chat_burst` messages refilled at `per_chat_per_second`. Refused calls are recorded with
`throttled=True`; `GET /_fake/stats` counts calls, delivered messages and 429s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SEND_METHODS = ("sendMessage", "sendPhoto")


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    ok: bool = True  # False when the fake answered with a scripted failure
    throttled: bool = False  # answered 429 because the bot sent faster than `limits` allow

    @property
    def chat_id(self) -> str | None:
        value = self.params.get("chat_id")
        return None if value is None else str(value)

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")

    @property
    def buttons(self) -> list[dict[str, Any]]:
        markup = self.params.get("reply_markup") or {}
        return [b for row in markup.get("inline_keyboard", []) for b in row]


@dataclass(frozen=True)
class RateLimits:
    """Telegram's limits for sending (about 30 messages/s per bot, about 1/s per chat, which
    tolerates a short burst)."""

    per_second: float = 30.0
    per_chat_per_second: float = 1.0
    chat_burst: float = 3.0


class _Limiter:
    """Decides whether a send is within `RateLimits`; if not, how many seconds to wait."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._recent: deque[float] = deque()  # times of accepted sends in the last second
        self._chats: dict[str, tuple[float, float]] = {}  # chat -> (tokens, at)

    def retry_after(self, chat: str | None, now: float) -> float:
        """0 if a send to `chat` now is allowed (and counts it), else the wait in seconds."""
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        wait = 0.0
        if self.limits.per_second > 0 and len(self._recent) >= self.limits.per_second:
            wait = 1.0 - (now - self._recent[0])
        tokens = self.limits.chat_burst
        if chat is not None and self.limits.per_chat_per_second > 0:
            left, at = self._chats.get(chat, (self.limits.chat_burst, now))
            tokens = min(self.limits.chat_burst, left + (now - at) * self.limits.per_chat_per_second)
            if tokens < 1:
                wait = max(wait, (1 - tokens) / self.limits.per_chat_per_second)
        if wait > 0:
            return wait
        self._recent.append(now)
        if chat is not None and self.limits.per_chat_per_second > 0:
            self._chats[chat] = (tokens - 1, now)
        return 0.0


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


class FakeTelegram:
    def __init__(self, token: str, *, port: int = 0, limits: RateLimits | None = None) -> None:
        self.token = token
        self.port = port
        self._limiter = _Limiter(limits) if limits is not None else None
        self.calls: list[Call] = []
        self.updates: deque[dict[str, Any]] = deque()
        self.webhook: dict[str, Any] | None = None
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._message_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    # -- control ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/_fake/calls", self._dump)
        app.router.add_get("/_fake/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(self, method: str, status: int, *, retry_after: int | None = None, description: str | None = None, times: int = 1) -> None:
        """The next `times` calls of `method` fail with this HTTP status."""
        text = description or {429: f"Too Many Requests: retry after {retry_after}", 500: "Internal Server Error", 502: "Bad Gateway"}.get(
            status, "Bad Request: chat not found"
        )
        for _ in range(times):
            self._failures[method].append(_Failure(status, text, retry_after))

    def sent(self, chat_id: int | str | None = None) -> list[Call]:
        """Messages delivered (sendMessage, sendPhoto answered ok), optionally to one chat, in order."""
        return [c for c in self.calls if c.ok and c.method in SEND_METHODS and (chat_id is None or c.chat_id == str(chat_id))]

    def of(self, method: str) -> list[Call]:
        """Every call of `method`, failed ones included."""
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"fake Telegram: condition not met within {within} s; calls: {[(c.method, c.text[:40]) for c in self.calls[-10:]]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass

    # -- the API ----------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            body = await request.json()
            return body if isinstance(body, dict) else {}
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            params: dict[str, Any] = {}
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    params[key] = {"file": value.filename, "bytes": len(value.file.read())}
                else:
                    params[key] = _decode(value)
            # PTB refers to uploaded files as attach://name; show the file instead.
            for key, value in list(params.items()):
                if isinstance(value, str) and value.startswith("attach://"):
                    params[key] = params.pop(value[len("attach://") :], value)
            return params
        return dict(request.query)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params = await self._params(request)
        call = Call(method, params)
        self.calls.append(call)
        self._changed.set()
        queue = self._failures.get(method)
        if queue:
            failure = queue.popleft()
            call.ok = False
            body: dict[str, Any] = {"ok": False, "error_code": failure.status, "description": failure.description}
            if failure.retry_after is not None:
                body["parameters"] = {"retry_after": failure.retry_after}
            return web.json_response(body, status=failure.status)
        if self._limiter is not None and method in SEND_METHODS:
            wait = self._limiter.retry_after(call.chat_id, time.monotonic())
            if wait > 0:
                call.ok, call.throttled = False, True
                seconds = max(1, math.ceil(wait))  # Telegram says whole seconds
                body = {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {seconds}",
                    "parameters": {"retry_after": seconds},
                }
                return web.json_response(body, status=429)
        return web.json_response({"ok": True, "result": await self._result(method, params)})

    async def _result(self, method: str, params: dict[str, Any]) -> Any:
        now = int(time.time())
        chat = {"id": _chat_id(params.get("chat_id")), "type": "private", "first_name": "Test"}
        if method == "getMe":
            return {"id": 7000001, "is_bot": True, "first_name": "EVN CSKH", "username": "evn_cskh_test_bot"}
        if method == "sendMessage":
            return {"message_id": next(self._message_ids), "date": now, "chat": chat, "text": params.get("text", "")}
        if method == "sendPhoto":
            photo = [{"file_id": "photo-1", "file_unique_id": "u-photo-1", "width": 700, "height": 320}]
            return {"message_id": next(self._message_ids), "date": now, "chat": chat, "photo": photo, "caption": params.get("caption")}
        if method == "setWebhook":
            self.webhook = params
            return True
        if method == "deleteWebhook":
            self.webhook = None
            return True
        if method == "getUpdates":
            offset = int(params.get("offset") or 0)
            while self.updates and self.updates[0]["update_id"] < offset:
                self.updates.popleft()
            if not self.updates:
                await asyncio.sleep(min(float(params.get("timeout") or 0), 0.2))
            return [u for u in self.updates if u["update_id"] >= offset]
        return True  # sendChatAction, answerCallbackQuery, ...

    async def _dump(self, request: web.Request) -> web.Response:
        since = int(request.query.get("since", "0"))
        return web.json_response(
            [{"method": c.method, "params": c.params, "at": c.at, "ok": c.ok, "throttled": c.throttled} for c in self.calls[since:]]
        )

    async def _stats(self, request: web.Request) -> web.Response:
        sends = [c for c in self.calls if c.method in SEND_METHODS]
        return web.json_response(
            {"calls": len(self.calls), "sent": sum(c.ok for c in sends), "throttled": sum(c.throttled for c in sends)}
        )


def _chat_id(value: Any) -> int | str:
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)
