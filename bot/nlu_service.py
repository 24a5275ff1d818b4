"""The NLU the service runs: the newest model in `models/` (trained at startup if none),
plus Rasa's button payloads ("/intent{\"entity\": \"value\"}") that bypass the classifier."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from nlu import ModelRegistry, NLUModel
from nlu.cli import train

log = logging.getLogger(__name__)
_PAYLOAD_RE = re.compile(r"^/([A-Za-z_][A-Za-z0-9_]*)(\{.*\})?$", re.DOTALL)


class NLUService:
    def __init__(self, model: NLUModel, intents: set[str], model_dir: Path | None = None) -> None:
        self.model = model
        self.intents = intents
        self.model_dir = model_dir  # the folder it was loaded from, if any (registered at startup)
        # Lookup tables (places) are built on first use: build them now, not on a customer's turn.
        model.parse("mất điện ở phường Bến Thành quận 1")

    @classmethod
    def load_or_train(cls, project_dir: Path, models_dir: Path, intents: set[str]) -> NLUService:
        newest = ModelRegistry(models_dir).newest()
        if newest is not None:
            try:
                model = NLUModel.load(newest)
                log.info("loaded NLU model %s", newest.name)
                return cls(model, intents, newest)
            except Exception as exc:  # corrupted, or saved by an incompatible version
                log.error("cannot load NLU model %s (%s); training a new one", newest.name, exc)
        else:
            log.info("no NLU model in %s; training one", models_dir)
        trained = train(project_dir / "data", project_dir / "config.yml", models_dir)
        return cls(NLUModel.load(trained), intents, trained)

    def swap(self, model: NLUModel) -> None:
        """Serve `model` from the next parse on (one reference assignment: a parse in flight
        finishes on the model it started with)."""
        self.model = model

    def parse(self, text: str) -> dict[str, Any]:
        payload = self._parse_payload(text)
        return payload if payload is not None else self.model.parse(text)

    def _parse_payload(self, text: str) -> dict[str, Any] | None:
        match = _PAYLOAD_RE.match(text.strip())
        if not match or match.group(1) not in self.intents:
            return None
        entities = []
        if match.group(2):
            try:
                values = json.loads(match.group(2))
            except json.JSONDecodeError:
                return None
            if not isinstance(values, dict):
                return None
            entities = [{"entity": k, "value": v, "start": 0, "end": len(text), "extractor": "payload"} for k, v in values.items()]
        intent = {"name": match.group(1), "confidence": 1.0}
        return {"text": text, "intent": intent, "entities": entities, "intent_ranking": [intent]}
