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
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer

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


def _first_view(pairs: list[tuple[str, str]]) -> list[str]:
    return [p[0] for p in pairs]


def _second_view(pairs: list[tuple[str, str]]) -> list[str]:
    return [p[1] for p in pairs]


def _build_pipeline(config: PipelineConfig) -> Pipeline:
    features = FeatureUnion(
        [
            (
                "words",
                Pipeline(
                    [
                        ("view", FunctionTransformer(_first_view)),
                        ("tfidf", TfidfVectorizer(ngram_range=config.word_ngrams, sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")),
                    ]
                ),
            ),
            (
                "plain_words",
                Pipeline(
                    [
                        ("view", FunctionTransformer(_second_view)),
                        ("tfidf", TfidfVectorizer(ngram_range=config.word_ngrams, sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")),
                    ]
                ),
            ),
            (
                "chars",
                Pipeline(
                    [
                        ("view", FunctionTransformer(_second_view)),
                        ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=config.char_ngrams, sublinear_tf=True, min_df=1)),
                    ]
                ),
            ),
        ]
    )
    classifier = LogisticRegression(C=config.C, max_iter=2000)
    return Pipeline([("features", features), ("classifier", classifier)])


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

    def __init__(self, pipeline: Pipeline, config: PipelineConfig, synonyms: SynonymMatcher, meta: ModelMeta) -> None:
        self.pipeline = pipeline
        self.config = config
        self.synonyms = synonyms
        self.meta = meta
        self.classes: list[str] = list(pipeline.classes_)

    @classmethod
    def train(cls, data: TrainingData, config: PipelineConfig) -> NLUModel:
        if len(data.intents) < 2:
            raise ValueError("training data needs at least two intents")
        started = time.perf_counter()
        pipeline = _build_pipeline(config)
        pipeline.fit([views(e.text) for e in data.examples], [e.intent for e in data.examples])
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
        return cls(pipeline, config, matcher, meta)

    # -- parsing -----------------------------------------------------------------------------

    def rank(self, text: str) -> list[tuple[str, float]]:
        probabilities = self.pipeline.predict_proba([views(text[:MAX_PARSE_CHARS])])[0]
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
        joblib.dump({"pipeline": self.pipeline, "config": self.config, "synonyms": self.synonyms}, model_file, compress=3)
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
        return cls(bundle["pipeline"], bundle["config"], bundle["synonyms"], ModelMeta(**meta_doc))


def _overlaps(entity: dict[str, Any], others: list[dict[str, Any]]) -> bool:
    return any(o["start"] < entity["end"] and entity["start"] < o["end"] for o in others)
