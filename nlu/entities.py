"""Entity extractors: customer codes, phones, ticket ids, billing months, kWh and synonyms.

Every extractor returns entities in Rasa's shape: entity, value, start, end, confidence,
extractor. Offsets refer to the text the customer sent (after `clean`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from nlu.normalize import strip_diacritics

Entity = dict[str, Any]

CUSTOMER_CODE_RE = re.compile(r"(?<![A-Za-z0-9])(?![Yy][Cc]\d)([A-Za-z]{2})\s?(\d{10,11})(?![0-9])")
# +84 / 84 / 0 prefix, then 9–10 digits possibly grouped by spaces, dots or dashes.
PHONE_RE = re.compile(r"(?<![\w+])(?:\+84|84|0)[\s.\-]?(?:\d[\s.\-]?){8,9}\d(?!\w)")
TICKET_RE = re.compile(r"(?<![A-Za-z0-9])[Yy][Cc][\s\-]?(\d{8,12})(?![0-9])")
KWH_RE = re.compile(r"(?<![\w.,])(\d{1,6})\s*(?:kwh|kw\s?h|số điện|số|so dien|so|ký|ky|kí|ki)(?!\w)", re.IGNORECASE)
DIGIT_RE = re.compile(r"\d")  # what the patterns above all need somewhere: a message without is done at once
CUSTOMER_CODE_SHAPE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{6,14}(?![0-9])")


def _entity(name: str, value: Any, start: int, end: int, extractor: str) -> Entity:
    return {"entity": name, "value": value, "start": start, "end": end, "confidence": 1.0, "extractor": extractor}


def normalize_phone(raw: str) -> str | None:
    """'+84 912 345 678' / '0912.345.678' -> '0912345678'; None if not a Vietnamese number."""
    digits = re.sub(r"\D", "", raw)
    if raw.strip().startswith("+84") or (digits.startswith("84") and len(digits) in (11, 12)):
        digits = "0" + digits[2:]
    if not digits.startswith("0") or len(digits) not in (10, 11):
        return None
    return digits


def extract_identifiers(text: str) -> list[Entity]:
    """Customer codes (upper-cased), phones (normalised) and ticket ids."""
    found: list[Entity] = []
    if not DIGIT_RE.search(text):  # each of them has digits
        return found
    for m in CUSTOMER_CODE_RE.finditer(text):
        found.append(_entity("customer_code", (m.group(1) + m.group(2)).upper(), m.start(), m.end(), "RegexEntityExtractor"))
    for m in TICKET_RE.finditer(text):
        found.append(_entity("ticket_id", "YC" + m.group(1), m.start(), m.end(), "RegexEntityExtractor"))
    taken = [(e["start"], e["end"]) for e in found]
    for m in PHONE_RE.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in taken):
            continue
        phone = normalize_phone(m.group(0))
        if phone:
            found.append(_entity("phone", phone, m.start(), m.end(), "RegexEntityExtractor"))
    return found


def extract_kwh(text: str) -> list[Entity]:
    if not DIGIT_RE.search(text):
        return []
    return [_entity("kwh", int(m.group(1)), m.start(), m.end(), "RegexEntityExtractor") for m in KWH_RE.finditer(text)]


_MONTH_NAMES = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12,
}
_NAME_ALT = "|".join(sorted(_MONTH_NAMES, key=len, reverse=True))
# Matched on the diacritics-free, lower-cased text (same length as the original).
_THANG = r"(?:thang|thg|th)"
# Month words, matched on the text WITH diacritics ("tháng sáu" is June, "tháng sau" next month).
_MONTH_WORDS = {
    "mười hai": 12, "chạp": 12, "mười một": 11, "mười": 10, "chín": 9, "tám": 8, "bảy": 7,
    "sáu": 6, "năm": 5, "tư": 4, "bốn": 4, "ba": 3, "hai": 2, "giêng": 1, "một": 1,
}
_MONTH_WORD_RE = re.compile(
    r"\btháng\s+(" + "|".join(sorted(_MONTH_WORDS, key=len, reverse=True)) + r")(?!\w)(?!\s+(?:ngoái|nay|trước|sau)\b)"
)
# Matched on the diacritics-free, lower-cased text (same length as the original).
# The third field: what the text must contain for the pattern to match at all (a quick test).
_MONTH_PATTERNS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(rf"\b(\d{{1,2}}|hai|ba|bon) {_THANG} truoc\b|\b{_THANG} truoc nua\b|\b(\d{{1,2}}|two|three) months? ago\b"), "months_ago", "th"),
    (re.compile(rf"\b{_THANG}\s*(?:truoc|trc|vua roi|vua qua|roi)\b"), "previous", "th"),
    (re.compile(r"\blast month\b|\bprevious month\b"), "previous", "th"),
    (re.compile(rf"\b{_THANG}\s*(?:nay|hien tai)\b|\bthis month\b|\bcurrent month\b"), "current", "th"),
    (re.compile(rf"\b{_THANG}\s*(\d{{1,2}})\s*(?:/|-|\s*nam\s*)\s*(\d{{4}})\b"), "month_year", "th"),
    (re.compile(r"\b(\d{4})-(\d{1,2})\b"), "year_month", "digit"),
    (re.compile(r"(?<![\d/-])(\d{1,2})\s*[/-]\s*(\d{4})\b"), "month_year", "digit"),
    (re.compile(rf"\b{_THANG}\s*(\d{{1,2}})\b(?!\s*/)"), "month", "th"),
    (re.compile(rf"\b({_NAME_ALT})\.?(?:\s+(\d{{4}}))?\b"), "named", ""),
]
_LAST_YEAR_RE = re.compile(r"^\s*(?:nam ngoai|nam truoc|nam roi|(?:of )?last year)\b")
_CAPITAL_T_RE = re.compile(r"(?<![A-Za-z0-9])T(\d{1,2})(?![\d/])")  # "tiền điện T10"


def _period(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def _latest_past(month: int, today: date) -> str:
    """'tháng 9' means the most recent September that is not in the future."""
    year = today.year if month <= today.month else today.year - 1
    return _period(year, month)


def _months_before(today: date, count: int) -> str:
    index = today.year * 12 + today.month - 1 - count
    return _period(index // 12, index % 12 + 1)


_COUNT_WORDS = {"hai": 2, "ba": 3, "bon": 4, "two": 2, "three": 3}


# A month mentioned in a message, before it is resolved against a date: (start, end, kind,
# number, year, last_year). Kinds: "ago" (`number` months before), "current", "period"
# (`year`-`number`), "latest" (the latest month `number` up to the date).
_Mention = tuple[int, int, str, int, int, bool]
_last_mentions: tuple[str, tuple[_Mention, ...]] = ("", ())


def extract_months(text: str, today: date) -> list[Entity]:
    """Billing periods resolved to 'YYYY-MM' relative to `today`."""
    found = []
    for start, end, kind, number, year, last_year in _month_mentions(text):
        if kind == "ago":
            value = _months_before(today, number)
        elif kind == "current":
            value = _period(today.year, today.month)
        elif kind == "period":
            value = _period(year, number)
        else:
            value = _latest_past(number, today)
        if last_year:  # "tháng 9 năm ngoái" / "August last year": the same month a year earlier.
            value = f"{today.year - 1}-{value[5:]}"
        found.append(_entity("month", value, start, end, "MonthExtractor"))
    return found


def month_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each month mentioned in `text`: they do not depend on the date."""
    return [(start, end) for start, end, *_ in _month_mentions(text)]


def _month_mentions(text: str) -> tuple[_Mention, ...]:
    """Where `text` mentions a month, whatever the date. A parse asks twice about the same text
    (to classify it, then for its entities): the last answer is kept."""
    global _last_mentions
    last = _last_mentions
    if last[0] == text:
        return last[1]
    plain = strip_diacritics(text).lower()
    found: list[_Mention] = []

    def add(start: int, end: int, kind: str, number: int, year: int = 0) -> None:
        if not any(m[0] < end and start < m[1] for m in found):
            after = _LAST_YEAR_RE.match(plain[end:])
            found.append((start, end + after.end() if after else end, kind, number, year, after is not None))

    has = {"th": "th" in plain, "digit": DIGIT_RE.search(plain) is not None, "": True}  # "month" has "th" too
    for pattern, kind, needs in _MONTH_PATTERNS:
        if not has[needs]:
            continue
        for m in pattern.finditer(plain):
            if any(e[0] < m.end() and m.start() < e[1] for e in found):
                continue
            if kind == "months_ago":
                count_text = m.group(1) or m.group(2)
                count = 2 if count_text is None else _COUNT_WORDS.get(count_text) or int(count_text)
                if 1 <= count <= 24:
                    add(m.start(), m.end(), "ago", count)
            elif kind == "previous":
                add(m.start(), m.end(), "ago", 1)
            elif kind == "current":
                add(m.start(), m.end(), "current", 0)
            elif kind in ("month_year", "year_month"):
                mo, y = (int(m.group(1)), int(m.group(2))) if kind == "month_year" else (int(m.group(2)), int(m.group(1)))
                if 1 <= mo <= 12:
                    add(m.start(), m.end(), "period", mo, y)
            elif kind == "month":
                mo = int(m.group(1))
                if 1 <= mo <= 12:
                    add(m.start(), m.end(), "latest", mo)
            elif kind == "named":
                if m.group(1) == "may" and not m.group(2):
                    continue  # "may I pay" is not a month
                mo = _MONTH_NAMES[m.group(1)]
                if m.group(2):
                    add(m.start(), m.end(), "period", mo, int(m.group(2)))
                else:
                    add(m.start(), m.end(), "latest", mo)
    lowered = text.lower()
    if "tháng" in lowered:
        for m in _MONTH_WORD_RE.finditer(lowered):
            add(m.start(), m.end(), "latest", _MONTH_WORDS[m.group(1)])
    if has["digit"]:
        for m in _CAPITAL_T_RE.finditer(text):
            month = int(m.group(1))
            if 1 <= month <= 12:
                add(m.start(), m.end(), "latest", month)
    result = tuple(found)
    _last_mentions = (text, result)
    return result


@dataclass
class SynonymMatcher:
    """Finds known surface forms (e.g. 'lắp điện mới') and maps them to canonical values.

    `entity_of_value` says which entity a canonical value belongs to (from annotations)."""

    synonyms: dict[str, str]
    entity_of_value: dict[str, str]

    def __post_init__(self) -> None:
        forms: dict[str, str] = {}
        for surface, value in self.synonyms.items():
            if value in self.entity_of_value:
                forms[strip_diacritics(surface).lower()] = value
        alternation = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True) if f)
        self._forms = forms
        self._pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)") if alternation else None
        self._last: tuple[str, tuple[tuple[str, str, int, int], ...]] = ("", ())

    def extract(self, text: str) -> list[Entity]:
        if self._pattern is None:
            return []
        last = self._last  # a parse asks twice about the same text (to classify it, for entities)
        if last[0] == text:
            spans = last[1]
        else:
            plain = strip_diacritics(text).lower()
            spans = tuple(
                (self.entity_of_value[value], value, m.start(), m.end())
                for m in self._pattern.finditer(plain)
                for value in (self._forms[m.group(0)],)
            )
            self._last = (text, spans)
        return [_entity(entity, value, start, end, "EntitySynonymMapper") for entity, value, start, end in spans]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_last"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._last = ("", ())


def looks_like_customer_code(text: str) -> bool:
    """Something typed as a code but of the wrong shape (e.g. 'PE04123')."""
    return bool(CUSTOMER_CODE_SHAPE.search(text))
