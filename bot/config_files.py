"""Reading the project's YAML files (domain, rules, config, endpoints, credentials).

A broken file stops startup with a message that names the file and the key. `${VAR}` and
`${VAR:-default}` are replaced from the environment, Rasa style.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigFileError(ValueError):
    """A project file is missing or malformed; the message names the file and the key."""

    def __init__(self, path: str | Path, key: str, problem: str) -> None:
        self.path, self.key, self.problem = str(path), key, problem
        location = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(location + problem)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping; a missing file or bad YAML raises ConfigFileError with the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(path, "", f"cannot read file ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ConfigFileError(path, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigFileError(path, "", "the file must be a YAML mapping at the top level")
    return doc


def interpolate_env(value: Any, path: str | Path, key: str = "") -> Any:
    """Replace ${VAR} / ${VAR:-default} in every string of a parsed YAML document."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, path, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, path, f"{key}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigFileError(path, key, f"environment variable {name} is not set")

    replaced = _ENV_RE.sub(substitute, value)
    return None if replaced == "" and _ENV_RE.fullmatch(value) else replaced


def read_yaml_with_env(path: str | Path) -> dict[str, Any]:
    return interpolate_env(read_yaml(path), path)
