"""Actions of the sample domain used by the runtime tests (a tiny shirt shop)."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher


class ValidateOrderForm(FormValidationAction):
    def name(self) -> str:
        return "validate_order_form"

    def validate_size(self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> dict:
        if str(value).upper() in {"S", "M", "L"}:
            return {"size": str(value).upper()}
        dispatcher.utter_message(response="utter_bad_size", size=value)
        return {"size": None}


class ActionSubmitOrder(Action):
    def name(self) -> str:
        return "action_submit_order"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict) -> list:
        dispatcher.utter_message(text=f"Ordered {tracker.get_slot('size')} for {tracker.get_slot('name')}.")
        return []
