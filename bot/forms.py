"""The form loop (Rasa's FormAction): activate, validate candidates, ask the next slot, finish.

Validation runs the domain's `validate_<form>` action (a rasa_sdk FormValidationAction) with
the candidate SlotSet events appended to the tracker, exactly as Rasa sends them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.action_runner import ActionResult
from bot.domain import REQUESTED_SLOT, Domain
from bot.tracker import DialogueStateTracker, event

RunCustom = Callable[[str, dict[str, Any]], Awaitable[ActionResult]]


@dataclass
class FormOutcome:
    events: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    rejected: bool = False


def _ran_since_user_message(tracker: DialogueStateTracker) -> bool:
    return any(
        e.get("event") == "action" and e.get("name") != "action_extract_slots" for e in tracker.events_after_latest_user()
    )


async def run_form(
    form: str,
    tracker: DialogueStateTracker,
    domain: Domain,
    run_custom: RunCustom,
    other_rule_applies: Callable[[], bool],
) -> FormOutcome:
    required = domain.forms[form]
    outcome = FormOutcome()
    activating = tracker.active_loop != form
    fresh_message = not _ran_since_user_message(tracker)
    if activating:
        outcome.events.append(event("active_loop", name=form))

    slot_events: list[dict[str, Any]] = []
    if activating or fresh_message:
        candidates: dict[str, Any] = {}
        if fresh_message:
            for e in tracker.events_after_latest_user():
                if e.get("event") == "slot" and e["name"] in required:
                    candidates[e["name"]] = e.get("value")
        if activating:  # slots filled before the form started are validated too
            for name in required:
                if tracker.slots.get(name) is not None:
                    candidates.setdefault(name, tracker.slots[name])
        requested = tracker.requested_slot
        if not activating and requested and requested not in candidates and other_rule_applies():
            return FormOutcome(rejected=True)
        slot_events = [event("slot", name=k, value=v) for k, v in candidates.items()]
        validator = f"validate_{form}"
        if validator in domain.actions:
            state = tracker.current_state()
            state["events"] = state["events"] + outcome.events + slot_events
            state["slots"].update(candidates)
            state["active_loop"] = {"name": form}
            result = await run_custom(validator, state)
            slot_events = result.events
            outcome.responses.extend(result.responses)
    outcome.events.extend(slot_events)

    slots = dict(tracker.slots)
    explicit_next: Any = ...
    for e in slot_events:
        if e.get("event") == "slot":
            if e["name"] == REQUESTED_SLOT:
                explicit_next = e.get("value")
            else:
                slots[e["name"]] = e.get("value")
    if explicit_next is ... and not (activating or fresh_message) and tracker.requested_slot:
        # Back after an interruption: ask the same question again (the validation action, which
        # may narrow the required slots, only runs on a fresh message).
        explicit_next = tracker.requested_slot
    if explicit_next is ...:
        explicit_next = next((s for s in required if slots.get(s) is None), None)
    if explicit_next is not None:
        outcome.events.append(event("slot", name=REQUESTED_SLOT, value=explicit_next))
        outcome.responses.extend(await _ask(form, explicit_next, tracker, slots, domain, run_custom))
    else:
        outcome.events += [event("slot", name=REQUESTED_SLOT, value=None), event("active_loop", name=None)]
    return outcome


async def _ask(
    form: str, slot: str, tracker: DialogueStateTracker, slots: dict[str, Any], domain: Domain, run_custom: RunCustom
) -> list[dict[str, Any]]:
    for response in (f"utter_ask_{form}_{slot}", f"utter_ask_{slot}"):
        if response in domain.responses:
            return [{"response": response}]
    for action in (f"action_ask_{form}_{slot}", f"action_ask_{slot}"):
        if action in domain.actions:
            state = tracker.current_state()
            state["slots"] = dict(slots) | {REQUESTED_SLOT: slot}
            return (await run_custom(action, state)).responses
    return []
