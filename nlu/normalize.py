"""Text normalisation for Vietnamese chat: one canonical form plus a diacritics-free view.

Customers type with and without diacritics, with decomposed Unicode from some keyboards,
with old and new tone-mark placement ("hoà"/"hòa") and with chat abbreviations ("ko", "hđ").
Every downstream component sees the same `Normalized` text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

_RESOURCES = Path(__file__).parent / "resources"

# Old-style tone placement ("hoà", "thuý") moved to the style most keyboards produce ("hòa",
# "thúy"), only when the diphthong ends the word: "hoàn" is the same in both styles.
_TONED = {"a": "àáảãạ", "e": "èéẻẽẹ", "y": "ỳýỷỹỵ"}
_BASE_TONED = {"o": "òóỏõọ", "u": "ùúủũụ"}
_TONE_FIXES: dict[str, str] = {}
for first, second in (("o", "a"), ("o", "e"), ("u", "y")):
    for i, toned_second in enumerate(_TONED[second]):
        _TONE_FIXES[first + toned_second] = _BASE_TONED[first][i] + second
_TONE_RE = re.compile("(" + "|".join(_TONE_FIXES) + r")(?=\W|$)")

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class Normalized:
    """`text`: NFC, lower-case, unified tone marks, abbreviations expanded.
    `plain`: the same without diacritics ("đ" -> "d"), for customers who type without them."""

    text: str
    plain: str


def clean(raw: str) -> str:
    """Make any input safe to process: valid UTF-8, NFC, no control characters, single spaces."""
    safe = raw.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
    safe = unicodedata.normalize("NFC", safe)
    safe = _CONTROL_RE.sub(" ", safe)
    return _SPACE_RE.sub(" ", safe).strip()


def strip_diacritics(text: str) -> str:
    """"Tiền điện" -> "Tien dien"."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


@lru_cache(maxsize=1)
def abbreviations() -> dict[str, str]:
    """Chat abbreviations from `resources/abbreviations.yml` (data, not code)."""
    with open(_RESOURCES / "abbreviations.yml", encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return {str(k).lower(): str(v) for k, v in (data.get("abbreviations") or {}).items()}


def expand_abbreviations(text: str) -> str:
    table = abbreviations()
    return _TOKEN_RE.sub(lambda m: table.get(m.group(0), m.group(0)), text)


def unify_tone_marks(text: str) -> str:
    return _TONE_RE.sub(lambda m: _TONE_FIXES[m.group(1)], text)


def normalize(raw: str) -> Normalized:
    text = unify_tone_marks(clean(raw).lower())
    text = expand_abbreviations(text)
    return Normalized(text=text, plain=strip_diacritics(text))


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)
