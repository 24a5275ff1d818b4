"""Vietnamese-first NLU: normalisation, intent classification and entity extraction.

Public API:
    load_training_data(path) -> TrainingData      (Rasa 3.x NLU YAML)
    NLUModel.train(data, config) / NLUModel.load(path) / model.parse(text)
    ModelRegistry(models_dir): save, newest, load

This package imports nothing from bot/, actions/ or backend/.
"""

from nlu.model import NLUModel, PipelineConfig
from nlu.registry import ModelRegistry
from nlu.training_data import TrainingData, TrainingDataError, load_training_data

__all__ = [
    "ModelRegistry",
    "NLUModel",
    "PipelineConfig",
    "TrainingData",
    "TrainingDataError",
    "load_training_data",
]
