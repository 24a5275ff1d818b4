"""Rules and the policy that picks the next action (Rasa's RulePolicy and form-loop semantics).

A rule's steps become tokens (intent / action / active_loop); the tracker's history becomes
tokens too. A rule predicts its next action when the steps before it match the end of the
history and its conditions held where the match starts. The longest match wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config_files import ConfigFileError, read_yaml
from bot.domain import Domain
from bot.tracker import ACTION_LISTEN, DialogueStateTracker, Token

_ANY_LOOP = object()


@dataclass(frozen=True)
class Step:
    kind: str  # "intent" | "action" | "loop"
    values: frozenset[str | None]


@dataclass(frozen=True)
class Rule:
    name: str
    steps: tuple[Step, ...]
    slot_checks: tuple[tuple[str, Any], ...]  # slot_was_set steps, checked at prediction time
    condition_loop: Any  # _ANY_LOOP (no condition), None (no active loop) or a form name
    condition_slots: tuple[tuple[str, Any], ...]
    conversation_start: bool
    wait_for_user_input: bool

    @property
    def has_loop_condition(self) -> bool:
        return self.condition_loop is not _ANY_LOOP


def load_rules(path: str | Path, domain: Domain) -> list[Rule]:
    path = Path(path)
    doc = read_yaml(path)
    items = doc.get("rules") or []
    if not isinstance(items, list):
        raise ConfigFileError(path, "rules", "must be a list")
    return [_parse_rule(item, index, path, domain) for index, item in enumerate(items)]


def _slot_pairs(value: Any, path: Path, key: str) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            pairs.extend(item.items())
        elif isinstance(item, str):
            pairs.append((item, _ANY_LOOP))  # "slot_was_set: - name" means "has any value"
        else:
            raise ConfigFileError(path, key, "slot_was_set takes slot names or name: value pairs")
    return pairs


def _parse_rule(item: Any, index: int, path: Path, domain: Domain) -> Rule:
    if not isinstance(item, dict) or "rule" not in item:
        raise ConfigFileError(path, f"rules[{index}]", "every rule needs a 'rule' name and 'steps'")
    name = str(item["rule"])
    key = f"rules[{index}] ({name})"
    steps: list[Step] = []
    slot_checks: list[tuple[str, Any]] = []
    raw_steps = item.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ConfigFileError(path, f"{key}.steps", "must be a non-empty list")
    for i, raw in enumerate(raw_steps):
        skey = f"{key}.steps[{i}]"
        if not isinstance(raw, dict):
            raise ConfigFileError(path, skey, "a step is a mapping like 'intent: greet' or 'action: utter_greet'")
        if "intent" in raw:
            intent = raw["intent"]
            if intent not in domain.intents and intent != "nlu_fallback":
                raise ConfigFileError(path, skey, f"intent {intent!r} is not in the domain")
            steps.append(Step("intent", frozenset({intent})))
        elif "or" in raw:
            intents = [s.get("intent") for s in raw["or"] if isinstance(s, dict)]
            for intent in intents:
                if intent not in domain.intents and intent != "nlu_fallback":
                    raise ConfigFileError(path, skey, f"intent {intent!r} is not in the domain")
            steps.append(Step("intent", frozenset(intents)))
        elif "action" in raw:
            action = raw["action"]
            if action == ACTION_LISTEN:
                continue
            if not domain.knows_action(action):
                raise ConfigFileError(path, skey, f"action {action!r} is not in the domain")
            steps.append(Step("action", frozenset({action})))
        elif "active_loop" in raw:
            loop = raw["active_loop"]
            if loop is not None and loop not in domain.forms:
                raise ConfigFileError(path, skey, f"active_loop {loop!r} is not a form in the domain")
            steps.append(Step("loop", frozenset({loop})))
        elif "slot_was_set" in raw:
            slot_checks.extend(_slot_pairs(raw["slot_was_set"], path, skey))
        else:
            raise ConfigFileError(path, skey, f"unknown step {sorted(raw)}")
    condition_loop: Any = _ANY_LOOP
    condition_slots: list[tuple[str, Any]] = []
    for cond in item.get("condition") or []:
        if not isinstance(cond, dict):
            raise ConfigFileError(path, f"{key}.condition", "conditions are mappings")
        if "active_loop" in cond:
            condition_loop = cond["active_loop"]
            if condition_loop is not None and condition_loop not in domain.forms:
                raise ConfigFileError(path, f"{key}.condition", f"active_loop {condition_loop!r} is not a form")
        elif "slot_was_set" in cond:
            condition_slots.extend(_slot_pairs(cond["slot_was_set"], path, f"{key}.condition"))
    for slot, _ in slot_checks + condition_slots:
        if slot not in domain.slots:
            raise ConfigFileError(path, key, f"slot {slot!r} is not in the domain")
    if not any(s.kind == "action" for s in steps):
        raise ConfigFileError(path, f"{key}.steps", "a rule needs at least one action")
    return Rule(
        name=name,
        steps=tuple(steps),
        slot_checks=tuple(slot_checks),
        condition_loop=condition_loop,
        condition_slots=tuple(condition_slots),
        conversation_start=bool(item.get("conversation_start", False)),
        wait_for_user_input=bool(item.get("wait_for_user_input", True)),
    )


def _slot_matches(actual: Any, expected: Any) -> bool:
    return actual is not None if expected is _ANY_LOOP else actual == expected


@dataclass(frozen=True)
class _Match:
    rule: Rule
    length: int
    action: str | None  # None: the rule is complete


class RulePolicy:
    """Predicts the next action from rules, active forms and the core fallback."""

    def __init__(self, rules: list[Rule], domain: Domain, core_fallback_action: str = "action_default_fallback") -> None:
        self.rules = rules
        self.domain = domain
        self.core_fallback_action = core_fallback_action
        # Every (rule, prefix length) that could match, filed under the step its prefix ends
        # with: a prediction only looks at those ending in the history's last step, in rule
        # order (ties between equally good matches go to the earlier rule, as before).
        self._by_last_step: dict[tuple[str, str | None], list[tuple[Rule, int]]] = {}
        for rule in rules:
            steps = rule.steps
            for k in range(1, len(steps) + 1):
                if k < len(steps) and steps[k].kind != "action":
                    continue
                last = steps[k - 1]
                for value in last.values:
                    self._by_last_step.setdefault((last.kind, value), []).append((rule, k))

    def _matches(self, tokens: list[Token], tracker: DialogueStateTracker, loop_rules: bool | None) -> list[_Match]:
        if not tokens:
            return []
        found: list[_Match] = []
        slots = tracker.slots
        last = tokens[-1]
        for rule, k in self._by_last_step.get((last.kind, last.value), ()):
            if loop_rules is not None and rule.has_loop_condition != loop_rules:
                continue
            if k > len(tokens) or (rule.conversation_start and k != len(tokens)):
                continue
            steps = rule.steps
            tail = tokens[len(tokens) - k :]
            if not all(t.kind == s.kind and t.value in s.values for t, s in zip(tail, steps, strict=False)):
                continue
            if any(not _slot_matches(slots.get(s), v) for s, v in rule.slot_checks + rule.condition_slots):
                continue
            if rule.has_loop_condition and not _loop_condition_holds(rule.condition_loop, tail):
                continue
            if k == len(steps):
                if rule.wait_for_user_input:
                    found.append(_Match(rule, k, None))
            else:
                found.append(_Match(rule, k, next(iter(steps[k].values))))
        return found

    @staticmethod
    def _best(matches: list[_Match]) -> _Match | None:
        if not matches:
            return None
        # Longest matched history first; among equals, rules with conditions are more specific.
        return max(
            matches,
            key=lambda m: (m.length, m.action is not None, m.rule.has_loop_condition, len(m.rule.condition_slots)),
        )

    def predict(self, tracker: DialogueStateTracker, rejected_loop: bool = False) -> str:
        """Name of the next action. `rejected_loop`: the active form could not use the message."""
        if tracker.followup_action:
            return tracker.followup_action
        tokens = tracker.tokens()
        if not tokens:
            return ACTION_LISTEN
        loop = tracker.active_loop
        last = tokens[-1]
        if last.kind == "intent":
            if loop and not rejected_loop:
                unhappy = self._best([m for m in self._matches(tokens, tracker, True) if m.action])
                return unhappy.action if unhappy and unhappy.action else loop
            best = self._best([m for m in self._matches(tokens, tracker, None) if m.action])
            return best.action if best and best.action else self.core_fallback_action
        best = self._best(self._matches(tokens, tracker, None))
        if best and best.action:
            return best.action
        last_action = next((t.value for t in reversed(tokens) if t.kind == "action"), None)
        if loop and last_action != loop:
            return loop  # back to the form after an interruption (it asks its question again)
        return ACTION_LISTEN

    def generic_rule_matches(self, tracker: DialogueStateTracker) -> bool:
        """Would a rule without a loop condition handle the latest message? (form rejection)"""
        return any(m.action for m in self._matches(tracker.tokens(), tracker, False))


def _loop_condition_holds(condition_loop: str | None, tail: list[Token]) -> bool:
    first = tail[0]
    if first.loop_before == condition_loop:
        return True
    # A form that opened and closed within the action that starts the match (all slots prefilled).
    return len(tail) > 1 and first.kind == "action" and first.value == condition_loop and condition_loop in tail[1].loops_during

