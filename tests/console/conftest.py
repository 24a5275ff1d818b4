"""Console tests: the real app (embedded, and PostgreSQL + Redis when configured) with agents
logged in through the login form, each with a cookie jar of their own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient

from backend.services import staff
from backend.settings import get_settings
from tests.e2e.conftest import client, project_nlu  # noqa: F401 - fixtures reused here

PASSWORD = "mat-khau-dai-2026"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def business_hours(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Agents work around the clock in tests unless a test says otherwise (then it sets the
    variable and calls `get_settings.cache_clear()`)."""
    monkeypatch.setenv("HANDOFF_HOURS", "00:00-24:00")
    monkeypatch.setenv("HANDOFF_DAYS", "0-6")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class Agent:
    """A staff member using the console over HTTP (own cookies, own CSRF token)."""

    def __init__(self, base_url: str, username: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.http = ClientSession(cookie_jar=CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, password: str = PASSWORD) -> int:
        page = await (await self.http.get(f"{self.base_url}/console/login")).text()
        token = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
        response = await self.http.post(
            f"{self.base_url}/console/login",
            data={"csrf_token": token, "username": self.username, "password": password},
            allow_redirects=False,
        )
        if response.status == 303 and response.headers["Location"] == "/console/":
            queue = await (await self.http.get(f"{self.base_url}/console/")).text()
            self.csrf = CSRF_RE.search(queue).group(1)  # type: ignore[union-attr]
        return response.status if response.headers.get("Location") != "/console/" else 200

    async def get(self, path: str) -> tuple[int, str]:
        response = await self.http.get(f"{self.base_url}{path}", allow_redirects=False)
        return response.status, await response.text()

    async def post(self, path: str, **data: Any) -> tuple[int, dict[str, Any]]:
        response = await self.http.post(
            f"{self.base_url}{path}", data={"csrf_token": self.csrf, **data}, headers={"Accept": "application/json"},
            allow_redirects=False,
        )
        return response.status, await response.json()

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def make_agent(client: TestClient) -> AsyncIterator[Any]:  # noqa: F811
    made: list[Agent] = []

    async def make(username: str, role: str = "agent", *, max_chats: int = 3, login: bool = True) -> Agent:
        await staff.create_staff(username, PASSWORD, role, display_name=username.title(), max_chats=max_chats)  # type: ignore[arg-type]
        agent = Agent(str(client.make_url("/")), username)
        made.append(agent)
        if login:
            assert await agent.login() == 200
        return agent

    yield make
    for agent in made:
        await agent.close()


async def outbox_texts(client: TestClient, sender: str) -> list[str]:  # noqa: F811
    response = await client.get("/webhooks/rest/outbox", params={"sender": sender})
    return [m.get("text", "") for m in await response.json()]
