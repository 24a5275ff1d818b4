"""Fixtures of the runtime tests: a small sample domain (a shirt shop) and its NLU."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain import Domain
from bot.nlu_service import NLUService
from nlu import NLUModel, PipelineConfig, load_training_data

SAMPLE = Path(__file__).parent / "sample"


@pytest.fixture(scope="module")
def sample_nlu() -> NLUService:
    domain = Domain.load(SAMPLE / "domain.yml")
    model = NLUModel.train(load_training_data(SAMPLE / "nlu.yml"), PipelineConfig.from_file(SAMPLE / "config.yml"))
    return NLUService(model, set(domain.intents))
