"""Electricity prices: the tiered residential tariff, the business tariff, and estimates for
a number of kWh ("200 số hết bao nhiêu tiền")."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.conversation import language
from actions.display import format_vnd
from backend.tariffs import TariffInfo, compute_amount, current_tariff
from nlu.normalize import strip_diacritics

BUSINESS_WORDS = ("kinh doanh", "business", "cua hang", "shop", "san xuat")
MAX_KWH = 1_000_000


def tier_lines(tariff: TariffInfo, lang: str) -> str:
    lines, lower = [], 0
    for tier in tariff.tiers:
        upper = tier["up_to"]
        if upper is None:
            span = f"trên {lower} kWh" if lang == "vi" else f"above {lower} kWh"
        else:
            span = f"{lower + 1}–{upper} kWh" if lower else f"0–{upper} kWh"
            lower = upper
        lines.append(f"• {span}: {format_vnd(tier['price'], lang)}/kWh")
    return "\n".join(lines)


def amount_values(kwh: int, tariff: TariffInfo, lang: str) -> dict[str, Any]:
    """The values of utter_tariff_estimate / utter_bill_breakdown: each tier, subtotal, VAT, total."""
    amount = compute_amount(kwh, tariff.tiers, tariff.vat_percent)
    tier = "Bậc" if lang == "vi" else "Tier"
    lines = "\n".join(
        f"• {tier} {line.tier}: {line.kwh} kWh × {format_vnd(line.price, lang)} = {format_vnd(line.amount, lang)}"
        for line in amount.lines
        if line.kwh
    )
    return {
        "kwh": kwh,
        "tariff": tariff.name,
        "lines": lines,
        "subtotal": format_vnd(amount.subtotal, lang),
        "vat_percent": tariff.vat_percent,
        "vat": format_vnd(amount.vat, lang),
        "total": format_vnd(amount.total, lang),
    }


class ActionTariffInfo(Action):
    def name(self) -> str:
        return "action_tariff_info"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        lang = language(tracker)
        text = strip_diacritics(str(tracker.latest_message.get("text") or "")).lower()
        tariff = await current_tariff("business" if any(w in text for w in BUSINESS_WORDS) else "residential")
        kwh = next((e["value"] for e in tracker.latest_message.get("entities") or [] if e.get("entity") == "kwh"), None)
        if isinstance(kwh, int) and 0 <= kwh <= MAX_KWH:
            dispatcher.utter_message(response="utter_tariff_estimate", **amount_values(kwh, tariff, lang))
            return []
        dispatcher.utter_message(
            response="utter_tariff_table",
            tariff=tariff.name,
            effective_from=tariff.effective_from.strftime("%d/%m/%Y"),
            vat_percent=tariff.vat_percent,
            lines=tier_lines(tariff, lang),
        )
        return []
