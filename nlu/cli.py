"""`python -m nlu`: train a model, parse a message."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nlu.model import ConfigError, NLUModel, PipelineConfig
from nlu.registry import ModelRegistry
from nlu.training_data import TrainingDataError, load_training_data


def train(data: str | Path, config: str | Path, out: str | Path) -> Path:
    """Train on Rasa NLU data with config.yml's pipeline; returns the saved model folder."""
    training = load_training_data(data)
    model = NLUModel.train(training, PipelineConfig.from_file(config))
    return ModelRegistry(out).save(model)


def _cmd_train(args: argparse.Namespace) -> int:
    path = train(args.data, args.config, args.out)
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    print(f"trained {meta['id']}: {meta['examples']} examples, {len(meta['intents'])} intents, {meta['train_seconds']} s")
    print(path)
    return 0


def _cmd_parse(args: argparse.Namespace) -> int:
    model_dir = Path(args.model) if args.model else ModelRegistry(args.models).newest()
    if model_dir is None:
        print(f"no model in {args.models}; run `python -m nlu train` first", file=sys.stderr)
        return 2
    result = NLUModel.load(model_dir).parse(args.text)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nlu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train a model from Rasa NLU YAML")
    p_train.add_argument("--data", default="data/")
    p_train.add_argument("--config", default="config.yml")
    p_train.add_argument("--out", default="models/")
    p_train.set_defaults(func=_cmd_train)
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
    except (TrainingDataError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
