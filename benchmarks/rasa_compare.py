"""Rasa 3.6 (default pipeline, DIET) against our NLU on the held-out tests/data/nlu_test.yml.

Run it through `benchmarks/rasa_compare.sh`, which builds the Rasa venv and calls the four
sides of this script in turn, each with the interpreter it needs:

    --side gold    project Python (PyYAML): reads tests/data/nlu_test.yml with this script's own
                   parser and config.yml's FallbackClassifier threshold -> WORK/gold.json
    --side rasa    Rasa venv, Python 3.10: trains Rasa's default pipeline on a temporary copy
                   of data/nlu.yml + data/synonyms.yml, loads the model with
                   rasa.core.agent.Agent.load, parses every test message -> WORK/rasa.json
    --side ours    project Python 3.11: trains nlu.NLUModel on the same files, saves and loads
                   it, parses every test message -> WORK/ours.json
    --side report  any Python 3.10+, standard library only: scores both prediction files with
                   the same code and prints one table (also OUT/report.json, OUT/table.md)

Scoring (the same functions for both systems):
  intent accuracy   predicted intent == gold intent (nlu_fallback counts as wrong)
  intent macro-F1   mean of per-intent F1 over the intents of the test file
  entity F1         micro P/R/F1 over the entity types of the test file; a predicted entity
                    is right only if (start, end, type) equal a gold one (values not compared)
  train seconds     read training files + train + write the model to disk, in-process,
                    imports excluded (Rasa: rasa.model_training.train_nlu; ours:
                    load_training_data + NLUModel.train + NLUModel.save)
  parse latency     one message per call, in-process, after --warmup calls; p50/p99 over
                    --repeats passes over the test messages (Rasa: await agent.parse_message;
                    ours: model.parse)

Only the standard library is imported at module level: the rasa side imports rasa, the ours
side imports nlu, the gold side imports yaml.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_FILE = "tests/data/nlu_test.yml"
TRAIN_FILES = ("data/nlu.yml", "data/synonyms.yml")  # never data/rules.yml
OUR_CONFIG = "config.yml"
RASA_CONFIG = "benchmarks/rasa/config.yml"
DEFAULT_THRESHOLD = 0.3
FALLBACK_INTENT = "nlu_fallback"
REQUIRED_ENTITY_TYPES = (
    "customer_code",
    "phone",
    "ticket_id",
    "month",
    "kwh",
    "location",
    "service_type",
)

# [surface](entity) | [surface](entity:value) | [surface]{"entity": ..., "value": ...}
_ANNOTATION = re.compile(r"\[(?P<text>[^\[\]]+)\](?:\((?P<short>[^()]+)\)|(?P<json>\{[^{}]*\}))")


# -- shared helpers (standard library) ---------------------------------------------------------


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")


def tree_bytes(path: Path) -> int:
    """Bytes of a file or of every regular file under a folder (symlinks not followed)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            file = Path(folder) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def span_set(entities: list[dict], types: set[str]) -> set[tuple[int, int, str]]:
    return {
        (int(e["start"]), int(e["end"]), str(e["entity"])) for e in entities if e["entity"] in types
    }


def prediction(text: str, result: dict) -> dict:
    """The part of a Rasa-shaped parse result that is scored, from either system."""
    intent = result.get("intent") or {}
    return {
        "text": result.get("text", text),
        "intent": intent.get("name"),
        "confidence": intent.get("confidence"),
        "entities": [
            {
                "entity": e.get("entity"),
                "start": e.get("start"),
                "end": e.get("end"),
                "value": e.get("value"),
            }
            for e in result.get("entities") or []
        ],
    }


def measure(parse, texts: list[str], warmup: int, repeats: int) -> tuple[list[dict], list[float]]:
    """Warm up, then time each single-message call; predictions come from the first timed pass."""
    for text in texts[:warmup]:
        parse(text)
    predictions, latencies = [], []
    for run in range(repeats):
        for text in texts:
            started = time.perf_counter()
            result = parse(text)
            latencies.append(time.perf_counter() - started)
            if run == 0:
                predictions.append(prediction(text, result))
    return predictions, latencies


async def measure_async(
    parse, texts: list[str], warmup: int, repeats: int
) -> tuple[list[dict], list[float]]:
    """`measure` for a coroutine function (Rasa's Agent.parse_message), timed inside the loop."""
    for text in texts[:warmup]:
        await parse(text)
    predictions, latencies = [], []
    for run in range(repeats):
        for text in texts:
            started = time.perf_counter()
            result = await parse(text)
            latencies.append(time.perf_counter() - started)
            if run == 0:
                predictions.append(prediction(text, result))
    return predictions, latencies


def compare_with_gold(
    gold: list[dict], read: list[tuple[str, str, list[tuple[int, int, str]]]]
) -> list[str]:
    """Differences between the gold examples and a library's own reading of the test file."""
    want = sorted(
        (
            g["text"],
            g["intent"],
            tuple(sorted(span_set(g["entities"], {e["entity"] for e in g["entities"]}))),
        )
        for g in gold
    )
    got = sorted((text, intent, tuple(sorted(spans))) for text, intent, spans in read)
    if want == got:
        return []
    missing = [w for w in want if w not in got]
    extra = [g for g in got if g not in want]
    return [f"not read that way: {m!r}" for m in missing[:5]] + [
        f"read instead: {x!r}" for x in extra[:5]
    ]


def system_info() -> dict:
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


# -- gold side (project Python: PyYAML) --------------------------------------------------------


def parse_annotated(line: str) -> tuple[str, list[dict]]:
    """'tra [PE0400012345](customer_code)' -> plain text and gold entity spans in that text."""
    parts, entities, cursor, length = [], [], 0, 0
    for match in _ANNOTATION.finditer(line):
        before = line[cursor : match.start()]
        parts.append(before)
        length += len(before)
        surface = match.group("text")
        if match.group("short"):
            entity = match.group("short").split(":", 1)[0].strip()
        else:
            entity = str(json.loads(match.group("json"))["entity"]).strip()
        entities.append(
            {"entity": entity, "start": length, "end": length + len(surface), "text": surface}
        )
        parts.append(surface)
        length += len(surface)
        cursor = match.end()
    parts.append(line[cursor:])
    text = "".join(parts)
    shift = len(text) - len(text.lstrip())
    for entity in entities:
        entity["start"] -= shift
        entity["end"] -= shift
    return text.strip(), entities


def side_gold(args: argparse.Namespace) -> int:
    import yaml

    doc = yaml.safe_load((ROOT / TEST_FILE).read_text(encoding="utf-8"))
    examples = []
    for item in doc.get("nlu") or []:
        if "intent" not in item:
            continue
        for raw in str(item.get("examples") or "").splitlines():
            raw = raw.strip()
            if raw.startswith("- "):
                text, entities = parse_annotated(raw[2:].strip())
                if text:
                    examples.append(
                        {"text": text, "intent": str(item["intent"]), "entities": entities}
                    )
    threshold, source = (
        DEFAULT_THRESHOLD,
        f"default {DEFAULT_THRESHOLD} (no FallbackClassifier threshold in {OUR_CONFIG})",
    )
    try:
        config = yaml.safe_load((ROOT / OUR_CONFIG).read_text(encoding="utf-8")) or {}
        for component in config.get("pipeline") or []:
            if (
                isinstance(component, dict)
                and component.get("name") == "FallbackClassifier"
                and "threshold" in component
            ):
                threshold, source = (
                    float(component["threshold"]),
                    f"{OUR_CONFIG} FallbackClassifier threshold",
                )
    except (OSError, yaml.YAMLError, TypeError, ValueError) as exc:
        source = f"default {DEFAULT_THRESHOLD} ({OUR_CONFIG} unreadable: {exc})"
    # NLU files in data/ that neither system is given (the comparison trains on TRAIN_FILES only).
    others = []
    for path in sorted((ROOT / "data").glob("*.y*ml")):
        rel = path.relative_to(ROOT).as_posix()
        if rel not in TRAIN_FILES:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(content, dict) and content.get("nlu"):
                others.append(rel)
    write_json(
        Path(args.work) / "gold.json",
        {
            "test_file": TEST_FILE,
            "train_files": list(TRAIN_FILES),
            "untrained_nlu_files": others,
            "fallback_threshold": threshold,
            "threshold_source": source,
            "examples": examples,
        },
    )
    print(
        f"gold: {len(examples)} test messages, {sum(len(e['entities']) for e in examples)} entities; threshold {threshold} ({source})"
    )
    return 0


# -- rasa side (Rasa venv, Python 3.10) --------------------------------------------------------


def rasa_environment(work: Path) -> None:
    """Keep Rasa, TensorFlow and Keras off the network and out of $HOME and the repository."""
    home = work / "rasa-home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)  # ~/.config/rasa/global.yml, ~/.keras
    os.environ["RASA_TELEMETRY_ENABLED"] = "false"
    os.environ["RASA_CACHE_DIRECTORY"] = str(work / "rasa-cache")  # fresh: no cached training
    os.environ["MPLCONFIGDIR"] = str(home / "matplotlib")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")


def rasa_config(work: Path, threshold: float) -> Path:
    """A copy of benchmarks/rasa/config.yml with our fallback threshold (Rasa writes into it)."""
    text = (ROOT / RASA_CONFIG).read_text(encoding="utf-8")
    text, count = re.subn(
        r"(?m)^(\s*)threshold:\s*[0-9.]+", lambda m: f"{m.group(1)}threshold: {threshold}", text
    )
    if count != 1:
        raise SystemExit(
            f"{RASA_CONFIG}: expected one FallbackClassifier 'threshold:' line, found {count}"
        )
    path = work / "rasa-config.yml"
    path.write_text(text, encoding="utf-8")
    return path


def side_rasa(args: argparse.Namespace) -> int:
    work = Path(args.work).resolve()
    gold = read_json(work / "gold.json")
    rasa_environment(work)
    os.chdir(work)  # anything Rasa writes relative to the working directory stays in WORK
    import logging

    import rasa
    import tensorflow as tf
    from rasa.core.agent import Agent
    from rasa.model_training import train_nlu
    from rasa.shared.nlu.training_data.loading import load_data
    from rasa.shared.utils.io import read_yaml_file
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    # As `rasa run --log-level WARNING` would: no per-message debug logging inside the timings.
    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)

    data_dir = work / "rasa-data"
    data_dir.mkdir(exist_ok=True)
    for rel in gold["train_files"]:
        shutil.copy(ROOT / rel, data_dir / Path(rel).name)
    notes = []
    # Workarounds for items Rasa rejects would go here (on this copy only); none are needed
    # with Rasa 3.6.21: it reads our lookbehind regex, lookup table and synonyms as they are.
    config_path = rasa_config(work, gold["fallback_threshold"])
    pipeline = read_yaml_file(config_path)["pipeline"]
    fallback = next(c for c in pipeline if c["name"] == "FallbackClassifier")
    assert float(fallback["threshold"]) == gold["fallback_threshold"], fallback

    training = load_data(str(data_dir))
    check = compare_with_gold(
        gold["examples"],
        [
            (
                m.get("text"),
                m.get("intent"),
                [(e["start"], e["end"], e["entity"]) for e in m.get("entities") or []],
            )
            for m in load_data(str(ROOT / gold["test_file"])).intent_examples
        ],
    )

    print(
        f"rasa {rasa.__version__}: training {len(training.intent_examples)} examples, {len(training.entity_synonyms)} synonyms, "
        f"{len(training.regex_features)} regexes, {len(training.lookup_tables)} lookup tables",
        flush=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_before = os.getloadavg()[0]
        started, cpu_started = time.perf_counter(), time.process_time()
        model_path = train_nlu(
            str(config_path), str(data_dir), str(work / "rasa-model"), fixed_model_name="rasa-diet"
        )
        train_seconds, train_cpu_seconds = (
            time.perf_counter() - started,
            time.process_time() - cpu_started,
        )
    rasa_warnings = sorted(
        {
            str(w.message).strip()
            for w in caught
            if issubclass(w.category, UserWarning) and "/rasa/" in w.filename
        }
    )
    if not model_path:
        raise SystemExit("rasa: training produced no model (see the log above)")
    print(f"rasa: trained in {train_seconds:.1f} s -> {model_path}", flush=True)

    started = time.perf_counter()
    agent = Agent.load(model_path)
    load_seconds = time.perf_counter() - started
    texts = [g["text"] for g in gold["examples"]]
    predictions, latencies = asyncio.run(
        measure_async(agent.parse_message, texts, args.warmup, args.repeats)
    )
    load_after = os.getloadavg()[0]
    write_json(
        work / "rasa.json",
        {
            "system": "Rasa DIET",
            "version": f"rasa {rasa.__version__}, tensorflow {tf.__version__}",
            "train_seconds": train_seconds,
            "train_cpu_seconds": train_cpu_seconds,
            "load_seconds": load_seconds,
            "loadavg_1min": [load_before, load_after],
            "model_bytes": tree_bytes(Path(model_path)),
            "latencies": latencies,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "predictions": predictions,
            "test_file_check": check,
            "data_notes": notes,
            "training_warnings": rasa_warnings,
            "config": pipeline,
            **system_info(),
        },
    )
    print(
        f"rasa: parsed {len(texts)} messages x {args.repeats}, p50 {percentile(latencies, 50) * 1000:.2f} ms",
        flush=True,
    )
    return 0


# -- ours side (project Python 3.11) -----------------------------------------------------------


def side_ours(args: argparse.Namespace) -> int:
    work = Path(args.work).resolve()
    gold = read_json(work / "gold.json")
    sys.path.insert(0, str(ROOT))
    import sklearn

    import nlu
    from nlu.training_data import load_file

    check = compare_with_gold(
        gold["examples"],
        [
            (e.text, e.intent, [(x["start"], x["end"], x["entity"]) for x in e.entities])
            for e in load_file(ROOT / gold["test_file"]).examples
        ],
    )
    model_dir = work / "ours-model"
    load_before = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    data = nlu.load_training_data(ROOT / gold["train_files"][0])
    for rel in gold["train_files"][1:]:
        data.merge(nlu.load_training_data(ROOT / rel))
    config = nlu.PipelineConfig.from_file(ROOT / OUR_CONFIG)
    model = nlu.NLUModel.train(data, config)
    model.save(model_dir)
    train_seconds, train_cpu_seconds = (
        time.perf_counter() - started,
        time.process_time() - cpu_started,
    )
    print(f"ours: trained {len(data.examples)} examples in {train_seconds:.2f} s", flush=True)

    started = time.perf_counter()
    model = nlu.NLUModel.load(model_dir)
    load_seconds = time.perf_counter() - started
    texts = [g["text"] for g in gold["examples"]]
    predictions, latencies = measure(model.parse, texts, args.warmup, args.repeats)
    load_after = os.getloadavg()[0]
    write_json(
        work / "ours.json",
        {
            "system": "ours",
            "version": f"nlu (scikit-learn {sklearn.__version__})",
            "train_seconds": train_seconds,
            "train_cpu_seconds": train_cpu_seconds,
            "load_seconds": load_seconds,
            "loadavg_1min": [load_before, load_after],
            "model_bytes": tree_bytes(model_dir),
            "latencies": latencies,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "predictions": predictions,
            "test_file_check": check,
            "data_notes": [],
            "training_warnings": [],
            "config": {"fallback_threshold": config.fallback_threshold},
            **system_info(),
        },
    )
    print(
        f"ours: parsed {len(texts)} messages x {args.repeats}, p50 {percentile(latencies, 50) * 1000:.3f} ms",
        flush=True,
    )
    return 0


# -- report side (standard library) ------------------------------------------------------------


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def overlap_matches(want: set[tuple[int, int, str]], got: set[tuple[int, int, str]]) -> int:
    """One-to-one matches of predicted and gold entities of the same type whose spans overlap."""
    free = sorted(want)
    matched = 0
    for start, end, kind in sorted(got):
        hit = next((w for w in free if w[2] == kind and w[0] < end and start < w[1]), None)
        if hit is not None:
            free.remove(hit)
            matched += 1
    return matched


def score(gold: list[dict], predictions: list[dict], entity_types: list[str]) -> dict:
    """Intent accuracy, macro-F1 over the gold intents, micro entity F1 on exact (start, end, type)."""
    if len(predictions) != len(gold):
        raise SystemExit(f"{len(predictions)} predictions for {len(gold)} test messages")
    text_mismatch = sum(1 for g, p in zip(gold, predictions, strict=True) if p["text"] != g["text"])
    intents = sorted({g["intent"] for g in gold})
    correct = sum(1 for g, p in zip(gold, predictions, strict=True) if p["intent"] == g["intent"])
    per_intent = {}
    for intent in intents:
        tp = sum(
            1
            for g, p in zip(gold, predictions, strict=True)
            if g["intent"] == intent and p["intent"] == intent
        )
        fp = sum(
            1
            for g, p in zip(gold, predictions, strict=True)
            if g["intent"] != intent and p["intent"] == intent
        )
        fn = sum(
            1
            for g, p in zip(gold, predictions, strict=True)
            if g["intent"] == intent and p["intent"] != intent
        )
        per_intent[intent] = prf(tp, fp, fn)[2]
    types = set(entity_types)
    counts = {t: [0, 0, 0] for t in entity_types}  # tp, fp, fn
    lenient = [0, 0, 0]
    for g, p in zip(gold, predictions, strict=True):
        want, got = span_set(g["entities"], types), span_set(p["entities"], types)
        overlap = overlap_matches(want, got)
        lenient = [
            lenient[0] + overlap,
            lenient[1] + len(got) - overlap,
            lenient[2] + len(want) - overlap,
        ]
        for _s, _e, t in want & got:
            counts[t][0] += 1
        for _s, _e, t in got - want:
            counts[t][1] += 1
        for _s, _e, t in want - got:
            counts[t][2] += 1
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    precision, recall, f1 = prf(tp, fp, fn)
    return {
        "intent_accuracy": correct / len(gold),
        "intent_macro_f1": sum(per_intent.values()) / len(per_intent),
        "per_intent_f1": per_intent,
        "fallbacks": sum(1 for p in predictions if p["intent"] == FALLBACK_INTENT),
        "entity_precision": precision,
        "entity_recall": recall,
        "entity_f1": f1,
        "entity_f1_overlap": prf(*lenient)[2],
        "per_entity": {
            t: {"tp": c[0], "fp": c[1], "fn": c[2], "f1": prf(*c)[2]} for t, c in counts.items()
        },
        "text_mismatches": text_mismatch,
    }


def fmt_bytes(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def render(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join(
        [
            line(headers),
            "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *(line(r) for r in rows),
        ]
    )


def side_report(args: argparse.Namespace) -> int:
    work = Path(args.work)
    gold_doc = read_json(work / "gold.json")
    gold = gold_doc["examples"]
    entity_types = sorted({e["entity"] for g in gold for e in g["entities"]})
    missing = [t for t in REQUIRED_ENTITY_TYPES if t not in entity_types]
    if missing:
        print(f"warning: the test file has no {', '.join(missing)} entities", file=sys.stderr)
    systems = [read_json(work / "rasa.json"), read_json(work / "ours.json")]
    for doc in systems:
        doc["score"] = score(gold, doc["predictions"], entity_types)
        doc["p50_ms"] = percentile(doc["latencies"], 50) * 1000
        doc["p99_ms"] = percentile(doc["latencies"], 99) * 1000
    rasa, ours = systems
    rows = []
    for doc in systems:
        s = doc["score"]
        rows.append(
            [
                doc["system"],
                f"{s['intent_accuracy']:.3f}",
                f"{s['intent_macro_f1']:.3f}",
                f"{s['entity_f1']:.3f}",
                f"{doc['train_seconds']:.2f}",
                f"{doc['p50_ms']:.2f}",
                f"{doc['p99_ms']:.2f}",
                f"{rasa['train_seconds'] / doc['train_seconds']:.1f}x",
                f"{rasa['p50_ms'] / doc['p50_ms']:.1f}x / {rasa['p99_ms'] / doc['p99_ms']:.1f}x",
            ]
        )
    headers = [
        "system",
        "intent acc",
        "intent macro-F1",
        "entity F1",
        "train s",
        "p50 ms",
        "p99 ms",
        "train speed-up",
        "latency speed-up p50 / p99",
    ]
    table = render(headers, rows)
    n_entities = sum(len(g["entities"]) for g in gold)
    notes = [
        f"{len(gold)} test messages ({gold_doc['test_file']}), {len({g['intent'] for g in gold})} intents, {n_entities} entities of types "
        f"{', '.join(entity_types)}; trained on {' + '.join(gold_doc['train_files'])}.",
        f"Fallback threshold {gold_doc['fallback_threshold']} ({gold_doc['threshold_source']}) for both; "
        f"nlu_fallback predictions: Rasa {rasa['score']['fallbacks']}, ours {ours['score']['fallbacks']}.",
        f"Entity precision/recall: Rasa {rasa['score']['entity_precision']:.3f}/{rasa['score']['entity_recall']:.3f}, "
        f"ours {ours['score']['entity_precision']:.3f}/{ours['score']['entity_recall']:.3f}. Per type (F1 Rasa/ours): "
        + ", ".join(
            f"{t} {rasa['score']['per_entity'][t]['f1']:.2f}/{ours['score']['per_entity'][t]['f1']:.2f}"
            for t in entity_types
        )
        + ".",
        f"Entity F1 if a prediction overlapping a gold entity of its type counts (one-to-one; not the table's exact-span score): "
        f"Rasa {rasa['score']['entity_f1_overlap']:.3f}, ours {ours['score']['entity_f1_overlap']:.3f}.",
        f"Training CPU seconds (all threads of the process): Rasa {rasa.get('train_cpu_seconds', float('nan')):.1f}, "
        f"ours {ours.get('train_cpu_seconds', float('nan')):.2f}; 1-min load average at start/end of each side: "
        f"Rasa {'/'.join(f'{x:.1f}' for x in rasa.get('loadavg_1min', []))}, ours {'/'.join(f'{x:.1f}' for x in ours.get('loadavg_1min', []))} "
        f"({ours['cpu_count']} CPUs; anything else running on the machine slows both).",
        f"Latency: {len(rasa['latencies'])} single-message calls each ({rasa['repeats']} passes after {rasa['warmup']} warm-up calls); "
        f"model load {rasa['load_seconds']:.2f} s (Rasa) vs {ours['load_seconds']:.3f} s (ours).",
        f"Model on disk: Rasa {fmt_bytes(rasa['model_bytes'])} (tar.gz), ours {fmt_bytes(ours['model_bytes'])}"
        + (
            f"; Rasa venv {fmt_bytes(tree_bytes(Path(args.rasa_venv)))}"
            if args.rasa_venv and Path(args.rasa_venv).is_dir()
            else ""
        )
        + ".",
        f"Versions: {rasa['version']} on Python {rasa['python']}; {ours['version']} on Python {ours['python']}; {ours['cpu_count']} CPUs.",
    ]
    for doc in systems:
        if doc["test_file_check"]:
            notes.append(
                f"WARNING: {doc['system']} reads {gold_doc['test_file']} differently: "
                + "; ".join(doc["test_file_check"])
            )
        if doc["score"]["text_mismatches"]:
            notes.append(
                f"WARNING: {doc['system']} returned a different text for {doc['score']['text_mismatches']} messages (spans compared as returned)."
            )
        for note in doc["data_notes"]:
            notes.append(f"{doc['system']} data workaround: {note}")
    if gold_doc["untrained_nlu_files"]:
        notes.append(
            f"WARNING: NLU files in data/ given to neither system: {', '.join(gold_doc['untrained_nlu_files'])}."
        )
    if rasa["training_warnings"]:
        notes.append(f"Rasa training warnings: {len(rasa['training_warnings'])} (see report.json).")
    print(table)
    print()
    for note in notes:
        print(note)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n\n" + "\n".join(notes) + "\n", encoding="utf-8")
    summary = {
        "table": table,
        "notes": notes,
        "entity_types": entity_types,
        "rasa_venv_bytes": tree_bytes(Path(args.rasa_venv))
        if args.rasa_venv and Path(args.rasa_venv).is_dir()
        else None,
    }
    for doc in systems:
        key = "rasa" if doc is rasa else "ours"
        summary[key] = {k: v for k, v in doc.items() if k not in ("latencies", "predictions")}
        errors = [
            {
                "text": g["text"],
                "gold": g["intent"],
                "predicted": p["intent"],
                "confidence": p["confidence"],
            }
            for g, p in zip(gold, doc["predictions"], strict=True)
            if p["intent"] != g["intent"]
        ]
        summary[key]["intent_errors"] = errors
        write_json(out / f"{key}_predictions.json", {"predictions": doc["predictions"]})
    write_json(out / "report.json", summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=["gold", "rasa", "ours", "report"], required=True)
    parser.add_argument(
        "--work",
        required=True,
        help="scratch folder shared by the sides (models, gold.json, predictions)",
    )
    parser.add_argument(
        "--out",
        default=str(ROOT / "reports" / "rasa_compare"),
        help="report: where report.json and table.md go",
    )
    parser.add_argument("--rasa-venv", help="report: the Rasa venv, to print its size on disk")
    parser.add_argument("--warmup", type=int, default=50, help="parse calls before timing starts")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed passes over the test messages"
    )
    args = parser.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    return {"gold": side_gold, "rasa": side_rasa, "ours": side_ours, "report": side_report}[
        args.side
    ](args)


if __name__ == "__main__":
    sys.exit(main())
