"""The outbox worker: delivers the outbox rows of the platform channels (Telegram, Zalo).

Everything the bot says on a platform (replies, payment confirmations, ticket updates, power
restored, agents' messages from the console) is an outbox row first. One worker per process:

* claims due rows with a lease (`notifications.claim_due`): per chat, the oldest pending
  message and the ones after it, so a chat's messages go out in the order they were written
  and no two workers ever send to the same chat at once;
* sends each chat's messages one after the other (chats in parallel), through the channel's
  `Sender`, within the platform's rate limits (the sender's limiter);
* records the outcome (`notifications.settle`, batched): sent; retry later with exponential
  backoff, or when the platform said (429 retry_after); failed with the reason, on a permanent
  error or after `max_attempts`. A retry holds back the chat's later messages (order), a
  permanent failure does not.

While a worker holds rows (its sends may queue behind the platform's rate limit) it renews
their leases every third of the lease, and it never starts a send on a lease older than 80 %
of its length. A worker that dies mid-send leaves leased rows; when the lease expires another
worker (or this one after a restart) claims and sends them again: at-least-once. Neither Telegram nor
Zalo accepts an idempotency key on sends, so a message whose send succeeded just before the
crash, and was not yet recorded, is sent twice; the window is one HTTP call per chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from backend.clock import utcnow
from backend.services import notifications
from backend.services.notifications import Failure, OutboxItem, Retry
from bot.channels.base import Message
from bot.channels.middleware import GiveUp, RetryLater
from bot.metrics import outbox_send_failed
from bot.tasks import stop_task

log = logging.getLogger(__name__)


class Sender(Protocol):
    """Delivers rendered messages to one platform; raises RetryLater or GiveUp."""

    channel: str

    async def deliver(self, item: OutboxItem, messages: list[Message]) -> None: ...


def backoff_seconds(attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff after `attempts` failed attempts (1 -> ~base), with ±20 % jitter so
    that messages that failed together do not all come back together."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)


@dataclass
class _Outcomes:
    sent: list[int] = field(default_factory=list)
    retry: list[Retry] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    released: list[int] = field(default_factory=list)

    def merge(self, other: _Outcomes) -> None:
        self.sent += other.sent
        self.retry += other.retry
        self.failed += other.failed
        self.released += other.released

    def __bool__(self) -> bool:
        return bool(self.sent or self.retry or self.failed or self.released)


class _Settler:
    """Writes outcomes in batches: while one transaction runs, the next batch gathers, so a
    busy worker needs far fewer transactions than messages."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._batch = _Outcomes()
        self._waiters: list[asyncio.Future[None]] = []
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="outbox-settler")

    async def add(self, outcomes: _Outcomes) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.merge(outcomes)
        self._waiters.append(waiter)
        self._event.set()
        await waiter

    async def _loop(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, waiters = self._batch, self._waiters
        self._batch, self._waiters = _Outcomes(), []
        if batch:
            try:
                await notifications.settle(
                    self.worker_id, sent=batch.sent, retry=batch.retry, failed=batch.failed, released=batch.released
                )
            except Exception:
                # The rows stay leased; when the lease runs out they are sent again.
                log.exception("outbox: could not record %d outcomes", len(batch.sent) + len(batch.retry) + len(batch.failed))
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def stop(self) -> None:
        await stop_task(self._task)
        await self.flush()


class OutboxWorker:
    """Delivers outbox rows of the channels in `senders`; `render` turns a row into messages
    (the agent's `render_notification`)."""

    def __init__(
        self,
        senders: Iterable[Sender],
        render: Callable[[OutboxItem], list[Message]],
        *,
        worker_id: str | None = None,
        poll_seconds: float = 1.0,
        lease_seconds: float = 120.0,
        max_attempts: int = 8,
        max_chats: int = 100,
        per_chat: int = 10,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
    ) -> None:
        self.senders = {s.channel: s for s in senders}
        self.render = render
        self.worker_id = worker_id or f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.max_chats = max_chats
        self.per_chat = per_chat
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._chats: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._settler = _Settler(self.worker_id)
        # Rows claimed and not yet settled -> time.monotonic() when their lease was last secured
        # (taken before the claim or renewal started, so it errs early).
        self._held: dict[int, float] = {}
        self._renew_task: asyncio.Task[None] | None = None
        self.delivered = 0  # messages sent since start (for logs and the benchmark)

    # -- lifecycle ------------------------------------------------------------------------------

    def wake(self) -> None:
        """There may be new rows: look now instead of at the next poll. Safe from any code on
        the event loop's thread (it only sets an event)."""
        self._wake.set()

    async def start(self) -> None:
        self._settler.start()
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="outbox-worker")
        self._renew_task = asyncio.get_running_loop().create_task(self._renew(), name="outbox-lease-renewal")
        notifications.add_listener(self.wake)
        log.info("outbox worker %s started for %s", self.worker_id, ", ".join(sorted(self.senders)))

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop claiming, let the chats being sent finish (up to `grace_seconds`), record their
        outcomes and hand back whatever is still claimed."""
        notifications.remove_listener(self.wake)
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._chats:
            _, pending = await asyncio.wait(list(self._chats.values()), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await stop_task(self._renew_task)
        await self._settler.stop()
        try:
            released = await notifications.release_claims(self.worker_id)
        except Exception:
            log.exception("outbox worker %s: could not hand back its claims (their leases will expire)", self.worker_id)
            released = 0
        log.info("outbox worker %s stopped (%d delivered, %d handed back)", self.worker_id, self.delivered, released)

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.max_chats - len(self._chats)
            claimed: list[OutboxItem] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception:
                    log.exception("outbox worker %s: claiming failed; retrying after the poll interval", self.worker_id)
            self._start_chats(claimed)
            chats_claimed = len({(i.channel, i.recipient_id) for i in claimed})
            if free > 0 and chats_claimed >= free:
                continue  # there may be more right now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()

    async def run_once(self) -> int:
        """Claim once and deliver what was claimed (tests and tools); returns the rows handled."""
        claimed = await self._claim(self.max_chats)
        groups = [list(g) for _, g in itertools.groupby(claimed, key=lambda i: (i.channel, i.recipient_id))]
        results = await asyncio.gather(*(self._deliver_chat(items) for items in groups))
        for outcomes in results:
            await notifications.settle(
                self.worker_id, sent=outcomes.sent, retry=outcomes.retry, failed=outcomes.failed, released=outcomes.released
            )
        self._forget(claimed)
        return len(claimed)

    async def _claim(self, max_chats: int) -> list[OutboxItem]:
        secured = time.monotonic()
        claimed = await notifications.claim_due(
            self.senders, self.worker_id, max_chats=max_chats, per_chat=self.per_chat, lease_seconds=self.lease_seconds
        )
        for item in claimed:
            self._held[item.id] = secured
        return claimed

    def _forget(self, items: Iterable[OutboxItem]) -> None:
        for item in items:
            self._held.pop(item.id, None)

    async def _renew(self) -> None:
        """Keep the leases of the rows this worker still holds."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not self._held:
                continue
            secured = time.monotonic()
            try:
                renewed = await notifications.extend_leases(self.worker_id, list(self._held), self.lease_seconds)
            except Exception:
                log.exception("outbox worker %s: could not renew its leases (sends stop at 80 %% of the lease)", self.worker_id)
                continue
            for outbox_id in renewed:
                if outbox_id in self._held:
                    self._held[outbox_id] = secured

    def _start_chats(self, claimed: list[OutboxItem]) -> None:
        for chat, group in itertools.groupby(claimed, key=lambda i: (i.channel, i.recipient_id)):
            items = list(group)
            task = asyncio.get_running_loop().create_task(self._chat(items), name=f"outbox-{chat[0]}-{items[0].id}")
            self._chats[chat] = task
            task.add_done_callback(lambda _, chat=chat: self._chat_done(chat))

    def _chat_done(self, chat: tuple[str, str]) -> None:
        self._chats.pop(chat, None)
        # The chat may have more messages, and there is room for another chat: claim again, but
        # once a batch of chats has finished rather than after each one (every claim is a
        # transaction; new rows wake the worker anyway, and the poll catches the rest).
        if self.max_chats - len(self._chats) >= max(1, self.max_chats // 4):
            self._wake.set()

    async def _chat(self, items: list[OutboxItem]) -> None:
        try:
            outcomes = await self._deliver_chat(items)
            await self._settler.add(outcomes)
        finally:
            self._forget(items)

    async def _deliver_chat(self, items: list[OutboxItem]) -> _Outcomes:
        """Send one chat's claimed rows in order; stop at the first that must wait."""
        outcomes = _Outcomes()
        sender = self.senders[items[0].channel]
        # Never send on a lease that may have run out: another worker could be sending too.
        margin = self.lease_seconds * 0.8
        for position, item in enumerate(items):
            if time.monotonic() > self._held.get(item.id, time.monotonic()) + margin:
                outcomes.released += [i.id for i in items[position:]]
                break
            try:
                messages = self.render(item)
                if not messages:
                    raise GiveUp(f"outbox row renders to no message (kind {item.kind})")
                await sender.deliver(item, messages)
            except GiveUp as exc:
                log.warning("outbox %d (%s %s): failed permanently: %s", item.id, item.channel, item.recipient_id, exc.reason)
                outcomes.failed.append(Failure(item.id, exc.reason))
                outbox_send_failed(item.channel, gave_up=True)
                continue
            except Exception as exc:
                retry = exc if isinstance(exc, RetryLater) else RetryLater(f"unexpected {type(exc).__name__}")
                if not isinstance(exc, RetryLater):
                    log.exception("outbox %d (%s %s): unexpected error", item.id, item.channel, item.recipient_id)
                self._retry_or_fail(item, retry, outcomes)
                outcomes.released += [i.id for i in items[position + 1 :]]
                break
            outcomes.sent.append(item.id)
            self.delivered += 1
        return outcomes

    def _retry_or_fail(self, item: OutboxItem, error: RetryLater, outcomes: _Outcomes) -> None:
        attempts = item.attempts + 1
        if attempts >= self.max_attempts:
            reason = f"gave up after {attempts} attempts: {error.reason}"
            log.warning("outbox %d (%s %s): %s", item.id, item.channel, item.recipient_id, reason)
            outcomes.failed.append(Failure(item.id, reason))
            outbox_send_failed(item.channel, gave_up=True)
            return
        delay = error.after if error.after is not None else backoff_seconds(attempts, self.backoff_base, self.backoff_cap)
        log.info("outbox %d (%s %s): retry in %.1f s (%s)", item.id, item.channel, item.recipient_id, delay, error.reason)
        outcomes.retry.append(Retry(item.id, utcnow() + timedelta(seconds=delay), error.reason))
        outbox_send_failed(item.channel, gave_up=False)
