"""Ownership check and account linking.

`verify_form` asks for a customer code and the phone number on its contract. Only a matching
phone links the chat to the code; three wrong phones lock the code for this chat for a while.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.bills import ActionLookupBill, show_bills, start_verification
from actions.conversation import chat_key
from actions.payments import reply_with_payment_link
from backend.services import accounts
from nlu.entities import CUSTOMER_CODE_RE, extract_identifiers, normalize_phone
from nlu.normalize import strip_diacritics


def _minutes_until(moment: datetime) -> int:
    return max(1, math.ceil((moment - datetime.now(UTC)).total_seconds() / 60))


class ValidateVerifyForm(FormValidationAction):
    def name(self) -> str:
        return "validate_verify_form"

    async def validate_customer_code(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        match = CUSTOMER_CODE_RE.search(str(value or ""))
        if not match:
            dispatcher.utter_message(response="utter_customer_code_shape")
            return {"customer_code": None}
        code = (match.group(1) + match.group(2)).upper()
        if await accounts.find_customer(code) is None:
            dispatcher.utter_message(response="utter_unknown_customer_code", code=code)
            return {"customer_code": None}
        channel, sender = chat_key(tracker)
        locked_until = await accounts.lock_status(channel, sender, code)
        if locked_until:
            dispatcher.utter_message(response="utter_code_locked", code=code, minutes=_minutes_until(locked_until))
            return {"customer_code": None}
        return {"customer_code": code}

    async def validate_phone(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        code = tracker.get_slot("customer_code")
        found = [e["value"] for e in extract_identifiers(str(value or "")) if e["entity"] == "phone"]
        phone = found[0] if found else normalize_phone(str(value or ""))
        if not code:
            return {"phone": None}
        if not phone:
            dispatcher.utter_message(response="utter_phone_shape")
            return {"phone": None}
        channel, sender = chat_key(tracker)
        result = await accounts.verify_ownership(channel, sender, code, phone)
        if result.status == "ok":
            return {"phone": phone}
        if result.status == "wrong_phone":
            dispatcher.utter_message(response="utter_wrong_phone", customer_code=code, attempts_left=result.attempts_left)
            return {"phone": None}
        if result.status == "locked" and result.locked_until:
            dispatcher.utter_message(response="utter_code_locked", code=code, minutes=_minutes_until(result.locked_until))
        else:
            dispatcher.utter_message(response="utter_unknown_customer_code", code=code)
        return {"phone": None, "customer_code": None}


class ActionAfterVerification(Action):
    """Runs when verify_form completes: confirm the link and do what the customer asked for."""

    def name(self) -> str:
        return "action_after_verification"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        code = tracker.get_slot("customer_code")
        channel, sender = chat_key(tracker)
        reset = [SlotSet("phone", None), SlotSet("pending_request", None)]
        # The form only completes through a matching phone, but the link in the database is
        # what proves ownership: check it before revealing anything.
        customer = next((c for c in await accounts.linked_customers(channel, sender) if c.code == code), None)
        if customer is None:
            dispatcher.utter_message(response="utter_verification_cancelled")
            return reset
        dispatcher.utter_message(response="utter_verified", customer_code=code)
        pending = tracker.get_slot("pending_request")
        if pending == "lookup_bill":
            reset += await show_bills(dispatcher, tracker, customer)
        elif pending == "create_service_request":
            reset.append(FollowupAction("action_start_service_request"))
        elif pending == "pay_bill":
            reset += await reply_with_payment_link(dispatcher, tracker, customer.code, tracker.get_slot("month"))
        return reset


UNLINK_WORDS = ("huy lien ket", "bo lien ket", "go lien ket", "xoa lien ket", "huy ket noi", "unlink", "remove", "disconnect")
LIST_WORDS = ("danh sach", "nhung ma", "cac ma", "ma nao", "list", "which codes", "linked codes")


class ActionLinkAccount(Action):
    """Link a customer code to this chat (after the ownership check), list or unlink codes."""

    def name(self) -> str:
        return "action_link_account"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        codes = [str(e["value"]) for e in tracker.latest_message.get("entities") or [] if e.get("entity") == "customer_code"]
        channel, sender = chat_key(tracker)
        linked = [c.code for c in await accounts.linked_customers(channel, sender)]
        text = f" {strip_diacritics(str(tracker.latest_message.get('text') or '')).lower()} "
        if any(w in text for w in UNLINK_WORDS):
            target = codes[0] if codes else (linked[0] if len(linked) == 1 else None)
            if target in linked:
                await accounts.unlink(channel, sender, target)
                dispatcher.utter_message(response="utter_unlinked", customer_code=target)
            elif linked:
                dispatcher.utter_message(
                    response="utter_linked_codes",
                    codes=", ".join(linked),
                    buttons=[{"title": c, "payload": f"hủy liên kết {c}"} for c in linked],
                )
            else:
                dispatcher.utter_message(response="utter_no_linked_codes")
            return []
        if any(w in text for w in LIST_WORDS) or (codes and codes[0] in linked) or (not codes and linked):
            if linked:
                dispatcher.utter_message(response="utter_linked_codes", codes=", ".join(linked))
            else:
                dispatcher.utter_message(response="utter_no_linked_codes")
            if linked or not codes:
                return []
        return start_verification(tracker, "link_account", codes[0] if codes else None)


class ActionHandleInform(Action):
    """Information typed out of context: a customer code starts a bill lookup for it."""

    def name(self) -> str:
        return "action_handle_inform"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        entities = {e.get("entity") for e in tracker.latest_message.get("entities") or []}
        if "customer_code" in entities or "month" in entities:
            return await ActionLookupBill().run(dispatcher, tracker, domain)
        dispatcher.utter_message(response="utter_help")
        return []
