"""Bill lookup: the latest bill or a given period, only for a customer code this chat owns."""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import chat_key, language
from backend.services import accounts, billing
from backend.services.accounts import CustomerInfo
from backend.services.billing import BillInfo


def format_vnd(amount: int, lang: str) -> str:
    """1234567 -> '1.234.567 đ' (vi) or '1,234,567 VND' (en)."""
    grouped = f"{amount:,}"
    return f"{grouped.replace(',', '.')} đ" if lang == "vi" else f"{grouped} VND"


def format_period(period: str) -> str:
    year, month = period.split("-")
    return f"{month}/{year}"


def format_date(day: date, lang: str) -> str:
    return day.strftime("%d/%m/%Y") if lang == "vi" else day.strftime("%d %b %Y")


def previous_period(period: str) -> str:
    year, month = (int(p) for p in period.split("-"))
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def bill_message(bill: BillInfo, customer_name: str, lang: str) -> dict[str, Any]:
    """The kwargs of utter_bill_paid / utter_bill_unpaid for one bill."""
    if bill.status == "paid":
        status = ""
    elif bill.overdue:
        status = "quá hạn, chưa thanh toán" if lang == "vi" else "overdue, not paid"
    else:
        status = "chưa thanh toán" if lang == "vi" else "not paid"
    return {
        "response": "utter_bill_paid" if bill.status == "paid" else "utter_bill_unpaid",
        "customer_code": bill.customer_code,
        "name": customer_name,
        "period": format_period(bill.period),
        "previous_period": previous_period(bill.period),
        "kwh": bill.kwh,
        "amount": format_vnd(bill.amount, lang),
        "due_date": format_date(bill.due_date, lang),
        "status": status,
        "paid_on": format_date(bill.paid_at.date(), lang) if bill.paid_at else "",
    }


async def reply_with_bill(
    dispatcher: CollectingDispatcher, tracker: Tracker, customer: CustomerInfo, period: str | None
) -> None:
    """Show a bill of `customer`, whom the caller has checked this chat owns."""
    code = customer.code
    bill = await billing.bill_for_period(code, period) if period else await billing.latest_bill(code)
    if bill is None:
        dispatcher.utter_message(
            response="utter_no_bill_for_period", customer_code=code, period=format_period(period) if period else "-"
        )
        return
    dispatcher.utter_message(**bill_message(bill, customer.name, language(tracker)))


def _requested_code(tracker: Tracker) -> str | None:
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == "customer_code":
            return str(entity.get("value")).upper()
    return None


class ActionLookupBill(Action):
    def name(self) -> str:
        return "action_lookup_bill"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        channel, sender = chat_key(tracker)
        linked = {c.code: c for c in await accounts.linked_customers(channel, sender)}
        requested = _requested_code(tracker)
        if requested and requested not in linked:
            # A code this chat has not proven it owns: verify first, then show the bill.
            return start_verification(tracker, "lookup_bill", requested)
        customer = linked[requested] if requested else (next(iter(linked.values())) if len(linked) == 1 else None)
        if customer:
            await reply_with_bill(dispatcher, tracker, customer, tracker.get_slot("month"))
            return [SlotSet("month", None)]
        if linked:
            dispatcher.utter_message(
                response="utter_choose_customer_code",
                buttons=[{"title": c, "payload": f'/lookup_bill{{"customer_code": "{c}"}}'} for c in linked],
            )
            return []
        return start_verification(tracker, "lookup_bill", None)


def start_verification(tracker: Tracker, pending: str, code: str | None) -> list[dict[str, Any]]:
    """Open the ownership check (verify_form); `pending` runs once it succeeds."""
    return [
        SlotSet("pending_request", pending),
        SlotSet("customer_code", code),
        SlotSet("phone", None),
        FollowupAction("verify_form"),
    ]
