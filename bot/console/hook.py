"""The agent's handoff hook: what happens to a turn of a conversation handed to a person.

When a turn pauses the conversation the queue changed, so consoles are told. A message to a
paused conversation is forwarded to the consoles, never answered by the bot, unless the
customer asks to go back to the bot ("thôi, để bot trả lời", or the button): then the handoff
is cancelled, the conversation resumes, and the bot says it is back.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from backend.services import handoff
from backend.services.handoff import HandoffInfo
from bot.agent import Agent
from bot.channels.base import UserMessage
from bot.console.bus import ConsoleBus
from bot.console.conversation import bot_event
from bot.tracker import DialogueStateTracker, event

# Phrases (without diacritics) that mean "let the bot answer me again".
CANCEL_PHRASES = ("de bot tra loi", "bot tra loi", "back to the bot", "let the bot answer")


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.lower().replace("đ", "d"))
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


def wants_the_bot(text: str, intent: str | None, handoff_status: str | None) -> bool:
    """A cancel phrase always counts; a plain 'no' (deny, also the queue message's button)
    only while still waiting in the queue, since to an agent it is just an answer."""
    plain = _plain(text)
    if any(phrase in plain for phrase in CANCEL_PHRASES):
        return True
    return intent == "deny" and handoff_status == "waiting"


def message_event(info: HandoffInfo, role: str, text: str, **extra: Any) -> dict[str, Any]:
    """The console event for a line of a handoff's transcript (access is checked per client
    from `status` and `assigned_to`)."""
    return {
        "type": "message", "handoff_id": info.id, "status": info.status, "assigned_to": info.assigned_to,
        "role": role, "text": text, **extra,
    }


class ConsoleHook:
    """Implements bot.agent.HandoffHook for the web console."""

    def __init__(self, agent: Agent, bus: ConsoleBus) -> None:
        self.agent = agent
        self.bus = bus

    async def paused(self, tracker: DialogueStateTracker) -> None:
        await self.bus.publish({"type": "queue"})

    async def paused_message(self, tracker: DialogueStateTracker, message: UserMessage) -> list[dict[str, Any]]:
        info = await handoff.open_handoff(tracker.sender_id)
        intent = tracker.latest_intent
        if info is None or wants_the_bot(message.text, intent, info.status):
            if info is not None:
                ended = await handoff.cancel_by_customer(tracker.sender_id)
                await self.bus.publish(message_event(ended or info, "system", "customer_left"))
                await self.bus.publish({"type": "queue"})
            # No open handoff behind a paused tracker would leave the customer unanswered
            # for ever; resuming is the safe way out.
            return self._resume(tracker, message.channel)
        await handoff.record_customer_message(info.id, message.text)
        confidence = (tracker.latest_message.get("intent") or {}).get("confidence")
        await self.bus.publish(message_event(info, "customer", message.text, intent=intent, confidence=confidence))
        return []

    def _resume(self, tracker: DialogueStateTracker, channel: str) -> list[dict[str, Any]]:
        messages = self.agent.domain.render("utter_handoff_cancelled", tracker.slots, channel)
        tracker.update(event("resume"))
        tracker.update(event("action", name="utter_handoff_cancelled", policy="HandoffHook", confidence=1.0))
        for m in messages:
            tracker.update(bot_event(m.get("text", ""), "utter_handoff_cancelled"))
        tracker.update(event("action", name="action_listen", policy="HandoffHook", confidence=1.0))
        return messages
