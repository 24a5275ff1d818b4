"""A fake Zalo OA Open API (v3 customer-service messages) and OAuth server on 127.0.0.1.

Both live on one port: point ZALO_API_BASE_URL and ZALO_OAUTH_BASE_URL at `url`.

* `POST /v3.0/oa/message/cs` checks the `access_token` header against the tokens it issued
  (`-216` when unknown or expired), records the message and answers Zalo's way: HTTP 200
  with `"error": 0`. `fail(-32)` / `fail(-230)` / `fail(http_status=500)` script failures.
* `POST /v4/oa/access_token` (grant_type=refresh_token) checks the `secret_key` header and the
  refresh token: each refresh token works once; the answer holds a new access token and a new
  refresh token. `oauth_delay` slows it down so that races are real. Every use of every
  refresh token is recorded in `refresh_uses`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Sent:
    user_id: str
    message: dict[str, Any]
    access_token: str
    at: float = field(default_factory=time.monotonic)

    @property
    def text(self) -> str:
        return str(self.message.get("text") or "")

    @property
    def buttons(self) -> list[dict[str, Any]]:
        payload = (self.message.get("attachment") or {}).get("payload") or {}
        return list(payload.get("buttons") or [])


class FakeZalo:
    def __init__(self, app_id: str, app_secret: str, access_token: str, refresh_token: str) -> None:
        self.app_id = app_id
        self.app_secret = app_secret
        self.valid_access = {access_token}
        self.valid_refresh = {refresh_token}
        self.sent: list[Sent] = []
        self.attempts = 0  # message requests, failed ones included
        self.refresh_uses: Counter[str] = Counter()
        self.refresh_failures = 0
        self.oauth_delay = 0.0
        self._failures: deque[tuple[int | None, int]] = deque()  # (zalo error, http status)
        self._counter = itertools.count(2)
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeZalo:
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/cs", self._message)
        app.router.add_post("/v4/oa/access_token", self._oauth)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def fail(self, error: int | None = None, *, http_status: int = 200, times: int = 1) -> None:
        for _ in range(times):
            self._failures.append((error, http_status))

    def expire(self, access_token: str) -> None:
        """The access token stops working (Zalo answers -216 for it)."""
        self.valid_access.discard(access_token)

    def to(self, user_id: str) -> list[Sent]:
        return [s for s in self.sent if s.user_id == str(user_id)]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"fake Zalo: condition not met within {within} s; sent: {[s.text[:40] for s in self.sent[-10:]]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))
            except TimeoutError:
                pass

    async def _message(self, request: web.Request) -> web.Response:
        self.attempts += 1
        self._changed.set()
        if self._failures:
            error, status = self._failures.popleft()
            if status != 200:
                return web.json_response({"error": "server"}, status=status)
            return web.json_response({"error": error, "message": f"fake error {error}"})
        token = request.headers.get("access_token", "")
        if token not in self.valid_access:
            return web.json_response({"error": -216, "message": "Access token is invalid"})
        body = await request.json()
        recipient = (body.get("recipient") or {}).get("user_id")
        message = body.get("message")
        if not recipient or not isinstance(message, dict) or not (message.get("text") or message.get("attachment")):
            return web.json_response({"error": -201, "message": "message is invalid"})
        self.sent.append(Sent(str(recipient), message, token))
        return web.json_response({"error": 0, "message": "Success", "data": {"message_id": f"m{len(self.sent)}", "user_id": recipient}})

    async def _oauth(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("refresh_token") or "")
        self.refresh_uses[token] += 1
        if self.oauth_delay:
            await asyncio.sleep(self.oauth_delay)
        if request.headers.get("secret_key") != self.app_secret or form.get("app_id") != self.app_id:
            self.refresh_failures += 1
            return web.json_response({"error": -14001, "error_name": "Invalid app", "error_description": "secret_key or app_id is wrong"})
        if form.get("grant_type") != "refresh_token" or token not in self.valid_refresh:
            self.refresh_failures += 1
            return web.json_response({"error": -14014, "error_name": "Invalid refresh token", "error_description": "refresh token is invalid or used"})
        self.valid_refresh.discard(token)
        n = next(self._counter)
        access, refresh = f"at-{n}", f"rt-{n}"
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        return web.json_response({"access_token": access, "refresh_token": refresh, "expires_in": "90000"})
