"""The NLU model: trained from Rasa NLU data, parses a message into intent, ranking and entities.

Intent classification is a linear model over TF-IDF blocks (see `nlu.featurize`) whose scores
are turned into probabilities by temperature scaling fitted on cross-validated predictions (see
`nlu.calibration`), so a confidence means roughly "how often an intent given with this confidence
is right", and the FallbackClassifier threshold of config.yml is a real trade-off rather than a
magic number. Confidence then drops for unfamiliar messages: unknown words, and (see
`nlu.neighbours`) wording unlike any training example.

`parse` never raises: any text (empty, huge, emoji, control characters) gets a valid result,
falling back to `nlu_fallback` below the configured confidence threshold.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import joblib
import numpy as np
import yaml
from scipy import sparse
from sklearn.base import ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from nlu.calibration import TemperatureScaled, fit_temperature_scaled, softmax
from nlu.entities import SynonymMatcher, extract_identifiers, extract_kwh, extract_months
from nlu.featurize import VIEW_NAMES, FeatureBlock, IntentFeatures, TextViews, views
from nlu.locations import LocationExtractor
from nlu.neighbours import NearestExamples
from nlu.normalize import clean
from nlu.training_data import TrainingData

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FALLBACK_INTENT = "nlu_fallback"
MAX_PARSE_CHARS = 2000  # longer texts are classified on their first part; entities on all of it
MODEL_FORMAT = 5  # bumped when the pickled bundle changes shape; older bundles are refused
# From this many examples, calibration uses at most LARGE_DATA_FOLDS folds, fitted with the final
# model in two processes: one temperature needs few out-of-fold scores, and CLINC150's 15,000 then
# train in under a minute on two slow cores (the joint multi-class SVM costs about three times
# one-vs-rest there; about 5 s on the project data).
LARGE_DATA = 5000
LARGE_DATA_FOLDS = 3

DEFAULT_FEATURES: tuple[FeatureBlock, ...] = (
    FeatureBlock("plain", "word", (1, 2)),
    FeatureBlock("plain", "char_wb", (1, 4)),
)
CLASSIFIERS = ("svm", "logistic")
ANALYZERS = ("word", "char_wb", "char", "word_pairs")
MULTI_CLASS = ("ovr", "crammer_singer")


class ConfigError(ValueError):
    """config.yml is malformed; the message names the file and key."""


@dataclass
class PipelineConfig:
    """What config.yml's `pipeline` says about our components, with their parameters.

    VietnameseNormalizer: collapse_repeats, expand_abbreviations.
    EntitySynonymMapper: mask_for_intents (the classifier sees "zzservicetype", not the name).
    LocationExtractor: mask_for_intents (the classifier sees "zzlocation", not the place).
    TfidfFeaturizer: features, a list of {view: text|toneless|plain|stems, analyzer:
        word|char_wb|char|word_pairs, ngram_range: [min, max], weight (optional, default 1)};
        for word_pairs the range is how far apart the two words are.
    LinearIntentClassifier: classifier (svm|logistic), multi_class (ovr|crammer_singer, svm
        only: one-vs-rest or one joint multi-class SVM), C, class_weight (null|balanced),
        fit_intercept, calibration_folds (0: raw softmax of the scores, else k-fold temperature
        scaling), tol (the solver's stopping tolerance), unknown_word_discount (0: off),
        neighbour_discount (0: off) and neighbour_quantile (see `nlu.neighbours`), ranking_length.
    TfidfIntentClassifier (older configs): the same keys plus word_ngrams and char_ngrams.
    FallbackClassifier: threshold.
    Other components (entity extractors, someone else's) are accepted and need nothing here.
    An unknown key of one of ours, or a bad value, is a ConfigError naming the file and the key.
    """

    language: str = "vi"
    collapse_repeats: bool = True
    expand_abbreviations: bool = True
    mask_synonyms: bool = True
    mask_locations: bool = False
    features: tuple[FeatureBlock, ...] = DEFAULT_FEATURES
    classifier: str = "svm"
    multi_class: str = "ovr"
    C: float = 1.0
    class_weight: str | None = None
    fit_intercept: bool = True
    calibration_folds: int = 5
    tol: float = 1e-4
    unknown_word_discount: float = 1.0
    neighbour_discount: float = 0.0
    neighbour_quantile: float = 0.1
    fallback_threshold: float = 0.3
    ranking_length: int = 10

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineConfig:
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        config = cls(language=str(doc.get("language", "vi")))
        pipeline = doc.get("pipeline")
        if not isinstance(pipeline, list):
            raise ConfigError(f"{path}: 'pipeline' must be a list of components")
        for index, component in enumerate(pipeline):
            if not isinstance(component, dict) or "name" not in component:
                raise ConfigError(f"{path}: pipeline[{index}] needs a 'name'")
            name = str(component["name"])
            params = {k: v for k, v in component.items() if k != "name"}
            parse = _COMPONENTS.get(name)
            if parse is None:
                continue  # another team's or Rasa's component: nothing for the classifier
            where = f"{path}: pipeline[{index}] ({name})"
            unknown = sorted(set(params) - _PARAMETERS[name])
            if unknown:
                raise ConfigError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join(sorted(_PARAMETERS[name]))})")
            for key, value in params.items():
                try:
                    config = parse(config, key, value)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"{where}: key '{key}': {exc}") from None
        return config


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _ngram_range(value: Any) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"expected [min, max] n-gram lengths, got {value!r}")
    low, high = value
    if not 1 <= low <= high <= 8:
        raise ValueError(f"expected 1 <= min <= max <= 8, got {value!r}")
    return (low, high)


def _positive(value: Any) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(f"must be positive, got {value!r}")
    return number


def _feature_blocks(value: Any) -> tuple[FeatureBlock, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of {view, analyzer, ngram_range}")
    blocks = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not {"view", "analyzer", "ngram_range"} <= set(item) <= {"view", "analyzer", "ngram_range", "weight"}:
            raise ValueError(f"features[{i}] needs view, analyzer, ngram_range and optionally weight, got {item!r}")
        if item["view"] not in VIEW_NAMES:
            raise ValueError(f"features[{i}].view must be one of {', '.join(VIEW_NAMES)}, got {item['view']!r}")
        if item["analyzer"] not in ANALYZERS:
            raise ValueError(f"features[{i}].analyzer must be one of {', '.join(ANALYZERS)}, got {item['analyzer']!r}")
        try:
            ngrams = _ngram_range(item["ngram_range"])
        except ValueError as exc:
            raise ValueError(f"features[{i}].ngram_range: {exc}") from None
        try:
            weight = _positive(item.get("weight", 1.0))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"features[{i}].weight: {exc}") from None
        blocks.append(FeatureBlock(item["view"], item["analyzer"], ngrams, weight))
    return tuple(blocks)


def _normalizer(config: PipelineConfig, key: str, value: Any) -> PipelineConfig:
    return replace(config, **{key: _bool(value)})


def _featurizer(config: PipelineConfig, key: str, value: Any) -> PipelineConfig:
    return replace(config, features=_feature_blocks(value))


def _classifier(config: PipelineConfig, key: str, value: Any) -> PipelineConfig:
    if key == "classifier":
        if value not in CLASSIFIERS:
            raise ValueError(f"must be one of {', '.join(CLASSIFIERS)}, got {value!r}")
        return replace(config, classifier=value)
    if key == "multi_class":
        if value not in MULTI_CLASS:
            raise ValueError(f"must be one of {', '.join(MULTI_CLASS)}, got {value!r}")
        return replace(config, multi_class=value)
    if key == "C":
        return replace(config, C=_positive(value))
    if key == "class_weight":
        if value not in (None, "balanced"):
            raise ValueError(f"must be null or 'balanced', got {value!r}")
        return replace(config, class_weight=value)
    if key == "fit_intercept":
        return replace(config, fit_intercept=_bool(value))
    if key == "calibration_folds":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value == 1:
            raise ValueError(f"must be 0 (no calibration) or a number of folds >= 2, got {value!r}")
        return replace(config, calibration_folds=value)
    if key in ("unknown_word_discount", "neighbour_discount"):
        exponent = float(value)
        if not 0.0 <= exponent <= 4.0:
            raise ValueError(f"must be between 0 (off) and 4, got {value!r}")
        return replace(config, **{key: exponent})
    if key == "neighbour_quantile":
        quantile = float(value)
        if not 0.0 <= quantile <= 1.0:
            raise ValueError(f"must be between 0 and 1, got {value!r}")
        return replace(config, neighbour_quantile=quantile)
    if key == "tol":
        return replace(config, tol=_positive(value))
    if key == "ranking_length":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"must be a positive integer, got {value!r}")
        return replace(config, ranking_length=value)
    # Older TfidfIntentClassifier keys: n-gram lengths of the word and character blocks.
    analyzers = ("word",) if key == "word_ngrams" else ("char_wb", "char")
    ngrams = _ngram_range(value)
    return replace(config, features=tuple(replace(b, ngram_range=ngrams) if b.analyzer in analyzers else b for b in config.features))


def _fallback(config: PipelineConfig, key: str, value: Any) -> PipelineConfig:
    threshold = float(value)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"must be between 0 and 1, got {value!r}")
    return replace(config, fallback_threshold=threshold)


def _synonym_mapper(config: PipelineConfig, key: str, value: Any) -> PipelineConfig:
    return replace(config, mask_synonyms=_bool(value))


def _location_extractor(config: PipelineConfig, key: str, value: Any) -> PipelineConfig:
    return replace(config, mask_locations=_bool(value))


def _accept(config: PipelineConfig, key: str, value: Any) -> PipelineConfig:
    return config


_CLASSIFIER_KEYS = {
    "classifier",
    "multi_class",
    "C",
    "class_weight",
    "fit_intercept",
    "calibration_folds",
    "tol",
    "unknown_word_discount",
    "neighbour_discount",
    "neighbour_quantile",
    "ranking_length",
}
_PARAMETERS: dict[str, set[str]] = {
    "VietnameseNormalizer": {"collapse_repeats", "expand_abbreviations"},
    "EntitySynonymMapper": {"mask_for_intents"},
    "LocationExtractor": {"mask_for_intents"},
    "TfidfFeaturizer": {"features"},
    "LinearIntentClassifier": _CLASSIFIER_KEYS,
    "TfidfIntentClassifier": _CLASSIFIER_KEYS | {"word_ngrams", "char_ngrams"},
    "FallbackClassifier": {"threshold"},
    "RegexEntityExtractor": set(),
    "MonthExtractor": set(),
}
_COMPONENTS = {
    "VietnameseNormalizer": _normalizer,
    "TfidfFeaturizer": _featurizer,
    "LinearIntentClassifier": _classifier,
    "TfidfIntentClassifier": _classifier,
    "FallbackClassifier": _fallback,
    "RegexEntityExtractor": _accept,
    "MonthExtractor": _accept,
    "EntitySynonymMapper": _synonym_mapper,
    "LocationExtractor": _location_extractor,
}


def fit_classifier(config: PipelineConfig, matrix: sparse.spmatrix, labels: list[str]) -> ClassifierMixin:
    """The configured linear classifier, fitted, with k-fold temperature scaling when asked for
    (see `nlu.calibration`). Folds are capped by the rarest intent, and by LARGE_DATA_FOLDS on
    large data, where the fits run in two processes."""
    if config.classifier == "svm":
        base: ClassifierMixin = LinearSVC(
            C=config.C, multi_class=config.multi_class, class_weight=config.class_weight, fit_intercept=config.fit_intercept, tol=config.tol
        )
    else:
        base = LogisticRegression(C=config.C, class_weight=config.class_weight, fit_intercept=config.fit_intercept, tol=config.tol, max_iter=3000)
    large = len(labels) >= LARGE_DATA
    folds = min(config.calibration_folds, min(Counter(labels).values()), LARGE_DATA_FOLDS if large else config.calibration_folds)
    if folds < 2:
        return base.fit(matrix, labels)
    return fit_temperature_scaled(base, matrix, labels, folds, n_jobs=2 if large else 1)


@dataclass
class ModelMeta:
    id: str
    created_at: str
    data_hash: str
    intents: list[str]
    examples: int
    train_seconds: float
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)


def data_fingerprint(data: TrainingData, config: PipelineConfig) -> str:
    payload = json.dumps(
        [[e.text, e.intent, list(e.entities)] for e in data.examples] + [sorted(data.synonyms.items()), asdict(config)],
        ensure_ascii=False,
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class NLUModel:
    """A trained pipeline plus entity extractors; `parse` returns Rasa's /model/parse shape."""

    def __init__(
        self,
        features: IntentFeatures,
        classifier: ClassifierMixin,
        config: PipelineConfig,
        synonyms: SynonymMatcher,
        meta: ModelMeta,
        locations: LocationExtractor | None = None,
        neighbours: NearestExamples | None = None,
    ) -> None:
        self.features = features
        self.classifier = classifier
        self.config = config
        self.synonyms = synonyms
        self.meta = meta
        self.locations = locations
        self.neighbours = neighbours
        self.classes: list[str] = list(classifier.classes_)
        if isinstance(classifier, TemperatureScaled):
            linear, self._inverse_temperature = classifier.estimator, classifier.inverse_temperature
        else:
            linear, self._inverse_temperature = classifier, 1.0
        # Column-major weights make the per-message sparse dot product a cheap gather.
        self._weights = np.ascontiguousarray(linear.coef_.T)
        self._bias = np.broadcast_to(np.asarray(linear.intercept_, dtype=np.float64), (linear.coef_.shape[0],)).copy()

    @classmethod
    def train(cls, data: TrainingData, config: PipelineConfig) -> NLUModel:
        if len(data.intents) < 2:
            raise ValueError("training data needs at least two intents")
        started = time.perf_counter()
        entity_of_value = {}
        for example in data.examples:
            for ent in example.entities:
                if ent["value"] != ent["text"]:
                    entity_of_value[str(ent["value"])] = ent["entity"]
        matcher = SynonymMatcher(dict(data.synonyms), entity_of_value)
        masker = matcher if config.mask_synonyms else None
        locations = LocationExtractor.train(data)
        features = IntentFeatures(config.features)
        matrix = features.fit_matrix([cls._views(config, e.text, masker, locations) for e in data.examples])
        labels = [e.intent for e in data.examples]
        classifier = fit_classifier(config, matrix, labels)
        neighbours = None
        if config.neighbour_discount > 0:
            neighbours = NearestExamples(matrix, config.neighbour_quantile, columns=features.character_columns(), labels=labels)
        now = datetime.now(VN_TZ)
        fingerprint = data_fingerprint(data, config)
        meta = ModelMeta(
            id=f"nlu-{now:%Y%m%d-%H%M%S}{now.microsecond // 1000:03d}-{fingerprint[:8]}",
            created_at=now.isoformat(),
            data_hash=fingerprint,
            intents=data.intents,
            examples=len(data.examples),
            train_seconds=round(time.perf_counter() - started, 3),
            config=json.loads(json.dumps(asdict(config))),  # as meta.json will hold it
        )
        return cls(features, classifier, config, matcher, meta, locations, neighbours)

    @staticmethod
    def _views(
        config: PipelineConfig,
        text: str,
        synonyms: SynonymMatcher | None,
        locations: LocationExtractor | None,
        places: list[dict[str, Any]] | None = None,
    ) -> TextViews:
        """The classifier's views of `text`; `places`: location entities of `clean(text)` when
        the caller has them already (parse), else the extractor is asked if the config masks them."""
        text = clean(text)[:MAX_PARSE_CHARS]
        spans: list[tuple[int, int]] = []
        if config.mask_locations and locations is not None:
            found = locations.extract(text) if places is None else places
            spans = [(e["start"], e["end"]) for e in found if e["end"] <= len(text)]
        return views(text, collapse=config.collapse_repeats, expand=config.expand_abbreviations, synonyms=synonyms, places=spans)

    def _message_views(self, text: str, places: list[dict[str, Any]] | None = None) -> TextViews:
        return self._views(self.config, text, self.synonyms if self.config.mask_synonyms else None, self.locations, places)

    # -- parsing -----------------------------------------------------------------------------

    def probabilities(self, text: str, places: list[dict[str, Any]] | None = None) -> np.ndarray:
        """Intent probabilities of one message, in `self.classes` order (the fast path);
        `places`: the location entities of `text` if already extracted."""
        row = self._message_views(text, places)
        idx, val = self.features.vector(row)
        scores = self._bias + val @ self._weights[idx] if len(idx) else self._bias.copy()
        if scores.shape[0] == 1:  # two intents: scikit-learn keeps one column for the second
            scores = np.array([-scores[0], scores[0]])
        probabilities = softmax(self._inverse_temperature * scores)
        familiar = None
        if self.neighbours is not None:
            familiar = self.neighbours.familiarity_of(idx, val, self._likely(scores))
        weight = self._weight(self.features.coverage(row), familiar)
        return probabilities if weight == 1.0 else weight * probabilities + (1.0 - weight) / len(probabilities)

    def _likely(self, scores: np.ndarray) -> Iterator[str]:
        """The intents in order of score, the first without sorting the others."""
        yield self.classes[int(scores.argmax())]
        for i in np.argsort(scores)[-2::-1].tolist():
            yield self.classes[i]

    def probabilities_batch(self, texts: list[str]) -> np.ndarray:
        """scikit-learn's own computation, for evaluation; agrees with `probabilities`."""
        rows = [self._message_views(t) for t in texts]
        matrix = self.features.matrix(rows)
        if isinstance(self.classifier, TemperatureScaled):
            probabilities = self.classifier.predict_proba(matrix)
        else:  # uncalibrated: softmax of the scores
            probabilities = TemperatureScaled(self.classifier, 1.0).predict_proba(matrix)
        familiar = None if self.neighbours is None else self.neighbours.familiarity(self.neighbours.similarities(matrix))
        weight = self._weight(np.array([self.features.coverage(r) for r in rows]), familiar)
        if np.all(weight == 1.0):
            return probabilities
        weight = weight[:, None]
        return weight * probabilities + (1.0 - weight) / probabilities.shape[1]

    def _weight(self, coverage: Any, familiarity: Any) -> Any:
        """How much of its calibrated probabilities a message keeps (one message: floats; many:
        arrays): it is blended towards uniform, p' = w p + (1 - w) / K, with w = coverage **
        unknown_word_discount * familiarity ** neighbour_discount. A message of known words, as
        near the training examples as they are to each other, keeps them; gibberish, lone emoji,
        foreign scripts, code and requests unlike any training example fall under the threshold.
        `familiarity`: how near the nearest training example is (see `nlu.neighbours`), None
        without the neighbour discount."""
        weight = coverage**self.config.unknown_word_discount
        if familiarity is not None:
            weight = weight * familiarity**self.config.neighbour_discount
        return weight

    def rank(self, text: str, places: list[dict[str, Any]] | None = None) -> list[tuple[str, float]]:
        probabilities = self.probabilities(text, places)
        values = probabilities.tolist()
        return [(self.classes[i], values[i]) for i in np.argsort(probabilities)[::-1].tolist()]

    def entities(self, text: str, today: date | None = None, places: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """All entities of `text`; `places`: its location entities if already extracted."""
        today = today or datetime.now(VN_TZ).date()
        found = extract_identifiers(text)
        if places is None and self.locations is not None:
            places = self.locations.extract(text)
        if places:
            # Before months: "đường 3 tháng 2" is a street, not February.
            found += [e for e in places if not _overlaps(e, found)]
        found += [e for e in extract_months(text, today) if not _overlaps(e, found)]
        found += [e for e in extract_kwh(text) if not _overlaps(e, found)]
        found += [e for e in self.synonyms.extract(text) if not _overlaps(e, found)]
        return sorted(found, key=lambda e: e["start"])

    def parse(self, text: Any, today: date | None = None) -> dict[str, Any]:
        """Rasa-shaped parse result; never raises for any input."""
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        cleaned = clean(text)
        if not cleaned:
            return {"text": cleaned, "intent": {"name": FALLBACK_INTENT, "confidence": 1.0}, "entities": [], "intent_ranking": []}
        # Extracted once: the classifier may mask them, and they are entities of the result.
        places = self.locations.extract(cleaned) if self.locations is not None else []
        ranking = self.rank(cleaned, places)
        top_name, top_conf = ranking[0]
        ranking_out = [{"name": n, "confidence": round(c, 4)} for n, c in ranking[: self.config.ranking_length]]
        intent = {"name": top_name, "confidence": round(top_conf, 4)}
        if top_conf < self.config.fallback_threshold:
            # Like Rasa's FallbackClassifier: the threshold is the fallback's confidence, first in
            # a ranking that stays sorted and within ranking_length.
            intent = {"name": FALLBACK_INTENT, "confidence": round(self.config.fallback_threshold, 4)}
            ranking_out = [dict(intent), *ranking_out[: self.config.ranking_length - 1]]
        return {"text": cleaned, "intent": intent, "entities": self.entities(cleaned, today, places), "intent_ranking": ranking_out}

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        model_file = directory / "model.joblib"
        bundle = {
            "format": MODEL_FORMAT,
            "features": self.features,
            "classifier": self.classifier,
            "config": self.config,
            "synonyms": self.synonyms,
            "locations": self.locations,
            "neighbours": self.neighbours,
        }
        joblib.dump(bundle, model_file, compress=3)
        meta = asdict(self.meta) | {"sha256": hashlib.sha256(model_file.read_bytes()).hexdigest()}
        (directory / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: Path) -> NLUModel:
        """Load a saved model, refusing a file whose checksum does not match its metadata and a
        bundle written by an incompatible version of this module."""
        directory = Path(directory)
        meta_doc = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        model_file = directory / "model.joblib"
        digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
        if digest != meta_doc.get("sha256"):
            raise ValueError(f"{model_file}: checksum mismatch, refusing a corrupted model")
        try:
            bundle = joblib.load(model_file)
        except Exception as exc:  # a bundle pickled by other code: classes moved or changed
            raise ValueError(f"{model_file}: cannot unpickle ({exc!r}); retrain with `python -m nlu train`") from None
        if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
            found = bundle.get("format", 1) if isinstance(bundle, dict) else "unknown"
            raise ValueError(f"{model_file}: model format {found}, this version reads {MODEL_FORMAT}; retrain with `python -m nlu train`")
        meta_doc.pop("sha256", None)
        return cls(
            bundle["features"],
            bundle["classifier"],
            bundle["config"],
            bundle["synonyms"],
            ModelMeta(**meta_doc),
            bundle["locations"],
            bundle["neighbours"],
        )


def _overlaps(entity: dict[str, Any], others: list[dict[str, Any]]) -> bool:
    return any(o["start"] < entity["end"] and entity["start"] < o["end"] for o in others)
