"""Bill payment in chat: a payment link for a customer code this chat owns.

The link covers all unpaid bills, or only the bill of the month the customer named. The bot
never takes the payment itself: the customer pays on the gateway's page, and the confirmation
arrives later through the outbox once the gateway's IPN has settled the link.
"""

from __future__ import annotations

import re
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.bills import start_verification
from actions.conversation import chat_key, chat_ref, language
from actions.display import format_period, format_vnd
from backend.clock import VN_TZ
from backend.services import accounts, payments

_PERIOD_RE = re.compile(r"^\d{4}-\d{2}$")


def _named_code(tracker: Tracker) -> str | None:
    """The customer code written in the latest message (or sent by a button), if any."""
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == "customer_code" and entity.get("value"):
            return str(entity["value"]).strip().upper()
    return None


async def reply_with_payment_link(
    dispatcher: CollectingDispatcher, tracker: Tracker, customer_code: str, period: str | None
) -> list[dict[str, Any]]:
    """Send a payment link for `customer_code`, whom the caller has checked this chat owns."""
    lang = language(tracker)
    try:
        # chat_ref: the outbox's recipient id, which for most channels is not the tracker's id.
        link = await payments.create_bill_payment_link(chat_ref(tracker), customer_code, period)
    except (payments.NothingToPay, payments.UnknownCustomer, ValueError):
        scope = ""
        if period and _PERIOD_RE.match(period):
            scope = f" for {format_period(period)}" if lang == "en" else f" kỳ {format_period(period)}"
        dispatcher.utter_message(response="utter_nothing_to_pay", customer_code=customer_code, scope=scope)
        return [SlotSet("month", None)]
    dispatcher.utter_message(
        response="utter_payment_link",
        customer_code=customer_code,
        amount=format_vnd(link.amount, lang),
        periods=", ".join(format_period(p) for p in link.periods),
        expires_at=link.expires_at.astimezone(VN_TZ).strftime("%H:%M"),
        url=link.url,
    )
    return [SlotSet("month", None)]


class ActionPayBill(Action):
    """`pay_bill`: a payment link, after the ownership check when the chat is not linked."""

    def name(self) -> str:
        return "action_pay_bill"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        channel, sender = chat_key(tracker)
        linked = [c.code for c in await accounts.linked_customers(channel, sender)]
        requested = _named_code(tracker)
        if requested and requested not in linked:
            return start_verification(tracker, "pay_bill", requested)
        code = requested or (linked[0] if len(linked) == 1 else None)
        if code:
            return await reply_with_payment_link(dispatcher, tracker, code, tracker.get_slot("month"))
        if linked:
            month = tracker.get_slot("month")
            extra = f', "month": "{month}"' if month else ""
            dispatcher.utter_message(
                response="utter_choose_customer_code_to_pay",
                buttons=[
                    {"title": c, "payload": f'/pay_bill{{"customer_code": "{c}"{extra}}}'} for c in linked
                ],
            )
            return []
        return start_verification(tracker, "pay_bill", None)
