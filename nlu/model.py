"""The NLU model: trained from Rasa NLU data, parses a message into intent, ranking and entities.

`parse` never raises: any text (empty, huge, emoji, control characters) gets a valid result,
falling back to `nlu_fallback` below the configured confidence threshold.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import joblib
import numpy as np
import yaml
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from nlu.entities import SynonymMatcher, extract_identifiers, extract_kwh, extract_months
from nlu.featurize import views
from nlu.normalize import clean
from nlu.training_data import TrainingData

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FALLBACK_INTENT = "nlu_fallback"
MAX_PARSE_CHARS = 2000  # longer texts are classified on their first part; entities on all of it


class ConfigError(ValueError):
    """config.yml is malformed; the message names the file and key."""


@dataclass
class PipelineConfig:
    """What config.yml's `pipeline` says about our components, with their parameters."""

    language: str = "vi"
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    C: float = 10.0
    fallback_threshold: float = 0.35
    ranking_length: int = 10

    @classmethod
    def from_file(cls, path: str | Path) -> PipelineConfig:
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
        config = cls(language=str(doc.get("language", "vi")))
        pipeline = doc.get("pipeline")
        if not isinstance(pipeline, list):
            raise ConfigError(f"{path}: 'pipeline' must be a list of components")
        for index, component in enumerate(pipeline):
            if not isinstance(component, dict) or "name" not in component:
                raise ConfigError(f"{path}: pipeline[{index}] needs a 'name'")
            name = component["name"]
            try:
                if name == "TfidfIntentClassifier":
                    config.word_ngrams = tuple(component.get("word_ngrams", config.word_ngrams))
                    config.char_ngrams = tuple(component.get("char_ngrams", config.char_ngrams))
                    config.C = float(component.get("C", config.C))
                    config.ranking_length = int(component.get("ranking_length", config.ranking_length))
                elif name == "FallbackClassifier":
                    config.fallback_threshold = float(component.get("threshold", config.fallback_threshold))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{path}: pipeline[{index}] ({name}): {exc}") from None
        return config


class IntentFeatures:
    """TF-IDF over word n-grams (both views) and character n-grams (diacritics-free view).

    `vector` featurises one message without scikit-learn's per-call validation overhead, so a
    parse costs well under a millisecond; `matrix` is the batch form used for training.
    """

    def __init__(self, config: PipelineConfig) -> None:
        word = {"ngram_range": tuple(config.word_ngrams), "sublinear_tf": True, "token_pattern": r"(?u)\b\w+\b"}
        chars = {"analyzer": "char_wb", "ngram_range": tuple(config.char_ngrams), "sublinear_tf": True}
        # (which view, vectorizer): 0 = with diacritics, 1 = without
        self.blocks: list[tuple[int, TfidfVectorizer]] = [
            (0, TfidfVectorizer(**word)),
            (1, TfidfVectorizer(**word)),
            (1, TfidfVectorizer(**chars)),
        ]
        self._analyzers: list[Any] | None = None
        self._offsets: list[int] = []

    def fit_matrix(self, pairs: list[tuple[str, str]]) -> sparse.csr_matrix:
        parts = [vec.fit_transform([p[view] for p in pairs]) for view, vec in self.blocks]
        self._prepare()
        return sparse.hstack(parts, format="csr")

    def matrix(self, pairs: list[tuple[str, str]]) -> sparse.csr_matrix:
        return sparse.hstack([vec.transform([p[view] for p in pairs]) for view, vec in self.blocks], format="csr")

    def _prepare(self) -> None:
        self._analyzers = [vec.build_analyzer() for _, vec in self.blocks]
        offset, self._offsets = 0, []
        for _, vec in self.blocks:
            self._offsets.append(offset)
            offset += len(vec.vocabulary_)

    def vector(self, pair: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, values) of one message's feature row."""
        if self._analyzers is None:
            self._prepare()
        assert self._analyzers is not None
        all_idx: list[np.ndarray] = []
        all_val: list[np.ndarray] = []
        for (view, vec), analyze, offset in zip(self.blocks, self._analyzers, self._offsets, strict=True):
            counts: dict[int, int] = {}
            vocabulary = vec.vocabulary_
            for gram in analyze(pair[view]):
                index = vocabulary.get(gram)
                if index is not None:
                    counts[index] = counts.get(index, 0) + 1
            if not counts:
                continue
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            val = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * vec.idf_[idx]
            val /= np.sqrt(np.dot(val, val))
            all_idx.append(idx + offset)
            all_val.append(val)
        if not all_idx:
            return np.empty(0, dtype=np.int64), np.empty(0)
        return np.concatenate(all_idx), np.concatenate(all_val)

    def __getstate__(self) -> dict[str, Any]:
        return {"blocks": self.blocks}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.blocks = state["blocks"]
        self._analyzers = None
        self._offsets = []


def _softmax(scores: np.ndarray) -> np.ndarray:
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


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
        self, features: IntentFeatures, classifier: LogisticRegression, config: PipelineConfig, synonyms: SynonymMatcher, meta: ModelMeta
    ) -> None:
        self.features = features
        self.classifier = classifier
        self.config = config
        self.synonyms = synonyms
        self.meta = meta
        self.classes: list[str] = list(classifier.classes_)
        # Column-major weights make the per-message sparse dot product a cheap gather.
        self._weights = np.ascontiguousarray(classifier.coef_.T)
        self._bias = classifier.intercept_

    @classmethod
    def train(cls, data: TrainingData, config: PipelineConfig) -> NLUModel:
        if len(data.intents) < 2:
            raise ValueError("training data needs at least two intents")
        started = time.perf_counter()
        features = IntentFeatures(config)
        matrix = features.fit_matrix([views(e.text) for e in data.examples])
        classifier = LogisticRegression(C=config.C, max_iter=3000)
        classifier.fit(matrix, [e.intent for e in data.examples])
        entity_of_value = {}
        for example in data.examples:
            for ent in example.entities:
                if ent["value"] != ent["text"]:
                    entity_of_value[str(ent["value"])] = ent["entity"]
        matcher = SynonymMatcher(dict(data.synonyms), entity_of_value)
        now = datetime.now(VN_TZ)
        fingerprint = data_fingerprint(data, config)
        meta = ModelMeta(
            id=f"nlu-{now:%Y%m%d-%H%M%S}{now.microsecond // 1000:03d}-{fingerprint[:8]}",
            created_at=now.isoformat(),
            data_hash=fingerprint,
            intents=data.intents,
            examples=len(data.examples),
            train_seconds=round(time.perf_counter() - started, 3),
            config=asdict(config),
        )
        return cls(features, classifier, config, matcher, meta)

    # -- parsing -----------------------------------------------------------------------------

    def probabilities(self, text: str) -> np.ndarray:
        idx, val = self.features.vector(views(text[:MAX_PARSE_CHARS]))
        scores = self._bias + val @ self._weights[idx] if len(idx) else self._bias.copy()
        if scores.shape[0] == 1:  # two intents: scikit-learn keeps one column for the second
            scores = np.array([-scores[0], scores[0]])
        return _softmax(scores)

    def probabilities_batch(self, texts: list[str]) -> np.ndarray:
        """scikit-learn's own computation, for evaluation; agrees with `probabilities`."""
        return self.classifier.predict_proba(self.features.matrix([views(t[:MAX_PARSE_CHARS]) for t in texts]))

    def rank(self, text: str) -> list[tuple[str, float]]:
        probabilities = self.probabilities(text)
        order = np.argsort(probabilities)[::-1]
        return [(self.classes[i], float(probabilities[i])) for i in order]

    def entities(self, text: str, today: date | None = None) -> list[dict[str, Any]]:
        today = today or datetime.now(VN_TZ).date()
        found = extract_identifiers(text)
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
        ranking = self.rank(cleaned)
        top_name, top_conf = ranking[0]
        ranking_out = [{"name": n, "confidence": round(c, 4)} for n, c in ranking[: self.config.ranking_length]]
        intent = {"name": top_name, "confidence": round(top_conf, 4)}
        if top_conf < self.config.fallback_threshold:
            intent = {"name": FALLBACK_INTENT, "confidence": round(1 - top_conf, 4)}
            ranking_out.insert(0, dict(intent))
        return {"text": cleaned, "intent": intent, "entities": self.entities(cleaned, today), "intent_ranking": ranking_out}

    # -- persistence -------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        model_file = directory / "model.joblib"
        bundle = {"features": self.features, "classifier": self.classifier, "config": self.config, "synonyms": self.synonyms}
        joblib.dump(bundle, model_file, compress=3)
        meta = asdict(self.meta) | {"sha256": hashlib.sha256(model_file.read_bytes()).hexdigest()}
        (directory / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: Path) -> NLUModel:
        """Load a saved model, refusing a file whose checksum does not match its metadata."""
        meta_doc = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        model_file = directory / "model.joblib"
        digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
        if digest != meta_doc.get("sha256"):
            raise ValueError(f"{model_file}: checksum mismatch, refusing a corrupted model")
        bundle = joblib.load(model_file)
        meta_doc.pop("sha256", None)
        return cls(bundle["features"], bundle["classifier"], bundle["config"], bundle["synonyms"], ModelMeta(**meta_doc))


def _overlaps(entity: dict[str, Any], others: list[dict[str, Any]]) -> bool:
    return any(o["start"] < entity["end"] and entity["start"] < o["end"] for o in others)
