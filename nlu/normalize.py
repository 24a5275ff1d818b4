"""Text normalisation for Vietnamese chat: one canonical form plus two simplified views.

Customers type with and without diacritics, with decomposed Unicode from some keyboards,
with old and new tone-mark placement ("hoà"/"hòa"), with chat abbreviations ("ko", "hđ") and
with stretched words ("alooo", "khongggg"). Every downstream component sees the same
`Normalized` text:

* `text`: the canonical form (NFC, lower-case, unified tone marks, abbreviations expanded);
* `toneless`: `text` without the five tone marks but with vowel quality ("tiền" -> "tiên"),
  since many typos and some keyboards drop tones while keeping â/ê/ô/ơ/ư/ă/đ;
* `plain`: `text` without any diacritic ("đ" -> "d"), for customers who type without them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
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

# Combining grave, acute, tilde, hook above, dot below: the tones. Circumflex (U+0302), breve
# (U+0306) and horn (U+031B) change the vowel itself and are kept by `strip_tones`.
_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")

_TOKEN_RE = re.compile(r"\w+", re.UNICODE)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE_RE = re.compile(r"\s+")
# Three or more of the same letter: no Vietnamese or English word has that, chat stretching
# does ("alooo", "khongggg", "hiiii"). Digits are left alone ("1000").
_REPEAT_RE = re.compile(r"([^\W\d_])\1{2,}")


@dataclass(frozen=True)
class Normalized:
    """`text`: NFC, lower-case, unified tone marks, stretched letters collapsed, abbreviations
    expanded. `toneless`: the same without tone marks. `plain`: without any diacritic."""

    text: str
    toneless: str
    plain: str


def clean(raw: str) -> str:
    """Make any input safe to process: valid UTF-8, NFC, no control characters, single spaces."""
    if raw.isprintable() and unicodedata.is_normalized("NFC", raw) and "  " not in raw and raw.strip(" ") == raw:
        # Clean already (a parse cleans its text, then its views clean theirs): printable rules
        # out surrogates, control characters and every space but " ".
        return raw
    safe = raw.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become "?"
    safe = unicodedata.normalize("NFC", safe)
    safe = _CONTROL_RE.sub(" ", safe)
    return _SPACE_RE.sub(" ", safe).strip()


def _decompose_and_drop_marks(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def _latin_table(convert: Callable[[str], str]) -> dict[int, str | None]:
    """What `convert` makes of each Latin letter with marks (Vietnamese ones included), where it
    changes it: one `str.translate` then does it for a whole message."""
    letters = (chr(code) for code in [*range(0x00C0, 0x0250), *range(0x1E00, 0x1F00)])
    return {ord(letter): converted for letter in letters if (converted := convert(letter)) != letter}


# ... and combining marks dropped, as `_decompose_and_drop_marks` does.
_LATIN_PLAIN = _latin_table(_decompose_and_drop_marks) | {
    code: None for code in range(0x0300, 0x0370) if unicodedata.category(chr(code)) == "Mn"
}


def strip_diacritics(text: str) -> str:
    """"Tiền điện" -> "Tien dien"."""
    if text.isascii():
        return text
    plain = text.translate(_LATIN_PLAIN)
    # Other scripts ("й", "ά") take the general path; the letters translated so far are unchanged by it.
    return plain if plain.isascii() else _decompose_and_drop_marks(plain)


def _strip_tones_slowly(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(ch for ch in decomposed if ch not in _TONE_MARKS))


_TONELESS_LATIN = _latin_table(_strip_tones_slowly)
_NOT_LATIN_RE = re.compile("[^\x00-\u024f\u1e00-\u1eff]")


def strip_tones(text: str) -> str:
    """"tiền điện" -> "tiên điên": tone marks removed, vowel quality (â ê ô ơ ư ă) and đ kept."""
    if text.isascii():
        return text
    if unicodedata.is_normalized("NFC", text) and not _NOT_LATIN_RE.search(text):
        # Precomposed Latin letters one by one; other scripts and loose combining marks
        # (outside these ranges) take the general path.
        return text.translate(_TONELESS_LATIN)
    return _strip_tones_slowly(text)


def collapse_repeats(text: str) -> str:
    """"alooo" -> "alo", "khongggg" -> "khong": a letter typed three or more times counts once."""
    return _REPEAT_RE.sub(r"\1", text)


@lru_cache(maxsize=1)
def abbreviations() -> dict[str, str]:
    """Chat abbreviations from `resources/abbreviations.yml` (data, not code)."""
    with open(_RESOURCES / "abbreviations.yml", encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return {str(k).lower(): str(v) for k, v in (data.get("abbreviations") or {}).items()}


@lru_cache(maxsize=1)
def _abbreviation_re() -> re.Pattern[str] | None:
    """The abbreviations as whole words: only they cost a replacement, not every word."""
    words = sorted((k for k in abbreviations() if _TOKEN_RE.fullmatch(k)), key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)") if words else None


def expand_abbreviations(text: str) -> str:
    """Each word that is an abbreviation in `abbreviations()` replaced by its expansion."""
    pattern = _abbreviation_re()
    if pattern is None:
        return text
    table = abbreviations()
    return pattern.sub(lambda m: table[m.group(0)], text)


def unify_tone_marks(text: str) -> str:
    return _TONE_RE.sub(lambda m: _TONE_FIXES[m.group(1)], text)


def normalize(raw: str, *, collapse: bool = True, expand: bool = True) -> Normalized:
    """The three views of a message; `collapse` / `expand` switch off the two chat-specific steps."""
    text = unify_tone_marks(clean(raw).lower())
    if collapse:
        text = collapse_repeats(text)
    if expand:
        text = expand_abbreviations(text)
    return Normalized(text=text, toneless=strip_tones(text), plain=strip_diacritics(text))


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text)


# English inflections, stripped for the `stems` view so "bills", "billed" and "billing" count as
# one word. Vietnamese is untouched: no Vietnamese syllable ends in -s, -ed or -ing, and none
# ending in -e is longer than four letters ("nghe", "khoe"). Mask tokens ("zzcode") are kept.
_ENGLISH_WORD_RE = re.compile(r"\b(?!zz)[a-z]{4,}\b")


def _stem(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if word[-1] == word[-2] and word[-1] not in "lsz":  # "stopped" -> "stop"
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 4:  # "charge", "charged" -> "charg"
        word = word[:-1]
    return word


# Per-word caches (stems here; token forms, n-grams and tagger attributes elsewhere) stop growing
# at this many words: customers use a few thousand, so only junk floods would reach it.
WORDS_KEPT = 65536
_STEMS: dict[str, str] = {}  # word -> stem


def _cached_stem(match: re.Match[str]) -> str:
    word = match.group(0)
    stem = _STEMS.get(word)
    if stem is None:
        stem = _stem(word)
        if len(_STEMS) < WORDS_KEPT:
            _STEMS[word] = stem
    return stem


def stem_english(text: str) -> str:
    """"paid bills, billing" -> "paid bill, bill": a light suffix stripper for English words of
    the diacritics-free view; not a linguist's stemmer, just fewer spellings of one word."""
    return _ENGLISH_WORD_RE.sub(_cached_stem, text)
