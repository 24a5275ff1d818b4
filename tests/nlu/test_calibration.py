"""Temperature scaling with the final fit beside the folds: the same probabilities as
scikit-learn's own temperature calibration, whichever number of processes computes them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from nlu.calibration import TemperatureScaled, fit_temperature_scaled


def data(classes: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    features, targets = make_classification(
        n_samples=600,
        n_features=40,
        n_informative=12,
        n_classes=classes,
        n_clusters_per_class=1,
        flip_y=0.05,
        random_state=3,
    )
    names = np.array([f"intent_{i}" for i in range(classes)])
    return sparse.csr_matrix(features), names[targets]


@pytest.mark.parametrize("classes", [2, 5])
def test_probabilities_match_scikit_learn_temperature_scaling(classes: int) -> None:
    matrix, labels = data(classes)
    base = LinearSVC(C=0.5)
    ours = fit_temperature_scaled(base, matrix, labels, folds=3)
    reference = CalibratedClassifierCV(
        base,
        method="temperature",
        ensemble=False,
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
    )
    reference.fit(matrix, labels)
    assert list(ours.classes_) == list(reference.classes_)
    assert ours.inverse_temperature == pytest.approx(
        float(reference.calibrated_classifiers_[0].calibrators[0].beta_), rel=1e-4
    )
    np.testing.assert_allclose(
        ours.predict_proba(matrix), reference.predict_proba(matrix), atol=1e-5
    )


def test_two_processes_compute_the_same_model() -> None:
    matrix, labels = data(5)
    one = fit_temperature_scaled(LinearSVC(C=0.5), matrix, labels, folds=3, n_jobs=1)
    two = fit_temperature_scaled(LinearSVC(C=0.5), matrix, labels, folds=3, n_jobs=2)
    assert one.inverse_temperature == two.inverse_temperature
    np.testing.assert_array_equal(one.predict_proba(matrix), two.predict_proba(matrix))


def test_an_uncalibrated_model_is_a_plain_softmax_of_its_scores() -> None:
    matrix, labels = data(5)
    model = TemperatureScaled(LinearSVC(C=0.5).fit(matrix, labels), 1.0)
    scores = model.decision_function(matrix)
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(matrix), expected)
    assert (model.predict_proba(matrix).argmax(axis=1) == scores.argmax(axis=1)).all()
