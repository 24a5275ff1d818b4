"""The `location` entity as a customer would notice it: places found with the right span and
resolved to the right 2025 province, from old names and new, with or without diacritics; no
places invented in ordinary chat; any input survives.

Expected 2025 provinces for legacy names come from the libraries' own data (vietnamadminunits'
converter, vietnam_provinces' names), not from memory.
"""

from __future__ import annotations

import io
import pickle
import socket
import time
import unicodedata
from pathlib import Path
from typing import Any

import joblib
import pytest
from vietnam_provinces import Province, ProvinceCode

from nlu.address_tagger import AddressTagger
from nlu.locations import Gazetteer, LocationExtractor, span_scores
from nlu.normalize import strip_diacritics
from nlu.training_data import Example, load_training_data

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def extractor() -> LocationExtractor:
    """Trained once per module on the project's annotated examples."""
    return LocationExtractor.train(load_training_data(PROJECT / "data"))


@pytest.fixture(scope="module")
def library_convert() -> Any:
    """vietnamadminunits' converter with its network geocoding disabled (it is only used when a
    split ward comes with a street; the addresses here have none)."""
    import vietnamadminunits.converter.converter_2025 as converter
    from vietnamadminunits import convert_address

    def offline(*_: Any, **__: Any) -> None:
        raise AssertionError("vietnamadminunits tried to geocode over the network")

    original = converter.get_geo_location
    converter.get_geo_location = offline
    yield convert_address
    converter.get_geo_location = original


def province_name(code: int) -> str:
    return Province.from_code(ProvinceCode(code)).name


def only(entities: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(entities) == 1, entities
    return entities[0]


def surface(text: str, entity: dict[str, Any]) -> str:
    return text[entity["start"] : entity["end"]]


# -- the examples customers type ------------------------------------------------------------

HCM, HANOI = 79, 1

CASES = [
    # text, expected span, 2025 province code, other resolved fields
    ("mất điện ở 12 Nguyễn Trãi, quận 1", "12 Nguyễn Trãi, quận 1", HCM, {"legacy_district": "Quận 1", "street": "12 Nguyễn Trãi"}),
    ("lịch cắt điện phường Bến Thành", "phường Bến Thành", HCM, {"ward": "Phường Bến Thành", "scheme": "2025"}),
    (
        "P Tan Phong Q7 TPHCM",
        "P Tan Phong Q7 TPHCM",
        HCM,
        {"legacy_ward": "Phường Tân Phong", "legacy_district": "Quận 7", "scheme": "legacy"},
    ),
    ("Cầu Giấy Hà Nội", "Cầu Giấy Hà Nội", HANOI, {"legacy_district": "Quận Cầu Giấy"}),
    (
        "xa Tan Thong Hoi huyen Cu Chi",
        "xa Tan Thong Hoi huyen Cu Chi",
        HCM,
        {"legacy_ward": "Xã Tân Thông Hội", "legacy_district": "Huyện Củ Chi"},
    ),
    ("Thủ Đức", "Thủ Đức", HCM, {"legacy_district": "Thành phố Thủ Đức"}),
    ("khu vực Phường Trung Hòa", "Phường Trung Hòa", HANOI, {"legacy_ward": "Phường Trung Hòa"}),
    ("Bến Thành, Quận 1", "Bến Thành, Quận 1", HCM, {"ward": "Phường Bến Thành", "legacy_district": "Quận 1"}),
    ("Cầu Giấy, Hà Nội", "Cầu Giấy, Hà Nội", HANOI, {}),
    ("q7 mat dien ak", "q7", HCM, {"legacy_district": "Quận 7"}),
    ("mất điện ở p.7 q.3", "p.7 q.3", HCM, {"legacy_district": "Quận 3"}),
    ("lịch cúp điện Tp.HCM", "Tp.HCM", HCM, {"scheme": "2025"}),
    ("there's a blackout in District 7", "District 7", HCM, {"legacy_district": "Quận 7"}),
    ("88 Nguyễn Thị Thập Q7 mất điện", "88 Nguyễn Thị Thập Q7", HCM, {"street": "88 Nguyễn Thị Thập"}),
    ("nhà mình ở số 25 ngõ 10 Trần Duy Hưng, Cầu Giấy", "số 25 ngõ 10 Trần Duy Hưng, Cầu Giấy", HANOI, {}),
]


@pytest.mark.parametrize(("text", "span", "province", "fields"), CASES, ids=[c[0] for c in CASES])
def test_examples_are_found_and_resolved(
    extractor: LocationExtractor, text: str, span: str, province: int, fields: dict[str, str]
) -> None:
    entity = only(extractor.extract(text))
    assert surface(text, entity) == span
    assert entity["entity"] == "location"
    assert entity["extractor"] == "LocationExtractor"
    assert 0 < entity["confidence"] <= 1
    resolved = entity["resolved"]
    assert resolved["province_code"] == province
    assert resolved["province"] == province_name(province)
    for key, value in fields.items():
        assert resolved[key] == value, key


@pytest.mark.parametrize(("text", "span", "province", "fields"), CASES, ids=[c[0] for c in CASES])
def test_same_without_diacritics(
    extractor: LocationExtractor, text: str, span: str, province: int, fields: dict[str, str]
) -> None:
    plain = strip_diacritics(text)
    entity = only(extractor.extract(plain))
    start = plain.index(strip_diacritics(span))
    assert (entity["start"], entity["end"]) == (start, start + len(span))
    assert entity["resolved"]["province_code"] == province


@pytest.mark.parametrize(("text", "span", "province", "fields"), CASES, ids=[c[0] for c in CASES])
def test_same_place_in_capitals(
    extractor: LocationExtractor, text: str, span: str, province: int, fields: dict[str, str]
) -> None:
    """In capitals the units are found and resolved the same; the CRF, which learned street
    names from capitalisation, may leave a street part out ("88 NGUYỄN THỊ THẬP Q7")."""
    shouted = text.upper()
    entity = only(extractor.extract(shouted))
    start = shouted.index(span.upper())
    assert start <= entity["start"] < entity["end"] == start + len(span)
    assert entity["resolved"]["province_code"] == province


def test_value_is_the_canonical_name(extractor: LocationExtractor) -> None:
    assert only(extractor.extract("q7 mat dien"))["value"] == "Quận 7"
    assert only(extractor.extract("lich cup dien cau giay"))["value"] == "Cầu Giấy"
    assert only(extractor.extract("P Tan Phong Q7 TPHCM"))["value"] == "Phường Tân Phong, Quận 7, Thành phố Hồ Chí Minh"
    assert only(extractor.extract("12 Nguyễn Trãi, quận 1"))["value"] == "12 Nguyễn Trãi, Quận 1"


def test_two_places_in_one_message_stay_two(extractor: LocationExtractor) -> None:
    text = "giá điện ở TP. Hồ Chí Minh có khác Hà Nội không"
    found = extractor.extract(text)
    assert [surface(text, e) for e in found] == ["TP. Hồ Chí Minh", "Hà Nội"]
    assert [e["resolved"]["province_code"] for e in found] == [HCM, HANOI]
    text = "Quận 1, Quận 3 mai có cắt điện không"
    assert [surface(text, e) for e in extractor.extract(text)] == ["Quận 1", "Quận 3"]


# -- legacy names resolve to the 2025 province, as the libraries' data says -----------------


@pytest.mark.parametrize(
    ("text", "legacy_address"),
    [
        ("Bình Dương", "Tỉnh Bình Dương"),
        ("Binh Duong", "Tỉnh Bình Dương"),
        ("Bà Rịa - Vũng Tàu", "Tỉnh Bà Rịa - Vũng Tàu"),
        ("Ba Ria Vung Tau", "Tỉnh Bà Rịa - Vũng Tàu"),
        ("Hà Giang", "Tỉnh Hà Giang"),
        ("ha giang", "Tỉnh Hà Giang"),
        ("Quảng Nam", "Tỉnh Quảng Nam"),
        ("Bạc Liêu", "Tỉnh Bạc Liêu"),
        ("Quận 1", "Quận 1, Thành phố Hồ Chí Minh"),
        ("Cầu Giấy", "Quận Cầu Giấy, Thành phố Hà Nội"),
        ("Thủ Dầu Một, Bình Dương", "Thành phố Thủ Dầu Một, Tỉnh Bình Dương"),
    ],
)
def test_legacy_names_resolve_to_the_2025_province(
    extractor: LocationExtractor, library_convert: Any, text: str, legacy_address: str
) -> None:
    expected = library_convert(legacy_address)
    entity = only(extractor.extract(text))
    assert surface(text, entity) == text
    assert entity["resolved"]["province_code"] == int(expected.province_code)
    assert entity["resolved"]["province"] == province_name(int(expected.province_code))
    assert entity["resolved"]["scheme"] == "legacy"


def test_merged_provinces_the_issue_names(extractor: LocationExtractor) -> None:
    """The brief's examples, spelled out (and checked above against the library)."""
    assert only(extractor.extract("Bình Dương"))["resolved"]["province"] == "Thành phố Hồ Chí Minh"
    assert only(extractor.extract("Bà Rịa - Vũng Tàu"))["resolved"]["province"] == "Thành phố Hồ Chí Minh"
    assert only(extractor.extract("Hà Giang"))["resolved"]["province"] == "Tuyên Quang"
    assert only(extractor.extract("Cầu Giấy, Hà Nội"))["resolved"]["province"] == "Thành phố Hà Nội"


@pytest.mark.parametrize(
    "address",
    [
        "Phường Tân Phong, Quận 7, Thành phố Hồ Chí Minh",
        "Xã Tân Thông Hội, Huyện Củ Chi, Thành phố Hồ Chí Minh",
        "Phường Phú Cường, Thành phố Thủ Dầu Một, Tỉnh Bình Dương",
        "Phường 7, Quận 3, Thành phố Hồ Chí Minh",
        "Xã Hòa Phú, Thành phố Buôn Ma Thuột, Tỉnh Đắk Lắk",
        "Phường Nghĩa Tân, Quận Cầu Giấy, Thành phố Hà Nội",
    ],
)
def test_old_wards_become_the_2025_ward_the_library_names(
    extractor: LocationExtractor, library_convert: Any, address: str
) -> None:
    expected = library_convert(address)
    for text in (address, strip_diacritics(address)):
        entity = only(extractor.extract(text))
        assert (entity["start"], entity["end"]) == (0, len(text))
        resolved = entity["resolved"]
        assert resolved["province_code"] == int(expected.province_code)
        assert resolved["ward"] is not None
        assert strip_diacritics(resolved["ward"]).lower() == strip_diacritics(expected.ward).lower()
        assert resolved["scheme"] == "legacy"


def test_2025_ward_and_province(extractor: LocationExtractor) -> None:
    resolved = only(extractor.extract("Phường Mường Thanh, Điện Biên"))["resolved"]
    assert (resolved["ward"], resolved["province"], resolved["scheme"]) == ("Phường Mường Thanh", "Điện Biên", "2025")
    resolved = only(extractor.extract("đặc khu Phú Quốc"))["resolved"]
    assert (resolved["ward"], resolved["province"]) == ("Đặc khu Phú Quốc", "An Giang")


def test_an_ambiguous_ward_says_what_it_knows(extractor: LocationExtractor) -> None:
    """"phường 7" exists in many districts: found, but no province is invented."""
    entity = only(extractor.extract("mất điện phường 7"))
    assert entity["value"] == "Phường 7"
    assert entity["resolved"]["province"] is None
    assert entity["resolved"]["ward"] is None


# -- no false positives -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "tra cứu hóa đơn tháng 9",
        "cảm ơn bạn",
        "PE0400012345",
        "0912345678",
        "my bill is high",
        "tiền điện tháng này bao nhiêu",
        "tien dien thang nay bao nhieu",
        "bị tính tiền hai lần",
        "nhà trọ tính giá điện thế nào",
        "gửi mình tt với",
        "hn mình đóng tiền rồi",
        "is there an outage near me",
        "tôi tên Nguyễn Văn An",
        "đăng ký thanh toán tự động",
        "cho em hỏi giá điện bậc thang",
        "gọi 1900 1006 giúp tôi",
        "hóa đơn 09/2026 mã PD01002345678",
    ],
)
def test_ordinary_chat_has_no_location(extractor: LocationExtractor, text: str) -> None:
    assert extractor.extract(text) == []


def test_no_location_in_training_examples_without_one(extractor: LocationExtractor) -> None:
    data = load_training_data(PROJECT / "data")
    invented = [
        (e.text, [surface(e.text, x) for x in extractor.extract(e.text)])
        for e in data.examples
        if not any(x["entity"] == "location" for x in e.entities) and extractor.extract(e.text)
    ]
    assert invented == []


# -- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        None,
        12345,
        b"Quan 1",
        "🙂" * 50,
        "\x00\x01\x1f\x7f mất điện\u200b ở\u202e Quận 7 \ud800",
        "a" * 10_000,
        "mất điện ở quận 1, " * 600,
        "Phường 1 " * 1200,
        "Tân Thành, " * 1000,
        "ثم " * 100,
        "[](location) {\"entity\": 1}",
    ],
)
def test_never_raises_and_spans_are_valid(extractor: LocationExtractor, text: Any) -> None:
    started = time.perf_counter()
    found = extractor.extract(text)
    assert time.perf_counter() - started < 2.0  # work is capped on long texts
    assert isinstance(found, list)
    for entity in found:
        assert 0 <= entity["start"] < entity["end"] <= len(text)
        assert text[entity["start"] : entity["end"]].strip()


def test_decomposed_unicode_keeps_offsets(extractor: LocationExtractor) -> None:
    text = unicodedata.normalize("NFD", "mất điện ở phường Bến Thành")
    entity = only(extractor.extract(text))
    assert unicodedata.normalize("NFC", surface(text, entity)) == "phường Bến Thành"
    assert entity["resolved"]["ward"] == "Phường Bến Thành"


def test_control_characters_do_not_hide_a_place(extractor: LocationExtractor) -> None:
    text = "mất\x00điện ở\tQuận 7\n"
    assert surface(text, only(extractor.extract(text))) == "Quận 7"


# -- persistence, speed, offline --------------------------------------------------------------


def test_pickled_extractor_is_small_and_behaves_the_same(extractor: LocationExtractor) -> None:
    buffer = io.BytesIO()
    joblib.dump(extractor, buffer, compress=3)
    assert len(buffer.getvalue()) < 100_000  # the CRF's bytes, not the gazetteer
    buffer.seek(0)
    loaded = joblib.load(buffer)
    for text, *_ in CASES:
        assert loaded.extract(text) == extractor.extract(text)
    assert pickle.loads(pickle.dumps(extractor)).extract("q7") == extractor.extract("q7")


def test_builds_and_extracts_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    gazetteer = Gazetteer()
    assert len({d.np for d in gazetteer.divisions if d.level == 1 and d.current}) == 34
    assert len({d.lp for d in gazetteer.divisions if d.level == 1 and not d.current}) == 63
    assert LocationExtractor().extract("P Tan Phong Q7 TPHCM")[0]["resolved"]["province_code"] == HCM


# -- the CRF on its own and what it adds --------------------------------------------------------


def test_address_tagger_learns_street_spans(extractor: LocationExtractor) -> None:
    tagger = extractor.tagger
    assert isinstance(tagger, AddressTagger)
    text = "điện nhà 88 Nguyễn Thị Thập Q7 bị chập"
    assert [text[s:e] for s, e in tagger.tag(text)] == ["88 Nguyễn Thị Thập Q7"]
    assert tagger.tag("") == []


def test_the_tagger_is_given_only_the_attributes_its_model_knows_and_tags_the_same(extractor: LocationExtractor) -> None:
    tagger = extractor.tagger
    assert tagger is not None and tagger._known is not None
    everything = AddressTagger(tagger.model, tagger.admin_spans)
    everything._known = None  # every attribute passed on, as when training
    texts = [e.text for path in ("data", "tests/data/nlu_test.yml") for e in load_training_data(PROJECT / path).examples]
    found = 0
    for text in texts:
        spans = tagger.spans(text)
        assert spans == everything.spans(text)
        found += bool(spans)
    assert found > 50  # messages where it finds an address: the comparison covers them


def test_address_tagger_needs_annotations() -> None:
    with pytest.raises(ValueError, match="location"):
        AddressTagger.train([Example("xin chào", "greet")])


def test_held_out_spans(extractor: LocationExtractor) -> None:
    """Regression floor on tests/data/nlu_test.yml (never used for training or tuning)."""
    test = load_training_data(PROJECT / "tests" / "data" / "nlu_test.yml")
    with_crf = span_scores(extractor, test.examples)
    assert with_crf["exact_f1"] >= 0.85
    assert with_crf["overlap_f1"] >= 0.9
    without = span_scores(LocationExtractor.train(load_training_data(PROJECT / "data"), use_crf=False), test.examples)
    assert with_crf["exact_f1"] > without["exact_f1"]
