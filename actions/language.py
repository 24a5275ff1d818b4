"""Keeps the `language` slot on the language the customer writes in (vi or en)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from nlu.language import detect_language


class ActionDetectLanguage(Action):
    def name(self) -> str:
        return "action_detect_language"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        text = tracker.latest_message.get("text") or ""
        if text.startswith("/"):
            return []  # a button press says nothing about the language
        language = detect_language(text)
        if language and language != tracker.get_slot("language"):
            return [SlotSet("language", language)]
        return []
