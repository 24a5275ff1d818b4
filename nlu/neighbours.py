"""How much a message is like its nearest training example: the neighbour discount of intents.

A linear classifier is sure of itself whenever a few of its n-grams point one way, also for a
message unlike anything it was trained on ("làm sao để da rám nắng" for an electricity bot: one
word of it may lean on an intent). The cosine similarity of the message to its nearest training
example, over one TF-IDF block (the character n-grams: they also see typos and missing
diacritics), measures that unfamiliarity directly. It is compared with how near training examples
are to *their* nearest other example: `reference` is a low quantile of those leave-one-out
similarities, so a message as close to the data as most training examples are keeps its
confidence (familiarity 1), and one further away loses it in proportion (familiarity
similarity / reference). `NLUModel` blends its probabilities towards uniform by that factor,
as it does for unknown words, and the fallback threshold does the rest.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

REFERENCE_SAMPLE = 2000  # leave-one-out similarities of at most this many training examples
CHUNK = 500  # rows per sparse product: bounds the dense block of similarities in memory
COMMON = 8  # a feature in at least 1/COMMON of the examples may be stored dense for `similarity`
DENSE_BYTES = 8 << 20  # ... within this much memory, the most common first
LIKELY = 2  # `familiarity_of` looks among the examples of at most this many likely intents first


class NearestExamples:
    """Cosine similarity to the nearest training example over one feature block.

    `rows`: the training examples' feature rows (one per example); `columns`: (start, end) of
    the block compared, None for the whole row. Messages are given as whole rows too. Stored by
    feature (a column-major copy), so one message's similarity gathers only the rows of the
    features it has."""

    def __init__(
        self,
        rows: sparse.spmatrix,
        quantile: float,
        columns: tuple[int, int] | None = None,
        seed: int = 0,
        labels: Sequence[str] | None = None,
    ) -> None:
        self.columns = columns
        unit = normalize(self._block(rows))
        self._by_feature = unit.T.tocsr()
        self.reference = self._reference(unit, quantile, seed)
        # The examples' intents: `familiarity_of` looks among the likely intent's examples first.
        self.labels = None if labels is None else [str(label) for label in labels]
        self._build()

    def _build(self) -> None:
        """The search structures (not pickled), made when the object is made or loaded.

        For `_nearest`: the most common features (single letters, common syllables; at most
        DENSE_BYTES of them) as dense rows, the rest sparse. A common feature's entries are
        nearly a dense row anyway; as one they are a fast gather, and the rest, with fewer
        examples each, are gathered example by example.
        For `familiarity_of`: per intent, (column indices, values, row starts) of the unit rows
        of its examples that have entries in the block (an empty row would break reduceat)."""
        by_feature = self._by_feature
        counts = np.diff(by_feature.indptr)
        budget = max(1, DENSE_BYTES // (8 * by_feature.shape[1]))
        order = np.argsort(-counts, kind="stable")[:budget]
        chosen = order[counts[order] * COMMON >= by_feature.shape[1]]
        common = np.zeros(by_feature.shape[0], dtype=bool)
        common[chosen] = True
        self._dense_row = np.full(by_feature.shape[0], -1)
        self._dense_row[common] = np.arange(int(common.sum()))
        self._dense = by_feature[common].toarray()
        self._rare = sparse.csr_matrix(sparse.diags((~common).astype(np.float64)) @ by_feature)
        self._groups: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        if self.labels is not None:
            rows = by_feature.T.tocsr()
            rows.sort_indices()
            labels = np.array(self.labels)
            for name in np.unique(labels):
                examples = np.flatnonzero(labels == name)
                examples = examples[np.diff(rows.indptr)[examples] > 0]
                if len(examples):
                    part = rows[examples]
                    self._groups[str(name)] = (part.indices.astype(np.int64), part.data, part.indptr[:-1].astype(np.int64))

    def _block(self, rows: sparse.spmatrix) -> sparse.csr_matrix:
        rows = sparse.csr_matrix(rows, dtype=np.float64)
        return rows if self.columns is None else rows[:, self.columns[0] : self.columns[1]]

    def _reference(self, unit: sparse.csr_matrix, quantile: float, seed: int) -> float:
        count = unit.shape[0]
        sample = np.random.default_rng(seed).choice(
            count, min(count, REFERENCE_SAMPLE), replace=False
        )
        nearest = np.empty(len(sample))
        for start in range(0, len(sample), CHUNK):
            part = sample[start : start + CHUNK]
            similarities = (unit[part] @ self._by_feature).toarray()
            similarities[np.arange(len(part)), part] = 0.0  # not itself; a duplicate still counts
            nearest[start : start + len(part)] = similarities.max(axis=1)
        return float(np.quantile(nearest, quantile)) if count > 1 else 1.0

    def _unit(self, idx: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The message's entries in the block, scaled to unit length; None if it has none.
        The block's entries are found by binary search: `idx` must list the columns before the
        block first and those after it last (sorted columns do, and so does
        `IntentFeatures.vector`, block by block)."""
        if self.columns is not None:
            first, last = np.searchsorted(idx, self.columns).tolist()
            idx, val = idx[first:last] - self.columns[0], val[first:last]
        norm = float(np.sqrt(np.dot(val, val)))
        if not len(idx) or norm == 0.0:
            return None
        return idx, val / norm

    def similarity(self, idx: np.ndarray, val: np.ndarray) -> float:
        """One message, as the (column indices, values) of its feature row (in column order
        block by block, see `_unit`); NaN when it has nothing in the block (a bare customer code
        or place name is all mask tokens): no evidence."""
        unit = self._unit(idx, val)
        return float("nan") if unit is None else self._nearest(*unit)

    def familiarity_of(self, idx: np.ndarray, val: np.ndarray, labels: str | Iterable[str | None] = ()) -> float:
        """`familiarity(similarity(idx, val))`, looking among the examples of `labels` (the
        likely intents, most likely first; taken one at a time, so they may be computed on
        demand) first: a message as near one of them as the reference is familiar whatever
        the others are, and most messages are, so the search of all examples is left for the
        rest. The result is the same either way."""
        unit = self._unit(idx, val)
        if unit is None:
            return 1.0
        reference = max(self.reference, 1e-6)
        dense = None
        for label in itertools.islice((labels,) if isinstance(labels, str) else labels, LIKELY):
            group = self._groups.get(label) if label is not None else None
            if group is None:
                continue
            indices, data, starts = group
            if dense is None:
                dense = np.zeros(self._by_feature.shape[0])
                dense[unit[0]] = unit[1]
            if float(np.add.reduceat(data * dense[indices], starts).max()) >= reference:
                return 1.0
        return float(self.familiarity(self._nearest(*unit)))

    def _nearest(self, idx: np.ndarray, val: np.ndarray) -> float:
        """Similarity of a unit-length message to its nearest example, over all of them.

        Plain numpy (a scipy row gather and product costs more in call overhead than in
        arithmetic): the most common features as a dense product (nearly every example has
        them), then the examples of the others gathered in one go."""
        dense, rare = self._dense, self._rare
        rows = self._dense_row[idx]
        common = rows >= 0
        scores = val[common] @ dense[rows[common]] if common.any() else np.zeros(dense.shape[1])
        idx, val = idx[~common], val[~common]
        indptr, indices, data = rare.indptr, rare.indices, rare.data
        starts, lengths = indptr[idx], indptr[idx + 1] - indptr[idx]
        total = int(lengths.sum())
        if total:  # positions of all their entries: each feature's run, end to end
            positions = np.arange(total) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
            scores = scores + np.bincount(indices[positions], data[positions] * np.repeat(val, lengths), minlength=len(scores))
        return float(scores.max())

    def __getstate__(self) -> dict[str, Any]:
        return {"by_feature": self._by_feature, "reference": self.reference, "columns": self.columns, "labels": self.labels}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._by_feature, self.reference, self.columns = state["by_feature"], state["reference"], state["columns"]
        self.labels = state.get("labels")
        self._build()

    def similarities(self, rows: sparse.spmatrix) -> np.ndarray:
        """Many messages, one row each (the batch form of `similarity`)."""
        unit = normalize(self._block(rows))
        out = np.zeros(unit.shape[0])
        for start in range(0, unit.shape[0], CHUNK):
            product = unit[start : start + CHUNK] @ self._by_feature
            out[start : start + product.shape[0]] = product.max(axis=1).toarray().ravel()
        out[np.diff(unit.indptr) == 0] = np.nan
        return out

    def familiarity(self, similarity: np.ndarray | float) -> np.ndarray:
        """1 for a message as near the data as training examples mostly are (or with nothing to
        compare), less further away."""
        ratio = np.asarray(similarity, dtype=np.float64) / max(self.reference, 1e-6)
        return np.where(np.isnan(ratio), 1.0, np.minimum(1.0, ratio))
