"""The domain: intents, entities, slots with mappings, forms, responses, actions, session config.

Loaded from Rasa 3.x `domain.yml` and validated at startup; `render` turns a response name into
bot messages, choosing the variation whose `condition` matches the slots (e.g. language: en).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config_files import ConfigFileError, read_yaml

DEFAULT_ACTIONS = frozenset(
    {
        "action_listen",
        "action_restart",
        "action_session_start",
        "action_default_fallback",
        "action_deactivate_loop",
        "action_extract_slots",
    }
)
SLOT_TYPES = {"text", "bool", "float", "categorical", "list", "any"}
MAPPING_TYPES = {"from_entity", "from_text", "from_intent", "from_trigger_intent", "custom"}
REQUESTED_SLOT = "requested_slot"


@dataclass(frozen=True)
class Slot:
    name: str
    type: str
    initial_value: Any
    mappings: tuple[dict[str, Any], ...]
    values: tuple[Any, ...] = ()


@dataclass
class Domain:
    path: Path
    intents: list[str]
    entities: list[str]
    slots: dict[str, Slot]
    forms: dict[str, list[str]]
    responses: dict[str, list[dict[str, Any]]]
    actions: list[str]
    session_expiration_minutes: float = 60.0
    carry_over_slots: bool = True
    raw: dict[str, Any] = field(default_factory=dict)
    # Values every response may use, e.g. {hotline}; set from settings at startup.
    template_defaults: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Domain:
        path = Path(path)
        doc = read_yaml(path)
        intents = [_name(i) for i in _list(doc, "intents", path)]
        entities = [_name(e) for e in _list(doc, "entities", path)]
        slots = {name: _slot(name, spec, path) for name, spec in _mapping(doc, "slots", path).items()}
        slots.setdefault(REQUESTED_SLOT, Slot(REQUESTED_SLOT, "any", None, ()))
        forms = {}
        for name, spec in _mapping(doc, "forms", path).items():
            required = (spec or {}).get("required_slots")
            if not isinstance(required, list) or not required:
                raise ConfigFileError(path, f"forms.{name}.required_slots", "must be a non-empty list of slot names")
            forms[name] = [str(s) for s in required]
        responses = {}
        for name, variations in _mapping(doc, "responses", path).items():
            if not isinstance(variations, list) or not all(isinstance(v, dict) for v in variations):
                raise ConfigFileError(path, f"responses.{name}", "must be a list of variations (mappings)")
            responses[name] = variations
        actions = [str(a) for a in _list(doc, "actions", path)]
        session = doc.get("session_config") or {}
        domain = cls(
            path=path,
            intents=intents,
            entities=entities,
            slots=slots,
            forms=forms,
            responses=responses,
            actions=actions,
            session_expiration_minutes=float(session.get("session_expiration_time", 60)),
            carry_over_slots=bool(session.get("carry_over_slots_to_new_session", True)),
            raw=doc,
        )
        domain._validate()
        return domain

    def _validate(self) -> None:
        for form, required in self.forms.items():
            for slot in required:
                if slot not in self.slots:
                    raise ConfigFileError(self.path, f"forms.{form}.required_slots", f"unknown slot {slot!r}")
        for slot in self.slots.values():
            for i, mapping in enumerate(slot.mappings):
                key = f"slots.{slot.name}.mappings[{i}]"
                if mapping.get("type") not in MAPPING_TYPES:
                    raise ConfigFileError(self.path, key, f"type must be one of {sorted(MAPPING_TYPES)}")
                if mapping["type"] == "from_entity" and mapping.get("entity") not in self.entities:
                    raise ConfigFileError(self.path, key, f"entity {mapping.get('entity')!r} is not in 'entities'")
                for intent in _as_list(mapping.get("intent")) + _as_list(mapping.get("not_intent")):
                    if intent not in self.intents:
                        raise ConfigFileError(self.path, key, f"unknown intent {intent!r}")
                for cond in mapping.get("conditions") or []:
                    loop = cond.get("active_loop")
                    if loop is not None and loop not in self.forms:
                        raise ConfigFileError(self.path, f"{key}.conditions", f"unknown form {loop!r}")
                if mapping["type"] == "custom" and mapping.get("action") and mapping["action"] not in self.actions:
                    raise ConfigFileError(self.path, key, f"action {mapping['action']!r} is not in 'actions'")
        for name in self.responses:
            if not name.startswith("utter_"):
                raise ConfigFileError(self.path, f"responses.{name}", "response names start with 'utter_'")

    # -- queries -------------------------------------------------------------------------------

    def knows_action(self, name: str) -> bool:
        return name in DEFAULT_ACTIONS or name in self.responses or name in self.forms or name in self.actions

    def initial_slots(self) -> dict[str, Any]:
        return {name: slot.initial_value for name, slot in self.slots.items()}

    def as_dict(self) -> dict[str, Any]:
        """The domain as rasa_sdk actions expect it (forms with required_slots, slots...)."""
        return self.raw

    # -- responses -----------------------------------------------------------------------------

    def render(
        self, response: str, slots: dict[str, Any], channel: str | None = None, values: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Pick a variation of `response` and fill `{placeholders}` from values and slots; [] if unknown."""
        variations = self.responses.get(response)
        if not variations:
            return []
        usable = [v for v in variations if not v.get("channel") or v.get("channel") == channel]
        conditioned = [v for v in usable if v.get("condition") and _conditions_hold(v["condition"], slots)]
        pool = conditioned or [v for v in usable if not v.get("condition")]
        if not pool:
            return []
        variation = random.choice(pool)
        values = {**self.template_defaults, **{k: v for k, v in slots.items() if v is not None}, **(values or {})}
        message: dict[str, Any] = {"response": response}
        if "text" in variation:
            message["text"] = _fill(str(variation["text"]), values)
        if variation.get("buttons"):
            message["buttons"] = [
                {"title": _fill(str(b.get("title", "")), values), "payload": _fill(str(b.get("payload", "")), values)}
                for b in variation["buttons"]
            ]
        for key in ("image", "attachment"):
            if variation.get(key):
                message[key] = _fill(str(variation[key]), values)
        if variation.get("custom"):
            message["custom"] = variation["custom"]
        return [message]


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(template: str, values: dict[str, Any]) -> str:
    """Rasa-style `{slot}` templating; unknown placeholders stay as they are."""
    try:
        return string.Formatter().vformat(template, (), _KeepMissing(values))
    except (ValueError, IndexError):
        return template


def _conditions_hold(conditions: list[dict[str, Any]], slots: dict[str, Any]) -> bool:
    return all(c.get("type", "slot") == "slot" and slots.get(c.get("name")) == c.get("value") for c in conditions)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _name(item: Any) -> str:
    """Intents/entities may be plain names or one-key mappings with options."""
    if isinstance(item, dict) and len(item) == 1:
        return str(next(iter(item)))
    return str(item)


def _list(doc: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise ConfigFileError(path, key, "must be a list")
    return value


def _mapping(doc: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigFileError(path, key, "must be a mapping")
    return value


def _slot(name: str, spec: Any, path: Path) -> Slot:
    if not isinstance(spec, dict):
        raise ConfigFileError(path, f"slots.{name}", "must be a mapping with a 'type'")
    slot_type = spec.get("type")
    if slot_type not in SLOT_TYPES:
        raise ConfigFileError(path, f"slots.{name}.type", f"must be one of {sorted(SLOT_TYPES)}, got {slot_type!r}")
    mappings = spec.get("mappings") or []
    if not isinstance(mappings, list) or not all(isinstance(m, dict) for m in mappings):
        raise ConfigFileError(path, f"slots.{name}.mappings", "must be a list of mappings")
    return Slot(name, slot_type, spec.get("initial_value"), tuple(mappings), tuple(spec.get("values") or ()))
