"""What every messaging platform needs, written once: the webhook edge (on/off, signature,
JSON, dedupe, quick acknowledgement, logging), background processing, the turn -> outbox
relay, outgoing rate limits, text splitting and the delivery errors the outbox worker knows.

Telegram and Zalo differ only in the functions they plug in here: how to verify a request,
how to parse it, what its update id is, and how to turn it into `UserMessage`s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from redis.asyncio import Redis

from backend.services import inbound, notifications
from bot.channels.base import ChannelHost, Message, UserMessage
from bot.ratelimit import SLOW_DOWN_REPLY, sender_verdict
from bot.resilience import redis_client
from bot.stores import LockTimeout
from bot.tasks import stop_task

log = logging.getLogger("bot.channels")
T = TypeVar("T")

# Said when a customer sends something the bot cannot read (sticker, photo, voice, file). Both
# languages: nothing in a sticker tells us which one the customer reads.
TEXT_ONLY_REPLY = (
    "Xin lỗi, hiện tôi chỉ đọc được tin nhắn chữ. Bạn vui lòng nhắn nội dung cần hỗ trợ nhé.\n"
    "(Sorry, I can only read text messages. Please type what you need.)"
)
ERROR_REPLY = (
    "Xin lỗi, hệ thống đang gặp sự cố nên chưa trả lời được tin nhắn này. Bạn vui lòng thử lại sau ít phút.\n"
    "(Sorry, something went wrong on our side. Please try again in a few minutes.)"
)
BUSY_REPLY = (
    "Xin lỗi, tôi đang xử lý tin nhắn trước của bạn. Bạn vui lòng gửi lại sau ít phút nhé.\n"
    "(Sorry, I am still working on your previous message. Please send it again in a minute.)"
)


# -- delivery outcomes ------------------------------------------------------------------------


class DeliveryError(Exception):
    """A platform refused or failed to take a message; `reason` is safe to log and store
    (error codes and descriptions, never tokens or the message text)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(DeliveryError):
    """Try again later: a network error, a 5xx, a rate limit. `after` is the delay the platform
    asked for (Telegram's retry_after), in seconds, or None for the worker's backoff."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.after = after


class GiveUp(DeliveryError):
    """The message can never be delivered as it is (blocked bot, unknown chat, outside Zalo's
    interaction window): record the reason and move on to the chat's next message."""


# -- small key-value store: dedupe, long button payloads ------------------------------------


class KeyValueStore(ABC):
    """A few short-lived keys shared by the workers: Redis when configured, else in memory."""

    @abstractmethod
    async def add(self, key: str, ttl: int) -> bool:
        """Record `key` for `ttl` seconds; False if it was already there (SET NX)."""

    @abstractmethod
    async def put(self, key: str, value: str, ttl: int) -> None: ...

    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass


class MemoryKeyValueStore(KeyValueStore):
    """One process's memory: right for the embedded default (one process)."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._data: dict[str, tuple[float, str]] = {}
        self._max_keys = max_keys

    def _live(self, key: str, now: float) -> tuple[float, str] | None:
        entry = self._data.get(key)
        if entry is not None and entry[0] <= now:
            del self._data[key]
            return None
        return entry

    def _make_room(self, now: float) -> None:
        if len(self._data) < self._max_keys:
            return
        for key in [k for k, (expires, _) in self._data.items() if expires <= now]:
            del self._data[key]
        while len(self._data) >= self._max_keys:  # still full: forget the oldest insertions
            del self._data[next(iter(self._data))]

    async def add(self, key: str, ttl: int) -> bool:
        now = time.monotonic()
        if self._live(key, now) is not None:
            return False
        self._make_room(now)
        self._data[key] = (now + ttl, "1")
        return True

    async def put(self, key: str, value: str, ttl: int) -> None:
        now = time.monotonic()
        self._make_room(now)
        self._data[key] = (now + ttl, value)

    async def get(self, key: str) -> str | None:
        entry = self._live(key, time.monotonic())
        return entry[1] if entry else None


class RedisKeyValueStore(KeyValueStore):
    """Shared by every worker process; keys are named directly, never scanned."""

    def __init__(self, redis: Redis, prefix: str = "channels:", owned: bool = False) -> None:
        self.redis = redis
        self.prefix = prefix
        self.owned = owned

    async def add(self, key: str, ttl: int) -> bool:
        return bool(await self.redis.set(self.prefix + key, "1", nx=True, ex=ttl))

    async def put(self, key: str, value: str, ttl: int) -> None:
        await self.redis.set(self.prefix + key, value, ex=ttl)

    async def get(self, key: str) -> str | None:
        value = await self.redis.get(self.prefix + key)
        return value.decode() if isinstance(value, bytes) else value

    async def close(self) -> None:
        if self.owned:
            await self.redis.aclose()


def build_key_value_store(redis_url: str | None) -> KeyValueStore:
    if redis_url:
        return RedisKeyValueStore(redis_client(redis_url), owned=True)
    return MemoryKeyValueStore()


# -- background work ---------------------------------------------------------------------------


class TaskSet:
    """Background tasks the webhooks start after acknowledging; kept referenced (so they are
    not garbage-collected mid-flight), their errors logged, and awaited at shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, grace_seconds: float = 30.0) -> None:
        """Wait for the running tasks (new ones spawned meanwhile included); cancel what is
        still running after `grace_seconds`."""
        deadline = time.monotonic() + grace_seconds
        while self._tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                break
            await asyncio.wait(list(self._tasks), timeout=remaining)


# -- the webhook edge --------------------------------------------------------------------------


class BadUpdate(ValueError):
    """The body passed verification but is not an update we can read (answered 400)."""


@dataclass
class WebhookEdge(Generic[T]):
    """A platform's webhook, in the order that keeps it safe and cheap:

    1. the channel is off -> 404 (the route exists, nobody may use it);
    2. `verify(request, raw_body)` fails -> 401, nothing parsed, stored or logged but the fact;
    3. `parse(raw_body)` raises BadUpdate -> 400 with the reason;
    4. `update_id(update)` was seen before (Telegram retries on any non-2xx, Zalo may deliver
       twice) -> 200, dropped;
    5. the chat `sender(update)` is over its rate limit (bot/ratelimit.py) -> 200, dropped, and
       the chat is told once per window (through `relay`) to slow down;
    6. otherwise `process(update)` runs in the background and the platform gets 200 at once.

    With `journal` on, a webhook update is written to the inbound journal
    (backend/services/inbound.py) before step 4 and deleted once handled: the platform will not
    send again after our 200, so a worker that dies mid-turn must leave the update where
    another worker's `recover()` finds it. If the database cannot take it, the update is
    handled as before, without that safety net.
    """

    channel: str
    enabled: Callable[[], bool]
    verify: Callable[[web.Request, bytes], bool]
    parse: Callable[[bytes], T]
    update_id: Callable[[T], str | None]
    process: Callable[[T], Awaitable[None]]
    dedupe: Callable[[], KeyValueStore]
    tasks: TaskSet
    dedupe_ttl: int = 2 * 24 * 3600
    sender: Callable[[T], str | None] = lambda update: None  # the chat whose budget it spends
    relay: TurnRelay | None = None
    journal: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        if not self.enabled():
            return web.json_response({"error": f"the {self.channel} channel is not configured"}, status=404)
        raw = await request.read()
        if not self.verify(request, raw):
            log.warning("%s webhook: refused a request with a missing or wrong signature", self.channel)
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            update = self.parse(raw)
        except BadUpdate as exc:
            log.warning("%s webhook: unreadable update (%s)", self.channel, exc)
            return web.json_response({"error": str(exc)}, status=400)
        return await self.accept(update, request, raw)

    async def accept(self, update: T, request: web.Request | None = None, raw: bytes | None = None) -> web.Response:
        """Steps 4 to 6 (also the entry of Telegram's long-polling mode, which has no request,
        no raw body to journal and no rate limit)."""
        update_id = self.update_id(update)
        held = False
        if self.journal and raw is not None and update_id is not None:
            try:
                if not await inbound.hold(self.channel, update_id, raw.decode("utf-8", "replace")):
                    log.info("%s update %s: already in flight, dropped", self.channel, update_id)
                    return web.json_response({"ok": True, "duplicate": True})
                held = True
            except Exception as exc:
                log.warning("%s update %s: not journaled (%s); handled without recovery", self.channel, update_id, type(exc).__name__)
        if update_id is not None and not await self.dedupe().add(f"seen:{self.channel}:{update_id}", self.dedupe_ttl):
            log.info("%s update %s: duplicate, dropped", self.channel, update_id)
            await self._release(update_id, held)
            return web.json_response({"ok": True, "duplicate": True})
        sender = self.sender(update)
        if request is not None and sender is not None:
            verdict = await sender_verdict(request, self.channel, sender)
            if not verdict.allowed:
                if self.relay is not None and await self.dedupe().add(f"slow-down:{self.channel}:{sender}", int(verdict.retry_after_header)):
                    notice = self.relay.say(sender, [{"text": SLOW_DOWN_REPLY}], dedupe_prefix=f"{self.channel}:slow-down:{update_id}")
                    self.tasks.spawn(notice, name=f"{self.channel}-slow-down-{update_id}")
                await self._release(update_id, held)
                return web.json_response({"ok": True, "throttled": True})
        log.info("%s update %s: accepted", self.channel, update_id)
        self.tasks.spawn(self._process(update, update_id, held), name=f"{self.channel}-update-{update_id}")
        return web.json_response({"ok": True})

    async def recover(self, older_than: float, lease_seconds: float, max_attempts: int = 5) -> int:
        """Handle the journaled updates of this channel that some worker acknowledged more than
        `older_than` seconds ago and never finished (it died); returns how many were handled."""
        handled = 0
        for pending in await inbound.claim_stale([self.channel], older_than, lease_seconds):
            if pending.attempts > max_attempts:
                log.error("%s update %s: still unhandled after %d recoveries; dropped", self.channel, pending.update_id, max_attempts)
                await self._release(pending.update_id, True)
                continue
            try:
                update = self.parse(pending.payload.encode("utf-8"))
            except BadUpdate:
                await self._release(pending.update_id, True)
                continue
            log.warning("%s update %s: recovered (its worker stopped before handling it)", self.channel, pending.update_id)
            await self._process(update, pending.update_id, True)
            handled += 1
        return handled

    async def _process(self, update: T, update_id: str | None, held: bool = False) -> None:
        started = time.monotonic()
        try:
            await self.process(update)
        except Exception:
            log.exception("%s update %s: processing failed", self.channel, update_id)
        else:
            log.debug("%s update %s: processed in %.0f ms", self.channel, update_id, (time.monotonic() - started) * 1000)
        # Handled, or failed with a reply to the customer already: either way not to be redone.
        await self._release(update_id, held)

    async def _release(self, update_id: str | None, held: bool) -> None:
        if not held or update_id is None:
            return
        try:
            await inbound.release(self.channel, update_id)
        except Exception as exc:  # it stays journaled: a recovery will handle it again, harmlessly
            log.warning("%s update %s: journal entry not cleared (%s)", self.channel, update_id, type(exc).__name__)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or BadUpdate."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadUpdate("the body must be valid JSON") from None
    if not isinstance(body, dict):
        raise BadUpdate("the body must be a JSON object")
    return body


# -- one turn: agent -> outbox -----------------------------------------------------------------


class TurnRelay:
    """Runs a customer's message through the agent and writes the replies to the outbox.

    A chat's turns are relayed one at a time, in arrival order, under a lock of their own
    (the lock store's, so it holds across worker processes too): the replies of one message
    are in the outbox before the next message of the chat is handled, so outbox ids, and hence
    delivery, follow the conversation. `wake` tells the local outbox worker there is work.
    """

    def __init__(self, channel: str, host: Callable[[], ChannelHost]) -> None:
        self.channel = channel
        self.host = host
        self._local_locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def _in_order(self, conversation: str) -> AsyncIterator[None]:
        lock_store = getattr(self.host(), "lock_store", None)
        if lock_store is not None:
            async with lock_store.lock(f"{conversation}#relay"):
                yield
            return
        lock = self._local_locks.setdefault(conversation, asyncio.Lock())
        async with lock:
            yield

    async def turn(self, message: UserMessage, dedupe_prefix: str, *, while_working: Callable[[], Awaitable[None]] | None = None) -> None:
        """The agent's answer to `message`, queued for `message.sender_id`. `while_working` is
        repeated while the agent works (Telegram's "typing")."""
        try:
            async with self._in_order(message.conversation_id):
                if while_working is None:
                    replies = await self.host().handle_message(message)
                else:
                    async with keep_doing(while_working):
                        replies = await self.host().handle_message(message)
                await notifications.enqueue_messages(self.channel, message.sender_id, _sendable(replies), dedupe_prefix=dedupe_prefix)
        except LockTimeout:  # the conversation stayed busy for the lock store's whole wait
            log.warning("%s conversation %s: busy, message %s not handled", self.channel, message.conversation_id, message.message_id)
            await notifications.enqueue_messages(self.channel, message.sender_id, [{"text": BUSY_REPLY}], dedupe_prefix=dedupe_prefix)
        except Exception:  # a bug or an outage below us: say so rather than stay silent
            log.exception("%s conversation %s: message %s failed", self.channel, message.conversation_id, message.message_id)
            await notifications.enqueue_messages(self.channel, message.sender_id, [{"text": ERROR_REPLY}], dedupe_prefix=dedupe_prefix)

    async def say(self, recipient_id: str, messages: Sequence[Message], dedupe_prefix: str) -> None:
        """Queue messages that are not the agent's answer (the text-only notice), in order with
        the chat's turns."""
        conversation = UserMessage(recipient_id, "", self.channel).conversation_id
        async with self._in_order(conversation):
            await notifications.enqueue_messages(self.channel, recipient_id, list(messages), dedupe_prefix=dedupe_prefix)


def _sendable(replies: list[Message]) -> list[Message]:
    """Only what a chat can show; the `response` name stays (it is harmless and useful in logs)."""
    keep = ("text", "buttons", "image", "attachment", "custom", "response")
    return [{k: v for k, v in r.items() if k in keep and v} for r in replies if any(r.get(k) for k in keep[:5])]


@contextlib.asynccontextmanager
async def keep_doing(action: Callable[[], Awaitable[None]], every: float = 4.5) -> AsyncIterator[None]:
    """Call `action` now and every `every` seconds until the block ends (Telegram's "typing"
    lasts 5 s). Failures are ignored: it is only a courtesy."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(Exception):
                await action()
            await asyncio.sleep(every)

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield
    finally:
        await stop_task(task)


# -- outgoing rate limits ----------------------------------------------------------------------


class _Bucket:
    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_time(self, now: float) -> float:
        self.refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


async def _reserve(bucket: _Bucket) -> None:
    """Take the bucket's next token, waiting until it is due (the tokens go below zero for the
    waiters queued ahead)."""
    now = time.monotonic()
    bucket.refill(now)
    bucket.tokens -= 1
    if bucket.tokens < 0:
        due = now - bucket.tokens / bucket.rate  # a time, not a delay: the queue keeps its order
        await asyncio.sleep(max(0.0, due - time.monotonic()))


class RateLimiter:
    """Token buckets: one for the whole platform (`per_second`, e.g. Telegram's ~30 messages/s)
    and one per chat (`per_chat_per_second` after a small `burst`, e.g. 1/s after 3, which
    Telegram tolerates). A rate of 0 means no limit. Per process: with N worker processes give
    each 1/N of the platform's budget.

    The platform's budget is kept two ways: messages are spaced 1/rate apart (no bursts), and no
    one-second window ever holds more than the rate (rounded down) of messages actually let
    through, however late the event loop woke a waiter (spacing alone lets a late message and
    an on-time one come closer than 1/rate, and two workers at 15/s then make 31 in a second).

    First come, first served: a message takes its chat's token, then queues for the platform's
    (an asyncio.Lock hands over in arrival order). Waiters that slept and raced for the next
    token let an unlucky message lose that race for minutes in a backlog, past its outbox lease."""

    def __init__(self, per_second: float, per_chat_per_second: float, burst: int = 3) -> None:
        self.per_second = per_second
        self.per_chat = per_chat_per_second
        self.burst = burst
        now = time.monotonic()
        self._global = _Bucket(per_second, 1.0, now) if per_second > 0 else None
        self._sent: collections.deque[float] = collections.deque(maxlen=max(1, math.floor(per_second)))
        self._queue = asyncio.Lock()
        self._chats: dict[str, _Bucket] = {}

    async def wait(self, chat: str) -> None:
        """Return when one more message to `chat` is allowed (and count it)."""
        bucket = self._chat_bucket(chat, time.monotonic())
        if bucket is not None:
            await _reserve(bucket)
        if self._global is None:
            return
        async with self._queue:
            now = time.monotonic()
            due = now + self._global.wait_time(now)
            if len(self._sent) == self._sent.maxlen:
                due = max(due, self._sent[0] + 1.0)
            if due > now:
                await asyncio.sleep(due - now)
            now = time.monotonic()
            self._global.refill(now)
            self._global.tokens -= 1
            self._sent.append(now)

    def _chat_bucket(self, chat: str, now: float) -> _Bucket | None:
        if self.per_chat <= 0:
            return None
        bucket = self._chats.get(chat)
        if bucket is None:
            if len(self._chats) > 10_000:  # forget chats whose bucket has refilled
                for key in [k for k, b in self._chats.items() if b.wait_time(now) == 0 and b.tokens >= b.capacity]:
                    del self._chats[key]
            bucket = self._chats[chat] = _Bucket(self.per_chat, float(self.burst), now)
        return bucket


# -- text -----------------------------------------------------------------------------------------


def utf16_len(text: str) -> int:
    """Telegram counts message length in UTF-16 code units (an emoji outside the BMP is 2)."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """`text` in parts of at most `limit` (as `measure` counts), cut at a paragraph or line
    break in the second half of a part if there is one, else at the last space; a single word
    longer than `limit` is cut where it must be. Whitespace at a cut is dropped, nothing else."""
    parts: list[str] = []
    rest = text
    while measure(rest) > limit:
        low, high = 1, len(rest)  # the longest prefix within the limit (measure may not be len)
        while low < high:
            middle = (low + high + 1) // 2
            if measure(rest[:middle]) <= limit:
                low = middle
            else:
                high = middle - 1
        window = rest[:low]
        cut = next((i for i in (window.rfind("\n\n"), window.rfind("\n")) if i >= low // 2), -1)
        if cut < 0:
            cut = low if rest[low].isspace() else max(window.rfind(" "), window.rfind("\t"), window.rfind("\n"))
        if cut <= 0:
            cut = low
        if rest[:cut].strip():
            parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


def is_public_https(url: str) -> bool:
    """Platforms fetch URLs themselves (photos) or refuse non-public ones (URL buttons)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    private = host in ("localhost", "") or host.startswith(("127.", "10.", "192.168.", "0.")) or host.endswith(".local")
    return parts.scheme == "https" and not private
