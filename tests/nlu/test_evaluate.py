"""nlu.evaluate: Rasa-shaped intent and entity reports, month resolution, cross-validation.

A toy training set of four intents with disjoint vocabulary trains in a fraction of a second
and is perfectly separable, so every number below is known in advance."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from nlu.evaluate import (
    CONFUSION_MATRIX,
    ENTITY_ERRORS,
    ENTITY_REPORT,
    INTENT_ERRORS,
    INTENT_REPORT,
    EntityPrediction,
    EvaluationError,
    MonthCase,
    cross_validate,
    entity_report,
    evaluate,
    intent_report,
    load_month_cases,
    month_resolution,
    months_of,
    write_reports,
)
from nlu.model import FALLBACK_INTENT, NLUModel, PipelineConfig
from nlu.training_data import load_training_data

PROJECT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TOY_CONFIG = """\
language: vi
pipeline:
  - name: TfidfIntentClassifier
    word_ngrams: [1, 2]
    char_ngrams: [2, 4]
    C: 10
  - name: FallbackClassifier
    threshold: 0.3
"""

TOY_TRAIN = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - xin chào
    - chào bạn
    - chào em
    - xin chào bạn
    - chào buổi sáng
    - hello
    - hello there
    - chào nhé
- intent: thank
  examples: |
    - cảm ơn
    - cảm ơn bạn
    - cảm ơn nhiều
    - cam on nhe
    - thanks
    - thank you
    - thanks a lot
    - cảm ơn em
- intent: lookup_bill
  examples: |
    - hóa đơn [tháng 9](month)
    - tra hóa đơn tiền điện
    - hóa đơn mã [PE0400012345](customer_code)
    - tiền điện [tháng trước](month) bao nhiêu
    - xem hóa đơn
    - hóa đơn tiền điện [tháng 10](month)
    - bill for [last month](month)
    - hoa don tien dien
- intent: report_outage
  examples: |
    - mất điện rồi
    - nhà tôi mất điện
    - mất điện từ sáng
    - cúp điện
    - bị cúp điện
    - mat dien roi
    - power outage
    - khu tôi mất điện cả tiếng
"""

TOY_TEST = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - xin chào em
    - hello bạn
- intent: thank
  examples: |
    - cảm ơn bạn nhiều
    - thanks bạn
- intent: lookup_bill
  examples: |
    - xem hóa đơn [tháng 9](month) mã [PE0400099887](customer_code)
    - tra hóa đơn [tháng trước](month)
- intent: report_outage
  examples: |
    - nhà mình mất điện
    - lại cúp điện rồi
"""

# "xin chào" labelled as thank: a deliberate mistake the report must show.
MISLABELLED_TEST = TOY_TEST + """\
- intent: thank
  examples: |
    - xin chào bạn
"""

TOY_MONTHS = """\
- {text: "tháng trước", today: 2027-01-05, expected: 2026-12}
- {text: "tháng 12", today: 2027-01-05, expected: 2026-12}
- {text: "kỳ trước", today: 2026-11-26, expected: 2026-10}
- {text: "may I pay", today: 2026-11-26, expected: null}
"""


def write_toy_project(root: Path, test_text: str = TOY_TEST) -> dict[str, Path]:
    """The toy data, config, test file and month cases under `root`; returns their paths."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "tests").mkdir(exist_ok=True)
    paths = {
        "data": root / "data",
        "config": root / "config.yml",
        "test": root / "tests" / "nlu_test.yml",
        "months": root / "tests" / "month_cases.yml",
    }
    (root / "data" / "nlu.yml").write_text(TOY_TRAIN, encoding="utf-8")
    paths["config"].write_text(TOY_CONFIG, encoding="utf-8")
    paths["test"].write_text(test_text, encoding="utf-8")
    paths["months"].write_text(TOY_MONTHS, encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_toy_project(tmp_path_factory.mktemp("toy"), MISLABELLED_TEST)


@pytest.fixture(scope="module")
def toy_model(toy: dict[str, Path]) -> NLUModel:
    return NLUModel.train(load_training_data(toy["data"]), PipelineConfig.from_file(toy["config"]))


# -- intent report -------------------------------------------------------------------------


def test_intent_report_has_rasa_shape_and_counts_fallback_as_wrong() -> None:
    expected = ["a", "a", "b", "b"]
    predicted = ["a", "b", "b", FALLBACK_INTENT]
    report = intent_report(expected, predicted)
    assert set(report) == {"a", "b", "accuracy", "macro avg", "weighted avg"}
    assert report["a"] == {"precision": 1.0, "recall": 0.5, "f1-score": 0.6667, "support": 2, "confused_with": {"b": 1}}
    assert report["b"] == {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2, "confused_with": {FALLBACK_INTENT: 1}}
    assert report["accuracy"] == 0.5
    assert report["macro avg"] == {"precision": 0.75, "recall": 0.5, "f1-score": 0.5833, "support": 4}
    assert report["weighted avg"]["support"] == 4


def test_confused_with_keeps_the_top_three() -> None:
    expected = ["a"] * 7 + ["b", "c", "d", "e"]
    predicted = ["b", "b", "b", "c", "c", "d", "e", "b", "c", "d", "e"]
    assert intent_report(expected, predicted)["a"]["confused_with"] == {"b": 3, "c": 2, "d": 1}


def test_intent_report_needs_examples() -> None:
    with pytest.raises(EvaluationError):
        intent_report([], [])


# -- entity report -------------------------------------------------------------------------


def test_entity_report_matches_exact_span_and_type() -> None:
    predictions = [
        EntityPrediction("a", (("month", 0, 7, "tháng 9"), ("customer_code", 10, 22, "x")), (("month", 0, 7, "2026-09"),)),
        EntityPrediction("b", (("month", 3, 10, "x"),), (("month", 3, 9, "2026-01"), ("phone", 12, 22, "0912345678"))),
    ]
    report = entity_report(predictions)
    assert report["month"] == {"precision": 0.5, "recall": 0.5, "f1-score": 0.5, "support": 2}
    assert report["customer_code"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 1}
    assert report["phone"]["support"] == 0  # predicted only: counted in micro, not in macro
    assert report["micro avg"] == {"precision": 0.3333, "recall": 0.3333, "f1-score": 0.3333, "support": 3}
    assert report["macro avg"] == {"precision": 0.25, "recall": 0.25, "f1-score": 0.25, "support": 3}


# -- month resolution ----------------------------------------------------------------------


def test_project_month_cases_are_many_and_well_formed() -> None:
    cases = load_month_cases(PROJECT / "tests" / "data" / "month_cases.yml")
    assert len(cases) >= 40
    assert all(case.source.startswith(str(PROJECT / "tests" / "data" / "month_cases.yml")) for case in cases)


@pytest.mark.parametrize(
    ("text", "today", "expected"),
    [
        ("tháng trước", "2027-01-05", "2026-12"),
        ("tháng 12", "2027-01-05", "2026-12"),
        ("tháng 3", "2026-11-26", "2026-03"),
        ("03/2025", "2026-11-26", "2025-03"),
        ("thang 9 nam 2025", "2026-11-26", "2025-09"),
        ("last month", "2026-01-10", "2025-12"),
        ("this month", "2026-12-31", "2026-12"),
        ("September", "2026-11-26", "2026-09"),
    ],
)
def test_the_brief_month_cases_resolve(text: str, today: str, expected: str) -> None:
    result = month_resolution([MonthCase(text, date.fromisoformat(today), expected)], months_of(None))
    assert result["errors"] == []


def test_month_resolution_counts_misses_and_spurious_months(toy: dict[str, Path]) -> None:
    result = month_resolution(load_month_cases(toy["months"]), months_of(None))
    assert (result["cases"], result["correct"], result["accuracy"]) == (4, 3, 0.75)
    (miss,) = result["errors"]
    assert miss["text"] == "kỳ trước" and miss["predicted"] == [] and miss["source"].endswith("month_cases.yml:3")


def test_month_cases_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "months.yml"
    path.write_text('- {text: a, today: 2026-01-01, expected: 2026-01}\n- {text: b, today: "2026-13-01", expected: 2026-01}\n')
    with pytest.raises(EvaluationError, match=rf"{path}:2: today must be YYYY-MM-DD"):
        load_month_cases(path)
    path.write_text("- {text: a, today: 2026-01-01, expected: 2026-1-5}\n")
    with pytest.raises(EvaluationError, match=rf"{path}:1: expected must be YYYY-MM"):
        load_month_cases(path)
    path.write_text("text: a\n")
    with pytest.raises(EvaluationError, match="expected a list"):
        load_month_cases(path)


# -- evaluate + write_reports on the toy model ---------------------------------------------


def test_evaluate_toy_model(toy: dict[str, Path], toy_model: NLUModel) -> None:
    data = load_training_data(toy["test"], known_intents=set(toy_model.meta.intents))
    result = evaluate(toy_model, data, month_cases=load_month_cases(toy["months"]))
    summary = result.summary()
    # 8 right, the mislabelled "xin chào bạn" wrong
    assert summary["examples"] == 9
    assert summary["accuracy"] == pytest.approx(8 / 9, abs=1e-4)
    assert result.intent_report["thank"]["confused_with"] == {"greet": 1}
    (error,) = result.errors
    assert error["text"] == "xin chào bạn" and error["intent"] == "thank"
    assert error["intent_prediction"]["name"] == "greet" and 0 < error["intent_prediction"]["confidence"] <= 1
    assert error["source"] == f"{toy['test']}:21"
    assert result.entity_report is not None
    assert result.entity_report["month"]["f1-score"] == 1.0
    assert result.entity_report["customer_code"]["f1-score"] == 1.0
    assert summary["month_accuracy"] == 0.75


def test_fallback_is_an_error_that_names_the_hidden_intent(toy_model: NLUModel, tmp_path: Path) -> None:
    path = tmp_path / "t.yml"
    path.write_text("nlu:\n- intent: greet\n  examples: |\n    - xin chào\n    - ???\n", encoding="utf-8")
    result = evaluate(toy_model, load_training_data(path))
    assert result.summary()["accuracy"] == 0.5 and result.summary()["fallbacks"] == 1
    (error,) = result.errors
    assert error["text"] == "???" and error["intent_prediction"]["name"] == FALLBACK_INTENT
    assert set(error["top_intent"]) == {"name", "confidence"} and error["top_intent"]["confidence"] < 0.3
    assert result.intent_report["greet"]["confused_with"] == {FALLBACK_INTENT: 1}


def test_write_reports(tmp_path: Path, toy: dict[str, Path], toy_model: NLUModel) -> None:
    data = load_training_data(toy["test"])
    written = write_reports(evaluate(toy_model, data, month_cases=load_month_cases(toy["months"])), tmp_path / "out")
    names = {p.name for p in written}
    assert names == {INTENT_REPORT, INTENT_ERRORS, ENTITY_REPORT, ENTITY_ERRORS, CONFUSION_MATRIX}
    assert (tmp_path / "out" / CONFUSION_MATRIX).read_bytes().startswith(PNG_MAGIC)
    entities = json.loads((tmp_path / "out" / ENTITY_REPORT).read_text(encoding="utf-8"))
    assert {"micro avg", "macro avg", "month_resolution"} <= set(entities)
    assert entities["month_resolution"]["cases"] == 4


def test_evaluate_without_month_cases_omits_them(toy: dict[str, Path], toy_model: NLUModel, tmp_path: Path) -> None:
    result = evaluate(toy_model, load_training_data(toy["test"]))
    assert result.month_resolution is None and "month_accuracy" not in result.summary()
    write_reports(result, tmp_path)
    assert "month_resolution" not in json.loads((tmp_path / ENTITY_REPORT).read_text(encoding="utf-8"))


# -- cross-validation ----------------------------------------------------------------------


def test_cross_validate_toy_data(toy: dict[str, Path]) -> None:
    data = load_training_data(toy["data"])
    seen = []
    result = cross_validate(data, PipelineConfig.from_file(toy["config"]), folds=4, on_fold=seen.append)
    assert [f.index for f in result.folds] == [1, 2, 3, 4] == [f.index for f in seen]
    assert all(f.train_examples == 24 and f.test_examples == 8 for f in result.folds)
    assert len(result.pooled.intents) == len(data.examples)  # each example predicted exactly once
    assert sorted(p.text for p in result.pooled.intents) == sorted(e.text for e in data.examples)
    assert 0.5 <= result.mean("accuracy") <= 1.0
    assert result.pooled.entity_report is None


def test_cross_validate_rejects_more_folds_than_examples(toy: dict[str, Path]) -> None:
    data = load_training_data(toy["data"])
    with pytest.raises(EvaluationError, match="between 2 and 8"):
        cross_validate(data, PipelineConfig.from_file(toy["config"]), folds=9)
