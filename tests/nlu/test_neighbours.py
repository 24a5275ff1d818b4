"""The nearest-example similarity behind the neighbour discount, on rows small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse

from nlu.neighbours import NearestExamples

# Three training examples over four features: the first two alike, the third on its own.
ROWS = sparse.csr_matrix(np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))


def test_similarity_is_the_cosine_to_the_nearest_training_example() -> None:
    near = NearestExamples(ROWS, quantile=0.5)
    assert math.isclose(near.similarity(np.array([0, 1]), np.array([2.0, 2.0])), 1.0)  # the first example, scaled
    assert near.similarity(np.array([3]), np.array([1.0])) == 0.0  # a feature no example has
    assert math.isclose(near.similarity(np.array([0, 2]), np.array([1.0, 1.0])), 1 / math.sqrt(2))
    batch = near.similarities(sparse.csr_matrix(np.array([[2.0, 2.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0]])))
    np.testing.assert_allclose(batch, [1.0, 1 / math.sqrt(2)])


def test_reference_is_a_quantile_of_how_near_each_example_is_to_another() -> None:
    # Leave-one-out nearest similarities: 1/sqrt(2), 1/sqrt(2), 0.
    assert math.isclose(NearestExamples(ROWS, quantile=1.0).reference, 1 / math.sqrt(2))
    assert NearestExamples(ROWS, quantile=0.0).reference == 0.0


def test_familiarity_is_one_up_to_the_reference_and_proportional_below() -> None:
    near = NearestExamples(ROWS, quantile=1.0)
    reference = near.reference
    np.testing.assert_allclose(near.familiarity(np.array([1.0, reference, reference / 2, 0.0])), [1.0, 1.0, 0.5, 0.0])


def test_a_message_with_nothing_in_the_block_is_not_unfamiliar() -> None:
    near = NearestExamples(ROWS, quantile=1.0)
    empty = near.similarity(np.array([], dtype=np.int64), np.array([]))
    assert math.isnan(empty) and near.familiarity(empty) == 1.0
    batch = near.similarities(sparse.csr_matrix((1, 4)))
    assert math.isnan(batch[0]) and near.familiarity(batch)[0] == 1.0


def test_one_message_and_the_batch_agree_whatever_the_mix_of_common_and_rare_features() -> None:
    rng = np.random.default_rng(7)
    # Twenty features every example has (stored dense), the rest in about 5 % of them.
    examples = sparse.hstack([sparse.csr_matrix(rng.random((300, 20))), sparse.random(300, 380, density=0.05, random_state=rng)], format="csr")
    near = NearestExamples(examples, quantile=0.1)
    for size in (3, 10, 60, 200):  # a few rare features and many
        idx = np.sort(rng.choice(400, size, replace=False))
        val = rng.random(size)
        row = sparse.csr_matrix((val, idx, [0, size]), shape=(1, 400))
        assert math.isclose(near.similarity(idx, val), near.similarities(row)[0], rel_tol=1e-12)


def test_looking_among_the_likely_intent_first_gives_the_same_familiarity() -> None:
    rng = np.random.default_rng(11)
    keep = np.ones(200)
    keep[5] = 0.0  # an example with nothing in the block
    examples = sparse.csr_matrix(sparse.diags(keep) @ sparse.random(200, 300, density=0.05, random_state=rng))
    examples.eliminate_zeros()
    labels = [f"intent_{i % 4}" for i in range(200)]
    near = NearestExamples(examples, quantile=0.5, labels=labels)
    shortcuts = 0
    for _ in range(200):
        size = int(rng.integers(1, 40))
        idx = np.sort(rng.choice(300, size, replace=False))
        val = rng.random(size)
        expected = float(near.familiarity(near.similarity(idx, val)))
        for labels in ("intent_0", "no_such_intent", ["intent_3", "intent_1"], ["no_such_intent", "intent_2", "intent_0"], [None], ()):
            assert math.isclose(near.familiarity_of(idx, val, labels), expected, rel_tol=1e-12)
        shortcuts += expected == 1.0
    assert 20 < shortcuts < 180  # both the shortcut and the full search were taken
    assert near.familiarity_of(np.array([], dtype=np.int64), np.array([]), "intent_0") == 1.0
    # Without labels (a bundle saved before they were kept) the full search answers alone.
    assert math.isclose(NearestExamples(examples, quantile=0.5).familiarity_of(idx, val, "intent_0"), expected, rel_tol=1e-12)


def test_the_block_is_found_in_a_whole_row_given_block_by_block_in_any_order_within() -> None:
    rng = np.random.default_rng(5)
    examples = sparse.random(80, 30, density=0.3, random_state=rng, format="csr")
    in_row = NearestExamples(examples, quantile=0.5, columns=(10, 20))
    alone = NearestExamples(examples[:, 10:20], quantile=0.5)
    assert math.isclose(in_row.reference, alone.reference)
    for _ in range(50):
        # As IntentFeatures.vector gives them: the blocks in order, each in its own order.
        blocks = [rng.permutation(np.arange(a, b))[: rng.integers(0, b - a + 1)] for a, b in ((0, 10), (10, 20), (20, 30))]
        idx = np.concatenate(blocks).astype(np.int64)
        val = rng.random(len(idx))
        inside = (idx >= 10) & (idx < 20)
        expected = alone.similarity(idx[inside] - 10, val[inside])
        got = in_row.similarity(idx, val)
        assert (math.isnan(got) and math.isnan(expected)) or math.isclose(got, expected, rel_tol=1e-12)
