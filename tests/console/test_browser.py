"""End to end in a real headless browser (Debian's chromium driven by Playwright): a customer
escalates over REST, an agent logs in, sees it appear live, claims it, replies; the customer
receives the reply from the outbox; while paused the bot says nothing; the agent hands back and
the bot answers again. Runs embedded and on PostgreSQL + Redis.

Skips (with the reason) only when Playwright or chromium is not installed here. Set
CONSOLE_SCREENSHOT=docs/console.png to save a screenshot of the conversation view.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.console.conftest import PASSWORD, outbox_texts
from tests.e2e.conftest import Chat

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FOUND = Path(CHROMIUM).exists()
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--headless",
]

try:
    from playwright.async_api import async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if async_playwright is None:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM_FOUND:
        pytest.skip(f"chromium not found at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        await instance.close()


async def test_an_agent_takes_over_a_chat_in_the_browser(client: TestClient, make_agent, browser: Any) -> None:
    await make_agent("lan", login=False)
    base = str(client.make_url("/")).rstrip("/")
    page = await (await browser.new_context(viewport={"width": 1360, "height": 900}, locale="vi-VN")).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    await page.goto(f"{base}/console/login")
    await page.get_by_label("Tên đăng nhập").fill("lan")
    await page.get_by_label("Mật khẩu").fill(PASSWORD)
    await page.get_by_role("button", name="Đăng nhập").click()
    await expect(page.locator("#live.on")).to_be_visible(timeout=10_000)
    await expect(page.locator("#queue-rows")).to_contain_text("Không có cuộc trò chuyện nào")

    chat = Chat(client, "khach-browser")
    await chat.say('/lookup_bill{"customer_code": "PE0400012345"}')
    assert "Xác thực thành công" in await chat.say("0912345678")
    assert "vị trí số 1" in await chat.say("/talk_to_human")
    row = page.locator("#queue-rows tr", has_text="Nguyễn Văn An")
    await expect(row).to_be_visible(timeout=10_000)  # appeared live, no reload

    await row.get_by_role("button", name="Nhận xử lý").click()
    await expect(page.locator("#reply-text")).to_be_visible()
    await expect(page.locator(".panel")).to_contain_text("Nguyễn Văn An")  # verified customer, unpaid bill
    assert any("tiếp nhận" in t for t in await outbox_texts(client, "khach-browser"))

    # while paused the bot says nothing; the agent sees the message live, inert
    assert await chat.send('<script>window.pwned = 1</script>tôi cần đổi công tơ') == []
    await expect(page.locator("#transcript")).to_contain_text("tôi cần đổi công tơ", timeout=10_000)
    assert await page.evaluate("window.pwned") is None

    await page.locator("#reply-text").fill("Chào anh, em là Lan. Em hỗ trợ anh đổi công tơ ngay ạ.")
    await page.get_by_role("button", name="Gửi", exact=True).click()
    await expect(page.locator("#transcript")).to_contain_text("em là Lan")
    assert await outbox_texts(client, "khach-browser") == ["Chào anh, em là Lan. Em hỗ trợ anh đổi công tơ ngay ạ."]
    await page.locator("#note-text").fill("Khách cần kiểm định công tơ, hẹn tuần sau")
    await page.get_by_role("button", name="Thêm ghi chú").click()
    await expect(page.locator("#notes-list")).to_contain_text("kiểm định")

    if os.environ.get("CONSOLE_SCREENSHOT"):
        await chat.send("vâng, cảm ơn em")
        await expect(page.locator("#transcript")).to_contain_text("cảm ơn em", timeout=10_000)
        await page.screenshot(path=os.environ["CONSOLE_SCREENSHOT"], full_page=True)

    await page.get_by_role("button", name="Trả lại cho bot").click()
    await expect(page.locator("#queue-rows")).to_be_visible()
    assert any("trợ lý ảo" in t for t in await outbox_texts(client, "khach-browser"))
    assert "Xin chào" in await chat.say("/greet")  # the bot answers the next message
    assert errors == []
