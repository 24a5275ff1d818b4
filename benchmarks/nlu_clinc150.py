"""Public intent benchmarks for our NLU pipeline: CLINC150 "Full" and BANKING77.

The pipeline is the project's own: `config.yml`'s `pipeline:` read by `PipelineConfig.from_file`,
trained by `NLUModel.train`, exactly as `python -m nlu train` does for the Vietnamese data.
Only the data changes, through the small adapters below that build `TrainingData`.

CLINC150 (Larson et al. 2019, EMNLP-IJCNLP, D19-1131), the paper's "Full" setting with
out-of-scope trained as a class: train on `train` + `oos_train` (label `oos`). Two rows:

* argmax: the top intent, `oos` when the `oos` class wins;
* + config threshold: additionally `oos` when the top (calibrated) confidence is below the
  FallbackClassifier threshold of config.yml, as the bot would do, untouched;
* + val threshold: the same with the threshold chosen on `val` + `oos_val` only (never on test),
  the one with the best accuracy over all 3,100 validation messages (an out-of-scope message is
  right when predicted `oos` or below the threshold).

Reported on `test` (4,500 in-scope) + `oos_test` (1,000): in-scope accuracy (an in-scope message
is right only with its own intent) and out-of-scope recall. BANKING77 (Casanueva et al. 2020):
train on `train.csv`, accuracy on `test.csv`. Parse latency is `NLUModel.parse` per message,
one process, after a warm-up. The data stays in ../shared/eval/data (read-only, never copied).

    python benchmarks/nlu_clinc150.py            # full run, a few minutes
    python benchmarks/nlu_clinc150.py --quick    # 20 examples per intent, a smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from nlu.model import NLUModel, PipelineConfig  # noqa: E402
from nlu.training_data import Example, TrainingData  # noqa: E402

EVAL_DATA = ROOT.parent / "shared" / "eval" / "data"
CLINC_FILE = EVAL_DATA / "clinc150" / "data_full.json"
BANKING_DIR = EVAL_DATA / "banking77"
OOS = "oos"
LATENCY_MESSAGES = 2000

# Larson et al. 2019, Table 2, "Full", out-of-scope trained as a class: in-scope accuracy, OOS recall.
PUBLISHED_CLINC = [
    ("SVM (bag of words)", 91.0, 14.5),
    ("DialogFlow", 91.7, 14.0),
    ("Rasa (2019 pipeline)", 91.5, 45.3),
    ("BERT fine-tuned", 96.9, 40.3),
]
PUBLISHED_BANKING = [("BERT-large fine-tuned", 93.66), ("USE+ConveRT", 93.36)]


# -- adapters: public data -> TrainingData ---------------------------------------------------


def examples_of(pairs: Sequence[tuple[str, str]]) -> list[Example]:
    return [Example(text=str(text), intent=str(label)) for text, label in pairs]


def training_data(pairs: Sequence[tuple[str, str]]) -> TrainingData:
    return TrainingData(examples=examples_of(pairs))


def load_clinc(path: Path = CLINC_FILE) -> dict[str, list[tuple[str, str]]]:
    """data_full.json: {split: [[text, label], ...]} for train, val, test and their oos_ parts."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {split: [(text, label) for text, label in rows] for split, rows in doc.items()}


def load_banking(path: Path) -> list[tuple[str, str]]:
    """BANKING77 csv with a `text,category` header; quoted texts may contain newlines."""
    with open(path, encoding="utf-8", newline="") as handle:
        return [(row["text"], row["category"]) for row in csv.DictReader(handle)]


def per_label(pairs: Sequence[tuple[str, str]], count: int, seed: int = 0) -> list[tuple[str, str]]:
    """At most `count` examples of each label (a deterministic sample), for --quick."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pair in pairs:
        groups[pair[1]].append(pair)
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for label in sorted(groups):
        items = groups[label]
        out += rng.sample(items, min(count, len(items)))
    return out


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Predictions:
    """Top intent and its confidence for each message, from `probabilities_batch`."""

    top: np.ndarray
    confidence: np.ndarray

    def labels(self, threshold: float) -> np.ndarray:
        return np.where(self.confidence < threshold, OOS, self.top)


def predict(model: NLUModel, texts: Sequence[str]) -> Predictions:
    probabilities = model.probabilities_batch(list(texts))
    classes = np.array(model.classes)
    return Predictions(classes[probabilities.argmax(axis=1)], probabilities.max(axis=1))


def in_scope_and_oos(predicted: np.ndarray, gold: np.ndarray) -> tuple[float, float]:
    """(in-scope accuracy, out-of-scope recall); a fallback counts as predicting out-of-scope."""
    in_scope = gold != OOS
    accuracy = float(np.mean(predicted[in_scope] == gold[in_scope])) if in_scope.any() else float("nan")
    recall = float(np.mean(predicted[~in_scope] == OOS)) if (~in_scope).any() else float("nan")
    return accuracy, recall


def tune_threshold(predictions: Predictions, gold: np.ndarray) -> float:
    """The threshold with the best accuracy over all validation messages (ties: the lowest)."""
    candidates = np.unique(np.concatenate([[0.0], predictions.confidence]))
    best_score, best = -1.0, 0.0
    for threshold in candidates:
        score = float(np.mean(predictions.labels(float(threshold)) == gold))
        if score > best_score:
            best_score, best = score, float(threshold)
    return best


def latency_ms(model: NLUModel, texts: Sequence[str]) -> tuple[float, float]:
    """p50 and p99 of `parse` over the given messages, after a warm-up."""
    for text in texts[:50]:
        model.parse(text)
    times = []
    for text in texts:
        started = time.perf_counter()
        model.parse(text)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def train(config: PipelineConfig, pairs: Sequence[tuple[str, str]]) -> tuple[NLUModel, float, float]:
    """The model, wall-clock seconds, and the 1-minute load average when training ended (times
    on a shared machine are only comparable with the load they were measured under)."""
    started = time.perf_counter()
    model = NLUModel.train(training_data(pairs), config)
    return model, time.perf_counter() - started, os.getloadavg()[0]


# -- the two benchmarks ------------------------------------------------------------------------


def run_clinc(config: PipelineConfig, quick: bool) -> dict[str, float]:
    data = load_clinc()
    train_pairs = data["train"] + data["oos_train"]
    val_pairs = data["val"] + data["oos_val"]
    test_pairs = data["test"] + data["oos_test"]
    if quick:
        train_pairs = per_label(data["train"], 20) + data["oos_train"]
        val_pairs = per_label(data["val"], 5) + data["oos_val"][:30]
        test_pairs = per_label(data["test"], 5) + data["oos_test"][:150]
    model, seconds, load = train(config, train_pairs)
    val_gold = np.array([label for _, label in val_pairs])
    threshold = tune_threshold(predict(model, [t for t, _ in val_pairs]), val_gold)
    test_gold = np.array([label for _, label in test_pairs])
    test_predictions = predict(model, [t for t, _ in test_pairs])
    argmax = in_scope_and_oos(test_predictions.top, test_gold)
    tuned = in_scope_and_oos(test_predictions.labels(threshold), test_gold)
    configured = in_scope_and_oos(test_predictions.labels(config.fallback_threshold), test_gold)
    p50, p99 = latency_ms(model, [t for t, _ in test_pairs][:LATENCY_MESSAGES])
    return {
        "train_examples": len(train_pairs),
        "train_seconds": seconds,
        "load": load,
        "argmax_in_scope": argmax[0],
        "argmax_oos_recall": argmax[1],
        "config_threshold": config.fallback_threshold,
        "config_in_scope": configured[0],
        "config_oos_recall": configured[1],
        "threshold": threshold,
        "in_scope": tuned[0],
        "oos_recall": tuned[1],
        "p50_ms": p50,
        "p99_ms": p99,
    }


def run_banking(config: PipelineConfig, quick: bool) -> dict[str, float]:
    train_pairs = load_banking(BANKING_DIR / "train.csv")
    test_pairs = load_banking(BANKING_DIR / "test.csv")
    if quick:
        train_pairs, test_pairs = per_label(train_pairs, 20), per_label(test_pairs, 5)
    model, seconds, load = train(config, train_pairs)
    gold = np.array([label for _, label in test_pairs])
    predictions = predict(model, [t for t, _ in test_pairs])
    p50, p99 = latency_ms(model, [t for t, _ in test_pairs][:LATENCY_MESSAGES])
    return {
        "train_examples": len(train_pairs),
        "train_seconds": seconds,
        "load": load,
        "accuracy": float(np.mean(predictions.top == gold)),
        "p50_ms": p50,
        "p99_ms": p99,
    }


def report(clinc: dict[str, float], banking: dict[str, float], quick: bool) -> str:
    note = " (--quick: a subsample, not comparable with the published figures)" if quick else ""
    lines = [
        f"CLINC150 Full, out-of-scope trained as a class{note}",
        "",
        "| system | in-scope acc % | OOS recall % | train s (load) | parse p50 / p99 ms |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {name} (Larson et al. 2019) | {acc:.1f} | {rec:.1f} | | |" for name, acc, rec in PUBLISHED_CLINC]
    timing = f"{clinc['train_seconds']:.1f} ({clinc['load']:.1f}) | {clinc['p50_ms']:.2f} / {clinc['p99_ms']:.2f}"
    lines.append(f"| ours, argmax | {100 * clinc['argmax_in_scope']:.2f} | {100 * clinc['argmax_oos_recall']:.1f} | {timing} |")
    lines.append(
        f"| ours, + config.yml threshold {clinc['config_threshold']:.2f} | {100 * clinc['config_in_scope']:.2f} | "
        f"{100 * clinc['config_oos_recall']:.1f} | {timing} |"
    )
    lines.append(
        f"| ours, + threshold {clinc['threshold']:.3f} tuned on val | {100 * clinc['in_scope']:.2f} | "
        f"{100 * clinc['oos_recall']:.1f} | {timing} |"
    )
    lines += [
        "",
        f"BANKING77{note}",
        "",
        "| system | accuracy % | train s (load) | parse p50 / p99 ms |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} (Casanueva et al. 2020) | {acc:.2f} | | |" for name, acc in PUBLISHED_BANKING]
    lines.append(
        f"| ours | {100 * banking['accuracy']:.2f} | {banking['train_seconds']:.1f} ({banking['load']:.1f}) | "
        f"{banking['p50_ms']:.2f} / {banking['p99_ms']:.2f} |"
    )
    lines.append("")
    lines.append(f"training examples: CLINC150 {clinc['train_examples']}, BANKING77 {banking['train_examples']}")
    lines.append(f"(load) = 1-minute load average after training, on {os.cpu_count()} CPUs: above that, times are inflated")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="subsample (20 training examples per intent) for a smoke run")
    parser.add_argument("--config", default=str(ROOT / "config.yml"), help="pipeline config (default: the project's)")
    args = parser.parse_args(argv)
    missing = [p for p in (CLINC_FILE, BANKING_DIR / "train.csv", BANKING_DIR / "test.csv") if not p.is_file()]
    if missing:
        print(f"benchmark data not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    config = PipelineConfig.from_file(args.config)
    clinc = run_clinc(config, args.quick)
    banking = run_banking(config, args.quick)
    print(report(clinc, banking, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
