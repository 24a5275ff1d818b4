"""Inbound rate limits at the HTTP edge: per sender and per client address.

* **Per sender** (`RATE_LIMIT_PER_SENDER`, default 20/min): a REST sender id, a Telegram chat, a
  Zalo user. The REST channel answers 429 with `Retry-After`. The Telegram and Zalo webhooks
  answer 200 (a non-2xx makes the platform redeliver, and Telegram holds back the bot's other
  updates meanwhile), drop the update and tell the chat once per window to slow down.
* **Per client address** (`RATE_LIMIT_PER_IP`, default 600/min): every route except the
  platforms' own callbacks (Telegram, Zalo, VNPay's IPN: their servers' addresses carry every
  customer's traffic), the health probes and the console's static files; 429 with `Retry-After`.
  The client address is the peer, or, when the peer is one of `TRUSTED_PROXIES`, the nearest
  address in `X-Forwarded-For` that is not a trusted proxy. IPv6 clients are counted per /64
  (one subscriber's usual allocation), so hopping addresses within it does not help.
* **Exempt** (`RATE_LIMIT_EXEMPT`, default loopback): requests from these client addresses are
  never limited: health checks, benchmarks and tests on the same host. A reverse proxy on the
  same host must send `X-Forwarded-For` (loopback is a trusted proxy by default), or every
  customer behind it would be exempt.

The algorithm is GCRA, a token bucket kept as one number per key (the time at which the
bucket would be full again): "20/min" allows a burst of 20, then one every 3 s. With REDIS_URL
the number lives in Redis and is updated by one Lua script with Redis's clock, so every worker
process shares each budget; without Redis, in this process's memory (bounded). If Redis fails,
requests are let through (a limiter must not take the service down) and a warning is logged.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.payments import IPN_PATH
from backend.settings import Settings
from bot.resilience import redis_client

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Paths the per-address limit leaves alone (prefixes). The platforms' callbacks come from their
# servers, which carry every customer (per-chat limits apply to them instead); probes must see
# the service as it is; static files are cheap and a page loads several.
NOT_PER_IP = ("/webhooks/telegram", "/webhooks/zalo", IPN_PATH, "/health", "/ready", "/console/static/")

# Said to a Telegram or Zalo chat whose messages are being dropped, once per window.
SLOW_DOWN_REPLY = (
    "Bạn gửi tin nhắn hơi nhanh, tôi chưa kịp xử lý hết. Bạn vui lòng đợi một chút rồi gửi lại nhé.\n"
    "(You are sending messages faster than I can read them. Please wait a moment and send again.)"
)

_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+?)s?\s*$")


@dataclass(frozen=True)
class Rate:
    """`count` requests per `period` seconds, the first `count` of them at once if need be."""

    count: int
    period: float

    @property
    def interval(self) -> float:
        return self.period / self.count

    @classmethod
    def parse(cls, text: str, variable: str) -> Rate | None:
        """"20/min", "5/s", "1000/hour"; "0", "off" or "" mean no limit (None)."""
        value = text.strip().lower()
        if value in ("", "0", "off", "none"):
            return None
        match = _RATE_RE.match(value)
        if not match or match.group(2) not in _PERIODS or int(match.group(1)) == 0:
            raise ValueError(f"{variable} must look like 20/min, 5/s or 1000/h (or off), got {text!r}")
        return cls(int(match.group(1)), float(_PERIODS[match.group(2)]))

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


def parse_networks(text: str, variable: str) -> tuple[IPNetwork, ...]:
    """A comma-separated list of addresses and networks ("127.0.0.1, 10.0.0.0/8, ::1")."""
    networks = []
    for item in text.split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{variable}: {item.strip()!r} is not an IP address or network") from None
    return tuple(networks)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: float = 0.0  # seconds until one more request would be allowed

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


ALLOWED = Verdict(True)


# -- where the budgets live ------------------------------------------------------------------


class LimiterBackend(ABC):
    @abstractmethod
    async def hit(self, key: str, rate: Rate) -> Verdict:
        """Spend one request of `key`'s budget if there is one left."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class MemoryLimiter(LimiterBackend):
    """One process's memory (the embedded default). At most `max_keys` budgets are kept: full
    buckets are forgotten first (forgetting one changes nothing), then the oldest."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._full_at: dict[str, float] = {}
        self._max_keys = max_keys
        self._clock = clock

    async def hit(self, key: str, rate: Rate) -> Verdict:
        now = self._clock()
        full_at = max(self._full_at.get(key, now), now)
        new_full_at = full_at + rate.interval
        if new_full_at - now > rate.period:
            return Verdict(False, new_full_at - now - rate.period)
        if key not in self._full_at and len(self._full_at) >= self._max_keys:
            self._make_room(now)
        self._full_at[key] = new_full_at
        return ALLOWED

    def _make_room(self, now: float) -> None:
        for key in [k for k, full_at in self._full_at.items() if full_at <= now]:
            del self._full_at[key]
        while len(self._full_at) >= self._max_keys:
            del self._full_at[next(iter(self._full_at))]

    def __len__(self) -> int:
        return len(self._full_at)


# GCRA in one step, on Redis's clock (milliseconds), so workers with skewed clocks agree.
# Returns {1, "0"} when allowed, {0, "<ms to wait>"} when not; the key expires when full.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local full_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if full_at < now then full_at = now end
local new_full_at = full_at + interval
if new_full_at - now > period then
  return {0, string.format('%.3f', new_full_at - now - period)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_full_at), 'PX', math.ceil(new_full_at - now))
return {1, '0'}
"""


class RedisLimiter(LimiterBackend):
    """Shared by every worker process; one key per budget (`ratelimit:...`), named directly."""

    def __init__(self, redis: Redis, prefix: str = "ratelimit:", owned: bool = False) -> None:
        self.redis = redis
        self.prefix = prefix
        self.owned = owned
        self._script = redis.register_script(_GCRA)
        self._warned_at = -math.inf

    async def hit(self, key: str, rate: Rate) -> Verdict:
        try:
            allowed, wait_ms = await self._script(keys=[self.prefix + key], args=[f"{rate.interval * 1000:.3f}", f"{rate.period * 1000:.3f}"])
        except (RedisError, OSError) as exc:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rate limits: Redis unavailable (%s); requests are not limited meanwhile", type(exc).__name__)
            return ALLOWED
        if int(allowed):
            return ALLOWED
        return Verdict(False, float(wait_ms) / 1000)

    async def close(self) -> None:
        if self.owned:
            await self.redis.aclose()


# -- the app's limits --------------------------------------------------------------------------


class RateLimits:
    """The limits of one app: rates and address lists parsed from the settings at creation
    (a bad value stops startup with the variable's name), the backend opened at startup."""

    def __init__(
        self,
        per_sender: Rate | None,
        per_ip: Rate | None,
        trusted_proxies: Iterable[IPNetwork] = (),
        exempt: Iterable[IPNetwork] = (),
        redis_url: str | None = None,
    ) -> None:
        self.per_sender = per_sender
        self.per_ip = per_ip
        self.trusted_proxies = tuple(trusted_proxies)
        self.exempt = tuple(exempt)
        self.redis_url = redis_url
        self.backend: LimiterBackend | None = None
        self._logged_until: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        return cls(
            per_sender=Rate.parse(settings.rate_limit_per_sender, "RATE_LIMIT_PER_SENDER"),
            per_ip=Rate.parse(settings.rate_limit_per_ip, "RATE_LIMIT_PER_IP"),
            trusted_proxies=parse_networks(settings.trusted_proxies, "TRUSTED_PROXIES"),
            exempt=parse_networks(settings.rate_limit_exempt, "RATE_LIMIT_EXEMPT"),
            redis_url=settings.redis_url,
        )

    async def start(self) -> None:
        if self.redis_url:
            self.backend = RedisLimiter(redis_client(self.redis_url), owned=True)
        else:
            self.backend = MemoryLimiter()

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()
            self.backend = None

    # -- who is asking ---------------------------------------------------------------------------

    def _trusted(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def client_address(self, request: web.Request) -> IPAddress | None:
        """The peer, or the nearest untrusted hop of X-Forwarded-For behind trusted proxies.
        Only hops our own proxies wrote are believed: the walk goes from the right and stops
        at the first address that is not a trusted proxy (anything to its left, the client may
        have made up). An unreadable hop stops the walk at the last trusted one."""
        address = _ip(request.remote)
        if address is None or not self._trusted(address):
            return address
        hops = [hop for header in request.headers.getall("X-Forwarded-For", []) for hop in header.split(",")]
        for hop in reversed(hops):
            forwarded = _ip(hop)
            if forwarded is None:
                break
            address = forwarded
            if not self._trusted(address):
                break
        return address

    def is_exempt(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self.exempt)

    # -- checks ----------------------------------------------------------------------------------

    async def check_ip(self, request: web.Request) -> Verdict:
        if self.per_ip is None or self.backend is None or request.path.startswith(NOT_PER_IP):
            return ALLOWED
        address = self.client_address(request)
        if self.is_exempt(address):
            return ALLOWED
        key = f"ip:{_address_key(address)}"
        verdict = await self.backend.hit(key, self.per_ip)
        if not verdict.allowed:
            self._log_denied(key, verdict)
        return verdict

    async def check_sender(self, request: web.Request, channel: str, sender: str) -> Verdict:
        if self.per_sender is None or self.backend is None or self.is_exempt(self.client_address(request)):
            return ALLOWED
        key = f"sender:{channel}:{sender}"
        verdict = await self.backend.hit(key, self.per_sender)
        if not verdict.allowed:
            self._log_denied(key, verdict)
        return verdict

    def _log_denied(self, key: str, verdict: Verdict) -> None:
        """Once per key and window: a flood must not flood the log as well."""
        now = time.monotonic()
        if self._logged_until.get(key, 0.0) > now:
            return
        if len(self._logged_until) > 10_000:
            self._logged_until.clear()
        self._logged_until[key] = now + max(verdict.retry_after, 1.0)
        log.warning("rate limit: %s is over its limit; refused for %.1f s", key, verdict.retry_after)


def _ip(text: str | None) -> IPAddress | None:
    """An address from a peer or a forwarded hop ("1.2.3.4", "1.2.3.4:5678", "[::1]:80")."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _address_key(address: IPAddress | None) -> str:
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


# -- in the app ----------------------------------------------------------------------------------

RATE_LIMITS = web.AppKey("rate_limits", RateLimits)


def too_many_requests(verdict: Verdict) -> web.Response:
    seconds = verdict.retry_after_header
    return web.json_response(
        {"error": f"too many requests, retry in {seconds} s", "retry_after": int(seconds)},
        status=429,
        headers={"Retry-After": seconds},
    )


@web.middleware
async def ip_rate_limit(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """The per-address limit, before any other work is done for the request."""
    limits = request.app.get(RATE_LIMITS)
    if limits is not None:
        verdict = await limits.check_ip(request)
        if not verdict.allowed:
            return too_many_requests(verdict)
    return await handler(request)


async def sender_verdict(request: web.Request, channel: str, sender: str) -> Verdict:
    """Spend one message of `sender`'s budget on `channel` (allowed when the app has no limits)."""
    limits = request.app.get(RATE_LIMITS)
    return ALLOWED if limits is None else await limits.check_sender(request, channel, sender)


def register_rate_limits(app: web.Application, settings: Settings) -> RateLimits:
    """Parse the limits now (bad settings stop startup) and open their store with the app.
    The per-address check is `ip_rate_limit`, which the app lists among its middlewares."""
    limits = RateLimits.from_settings(settings)

    async def start(app: web.Application) -> None:
        await limits.start()

    async def stop(app: web.Application) -> None:
        await limits.close()

    app[RATE_LIMITS] = limits
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return limits
