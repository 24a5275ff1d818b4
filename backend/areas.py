"""Matching places as customers type them ("P. Bến Thành", "phuong ben thanh q1") against the
areas the backend knows (customers' wards, incidents, planned outages).

An area is keyed by its ward name without diacritics, unit words or punctuation; a district
mentioned in the text must not contradict the area's district.
"""

from __future__ import annotations

import re
import unicodedata

_UNIT_WORDS = re.compile(
    r"\b(phuong|xa|thi tran|dac khu|quan|huyen|thi xa|thanh pho|tp|tinh|p|q|x|tt)\b\.?", re.IGNORECASE
)
_NON_WORD = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")
_DISTRICT_MENTION = re.compile(r"\b(?:quan|q)\s*\.?\s*(\d{1,2})\b")


def plain(text: str) -> str:
    """Lower-case, no diacritics ("đ" -> "d"), punctuation as spaces, single spaces."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn").lower()
    return _SPACES.sub(" ", _NON_WORD.sub(" ", stripped)).strip()


def area_key(name: str) -> str:
    """'Phường Bến Thành' -> 'ben thanh'; 'Quận 1' -> '1'."""
    return _SPACES.sub(" ", _UNIT_WORDS.sub(" ", plain(name))).strip()


def mentions_area(text: str, ward: str, district: str) -> bool:
    """Does free text name this ward (and not another numbered district than the ward's)?"""
    haystack = f" {plain(text)} "
    key = area_key(ward)
    if not key or f" {key} " not in haystack:
        return False
    district_number = _DISTRICT_MENTION.search(plain(district))
    mentioned = _DISTRICT_MENTION.findall(haystack)
    return not (mentioned and district_number and district_number.group(1) not in mentioned)
