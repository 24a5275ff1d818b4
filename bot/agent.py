"""The dialogue runtime: one customer message in, the bot's replies out.

Per message: take the conversation lock, load the tracker, start a session if it expired,
parse, extract slots, then let the policy pick actions until `action_listen`, record every
event and save. A paused conversation (handed to a human) stores the message and stays quiet.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.services.notifications import OutboxItem
from backend.services.privacy import erases_conversation
from bot.action_runner import ActionError, ActionRejected, ActionResult, ActionRunner
from bot.channels.base import UserMessage
from bot.domain import REQUESTED_SLOT, Domain
from bot.forms import run_form
from bot.metrics import TurnScope, observe_parse
from bot.nlu_service import NLUService
from bot.resilience import failure_response, recorded_replies
from bot.rules import RulePolicy
from bot.slot_mapping import custom_mapping_actions, extract_slots
from bot.stores import LockStore, StaleTrackerError, TrackerStore
from bot.tracker import ACTION_LISTEN, DialogueStateTracker, event

log = logging.getLogger(__name__)
MAX_ACTIONS_PER_TURN = 10
TURN_ATTEMPTS = 3


@dataclass
class _Outcome:
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    rejected: bool = False


class HandoffHook(Protocol):
    """What the human-handoff console needs from a turn (see bot/console/hook.py). Both run
    under the conversation lock; they may add events (e.g. `resume`) to the tracker."""

    async def paused(self, tracker: DialogueStateTracker) -> None:
        """This turn paused the conversation (it was escalated to a person)."""

    async def paused_message(self, tracker: DialogueStateTracker, message: UserMessage) -> list[dict[str, Any]]:
        """A message to a paused conversation: forward it to the agents, or let the customer go
        back to the bot; returns the replies (none unless the customer went back)."""


class InboxHook(Protocol):
    """Collects messages the bot may have misunderstood for the NLU inbox (bot/nlu_admin.py)."""

    async def after_turn(self, message: UserMessage, parse_data: dict[str, Any], *, escalated: bool, answering_form: bool) -> None:
        """Called after every turn of a conversation the bot (not a person) handles."""


class Agent:
    def __init__(
        self,
        domain: Domain,
        policy: RulePolicy,
        nlu: NLUService,
        actions: ActionRunner,
        tracker_store: TrackerStore,
        lock_store: LockStore,
    ) -> None:
        self.domain = domain
        self.policy = policy
        self.nlu = nlu
        self.actions = actions
        self.tracker_store = tracker_store
        self.lock_store = lock_store
        self.handoff: HandoffHook | None = None  # set by the console when the app starts
        self.inbox: InboxHook | None = None  # set by the NLU admin when the app starts

    # -- the turn --------------------------------------------------------------------------------

    async def handle_message(self, message: UserMessage) -> list[dict[str, Any]]:
        """Process one message in order within its conversation; returns the bot's replies.

        A turn whose write the tracker store refused (the conversation moved on: this worker
        stalled past its lock's lifetime and another one took a turn) is run again on the new
        history, so the message is neither lost nor interleaved with the other turn."""
        with TurnScope(message.conversation_id, message.channel):  # metrics, and log records name the chat
            if not message.text.strip():
                return await self._reprompt(message.conversation_id, message.channel)
            for _ in range(TURN_ATTEMPTS - 1):
                try:
                    return await self._turn(message)
                except StaleTrackerError:
                    log.warning("conversation %s: changed during the turn (lock lapsed); running it again", message.conversation_id)
            return await self._turn(message)

    async def _turn(self, message: UserMessage) -> list[dict[str, Any]]:
        conversation = message.conversation_id
        async with self.lock_store.lock(conversation):
            stored = await self.tracker_store.retrieve(conversation)
            replayed = recorded_replies(stored, message.channel, message.message_id)
            if replayed is not None:  # a resend of a message already answered
                return replayed
            tracker = DialogueStateTracker(conversation, self.domain.initial_slots(), stored)
            if self._session_expired(tracker) and not tracker.paused:  # a person has it: no reset
                self._start_session(tracker)
            answering_form, was_paused = tracker.active_loop is not None, tracker.paused
            parse_data = self.nlu.parse(message.text)
            observe_parse(parse_data, message.text)
            tracker.update(
                event(
                    "user",
                    text=message.text,
                    parse_data=parse_data,
                    input_channel=message.channel,
                    message_id=message.message_id,
                    metadata=message.metadata,
                )
            )
            messages: list[dict[str, Any]] = []
            if not tracker.paused:
                await self._extract_slots(tracker, messages, message.channel)
                await self._run_actions(tracker, messages, message.channel)
                if tracker.paused and self.handoff is not None:
                    await self.handoff.paused(tracker)
            elif self.handoff is not None:
                messages += await self.handoff.paused_message(tracker, message)
            new_events = tracker.events[len(stored) :]
            if erases_conversation(new_events):  # the customer had their data deleted: forget it all
                await self.tracker_store.delete(conversation)
            else:
                await self.tracker_store.append(conversation, new_events, len(stored))
        if self.inbox is not None and not was_paused:  # after the lock: the next turn need not wait
            escalated = tracker.paused and parse_data["intent"].get("name") != "talk_to_human"
            await self.inbox.after_turn(message, parse_data, escalated=escalated, answering_form=answering_form)
        return messages

    async def _reprompt(self, conversation: str, channel: str) -> list[dict[str, Any]]:
        """An empty message is not a turn: nothing is stored, the customer is asked again."""
        tracker = DialogueStateTracker(conversation, self.domain.initial_slots(), await self.tracker_store.retrieve(conversation))
        if tracker.paused:
            return []
        return self.domain.render("utter_empty_message", tracker.slots, channel)

    async def trigger(self, conversation: str, intent: str, channel: str = "rest") -> list[dict[str, Any]]:
        """Run the bot as if the customer had pressed a button for `intent` (e.g. on /start)."""
        return await self.handle_message(UserMessage(conversation, f"/{intent}", channel))

    def render_notification(self, item: OutboxItem) -> list[dict[str, Any]]:
        """An outbox message in the customer's language, as bot messages."""
        payload = item.payload
        if isinstance(payload.get("message"), dict):  # a reply rendered during the turn (channels)
            return [dict(payload["message"])]
        if payload.get("response"):
            return self.domain.render(payload["response"], {"language": item.language}, item.channel, payload.get("values") or {})
        return [{"text": str(payload.get("text", ""))}] if payload.get("text") else []

    def _session_expired(self, tracker: DialogueStateTracker) -> bool:
        if not tracker.has_session():
            return True
        last = tracker.last_event_time()
        minutes = self.domain.session_expiration_minutes
        return bool(minutes > 0 and last and time.time() - last > minutes * 60)

    def _start_session(self, tracker: DialogueStateTracker) -> None:
        carried = {}
        if self.domain.carry_over_slots:
            initial = self.domain.initial_slots()
            carried = {k: v for k, v in tracker.slots.items() if k != REQUESTED_SLOT and v != initial.get(k)}
        tracker.update(event("action", name="action_session_start", policy=None, confidence=None))
        tracker.update(event("session_started"))
        for name, value in carried.items():
            tracker.update(event("slot", name=name, value=value))
        tracker.update(event("action", name=ACTION_LISTEN, policy=None, confidence=None))

    async def _extract_slots(self, tracker: DialogueStateTracker, messages: list[dict[str, Any]], channel: str) -> None:
        found = extract_slots(self.domain, tracker)
        slot_events = [event("slot", name=k, value=v) for k, v in found.items()]
        custom_events: list[dict[str, Any]] = []
        for action in custom_mapping_actions(self.domain, tracker):
            outcome = await self._run_custom(action, tracker, channel)
            custom_events += [e for e in outcome.events if e.get("event") == "slot"]
            messages += outcome.messages
        tracker.update(event("action", name="action_extract_slots", policy=None, confidence=None))
        for e in slot_events + custom_events:
            tracker.update(e)

    async def _run_actions(self, tracker: DialogueStateTracker, messages: list[dict[str, Any]], channel: str) -> None:
        rejected = False
        for _ in range(MAX_ACTIONS_PER_TURN):
            action = self.policy.predict(tracker, rejected_loop=rejected)
            rejected = False
            if action == ACTION_LISTEN:
                break
            outcome = await self._run(action, tracker, channel)
            if outcome.rejected:
                rejected = True
                continue
            tracker.update(event("action", name=action, policy="RulePolicy", confidence=1.0))
            for message in outcome.messages:
                tracker.update(_bot_event(message))
            for e in outcome.events:
                tracker.update(e)
            messages += outcome.messages
        else:
            log.warning("conversation %s: stopped after %d actions in one turn", tracker.sender_id, MAX_ACTIONS_PER_TURN)
        tracker.update(event("action", name=ACTION_LISTEN, policy="RulePolicy", confidence=1.0))

    # -- actions ---------------------------------------------------------------------------------

    async def _run(self, action: str, tracker: DialogueStateTracker, channel: str) -> _Outcome:
        if action.startswith("utter_"):
            return _Outcome(messages=self.domain.render(action, tracker.slots, channel))
        if action in self.domain.forms:
            return await self._run_form(action, tracker, channel)
        if action == "action_deactivate_loop":
            return _Outcome(events=[event("active_loop", name=None), event("slot", name=REQUESTED_SLOT, value=None)])
        if action == "action_restart":
            return _Outcome(events=[event("restart")], messages=self.domain.render("utter_restart", tracker.slots, channel))
        if action == "action_default_fallback":
            return _Outcome(events=[event("rewind")], messages=self.domain.render("utter_default", tracker.slots, channel))
        return await self._run_custom(action, tracker, channel)

    async def _run_form(self, form: str, tracker: DialogueStateTracker, channel: str) -> _Outcome:
        async def run_custom(name: str, state: dict[str, Any]) -> ActionResult:
            return await self.actions.run(name, state, self.domain.as_dict())

        try:
            result = await run_form(form, tracker, self.domain, run_custom, lambda: self.policy.generic_rule_matches(tracker))
        except (ActionError, ActionRejected):
            log.exception("form %s failed", form)
            return self._failure(tracker, channel)
        except Exception as exc:  # a validator's bug, or the database away: an apology, not a crash
            log.exception("form %s raised", form)
            return self._failure(tracker, channel, failure_response(exc))
        if result.rejected:
            return _Outcome(rejected=True)
        slots = _slots_after(tracker.slots, result.events)
        return _Outcome(events=result.events, messages=self._render_all(result.responses, slots, channel))

    async def _run_custom(self, action: str, tracker: DialogueStateTracker, channel: str) -> _Outcome:
        try:
            result = await self.actions.run(action, tracker.current_state(), self.domain.as_dict())
        except ActionRejected:
            return _Outcome(rejected=True)
        except ActionError:
            log.exception("action %s failed", action)
            return self._failure(tracker, channel)
        except Exception as exc:  # an action's bug (or an outage) must not take the conversation down with it
            log.exception("action %s raised", action)
            return self._failure(tracker, channel, failure_response(exc))
        slots = _slots_after(tracker.slots, result.events)
        return _Outcome(events=result.events, messages=self._render_all(result.responses, slots, channel))

    def _failure(self, tracker: DialogueStateTracker, channel: str, response: str = "utter_error") -> _Outcome:
        return _Outcome(messages=self.domain.render(response, tracker.slots, channel))

    def _render_all(self, responses: list[dict[str, Any]], slots: dict[str, Any], channel: str) -> list[dict[str, Any]]:
        """Action responses become messages; `response: utter_x` is rendered from the domain."""
        rendered: list[dict[str, Any]] = []
        for response in responses:
            name = response.get("response") or response.get("template")
            if name:
                extra = {k: v for k, v in response.items() if k not in _MESSAGE_KEYS and v is not None}
                messages = self.domain.render(name, slots, channel, extra)
                if messages and response.get("buttons"):
                    messages[-1]["buttons"] = response["buttons"]  # buttons built by the action
                rendered += messages
                continue
            message = {k: response[k] for k in ("text", "buttons", "image", "attachment", "custom") if response.get(k)}
            if response.get("elements"):
                message["elements"] = response["elements"]
            if message:
                rendered.append(message)
        return rendered


_MESSAGE_KEYS = {"response", "template", "text", "buttons", "elements", "custom", "image", "attachment", "json_message", "recipient_id"}


def _slots_after(slots: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    updated = dict(slots)
    for e in events:
        if e.get("event") == "slot":
            updated[e["name"]] = e.get("value")
    return updated


def _bot_event(message: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in message.items() if k not in ("text", "response")}
    return event("bot", text=message.get("text"), data=data, metadata={"utter_action": message.get("response")})
