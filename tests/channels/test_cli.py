"""`python -m bot telegram set-webhook | delete-webhook` against the fake Bot API."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator

import pytest

from backend.settings import get_settings
from bot.cli import main
from tests.channels.conftest import TG_SECRET, TG_TOKEN
from tests.fakes.telegram import FakeTelegram


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`main()` reconfigures the root logger (its handler writes to this test's captured
    stderr, which is closed afterwards): put the root logger back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def fake_in_thread() -> Iterator[FakeTelegram]:
    """The CLI runs its own event loop (asyncio.run): the fake gets a loop in a thread."""
    loop = asyncio.new_event_loop()
    fake = FakeTelegram(TG_TOKEN)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield fake
    asyncio.run_coroutine_threadsafe(fake.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture
def telegram_env(fake_in_thread: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegram]:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TG_TOKEN)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", TG_SECRET)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake_in_thread.base_url)
    get_settings.cache_clear()
    yield fake_in_thread
    monkeypatch.undo()
    get_settings.cache_clear()


def test_set_and_delete_webhook(telegram_env: FakeTelegram, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["telegram", "set-webhook", "--url", "https://cskh.example.vn/webhooks/telegram"]) == 0
    webhook = telegram_env.webhook
    assert webhook is not None
    assert webhook["url"] == "https://cskh.example.vn/webhooks/telegram"
    assert webhook["secret_token"] == TG_SECRET
    assert webhook["allowed_updates"] == ["message", "callback_query"]
    assert webhook["drop_pending_updates"] in (True, "true", "True")
    assert main(["telegram", "delete-webhook"]) == 0
    assert telegram_env.webhook is None
    out = capsys.readouterr()
    assert TG_TOKEN not in out.out + out.err and TG_SECRET not in out.out + out.err


def test_set_webhook_refuses_plain_http(telegram_env: FakeTelegram, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["telegram", "set-webhook", "--url", "http://cskh.example.vn/webhooks/telegram"]) == 2
    assert "https" in capsys.readouterr().err and telegram_env.webhook is None


def test_a_rejected_token_is_reported_without_printing_it(fake_in_thread: FakeTelegram, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "999:wrong-token")
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", TG_SECRET)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", fake_in_thread.base_url)
    get_settings.cache_clear()
    try:
        assert main(["telegram", "delete-webhook"]) == 1
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert "rejected" in err and "wrong-token" not in err
