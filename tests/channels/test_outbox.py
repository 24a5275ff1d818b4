"""The outbox worker on SQLite and PostgreSQL: retries (429 with retry_after, 5xx, backoff),
permanent failures with their reason, per-chat order across concurrent workers, and a worker
that dies holding claimed messages. Sends go through the real PTB-based `TelegramSender` to
the fake Bot API."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from backend import db
from backend.models import OutboxMessage
from backend.services import notifications
from backend.services.notifications import ChatRef, Notification, OutboxItem
from bot.channels.middleware import MemoryKeyValueStore, RateLimiter
from bot.channels.telegram import (
    ButtonPayloads,
    TelegramConfig,
    TelegramSender,
    build_application,
    close_application,
)
from bot.outbox_worker import OutboxWorker, backoff_seconds
from tests.channels.conftest import TG_TOKEN
from tests.fakes.telegram import FakeTelegram

# PTB warns from inside RetryAfter() about a future type change (handled by retry_after_seconds).
pytestmark = pytest.mark.filterwarnings("ignore:.*attribute `retry_after` will be of type")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = await FakeTelegram(TG_TOKEN).start()
    yield server
    await server.close()


@pytest.fixture
async def sender(fake: FakeTelegram) -> AsyncIterator[TelegramSender]:
    application = build_application(TelegramConfig(TG_TOKEN, None, fake.base_url))
    store = MemoryKeyValueStore()
    yield TelegramSender(application.bot, RateLimiter(0, 0), ButtonPayloads(lambda: store))
    await close_application(application)


def render(item: OutboxItem) -> list[dict[str, Any]]:
    """The agent's render_notification, reduced to what these tests need."""
    if "message" in item.payload:
        return [item.payload["message"]]
    return [{"text": f"{item.payload['response']} {item.payload['values']}"}]


def worker(sender: TelegramSender, name: str, **options: Any) -> OutboxWorker:
    options = {"poll_seconds": 0.05, "backoff_base": 0.1, **options}
    return OutboxWorker([sender], render, worker_id=name, **options)


async def row(outbox_id: int) -> OutboxMessage:
    async with db.read_scope() as session:
        found = await session.get(OutboxMessage, outbox_id)
        assert found is not None
        return found


async def ids(chat: str) -> list[int]:
    async with db.read_scope() as session:
        return list(await session.scalars(select(OutboxMessage.id).where(OutboxMessage.recipient_id == chat).order_by(OutboxMessage.id)))


async def settled(outbox_id: int, status: str = "sent") -> OutboxMessage:
    """The row once the worker has recorded `status` for it."""
    for _ in range(200):
        found = await row(outbox_id)
        if found.status == status:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"outbox {outbox_id} never became {status}")


async def running(*workers: OutboxWorker) -> None:
    for w in workers:
        await w.start()


async def test_429_is_retried_after_retry_after(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    fake.fail("sendMessage", 429, retry_after=1)
    await notifications.enqueue_messages("telegram", "501", [{"text": "một"}, {"text": "hai"}])
    w = worker(sender, "w429")
    await running(w)
    try:
        await fake.wait_for(lambda: [c.text for c in fake.sent(501)] == ["một", "hai"])
    finally:
        await w.stop()
    attempts = [c for c in fake.of("sendMessage") if c.chat_id == "501"]
    assert [c.text for c in attempts] == ["một", "một", "hai"]  # "hai" waited behind "một"
    assert attempts[1].at - attempts[0].at >= 0.95  # Telegram's retry_after was honoured
    first, second = await ids("501")
    assert (await settled(first)).attempts == 2
    assert (await settled(second)).attempts == 1


async def test_server_errors_are_retried_with_backoff_then_given_up(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    fake.fail("sendMessage", 500)
    await notifications.enqueue_messages("telegram", "502", [{"text": "sau lỗi 500"}])
    w = worker(sender, "w500", max_attempts=3)
    await running(w)
    try:
        [first] = await ids("502")
        assert (await settled(first)).attempts == 2
        assert [c.text for c in fake.sent(502)] == ["sau lỗi 500"]

        fake.fail("sendMessage", 502, times=5)
        await notifications.enqueue_messages("telegram", "503", [{"text": "không bao giờ tới"}])
        [doomed] = await ids("503")
        failed = await settled(doomed, "failed")
    finally:
        await w.stop()
    assert failed.attempts == 3
    assert failed.last_error is not None and failed.last_error.startswith("gave up after 3 attempts: telegram: Bad Gateway")


async def test_permanent_errors_are_recorded_and_the_chat_moves_on(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    fake.fail("sendMessage", 403, description="Forbidden: bot was blocked by the user")
    await notifications.enqueue_messages("telegram", "504", [{"text": "bị chặn"}, {"text": "tiếp theo"}])
    assert await worker(sender, "w403").run_once() == 2
    blocked, after = await ids("504")
    assert (await row(blocked)).status == "failed"
    assert (await row(blocked)).last_error == "telegram 403: Forbidden: bot was blocked by the user"
    assert (await row(after)).status == "sent"


async def test_a_crashed_workers_claim_is_taken_over_when_its_lease_expires(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    await notifications.enqueue_messages("telegram", "505", [{"text": "trước khi sập"}, {"text": "sau đó"}])
    # Worker A claims both messages and dies before sending anything.
    claimed_at = time.monotonic()
    claimed = await notifications.claim_due(["telegram"], "worker-a", lease_seconds=0.5)
    assert [c.payload["message"]["text"] for c in claimed] == ["trước khi sập", "sau đó"]

    b = worker(sender, "worker-b", lease_seconds=30)
    assert await b.run_once() == 0  # A's lease still holds: nobody else may send
    await running(b)
    try:
        await fake.wait_for(lambda: len(fake.sent(505)) == 2, within=5)
    finally:
        await b.stop()
    # Sent only once A's lease had run out (measured from before A's claim, so a slow machine
    # between the claim and B's start cannot make it look early).
    assert time.monotonic() - claimed_at >= 0.5
    assert [c.text for c in fake.sent(505)] == ["trước khi sập", "sau đó"]  # once each, in order
    # A comes back from the dead: its late outcome changes nothing.
    first, _ = await ids("505")
    assert await notifications.settle("worker-a", sent=[first]) == 0
    assert (await row(first)).status == "sent" and (await row(first)).attempts == 1


async def test_concurrent_workers_keep_each_chats_order(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    chats, per_chat = 10, 8
    # Interleaved like real traffic: message k of every chat, then k + 1...
    for k, chat in itertools.product(range(per_chat), range(chats)):
        await notifications.enqueue_messages("telegram", str(600 + chat), [{"text": f"{chat}:{k}"}])
    workers = [worker(sender, f"w{n}", max_chats=4, per_chat=3) for n in range(3)]
    await running(*workers)
    try:
        await fake.wait_for(lambda: len(fake.sent()) >= chats * per_chat, within=20)
    finally:
        for w in workers:
            await w.stop()
    for chat in range(chats):
        assert [c.text for c in fake.sent(600 + chat)] == [f"{chat}:{k}" for k in range(per_chat)]
    assert sum(w.delivered for w in workers) == chats * per_chat
    assert sum(1 for w in workers if w.delivered) >= 2  # the work was shared


async def test_notifications_are_rendered_and_delivered(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    await notifications.notify(Notification(ChatRef("telegram", "507", "vi"), "payment", "utter_payment_received", {"amount": "842.076 đ"}, dedupe_key="pay:1"))
    await notifications.notify(Notification(ChatRef("rest", "507", "vi"), "payment", "utter_payment_received", {}))
    assert await worker(sender, "wn").run_once() == 1  # REST rows stay for the REST poll
    assert fake.sent(507)[0].text == "utter_payment_received {'amount': '842.076 đ'}"
    assert len(await notifications.pending_for("rest", "507")) == 1


async def test_stop_hands_back_unsent_claims(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    await notifications.enqueue_messages("telegram", "508", [{"text": "x"}])
    await notifications.claim_due(["telegram"], "w-stop", lease_seconds=300)
    w = worker(sender, "w-stop")
    await w.stop()  # never started; still hands back what it held
    [only] = await ids("508")
    assert (await row(only)).claimed_by is None and (await row(only)).lease_until is None


async def test_rate_limits_space_the_messages(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    sender.limiter = RateLimiter(per_second=0, per_chat_per_second=10, burst=1)
    await notifications.enqueue_messages("telegram", "509", [{"text": str(n)} for n in range(6)])
    started = time.monotonic()
    assert await worker(sender, "w-rate").run_once() == 6
    assert time.monotonic() - started >= 0.45  # 5 waits of 0.1 s after the first message


async def test_rows_queued_behind_the_rate_limit_keep_their_lease(backend_db: str, fake: FakeTelegram, sender: TelegramSender) -> None:
    """A storm: worker A holds more messages than the rate lets it send within one lease. It
    renews its leases, so worker B, polling all along, never claims them: each chat hears once."""
    chats = [str(520 + n) for n in range(5)]
    for chat in chats:
        await notifications.enqueue_messages("telegram", chat, [{"text": f"có điện lại {chat}"}])
    slow = TelegramSender(sender.bot, RateLimiter(per_second=2.5, per_chat_per_second=0), sender.payloads)
    a = worker(slow, "w-slow", lease_seconds=0.6)  # 5 messages at 2.5/s: 1.6 s, past the lease
    b = worker(sender, "w-idle", lease_seconds=30)
    await running(a)
    await asyncio.sleep(0.1)  # A claims first
    await running(b)
    try:
        await fake.wait_for(lambda: len(fake.sent()) >= len(chats), within=10)
        await asyncio.sleep(0.8)  # a second send would come now
    finally:
        await a.stop()
        await b.stop()
    assert sorted(str(c.chat_id) for c in fake.sent()) == chats  # once each
    assert (a.delivered, b.delivered) == (len(chats), 0)
    for chat in chats:
        [only] = await ids(chat)
        assert (await row(only)).status == "sent" and (await row(only)).attempts == 1


def test_backoff_grows_and_is_capped() -> None:
    assert 0.8 <= backoff_seconds(1) <= 1.2
    assert 6.4 <= backoff_seconds(4) <= 9.6
    assert backoff_seconds(30, cap=300) <= 360
