"""Observability tests: the real app over HTTP (the e2e `client`, embedded and PostgreSQL +
Redis), plus apps built here with settings of their own (a metrics token, an unreachable
Redis), and Prometheus' text format read back with prometheus_client's own parser."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from backend import db
from backend.seed import seed_demo
from backend.settings import Settings
from bot.app import create_app
from bot.runtime import build_runtime
from nlu import NLUModel
from tests.conftest import PROJECT_DIR, empty_all_tables
from tests.console.conftest import business_hours, make_agent  # noqa: F401 - fixtures reused here
from tests.e2e.conftest import client, project_nlu  # noqa: F401 - fixtures reused here

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: TestClient, **headers: str) -> Samples:  # noqa: F811
    """GET /metrics, parsed: (sample name, labels) -> value."""
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
async def make_client(
    sqlite_url: str, project_nlu: NLUModel, trained_models_dir: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> AsyncIterator[Callable[..., Awaitable[TestClient]]]:
    """Builds the embedded app (SQLite, in-memory stores, demo data) with extra settings, e.g.
    `metrics_token`, or `redis_url` for Redis stores."""
    clients: list[TestClient] = []
    db.configure(sqlite_url)
    await empty_all_tables()
    await seed_demo()

    async def make(**overrides: Any) -> TestClient:
        # endpoints.yml reads REDIS_URL itself: the environment has to agree with the settings.
        options = {"redis_url": None, **overrides}
        if options["redis_url"]:
            monkeypatch.setenv("REDIS_URL", options["redis_url"])
        else:
            monkeypatch.delenv("REDIS_URL", raising=False)
        settings = Settings(database_url=sqlite_url, project_dir=PROJECT_DIR, models_dir=trained_models_dir, **options)
        test_client = TestClient(TestServer(create_app(settings, build_runtime(settings, model=project_nlu))))
        await test_client.start_server()
        clients.append(test_client)
        return test_client

    yield make
    for test_client in clients:
        await test_client.close()
    await db.dispose()
