"""Service requests in chat: choose the service, prove the contract is yours when one is
involved, fill the form (contact, date, details), confirm, get a ticket; ask its status later."""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.bills import start_verification
from actions.conversation import chat_key, chat_ref, language
from actions.display import format_date, format_vnd
from backend.clock import VN_TZ, today_vn
from backend.services import accounts, payments, service_requests
from backend.services.service_requests import (
    STATUS_LABELS,
    RequestError,
    RequestInfo,
    ServiceTypeInfo,
)
from nlu.dates import parse_date
from nlu.entities import CUSTOMER_CODE_RE, extract_identifiers, normalize_phone

FORM_SLOTS = ["request_customer_code", "request_address", "contact_phone", "preferred_date", "description", "request_confirmed"]
RESET_FORM = [SlotSet(name, None) for name in ["service_type", *FORM_SLOTS]]


def _name(kind: ServiceTypeInfo, lang: str) -> str:
    return kind.name_en if lang == "en" else kind.name_vi


async def _linked_codes(tracker: Tracker) -> list[str]:
    channel, sender = chat_key(tracker)
    return [c.code for c in await accounts.linked_customers(channel, sender)]


class ActionStartServiceRequest(Action):
    def name(self) -> str:
        return "action_start_service_request"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        kind = await service_requests.service_type(tracker.get_slot("service_type") or "")
        if kind is None:
            dispatcher.utter_message(response="utter_choose_service_type")
            return [SlotSet("service_type", None)]
        events: list[dict[str, Any]] = [SlotSet(s, None) for s in FORM_SLOTS]
        if kind.needs_existing_contract:
            linked = await _linked_codes(tracker)
            if not linked:
                # Requests on a contract come only from a chat that proved it owns the contract.
                return start_verification(tracker, "create_service_request", None)
            if len(linked) == 1:
                events.append(SlotSet("request_customer_code", linked[0]))
        return [*events, FollowupAction("service_request_form")]


class ValidateServiceRequestForm(FormValidationAction):
    def name(self) -> str:
        return "validate_service_request_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        kind = await service_requests.service_type(tracker.get_slot("service_type") or "")
        drop = "request_address" if kind is None or kind.needs_existing_contract else "request_customer_code"
        return [s for s in domain_slots if s != drop]

    async def validate_request_customer_code(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        match = CUSTOMER_CODE_RE.search(str(value or ""))
        code = (match.group(1) + match.group(2)).upper() if match else None
        linked = await _linked_codes(tracker)
        if code in linked:
            return {"request_customer_code": code}
        dispatcher.utter_message(response="utter_choose_customer_code", buttons=[{"title": c, "payload": c} for c in linked])
        return {"request_customer_code": None}

    def validate_request_address(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = str(value or "").strip()
        if len(text) < 8 or not any(ch.isalpha() for ch in text):
            dispatcher.utter_message(response="utter_ask_request_address")
            return {"request_address": None}
        return {"request_address": text[:255]}

    def validate_contact_phone(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        found = [e["value"] for e in extract_identifiers(str(value or "")) if e["entity"] == "phone"]
        phone = found[0] if found else normalize_phone(str(value or ""))
        if phone:
            return {"contact_phone": phone}
        dispatcher.utter_message(response="utter_phone_shape")
        return {"contact_phone": None}

    def validate_preferred_date(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        today = today_vn()
        day = parse_date(str(value or ""), today)
        lang = language(tracker)
        if day is None:
            problem = "Tôi chưa hiểu ngày bạn chọn." if lang == "vi" else "I did not understand that date."
        elif day < today:
            problem = "Ngày đó đã qua, bạn chọn một ngày từ hôm nay trở đi." if lang == "vi" else "That day has passed: please pick today or later."
        elif (day - today).days > service_requests.MAX_DAYS_AHEAD:
            problem = "Bạn chọn ngày trong vòng 90 ngày tới nhé." if lang == "vi" else "Please pick a day within the next 90 days."
        else:
            return {"preferred_date": day.isoformat()}
        dispatcher.utter_message(response="utter_invalid_request_field", problem=problem)
        return {"preferred_date": None}

    def validate_description(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = str(value or "").strip()
        if len(text) < 3:
            dispatcher.utter_message(response="utter_ask_description")
            return {"description": None}
        return {"description": text[: service_requests.MAX_DESCRIPTION_CHARS]}


class ActionAskRequestConfirmed(Action):
    """The last question of the form: a summary of the request to confirm."""

    def name(self) -> str:
        return "action_ask_request_confirmed"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        lang = language(tracker)
        kind = await service_requests.service_type(tracker.get_slot("service_type") or "")
        if kind is None:
            return []
        code, address = tracker.get_slot("request_customer_code"), tracker.get_slot("request_address")
        if lang == "vi":
            target = f"Mã khách hàng: {code}" if code else f"Địa chỉ: {address}"
            fee_line = f"\n• Phí dịch vụ: {format_vnd(kind.fee, lang)}" if kind.fee else ""
        else:
            target = f"Customer code: {code}" if code else f"Address: {address}"
            fee_line = f"\n• Service fee: {format_vnd(kind.fee, lang)}" if kind.fee else ""
        dispatcher.utter_message(
            response="utter_request_summary",
            service_name=_name(kind, lang),
            target=target,
            contact_phone=tracker.get_slot("contact_phone"),
            preferred_date=format_date(date.fromisoformat(tracker.get_slot("preferred_date")), lang),
            description=tracker.get_slot("description"),
            fee_line=fee_line,
        )
        return []


class ActionSubmitServiceRequest(Action):
    def name(self) -> str:
        return "action_submit_service_request"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        if tracker.get_slot("request_confirmed") is not True:
            dispatcher.utter_message(response="utter_request_cancelled")
            return RESET_FORM
        lang = language(tracker)
        try:
            info = await service_requests.create_request(
                chat_ref(tracker),
                tracker.get_slot("service_type") or "",
                contact_phone=tracker.get_slot("contact_phone") or "",
                description=tracker.get_slot("description") or "",
                preferred_date=date.fromisoformat(tracker.get_slot("preferred_date")),
                customer_code=tracker.get_slot("request_customer_code"),
                address=tracker.get_slot("request_address"),
            )
        except RequestError as exc:
            dispatcher.utter_message(response="utter_invalid_request_field", problem=exc.problem)
            return RESET_FORM
        dispatcher.utter_message(
            response="utter_request_created",
            service_name=_name(info.service_type, lang),
            ticket_id=info.ticket_id,
            contact_phone=info.contact_phone,
        )
        if info.fee:
            await offer_fee_payment(dispatcher, tracker, info)
        return RESET_FORM


async def offer_fee_payment(dispatcher: CollectingDispatcher, tracker: Tracker, info: RequestInfo) -> None:
    """A payment link for the service fee (e.g. reconnection), paid like a bill."""
    lang = language(tracker)
    link = await payments.create_fee_payment_link(
        chat_ref(tracker),
        info.customer_code,
        info.ticket_id,
        info.fee,
        f"{_name(info.service_type, lang)} {info.ticket_id}",
    )
    dispatcher.utter_message(
        response="utter_request_fee",
        fee=format_vnd(info.fee, lang),
        url=link.url,
        expires=link.expires_at.astimezone(VN_TZ).strftime("%H:%M"),
    )


def _status_label(status: str, lang: str) -> str:
    vi, en = STATUS_LABELS.get(status, (status, status))
    return en if lang == "en" else vi


class ActionCheckRequestStatus(Action):
    def name(self) -> str:
        return "action_check_request_status"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        lang = language(tracker)
        channel, sender = chat_key(tracker)
        linked = await _linked_codes(tracker)
        tickets = [e["value"] for e in tracker.latest_message.get("entities") or [] if e.get("entity") == "ticket_id"]
        if tickets:
            info = await service_requests.get_request(str(tickets[0]))
            mine = info is not None and (
                (info.channel, info.recipient_id) == (channel, sender) or info.customer_code in linked
            )
            if not mine:
                # Someone else's ticket looks exactly like a missing one: nothing leaks.
                dispatcher.utter_message(response="utter_no_requests", which=f" {tickets[0]}")
                return []
            assert info is not None
            history = "\n".join(
                f"• {e.at.astimezone(VN_TZ).strftime('%d/%m %H:%M')}: {_status_label(e.status, lang)}" + (f" ({e.note})" if e.note else "")
                for e in info.history
            )
            dispatcher.utter_message(
                response="utter_request_status",
                ticket_id=info.ticket_id,
                service_name=_name(info.service_type, lang),
                status=_status_label(info.status, lang),
                history=history,
            )
            return []
        found = await service_requests.requests_for(channel, sender, linked)
        if not found:
            dispatcher.utter_message(response="utter_no_requests", which="")
            return []
        lines = "\n".join(
            f"• {r.ticket_id} – {_name(r.service_type, lang)}: {_status_label(r.status, lang)}" for r in found
        )
        dispatcher.utter_message(response="utter_requests_list", lines=lines)
        return []

