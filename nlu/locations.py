"""The `location` entity: places customers name in chat, resolved to Vietnam's administrative units.

On 1 July 2025 Vietnam went from 63 provinces to 34 and abolished districts (two levels:
province and ward/commune). Customers still use old names ("Quận 1", "Bình Dương",
"P Tan Phong Q7 TPHCM") as well as new ones ("phường Bến Thành", "Thành phố Huế").

`LocationExtractor.extract(text)` finds them and returns Rasa-shaped entities with a
`resolved` dict: the 2025 province (and ward when it can tell) plus the legacy province, district
and ward the customer named. It combines

* a gazetteer of every unit, legacy and 2025, built from the data `vietnamadminunits` ships
  (its keyword aliases such as "q7", "p14", "quan9", "hcm", and its legacy -> 2025 ward table)
  and `vietnam_provinces` (official 2025 names and codes), matched token by token on the
  diacritics-free text, case-insensitive, with type abbreviations (P., Q., TP, H., TX...);
* the CRF in `nlu.address_tagger` for street parts ("12 Nguyễn Trãi", "ngõ 52 Tô Ngọc Vân"),
  merged with adjacent units into one span.

Why not call `vietnamadminunits.parse_address` / `convert_address` per message: they take
0.3-3 ms per call (they compile regular expressions on every call), match keywords as substrings
without word boundaries ("Phường Trung Hòa" parses as "Huyện Ứng Hòa"), need commas between
levels, and `convert_address` geocodes over the network (ArcGIS) when an old ward was split and a
street is present. The tables are the library's; the matching and resolution here are ours.

The gazetteer is built once per process, lazily (about a second), and is never pickled: a saved
`LocationExtractor` holds only the CRF's bytes and a few extra names.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from vietnam_provinces import Province, Ward

from nlu.address_tagger import (
    MAX_TOKENS,
    STREET_WORDS,
    WORD_RE,
    AddressTagger,
    AdminSpan,
    Token,
    tokenize,
)
from nlu.entities import extract_identifiers, extract_kwh, month_spans
from nlu.normalize import strip_diacritics, unify_tone_marks
from nlu.training_data import TrainingData

log = logging.getLogger(__name__)

ENTITY = "location"
EXTRACTOR = "LocationExtractor"
MAX_CHARS = 2000  # longer messages: locations are looked for in the first part only
MAX_WORDS = 300  # and in their first 300 words
MAX_NGRAM = 8  # longest unit name in tokens ("thành phố hồ chí minh" is 5)
MAX_COMBOS = 4000  # cap on readings kept while resolving one chain of units
MAX_UNITS = 24  # units looked at per message: an address names three or four
MAX_CHAIN = 6  # units in one address: street-level pieces aside, ward, district, province

_RESOURCES = Path(__file__).parent / "resources"

# Abbreviated or English unit types written before a name, and the type prefixes the
# vietnamadminunits keywords use for them ("p tan phong" -> "phuongtanphong").
_PREFIXES: dict[str, tuple[str, ...]] = {
    "p": ("phuong",),
    "ph": ("phuong",),
    "f": ("phuong",),
    "ward": ("phuong",),
    "x": ("xa",),
    "commune": ("xa",),
    "tt": ("thitran",),
    "q": ("quan",),
    "h": ("huyen",),
    "tx": ("thixa",),
    "tp": ("thanhpho",),
    "district": ("quan", "huyen", "thixa", "thanhpho"),
    "province": ("tinh", "thanhpho"),
    "city": ("thanhpho",),
}
# English unit types written after a name: "Cau Giay district", "Thu Duc city".
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "district": ("quan", "huyen", "thixa", "thanhpho"),
    "ward": ("phuong",),
    "commune": ("xa",),
    "city": ("thanhpho",),
    "province": ("tinh", "thanhpho"),
    "town": ("thitran", "thixa"),
}
# How the keyword lists spell unit types, to tell "phuongbenthanh" (typed) from "benthanh".
_TYPE_STRINGS = (
    "thanhpho", "thitran", "thixa", "dackhu", "phuong", "huyen", "quan", "tinh", "xa", "sa",
    "tt", "tx", "tp", "p", "f", "q", "x", "h", "ward", "district",
)
_TYPE_SET = frozenset(_TYPE_STRINGS)
# Words right before a bare name that say a place follows ("mất điện ở Bến Thành").
_CUES_1 = frozenset("o tai khu vung thuoc gan quanh in at near around".split())
_CUES_2 = frozenset({"khu vuc", "dia ban", "xung quanh"})

_NAME_GAP = re.compile(r"[ \t]*[-–.']?[ \t]*")  # inside one name: "Bà Rịa - Vũng Tàu", "p.7"
_PREFIX_GAP = re.compile(r"[ \t]*\.?[ \t]*")  # after "P", "Q.", "TP."
_CHAIN_GAP = re.compile(r"[\s,;.\-–/()]{0,5}")  # between units of one address: ", " or " - "
_HOUSE_NUMBER = re.compile(r"\d+[a-z]?")
_DIGITS = re.compile(r"\d+")
_PARENTHESES = re.compile(r"\([^)]*\)")
# Numbered units written "q7", "district 7", "p.7", "f7", "ward 7": the type to show.
_NUMBERED_KIND = {
    "quan": "Quận", "q": "Quận", "district": "Quận",
    "phuong": "Phường", "p": "Phường", "f": "Phường", "ward": "Phường",
}

# Agreement between two units of one address, by the most specific field they share.
_AGREEMENT = {"lw": 3, "nw": 3, "ld": 2, "lp": 1, "np": 1}


class Division(NamedTuple):
    """One administrative unit, legacy (before July 2025) or current.

    Ids: `np` 2025 province code, `nw` 2025 ward code (for a legacy ward: the ward it became,
    None if it was split), `lp`/`ld`/`lw` vietnamadminunits keys of the legacy province,
    district and ward ("thanhphohochiminh", "thanhphohochiminh_quan1", ...).
    """

    level: int  # 1 province, 2 district, 3 ward/commune
    current: bool  # a unit of the 2025 (34-province) scheme
    name: str  # "Phường Bến Thành"
    short: str  # "Bến Thành"
    accents: tuple[tuple[str, tuple[str, ...]], ...]  # its names: (plain key, accented syllables)
    np: int | None
    nw: int | None
    lp: str | None
    ld: str | None
    lw: str | None


@dataclass(slots=True)
class UnitMatch:
    """A gazetteer hit in a message: token range, character span, candidate divisions."""

    start: int
    end: int
    first: int  # word-token indices, inclusive
    last: int
    cands: tuple[int, ...]
    typed: bool  # written with a unit type ("phường", "Q", "district") or as an explicit alias
    strong: bool  # plausible on its own; weak ones need a cue word, a chain or the CRF
    verified: bool = True  # diacritics typed were checked against the name (not an alias)
    key: str = ""  # the keyword that matched ("phuongbenthanh", "q7", "benthanh")


def _plain(text: str) -> str:
    return strip_diacritics(unicodedata.normalize("NFC", text)).lower()


def _accented(text: str) -> str:
    return unify_tone_marks(unicodedata.normalize("NFC", text).lower())


def _squash(text: str) -> str:
    """'Phường  Rạch Dừa' -> 'Phường Rạch Dừa'."""
    return " ".join(text.split())


def _short(name: str) -> str:
    """'Cao Lãnh (Thành phố)' -> 'Cao Lãnh': the library marks short names that two units of
    one province share with their type; the type comes from the full name anyway."""
    return _squash(_PARENTHESES.sub(" ", name))


def _syllables(*names: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(diacritics-free key, accented syllables) of each name, to check what was typed."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for name in names:
        syllables = tuple(WORD_RE.findall(_accented(name)))
        entry = (strip_diacritics("".join(syllables)), syllables)
        if syllables and entry not in found:
            found.append(entry)
    return tuple(found)


def _is_typed(keyword: str, keywords: set[str]) -> bool:
    """'phuongbenthanh', 'p14', 'q7', 'tphcm' are typed; 'benthanh', 'hcm' are bare names."""
    if any(ch.isdigit() for ch in keyword):
        return True
    for other in keywords:
        if len(other) < len(keyword):
            if keyword.endswith(other) and keyword[: len(keyword) - len(other)] in _TYPE_SET:
                return True
            if keyword.startswith(other) and keyword[len(other) :] in _TYPE_SET:
                return True
    return False


def _alias_key(alias: str) -> str:
    """'TP.HCM' -> 'tphcm', 'Sài Gòn' -> 'saigon': the way vietnamadminunits writes keywords."""
    return "".join(ch for ch in _plain(alias) if ch.isalnum())


def _alias_keys(aliases: Iterable[str]) -> list[str]:
    """Keywords for province aliases, with "tỉnh"/"thành phố" before the longer ones as the
    library has for official names ("Tỉnh Thừa Thiên Huế")."""
    keys = []
    for alias in aliases:
        key = _alias_key(alias)
        keys.append(key)
        if len(alias.split()) > 1:
            keys += ["tinh" + key, "thanhpho" + key]
    return keys


def _data_dir() -> Path:
    """vietnamadminunits' data folder, found without importing the package (its import loads
    geopy and shapely and compiles large regular expressions we do not use)."""
    spec = importlib.util.find_spec("vietnamadminunits")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("vietnamadminunits is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


class Gazetteer:
    """Every legacy and 2025 unit, indexed by diacritics-free keyword without spaces."""

    def __init__(self) -> None:
        self.divisions: list[Division] = []
        self.typed: dict[str, tuple[int, ...]] = {}
        self.bare: dict[str, tuple[int, ...]] = {}
        self.np_name: dict[int, str] = {}
        self.nw_name: dict[int, str] = {}
        self.lp_name: dict[str, str] = {}
        self.ld_name: dict[str, str] = {}
        self.lw_name: dict[str, str] = {}
        self.common_phrases: frozenset[str] = frozenset()
        self._build()

    # -- building ----------------------------------------------------------------------------

    def _add(self, div: Division, keywords: Iterable[str], typed: dict[str, list[int]], bare: dict[str, list[int]]) -> int:
        index = len(self.divisions)
        self.divisions.append(div)
        keys = {(k if k.isascii() else _plain(k)).replace(" ", "") for k in keywords if isinstance(k, str) and k}
        keys.add(_plain(div.short).replace(" ", "").replace("-", ""))
        keys.discard("")
        for key in keys:
            target = typed if _is_typed(key, keys) else bare
            target.setdefault(key, []).append(index)
        return index

    def _build(self) -> None:
        data = _data_dir()
        legacy = json.loads((data / "parser_legacy.json").read_text(encoding="utf-8"))
        new = json.loads((data / "parser_from_2025.json").read_text(encoding="utf-8"))
        conv = json.loads((data / "converter_2025.json").read_text(encoding="utf-8"))
        resources = yaml.safe_load((_RESOURCES / "locations.yml").read_text(encoding="utf-8")) or {}
        aliases: dict[str, list[str]] = {
            str(k): [str(a) for a in (v or [])] for k, v in (resources.get("province_aliases") or {}).items()
        }
        self.common_phrases = frozenset(
            str(p).replace(" ", "") for p in resources.get("common_phrases") or [] if str(p).strip()
        )
        typed: dict[str, list[int]] = {}
        bare: dict[str, list[int]] = {}

        # 2025 provinces: official names from vietnam_provinces, keywords from vietnamadminunits.
        provinces = {int(p.code): p for p in Province.iter_all()}
        new_code: dict[str, int] = {}
        for pk, p in new["DICT_PROVINCE"].items():
            code = int(p["provinceCode"])
            new_code[pk] = code
            name = _squash(provinces[code].name) if code in provinces else p["province"]
            self.np_name[code] = name
            short = name.removeprefix("Thành phố ").removeprefix("Tỉnh ")
            extra = aliases.get(pk, [])
            div = Division(1, True, name, short, _syllables(short, name, *extra), code, None, None, None, None)
            self._add(div, p["provinceKeywords"] + _alias_keys(extra), typed, bare)

        # Legacy provinces, each mapped to the 2025 province it became part of.
        legacy_to_new = {old: new_code[npk] for npk, olds in conv["DICT_PROVINCE"].items() for old in olds}
        for lp, p in legacy["DICT_PROVINCE"].items():
            self.lp_name[lp] = p["province"]
            short = p["provinceShort"]
            extra = aliases.get(lp, [])
            div = Division(
                1, False, p["province"], short, _syllables(short, p["province"], *extra), legacy_to_new[lp], None, lp, None, None
            )
            self._add(div, p["provinceKeywords"] + _alias_keys(extra), typed, bare)

        # Legacy districts; a name that was split across several districts points to all of them.
        district_index: dict[str, int] = {}
        for lp, districts in legacy["DICT_PROVINCE_DISTRICT"].items():
            for dk, d in districts.items():
                ld = f"{lp}_{dk}"
                self.ld_name[ld] = d["district"]
                short = _short(d["districtShort"])
                div = Division(
                    2, False, d["district"], short, _syllables(short, d["district"]), legacy_to_new[lp], None, lp, ld, None
                )
                district_index[ld] = self._add(div, d["districtKeywords"], typed, bare)
        for lp, divided in legacy["DICT_PROVINCE_DISTRICT_DIVIDED"].items():
            for entry in divided.values():
                targets = [district_index[f"{lp}_{dk}"] for dk in entry["districts"] if f"{lp}_{dk}" in district_index]
                keys = {_plain(k) for k in entry["dividedDistrictKeywords"]}
                known = keys | {plain for t in targets for plain, _ in self.divisions[t].accents}
                for key in keys:
                    target = typed if _is_typed(key, known) else bare
                    bucket = target.setdefault(key, [])
                    bucket.extend(t for t in targets if t not in bucket)

        # 2025 wards: names and codes from vietnam_provinces where they agree on the name.
        official: dict[tuple[int, str], Ward] = {}
        for w in Ward.iter_all():
            official[(int(w.province_code), _accented(_squash(w.name)))] = w
        new_ward_index: dict[tuple[str, str], int] = {}
        for group in ("DICT_PROVINCE_WARD_NO_ACCENTED", "DICT_PROVINCE_WARD_ACCENTED", "DICT_PROVINCE_WARD_SHORT_ACCENTED"):
            for pk, wards in new[group].items():
                code = new_code[pk]
                for wk, w in wards.items():
                    if (pk, wk) in new_ward_index or not isinstance(w.get("ward"), str):
                        continue
                    match = official.get((code, _accented(_squash(w["ward"]))))
                    name = _squash(match.name) if match else _squash(w["ward"])
                    ward_code = int(match.code) if match else int(w["wardCode"])
                    self.nw_name[ward_code] = name
                    short = _short(w["wardShort"])
                    div = Division(3, True, name, short, _syllables(short, name), code, ward_code, None, None, None)
                    new_ward_index[(pk, wk)] = self._add(div, w["wardKeywords"], typed, bare)

        # Legacy wards with the 2025 ward each became (None when it was split between several).
        became: dict[str, int] = {}
        for npk, wards in conv["DICT_PROVINCE_WARD_NO_DIVIDED"].items():
            for nwk, olds in wards.items():
                target = new_ward_index.get((npk, nwk))
                if target is not None:
                    for old in olds:
                        became[old] = self.divisions[target].nw  # type: ignore[assignment]
        seen: set[str] = set()
        for group in (
            "DICT_PROVINCE_DISTRICT_WARD_NO_ACCENTED",
            "DICT_PROVINCE_DISTRICT_WARD_ACCENTED",
            "DICT_PROVINCE_DISTRICT_WARD_SHORT_ACCENTED",
        ):
            for lp, districts in legacy[group].items():
                for dk, wards in districts.items():
                    for wk, w in wards.items():
                        lw = f"{lp}_{dk}_{wk}"
                        if lw in seen or not isinstance(w.get("ward"), str):
                            continue
                        seen.add(lw)
                        self.lw_name[lw] = w["ward"]
                        short = _short(w["wardShort"] if isinstance(w.get("wardShort"), str) else w["ward"])
                        div = Division(
                            3,
                            False,
                            w["ward"],
                            short,
                            _syllables(short, w["ward"]),
                            legacy_to_new[lp],
                            became.get(lw),
                            lp,
                            f"{lp}_{dk}",
                            lw,
                        )
                        self._add(div, w["wardKeywords"], typed, bare)

        self.typed = {k: tuple(v) for k, v in typed.items()}
        self.bare = {k: tuple(v) for k, v in bare.items()}
        # Every beginning of every keyword (about 60,000 strings) -> its (typed, bare) divisions
        # if it is a whole keyword too: a run of words that begins none cannot grow into a match.
        empty: tuple[int, ...] = ()
        keys = self.typed.keys() | self.bare.keys()
        self._begins: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {key[:n]: (empty, empty) for key in keys for n in range(1, len(key))}
        for key in keys:
            self._begins[key] = (self.typed.get(key, empty), self.bare.get(key, empty))
        # (plain key, syllable count) -> division -> its accented names of that key and length.
        self._accented: dict[tuple[str, int], dict[int, set[tuple[str, ...]]]] = {}
        for index, div in enumerate(self.divisions):
            for plain, syllables in div.accents:
                self._accented.setdefault((plain, len(syllables)), {}).setdefault(index, set()).add(syllables)

    # -- matching ----------------------------------------------------------------------------

    def _fit(self, cands: Iterable[int], words: Sequence[Token]) -> tuple[tuple[int, ...], bool]:
        """(candidates that agree with the diacritics typed, whether any could be checked).

        Typed with diacritics, every syllable must match: "tiền điện" is not Tiên Điền,
        "tiền hai" is not Tiền Hải, "Cẩm Giàng" is not Cẩm Giang. Without diacritics anything
        with the same letters fits. A unit reached through an alias ("phường 7" for the ward
        it was merged into, "quan9" for Thủ Đức) has no syllables to compare: kept, but when
        nothing else fits the match is unverified."""
        if all(w.acc == w.plain for w in words):
            return tuple(cands), True
        names = self._accented.get(("".join(w.plain for w in words), len(words)), {})
        typed = tuple(w.acc for w in words)
        kept: list[int] = []
        unverified: list[int] = []
        for index in cands:
            spellings = names.get(index)
            if spellings is None:  # no name of this key and length to compare with
                unverified.append(index)
            elif typed in spellings:
                kept.append(index)
        if kept:
            return tuple(kept + unverified), True
        return tuple(unverified), False

    def _options(self, text: str, words: Sequence[Token], i: int, in_name: Sequence[bool]) -> list[UnitMatch]:
        """Every unit that could start at word `i`: direct keywords ("quan 1", "ben thanh",
        "q7"), abbreviated or English types before a name ("P Tan Phong", "TP. Hồ Chí Minh",
        "District 7") and English types after one ("Cau Giay district"). `in_name[j]`: whether
        the gap before word j may lie inside one name."""
        n = len(words)

        def gap(j: int) -> str:
            return text[words[j - 1].end : words[j].start]

        raw: list[tuple[int, bool, tuple[int, ...], int, str]] = []  # (last, typed, cands, name_first, key)
        key = ""
        for j in range(i, min(n, i + MAX_NGRAM)):
            if j > i and not in_name[j]:
                break
            key += words[j].plain
            found = self._begins.get(key)
            if found is None:
                break
            typed, bare = found
            if typed:
                raw.append((j, True, typed, i, key))
            if bare:
                raw.append((j, False, bare, i, key))
        prefixes = _PREFIXES.get(words[i].plain)
        if prefixes and i + 1 < n and _PREFIX_GAP.fullmatch(gap(i + 1)):
            name = ""
            for j in range(i + 1, min(n, i + 1 + MAX_NGRAM)):
                if j > i + 1 and not in_name[j]:
                    break
                name += words[j].plain
                for prefix in prefixes:
                    cands = self.typed.get(prefix + name)
                    if cands:
                        raw.append((j, True, cands, i + 1, prefix + name))
                if not any(prefix + name in self._begins for prefix in prefixes):
                    break

        options = []
        for last, typed, cands, name_first, key in raw:
            name_words = words[name_first : last + 1]
            fitting, verified = self._fit(cands, name_words)
            if not fitting:
                if not typed:
                    continue
                fitting, verified = cands, False  # "phường X" with a wrong tone mark: still a ward
            if not typed and last + 1 < n and gap(last + 1).isspace():
                suffixes = _SUFFIXES.get(words[last + 1].plain)
                if suffixes:
                    bare_key = "".join(w.plain for w in name_words)
                    narrowed = tuple(c for s in suffixes for c in self.typed.get(s + bare_key, ()) if c in fitting)
                    if narrowed:
                        fitting, typed, last = narrowed, True, last + 1
            unit = UnitMatch(words[i].start, words[last].end, i, last, fitting, typed, True, verified, key)
            if typed:
                unit.strong = self._typed_is_strong(text, words, i, name_first, last)
            else:
                unit.strong = self._bare_is_strong(unit, name_words)
            options.append(unit)
        return options

    def match(self, text: str, words: Sequence[Token] | None = None) -> list[UnitMatch]:
        """Administrative units in `text` in order, non-overlapping: strong before weak, typed
        before bare, longer before shorter."""
        if words is None:
            words = tokenize(text[:MAX_CHARS], words_only=True, limit=MAX_WORDS)
        words = words[:MAX_WORDS]
        in_name = [False] + [bool(_NAME_GAP.fullmatch(text[a.end : b.start])) for a, b in zip(words, words[1:], strict=False)]
        begins = self._begins
        options = [
            u
            for i, word in enumerate(words)
            if word.plain in begins or word.plain in _PREFIXES  # else nothing starts here
            for u in self._options(text, words, i, in_name)
        ]
        if not options:
            return []
        covered_by_typed = {k for u in options if u.typed for k in range(u.first, u.last + 1)}
        covered = {k for u in options for k in range(u.first, u.last + 1)}
        # Bare names that are street names ("25 Hai Bà Trưng") take their words with them, so
        # that "Bà" alone does not come back as a commune.
        streets = {
            k
            for u in options
            if not u.typed and self._street_before(text, words, u, covered_by_typed)
            for k in range(u.first, u.last + 1)
        }
        kept = [
            u
            for u in options
            if u.typed
            or (streets.isdisjoint(range(u.first, u.last + 1)) and not self._inside_name(text, words, u, covered))
        ]
        kept.sort(key=lambda u: (not u.strong, not u.typed, u.first - u.last, u.first))
        taken: set[int] = set()
        chosen = []
        for unit in kept:
            span = range(unit.first, unit.last + 1)
            if taken.isdisjoint(span):
                taken.update(span)
                chosen.append(unit)
        chosen.sort(key=lambda u: u.first)
        return chosen

    @staticmethod
    def _street_before(text: str, words: Sequence[Token], unit: UnitMatch, covered_by_typed: set[int]) -> bool:
        """A house number or street word right before a bare name makes it a street:
        "12 Nguyễn Trãi", "đường Hà Nội", "25 Hai Bà Trưng"."""
        prev = unit.first - 1
        if prev < 0 or prev in covered_by_typed or not text[words[prev].end : words[unit.first].start].isspace():
            return False
        return bool(_HOUSE_NUMBER.fullmatch(words[prev].plain)) or words[prev].plain in STREET_WORDS

    @staticmethod
    def _inside_name(text: str, words: Sequence[Token], unit: UnitMatch, covered: set[int]) -> bool:
        """A weak or one-word bare name right after a capitalised word that is no unit and no
        cue is the tail of a longer name: "Tô Ngọc Vân", "Nguyen Hue"."""
        prev = unit.first - 1
        if (unit.strong and unit.last > unit.first) or prev < 0 or prev in covered:
            return False
        word = words[prev]
        return (
            text[word.end : words[unit.first].start].isspace()
            and word.text[:1].isupper()
            and word.plain not in _CUES_1
        )

    @staticmethod
    def _typed_is_strong(text: str, words: Sequence[Token], first: int, name_first: int, last: int) -> bool:
        """An abbreviated type before a one-syllable name is weak in lower case: "tt voi" is
        "thông tin với", not Thị trấn Vôi; "TT Vôi", "tt. Vôi" and "q 7" are fine."""
        if name_first == first or last > name_first or words[last].plain.isdigit():
            return True
        abbreviation = words[first]
        return abbreviation.text.isupper() or "." in text[abbreviation.end : words[name_first].start]

    def _bare_is_strong(self, unit: UnitMatch, words: Sequence[Token]) -> bool:
        """A bare province or district name stands on its own. Weak (needs a cue word, a chain
        or the CRF): a ward name; a two-letter alias in lower case ("hn" is also "hôm nay"); a
        one-syllable name in lower case without diacritics ("vinh", "hue"); a name reached
        through an alias but typed with diacritics; an everyday phrase typed in lower case
        without diacritics ("tinh gia")."""
        if min(self.divisions[c].level for c in unit.cands) == 3 or not unit.verified:
            return False
        surface = "".join(w.text for w in words)
        key = "".join(w.plain for w in words)
        plain_lower = surface.islower() and all(w.acc == w.plain for w in words)
        if len(key) <= 2 and not surface.isupper():
            return False
        if len(words) == 1 and len(key) <= 4 and plain_lower:
            return False
        return not (plain_lower and key in self.common_phrases)

    # -- resolution --------------------------------------------------------------------------

    def readings(self, unit: UnitMatch) -> list[Reading]:
        """Every reading of one unit on its own: one per candidate division."""
        return [Reading.start(self.divisions[c], c, unit.typed) for c in unit.cands]

    def extend(self, readings: Sequence[Reading], unit: UnitMatch) -> list[Reading]:
        """Readings of a chain extended by one more unit; empty if it cannot be part of the same
        address (two provinces, a ward outside the district named next to it...)."""
        levels = {self.divisions[c].level for c in unit.cands}
        extended: list[Reading] = []
        for reading in readings:
            if levels <= reading.levels:
                continue
            for c in unit.cands:
                longer = reading.extend(self.divisions[c], c, unit.typed)
                if longer is not None:
                    extended.append(longer)
            if len(extended) >= MAX_COMBOS:
                break
        return extended

    def resolve(self, units: Sequence[UnitMatch]) -> list[Reading] | None:
        """The best readings of consecutive units as one address, None if they cannot be one."""
        readings = self.readings(units[0])
        for unit in units[1:]:
            readings = self.extend(readings, unit)
            if not readings:
                return None
        return best_readings(readings)


def best_readings(readings: Sequence[Reading]) -> list[Reading]:
    """The top-ranked readings (several when the text does not say which one is meant)."""
    if not readings:
        return []
    top = max(r.rank for r in readings)
    return [r for r in readings if r.rank == top]


@dataclass(slots=True)
class Reading:
    """One interpretation of a chain of units: which division each unit is, and the ids they
    pin down together. Ranked by how specifically the units agree (a ward inside the district
    named next to it: 3 + 2) plus a preference for 2025 units and, for bare names, for higher
    levels: "Cầu Giấy, Hà Nội" is the old district, "Phường Mường Thanh, Điện Biên" the 2025
    ward and province rather than the old ward of the city Điện Biên Phủ."""

    picks: tuple[int, ...]
    fields: dict[str, Any]
    levels: frozenset[int]
    agreement: int = 0
    preference: float = 0.0

    @staticmethod
    def start(div: Division, index: int, typed: bool) -> Reading:
        fields = {"np": div.np, "nw": div.nw, "lp": div.lp, "ld": div.ld, "lw": div.lw}
        return Reading((index,), fields, frozenset({div.level}), 0, _preference(div, typed))

    def extend(self, div: Division, index: int, typed: bool) -> Reading | None:
        if div.level in self.levels:
            return None
        agreement = 0
        fields = dict(self.fields)
        for name, value in (("np", div.np), ("nw", div.nw), ("lp", div.lp), ("ld", div.ld), ("lw", div.lw)):
            mine = fields[name]
            if value is None:
                continue
            if mine is None:
                fields[name] = value
            elif mine != value:
                return None
            else:
                agreement = max(agreement, _AGREEMENT[name])
        if agreement == 0:
            return None
        return Reading(
            self.picks + (index,),
            fields,
            self.levels | {div.level},
            self.agreement + agreement,
            self.preference + _preference(div, typed),
        )

    @property
    def rank(self) -> tuple[float, int]:
        return (self.agreement + self.preference, self.agreement)


def _preference(div: Division, typed: bool) -> float:
    level = 0.0 if typed else (4 - div.level)
    return level + (0.5 if div.current else 0.0)


_GAZETTEER: Gazetteer | None = None
_GAZETTEER_LOCK = threading.Lock()


def gazetteer() -> Gazetteer:
    """The process-wide gazetteer, built on first use (once, even with several threads)."""
    global _GAZETTEER
    if _GAZETTEER is None:
        with _GAZETTEER_LOCK:
            if _GAZETTEER is None:
                _GAZETTEER = Gazetteer()
    return _GAZETTEER


def admin_unit_spans(text: str) -> list[AdminSpan]:
    """Gazetteer matches as (start, end, kind) for the CRF's features; kind is typed/strong/weak."""
    return [
        (u.start, u.end, "typed" if u.typed else "strong" if u.strong else "weak")
        for u in gazetteer().match(text)
    ]


# -- the extractor ---------------------------------------------------------------------------


@dataclass
class _Group:
    """Pieces of one location entity before it is emitted: gazetteer units and CRF spans."""

    start: int
    end: int
    units: list[UnitMatch] = field(default_factory=list)
    readings: list[Reading] | None = None
    confidence: float = 0.0


def _cue_before(text: str, words: Sequence[Token], first: int) -> bool:
    if first == 0 or not text[words[first - 1].end : words[first].start].isspace():
        return False
    if words[first - 1].plain in _CUES_1:
        return True
    return first >= 2 and f"{words[first - 2].plain} {words[first - 1].plain}" in _CUES_2


class LocationExtractor:
    """Finds `location` entities: gazetteer units chained into addresses, extended by CRF spans.

    Train with `LocationExtractor.train(data)`; `extract(text)` never raises and returns
    Rasa-shaped entities with a `resolved` dict (see `resolve_units`).
    """

    def __init__(self, tagger: AddressTagger | None = None, extra_names: dict[str, str] | None = None) -> None:
        self.tagger = tagger
        # Lookup-table names the gazetteer does not know: diacritics-free form -> surface.
        self.extra_names = dict(extra_names or {})
        self._extra_re = _names_pattern(self.extra_names)

    @classmethod
    def train(cls, data: TrainingData, *, use_crf: bool = True, lookups: Sequence[str] | None = None) -> LocationExtractor:
        """Train the address CRF on `data`'s `[...](location)` examples; keep `location` lookup
        entries the gazetteer does not cover as extra names."""
        tagger = None
        if use_crf and any(e.get("entity") == ENTITY for ex in data.examples for e in ex.entities):
            tagger = AddressTagger.train(data.examples, entity=ENTITY, admin_spans=admin_unit_spans)
        names = list(lookups if lookups is not None else data.lookups.get(ENTITY, []))
        extra: dict[str, str] = {}
        gaz = gazetteer()
        for name in names:
            text = str(name).strip()
            units = gaz.match(text)
            covered = len(units) == 1 and units[0].start == 0 and units[0].end == len(text)
            if text and not covered:
                extra[_plain(text)] = text
        return cls(tagger, extra)

    # -- extraction --------------------------------------------------------------------------

    def extract(self, text: Any) -> list[dict[str, Any]]:
        """Location entities in `text` (offsets into `text`); never raises."""
        try:
            if not isinstance(text, str) or not text.strip():
                return []
            return self._extract(text[:MAX_CHARS])
        except Exception:  # noqa: BLE001 - an entity extractor must not take the parse down
            log.exception("location extraction failed")
            return []

    def _extract(self, text: str) -> list[dict[str, Any]]:
        gaz = gazetteer()
        tokens = tokenize(text)  # words and punctuation: the tagger reads both
        words = [t for t in tokens if t.is_word][:MAX_WORDS]
        units = gaz.match(text, words)
        chains = self._chains(text, units)
        crf_spans: list[tuple[int, int, float]] = []
        if self.tagger is not None and words and _tagger_may_add(text, words, chains):
            admin = [(u.start, u.end, "typed" if u.typed else "strong" if u.strong else "weak") for u in units]
            crf_spans = self.tagger.spans(text, admin, tokens[:MAX_TOKENS])

        groups = self._groups(text, words, chains, crf_spans)
        groups = self._attach_crf(text, groups, crf_spans)
        groups += self._extra_groups(text, words, groups)
        groups.sort(key=lambda g: g.start)
        return [self._entity(text, g) for g in groups]

    @staticmethod
    def _chains(text: str, units: Sequence[UnitMatch]) -> list[tuple[list[UnitMatch], list[Reading]]]:
        """Consecutive units that can be one address, with all their readings (ranked later)."""
        gaz = gazetteer()
        chains: list[tuple[list[UnitMatch], list[Reading]]] = []
        for unit in units[:MAX_UNITS]:
            if chains and len(chains[-1][0]) < MAX_CHAIN and _CHAIN_GAP.fullmatch(text[chains[-1][0][-1].end : unit.start]):
                joined = gaz.extend(chains[-1][1], unit)
                if joined:
                    chains[-1] = (chains[-1][0] + [unit], joined)
                    continue
            chains.append(([unit], gaz.readings(unit)))
        return chains

    @staticmethod
    def _groups(
        text: str,
        words: Sequence[Token],
        chains: Sequence[tuple[list[UnitMatch], list[Reading]]],
        crf_spans: Sequence[tuple[int, int, float]],
    ) -> list[_Group]:
        """The chains kept as places: one of several units or of a strong one; one weak unit
        when a cue word precedes it or the CRF tagged it as an address."""
        groups = []
        for chain, all_readings in chains:
            start, end = chain[0].start, chain[-1].end
            if len(chain) == 1 and not chain[0].strong:
                unit = chain[0]
                in_crf = any(s <= start and end <= e for s, e, _ in crf_spans)
                # After a cue: "ở ben thanh", "ở Vinh", "in SG"; not "near me".
                cued = _cue_before(text, words, unit.first) and (
                    unit.last > unit.first or words[unit.first].text[:1].isupper() or words[unit.first].acc != words[unit.first].plain
                )
                if not (in_crf or cued):
                    continue
            if len(chain) > 1:
                confidence = 0.99
            elif chain[0].typed:
                confidence = 0.97
            else:
                confidence = 0.9 if chain[0].strong else 0.75
            groups.append(_Group(start, end, list(chain), best_readings(all_readings), confidence))
        return groups

    def _attach_crf(self, text: str, groups: list[_Group], crf_spans: Sequence[tuple[int, int, float]]) -> list[_Group]:
        """Extend unit groups with the CRF spans that overlap or touch them ("12 Nguyễn Trãi" +
        ", " + "quận 1"); a CRF span touching nothing becomes a group of its own. Groups the
        span touches are merged when their units can be one address, never otherwise
        ("TP.HCM có khác Hà Nội" stays two places)."""
        gaz = gazetteer()
        for s, e, p in crf_spans:
            touching = sorted((g for g in groups if _touches(text, s, e, g.start, g.end)), key=lambda g: g.start)
            if not touching:
                if _looks_like_street(text[s:e]):
                    groups.append(_Group(s, e, [], None, p))
                continue
            base, whole = touching[0], True
            for other in touching[1:]:
                if base.units and other.units:
                    joined = gaz.resolve(base.units + other.units)
                    if joined is None:
                        whole = False
                        continue
                    base.readings = joined
                elif other.units:
                    base.readings = other.readings
                base.units = base.units + other.units
                base.start, base.end = min(base.start, other.start), max(base.end, other.end)
                base.confidence = max(base.confidence, other.confidence)
                groups.remove(other)
            if whole:
                base.start, base.end = min(base.start, s), max(base.end, e)
                if not base.units:
                    base.confidence = max(base.confidence, p)
        return groups

    def _extra_groups(self, text: str, words: Sequence[Token], groups: Sequence[_Group]) -> list[_Group]:
        """Lookup-table names the gazetteer does not know, where nothing else was found."""
        if self._extra_re is None:
            return []
        chars = [" "] * len(text)
        for w in words:
            if len(w.plain) == w.end - w.start:  # same length: offsets stay valid
                chars[w.start : w.end] = w.plain
        found = []
        for m in self._extra_re.finditer("".join(chars)):
            if not any(g.start < m.end() and m.start() < g.end for g in groups):
                found.append(_Group(m.start(), m.end(), [], None, 0.8))
        return found

    # -- output ------------------------------------------------------------------------------

    def _entity(self, text: str, group: _Group) -> dict[str, Any]:
        value, resolved = resolve_units(text, group.start, group.end, group.units, group.readings)
        return {
            "entity": ENTITY,
            "value": value,
            "start": group.start,
            "end": group.end,
            "confidence": round(group.confidence, 4),
            "extractor": EXTRACTOR,
            "resolved": resolved,
        }

    def __getstate__(self) -> dict[str, Any]:
        return {"tagger": self.tagger, "extra_names": self.extra_names}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.get("tagger"), state.get("extra_names"))  # type: ignore[misc]


def _tagger_may_add(text: str, words: Sequence[Token], chains: Sequence[tuple[list[UnitMatch], Any]]) -> bool:
    """Whether the address tagger could add a location to what the gazetteer found: its spans
    count where they look like a street (`_looks_like_street`; digits of a customer code,
    phone, ticket id, month or amount of electricity are no house number) and where they meet
    a unit that is kept or could be (see `_groups`, `_attach_crf`). Most messages have neither, or only lower-case words that are also
    a place's name ("cho", "chưa", "hợp đồng", "thành văn"): no cue before them, no capital,
    nothing next to them; the tagger is not asked about those, so they are not addresses (on
    10,000 test, training and generated messages it never took one for an address either)."""
    for chain, _ in chains:
        unit = chain[0]
        if len(chain) > 1 or unit.strong or unit.typed or any(w.text[:1].isupper() for w in words[unit.first : unit.last + 1]):
            return True
        if _cue_before(text, words, unit.first):
            return True
    blanked = _blank(text, [(e["start"], e["end"]) for e in extract_identifiers(text)])
    if not _may_name_street(blanked, words):
        return False
    blanked = _blank(blanked, month_spans(blanked))
    return _may_name_street(_blank(blanked, [(e["start"], e["end"]) for e in extract_kwh(blanked)]), words)


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """`text` with these spans replaced by spaces (offsets kept)."""
    for start, end in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text


def _looks_like_street(span: str) -> bool:
    """A CRF span with no administrative unit in it must at least look like an address: a
    number ("45 Le Loi", "thôn 3") or a street word before a name ("đường Lê Lợi"); "Nguyễn
    Văn An" is a person and "số nhà" just words."""
    return _may_name_street(span, tokenize(span, words_only=True))


def _may_name_street(text: str, words: Sequence[Token]) -> bool:
    """`_looks_like_street` of `text` tokenized as `words`; true of a message whenever it is
    true of any span of it."""
    if any(map(str.isdigit, text)):
        return True
    return any(
        w.plain in STREET_WORDS and i + 1 < len(words) and words[i + 1].text[:1].isupper() for i, w in enumerate(words)
    )


def _touches(text: str, s1: int, e1: int, s2: int, e2: int) -> bool:
    """Spans overlap, or only separators (", ", " - ") lie between them."""
    if s1 < e2 and s2 < e1:
        return True
    if e1 <= s2:
        return bool(_CHAIN_GAP.fullmatch(text[e1:s2]))
    if e2 <= s1:
        return bool(_CHAIN_GAP.fullmatch(text[e2:s1]))
    return False


def _names_pattern(names: dict[str, str]) -> re.Pattern[str] | None:
    keys = sorted((k for k in names if k), key=len, reverse=True)
    if not keys:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(k) for k in keys) + r")(?!\w)")


_SEPARATORS = " \t\n,;.-–/()"


def resolve_units(
    text: str, start: int, end: int, units: Sequence[UnitMatch], readings: Sequence[Reading] | None
) -> tuple[str, dict[str, Any]]:
    """(value, resolved) for one location span.

    `value` is the span with each unit written canonically ("q7" -> "Quận 7", "cau giay" ->
    "Cầu Giấy") and anything else (the street) as typed. `resolved` always has the keys
    province, province_code, ward, ward_code (2025 scheme), legacy_province, legacy_district,
    legacy_ward, street and scheme ("2025" if the words are valid 2025 names, "legacy" if they
    are pre-2025 ones, None if nothing was recognised); a key is None when the span does not
    say (e.g. "phường 7" without a district could be in many places).
    """
    gaz = gazetteer()
    readings = list(readings or [])
    fields: dict[str, Any] = {}
    for name in ("np", "nw", "lp", "ld", "lw"):
        values = {r.fields[name] for r in readings if r.fields[name] is not None}
        fields[name] = values.pop() if len(values) == 1 else None

    pieces: list[str] = []
    extras: list[str] = []
    cursor = start
    for position, unit in enumerate(units):
        before = text[cursor : unit.start].strip(_SEPARATORS)
        if before:
            extras.append(_squash(before))
            pieces.append(_squash(before))
        picks = {r.picks[position] for r in readings if len(r.picks) > position}
        names = {_display(gaz.divisions[pick], unit) for pick in picks}
        name = names.pop() if len(names) == 1 else None
        pieces.append(name or _squash(text[unit.start : unit.end]))
        cursor = unit.end
    after = text[cursor:end].strip(_SEPARATORS)
    if after:
        extras.append(_squash(after))
        pieces.append(_squash(after))

    scheme = None
    if readings:
        scheme = "2025" if any(all(gaz.divisions[c].current for c in r.picks) for r in readings) else "legacy"
    resolved = {
        "province": gaz.np_name.get(fields["np"]) if fields["np"] is not None else None,
        "province_code": fields["np"],
        "ward": gaz.nw_name.get(fields["nw"]) if fields["nw"] is not None else None,
        "ward_code": fields["nw"],
        "legacy_province": gaz.lp_name.get(fields["lp"]) if fields["lp"] else None,
        "legacy_district": gaz.ld_name.get(fields["ld"]) if fields["ld"] else None,
        "legacy_ward": gaz.lw_name.get(fields["lw"]) if fields["lw"] else None,
        "street": ", ".join(extras) or None,
        "scheme": scheme,
    }
    return ", ".join(p for p in pieces if p), resolved


def _display(div: Division, unit: UnitMatch) -> str | None:
    """How a unit is written in an entity's value: the full name when typed ("q7" -> "Quận 7"),
    the short one when bare ("cau giay" -> "Cầu Giấy"). A numbered unit keeps the number the
    customer said ("phường 7" stays "Phường 7" even where that ward was merged into another);
    None (use the surface) for other alternative names ("An Hội")."""
    own = {plain for plain, _ in div.accents}
    digits = _DIGITS.search(unit.key)
    if digits:
        kind = _NUMBERED_KIND.get(unit.key[: digits.start()])
        if kind is None:
            return div.name
        return f"{kind} {int(digits.group())}"
    if unit.key in own or len(unit.key) <= 4 or unit.key.removeprefix("thanhpho").removeprefix("tinh") in own:
        return div.name if unit.typed else div.short
    return None


def span_scores(extractor: LocationExtractor, examples: Iterable[Any]) -> dict[str, float]:
    """Precision, recall and F1 of predicted location spans against annotated examples,
    counting a prediction correct on an exact span match and, separately, on any overlap."""
    tp_exact = tp_overlap_pred = tp_overlap_gold = n_pred = n_gold = 0
    for example in examples:
        gold = [(e["start"], e["end"]) for e in example.entities if e.get("entity") == ENTITY]
        pred = [(e["start"], e["end"]) for e in extractor.extract(example.text)]
        n_gold += len(gold)
        n_pred += len(pred)
        tp_exact += len(set(gold) & set(pred))
        tp_overlap_pred += sum(any(s < ge and gs < e for gs, ge in gold) for s, e in pred)
        tp_overlap_gold += sum(any(s < ge and gs < e for s, e in pred) for gs, ge in gold)

    def prf(tp_p: int, tp_g: int) -> tuple[float, float, float]:
        p = tp_p / n_pred if n_pred else 0.0
        r = tp_g / n_gold if n_gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return p, r, f

    ep, er, ef = prf(tp_exact, tp_exact)
    op, orr, of = prf(tp_overlap_pred, tp_overlap_gold)
    return {
        "gold": float(n_gold),
        "predicted": float(n_pred),
        "exact_precision": ep,
        "exact_recall": er,
        "exact_f1": ef,
        "overlap_precision": op,
        "overlap_recall": orr,
        "overlap_f1": of,
    }


__all__ = [
    "Division",
    "Gazetteer",
    "LocationExtractor",
    "admin_unit_spans",
    "gazetteer",
    "resolve_units",
    "span_scores",
]

