"""The admin's loop on the embedded default: a misunderstood message lands in the inbox, the
admin labels it, retrains, activates, and the running bot now understands it; the quality
gate stops a worse model; a corrupted model never serves."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, update

from backend.db import read_scope, session_scope
from backend.models import NluActivation, NluExample, NluModelVersion
from backend.seed import seed_demo
from backend.services import nlu_data, nlu_inbox, nlu_models
from bot.app import RUNTIME, create_app
from bot.model_rollout import announce
from bot.nlu_training import run_job
from tests.admin.conftest import ADMIN, settings_for
from tests.conftest import PROJECT_DIR

MISUNDERSTOOD = "cả xóm tối om từ chiều rồi"  # an outage report the project's model gets wrong
NEAR_DUPLICATE = "ca xom toi om tu chieu roi a"
RIGHT_INTENT = "report_outage"


@pytest.fixture
async def bot(sqlite_db: str, trained_models_dir: Path) -> AsyncIterator[TestClient]:
    """The service as deployed: it loads its model from models/ and registers it as version one."""
    await seed_demo()
    await nlu_data.import_files(PROJECT_DIR / "data", ADMIN)
    settings = settings_for(sqlite_db, trained_models_dir)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield client


async def _serving(client: TestClient) -> str:
    return (await (await client.get("/health")).json())["model"]


async def _intent(client: TestClient, text: str) -> str:
    return (await (await client.post("/model/parse", json={"text": text})).json())["intent"]["name"]


RUN = uuid.uuid4().hex[:8]  # endpoints.yml may put conversations in REDIS_URL's Redis: fresh senders


async def _say(client: TestClient, sender: str, text: str) -> list[dict[str, object]]:
    response = await client.post("/webhooks/rest/webhook", json={"sender": f"{sender}-{RUN}", "message": text})
    assert response.status == 200
    return await response.json()


async def _wait_serving(client: TestClient, version: str, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await _serving(client) == version:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{version} not served within {within} s (serving {await _serving(client)})")


async def _retrain(tmp: Path) -> str:
    job, new = await nlu_models.create_job(ADMIN)
    assert new
    version = await run_job(job.id, settings_for("", tmp))
    finished = await nlu_models.get_job(job.id)
    assert version is not None and finished is not None and finished.status == "succeeded", finished
    return version


async def test_label_retrain_activate_and_the_bot_understands(bot: TestClient, tmp_path: Path) -> None:
    first = await _serving(bot)
    assert await nlu_models.active_version() == first  # registered at startup

    # a customer's message the bot does not understand, and a form answer that is not collected
    for text in (MISUNDERSTOOD, NEAR_DUPLICATE):
        parsed = await (await bot.post("/model/parse", json={"text": text})).json()
        assert parsed["intent"]["name"] != RIGHT_INTENT, f"the model understands {text!r} already: pick another message"
        assert parsed["intent"]["confidence"] < 0.5 or parsed["intent"]["name"] == "nlu_fallback"
    await _say(bot, "cust-1", MISUNDERSTOOD)
    await _say(bot, "cust-2", "tra cứu hóa đơn")
    await _say(bot, "cust-2", "PE0400012345")
    await _say(bot, "cust-3", NEAR_DUPLICATE)
    groups = await nlu_inbox.groups()
    assert [g.count for g in groups] == [2]
    first_item = next(i for i in groups[0].items if i.conversation_id == f"cust-1-{RUN}")
    assert first_item.text == MISUNDERSTOOD and first_item.predicted_intent != RIGHT_INTENT
    assert set(groups[0].reasons) <= {"fallback", "low_confidence"} and len(first_item.ranking) >= 3

    # one decision for the group: one new example
    result = await nlu_inbox.decide([groups[0].sample.id], "confirm", ADMIN, intent=RIGHT_INTENT)
    assert result == {"items": 2, "groups": 1, "examples": 1}
    assert not await nlu_inbox.groups()

    version = await _retrain(tmp_path)
    info = await nlu_models.get(version)
    assert info is not None and info.metrics["macro_f1"] > 0.9 and RIGHT_INTENT in info.metrics["per_intent"]
    gate = await nlu_models.check_gate(version)
    assert gate.passed, gate.failures

    await nlu_models.activate(version, ADMIN)
    await announce(bot.app[RUNTIME].endpoints.redis, version)  # as the console and the CLI do (a no-op without Redis)
    took = await _wait_serving(bot, version, within=10.0)
    assert await _intent(bot, MISUNDERSTOOD) == RIGHT_INTENT
    replies = await _say(bot, "cust-4", MISUNDERSTOOD)
    assert "khu vực" in str(replies).lower() or "địa chỉ" in str(replies).lower(), replies  # the outage report asks where
    print(f"\nthe bot served the new version {took:.2f} s after activation")

    # rollback serves the first version again
    assert await nlu_models.rollback(ADMIN) == first
    await announce(bot.app[RUNTIME].endpoints.redis, first)
    await _wait_serving(bot, first, within=10.0)


async def test_the_gate_blocks_a_worse_model_unless_overridden(sqlite_db: str, tmp_path: Path) -> None:
    await nlu_data.import_files(PROJECT_DIR / "data", ADMIN)
    good = await _retrain(tmp_path)
    await nlu_models.activate(good, ADMIN)

    # deliberately degrade the data: keep three examples of tariff_info
    async with session_scope() as session:
        ids = list(await session.scalars(select(NluExample.id).where(NluExample.kind == "intent", NluExample.name == "tariff_info")))
        for example_id in ids[3:]:
            await session.delete(await session.get(NluExample, example_id))
    worse = await _retrain(tmp_path)

    gate = await nlu_models.check_gate(worse)
    assert not gate.passed
    assert any(f.startswith("tariff_info: F1 drops") for f in gate.failures), gate.failures
    assert gate.intents["tariff_info"]["delta"] < -0.05
    with pytest.raises(nlu_models.GateBlocked):
        await nlu_models.activate(worse, ADMIN)
    assert await nlu_models.active_version() == good
    with pytest.raises(nlu_models.GateBlocked):
        await nlu_models.activate(worse, ADMIN, override_reason="   ")

    await nlu_models.activate(worse, ADMIN, override_reason="tariff examples are being rewritten this week")
    assert await nlu_models.active_version() == worse
    async with read_scope() as session:
        row = await session.scalar(select(NluActivation).order_by(NluActivation.id.desc()).limit(1))
    assert row is not None and row.override_reason == "tariff examples are being rewritten this week" and row.gate["passed"] is False


async def test_a_corrupted_model_is_refused_and_the_old_one_keeps_serving(bot: TestClient, tmp_path: Path) -> None:
    serving = await _serving(bot)
    version = await _retrain(tmp_path)
    async with session_scope() as session:
        row = await session.get(NluModelVersion, version)
        assert row is not None
        damaged = bytearray(row.archive)
        damaged[len(damaged) // 2] ^= 0xFF
        await session.execute(update(NluModelVersion).where(NluModelVersion.version == version).values(archive=bytes(damaged)))

    with pytest.raises(nlu_models.CorruptModel):
        await nlu_models.activate(version, ADMIN)
    # even if a damaged version were marked active, no worker would load it
    async with session_scope() as session:
        session.add(NluActivation(version=version, actor="test", gate={}, override_reason=None))
    await asyncio.sleep(2.5)
    assert await _serving(bot) == serving
    assert await _intent(bot, "xin chào") == "greet"
