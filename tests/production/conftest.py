"""Fixtures of the production tests: the project's NLU trained once, and the replies the tests
recognise a turn by."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlu import ModelRegistry, NLUModel

# A customer message and a piece of the reply that answers it.
GREETING = ("xin chào", "Xin chào!")
THANKS = ("cảm ơn", "không có gì")
HELP = ("giúp tôi với", "Tôi có thể giúp bạn")


@pytest.fixture(scope="session")
def project_nlu(trained_models_dir: Path) -> NLUModel:
    return NLUModel.load(ModelRegistry(trained_models_dir).newest())
