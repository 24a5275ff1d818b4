"""Dates as customers type them ("ngày mai", "thứ 2 tuần sau", "28/11", "Dec 3"), resolved
against the message date. Used for preferred appointment dates and outage schedules."""

from __future__ import annotations

import re
from datetime import date, timedelta

from nlu.normalize import clean, strip_diacritics

_WEEKDAYS = {
    "thu 2": 0, "thu hai": 0, "monday": 0, "thu 3": 1, "thu ba": 1, "tuesday": 1,
    "thu 4": 2, "thu tu": 2, "wednesday": 2, "thu 5": 3, "thu nam": 3, "thursday": 3,
    "thu 6": 4, "thu sau": 4, "friday": 4, "thu 7": 5, "thu bay": 5, "saturday": 5,
    "chu nhat": 6, "cn": 6, "sunday": 6,
}
_MONTHS = {
    "jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
    "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9, "sept": 9,
    "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12,
}
_RELATIVE = [
    (re.compile(r"\b(hom nay|bua nay|today)\b"), 0),
    (re.compile(r"\b(ngay mai|mai|tomorrow)\b"), 1),
    (re.compile(r"\b(ngay kia|mot|day after tomorrow)\b"), 2),
]
_IN_DAYS = re.compile(r"\b(\d{1,2})\s*(?:ngay nua|ngay toi|days? from now|days?)\b|\bin (\d{1,2}) days?\b")
_DMY = re.compile(r"\b(\d{1,2})\s*[/\-.]\s*(\d{1,2})(?:\s*[/\-.]\s*(\d{2,4}))?\b")
_ISO = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_NGAY_THANG = re.compile(r"\bngay\s*(\d{1,2})\s*thang\s*(\d{1,2})(?:\s*nam\s*(\d{4}))?\b")
_EN_MONTH_DAY = re.compile(rf"\b({'|'.join(_MONTHS)})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s*(\d{{4}}))?\b")
_EN_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({'|'.join(_MONTHS)})\b(?:\s*(\d{{4}}))?")


def _safe(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _upcoming(month: int, day: int, year: int | None, today: date) -> date | None:
    """Without a year, a day-month means this year's, or next year's when this year's is more
    than two months gone ("5/1" in December is next January; "25/11" on 26/11 is yesterday)."""
    if year is not None:
        return _safe(year + 2000 if year < 100 else year, month, day)
    found = _safe(today.year, month, day)
    if found is not None and (today - found).days > 60:
        found = _safe(today.year + 1, month, day)
    return found


def parse_date(text: str, today: date) -> date | None:
    """The first date the text names, or None."""
    plain = strip_diacritics(clean(text)).lower()
    if m := _ISO.search(plain):
        return _safe(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := _NGAY_THANG.search(plain):
        return _upcoming(int(m.group(2)), int(m.group(1)), int(m.group(3)) if m.group(3) else None, today)
    if m := _DMY.search(plain):
        return _upcoming(int(m.group(2)), int(m.group(1)), int(m.group(3)) if m.group(3) else None, today)
    if m := _EN_MONTH_DAY.search(plain):
        return _upcoming(_MONTHS[m.group(1)], int(m.group(2)), int(m.group(3)) if m.group(3) else None, today)
    if m := _EN_DAY_MONTH.search(plain):
        return _upcoming(_MONTHS[m.group(2)], int(m.group(1)), int(m.group(3)) if m.group(3) else None, today)
    for pattern, days in _RELATIVE:
        if pattern.search(plain):
            return today + timedelta(days=days)
    if m := _IN_DAYS.search(plain):
        return today + timedelta(days=int(m.group(1) or m.group(2)))
    for name, weekday in sorted(_WEEKDAYS.items(), key=lambda kv: -len(kv[0])):
        if re.search(rf"\b{name}\b", plain):
            ahead = (weekday - today.weekday()) % 7 or 7
            if re.search(r"\b(tuan sau|tuan toi|next week)\b", plain) and ahead < 7:
                ahead += 7 if (today + timedelta(days=ahead)).isocalendar()[1] == today.isocalendar()[1] else 0
            return today + timedelta(days=ahead)
    return None
