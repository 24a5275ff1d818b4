"""What the classifier's features buy a customer: place names it never saw, English inflections
and phrasings with words in between are understood like the ones in training.

The model is trained once for the module on the project data with config.yml (a few seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu import NLUModel, PipelineConfig, load_training_data
from nlu.featurize import views
from nlu.model import ConfigError
from nlu.normalize import stem_english

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> NLUModel:
    return NLUModel.train(load_training_data(PROJECT / "data"), PipelineConfig.from_file(PROJECT / "config.yml"))


def intent(model: NLUModel, text: str) -> str:
    return model.parse(text)["intent"]["name"]


# Places that appear nowhere in data/nlu.yml or tests/data/nlu_test.yml: the classifier must
# not need to have seen them.
@pytest.mark.parametrize("place", ["Sóc Trăng", "Vĩnh Long", "Tuy Hoa, Phu Yen", "phường Phú Mỹ, Thủ Dầu Một", "Bắc Ninh"])
def test_a_place_name_alone_is_an_answer(model: NLUModel, place: str) -> None:
    result = model.parse(place)
    assert result["intent"]["name"] == "inform"
    assert [e["entity"] for e in result["entities"]] == ["location"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mất điện ở Sóc Trăng từ trưa", "report_outage"),
        ("lịch cắt điện Vĩnh Long tuần sau", "outage_schedule"),
    ],
)
def test_a_place_does_not_hide_what_is_asked(model: NLUModel, text: str, expected: str) -> None:
    assert intent(model, text) == expected


def test_places_are_masked_only_when_configured() -> None:
    masked = views("mất điện ở Sóc Trăng", places=[(11, 20)])
    assert masked.plain.split() == ["mat", "dien", "o", "zzlocation"]
    assert "soc trang" in views("mất điện ở Sóc Trăng").plain


def test_english_inflections_share_a_stem_and_vietnamese_is_untouched() -> None:
    assert stem_english("bills billed billing") == "bill bill bill"
    assert stem_english("charges charged") == "charg charg"
    vietnamese = "nguyen thuong nghe khoe xem hoa don tien dien zzcode"
    assert stem_english(vietnamese) == vietnamese


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("checking my bills for last month", "lookup_bill"),
        ("paying the electricity bills online", "pay_bill"),
    ],
)
def test_inflected_english_classifies(model: NLUModel, text: str, expected: str) -> None:
    assert intent(model, text) == expected


# -- config ---------------------------------------------------------------------------------


def test_new_feature_and_classifier_keys_are_read(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        "pipeline:\n  - name: LocationExtractor\n    mask_for_intents: true\n  - name: TfidfFeaturizer\n"
        "    features:\n      - {view: stems, analyzer: word_pairs, ngram_range: [2, 3], weight: 0.5}\n"
        "  - name: LinearIntentClassifier\n    multi_class: crammer_singer\n",
        encoding="utf-8",
    )
    config = PipelineConfig.from_file(path)
    assert config.mask_locations and config.multi_class == "crammer_singer"
    [block] = config.features
    assert (block.view, block.analyzer, block.ngram_range, block.weight) == ("stems", "word_pairs", (2, 3), 0.5)


@pytest.mark.parametrize(
    ("component", "key"),
    [
        ("- name: LocationExtractor\n    mask_for_intents: yes please", "mask_for_intents"),
        ("- name: LinearIntentClassifier\n    multi_class: all", "multi_class"),
        ("- name: TfidfFeaturizer\n    features: [{view: plain, analyzer: word, ngram_range: [1, 2], weight: 0}]", "features"),
    ],
)
def test_bad_values_of_the_new_keys_name_the_key(tmp_path: Path, component: str, key: str) -> None:
    path = tmp_path / "config.yml"
    path.write_text(f"language: vi\npipeline:\n  {component}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_file(path)
    assert str(path) in str(info.value) and f"'{key}'" in str(info.value)
