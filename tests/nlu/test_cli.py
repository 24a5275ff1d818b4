"""`python -m nlu` in-process: train (with progress and stored metrics), test, cross-validate,
parse, and the exit code 2 with file:line for bad input."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from nlu.cli import StageProgress, main
from tests.nlu.test_evaluate import MISLABELLED_TEST, PNG_MAGIC, write_toy_project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The toy project with a separable held-out file, plus a mislabelled copy."""
    root = tmp_path_factory.mktemp("cli")
    paths = write_toy_project(root)
    paths["mislabelled"] = root / "tests" / "mislabelled.yml"
    paths["mislabelled"].write_text(MISLABELLED_TEST, encoding="utf-8")
    paths["models"] = root / "models"
    return paths


@pytest.fixture(scope="module")
def trained(project: dict[str, Path]) -> tuple[Path, str, str]:
    """(model folder, stdout, stderr) of one `train --test` run, shared by the module."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main([
            "train", "--data", str(project["data"]), "--config", str(project["config"]),
            "--out", str(project["models"]), "--test", str(project["test"]),
        ])  # fmt: skip
    assert code == 0, stderr.getvalue()
    out = stdout.getvalue()
    return Path(out.strip().splitlines()[-1]), out, stderr.getvalue()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- train ---------------------------------------------------------------------------------


def test_train_prints_path_last_and_progress_on_stderr(trained: tuple[Path, str, str], project: dict[str, Path]) -> None:
    model_dir, out, err = trained
    assert model_dir.parent == project["models"] and (model_dir / "model.joblib").is_file()
    for stage in ("loading data", "featurising + fitting", "evaluating", "saving", "done"):
        assert stage in err
    assert "[####################] 4/4 done" in err
    assert "accuracy 1.000" in out


def test_train_stores_the_test_summary_in_meta(trained: tuple[Path, str, str], project: dict[str, Path]) -> None:
    metrics = json.loads((trained[0] / "meta.json").read_text(encoding="utf-8"))["metrics"]
    assert metrics["test_data"] == str(project["test"])
    assert metrics["examples"] == 8
    assert metrics["accuracy"] == metrics["macro_f1"] == metrics["weighted_f1"] == 1.0


def test_train_without_test_leaves_metrics_empty(capsys: pytest.CaptureFixture[str], project: dict[str, Path], tmp_path: Path) -> None:
    code, out, err = run(capsys, "train", "--data", str(project["data"]), "--config", str(project["config"]), "--out", str(tmp_path))
    assert code == 0
    assert "evaluating" not in err and "3/3 done" in err
    assert json.loads((Path(out.splitlines()[-1]) / "meta.json").read_text(encoding="utf-8"))["metrics"] == {}


def test_train_with_unknown_test_intent_fails_before_training(
    capsys: pytest.CaptureFixture[str], project: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad_test.yml"
    bad.write_text("nlu:\n- intent: greet\n  examples: |\n    - hi\n- intent: pay_bill\n  examples: |\n    - pay\n", encoding="utf-8")
    code, out, err = run(
        capsys, "train", "--data", str(project["data"]), "--config", str(project["config"]),
        "--out", str(tmp_path / "models"), "--test", str(bad),
    )  # fmt: skip
    assert code == 2 and out == ""
    assert f"error: {bad}:5: unknown intent 'pay_bill'" in err
    assert not (tmp_path / "models").exists()


def test_train_with_broken_data_exits_2(capsys: pytest.CaptureFixture[str], project: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "nlu.yml").write_text("nlu:\n- intent: greet\n  examples: |\n    - [hi(greeting)\n", encoding="utf-8")
    code, _, err = run(capsys, "train", "--data", str(tmp_path), "--config", str(project["config"]), "--out", str(tmp_path / "m"))
    assert code == 2 and f"{tmp_path / 'nlu.yml'}:4: malformed entity annotation" in err


# -- test ----------------------------------------------------------------------------------


def test_test_writes_reports_for_a_separable_set(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, str, str], project: dict[str, Path], tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    code, out, err = run(capsys, "test", "--model", str(trained[0]), "--data", str(project["test"]), "--out", str(out_dir))
    assert code == 0, err
    report = json.loads((out_dir / "intent_report.json").read_text(encoding="utf-8"))
    assert report["accuracy"] == 1.0
    assert report["macro avg"]["f1-score"] == report["weighted avg"]["f1-score"] == 1.0
    for intent in ("greet", "thank", "lookup_bill", "report_outage"):
        assert set(report[intent]) == {"precision", "recall", "f1-score", "support", "confused_with"}
        assert report[intent]["support"] == 2 and report[intent]["confused_with"] == {}
    assert json.loads((out_dir / "intent_errors.json").read_text(encoding="utf-8")) == []
    entities = json.loads((out_dir / "entity_report.json").read_text(encoding="utf-8"))
    assert entities["month"]["support"] == 2 and entities["customer_code"]["support"] == 1
    assert entities["micro avg"]["f1-score"] == 1.0
    # month_cases.yml next to the test data is picked up
    assert entities["month_resolution"]["cases"] == 4 and entities["month_resolution"]["correct"] == 3
    assert (out_dir / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)
    assert "accuracy 1.000" in out and "month resolution: 3/4" in out and str(out_dir) in out


def test_test_shows_a_mislabelled_example(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, str, str], project: dict[str, Path], tmp_path: Path
) -> None:
    months = tmp_path / "months.yml"
    months.write_text("- {text: tháng trước, today: 2027-01-05, expected: 2026-12}\n", encoding="utf-8")
    code, _, err = run(
        capsys, "test", "--models", str(project["models"]), "--data", str(project["mislabelled"]),
        "--out", str(tmp_path), "--months", str(months),
    )  # fmt: skip
    assert code == 0, err
    errors = json.loads((tmp_path / "intent_errors.json").read_text(encoding="utf-8"))
    assert [(e["text"], e["intent"], e["intent_prediction"]["name"]) for e in errors] == [("xin chào bạn", "thank", "greet")]
    report = json.loads((tmp_path / "intent_report.json").read_text(encoding="utf-8"))
    assert report["thank"]["recall"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["greet"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    resolution = json.loads((tmp_path / "entity_report.json").read_text(encoding="utf-8"))["month_resolution"]
    assert resolution["accuracy"] == 1.0


def test_test_unknown_intent_names_file_and_line(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "nlu_test.yml"
    bad.write_text("nlu:\n- intent: greet\n  examples: |\n    - hi\n\n- intent: greeet\n  examples: |\n    - hello\n", encoding="utf-8")
    code, out, err = run(capsys, "test", "--model", str(trained[0]), "--data", str(bad), "--out", str(tmp_path / "r"))
    assert code == 2 and out == ""
    assert f"error: {bad}:6: unknown intent 'greeet' (did you mean 'greet'?)" in err
    assert not (tmp_path / "r").exists()


def test_test_without_a_model_exits_2(capsys: pytest.CaptureFixture[str], project: dict[str, Path], tmp_path: Path) -> None:
    code, _, err = run(capsys, "test", "--models", str(tmp_path / "none"), "--data", str(project["test"]))
    assert code == 2 and "no model in" in err
    code, _, err = run(capsys, "test", "--model", str(tmp_path), "--data", str(project["test"]))
    assert code == 2 and "not a model folder" in err


def test_test_on_a_folder_with_month_cases(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, str, str], project: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "held_out"
    folder.mkdir()
    (folder / "nlu_test.yml").write_text(project["test"].read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "month_cases.yml").write_text(project["months"].read_text(encoding="utf-8"), encoding="utf-8")
    code, out, err = run(capsys, "test", "--model", str(trained[0]), "--data", str(folder), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert "8 test messages" in out and "month resolution: 3/4" in out


def test_test_on_a_file_without_examples_exits_2(
    capsys: pytest.CaptureFixture[str], trained: tuple[Path, str, str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.yml"
    empty.write_text('version: "3.1"\n', encoding="utf-8")
    code, _, err = run(capsys, "test", "--model", str(trained[0]), "--data", str(empty), "--out", str(tmp_path / "r"))
    assert code == 2 and f"{empty}: no NLU examples" in err


def test_progress_redraws_in_place_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = StageProgress(["loading data", "saving"], stream=stream, width=10)
    progress.stage("loading data")
    progress.stage("saving")
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and "[##########] 2/2 done" in text


# -- cross-validate and parse --------------------------------------------------------------


def test_cross_validate_prints_folds_and_writes_pooled_report(
    capsys: pytest.CaptureFixture[str], project: dict[str, Path], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "cross-validate", "--data", str(project["data"]), "--config", str(project["config"]),
        "--folds", "3", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["fold 1", "fold 2", "fold 3"]
    assert any(line.startswith("mean: accuracy") for line in lines)
    report = json.loads((tmp_path / "intent_report.json").read_text(encoding="utf-8"))
    assert report["macro avg"]["support"] == 32
    assert (tmp_path / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)


def test_cross_validate_with_too_many_folds_exits_2(capsys: pytest.CaptureFixture[str], project: dict[str, Path]) -> None:
    code, _, err = run(capsys, "cross-validate", "--data", str(project["data"]), "--config", str(project["config"]), "--folds", "20")
    assert code == 2 and "--folds must be between 2 and 8" in err


def test_parse_prints_rasa_json(capsys: pytest.CaptureFixture[str], trained: tuple[Path, str, str]) -> None:
    code, out, _ = run(capsys, "parse", "hóa đơn tháng 9 mã PE0400012345", "--model", str(trained[0]))
    assert code == 0
    result = json.loads(out)
    assert result["intent"]["name"] == "lookup_bill"
    assert {e["entity"] for e in result["entities"]} == {"month", "customer_code"}
