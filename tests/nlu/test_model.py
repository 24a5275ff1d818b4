"""The intent model as a customer meets it: trained on the project data with config.yml.

Spelling variants that mean the same thing (no diacritics, decomposed Unicode, old tone
placement, chat abbreviations, stretched letters) must give the same intent; `parse` must never
raise and always return Rasa's shape; the fast single-message path must agree with
scikit-learn's batch computation; a saved model must load and parse the same, and a corrupted
one must be refused. The model is trained once for the module (a few seconds).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from nlu import NLUModel, PipelineConfig, load_training_data
from nlu.model import FALLBACK_INTENT, ConfigError
from nlu.normalize import clean, collapse_repeats, normalize, strip_tones

PROJECT = Path(__file__).resolve().parents[2]
NOT_UNDERSTOOD = {FALLBACK_INTENT, "out_of_scope"}


@pytest.fixture(scope="module")
def model() -> NLUModel:
    return NLUModel.train(load_training_data(PROJECT / "data"), PipelineConfig.from_file(PROJECT / "config.yml"))


def intent(model: NLUModel, text: Any) -> str:
    return model.parse(text)["intent"]["name"]


# -- what customers type --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("xin chào", "greet"),
        ("chao ban", "greet"),
        ("cảm ơn nhiều nha", "thank"),
        ("tra cứu hóa đơn tiền điện tháng trước", "lookup_bill"),
        ("tra cuu hoa don tien dien thang truoc", "lookup_bill"),
        ("check my bill for last month", "lookup_bill"),
        ("nhà tôi mất điện từ sáng", "report_outage"),
        ("nha toi mat dien tu sang", "report_outage"),
        ("lịch cắt điện quận 7 tuần này", "outage_schedule"),
        ("thanh toán tiền điện qua momo", "pay_bill"),
        ("giá điện bậc thang bao nhiêu", "tariff_info"),
        ("cho tôi gặp nhân viên", "talk_to_human"),
        ("PE0400012345", "inform"),
    ],
)
def test_typical_messages(model: NLUModel, text: str, expected: str) -> None:
    assert intent(model, text) == expected


@pytest.mark.parametrize(
    "variants",
    [
        # with and without diacritics, upper case
        ["tra cứu hóa đơn tiền điện", "tra cuu hoa don tien dien", "TRA CỨU HÓA ĐƠN TIỀN ĐIỆN"],
        ["nhà tôi mất điện", "nha toi mat dien", "Nhà Tôi Mất Điện"],
        ["cho tôi gặp nhân viên", "cho toi gap nhan vien"],
    ],
)
def test_diacritics_and_case_do_not_change_the_intent(model: NLUModel, variants: list[str]) -> None:
    assert len({intent(model, v) for v in variants}) == 1


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        # decomposed Unicode (macOS and some Vietnamese keyboards send NFD)
        (unicodedata.normalize("NFD", "tra cứu hóa đơn tiền điện"), "tra cứu hóa đơn tiền điện"),
        (unicodedata.normalize("NFD", "mất điện rồi"), "mất điện rồi"),
        # old tone placement: "hoá" for "hóa", "thuý" for "thúy"
        ("xem hoá đơn tháng này", "xem hóa đơn tháng này"),
        ("thanh toán hoà đơn", "thanh toán hòa đơn"),
        # chat abbreviations
        ("tôi ko muốn", "tôi không muốn"),
        ("xem hđ tháng trước", "xem hóa đơn tháng trước"),
        ("sđt của tôi là 0912345678", "số điện thoại của tôi là 0912345678"),
        ("mkh PE0400012345", "mã khách hàng PE0400012345"),
        ("tks ad", "thanks ad"),
        # stretched letters
        ("alooo", "alo"),
        ("khongggg", "khong"),
    ],
)
def test_spelling_variants_get_identical_probabilities(model: NLUModel, typed: str, canonical: str) -> None:
    assert np.array_equal(model.probabilities(typed), model.probabilities(canonical))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("xem hđ tháng trước", "lookup_bill"), ("ko", "deny"), ("tks ad", "thank"), ("cho mình xin sđt tổng đài", "talk_to_human")],
)
def test_abbreviations_classify(model: NLUModel, text: str, expected: str) -> None:
    assert intent(model, text) == expected


def test_normalisation_views() -> None:
    norm = normalize("Tiền điện thángggg  này KO tăng")
    assert norm.text == "tiền điện tháng này không tăng"
    assert norm.toneless == "tiên điên thang nay không tăng"
    assert norm.plain == "tien dien thang nay khong tang"
    assert strip_tones("Hoá đơn") == "Hoa đơn"
    assert collapse_repeats("1000 số, hiiii") == "1000 số, hi"


@pytest.mark.parametrize(
    "text",
    ["Hoà đơn", "hoa\u0300 đơn", "TIỀN ĐIỆN", "ά ё й", "한국어", "Tiền\u00a0điện", " x ", "a\u2028b", "a\tb\x00c", "\ud800x", "Ḝ ǅ", "tiền  điện", "x\u0323\u0301"],
)
def test_clean_and_strip_tones_agree_with_unicode_on_any_text(text: str) -> None:
    # clean: valid UTF-8, NFC, control characters and runs of white space as one space, trimmed.
    safe = unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode("utf-8"))
    assert clean(text) == " ".join(re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", " ", safe).split())
    assert clean(clean(text)) == clean(text)
    # strip_tones: the five Vietnamese tone marks gone, other marks kept, composed again.
    tones = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}
    for form in (text, clean(text), unicodedata.normalize("NFD", text)):
        expected = unicodedata.normalize("NFC", "".join(ch for ch in unicodedata.normalize("NFD", form) if ch not in tones))
        assert strip_tones(form) == expected


@pytest.mark.parametrize(
    "text",
    ["asdkjh qwpeoi zmxn", "lkjqwe poiuy", "😀", "😀😀😀", "👍👍", "'; DROP TABLE bills; --", "SELECT * FROM users WHERE 1=1"],
)
def test_gibberish_emoji_and_code_are_not_a_confident_real_intent(model: NLUModel, text: str) -> None:
    assert intent(model, text) in NOT_UNDERSTOOD


def test_out_of_scope_is_a_trained_intent(model: NLUModel) -> None:
    assert intent(model, "thời tiết hôm nay thế nào") == "out_of_scope"


def without_neighbours(model: NLUModel) -> NLUModel:
    """The same trained model with the neighbour discount off."""
    config = replace(model.config, neighbour_discount=0.0)
    return NLUModel(model.features, model.classifier, config, model.synonyms, model.meta, model.locations, None)


def test_a_message_like_the_training_data_keeps_its_confidence(model: NLUModel) -> None:
    assert model.neighbours is not None
    plain = without_neighbours(model)
    for example in load_training_data(PROJECT / "data").examples[::40]:
        np.testing.assert_allclose(model.probabilities(example.text), plain.probabilities(example.text), atol=1e-12)


@pytest.mark.parametrize("text", ["which bank has the best interest rate", "the electric guitar solo in that song was amazing"])
def test_a_message_unlike_any_training_example_loses_confidence(model: NLUModel, text: str) -> None:
    # Words like "rate" and "electric" lean on an intent; nothing in training reads like this.
    plain = without_neighbours(model)
    assert model.rank(text)[0][1] < plain.rank(text)[0][1] - 0.01


def test_a_message_of_values_only_is_not_unfamiliar(model: NLUModel) -> None:
    # A bare code or place has no letters left once masked: nothing to compare, no discount.
    for text in ("PE0400012345", "0912 345 678", "Bình Dương"):
        assert intent(model, text) == "inform"
        assert model.rank(text)[0][1] == pytest.approx(without_neighbours(model).rank(text)[0][1])


# -- parse never raises ---------------------------------------------------------------------


def assert_valid_parse(result: dict[str, Any], model: NLUModel) -> None:
    assert set(result) == {"text", "intent", "entities", "intent_ranking"}
    assert isinstance(result["text"], str)
    assert isinstance(result["intent"]["name"], str)
    assert 0.0 <= result["intent"]["confidence"] <= 1.0
    assert isinstance(result["entities"], list)
    ranking = result["intent_ranking"]
    assert len(ranking) <= 10
    confidences = [r["confidence"] for r in ranking]
    assert confidences == sorted(confidences, reverse=True)
    assert all(r["name"] in model.classes or r["name"] == FALLBACK_INTENT for r in ranking)
    if ranking:
        assert ranking[0]["name"] == result["intent"]["name"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a" * 10_000,
        "tra cứu hóa đơn " * 700,
        "😀😀😀",
        "\x00\x07 hi \x1b[31m",
        "\ud800",
        "xin chào \udcff",
        "Привет 你好 xin chào",
        None,
        42,
        3.5,
        b"bytes",
        ["a", "list"],
        {"a": 1},
    ],
)
def test_parse_never_raises_and_has_rasa_shape(model: NLUModel, text: Any) -> None:
    assert_valid_parse(model.parse(text), model)


def test_empty_message_is_a_fallback(model: NLUModel) -> None:
    assert model.parse("  \n ")["intent"] == {"name": FALLBACK_INTENT, "confidence": 1.0}


def test_ranking_has_at_most_ten_sorted_entries(model: NLUModel) -> None:
    result = model.parse("hóa đơn tháng này")
    assert len(model.classes) > 10
    assert len(result["intent_ranking"]) == 10
    assert_valid_parse(result, model)


def test_fallback_below_threshold_heads_the_ranking(model: NLUModel) -> None:
    result = model.parse("asdkjh qwpeoi zmxn")
    assert result["intent"] == {"name": FALLBACK_INTENT, "confidence": model.config.fallback_threshold}
    assert result["intent_ranking"][0] == result["intent"]
    assert result["intent_ranking"][1]["confidence"] < model.config.fallback_threshold
    assert len(result["intent_ranking"]) <= model.config.ranking_length


def test_entities_come_with_the_intent(model: NLUModel) -> None:
    result = model.parse("tra cứu hóa đơn PE0400012345 tháng 9", today=date(2026, 11, 20))
    assert result["intent"]["name"] == "lookup_bill"
    found = {(e["entity"], e["value"]) for e in result["entities"]}
    assert ("customer_code", "PE0400012345") in found and ("month", "2026-09") in found


# -- fast path, persistence -----------------------------------------------------------------

AGREEMENT_TEXTS = [
    "tra cứu hóa đơn tiền điện",
    "mat dien roi ad oi",
    "PE0400012345",
    "0912 345 678",
    "tính tiền 350kwh",
    "thanh toán 500k cho tháng 9/2026 lúc 7h",
    "alooo khongggg",
    "asdkjh qwpeoi zmxn",
    "😀",
    "",
    "SELECT * FROM users WHERE 1=1",
    "x" * 5000,
]


def test_fast_path_agrees_with_scikit_learn(model: NLUModel) -> None:
    batch = model.probabilities_batch(AGREEMENT_TEXTS)
    fast = np.array([model.probabilities(t) for t in AGREEMENT_TEXTS])
    np.testing.assert_allclose(fast, batch, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.sum(axis=1), 1.0)


def test_one_message_feature_row_is_the_batch_row_on_every_held_out_message(model: NLUModel) -> None:
    texts = [e.text for e in load_training_data(PROJECT / "tests" / "data" / "nlu_test.yml").examples] + AGREEMENT_TEXTS
    rows = [model._message_views(t) for t in texts]
    batch = model.features.matrix(rows).toarray()
    for row, expected in zip(rows, batch, strict=True):
        idx, val = model.features.vector(row)
        single = np.zeros_like(expected)
        single[idx] = val
        assert len(set(idx.tolist())) == len(idx)
        np.testing.assert_allclose(single, expected, rtol=0, atol=1e-12)


def test_saved_model_loads_and_parses_the_same(model: NLUModel, tmp_path: Path) -> None:
    model.save(tmp_path / "m")
    loaded = NLUModel.load(tmp_path / "m")
    assert loaded.meta == model.meta
    assert loaded.classes == model.classes
    for text in AGREEMENT_TEXTS:
        assert loaded.parse(text) == model.parse(text)
    assert (tmp_path / "m" / "model.joblib").stat().st_size < 50 * 1024 * 1024


def test_corrupted_model_file_is_refused(model: NLUModel, tmp_path: Path) -> None:
    folder = model.save(tmp_path / "m")
    model_file = folder / "model.joblib"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        NLUModel.load(folder)


def test_model_of_an_older_format_is_refused_with_a_hint(model: NLUModel, tmp_path: Path) -> None:
    folder = model.save(tmp_path / "m")
    bundle = joblib.load(folder / "model.joblib")
    del bundle["format"]
    joblib.dump(bundle, folder / "model.joblib")
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    meta["sha256"] = hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ValueError, match="retrain"):
        NLUModel.load(folder)


# -- config ---------------------------------------------------------------------------------


def test_project_config_is_read(model: NLUModel) -> None:
    config = PipelineConfig.from_file(PROJECT / "config.yml")
    assert 0 < config.fallback_threshold < 1 and config.ranking_length == 10
    assert model.config == config


@pytest.mark.parametrize(
    ("component", "key"),
    [
        ("- name: FallbackClassifier\n    threshold: 1.5", "threshold"),
        ("- name: FallbackClassifier\n    treshold: 0.3", "treshold"),
        ("- name: LinearIntentClassifier\n    C: -1", "C"),
        ("- name: LinearIntentClassifier\n    classifier: bert", "classifier"),
        ("- name: LinearIntentClassifier\n    neighbour_quantile: 1.5", "neighbour_quantile"),
        ("- name: LinearIntentClassifier\n    neighbour_discount: -1", "neighbour_discount"),
        ("- name: LinearIntentClassifier\n    tol: 0", "tol"),
        ("- name: TfidfFeaturizer\n    features: [{view: nope, analyzer: word, ngram_range: [1, 2]}]", "features"),
        ("- name: TfidfIntentClassifier\n    word_ngrams: [2, 1]", "word_ngrams"),
    ],
)
def test_config_errors_name_the_file_and_the_key(tmp_path: Path, component: str, key: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(f"language: vi\npipeline:\n  {component}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_file(path)
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)


def test_older_configs_and_other_components_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        "pipeline:\n  - name: SomeoneElsesExtractor\n    anything: 1\n  - name: TfidfIntentClassifier\n"
        "    word_ngrams: [1, 3]\n    C: 2\n  - name: FallbackClassifier\n    threshold: 0.6\n",
        encoding="utf-8",
    )
    config = PipelineConfig.from_file(path)
    assert config.C == 2.0 and config.fallback_threshold == 0.6
    assert {b.ngram_range for b in config.features if b.analyzer == "word"} == {(1, 3)}
