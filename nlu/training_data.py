"""Reading Rasa 3.x NLU YAML: intents with annotated examples, synonyms, regexes, lookups.

Errors name the file and the line, so a typo in data/nlu.yml is found in seconds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class TrainingDataError(ValueError):
    """A training file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    entities: tuple[dict[str, Any], ...] = ()


@dataclass
class TrainingData:
    examples: list[Example] = field(default_factory=list)
    synonyms: dict[str, str] = field(default_factory=dict)  # surface form (lower) -> value
    regexes: dict[str, list[str]] = field(default_factory=dict)
    lookups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def intents(self) -> list[str]:
        return sorted({e.intent for e in self.examples})

    def merge(self, other: TrainingData) -> None:
        self.examples.extend(other.examples)
        self.synonyms.update(other.synonyms)
        for name, patterns in other.regexes.items():
            self.regexes.setdefault(name, []).extend(patterns)
        for name, values in other.lookups.items():
            self.lookups.setdefault(name, []).extend(values)


# [surface](entity) | [surface](entity:value) | [surface]{"entity": ..., "value": ...}
_ANNOTATION = re.compile(r"\[(?P<text>[^\[\]]+)\](?:\((?P<short>[^()]+)\)|(?P<json>\{[^{}]*\}))")


def parse_annotated(line: str, where: str) -> tuple[str, tuple[dict[str, Any], ...]]:
    """Turn "tra [PE0400012345](customer_code)" into plain text and Rasa-shaped entities."""
    entities: list[dict[str, Any]] = []
    parts: list[str] = []
    cursor = 0
    length = 0
    for match in _ANNOTATION.finditer(line):
        before = line[cursor : match.start()]
        parts.append(before)
        length += len(before)
        surface = match.group("text")
        if match.group("short"):
            entity, _, value = match.group("short").partition(":")
            value = value or surface
        else:
            try:
                spec = json.loads(match.group("json"))
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"{where}: invalid entity JSON {match.group('json')!r}: {exc.msg}") from None
            if not isinstance(spec, dict) or "entity" not in spec:
                raise TrainingDataError(f"{where}: entity JSON needs an 'entity' key: {match.group('json')!r}")
            entity, value = spec["entity"], spec.get("value", surface)
        entity = entity.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", entity):
            raise TrainingDataError(f"{where}: bad entity name {entity!r}")
        entities.append({"entity": entity, "value": value, "start": length, "end": length + len(surface), "text": surface})
        parts.append(surface)
        length += len(surface)
        cursor = match.end()
    parts.append(line[cursor:])
    # Brackets left outside a well-formed annotation mean one was typed wrong.
    outside = _ANNOTATION.sub("", line)
    if "[" in outside or "]" in outside:
        raise TrainingDataError(f"{where}: malformed entity annotation (unclosed bracket?) in {line!r}")
    return "".join(parts).strip(), tuple(entities)


def _example_lines(block: Any, where: str) -> list[str]:
    if not isinstance(block, str):
        raise TrainingDataError(f"{where}: 'examples' must be a block of '- text' lines")
    lines = []
    for raw in block.splitlines():
        stripped = raw.strip()
        if not stripped:
            continue
        if not stripped.startswith("- "):
            raise TrainingDataError(f"{where}: example lines start with '- ': {stripped!r}")
        lines.append(stripped[2:].strip())
    return lines


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of each mapping, for error messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_file(path: Path, known_intents: set[str] | None = None) -> TrainingData:
    """Load one NLU YAML file. `known_intents` rejects intents outside the inventory (test files)."""
    try:
        with open(path, encoding="utf-8") as handle:
            doc = yaml.load(handle, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise TrainingDataError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError as exc:
        raise TrainingDataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    data = TrainingData()
    if not doc or "nlu" not in doc:
        return data
    items = doc["nlu"]
    if not isinstance(items, list):
        raise TrainingDataError(f"{path}: 'nlu' must be a list")
    for item in items:
        if not isinstance(item, dict):
            raise TrainingDataError(f"{path}: every 'nlu' item must be a mapping, got {item!r}")
        line = item.get("__line__", "?")
        base = f"{path}:{line}"
        if "intent" in item:
            intent = str(item["intent"])
            if known_intents is not None and intent not in known_intents:
                raise TrainingDataError(f"{base}: unknown intent {intent!r}")
            for offset, text in enumerate(_example_lines(item.get("examples"), base)):
                where = f"{path}:{line + 2 + offset}" if isinstance(line, int) else base
                plain, entities = parse_annotated(text, where)
                if plain:
                    data.examples.append(Example(plain, intent, entities))
                    for ent in entities:
                        if ent["value"] != ent["text"]:
                            data.synonyms[ent["text"].lower()] = ent["value"]
        elif "synonym" in item:
            for surface in _example_lines(item.get("examples"), base):
                data.synonyms[surface.lower()] = str(item["synonym"])
        elif "regex" in item:
            patterns = _example_lines(item.get("examples"), base)
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise TrainingDataError(f"{base}: bad regex {pattern!r}: {exc}") from None
            data.regexes.setdefault(str(item["regex"]), []).extend(patterns)
        elif "lookup" in item:
            data.lookups.setdefault(str(item["lookup"]), []).extend(_example_lines(item.get("examples"), base))
        else:
            keys = sorted(k for k in item if k != "__line__")
            raise TrainingDataError(f"{base}: unknown item with keys {keys}")
    return data


def load_training_data(path: str | Path, known_intents: set[str] | None = None) -> TrainingData:
    """Load a file, or every NLU file (*.yml, *.yaml with an `nlu:` key) under a directory."""
    root = Path(path)
    if not root.exists():
        raise TrainingDataError(f"{root}: no such file or directory")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix in {".yml", ".yaml"})
    data = TrainingData()
    for file in files:
        data.merge(load_file(file, known_intents))
    return data
