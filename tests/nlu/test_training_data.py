"""Loading Rasa NLU YAML: broken files fail with file:line, the project's own data is sound."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from nlu.training_data import TrainingDataError, load_training_data

PROJECT = Path(__file__).resolve().parents[2]
INVENTORY = {
    "greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "help", "lookup_bill", "pay_bill",
    "report_outage", "outage_schedule", "create_service_request", "check_request_status", "link_account",
    "tariff_info", "talk_to_human", "complain", "inform", "out_of_scope", "delete_my_data",
}  # fmt: skip


def write(tmp_path: Path, text: str, name: str = "nlu.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path, known_intents: set[str] | None = None) -> str:
    with pytest.raises(TrainingDataError) as info:
        load_training_data(path, known_intents=known_intents)
    return str(info.value)


# -- broken files --------------------------------------------------------------------------


def test_bad_indentation_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, 'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi\n - intent: bye\n')
    message = error_of(path)
    assert message.startswith(f"{path}:6:")
    assert "invalid YAML" in message


def test_tab_indentation_is_invalid_yaml_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu:\n- intent: greet\n\texamples: |\n    - hi\n")
    assert re.match(rf"{re.escape(str(path))}:3: invalid YAML", error_of(path))


def test_unclosed_annotation_names_the_example_line(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu:\n- intent: lookup_bill\n  examples: |\n    - hóa đơn tháng 9\n\n    - hóa đơn [tháng 9(month)\n")
    message = error_of(path)
    assert message.startswith(f"{path}:6:")  # the blank line in the block is counted
    assert "unclosed bracket" in message


def test_closing_bracket_without_entity_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu:\n- intent: lookup_bill\n  examples: |\n    - hóa đơn [tháng 9] nhé\n")
    assert error_of(path).startswith(f"{path}:4: malformed entity annotation")


def test_invalid_entity_json_names_the_example_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'nlu:\n- intent: create_service_request\n  examples: |\n    - xin [lắp công tơ]{"entity": "service_type", value: "new"}\n',
    )
    message = error_of(path)
    assert message.startswith(f"{path}:4: invalid entity JSON")


def test_entity_json_without_entity_key(tmp_path: Path) -> None:
    path = write(tmp_path, 'nlu:\n- intent: a\n  examples: |\n    - xin [x]{"value": "y"}\n')
    assert error_of(path).startswith(f"{path}:4: entity JSON needs an 'entity' key")


def test_unknown_intent_in_test_file_names_line_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu:\n- intent: greet\n  examples: |\n    - hi\n\n- intent: lookup_bil\n  examples: |\n    - bill\n")
    message = error_of(path, known_intents={"greet", "lookup_bill"})
    assert message.startswith(f"{path}:6: unknown intent 'lookup_bil'")
    assert "did you mean 'lookup_bill'" in message


def test_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "nlu.yml"
    path.write_bytes("nlu:\n- intent: greet\n  examples: |\n    - xin chào\n".encode() + "    - hóa đơn\n".encode("cp1258"))
    message = error_of(path)
    assert message.startswith(f"{path}:5: not UTF-8")


def test_examples_as_a_yaml_list_is_rejected_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu:\n- intent: greet\n  examples:\n  - hi\n  - hello\n")
    message = error_of(path)
    assert message.startswith(f"{path}:4: 'examples' must be a block of '- text' lines")
    assert "got a list" in message


def test_example_line_without_dash(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu:\n- intent: greet\n  examples: |\n    - hi\n    hello\n")
    assert error_of(path).startswith(f"{path}:5: example lines start with '- '")


def test_folded_examples_block_is_rejected(tmp_path: Path) -> None:
    # '>' would silently join "- hi - hello" into one example.
    path = write(tmp_path, "nlu:\n- intent: greet\n  examples: >\n    - hi\n    - hello\n")
    assert "write 'examples: |'" in error_of(path)


def test_missing_examples_and_duplicate_keys(tmp_path: Path) -> None:
    missing = write(tmp_path, "nlu:\n- intent: greet\n- intent: bye\n  examples: |\n    - bye\n", "a.yml")
    assert error_of(missing).startswith(f"{missing}:2: missing 'examples'")
    duplicate = write(tmp_path, "nlu:\n- intent: greet\n  examples: |\n    - hi\n  examples: |\n    - yo\n", "b.yml")
    assert error_of(duplicate).startswith(f"{duplicate}:5: duplicate key 'examples'")


def test_unknown_item_kind(tmp_path: Path) -> None:
    path = write(tmp_path, "nlu:\n- intnet: greet\n  examples: |\n    - hi\n")
    assert error_of(path).startswith(f"{path}:2: unknown item with keys ['examples', 'intnet']")


def test_good_file_keeps_lines_entities_and_synonyms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "nlu:\n- intent: lookup_bill\n  examples: |\n    - hóa đơn [tháng 9](month)\n\n"
        '    - mã [PE0400012345](customer_code) [lắp điện mới]{"entity": "service_type", "value": "new_connection"}\n'
        "- synonym: new_connection\n  examples: |\n    - cấp điện mới\n",
    )
    data = load_training_data(path)
    first, second = data.examples
    assert (first.text, first.source) == ("hóa đơn tháng 9", f"{path}:4")
    assert first.entities[0] == {"entity": "month", "value": "tháng 9", "start": 8, "end": 15, "text": "tháng 9"}
    assert second.source == f"{path}:6"
    assert [e["entity"] for e in second.entities] == ["customer_code", "service_type"]
    assert data.synonyms == {"lắp điện mới": "new_connection", "cấp điện mới": "new_connection"}


def test_folder_loading_skips_files_that_are_not_nlu(tmp_path: Path) -> None:
    write(tmp_path, "nlu:\n- intent: greet\n  examples: |\n    - hi\n", "nlu.yml")
    write(tmp_path, "- {text: tháng 9, today: 2026-11-26, expected: 2026-09}\n", "month_cases.yml")
    write(tmp_path, 'version: "3.1"\nrules:\n- rule: r\n  steps: []\n', "rules.yml")
    assert [e.text for e in load_training_data(tmp_path).examples] == ["hi"]


# -- the project's own data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def training():
    return load_training_data(PROJECT / "data")


@pytest.fixture(scope="module")
def held_out(training):
    return load_training_data(PROJECT / "tests" / "data" / "nlu_test.yml", known_intents=set(training.intents))


def test_project_training_data_covers_the_inventory(training) -> None:
    counts = Counter(e.intent for e in training.examples)
    assert set(counts) == INVENTORY
    assert {intent: n for intent, n in counts.items() if n < 40} == {}


def test_project_test_data_covers_the_inventory(held_out) -> None:
    counts = Counter(e.intent for e in held_out.examples)
    assert set(counts) == INVENTORY
    assert {intent: n for intent, n in counts.items() if n < 12} == {}


def test_annotations_round_trip(training, held_out) -> None:
    """Every annotated span points at its surface text in the plain example."""
    for example in training.examples + held_out.examples:
        for entity in example.entities:
            assert example.text[entity["start"] : entity["end"]] == entity["text"], example.source


def test_test_set_is_held_out(training, held_out) -> None:
    seen = {e.text.lower() for e in training.examples}
    assert [e.source for e in held_out.examples if e.text.lower() in seen] == []
