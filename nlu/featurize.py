"""Turns a message into the text views and the sparse feature row the intent classifier sees.

Values are masked before anything else ("PE0400012345" -> "zzcode", "350kwh" -> "zzkwh") so the
classifier learns that a message *carries* a customer code or an amount of electricity, not which
one: codes and amounts it never saw classify the same. Months get a token in front of their words
("tháng trước" -> "zzmonth tháng trước"), so "December" counts as a month without "tháng trước"
losing what it says. Place names and addresses the location extractor finds become one token
("mất điện ở Ninh Kiều, Cần Thơ" -> "mất điện ở zzlocation"): a bare "Bình Dương" is an answer
(`inform`) like the few place names in training, whichever of the thousands of places it is.
`IntentFeatures` is TF-IDF over configurable, weighted (view, analyzer, n-gram) blocks, word
pairs with a word or two between them among the analyzers, with a per-message fast path that
bypasses scikit-learn's per-call overhead.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from nlu.entities import (
    CUSTOMER_CODE_RE,
    DIGIT_RE,
    KWH_RE,
    PHONE_RE,
    TICKET_RE,
    SynonymMatcher,
    month_spans,
)
from nlu.normalize import WORDS_KEPT, clean, normalize, stem_english

_MASKS = [(TICKET_RE, " zzticket "), (CUSTOMER_CODE_RE, " zzcode "), (PHONE_RE, " zzphone "), (KWH_RE, " zzkwh ")]
# Money ("500k", "1.200.000đ", "2 triệu"), clock times ("7h", "8 giờ", "6pm") and dates
# ("15/11/2026", "20/11"): what matters is the kind of value, not the value.
_MONEY_RE = re.compile(
    r"(?<!\w)\d+(?:[.,]\d{3})*(?:[.,]\d+)?\s*(?:k|đ|d|vnd|vnđ|đồng|dong|tr|triệu|trieu|nghìn|nghin|ngàn|ngan)(?!\w)",
    re.IGNORECASE,
)
_TIME_RE = re.compile(r"(?<!\w)\d{1,2}(?:[:h]\d{2})?\s*(?:h|giờ|gio|am|pm)(?!\w)", re.IGNORECASE)
_DATE_RE = re.compile(r"(?<![\w/])\d{1,2}/\d{1,2}(?:/\d{2,4})?(?![\w/])")
_NUMBER_RE = re.compile(r"\d+")
_EMOJI_RE = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")
_MASK_TOKEN_RE = re.compile(r"\bzz[a-z]+\b")
# Words, and the symbols of code and markup ("1=1", "<script>", "*"), which customers do not type:
# each counts as a token that the training data never had.
_EVIDENCE_TOKEN_RE = re.compile(r"\w+|[=*;<>{}()\[\]|\\$`^~]")
_WORD_RE = re.compile(r"(?u)\b\w+\b")


class TextViews(NamedTuple):
    """One message as the classifier reads it; see `nlu.normalize.Normalized`. `stems`: `plain`
    with English inflections stripped ("bills" -> "bill"), see `nlu.normalize.stem_english`."""

    text: str
    toneless: str
    plain: str
    stems: str


VIEW_NAMES = TextViews._fields


def _replace_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
    for start, end, token in sorted(spans, reverse=True):
        text = text[:start] + f" {token} " + text[end:]
    return text


def mask_values(text: str, synonyms: SynonymMatcher | None = None, places: Sequence[tuple[int, int]] = ()) -> str:
    """Replace identifiers, amounts, months, money, times, dates and other numbers by tokens;
    with `synonyms`, also the known surface forms of entity values ("lắp công tơ" -> zzservicetype);
    `places` (character spans of `text`) become zzlocation, whatever the place."""
    if places:
        text = _replace_spans(text, [(start, end, "zzlocation") for start, end in places])
    if synonyms is not None:
        found = synonyms.extract(text)
        text = _replace_spans(text, [(e["start"], e["end"], "zz" + re.sub(r"[^a-z]", "", e["entity"].lower())) for e in found])
    digits = DIGIT_RE.search(text) is not None  # every pattern but the months' needs one
    if digits:
        for pattern, token in _MASKS:
            text = pattern.sub(token, text)
    # Months keep their words ("tháng trước" is how people ask for a bill) behind the token.
    text = _replace_spans(text, [(start, end, "zzmonth " + text[start:end]) for start, end in month_spans(text)])
    if not digits:
        return text
    text = _DATE_RE.sub(" zzdate ", text)
    text = _MONEY_RE.sub(" zzmoney ", text)
    text = _TIME_RE.sub(" zztime ", text)
    return _NUMBER_RE.sub(" zznum ", text)


def _trigrams(word: str) -> list[str]:
    padded = f" {word} "
    return [padded[i : i + 3] for i in range(len(padded) - 2)]


def without_masks(text: str) -> str:
    """The text the character blocks see: mask tokens are words, their letters mean nothing."""
    return _MASK_TOKEN_RE.sub(" ", text)


def views(
    raw: str,
    *,
    collapse: bool = True,
    expand: bool = True,
    synonyms: SynonymMatcher | None = None,
    places: Sequence[tuple[int, int]] = (),
) -> TextViews:
    """The four views of a message, values masked; `collapse`/`expand` as in `normalize`;
    `places` are spans of `clean(raw)` naming a location."""
    masked = mask_values(clean(raw), synonyms, places)
    masked = _EMOJI_RE.sub(" zzemoji ", masked)
    norm = normalize(masked, collapse=collapse, expand=expand)
    return TextViews(norm.text, norm.toneless, norm.plain, stem_english(norm.plain))


class WordPairs:
    """The analyzer of `word_pairs` blocks: two words with `low - 1` to `high - 1` words between
    them ("boost ... credit", "bill ... wrong"): what a phrase means when filler words vary."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __call__(self, text: str) -> list[str]:
        return self.pairs(_WORD_RE.findall(text))

    def pairs(self, words: Sequence[str]) -> list[str]:
        return [f"{words[i]} _ {words[j]}" for i in range(len(words)) for j in range(i + self.low, min(len(words), i + self.high + 1))]


def _word_ngrams(tokens: list[str], low: int, high: int) -> list[str]:
    """scikit-learn's word n-grams of `tokens` (no stop words): the tokens themselves when
    `low` is 1, then every run of 2, 3, ... up to `high` tokens joined by a space."""
    if high == 1:
        return tokens
    grams = list(tokens) if low == 1 else []
    count = len(tokens)
    for n in range(max(low, 2), min(high, count) + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(count - n + 1)]
    return grams


def _plain_word_analyzer(vec: TfidfVectorizer) -> bool:
    """Whether a word-analyzer vectorizer does just what `_word_ngrams` of the lower-cased
    `_WORD_RE` tokens does."""
    return (
        vec.analyzer == "word"
        and vec.preprocessor is None
        and vec.tokenizer is None
        and vec.lowercase
        and vec.stop_words is None
        and vec.strip_accents is None
        and vec.token_pattern == _WORD_RE.pattern
    )



@dataclass(frozen=True)
class FeatureBlock:
    """One TF-IDF block: which view, word / char_wb / char n-grams or word_pairs, which n-gram
    lengths (for word_pairs: distances between the two words), and the block's weight."""

    view: str
    analyzer: str
    ngram_range: tuple[int, int]
    weight: float = 1.0

    def vectorizer(self) -> TfidfVectorizer:
        if self.analyzer == "word":
            return TfidfVectorizer(ngram_range=self.ngram_range, sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
        if self.analyzer == "word_pairs":
            return TfidfVectorizer(analyzer=WordPairs(*self.ngram_range), sublinear_tf=True)
        # The views are lower-case already; the preprocessor only hides the mask tokens.
        return TfidfVectorizer(analyzer=self.analyzer, ngram_range=self.ngram_range, sublinear_tf=True, preprocessor=without_masks)


class IntentFeatures:
    """TF-IDF over the configured blocks, stacked side by side.

    `vector` featurises one message without scikit-learn's per-call validation overhead, so a
    parse costs well under a millisecond; `matrix` is the batch form used for training and
    evaluation, and the two agree (same analyzers, sublinear tf, idf and l2 norm per block).
    """

    def __init__(self, blocks: tuple[FeatureBlock, ...]) -> None:
        self.blocks: list[tuple[int, TfidfVectorizer]] = [(VIEW_NAMES.index(b.view), b.vectorizer()) for b in blocks]
        self.weights: list[float] = [b.weight for b in blocks]
        self.known_words: frozenset[str] = frozenset()
        self.known_trigrams: frozenset[str] = frozenset()
        self._analyzers: list[Any] | None = None
        self._plain_words: list[bool] = []
        self._offsets: list[int] = []
        self._idf = np.empty(0)
        self._gram_cache: list[dict[str, list[int]]] = []

    def fit_matrix(self, rows: list[TextViews]) -> sparse.csr_matrix:
        parts = [w * vec.fit_transform([r[view] for r in rows]) for (view, vec), w in zip(self.blocks, self.weights, strict=True)]
        self.known_words = frozenset(token for r in rows for token in _EVIDENCE_TOKEN_RE.findall(r.plain))
        self.known_trigrams = frozenset(gram for word in self.known_words for gram in _trigrams(word))
        self._prepare()
        return sparse.hstack(parts, format="csr")

    def coverage(self, row: TextViews) -> float:
        """How familiar the message's tokens (plain view) are, 0.0 to 1.0; 0.0 when it has none.

        A known word counts 1, an unknown word the share of its letter trigrams seen in training
        (a typo like "thankss" keeps most of them, "asdkjh" almost none), a code symbol or an
        unknown mask token (an emoji, when training had none) 0.
        Gibberish, foreign scripts and code score low: the few n-grams they share with real
        messages deserve little trust."""
        found = _EVIDENCE_TOKEN_RE.findall(row.plain)
        if not found:
            return 0.0
        total = 0.0
        for token in found:
            if token in self.known_words:
                total += 1.0
            elif not _MASK_TOKEN_RE.fullmatch(token) and (token[0].isalnum() or token[0] == "_"):
                grams = _trigrams(token)
                total += sum(g in self.known_trigrams for g in grams) / len(grams)
        return total / len(found)

    def matrix(self, rows: list[TextViews]) -> sparse.csr_matrix:
        blocks = zip(self.blocks, self.weights, strict=True)
        return sparse.hstack([w * vec.transform([r[view] for r in rows]) for (view, vec), w in blocks], format="csr")

    def character_columns(self) -> tuple[int, int]:
        """(start, end) columns of the first character n-gram block (the first block if none)
        in the stacked feature row: what the neighbour discount compares messages on."""
        if self._analyzers is None:
            self._prepare()
        block = next((i for i, (_, vec) in enumerate(self.blocks) if vec.analyzer in ("char", "char_wb")), 0)
        start = self._offsets[block]
        return start, start + len(self.blocks[block][1].vocabulary_)

    @property
    def size(self) -> int:
        return sum(len(vec.vocabulary_) for _, vec in self.blocks)

    def _prepare(self) -> None:
        self._analyzers = [vec.build_analyzer() for _, vec in self.blocks]
        self._plain_words = [_plain_word_analyzer(vec) for _, vec in self.blocks]
        offset, self._offsets = 0, []
        for _, vec in self.blocks:
            self._offsets.append(offset)
            offset += len(vec.vocabulary_)
        self._idf = np.concatenate([vec.idf_ for _, vec in self.blocks]) if self.blocks else np.empty(0)
        self._gram_cache = [{} for _ in self.blocks]

    def _word_grams(self, block: int, word: str) -> list[int]:
        """Columns of the known character n-grams of one word, for a char_wb block: such a
        block's n-grams of a message are those of its words one after another, and customers
        use the same few thousand words, so each word's are looked up once."""
        cache = self._gram_cache[block]
        found = cache.get(word)
        if found is None:
            vocabulary, offset = self.blocks[block][1].vocabulary_, self._offsets[block]
            # The block's analyzer on the word alone: its mask tokens are gone already.
            found = [offset + i for gram in self._analyzers[block](word) if (i := vocabulary.get(gram)) is not None]
            if len(cache) < WORDS_KEPT:
                cache[word] = found
        return found

    def vector(self, row: TextViews) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, values) of one message's feature row; the same as a row of
        `matrix`, computed without scikit-learn's per-call overhead: n-grams counted in one
        counter, then tf-idf for all blocks at once and each block's norm."""
        if self._analyzers is None:
            self._prepare()
        assert self._analyzers is not None
        words: dict[tuple[int, bool], list[str]] = {}

        def tokens(view: int, lower: bool) -> list[str]:
            key = (view, lower)
            if key not in words:
                words[key] = _WORD_RE.findall(row[view].lower() if lower else row[view])
            return words[key]

        counts: Counter[int] = Counter()  # column -> count, in order of first occurrence
        ends: list[int] = []  # where each block's entries end in `counts`
        for block, ((view, vec), analyze, offset) in enumerate(zip(self.blocks, self._analyzers, self._offsets, strict=True)):
            if vec.analyzer == "char_wb":
                found: list[int] = []
                for word in without_masks(row[view]).split():
                    found += self._word_grams(block, word)
            else:
                if vec.analyzer == "word" and self._plain_words[block]:  # the words shared with other blocks
                    grams = _word_ngrams(tokens(view, lower=True), *vec.ngram_range)
                elif isinstance(vec.analyzer, WordPairs):
                    grams = vec.analyzer.pairs(tokens(view, lower=False))
                else:
                    grams = analyze(row[view])
                vocabulary = vec.vocabulary_
                found = [offset + i for gram in grams if (i := vocabulary.get(gram)) is not None]
            counts.update(found)
            ends.append(len(counts))
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        val = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * self._idf[idx]
        starts, lengths, weights, start = [], [], [], 0  # of the blocks with entries
        for end, weight in zip(ends, self.weights, strict=True):
            if end > start:
                starts.append(start)
                lengths.append(end - start)
                weights.append(weight)
            start = end
        val *= np.repeat(np.divide(weights, np.sqrt(np.add.reduceat(val * val, starts))), lengths)
        return idx, val

    def __getstate__(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "weights": self.weights, "known_words": self.known_words, "known_trigrams": self.known_trigrams}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.blocks = state["blocks"]
        self.weights = state.get("weights", [1.0] * len(self.blocks))
        # .get: a bundle of an older format unpickles far enough for `NLUModel.load` to refuse it.
        self.known_words = state.get("known_words", frozenset())
        self.known_trigrams = state.get("known_trigrams", frozenset())
        self._analyzers = None
        self._offsets = []
        self._idf = np.empty(0)
        self._gram_cache = []
        if all(hasattr(vec, "vocabulary_") for _, vec in self.blocks):
            self._prepare()  # now rather than in the first message's parse
