"""The tracker side of a handoff: the transcript agents read, agent replies, hand-back.

Everything that writes to a conversation takes its lock and appends with the length it read,
like a customer turn does, so an agent's message and a customer's message never interleave
badly and a `resume` can never be lost to a concurrent turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backend.services import notifications
from backend.services.handoff import HandoffInfo
from backend.services.notifications import Notification
from bot.agent import Agent
from bot.tracker import DialogueStateTracker, event


@dataclass(frozen=True)
class Line:
    """One line of the transcript: who ('customer', 'bot', 'agent', 'system') said what."""

    role: str
    text: str
    at: datetime
    intent: str | None = None
    confidence: float | None = None
    author: str | None = None


def _time(e: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(float(e.get("timestamp") or 0), UTC)


def transcript_lines(events: list[dict[str, Any]]) -> list[Line]:
    """The whole conversation from its Rasa events: customer turns with the intent and
    confidence the NLU gave them, bot and agent messages, pauses and resumes."""
    lines: list[Line] = []
    for e in events:
        kind = e.get("event")
        if kind == "user":
            intent = (e.get("parse_data") or {}).get("intent") or {}
            confidence = intent.get("confidence")
            lines.append(Line("customer", str(e.get("text") or ""), _time(e), intent.get("name"), float(confidence) if confidence is not None else None))
        elif kind == "bot":
            staff = (e.get("metadata") or {}).get("staff")
            text = str(e.get("text") or "")
            buttons = (e.get("data") or {}).get("buttons") or []
            if buttons:
                text += "\n" + " | ".join(f"[{b.get('title', '')}]" for b in buttons)
            lines.append(Line("agent" if staff else "bot", text, _time(e), author=staff))
        elif kind in ("pause", "resume"):
            lines.append(Line("system", kind, _time(e)))
    return lines


async def transcript(agent: Agent, conversation_id: str) -> list[Line]:
    return transcript_lines(await agent.tracker_store.retrieve(conversation_id))


def bot_event(text: str, response: str, staff: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"utter_action": response}
    if staff:
        metadata["staff"] = staff
    return event("bot", text=text, data={}, metadata=metadata)


async def _append(agent: Agent, conversation_id: str, new_events: list[dict[str, Any]], *, resume: bool = False) -> None:
    async with agent.lock_store.lock(conversation_id):
        stored = await agent.tracker_store.retrieve(conversation_id)
        extra = list(new_events)
        if resume:
            tracker = DialogueStateTracker(conversation_id, agent.domain.initial_slots(), stored)
            if tracker.paused:
                extra.insert(0, event("resume"))
        await agent.tracker_store.append(conversation_id, extra, len(stored))


async def take_over(agent: Agent, handoff: HandoffInfo) -> None:
    """An agent picked up a callback ticket: from now on the bot stays quiet in that chat."""
    async with agent.lock_store.lock(handoff.conversation_id):
        stored = await agent.tracker_store.retrieve(handoff.conversation_id)
        if not DialogueStateTracker(handoff.conversation_id, agent.domain.initial_slots(), stored).paused:
            await agent.tracker_store.append(handoff.conversation_id, [event("pause")], len(stored))


async def send_agent_message(agent: Agent, handoff: HandoffInfo, staff_name: str, text: str) -> None:
    """An agent's reply: delivered through the outbox, kept in the transcript."""
    await notifications.notify(
        Notification(handoff.chat, "agent_message", "utter_agent_message", {"text": text})
    )
    await _append(agent, handoff.conversation_id, [bot_event(text, "utter_agent_message", staff_name)])


async def end_handoff(agent: Agent, handoff: HandoffInfo, response: str) -> None:
    """Give the conversation back to the bot (Rasa `resume`) and tell the customer."""
    rendered = agent.domain.render(response, {"language": handoff.language}, handoff.channel)
    text = rendered[0].get("text", "") if rendered else ""
    await _append(agent, handoff.conversation_id, [bot_event(text, response)], resume=True)
    await notifications.notify(Notification(handoff.chat, "handoff_ended", response, {}, dedupe_key=f"handoff-end:{handoff.id}"))


async def announce(handoff: HandoffInfo, response: str, values: dict[str, Any]) -> None:
    """A message from the console to the customer that is not an agent's words (e.g. 'X joined')."""
    await notifications.notify(Notification(handoff.chat, "handoff", response, values))
