"""The console's NLU administration over HTTP: training data, the inbox, the agent's
"bot misunderstood" control, model versions behind the quality gate. Admins only (agents get
403), every POST with the CSRF token; embedded, and on PostgreSQL + Redis when configured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from backend.db import read_scope
from backend.models import AuditEntry
from backend.services import handoff, nlu_data, nlu_inbox, nlu_models
from bot.nlu_training import evaluation
from nlu import ModelRegistry, NLUModel
from tests.conftest import PROJECT_DIR
from tests.e2e.conftest import Chat

MISUNDERSTOOD = "cả xóm tối om từ chiều rồi"  # the project's model falls back on it


@pytest.fixture
async def admin(client: TestClient, make_agent) -> Any:
    """An admin logged in, on a database holding data/'s training data."""
    await nlu_data.import_files(PROJECT_DIR / "data", nlu_data.Actor("test"))
    return await make_agent("hoa", "admin")


async def _example_texts(intent: str) -> list[str]:
    return [e.text for e in await nlu_data.find("intent", intent)]


async def _audit_actions() -> list[str]:
    async with read_scope() as session:
        return list(await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


async def test_agents_may_not_and_every_post_needs_the_csrf_token(admin, make_agent) -> None:
    lan = await make_agent("lan")
    for path in ("/console/nlu", "/console/nlu/intent/greet", "/console/nlu/resources", "/console/nlu/inbox", "/console/nlu/models", "/console/nlu/jobs/1"):
        assert (await lan.get(path))[0] == 403, path
        assert (await admin.get(path))[0] in (200, 404), path
    assert (await lan.post("/console/nlu/examples", kind="intent", name="greet", text="chào bot ơi"))[0] == 403
    assert (await lan.post("/console/nlu/retrain"))[0] == 403
    assert "chào bot ơi" not in await _example_texts("greet")

    forged = await admin.http.post(
        f"{admin.base_url}/console/nlu/examples", data={"kind": "intent", "name": "greet", "text": "chào bot ơi"},
        allow_redirects=False,
    )
    assert forged.status == 403 and "chào bot ơi" not in await _example_texts("greet")

    _, page = await admin.get("/console/")
    assert 'href="/console/nlu"' in page and 'href="/console/nlu/inbox"' in page and 'href="/console/nlu/models"' in page
    _, page = await lan.get("/console/")
    assert 'href="/console/nlu"' not in page


async def test_an_admin_adds_edits_moves_and_deletes_examples(admin) -> None:
    status, page = await admin.get("/console/nlu")
    assert status == 200 and "tariff_info" in page and "[text](entity_name)" not in page  # Vietnamese help by default
    assert "[đoạn chữ](tên_thực_thể)" in page
    _, page = await admin.get("/console/nlu?lang=en")
    assert "Training data" in page and "[text](entity_name)" in page
    await admin.get("/console/nlu?lang=vi")  # the choice is remembered: back to Vietnamese

    line = "giá điện cho [PE0400012345](customer_code) là bao nhiêu"
    status, body = await admin.post("/console/nlu/examples", kind="intent", name="tariff_info", text=line)
    assert status == 200 and body["ok"]
    example_id = body["id"]
    _, page = await admin.get("/console/nlu/intent/tariff_info")
    assert "giá điện cho [PE0400012345](customer_code) là bao nhiêu" in page

    # a broken annotation and a duplicate are refused with the reason, nothing stored
    response = await admin.http.post(
        f"{admin.base_url}/console/nlu/examples", data={"csrf_token": admin.csrf, "kind": "intent", "name": "tariff_info", "text": "giá [PE04(customer_code)"},
        allow_redirects=False,
    )
    assert response.status == 400 and "Không lưu được thay đổi" in await response.text()
    status, body = await admin.post("/console/nlu/examples", kind="intent", name="tariff_info", text=line)
    assert status == 400 and "already an example" in body["error"]

    # search with and without diacritics
    for query in ("giá điện cho", "gia dien cho"):
        _, page = await admin.get(f"/console/nlu?q={query}")
        assert "giá điện cho [PE0400012345](customer_code)" in page, query

    status, _ = await admin.post(f"/console/nlu/examples/{example_id}/edit", text="giá điện cho mã [PE0400012345](customer_code)")
    assert status == 200 and "giá điện cho mã [PE0400012345](customer_code)" in await _example_texts("tariff_info")

    status, body = await admin.post(f"/console/nlu/examples/{example_id}/move", intent="tariff_question")  # a new intent
    assert status == 200 and body["intent"] == "tariff_question"
    assert await _example_texts("tariff_question") == ["giá điện cho mã [PE0400012345](customer_code)"]
    _, page = await admin.get("/console/nlu")
    assert "/console/nlu/intent/tariff_question" in page
    assert (await admin.post(f"/console/nlu/examples/{example_id}/move", intent="not a name"))[0] == 400

    assert (await admin.post(f"/console/nlu/examples/{example_id}/delete"))[0] == 200
    assert await _example_texts("tariff_question") == []
    status, body = await admin.post(f"/console/nlu/examples/{example_id}/delete")
    assert status == 400 and f"#{example_id}" in body["error"]
    actions = await _audit_actions()
    assert [a for a in actions if a.startswith("nlu_example")] == ["nlu_example_add", "nlu_example_edit", "nlu_example_move", "nlu_example_delete"]
    _, page = await admin.get("/console/audit")
    assert "Chuyển ví dụ NLU" in page and "tariff_question" in page  # readable, not raw JSON


async def test_synonyms_regexes_and_lookups(admin) -> None:
    status, body = await admin.post("/console/nlu/examples", kind="synonym", name="meter_inspection", text="kiểm tra đồng hồ nhà tôi")
    assert status == 200
    _, page = await admin.get("/console/nlu/resources")
    assert "kiểm tra đồng hồ nhà tôi" in page and "meter_inspection" in page
    status, error = await admin.post("/console/nlu/examples", kind="regex", name="ticket_id", text="YC(\\d+")
    assert status == 400 and "bad regex" in error["error"]
    assert (await admin.post(f"/console/nlu/examples/{body['id']}/delete"))[0] == 200
    assert "kiểm tra đồng hồ nhà tôi" not in (await admin.get("/console/nlu/resources"))[1]


async def test_confirming_an_inbox_group_makes_one_example(client: TestClient, admin) -> None:
    await Chat(client, "khach-a").say(MISUNDERSTOOD)
    await Chat(client, "khach-b").say("ca xom toi om tu chieu roi")  # the same, typed without accents
    status, page = await admin.get("/console/nlu/inbox")
    assert status == 200 and MISUNDERSTOOD in page and "nlu_fallback" in page
    groups = await nlu_inbox.groups()
    assert [g.count for g in groups] == [2]
    lead = groups[0].sample.id
    assert f'name="text_{lead}"' in page and "Bot không hiểu" in page

    before = len(await _example_texts("report_outage"))
    status, result = await admin.post(
        "/console/nlu/inbox/decide", ids=str(lead), decision="confirm", **{f"intent_{lead}": "report_outage", f"text_{lead}": "cả xóm tối om từ chiều"}
    )
    assert status == 200 and result == {"ok": True, "items": 2, "groups": 1, "examples": 1}
    texts = await _example_texts("report_outage")
    assert len(texts) == before + 1 and texts[-1] == "cả xóm tối om từ chiều"
    _, page = await admin.get("/console/nlu/inbox")
    assert "Hộp thư trống" in page
    _, page = await admin.get("/console/nlu/inbox?status=confirmed")
    assert "report_outage" in page

    assert (await admin.post("/console/nlu/inbox/decide", decision="ignore"))[0] == 400  # nothing ticked


async def test_the_original_text_is_shown_only_on_request_and_audited(client: TestClient, admin) -> None:
    await Chat(client, "khach-c").say("cả xóm tối om từ chiều rồi, gọi 0987111222")
    _, page = await admin.get("/console/nlu/inbox")
    assert "0987111222" not in page and "098••••222" in page
    item = (await nlu_inbox.groups())[0].sample
    assert "nlu_inbox_reveal" not in await _audit_actions()

    response = await admin.http.post(
        f"{admin.base_url}/console/nlu/inbox/{item.id}/reveal", data={"csrf_token": admin.csrf}, allow_redirects=False
    )
    assert response.status == 200 and "0987111222" in await response.text()
    assert "nlu_inbox_reveal" in await _audit_actions()
    _, audit = await admin.get("/console/audit")
    assert "Xem nguyên văn tin nhắn" in audit and "hoa" in audit


async def test_an_agent_marks_a_message_the_bot_misunderstood(client: TestClient, admin, make_agent) -> None:
    lan = await make_agent("lan")
    chat = Chat(client, "khach-d")
    await chat.say(MISUNDERSTOOD)
    await chat.say("/talk_to_human")
    handoff_id = (await handoff.open_handoff("khach-d")).id  # type: ignore[union-attr]
    await lan.post(f"/console/h/{handoff_id}/claim")
    _, page = await lan.get(f"/console/h/{handoff_id}")
    assert "Bot hiểu sai → ý định" in page

    status, body = await lan.post(f"/console/h/{handoff_id}/correct", line="0", intent="report_outage")
    assert status == 200 and body["item"]
    corrected = next(i for g in await nlu_inbox.groups(reason="agent_correction") for i in g.items)
    assert (corrected.text, corrected.suggested_intent, corrected.conversation_id) == (MISUNDERSTOOD, "report_outage", "khach-d")
    assert (await lan.post(f"/console/h/{handoff_id}/correct", line="0", intent="no_such_intent"))[0] == 400
    assert (await lan.post(f"/console/h/{handoff_id}/correct", line="99", intent="greet"))[0] == 400
    assert (await lan.post(f"/console/h/{handoff_id}/correct", line="1", intent="greet"))[0] == 400  # the button press

    _, page = await admin.get("/console/nlu/inbox?reason=agent_correction")
    assert "Nhân viên đề xuất" in page and '<option value="report_outage" selected>' in page


async def _versions(models: Path, tmp_path: Path) -> tuple[str, str]:
    """The project's model as the active version, and a copy whose stored evaluation says
    tariff_info got much worse (the gate's numbers, without training a worse model)."""
    folder = ModelRegistry(models).newest()
    metrics = evaluation(NLUModel.load(folder), PROJECT_DIR / "tests" / "data" / "nlu_test.yml")
    good = (await nlu_models.register(folder, nlu_data.Actor("test"), metrics)).version
    await nlu_models.activate(good, nlu_data.Actor("test"), check=False)
    copy = shutil.copytree(folder, tmp_path / "worse")
    meta = json.loads((copy / "meta.json").read_text(encoding="utf-8"))
    meta["id"] = good + "-worse"
    (copy / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    worse = json.loads(json.dumps(metrics))
    worse["per_intent"]["tariff_info"]["f1"] -= 0.2
    worse["macro_f1"] -= 0.05
    return good, (await nlu_models.register(copy, nlu_data.Actor("test"), worse)).version


async def test_the_gate_refuses_activation_without_a_reason(admin, make_agent, trained_models_dir: Path, tmp_path: Path) -> None:
    good, worse = await _versions(trained_models_dir, tmp_path)
    status, page = await admin.get("/console/nlu/models")
    assert status == 200 and good in page and worse in page and "✔" in page

    status, page = await admin.get(f"/console/nlu/models/{worse}")
    assert status == 200 and "Không đạt" in page and "tariff_info: F1 drops by 20.0 points" in page
    assert 'name="override_reason"' in page and '<span class="drop">-20.0</span>' in page
    png = await admin.http.get(f"{admin.base_url}/console/nlu/models/{worse}/confusion.png")
    assert png.status == 200 and png.content_type == "image/png" and (await png.read()).startswith(b"\x89PNG")

    status, body = await admin.post(f"/console/nlu/models/{worse}/activate")
    assert status == 409 and body["error"] == "gate" and await nlu_models.active_version() == good
    status, body = await admin.post(f"/console/nlu/models/{worse}/activate", override_reason="   ")
    assert status == 409 and await nlu_models.active_version() == good
    lan = await make_agent("lan")
    assert (await lan.post(f"/console/nlu/models/{worse}/activate", override_reason="tôi muốn"))[0] == 403

    reason = "Dữ liệu tariff_info đang được viết lại tuần này"
    status, body = await admin.post(f"/console/nlu/models/{worse}/activate", override_reason=reason)
    assert status == 200 and await nlu_models.active_version() == worse
    assert (await (await admin.http.get(f"{admin.base_url}/health")).json())["model"] == worse  # this worker switched at once
    _, page = await admin.get("/console/nlu/models")
    assert reason in page

    status, body = await admin.post("/console/nlu/rollback")
    assert status == 200 and body["version"] == good and await nlu_models.active_version() == good
    assert (await admin.get("/console/nlu/jobs/999"))[0] == 404
