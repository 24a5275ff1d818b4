"""How amounts, dates and billing periods are shown to customers, in Vietnamese or English."""

from __future__ import annotations

from datetime import date

from backend.money import format_vnd

__all__ = ["format_date", "format_period", "format_vnd", "previous_period"]


def format_period(period: str) -> str:
    year, month = period.split("-")
    return f"{month}/{year}"


def format_date(day: date, lang: str) -> str:
    return day.strftime("%d/%m/%Y") if lang == "vi" else day.strftime("%d %b %Y")


def previous_period(period: str) -> str:
    year, month = (int(p) for p in period.split("-"))
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"
