"""Temperature scaling of a linear intent classifier, with its folds and final fit run side by side.

The classifier's scores become probabilities as softmax(beta * scores): one parameter, the inverse
temperature beta, fitted by log loss on out-of-fold scores (k models, each trained without one
fold, score the fold they did not see); then the model is trained on all the data. Probabilities
stay a softmax of linear scores, so `NLUModel`'s fast path remains a sparse dot product.

scikit-learn's `CalibratedClassifierCV(method="temperature", ensemble=False)` computes the same,
but only after the folds does it start the final fit. Here the final fit is one more job beside the
folds: on two processes and large data (CLINC150's 15,000 messages) that is the difference between
the folds' time plus one full fit and about half of all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from scipy.optimize import minimize_scalar
from scipy.sparse import spmatrix
from sklearn.base import ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold


def _columns(scores: np.ndarray) -> np.ndarray:
    """One score per class; a binary classifier's single score s becomes (-s, s)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return np.column_stack([-scores, scores])
    return scores


def softmax(scores: np.ndarray) -> np.ndarray:
    if scores.ndim == 1:  # one message: the same arithmetic without the broadcasting
        exp = np.exp(scores - scores.max())
        exp /= exp.sum()
        return exp
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def fit_inverse_temperature(scores: np.ndarray, targets: np.ndarray) -> float:
    """The beta minimising the mean log loss of softmax(beta * scores) for the target columns."""
    rows = np.arange(len(targets))

    def log_loss(log_beta: float) -> float:
        logits = np.exp(log_beta) * scores
        logits -= logits.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[rows, targets]))

    result = minimize_scalar(
        log_loss, bounds=(-10.0, 10.0), method="bounded", options={"xatol": 1e-8}
    )
    return float(np.exp(result.x))


class TemperatureScaled:
    """A fitted linear classifier and the inverse temperature of its softmax."""

    def __init__(self, estimator: ClassifierMixin, inverse_temperature: float) -> None:
        self.estimator = estimator
        self.inverse_temperature = inverse_temperature
        self.classes_ = estimator.classes_

    def decision_function(self, matrix: spmatrix) -> np.ndarray:
        return _columns(self.estimator.decision_function(matrix))

    def predict_proba(self, matrix: spmatrix) -> np.ndarray:
        return softmax(self.inverse_temperature * self.decision_function(matrix))


def _fit(estimator: ClassifierMixin, matrix: spmatrix, labels: np.ndarray) -> ClassifierMixin:
    return estimator.fit(matrix, labels)


def fit_temperature_scaled(
    base: ClassifierMixin, matrix: spmatrix, labels: Sequence[str], folds: int, n_jobs: int = 1
) -> TemperatureScaled:
    """Fit `base` on all data and `folds` copies on the folds' complements (stratified, shuffled
    with a fixed seed), all as parallel jobs, then beta on the out-of-fold scores. Every intent
    needs at least `folds` examples (the caller caps the folds by the rarest one)."""
    labels = np.asarray(labels)
    splits = list(
        StratifiedKFold(folds, shuffle=True, random_state=0).split(np.zeros(len(labels)), labels)
    )
    # The full fit first: the longest job starts at once, the folds share the other workers.
    subsets = [np.arange(len(labels))] + [train for train, _ in splits]
    fitted = Parallel(n_jobs=n_jobs)(
        delayed(_fit)(clone(base), matrix[rows], labels[rows]) for rows in subsets
    )
    final, fold_models = fitted[0], fitted[1:]
    classes = np.asarray(final.classes_)
    scores = np.zeros((len(labels), len(classes)))
    for model, (_, held_out) in zip(fold_models, splits, strict=True):
        scores[held_out] = _columns(model.decision_function(matrix[held_out]))
    return TemperatureScaled(
        final, fit_inverse_temperature(scores, np.searchsorted(classes, labels))
    )
