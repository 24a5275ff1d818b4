"""`python -m nlu`: train a model, evaluate it on held-out data, cross-validate, parse a message.

Exit codes: 0 done, 2 bad input (data, config, model folder, arguments). Results go to stdout,
progress and errors to stderr, so `path=$(python -m nlu train | tail -1)` works in scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from nlu.evaluate import (
    MONTH_CASES,
    CrossValidationResult,
    EvaluationError,
    EvaluationResult,
    FoldResult,
    cross_validate,
    evaluate,
    load_month_cases,
    write_reports,
)
from nlu.model import ConfigError, NLUModel, PipelineConfig
from nlu.registry import ModelRegistry
from nlu.training_data import TrainingDataError, load_training_data

TRAIN_STAGES = ("loading data", "featurising + fitting", "evaluating", "saving")


class UsageError(Exception):
    """The command cannot run as asked (no model, unreadable model folder); exit code 2."""


class StageProgress:
    """A plain-text progress bar on stderr: `[#####-----] 2/4 featurising + fitting (0.1 s)`.

    On a terminal the bar redraws in place; in a log (not a TTY) each stage is one line."""

    def __init__(self, stages: tuple[str, ...] | list[str], stream: TextIO | None = None, width: int = 20) -> None:
        self.stages = list(stages)
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.started = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = 0

    def _draw(self, done: int, label: str) -> None:
        filled = round(self.width * done / len(self.stages))
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {done}/{len(self.stages)} {label} ({time.perf_counter() - self.started:.1f} s)"
        if self._tty:  # redraw in place; pad over a longer previous line
            self.stream.write("\r" + line.ljust(self._drawn))
            self._drawn = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def stage(self, name: str) -> None:
        """Announce that `name` starts (the stages before it are done)."""
        self._draw(self.stages.index(name), name)

    def finish(self) -> None:
        self._draw(len(self.stages), "done")
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()


def train(
    data: str | Path,
    config: str | Path,
    out: str | Path,
    test: str | Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Path:
    """Train on Rasa NLU data with config.yml's pipeline; returns the saved model folder.

    With `test` (a held-out NLU file) the model is evaluated before saving and the summary
    (accuracy, macro-F1, weighted-F1) is stored in meta.json's `metrics`, so the folder says
    how good its model is. The test file is read before training: a typo fails in a second."""
    stage = on_stage or (lambda name: None)
    stage("loading data")
    training = load_training_data(data)
    if len(training.intents) < 2:
        raise TrainingDataError(f"{data}: training needs examples of at least two intents, found {training.intents}")
    pipeline = PipelineConfig.from_file(config)
    held_out = load_training_data(test, known_intents=set(training.intents)) if test is not None else None
    stage("featurising + fitting")
    model = NLUModel.train(training, pipeline)
    if held_out is not None:
        stage("evaluating")
        model.meta.metrics = {"test_data": str(test)} | evaluate(model, held_out).summary()
    stage("saving")
    return ModelRegistry(out).save(model)


def _cmd_train(args: argparse.Namespace) -> int:
    stages = TRAIN_STAGES if args.test else tuple(s for s in TRAIN_STAGES if s != "evaluating")
    progress = StageProgress(stages)
    path = train(args.data, args.config, args.out, test=args.test, on_stage=progress.stage)
    progress.finish()
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    print(f"trained {meta['id']}: {meta['examples']} examples, {len(meta['intents'])} intents, {meta['train_seconds']} s")
    metrics = meta.get("metrics") or {}
    if metrics:
        print(
            f"on {metrics['test_data']} ({metrics['examples']} examples): accuracy {metrics['accuracy']:.3f}, "
            f"macro-F1 {metrics['macro_f1']:.3f}, weighted-F1 {metrics['weighted_f1']:.3f}"
        )
    print(path)
    return 0


def _model_dir(args: argparse.Namespace) -> Path:
    model_dir = Path(args.model) if args.model else ModelRegistry(args.models).newest()
    if model_dir is None:
        raise UsageError(f"no model in {args.models}; run `python -m nlu train` first")
    return model_dir


def _load_model(model_dir: Path) -> NLUModel:
    try:
        return NLUModel.load(model_dir)
    except FileNotFoundError as exc:
        raise UsageError(f"{model_dir}: not a model folder ({Path(exc.filename or '').name or exc} missing)") from None
    except (ValueError, OSError) as exc:
        raise UsageError(f"{model_dir}: cannot load the model: {exc}") from None


def _cmd_parse(args: argparse.Namespace) -> int:
    result = _load_model(_model_dir(args)).parse(args.text)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def _month_cases_path(args: argparse.Namespace) -> Path | None:
    """--months, else month_cases.yml next to the test data when there is one."""
    if args.months:
        return Path(args.months)
    data = Path(args.data)
    candidate = (data if data.is_dir() else data.parent) / MONTH_CASES
    return candidate if candidate.is_file() else None


def _print_intent_table(report: dict[str, Any], out: TextIO) -> None:
    names = [k for k in report if k not in ("accuracy", "macro avg", "weighted avg")]
    width = max([len(n) for n in names] + [len("weighted avg")])
    print(f"{'intent':<{width}}  precision  recall  f1-score  support", file=out)
    for name in [*names, "macro avg", "weighted avg"]:
        row = report[name]
        print(f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1-score']:8.3f}  {row['support']:7d}", file=out)


def _print_test_summary(result: EvaluationResult, model: NLUModel, model_dir: Path, out_dir: Path, out: TextIO) -> None:
    summary = result.summary()
    threshold = model.meta.config.get("fallback_threshold", "fallback")
    print(f"model {model_dir.name}: {summary['examples']} test messages", file=out)
    _print_intent_table(result.intent_report, out)
    print(
        f"accuracy {summary['accuracy']:.3f}  macro-F1 {summary['macro_f1']:.3f}  "
        f"weighted-F1 {summary['weighted_f1']:.3f}  errors {len(result.errors)}",
        file=out,
    )
    print(
        f"fallbacks {summary['fallbacks']}, of which {summary['fallbacks_right_intent']} had the expected intent "
        f"ranked first (below the {threshold} threshold)",
        file=out,
    )
    if result.entity_report is not None:
        print(file=out)
        rows = {k: v for k, v in result.entity_report.items() if isinstance(v, dict) and "f1-score" in v}
        width = max(len(k) for k in rows) if rows else 6
        print(f"{'entity':<{width}}  precision  recall  f1-score  support", file=out)
        for name, row in rows.items():
            print(f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1-score']:8.3f}  {row['support']:7d}", file=out)
    months = result.month_resolution
    if months is not None:
        print(f"\nmonth resolution: {months['correct']}/{months['cases']} correct ({months['accuracy']:.1%})", file=out)
    print(f"\nreports in {out_dir}", file=out)


def _cmd_test(args: argparse.Namespace) -> int:
    model_dir = _model_dir(args)
    model = _load_model(model_dir)
    data = load_training_data(args.data, known_intents=set(model.meta.intents))
    if not data.examples:
        raise UsageError(f"{args.data}: no NLU examples to test on")
    months_path = _month_cases_path(args)
    cases = load_month_cases(months_path) if months_path is not None else None
    result = evaluate(model, data, month_cases=cases)
    out_dir = Path(args.out)
    write_reports(result, out_dir)
    _print_test_summary(result, model, model_dir, out_dir, sys.stdout)
    return 0


def _print_fold(fold: FoldResult) -> None:
    print(
        f"fold {fold.index}: train {fold.train_examples}, test {fold.test_examples}, "
        f"accuracy {fold.accuracy:.3f}, macro-F1 {fold.macro_f1:.3f}",
        flush=True,
    )


def _cmd_cross_validate(args: argparse.Namespace) -> int:
    data = load_training_data(args.data)
    config = PipelineConfig.from_file(args.config)
    print(f"{args.folds}-fold cross-validation on {len(data.examples)} examples, {len(data.intents)} intents", file=sys.stderr)
    result: CrossValidationResult = cross_validate(data, config, args.folds, seed=args.seed, on_fold=_print_fold)
    print(
        f"mean: accuracy {result.mean('accuracy'):.3f} ± {result.stdev('accuracy'):.3f}, "
        f"macro-F1 {result.mean('macro_f1'):.3f} ± {result.stdev('macro_f1'):.3f}"
    )
    pooled = result.pooled.summary()
    print(
        f"pooled: accuracy {pooled['accuracy']:.3f}, macro-F1 {pooled['macro_f1']:.3f}, weighted-F1 {pooled['weighted_f1']:.3f}, "
        f"fallbacks {pooled['fallbacks']} ({pooled['fallbacks_right_intent']} with the expected intent ranked first)"
    )
    if args.out:
        write_reports(result.pooled, args.out)
        print(f"reports in {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nlu", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p_train = sub.add_parser("train", help="train a model from Rasa NLU YAML")
    p_train.add_argument("--data", default="data/", help="NLU file or folder (default: data/)")
    p_train.add_argument("--config", default="config.yml")
    p_train.add_argument("--out", default="models/", help="models folder; the model goes in a new subfolder")
    p_train.add_argument("--test", help="held-out NLU file; its scores are stored in meta.json's metrics")
    p_train.set_defaults(func=_cmd_train)

    p_test = sub.add_parser("test", help="evaluate a model on held-out NLU data, write Rasa-style reports")
    p_test.add_argument("--model", help="model folder (default: newest in --models)")
    p_test.add_argument("--models", default="models/")
    p_test.add_argument("--data", default="tests/data/nlu_test.yml", help="held-out NLU file or folder")
    p_test.add_argument("--out", default="reports/", help="folder for the reports (default: reports/)")
    p_test.add_argument("--months", help=f"month resolution cases (default: {MONTH_CASES} next to --data, if any)")
    p_test.set_defaults(func=_cmd_test)

    p_cv = sub.add_parser("cross-validate", help="stratified k-fold cross-validation on the training data")
    p_cv.add_argument("--data", default="data/")
    p_cv.add_argument("--config", default="config.yml")
    p_cv.add_argument("--folds", type=int, default=5)
    p_cv.add_argument("--seed", type=int, default=0, help="shuffling seed, for repeatable folds")
    p_cv.add_argument("--out", help="write the intent report of the pooled predictions here")
    p_cv.set_defaults(func=_cmd_cross_validate)

    p_parse = sub.add_parser("parse", help="parse one message, print Rasa's /model/parse JSON")
    p_parse.add_argument("text")
    p_parse.add_argument("--model", help="model folder (default: newest in --models)")
    p_parse.add_argument("--models", default="models/")
    p_parse.set_defaults(func=_cmd_parse)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TrainingDataError, ConfigError, EvaluationError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
