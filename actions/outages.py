"""Outage reports and planned-outage schedules.

A report needs an area: named in the message, given when asked (outage_form), or the linked
customer's address. Known incidents and maintenance are explained; otherwise the report opens
or joins the area's incident. Every reporter hears when power is back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.conversation import chat_key, chat_ref, language
from backend.clock import VN_TZ, today_vn
from backend.services import accounts, outages
from backend.services.outages import Area
from nlu.dates import parse_date


def _local(moment: datetime, lang: str) -> str:
    local = moment.astimezone(VN_TZ)
    return local.strftime("%H:%M %d/%m") if lang == "vi" else local.strftime("%H:%M on %d %b")


def _location_texts(tracker: Tracker) -> list[str]:
    """Places the latest message names (location entities first, then the whole text)."""
    message = tracker.latest_message
    texts = [str(e.get("value")) for e in message.get("entities") or [] if e.get("entity") == "location"]
    return [*texts, str(message.get("text") or "")]


async def _linked_area(tracker: Tracker) -> tuple[Area | None, str | None]:
    channel, sender = chat_key(tracker)
    linked = await accounts.linked_customers(channel, sender)
    if len(linked) != 1:
        return None, None
    return Area(linked[0].ward, linked[0].district, linked[0].province), linked[0].code


class ActionReportOutage(Action):
    def name(self) -> str:
        return "action_report_outage"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        lang = language(tracker)
        given = tracker.get_slot("outage_location")
        area = await outages.find_area(*([given] if given else _location_texts(tracker)))
        linked_area, code = await _linked_area(tracker)
        if area is None and not given:
            area = linked_area
        if area is None:  # ask where (the form's validation only accepts places we can resolve)
            return [SlotSet("outage_location", None), FollowupAction("outage_form")]
        result = await outages.report_outage(
            chat_ref(tracker),
            area,
            location_text=given or str(tracker.latest_message.get("text") or "")[:255],
            customer_code=code if area == linked_area else None,
        )
        incident = result.incident
        place = {"ward": area.ward, "district": area.district, "report_ref": result.report_ref}
        if result.planned is not None:
            dispatcher.utter_message(
                response="utter_planned_outage_now",
                reason=result.planned.reason,
                start=_local(result.planned.start_at, lang),
                end=_local(result.planned.end_at, lang),
                **place,
            )
        elif incident.source == "staff" and incident.cause:
            restore = _local(incident.expected_restore_at, lang) if incident.expected_restore_at else ("chưa xác định" if lang == "vi" else "not known yet")
            dispatcher.utter_message(response="utter_known_incident", cause=incident.cause, restore_at=restore, **place)
        elif result.known_before:
            dispatcher.utter_message(response="utter_reported_incident", reports=incident.reports, **place)
        else:
            dispatcher.utter_message(response="utter_outage_recorded", **place)
        return [SlotSet("outage_location", None)]


class ValidateOutageForm(FormValidationAction):
    def name(self) -> str:
        return "validate_outage_form"

    async def validate_outage_location(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = str(value or "").strip()
        if await outages.find_area(text) is None:
            dispatcher.utter_message(response="utter_unknown_area", text=text[:80])
            return {"outage_location": None}
        return {"outage_location": text[:255]}


class ActionOutageSchedule(Action):
    def name(self) -> str:
        return "action_outage_schedule"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        lang = language(tracker)
        today = today_vn()
        text = str(tracker.latest_message.get("text") or "")
        day = parse_date(text, today)
        start, end = (day, day) if day and day >= today else (today, today + timedelta(days=7))
        area = await outages.find_area(*_location_texts(tracker))
        if area is None:
            area, _ = await _linked_area(tracker)
        where = (f" tại {area.ward}, {area.district}" if lang == "vi" else f" in {area.ward}, {area.district}") if area else ""
        found = await outages.planned_outages(area, start, end)
        fmt = "%d/%m/%Y" if lang == "vi" else "%d %b %Y"
        if not found:
            dispatcher.utter_message(
                response="utter_no_planned_outages", where=where, start=start.strftime(fmt), end=end.strftime(fmt)
            )
            return []
        lines = "\n".join(
            f"• {_local(p.start_at, lang)} – {_local(p.end_at, lang)}: {p.area.ward}, {p.area.district} ({p.detail}; {p.reason})"
            for p in found
        )
        dispatcher.utter_message(response="utter_planned_outages", where=where, lines=lines)
        return []
