"""The NLU training data, kept in the database and edited from the admin console.

`data/*.yml` (Rasa format) and the database hold the same data: `import_files` reads the files
into the database (replacing what was there), `export_files` writes the database back as files
in the same layout, line for line, so `export(import(data/))` gives back data/ byte for byte and
the repository and the console never disagree silently. Every change is in the audit log.

An intent example is stored as its annotated line ("tra [PE0400012345](customer_code)"), which is
lossless and is what an admin edits; synonyms, regexes and lookups are stored one line each.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from backend.clock import utcnow
from backend.db import read_scope, session_scope
from backend.models import AuditEntry, NluExample
from nlu.training_data import (
    TrainingData,
    TrainingDataError,
    _example_lines,
    _parse_yaml,
    load_training_data,
    parse_annotated,
)

KINDS = ("intent", "synonym", "regex", "lookup")
DEFAULT_FILE = {"intent": "nlu.yml", "synonym": "synonyms.yml", "regex": "synonyms.yml", "lookup": "synonyms.yml"}
MAX_LINE = 500
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_HEADER = 'version: "3.1"\n\nnlu:\n'


class NluDataError(ValueError):
    """An edit the training data cannot take (bad annotation, bad regex, duplicate, unknown id)."""


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a console user (`staff_id`) or a command line (`name` only)."""

    name: str
    staff_id: int | None = None


@dataclass(frozen=True)
class ExampleInfo:
    id: int
    kind: str
    name: str
    text: str
    file: str
    position: int
    updated_at: datetime

    @property
    def plain(self) -> str:
        """The example as a customer would type it (annotations removed)."""
        return parse_annotated(self.text, "example")[0] if self.kind == "intent" else self.text

    @property
    def entities(self) -> tuple[dict[str, Any], ...]:
        return parse_annotated(self.text, "example")[1] if self.kind == "intent" else ()


def _info(row: NluExample) -> ExampleInfo:
    return ExampleInfo(row.id, row.kind, row.name, row.text, row.file, row.position, row.updated_at)


def audit(session: Any, actor: Actor, action: str, **detail: Any) -> None:
    session.add(AuditEntry(staff_id=actor.staff_id, action=action, detail={"by": actor.name, **detail}, created_at=utcnow()))


# -- validation ----------------------------------------------------------------------------------


def check_name(kind: str, name: str) -> str:
    name = name.strip()
    if kind not in KINDS:
        raise NluDataError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "synonym":
        if not name or len(name) > 100:
            raise NluDataError("a synonym's value must be 1-100 characters")
    elif not _NAME.fullmatch(name):
        raise NluDataError(f"{name!r} is not a valid {kind} name (letters, digits and '_', starting with a letter)")
    return name


def check_line(kind: str, text: str) -> str:
    """The line as it will be stored; raises NluDataError when it cannot be trained on."""
    text = " ".join(text.split())
    if not text:
        raise NluDataError("the text is empty")
    if len(text) > MAX_LINE:
        raise NluDataError(f"the text is longer than {MAX_LINE} characters")
    if kind == "intent":
        try:
            plain, _ = parse_annotated(text, "example")
        except TrainingDataError as exc:
            raise NluDataError(str(exc).removeprefix("example: ")) from None
        if not plain:
            raise NluDataError("the example has no text outside its annotations")
    elif kind == "regex":
        try:
            re.compile(text)
        except re.error as exc:
            raise NluDataError(f"bad regex {text!r}: {exc}") from None
    return text


# -- files <-> database --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    kind: str
    name: str
    text: str
    file: str


def read_files(data_dir: Path) -> list[_Line]:
    """Every NLU line of data/*.yml in file order, validated (errors name file and line)."""
    load_training_data(data_dir)  # the full validation, with file:line errors
    lines: list[_Line] = []
    seen: set[tuple[str, str, str]] = set()
    for path in sorted(p for p in Path(data_dir).rglob("*") if p.suffix in {".yml", ".yaml"}):
        doc = _parse_yaml(path)
        if not isinstance(doc, dict) or not isinstance(doc.get("nlu"), list):
            continue
        relative = path.relative_to(data_dir).as_posix()
        for item in doc["nlu"]:
            kind = next(k for k in KINDS if k in item)
            name = str(item[kind])
            for line_no, text in _example_lines(item, path):
                key = (kind, name, text)
                if key in seen:
                    raise TrainingDataError(f"{path}:{line_no}: duplicate {kind} line {text!r} under {name!r}")
                seen.add(key)
                lines.append(_Line(kind, name, text, relative))
    return lines


async def import_files(data_dir: Path, actor: Actor) -> dict[str, int]:
    """Replace the training data in the database with data/'s; returns counts per kind."""
    lines = read_files(data_dir)
    now = utcnow()
    async with session_scope() as session:
        await session.execute(delete(NluExample))
        session.add_all(
            NluExample(kind=line.kind, name=line.name, text=line.text, file=line.file, position=i, updated_by=actor.staff_id, created_at=now, updated_at=now)
            for i, line in enumerate(lines)
        )
        counts = {kind: sum(1 for line in lines if line.kind == kind) for kind in KINDS}
        audit(session, actor, "nlu_import", source=str(data_dir), **counts)
    return counts


async def all_lines() -> list[ExampleInfo]:
    async with read_scope() as session:
        rows = await session.scalars(select(NluExample).order_by(NluExample.position, NluExample.id))
        return [_info(r) for r in rows]


def render_files(lines: list[ExampleInfo]) -> dict[str, str]:
    """Rasa YAML per file: items in the order of their first line, lines in position order."""
    items: dict[str, dict[tuple[str, str], list[str]]] = defaultdict(dict)
    for line in sorted(lines, key=lambda e: (e.position, e.id)):
        items[line.file].setdefault((line.kind, line.name), []).append(line.text)
    files = {}
    for file, blocks in items.items():
        parts = []
        for (kind, name), texts in blocks.items():
            label = _yaml_scalar(name)
            body = "".join(f"    - {text}\n" for text in texts)
            parts.append(f"- {kind}: {label}\n  examples: |\n{body}")
        files[file] = _HEADER + "\n".join(parts)
    return files


def _yaml_scalar(value: str) -> str:
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and value.lower() not in ("true", "false", "null", "yes", "no", "on", "off")
    return value if plain else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def export_files(out_dir: Path, actor: Actor | None = None) -> list[Path]:
    """Write the database's training data as Rasa YAML files under `out_dir`."""
    files = render_files(await all_lines())
    written = []
    for name, text in sorted(files.items()):
        path = Path(out_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if actor is not None:
        async with session_scope() as session:
            audit(session, actor, "nlu_export", target=str(out_dir), files=len(written))
    return written


async def training_data() -> TrainingData:
    """The database's training data as the trainer reads it (through the same parser)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nlu-data-") as tmp:
        await export_files(Path(tmp))
        return load_training_data(tmp)


async def has_data() -> bool:
    async with read_scope() as session:
        return bool(await session.scalar(select(func.count()).select_from(NluExample)))


# -- browsing --------------------------------------------------------------------------------------


async def intent_counts() -> list[tuple[str, int]]:
    async with read_scope() as session:
        rows = await session.execute(
            select(NluExample.name, func.count()).where(NluExample.kind == "intent").group_by(NluExample.name).order_by(NluExample.name)
        )
        return [(name, int(count)) for name, count in rows]


async def intents() -> list[str]:
    return [name for name, _ in await intent_counts()]


async def find(kind: str = "intent", name: str | None = None, search: str | None = None, limit: int = 500) -> list[ExampleInfo]:
    """Lines of one kind, optionally of one intent/name, optionally containing `search`
    (matched with and without diacritics)."""
    query = select(NluExample).where(NluExample.kind == kind)
    if name:
        query = query.where(NluExample.name == name)
    async with read_scope() as session:
        rows = [_info(r) for r in await session.scalars(query.order_by(NluExample.position, NluExample.id))]
    if search:
        from nlu.normalize import strip_diacritics

        needle = strip_diacritics(search.lower()).strip()
        rows = [r for r in rows if needle in strip_diacritics(r.text.lower()) or needle in r.name.lower()]
    return rows[:limit]


async def get(example_id: int) -> ExampleInfo | None:
    async with read_scope() as session:
        row = await session.get(NluExample, example_id)
        return _info(row) if row else None


async def resources() -> dict[str, dict[str, list[ExampleInfo]]]:
    """Synonyms, regexes and lookups: kind -> name -> lines."""
    grouped: dict[str, dict[str, list[ExampleInfo]]] = {k: {} for k in KINDS if k != "intent"}
    async with read_scope() as session:
        rows = await session.scalars(select(NluExample).where(NluExample.kind != "intent").order_by(NluExample.position, NluExample.id))
        for row in rows:
            grouped[row.kind].setdefault(row.name, []).append(_info(row))
    return grouped


# -- editing ---------------------------------------------------------------------------------------


async def _exists(session: Any, kind: str, name: str, text: str, but: int | None = None) -> bool:
    query = select(NluExample.id).where(NluExample.kind == kind, NluExample.name == name, NluExample.text == text)
    if but is not None:
        query = query.where(NluExample.id != but)
    return bool(await session.scalar(query))


async def add(kind: str, name: str, text: str, actor: Actor, *, session: Any = None) -> ExampleInfo:
    """A new line at the end of its item (a new item goes to the end of its file)."""
    name, text = check_name(kind, name), check_line(kind, text)

    async def run(s: Any) -> ExampleInfo:
        if await _exists(s, kind, name, text):
            raise NluDataError(f"{text!r} is already an example of {name!r}")
        file = await s.scalar(select(NluExample.file).where(NluExample.kind == kind, NluExample.name == name).limit(1))
        last = await s.scalar(select(func.max(NluExample.position)))
        now = utcnow()
        row = NluExample(
            kind=kind, name=name, text=text, file=file or DEFAULT_FILE[kind], position=(last or 0) + 1,
            updated_by=actor.staff_id, created_at=now, updated_at=now,
        )
        s.add(row)
        await s.flush()
        audit(s, actor, "nlu_example_add", id=row.id, kind=kind, name=name, text=text)
        return _info(row)

    if session is not None:
        return await run(session)
    async with session_scope() as s:
        return await run(s)


async def edit(example_id: int, text: str, actor: Actor) -> ExampleInfo:
    async with session_scope() as session:
        row = await session.get(NluExample, example_id)
        if row is None:
            raise NluDataError(f"no training line #{example_id}")
        text = check_line(row.kind, text)
        if await _exists(session, row.kind, row.name, text, but=row.id):
            raise NluDataError(f"{text!r} is already an example of {row.name!r}")
        audit(session, actor, "nlu_example_edit", id=row.id, name=row.name, before=row.text, after=text)
        row.text, row.updated_by, row.updated_at = text, actor.staff_id, utcnow()
        return _info(row)


async def move(example_id: int, intent: str, actor: Actor) -> ExampleInfo:
    """Move an intent example to another (possibly new) intent."""
    intent = check_name("intent", intent)
    async with session_scope() as session:
        row = await session.get(NluExample, example_id)
        if row is None or row.kind != "intent":
            raise NluDataError(f"no intent example #{example_id}")
        if await _exists(session, "intent", intent, row.text, but=row.id):
            raise NluDataError(f"{row.text!r} is already an example of {intent!r}")
        audit(session, actor, "nlu_example_move", id=row.id, before=row.name, after=intent, text=row.text)
        if not await session.scalar(select(NluExample.id).where(NluExample.kind == "intent", NluExample.name == intent).limit(1)):
            row.position = int(await session.scalar(select(func.max(NluExample.position))) or 0) + 1  # new intent: at the end
        row.name, row.updated_by, row.updated_at = intent, actor.staff_id, utcnow()
        return _info(row)


async def remove(example_id: int, actor: Actor) -> None:
    async with session_scope() as session:
        row = await session.get(NluExample, example_id)
        if row is None:
            raise NluDataError(f"no training line #{example_id}")
        audit(session, actor, "nlu_example_delete", id=row.id, kind=row.kind, name=row.name, text=row.text)
        await session.delete(row)
