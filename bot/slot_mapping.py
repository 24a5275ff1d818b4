"""`action_extract_slots`: fills slots from the latest message by the domain's slot mappings.

Rasa 3.x semantics: from_entity / from_text / from_intent / from_trigger_intent / custom, with
`intent` / `not_intent` filters and `conditions` on the active loop and requested slot.
"""

from __future__ import annotations

from typing import Any

from bot.domain import Domain, Slot
from bot.tracker import DialogueStateTracker


def _as_set(value: Any) -> set[str]:
    if value is None:
        return set()
    return {str(v) for v in value} if isinstance(value, list) else {str(value)}


def _mapping_applies(mapping: dict[str, Any], tracker: DialogueStateTracker) -> bool:
    intent = tracker.latest_intent
    wanted, unwanted = _as_set(mapping.get("intent")), _as_set(mapping.get("not_intent"))
    if wanted and intent not in wanted:
        return False
    if intent in unwanted:
        return False
    conditions = mapping.get("conditions")
    if not conditions:
        return True
    return any(
        c.get("active_loop") == tracker.active_loop
        and ("requested_slot" not in c or c.get("requested_slot") == tracker.requested_slot)
        for c in conditions
    )


def _value_from(mapping: dict[str, Any], slot: Slot, tracker: DialogueStateTracker) -> Any:
    kind = mapping["type"]
    if kind == "from_entity":
        values = [
            e.get("value")
            for e in tracker.latest_message.get("entities") or []
            if e.get("entity") == mapping["entity"]
            and ("role" not in mapping or e.get("role") == mapping["role"])
            and ("group" not in mapping or e.get("group") == mapping["group"])
        ]
        if not values:
            return None
        return values if slot.type == "list" else values[0]
    if kind == "from_text":
        return tracker.latest_message.get("text")
    if kind == "from_intent":
        return mapping.get("value")
    if kind == "from_trigger_intent":
        return mapping.get("value") if tracker.active_loop is None else None
    return None


def custom_mapping_actions(domain: Domain, tracker: DialogueStateTracker) -> list[str]:
    """Custom actions named by `type: custom` mappings that apply to this message, in order."""
    names: list[str] = []
    for slot in domain.slots.values():
        for mapping in slot.mappings:
            action = mapping.get("action")
            if mapping["type"] == "custom" and action and action not in names and _mapping_applies(mapping, tracker):
                names.append(action)
    return names


def extract_slots(domain: Domain, tracker: DialogueStateTracker) -> dict[str, Any]:
    """New slot values from the latest message (only values that change the slot)."""
    found: dict[str, Any] = {}
    for slot in domain.slots.values():
        for mapping in slot.mappings:
            if mapping["type"] == "custom" or not _mapping_applies(mapping, tracker):
                continue
            value = _value_from(mapping, slot, tracker)
            if value is not None:
                if value != tracker.slots.get(slot.name):
                    found[slot.name] = value
                break
    return found
