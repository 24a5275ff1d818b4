"""Bill lookup: the latest bill or a given period, only for a customer code this chat owns."""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import chat_key, language
from actions.display import format_date, format_period, format_vnd, previous_period
from actions.tariff import amount_values
from backend import signing
from backend.services import accounts, billing
from backend.services.accounts import CustomerInfo
from backend.services.billing import BillInfo
from backend.settings import get_settings
from backend.tariffs import current_tariff
from nlu.normalize import strip_diacritics

CHART_MONTHS = 12


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


VIEW_WORDS = {
    "unpaid": ("no ", "chua thanh toan", "chua dong", "chua tra", "con thieu", "unpaid", "owe", "outstanding"),
    "chart": ("bieu do", "lich su", "tieu thu", "12 thang", "6 thang", "chart", "history", "consumption", "graph"),
    "breakdown": ("chi tiet", "bac thang", "cach tinh", "tung bac", "breakdown", "tier", "detail"),
}


def requested_view(tracker: Tracker) -> str:
    """Which view of the bills the customer asked for: a button's `bill_view`, or their words."""
    view = tracker.get_slot("bill_view")
    if view in VIEW_WORDS:
        return str(view)
    text = f" {strip_diacritics(str(tracker.latest_message.get('text') or '')).lower()} "
    return next((v for v, words in VIEW_WORDS.items() if any(w in text for w in words)), "bill")


async def show_bills(dispatcher: CollectingDispatcher, tracker: Tracker, customer: CustomerInfo) -> list[dict[str, Any]]:
    """Answer with the asked-for view of `customer`'s bills (the caller checked this chat owns
    the code); returns the events that clear the request's slots."""
    lang = language(tracker)
    view = requested_view(tracker)
    period = tracker.get_slot("month")
    if view == "unpaid":
        await _unpaid(dispatcher, customer, lang)
    elif view == "chart":
        await _chart(dispatcher, customer, lang)
    else:
        bill = await billing.bill_for_period(customer.code, period) if period else await billing.latest_bill(customer.code)
        if bill is None:
            dispatcher.utter_message(
                response="utter_no_bill_for_period", customer_code=customer.code, period=format_period(period) if period else "-"
            )
        elif view == "breakdown":
            await _breakdown(dispatcher, customer, bill, lang)
        else:
            dispatcher.utter_message(**bill_message(bill, customer.name, lang))
            dispatcher.utter_message(response="utter_more_about_bill")
    return [SlotSet("month", None), SlotSet("bill_view", None)]


async def _unpaid(dispatcher: CollectingDispatcher, customer: CustomerInfo, lang: str) -> None:
    bills = await billing.unpaid_bills(customer.code)
    if not bills:
        dispatcher.utter_message(response="utter_no_unpaid_bills", customer_code=customer.code)
        return
    overdue = " (quá hạn)" if lang == "vi" else " (overdue)"
    lines = "\n".join(
        f"• {format_period(b.period)}: {b.kwh} kWh, {format_vnd(b.amount, lang)}, "
        f"{'hạn' if lang == 'vi' else 'due'} {format_date(b.due_date, lang)}{overdue if b.overdue else ''}"
        for b in bills
    )
    total = format_vnd(sum(b.amount for b in bills), lang)
    dispatcher.utter_message(response="utter_unpaid_bills", customer_code=customer.code, lines=lines, total=total)


async def _breakdown(dispatcher: CollectingDispatcher, customer: CustomerInfo, bill: BillInfo, lang: str) -> None:
    year, month = (int(p) for p in bill.period.split("-"))
    tariff = await current_tariff(customer.tariff_code, date(year, month, 1))
    values = amount_values(bill.kwh, tariff, lang)
    # The bill's own figures are what the customer owes, whatever the tariff table says today.
    values |= {
        "subtotal": format_vnd(bill.amount_before_vat, lang),
        "vat": format_vnd(bill.vat_amount, lang),
        "total": format_vnd(bill.amount, lang),
    }
    dispatcher.utter_message(response="utter_bill_breakdown", period=format_period(bill.period), **values)


async def _chart(dispatcher: CollectingDispatcher, customer: CustomerInfo, lang: str) -> None:
    bills = await billing.bill_history(customer.code, CHART_MONTHS)
    lines = "\n".join(f"• {format_period(b.period)}: {b.kwh} kWh" for b in sorted(bills, key=lambda b: b.period))
    base = get_settings().public_base_url.rstrip("/")
    query = signing.signed_query(f"consumption:{customer.code}")
    dispatcher.utter_message(
        response="utter_consumption_chart",
        customer_code=customer.code,
        months=len(bills),
        lines=lines,
        chart_url=f"{base}/charts/consumption/{customer.code}.png?{query}",
    )


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
            return await show_bills(dispatcher, tracker, customer)
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
