"""Turns a message into the text views the intent classifier learns from.

Identifiers are masked ("PE0400012345" -> "zzcode") so the classifier learns that a message
*carries* a customer code, not which one: codes and phones it never saw classify the same.
"""

from __future__ import annotations

import re

from nlu.entities import CUSTOMER_CODE_RE, PHONE_RE, TICKET_RE
from nlu.normalize import clean, normalize

_MASKS = [(TICKET_RE, " zzticket "), (CUSTOMER_CODE_RE, " zzcode "), (PHONE_RE, " zzphone ")]
_NUMBER_RE = re.compile(r"\d+")
_EMOJI_RE = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")


def mask_identifiers(text: str) -> str:
    for pattern, token in _MASKS:
        text = pattern.sub(token, text)
    return _NUMBER_RE.sub(" zznum ", text)


def views(raw: str) -> tuple[str, str]:
    """(normalised text with diacritics, diacritics-free text), identifiers masked."""
    masked = mask_identifiers(clean(raw))
    masked = _EMOJI_RE.sub(lambda m: " zzemoji ", masked)
    norm = normalize(masked)
    return norm.text, norm.plain
