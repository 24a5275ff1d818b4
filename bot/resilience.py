"""Staying useful when something below the service fails, and stopping without dropping work.

- Redis or the database unreachable: an HTTP request answers 503 with `Retry-After` (at once,
  never a hang or a 500), and recovers by itself when the server returns: the Redis clients fail
  fast and replace dead pooled connections, the SQL pool recycles connections and drops the
  ones the server closed.
- Inside a turn, an action that needs the database answers with an apology and the hotline
  (`utter_backend_unavailable`) while greetings, help and tariff questions still work.
- Draining: once shutdown begins, a request on a kept-alive connection answers 503 (the
  listening socket is already closed, so new connections are refused) while in-flight turns
  finish.
- REST idempotency: a message resent with the same `message_id` (a client retrying after a
  timeout or a crashed worker) gets the replies stored for it instead of a second turn.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from backend import db
from backend.tariffs import remember_current_tariffs
from bot.stores import StaleTrackerError

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 2
# Channels whose message ids name one customer message, so a repeated id is a resend. Not
# Telegram: a button press carries the id of the message the button is on.
IDEMPOTENT_CHANNELS = frozenset({"rest"})


class _Drain:
    """Set once shutdown begins (a holder, since a started app's keys must not change)."""

    active = False


DRAIN = web.AppKey("drain", _Drain)


def redis_client(url: str) -> Redis:
    """A Redis client that fails fast while Redis is down and heals when it is back: bounded
    connect and read times; one quick retry of a command on a fresh connection, so a pooled
    connection that died with a Redis restart costs no request (redis-py's default, ten retries
    with backoff, holds every request for seconds while Redis is down); idle connections are
    checked before use."""
    return Redis.from_url(
        url,
        socket_connect_timeout=1,
        socket_timeout=5,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        health_check_interval=30,
    )


def unavailable(exc: BaseException) -> str | None:
    """Which dependency `exc` says is unreachable ("redis", "database"), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (RedisConnectionError, RedisTimeoutError)):
            return "redis"
        current = current.__cause__ or current.__context__
    return "database" if db.is_unavailable(exc) else None


def _retry_later(error: str) -> web.Response:
    return web.json_response(
        {"error": error}, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"}
    )


@web.middleware
async def degrade_gracefully(request: web.Request, handler: Any) -> web.StreamResponse:
    """503 + Retry-After while draining, while Redis or the database is unreachable, and when a
    turn kept losing the race for its conversation (nothing was stored: the client may resend)."""
    drain = request.app.get(DRAIN)
    if drain is not None and drain.active:
        return _retry_later("the server is restarting, retry shortly")
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except StaleTrackerError:
        return _retry_later("conversation busy, retry shortly")
    except Exception as exc:
        what = unavailable(exc)
        if what is None:
            raise
        log.warning("%s %s: %s unreachable (%s), answered 503", request.method, request.path, what, type(exc).__name__)
        return _retry_later(f"service temporarily unavailable ({what}), retry shortly")


def register_resilience(app: web.Application) -> None:
    """The 503 middleware, the drain flag, and the tariff memory filled at startup."""
    app.middlewares.append(degrade_gracefully)
    app[DRAIN] = _Drain()

    async def remember(app: web.Application) -> None:
        try:
            await remember_current_tariffs()
        except Exception as exc:
            if not db.is_unavailable(exc):
                raise
            log.warning("database unreachable at startup: tariffs not cached yet")

    async def drain(app: web.Application) -> None:
        app[DRAIN].active = True
        log.info("draining: finishing the turns in flight, refusing new requests")

    app.on_startup.append(remember)
    app.on_shutdown.insert(0, drain)


def failure_response(exc: BaseException) -> str:
    """The response for an action that raised: an apology with the hotline when the database
    (or Redis) is unreachable, the generic error otherwise."""
    return "utter_backend_unavailable" if unavailable(exc) else "utter_error"


def recorded_replies(events: list[dict[str, Any]], channel: str, message_id: str | None) -> list[dict[str, Any]] | None:
    """The bot's replies already stored for the customer message `message_id`, or None if the
    conversation has no such message (or the channel's ids do not name one message)."""
    if not message_id or channel not in IDEMPOTENT_CHANNELS:
        return None
    replies: list[dict[str, Any]] | None = None
    for e in events:
        kind = e.get("event")
        if kind == "user":
            if replies is not None:
                break
            if e.get("message_id") == message_id:
                replies = []
        elif kind == "bot" and replies is not None:
            reply = {k: v for k, v in (e.get("data") or {}).items() if v}
            if e.get("text"):
                reply["text"] = e["text"]
            utter = (e.get("metadata") or {}).get("utter_action")
            if utter:
                reply["response"] = utter
            replies.append(reply)
    return replies
