"""Conversation state as a list of Rasa event dicts, and the state those events add up to.

The event list is the truth; slots, active loop, paused flag and latest message are derived by
applying the events in order (rewinds and restarts included), exactly as Rasa does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bot.domain import REQUESTED_SLOT

ACTION_LISTEN = "action_listen"
# Actions that are bookkeeping, not dialogue: they do not take part in rule matching.
_SILENT_ACTIONS = {ACTION_LISTEN, "action_session_start", "action_extract_slots"}
_RESETS = ("restart", "session_started")  # events after which the state starts afresh


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A Rasa event dict with a timestamp, e.g. event('slot', name='x', value=1)."""
    return {"event": kind, "timestamp": time.time(), **fields}


@dataclass(frozen=True)
class Token:
    """One step of dialogue history as rules see it: an intent, an action, or a loop change.

    `loop_before` is the active loop just before this step; `loops_during` every loop that was
    active at some point while the step's events applied (an action may open and close a form)."""

    kind: str  # "intent" | "action" | "loop"
    value: str | None
    loop_before: str | None
    loops_during: frozenset[str | None]


class DialogueStateTracker:
    def __init__(self, sender_id: str, initial_slots: dict[str, Any], events: list[dict[str, Any]] | None = None) -> None:
        self.sender_id = sender_id
        self._initial_slots = dict(initial_slots)
        self.events: list[dict[str, Any]] = []
        self._applied: list[dict[str, Any]] = []
        # `tokens()` as of the first `_tokens_seen` events of `_tokens_of` (the policy asks for
        # them several times a turn; only events applied since are tokenised again).
        self._tokens: list[Token] = []
        self._tokens_loop: str | None = None
        self._tokens_of: list[dict[str, Any]] | None = None
        self._tokens_seen = 0
        self._reset_state()
        events = events or []
        # A restart or a session start wipes the state, so only the events from the latest one
        # need applying: a chat that has talked for months costs no more than today's session.
        start = next((i for i in range(len(events) - 1, -1, -1) if events[i].get("event") in _RESETS), 0)
        self.events = list(events[:start])
        for e in events[start:]:
            self.update(e)

    def _reset_state(self) -> None:
        self.slots: dict[str, Any] = dict(self._initial_slots)
        self.active_loop: str | None = None
        self.paused = False
        self.followup_action: str | None = None
        self.latest_message: dict[str, Any] = {}
        self.latest_action_name: str | None = None
        self.latest_input_channel: str | None = None

    # -- applying events -----------------------------------------------------------------------

    def update(self, e: dict[str, Any]) -> None:
        if e.get("timestamp") is None:
            e = {**e, "timestamp": time.time()}
        self.events.append(e)
        kind = e.get("event")
        if kind in _RESETS:
            self._applied = [e]
            self._reset_state()
            return
        if kind in ("rewind", "undo"):
            self._applied = _revert(self._applied, kind)
            self._replay()
            return
        self._applied.append(e)
        self._apply(e)

    def _replay(self) -> None:
        self._reset_state()
        for e in self._applied:
            self._apply(e)

    def _apply(self, e: dict[str, Any]) -> None:
        kind = e.get("event")
        if kind == "user":
            self.latest_message = {
                "text": e.get("text"),
                "intent": (e.get("parse_data") or {}).get("intent", {}),
                "entities": (e.get("parse_data") or {}).get("entities", []),
                "intent_ranking": (e.get("parse_data") or {}).get("intent_ranking", []),
                "message_id": e.get("message_id"),
                "metadata": e.get("metadata") or {},
            }
            self.latest_input_channel = e.get("input_channel")
        elif kind == "slot":
            self.slots[e["name"]] = e.get("value")
        elif kind == "action":
            self.latest_action_name = e.get("name")
            if e.get("name") == self.followup_action:
                self.followup_action = None
        elif kind == "active_loop":
            self.active_loop = e.get("name")
        elif kind == "followup":
            self.followup_action = e.get("name")
        elif kind == "reset_slots":
            self.slots = dict(self._initial_slots)
        elif kind == "pause":
            self.paused = True
        elif kind == "resume":
            self.paused = False

    # -- views ---------------------------------------------------------------------------------

    @property
    def latest_intent(self) -> str | None:
        return (self.latest_message.get("intent") or {}).get("name")

    @property
    def requested_slot(self) -> str | None:
        return self.slots.get(REQUESTED_SLOT)

    def last_event_time(self) -> float | None:
        return self.events[-1].get("timestamp") if self.events else None

    def has_session(self) -> bool:
        return any(e.get("event") == "session_started" for e in self.events)

    def events_after_latest_user(self) -> list[dict[str, Any]]:
        for index in range(len(self._applied) - 1, -1, -1):
            if self._applied[index].get("event") == "user":
                return self._applied[index + 1 :]
        return []

    def tokens(self) -> list[Token]:
        """History since the session start as rule steps; consecutive loop changes collapse.
        The list is the tracker's own (it grows as events apply): read it, do not change it."""
        if self._tokens_of is not self._applied:  # a restart or rewind replaced the history
            self._tokens, self._tokens_loop, self._tokens_of, self._tokens_seen = [], None, self._applied, 0
        tokens = self._tokens
        loop = self._tokens_loop
        for e in self._applied[self._tokens_seen :]:
            kind = e.get("event")
            if kind == "user":
                name = ((e.get("parse_data") or {}).get("intent") or {}).get("name")
                tokens.append(Token("intent", name, loop, frozenset({loop})))
            elif kind == "action" and e.get("name") not in _SILENT_ACTIONS:
                tokens.append(Token("action", e.get("name"), loop, frozenset({loop})))
            elif kind == "active_loop":
                new = e.get("name")
                if tokens and tokens[-1].kind == "loop":
                    last = tokens.pop()
                    tokens.append(Token("loop", new, last.loop_before, last.loops_during | {new}))
                else:
                    tokens.append(Token("loop", new, loop, frozenset({loop, new})))
                loop = new
        self._tokens_loop, self._tokens_seen = loop, len(self._applied)
        return tokens

    def current_state(self) -> dict[str, Any]:
        """The tracker as the action server protocol sends it (rasa_sdk `Tracker.from_dict`)."""
        return {
            "sender_id": self.sender_id,
            "slots": dict(self.slots),
            "latest_message": self.latest_message,
            "latest_event_time": self.last_event_time(),
            "followup_action": self.followup_action,
            "paused": self.paused,
            "events": list(self.events),
            "latest_input_channel": self.latest_input_channel,
            "active_loop": {"name": self.active_loop} if self.active_loop else {},
            "latest_action": {"action_name": self.latest_action_name},
            "latest_action_name": self.latest_action_name,
        }


def _revert(applied: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """`rewind` drops the latest user turn and what followed; `undo` the latest action."""
    wanted = "user" if kind == "rewind" else "action"
    for index in range(len(applied) - 1, -1, -1):
        e = applied[index]
        if e.get("event") == wanted and not (wanted == "action" and e.get("name") == ACTION_LISTEN):
            return applied[:index]
    return applied
