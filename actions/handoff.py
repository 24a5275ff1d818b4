"""Escalation to a person: the customer asked for one, complained, or the bot kept failing.

`action_handoff` writes a short summary for the agent (what was asked, the verified customer
codes, the last bill, open tickets), then either queues the conversation and pauses it (the
Rasa `pause` event: from then on the bot stays quiet and the console gets the messages) or,
outside business hours or with nobody online, opens a callback ticket and keeps helping.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ConversationPaused, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import chat_key, chat_ref
from actions.fallback import MISUNDERSTOOD
from backend.services import accounts, billing, handoff, service_requests
from backend.settings import get_settings

HISTORY = 8
REPEATS = 3
# Requests whose third identical ask in a row means the bot is not helping. Answers (affirm,
# deny, inform) and small talk repeat naturally and do not count.
REQUEST_INTENTS = {
    "lookup_bill", "pay_bill", "report_outage", "outage_schedule", "create_service_request",
    "check_request_status", "link_account", "tariff_info", "help",
}


def _user_turns(tracker: Tracker) -> list[dict[str, Any]]:
    """The customer's turns since the session started, as {intent, confidence, text}."""
    turns: list[dict[str, Any]] = []
    for e in tracker.events:
        if e.get("event") == "session_started":
            turns = []
        elif e.get("event") == "user":
            intent = (e.get("parse_data") or {}).get("intent") or {}
            turns.append({"intent": intent.get("name"), "confidence": round(float(intent.get("confidence") or 0), 2), "text": (e.get("text") or "")[:200]})
    return turns


def _request_key(e: dict[str, Any]) -> tuple[Any, ...]:
    parse = e.get("parse_data") or {}
    entities = sorted((str(x.get("entity")), str(x.get("value"))) for x in parse.get("entities") or [])
    return ((parse.get("intent") or {}).get("name"), *entities)


def repeated_request(tracker: Tracker) -> bool:
    """Whether the customer just asked the same thing (intent and entities) a third time in a
    row since the last escalation."""
    # From the end back: it runs on every message, so only the latest requests are looked at.
    last: list[tuple[Any, ...]] = []
    for e in reversed(tracker.events):
        kind = e.get("event")
        if kind in ("session_started", "pause", "resume") or (kind == "action" and e.get("name") == "action_handoff"):
            break
        if kind == "user":
            last.append(_request_key(e))
            if len(last) == REPEATS:
                break
    return len(last) == REPEATS and last[0][0] in REQUEST_INTENTS and all(k == last[0] for k in last)


def escalation_reason(turns: list[dict[str, Any]]) -> str:
    """Why the customer is escalated: a complaint, repeated misunderstandings, the same request
    over and over, or they asked."""
    if len(turns) >= REPEATS and turns[-1]["intent"] in REQUEST_INTENTS:
        return "repeated"
    before = [t["intent"] for t in turns[:-1]][-3:]
    if "complain" in before:
        return "complaint"
    if len(before) >= 2 and all(i in MISUNDERSTOOD for i in before[-2:]):
        return "misunderstood"
    return "customer_request"


async def handoff_summary(tracker: Tracker, turns: list[dict[str, Any]]) -> dict[str, Any]:
    channel, sender = chat_key(tracker)
    customers = await accounts.linked_customers(channel, sender)
    summary: dict[str, Any] = {
        "intents": [{"intent": t["intent"], "confidence": t["confidence"]} for t in turns[-HISTORY:]],
        "customer_codes": [c.code for c in customers],
        "customer_name": customers[0].name if customers else None,
        "last_bill": None,
        "open_tickets": [],
    }
    if customers:
        bill = await billing.latest_bill(customers[0].code)
        if bill is not None:
            summary["last_bill"] = {"period": bill.period, "amount": bill.amount, "status": bill.status, "overdue": bill.overdue}
    requests = await service_requests.requests_for(channel, chat_ref(tracker).recipient_id, [c.code for c in customers])
    summary["open_tickets"] = [r.ticket_id for r in requests if r.is_open]
    return summary


class ActionHandoff(Action):
    def name(self) -> str:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        turns = _user_turns(tracker)
        summary = await handoff_summary(tracker, turns)
        result = await handoff.escalate(chat_ref(tracker), tracker.sender_id, escalation_reason(turns), summary)
        if result.outcome == "callback":
            response = "utter_handoff_closed_hours" if result.why == "closed" else "utter_handoff_no_agent"
            dispatcher.utter_message(response=response, ref=result.handoff.ref, hours=get_settings().handoff_hours)
            return []
        dispatcher.utter_message(response="utter_handoff_queued", ref=result.handoff.ref, position=result.position)
        return [SlotSet("repeated_request", False), ConversationPaused()]


class ActionCountRepeats(Action):
    """Slot mapping of `repeated_request`: true on the third identical request in a row, which
    the rule "The same request a third time goes to a person" turns into an escalation."""

    def name(self) -> str:
        return "action_count_repeats"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        repeated = repeated_request(tracker)
        return [SlotSet("repeated_request", repeated)] if repeated != bool(tracker.get_slot("repeated_request")) else []
