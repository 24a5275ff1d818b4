"""Reading Rasa 3.x NLU YAML: intents with annotated examples, synonyms, regexes, lookups.

Errors name the file and the line, so a typo in data/nlu.yml is found in seconds: invalid
YAML (bad indentation, tabs), non-UTF-8 bytes, an annotation without its closing bracket,
invalid entity JSON, an `examples` value that is not a `|` block of "- " lines, and (for test
files, via `known_intents`) an intent the model does not know.
"""

from __future__ import annotations

import difflib
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
    # Where the example was read from ("data/nlu.yml:42"), for error reports; not compared.
    source: str = field(default="", compare=False)


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

    def subset(self, indices: list[int]) -> TrainingData:
        """The same synonyms, regexes and lookups with only the examples at `indices`
        (the training part of a cross-validation fold)."""
        return TrainingData(
            examples=[self.examples[i] for i in indices],
            synonyms=dict(self.synonyms),
            regexes={k: list(v) for k, v in self.regexes.items()},
            lookups={k: list(v) for k, v in self.lookups.items()},
        )


# [surface](entity) | [surface](entity:value) | [surface]{"entity": ..., "value": ...}
_ANNOTATION = re.compile(r"\[(?P<text>[^\[\]]+)\](?:\((?P<short>[^()]+)\)|(?P<json>\{[^{}]*\}))")
_ENTITY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_annotated(line: str, where: str) -> tuple[str, tuple[dict[str, Any], ...]]:
    """Turn "tra [PE0400012345](customer_code)" into plain text and Rasa-shaped entities."""
    # Brackets left outside a well-formed annotation mean one was typed wrong; checked first
    # so "[tháng 9(month)" is reported as the unclosed bracket it is.
    outside = _ANNOTATION.sub("", line)
    if "[" in outside or "]" in outside:
        raise TrainingDataError(
            f"{where}: malformed entity annotation (unclosed bracket?) in {line!r}; "
            'write [text](entity) or [text]{"entity": "name", "value": "..."}'
        )
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
            entity, value = str(spec["entity"]), spec.get("value", surface)
        entity = entity.strip()
        if not _ENTITY_NAME.fullmatch(entity):
            raise TrainingDataError(f"{where}: bad entity name {entity!r}")
        entities.append({"entity": entity, "value": value, "start": length, "end": length + len(surface), "text": surface})
        parts.append(surface)
        length += len(surface)
        cursor = match.end()
    parts.append(line[cursor:])
    return "".join(parts).strip(), tuple(entities)


# -- YAML with line numbers ----------------------------------------------------------------

_LINE = "__line__"  # line of the mapping itself
_VALUE_NODES = "__value_nodes__"  # key -> (line of its value, scalar style or None)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers where each mapping and each of its values start, so errors
    can name the line of the offending example rather than of its intent."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    seen: dict[Any, int] = {}
    value_nodes: dict[Any, tuple[int, str | None]] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, str) and key in seen:
            name = getattr(loader, "name", "<yaml>")
            raise TrainingDataError(f"{name}:{line}: duplicate key {key!r} (first at line {seen[key]})")
        if isinstance(key, str):
            seen[key] = line
            style = value_node.style if isinstance(value_node, yaml.ScalarNode) else None
            value_nodes[key] = (value_node.start_mark.line + 1, style)
    mapping = loader.construct_mapping(node, deep=True)
    mapping[_LINE] = node.start_mark.line + 1
    mapping[_VALUE_NODES] = value_nodes
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_text(path: Path) -> str:
    """The file as text; non-UTF-8 bytes are reported with their line, not a bare codec error."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TrainingDataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - raw.rfind(b"\n", 0, exc.start)
        raise TrainingDataError(
            f"{path}:{line}: not UTF-8 text (byte {raw[exc.start : exc.start + 1]!r} at column {column}); "
            "save the file as UTF-8"
        ) from None


def _parse_yaml(path: Path) -> Any:
    text = _read_text(path)
    loader = _LineLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        hint = f" ({context})" if context else ""
        raise TrainingDataError(f"{path}{line}: invalid YAML (bad indentation or syntax?): {problem}{hint}") from None
    finally:
        loader.dispose()


# -- NLU items -----------------------------------------------------------------------------


def _example_lines(item: dict[str, Any], path: Path) -> list[tuple[int | None, str]]:
    """The "- text" lines of an item's `examples` block, each with its line in the file."""
    block = item.get("examples")
    item_line = item.get(_LINE)
    value_line, style = item.get(_VALUE_NODES, {}).get("examples", (item_line, None))
    where = f"{path}:{value_line}" if value_line else str(path)
    if "examples" not in item:
        raise TrainingDataError(f"{path}:{item_line}: missing 'examples' (a '|' block of '- text' lines)")
    if not isinstance(block, str):
        kind = "a list" if isinstance(block, list) else type(block).__name__
        raise TrainingDataError(
            f"{where}: 'examples' must be a block of '- text' lines after 'examples: |', got {kind}"
        )
    if style == ">":
        raise TrainingDataError(f"{where}: 'examples: >' folds the lines into one; write 'examples: |'")
    literal = style == "|"
    lines: list[tuple[int | None, str]] = []
    for offset, raw in enumerate(block.splitlines()):
        # A literal block keeps one value line per file line, starting after the '|' line.
        line = value_line + 1 + offset if literal and value_line else value_line
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped == "-":
            raise TrainingDataError(f"{path}:{line}: empty example '-'")
        if not stripped.startswith("- "):
            raise TrainingDataError(f"{path}:{line}: example lines start with '- ': {stripped!r}")
        lines.append((line, stripped[2:].strip()))
    return lines


def _unknown_intent(intent: str, known: set[str]) -> str:
    close = difflib.get_close_matches(intent, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; the model knows: {', '.join(sorted(known))}"


def load_file(path: Path, known_intents: set[str] | None = None) -> TrainingData:
    """Load one NLU YAML file. `known_intents` rejects intents outside the inventory (test files)."""
    path = Path(path)
    doc = _parse_yaml(path)
    data = TrainingData()
    if not isinstance(doc, dict) or "nlu" not in doc:
        return data  # not an NLU file (rules, stories, month cases next to the test data)
    items = doc["nlu"]
    if not isinstance(items, list):
        line = doc[_VALUE_NODES].get("nlu", (1, None))[0]
        raise TrainingDataError(f"{path}:{line}: 'nlu' must be a list of '- intent:' / '- synonym:' items")
    for item in items:
        if not isinstance(item, dict):
            raise TrainingDataError(f"{path}: every 'nlu' item must be a mapping, got {item!r}")
        base = f"{path}:{item[_LINE]}"
        if "intent" in item:
            intent = str(item["intent"])
            if known_intents is not None and intent not in known_intents:
                raise TrainingDataError(f"{base}: unknown intent {intent!r}{_unknown_intent(intent, known_intents)}")
            for line, text in _example_lines(item, path):
                where = f"{path}:{line}"
                plain, entities = parse_annotated(text, where)
                if plain:
                    data.examples.append(Example(plain, intent, entities, source=where))
                    for ent in entities:
                        if ent["value"] != ent["text"]:
                            data.synonyms[ent["text"].lower()] = ent["value"]
        elif "synonym" in item:
            for _, surface in _example_lines(item, path):
                data.synonyms[surface.lower()] = str(item["synonym"])
        elif "regex" in item:
            patterns = []
            for line, pattern in _example_lines(item, path):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise TrainingDataError(f"{path}:{line}: bad regex {pattern!r}: {exc}") from None
                patterns.append(pattern)
            data.regexes.setdefault(str(item["regex"]), []).extend(patterns)
        elif "lookup" in item:
            values = [text for _, text in _example_lines(item, path)]
            data.lookups.setdefault(str(item["lookup"]), []).extend(values)
        else:
            keys = sorted(k for k in item if k not in (_LINE, _VALUE_NODES))
            raise TrainingDataError(f"{base}: unknown item with keys {keys}; expected intent, synonym, regex or lookup")
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
