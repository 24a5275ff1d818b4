"""Small facts about a conversation that several actions need."""

from __future__ import annotations

from rasa_sdk import Tracker


def chat_key(tracker: Tracker) -> tuple[str, str]:
    """(channel, conversation id): the key under which a chat is linked to customer codes."""
    return tracker.get_latest_input_channel() or "rest", tracker.sender_id


def language(tracker: Tracker) -> str:
    return "en" if tracker.get_slot("language") == "en" else "vi"
