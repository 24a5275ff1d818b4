"""Training data in the database: the repo's files and the console never disagree silently."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from backend.db import read_scope
from backend.models import AuditEntry
from backend.services import nlu_data
from backend.services.nlu_data import NluDataError
from nlu.training_data import TrainingDataError, load_training_data
from tests.admin.conftest import ADMIN
from tests.conftest import PROJECT_DIR

DATA = PROJECT_DIR / "data"


async def test_export_gives_back_the_imported_files_byte_for_byte(with_data: str, tmp_path: Path) -> None:
    written = await nlu_data.export_files(tmp_path)
    originals = sorted(p.name for p in DATA.glob("*.yml") if "nlu:" in p.read_text(encoding="utf-8"))
    assert sorted(p.name for p in written) == originals
    for path in written:
        assert path.read_bytes() == (DATA / path.name).read_bytes(), path.name
    # and the trainer reads the same data from the database as from the files
    from_db, from_files = await nlu_data.training_data(), load_training_data(DATA)
    assert from_db.examples == from_files.examples
    assert from_db.synonyms == from_files.synonyms and from_db.regexes == from_files.regexes and from_db.lookups == from_files.lookups


async def test_console_edits_survive_an_export_and_import(with_data: str, tmp_path: Path) -> None:
    added = await nlu_data.add("intent", "lookup_bill", "cho xem [hđ](customer_code:PE0400012345) tháng này", ADMIN)
    new_intent = await nlu_data.add("intent", "ask_meter_reading", "khi nào chốt chỉ số công tơ", ADMIN)
    await nlu_data.add("synonym", "reconnection", "nối lại điện giúp", ADMIN)
    before = {(e.kind, e.name, e.text, e.file) for e in await nlu_data.all_lines()}

    first = {p.name: p.read_bytes() for p in await nlu_data.export_files(tmp_path / "1")}
    await nlu_data.import_files(tmp_path / "1", ADMIN)
    after = {(e.kind, e.name, e.text, e.file) for e in await nlu_data.all_lines()}
    second = {p.name: p.read_bytes() for p in await nlu_data.export_files(tmp_path / "2")}
    assert after == before and second == first
    tmp_path = tmp_path / "2"
    assert ("intent", "ask_meter_reading", new_intent.text, "nlu.yml") in after
    assert added.entities[0]["value"] == "PE0400012345" and added.plain == "cho xem hđ tháng này"
    data = load_training_data(tmp_path)
    assert "ask_meter_reading" in data.intents and data.synonyms["nối lại điện giúp"] == "reconnection"


async def test_edit_move_delete_and_search(with_data: str) -> None:
    example = await nlu_data.add("intent", "greet", "chào shop điện", ADMIN)
    edited = await nlu_data.edit(example.id, "chào  điện lực   nhé", ADMIN)
    assert edited.text == "chào điện lực nhé"
    moved = await nlu_data.move(example.id, "thank", ADMIN)
    assert moved.name == "thank"
    assert [e.id for e in await nlu_data.find("intent", "thank", search="dien luc nhe")] == [example.id]
    await nlu_data.remove(example.id, ADMIN)
    assert await nlu_data.get(example.id) is None
    counts = dict(await nlu_data.intent_counts())
    assert counts["greet"] == len([e for e in load_training_data(DATA).examples if e.intent == "greet"])

    async with read_scope() as session:
        actions = [a for a in await session.scalars(select(AuditEntry.action).order_by(AuditEntry.id))]
    assert actions[-4:] == ["nlu_example_add", "nlu_example_edit", "nlu_example_move", "nlu_example_delete"]


@pytest.mark.parametrize(
    ("kind", "name", "text", "message"),
    [
        ("intent", "greet", "tra [PE0400012345(customer_code)", "unclosed bracket"),
        ("intent", "greet", "   ", "empty"),
        ("intent", "greet", "x" * 600, "longer than"),
        ("intent", "bad name!", "xin chào", "not a valid intent name"),
        ("regex", "phone", "([0-9]", "bad regex"),
        ("intent", "greet", "xin chào", "already an example"),
    ],
)
async def test_bad_edits_are_refused_with_a_reason(with_data: str, kind: str, name: str, text: str, message: str) -> None:
    with pytest.raises(NluDataError, match=message):
        await nlu_data.add(kind, name, text, ADMIN)


async def test_import_reports_a_broken_file_with_its_line(with_data: str, tmp_path: Path) -> None:
    (tmp_path / "nlu.yml").write_text('version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - chào\n    - tra [PE04(customer_code)\n', encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"nlu.yml:6"):
        await nlu_data.import_files(tmp_path, ADMIN)
    assert dict(await nlu_data.intent_counts())["greet"] > 10  # the database kept its data
