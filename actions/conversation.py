"""Small facts about a conversation that several actions need."""

from __future__ import annotations

from rasa_sdk import Tracker

from backend.services.notifications import ChatRef


def chat_key(tracker: Tracker) -> tuple[str, str]:
    """(channel, conversation id): the key under which a chat is linked to customer codes."""
    return tracker.get_latest_input_channel() or "rest", tracker.sender_id


def language(tracker: Tracker) -> str:
    return "en" if tracker.get_slot("language") == "en" else "vi"


def chat_ref(tracker: Tracker) -> ChatRef:
    """Where to send this customer later notices (payment received, ticket moved, power back)."""
    channel, sender = chat_key(tracker)
    recipient = sender.split(":", 1)[1] if sender.startswith(f"{channel}:") else sender
    return ChatRef(channel, recipient, language(tracker))
