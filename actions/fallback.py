"""What the bot does when it did not understand: rephrase first, then offer the hotline."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

MISUNDERSTOOD = {"nlu_fallback", "out_of_scope"}


def misunderstandings_in_a_row(tracker: Tracker) -> int:
    count = 0
    for e in reversed(tracker.events):
        if e.get("event") == "user":
            intent = ((e.get("parse_data") or {}).get("intent") or {}).get("name")
            if intent not in MISUNDERSTOOD:
                break
            count += 1
    return count


class ActionFallback(Action):
    def name(self) -> str:
        return "action_fallback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        if misunderstandings_in_a_row(tracker) >= 2:
            dispatcher.utter_message(response="utter_offer_hotline")
        elif tracker.latest_message.get("intent", {}).get("name") == "out_of_scope":
            dispatcher.utter_message(response="utter_out_of_scope")
        else:
            dispatcher.utter_message(response="utter_default")
        return []
