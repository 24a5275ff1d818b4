"""How good is a model: intent and entity reports on held-out data, month resolution, k-fold.

The reports have the shape of Rasa's `rasa test nlu` output (intent_report.json,
intent_errors.json, a confusion matrix), so people used to Rasa read them without a manual.
Choices that change the numbers, stated once here:

* A fallback prediction (`nlu_fallback`) is wrong for the expected intent: a message the bot
  would answer with "sorry, I did not understand" was not understood.
* Per-intent and averaged scores cover the intents of the test data; predictions outside them
  (`nlu_fallback`, an intent the test set never expects) only lower the expected intent's recall.
* Entities match on exact span and type (not value): annotated values are surface text or
  synonyms, while month values are resolved dates, which `month_resolution` checks instead.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.metrics import precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold

from nlu.entities import extract_months
from nlu.model import FALLBACK_INTENT, NLUModel, PipelineConfig
from nlu.training_data import Example, TrainingData

INTENT_REPORT = "intent_report.json"
INTENT_ERRORS = "intent_errors.json"
ENTITY_REPORT = "entity_report.json"
ENTITY_ERRORS = "entity_errors.json"
CONFUSION_MATRIX = "confusion_matrix.png"
MONTH_CASES = "month_cases.yml"  # looked for next to the test data


class EvaluationError(ValueError):
    """Evaluation cannot run as asked (too many folds, a malformed month-cases file)."""


@dataclass(frozen=True)
class IntentPrediction:
    text: str
    expected: str
    predicted: str
    confidence: float
    source: str = ""  # "tests/data/nlu_test.yml:42"
    # The classifier's best intent, which a fallback hides: tells whether the threshold or
    # the classifier was wrong.
    top_intent: str = ""
    top_confidence: float = 0.0

    @property
    def correct(self) -> bool:
        return self.expected == self.predicted

    @property
    def fallback_hid_right_intent(self) -> bool:
        return self.predicted == FALLBACK_INTENT and self.top_intent == self.expected


@dataclass(frozen=True)
class EntityPrediction:
    """Annotated and extracted entities of one message, as (type, start, end, value)."""

    text: str
    expected: tuple[tuple[str, int, int, Any], ...]
    predicted: tuple[tuple[str, int, int, Any], ...]
    source: str = ""


@dataclass(frozen=True)
class MonthCase:
    """'tháng trước' said on `today` means `expected` ('YYYY-MM'; None: no month at all)."""

    text: str
    today: date
    expected: str | None
    source: str = ""


@dataclass
class EvaluationResult:
    """Everything `write_reports` writes; `summary` is what goes into a model's meta.json."""

    intents: list[IntentPrediction]
    intent_report: dict[str, Any]
    confusion_rows: list[str]  # expected intents
    confusion_columns: list[str]  # expected intents, then other predictions (nlu_fallback)
    confusion: list[list[int]]
    entities: list[EntityPrediction] | None = None
    entity_report: dict[str, Any] | None = None
    month_resolution: dict[str, Any] | None = None

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Misclassified messages in Rasa's intent_errors.json shape, most confident first
        (a confident mistake usually means a mislabelled or ambiguous training example).
        A fallback also names the intent ranked first below the threshold (`top_intent`)."""
        wrong = sorted((p for p in self.intents if not p.correct), key=lambda p: -p.confidence)
        errors = []
        for p in wrong:
            error: dict[str, Any] = {
                "text": p.text,
                "intent": p.expected,
                "intent_prediction": {"name": p.predicted, "confidence": p.confidence},
                "source": p.source,
            }
            if p.predicted == FALLBACK_INTENT:
                error["top_intent"] = {"name": p.top_intent, "confidence": p.top_confidence}
            errors.append(error)
        return errors

    def summary(self) -> dict[str, Any]:
        """The headline numbers: intent accuracy, macro-F1, weighted-F1 (+ entities, months)."""
        report = self.intent_report
        out: dict[str, Any] = {
            "examples": len(self.intents),
            "accuracy": report["accuracy"],
            "macro_f1": report["macro avg"]["f1-score"],
            "weighted_f1": report["weighted avg"]["f1-score"],
            "fallbacks": sum(p.predicted == FALLBACK_INTENT for p in self.intents),
            # fallbacks whose best intent was the expected one: the price of the threshold
            "fallbacks_right_intent": sum(p.fallback_hid_right_intent for p in self.intents),
        }
        if self.entity_report is not None:
            out["entity_micro_f1"] = self.entity_report["micro avg"]["f1-score"]
            out["entity_macro_f1"] = self.entity_report["macro avg"]["f1-score"]
        if self.month_resolution is not None:
            out["month_accuracy"] = self.month_resolution["accuracy"]
        return out


def _round(value: float) -> float:
    return round(float(value), 4)


# -- intents -------------------------------------------------------------------------------


def confusion_counts(expected: Sequence[str], predicted: Sequence[str]) -> tuple[list[str], list[str], list[list[int]]]:
    """(rows, columns, counts): rows are the expected intents, columns the same followed by any
    other predicted label (e.g. nlu_fallback), so every prediction has a cell."""
    rows = sorted(set(expected))
    columns = rows + sorted(set(predicted) - set(rows))
    col_index = {label: i for i, label in enumerate(columns)}
    row_index = {label: i for i, label in enumerate(rows)}
    matrix = [[0] * len(columns) for _ in rows]
    for truth, guess in zip(expected, predicted, strict=True):
        matrix[row_index[truth]][col_index[guess]] += 1
    return rows, columns, matrix


def intent_report(expected: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """Rasa's intent_report.json: per intent precision, recall, f1-score, support and the top 3
    intents it was confused with; then accuracy, macro avg and weighted avg."""
    if not expected:
        raise EvaluationError("no examples to evaluate")
    labels = sorted(set(expected))
    precision, recall, f1, support = precision_recall_fscore_support(
        expected, predicted, labels=labels, zero_division=0
    )
    rows, columns, matrix = confusion_counts(expected, predicted)
    report: dict[str, Any] = {}
    for i, label in enumerate(labels):
        confused = Counter({columns[j]: n for j, n in enumerate(matrix[i]) if n and columns[j] != label})
        report[label] = {
            "precision": _round(precision[i]),
            "recall": _round(recall[i]),
            "f1-score": _round(f1[i]),
            "support": int(support[i]),
            "confused_with": dict(confused.most_common(3)),
        }
    total = int(support.sum())
    weights = support / total
    report["accuracy"] = _round(np.mean([t == p for t, p in zip(expected, predicted, strict=True)]))
    report["macro avg"] = {
        "precision": _round(precision.mean()),
        "recall": _round(recall.mean()),
        "f1-score": _round(f1.mean()),
        "support": total,
    }
    report["weighted avg"] = {
        "precision": _round(precision @ weights),
        "recall": _round(recall @ weights),
        "f1-score": _round(f1 @ weights),
        "support": total,
    }
    return report


def predict_intents(model: NLUModel, examples: Iterable[Example], today: date | None = None) -> list[IntentPrediction]:
    """The model's intent (fallback included) for each example, as the bot would see it."""
    out = []
    for example in examples:
        parsed = model.parse(example.text, today)
        ranked = [r for r in parsed["intent_ranking"] if r["name"] != FALLBACK_INTENT] or [parsed["intent"]]
        out.append(
            IntentPrediction(
                text=example.text,
                expected=example.intent,
                predicted=str(parsed["intent"]["name"]),
                confidence=float(parsed["intent"]["confidence"]),
                source=example.source,
                top_intent=str(ranked[0]["name"]),
                top_confidence=float(ranked[0]["confidence"]),
            )
        )
    return out


# -- entities ------------------------------------------------------------------------------


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_report(predictions: Sequence[EntityPrediction]) -> dict[str, Any]:
    """Per entity type precision/recall/F1/support by exact (type, start, end) match, with
    micro avg (over all spans, extra types included) and macro avg (over annotated types)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for item in predictions:
        gold = {(t, s, e) for t, s, e, _ in item.expected}
        found = {(t, s, e) for t, s, e, _ in item.predicted}
        for span in gold & found:
            tp[span[0]] += 1
        for span in found - gold:
            fp[span[0]] += 1
        for span in gold - found:
            fn[span[0]] += 1
    types = sorted(set(tp) | set(fp) | set(fn))
    report: dict[str, Any] = {}
    for name in types:
        p, r, f = _prf(tp[name], fp[name], fn[name])
        report[name] = {"precision": _round(p), "recall": _round(r), "f1-score": _round(f), "support": tp[name] + fn[name]}
    annotated = [name for name in types if report[name]["support"]]
    total = sum(report[name]["support"] for name in annotated)
    p, r, f = _prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    report["micro avg"] = {"precision": _round(p), "recall": _round(r), "f1-score": _round(f), "support": total}
    report["macro avg"] = {
        key: _round(statistics.fmean(report[name][key] for name in annotated)) if annotated else 0.0
        for key in ("precision", "recall", "f1-score")
    } | {"support": total}
    return report


def predict_entities(model: NLUModel, examples: Iterable[Example], today: date | None = None) -> list[EntityPrediction]:
    """Annotated vs extracted entities of each example (offsets in the example's text)."""
    out = []
    for example in examples:
        found = model.entities(example.text, today)
        out.append(
            EntityPrediction(
                example.text,
                tuple((e["entity"], e["start"], e["end"], e["value"]) for e in example.entities),
                tuple((e["entity"], e["start"], e["end"], e["value"]) for e in found),
                example.source,
            )
        )
    return out


def entity_errors(predictions: Sequence[EntityPrediction]) -> list[dict[str, Any]]:
    """Messages whose extracted spans differ from the annotation: missed and spurious entities."""

    def spans(items: Iterable[tuple[str, int, int, Any]], text: str, keep: set[tuple[str, int, int]]) -> list[dict[str, Any]]:
        return [
            {"entity": t, "text": text[s:e], "start": s, "end": e, "value": v} for t, s, e, v in items if (t, s, e) in keep
        ]

    out = []
    for item in predictions:
        gold = {(t, s, e) for t, s, e, _ in item.expected}
        found = {(t, s, e) for t, s, e, _ in item.predicted}
        if gold != found:
            out.append(
                {
                    "text": item.text,
                    "source": item.source,
                    "missed": spans(item.expected, item.text, gold - found),
                    "spurious": spans(item.predicted, item.text, found - gold),
                }
            )
    return out


# -- month resolution ----------------------------------------------------------------------


def load_month_cases(path: str | Path) -> list[MonthCase]:
    """A YAML list of {text, today: YYYY-MM-DD, expected: YYYY-MM or null}; errors name file:line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text)
        doc = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise EvaluationError(f"{path}{f':{mark.line + 1}' if mark else ''}: invalid YAML: {exc}") from None
    if not isinstance(doc, list) or not isinstance(root, yaml.SequenceNode):
        raise EvaluationError(f"{path}:1: expected a list of {{text, today, expected}} cases")
    cases = []
    for node, item in zip(root.value, doc, strict=True):
        where = f"{path}:{node.start_mark.line + 1}"
        if not isinstance(item, dict) or not {"text", "today", "expected"} <= set(item):
            raise EvaluationError(f"{where}: a case needs text, today and expected")
        try:
            today = item["today"] if isinstance(item["today"], date) else date.fromisoformat(str(item["today"]))
        except ValueError:
            raise EvaluationError(f"{where}: today must be YYYY-MM-DD, got {item['today']!r}") from None
        expected = item["expected"]
        if expected is not None:
            expected = str(expected)
            try:
                date.fromisoformat(f"{expected}-01")
            except ValueError:
                raise EvaluationError(f"{where}: expected must be YYYY-MM or null, got {expected!r}") from None
        cases.append(MonthCase(str(item["text"]), today, expected, where))
    return cases


MonthResolver = Callable[[str, date], list[str]]


def months_of(model: NLUModel | None) -> MonthResolver:
    """Month values found in a message: through the model's entity chain (identifiers win
    overlaps, as in production), or the month extractor alone."""
    if model is None:
        return lambda text, today: [e["value"] for e in extract_months(text, today)]
    return lambda text, today: [e["value"] for e in model.entities(text, today) if e["entity"] == "month"]


def month_resolution(cases: Sequence[MonthCase], resolve: MonthResolver) -> dict[str, Any]:
    """Share of cases whose months resolve to exactly [expected] ([] when expected is null)."""
    failures = []
    for case in cases:
        found = resolve(case.text, case.today)
        wanted = [case.expected] if case.expected else []
        if found != wanted:
            failures.append(
                {"text": case.text, "today": case.today.isoformat(), "expected": case.expected, "predicted": found, "source": case.source}
            )
    correct = len(cases) - len(failures)
    return {
        "cases": len(cases),
        "correct": correct,
        "accuracy": _round(correct / len(cases)) if cases else 0.0,
        "errors": failures,
    }


# -- putting it together -------------------------------------------------------------------


def evaluate(
    model: NLUModel,
    data: TrainingData,
    today: date | None = None,
    month_cases: Sequence[MonthCase] | None = None,
) -> EvaluationResult:
    """Intents, entities and (given cases) month resolution of `model` on held-out `data`."""
    intents = predict_intents(model, data.examples, today)
    expected = [p.expected for p in intents]
    predicted = [p.predicted for p in intents]
    rows, columns, matrix = confusion_counts(expected, predicted)
    entities = predict_entities(model, data.examples, today)
    return EvaluationResult(
        intents=intents,
        intent_report=intent_report(expected, predicted),
        confusion_rows=rows,
        confusion_columns=columns,
        confusion=matrix,
        entities=entities,
        entity_report=entity_report(entities),
        month_resolution=month_resolution(month_cases, months_of(model)) if month_cases is not None else None,
    )


def _write_json(path: Path, payload: Any) -> Path:
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def write_reports(result: EvaluationResult, out_dir: str | Path) -> list[Path]:
    """intent_report.json, intent_errors.json, confusion_matrix.png and, when entities were
    evaluated, entity_report.json (with month_resolution) and entity_errors.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        _write_json(out / INTENT_REPORT, result.intent_report),
        _write_json(out / INTENT_ERRORS, result.errors),
    ]
    if result.entity_report is not None:
        report = dict(result.entity_report)
        if result.month_resolution is not None:
            report["month_resolution"] = result.month_resolution
        written.append(_write_json(out / ENTITY_REPORT, report))
        written.append(_write_json(out / ENTITY_ERRORS, entity_errors(result.entities or [])))
    accuracy = result.intent_report["accuracy"]
    written.append(
        plot_confusion_matrix(
            result.confusion_rows, result.confusion_columns, result.confusion, out / CONFUSION_MATRIX,
            title=f"Intent confusion matrix ({len(result.intents)} messages, accuracy {accuracy:.1%})",
        )
    )
    return written


def plot_confusion_matrix(rows: list[str], columns: list[str], matrix: list[list[int]], path: Path, title: str = "") -> Path:
    """A PNG with one labelled row per expected intent and a count in every non-empty cell.

    Drawn on an Agg canvas without pyplot: no display needed, no global backend switched in a
    process (the bot) that may import this module."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=int).reshape(len(rows), len(columns))
    side = max(5.0, 0.45 * max(len(rows), len(columns)) + 3)
    fig = Figure(figsize=(side + 1, side), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", aspect="auto", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    ax.set_xticks(range(len(columns)), labels=columns, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(range(len(rows)), labels=rows, fontsize=8)
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("expected intent")
    if title:
        ax.set_title(title, fontsize=10)
    threshold = counts.max() / 2 if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        if value:
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color="white" if value > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


# -- cross-validation ----------------------------------------------------------------------


@dataclass(frozen=True)
class FoldResult:
    index: int  # 1-based
    train_examples: int
    test_examples: int
    accuracy: float
    macro_f1: float
    weighted_f1: float


@dataclass
class CrossValidationResult:
    folds: list[FoldResult]
    pooled: EvaluationResult  # every example predicted once, by the model that did not see it

    def mean(self, metric: str) -> float:
        return _round(statistics.fmean(getattr(f, metric) for f in self.folds))

    def stdev(self, metric: str) -> float:
        values = [getattr(f, metric) for f in self.folds]
        return _round(statistics.stdev(values)) if len(values) > 1 else 0.0


def cross_validate(
    data: TrainingData,
    config: PipelineConfig,
    folds: int = 5,
    seed: int = 0,
    on_fold: Callable[[FoldResult], None] | None = None,
) -> CrossValidationResult:
    """Stratified k-fold over the training examples: train on k-1 parts, predict the held-out
    part. Estimates quality without a test set and shows how much it varies between splits."""
    counts = Counter(e.intent for e in data.examples)
    if len(counts) < 2:
        raise EvaluationError("cross-validation needs at least two intents")
    smallest, fewest = min(counts.items(), key=lambda kv: kv[1])
    if folds < 2 or folds > fewest:
        raise EvaluationError(f"--folds must be between 2 and {fewest} (intent {smallest!r} has {fewest} examples), got {folds}")
    labels = [e.intent for e in data.examples]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pooled: list[IntentPrediction | None] = [None] * len(data.examples)
    results = []
    for index, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels), start=1):
        model = NLUModel.train(data.subset(train_idx.tolist()), config)
        predictions = predict_intents(model, [data.examples[i] for i in test_idx])
        for i, prediction in zip(test_idx, predictions, strict=True):
            pooled[i] = prediction
        report = intent_report([p.expected for p in predictions], [p.predicted for p in predictions])
        fold = FoldResult(
            index, len(train_idx), len(test_idx), report["accuracy"], report["macro avg"]["f1-score"], report["weighted avg"]["f1-score"]
        )
        results.append(fold)
        if on_fold is not None:
            on_fold(fold)
    predictions = [p for p in pooled if p is not None]
    expected = [p.expected for p in predictions]
    predicted = [p.predicted for p in predictions]
    rows, columns, matrix = confusion_counts(expected, predicted)
    return CrossValidationResult(
        folds=results,
        pooled=EvaluationResult(predictions, intent_report(expected, predicted), rows, columns, matrix),
    )
