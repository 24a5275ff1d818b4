"""A trained sequence tagger (CRF) for free-form address spans in chat messages.

The gazetteer in `nlu.locations` knows every administrative unit, old and new, but not streets,
house numbers, alleys or hamlets: "12 Nguyễn Trãi, quận 1", "88 Nguyễn Thị Thập Q7",
"số 25 ngõ 10 Trần Duy Hưng". Those spans are learned here from the project's own
`[...](location)` annotations with a linear-chain CRF (sklearn-crfsuite) over BIO tags.

Token features: the lower-cased token, its diacritics-free form, shape (digit, title, upper,
mixed like "q7"), prefixes and suffixes, whether it is a street-type word (đường, phố, ngõ, hẻm,
số, kiệt...) or an administrative-unit word (phường, quận, huyện, xã, tp...), whether the
gazetteer put it inside an administrative unit, and the same for the neighbouring tokens.

Only the trained model's bytes are kept (a few tens of kB); the crfsuite tagger is opened from
memory lazily, one per thread, so a pickled or joblib-saved tagger needs no files on disk.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
import unicodedata
from collections.abc import Callable, Container, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pycrfsuite
import sklearn_crfsuite

from nlu.normalize import WORDS_KEPT, strip_diacritics, unify_tone_marks

# A word is letters/digits, possibly followed by combining marks (decomposed Vietnamese from
# some keyboards); everything else that is not a space is a one-character punctuation token.
WORD_RE = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+")
_TOKEN_RE = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+|[^\w\s\u0300-\u036f]")

MAX_TOKENS = 256  # longer messages are tagged on their first part only

# Diacritics-free, lower case.
STREET_WORDS = frozenset(
    "duong pho ngo hem kiet ngach so thon ap xom khom khu lo ql quoc dai toa chung cu"
    " street st road rd lane alley avenue ave no apt hamlet".split()
)
ADMIN_WORDS = frozenset(
    "phuong p f xa quan q huyen h thi tran tx tt tp thanh tinh dac"
    " district ward commune province city town".split()
)
CUE_WORDS = frozenset("o tai khu vuc dia ban vung thuoc gan quanh in at near around".split())

AdminSpan = tuple[int, int, str]  # (start, end, kind); kind is "typed", "strong" or "weak"


class Token(NamedTuple):
    """One token of a message with offsets into the original text and two normalised forms."""

    start: int
    end: int
    text: str
    plain: str  # lower case, no diacritics ("đ" -> "d")
    acc: str  # lower case, NFC, unified tone marks ("hoà" -> "hòa")
    is_word: bool


_FORMS: dict[str, tuple[str, str, bool]] = {}


def _forms(text: str) -> tuple[str, str, bool]:
    """(plain, acc, is_word) of one token's text: customers use the same few thousand words,
    so the Unicode work is done once per word."""
    found = _FORMS.get(text)
    if found is None:
        lower = unicodedata.normalize("NFC", text).lower()
        is_word = bool(WORD_RE.fullmatch(text))
        found = (strip_diacritics(lower), unify_tone_marks(lower) if is_word else lower, is_word)
        if len(_FORMS) < WORDS_KEPT:
            _FORMS[text] = found
    return found


def tokenize(text: str, *, words_only: bool = False, limit: int | None = None) -> list[Token]:
    """Words and punctuation with character offsets into `text` (which is not modified)."""
    pattern = WORD_RE if words_only else _TOKEN_RE
    found: list[Token] = []
    append, known, make = found.append, _FORMS.get, tuple.__new__
    for match in pattern.finditer(text):
        word = match.group()
        start = match.start()
        append(make(Token, (start, start + len(word), word, *(known(word) or _forms(word)))))
        if limit is not None and len(found) >= limit:
            break
    return found


def _shouting(text: str) -> bool:
    """A message typed in capitals ("MẤT ĐIỆN Ở QUẬN 7"): every word would look like a name."""
    head = text[:400]
    if not head.isupper():  # a lower-case letter, or no cased letter at all
        return False
    letters = list(filter(str.isalpha, head))
    return len(letters) >= 6 and all(map(str.isupper, letters)) and len(text.lower()) == len(text)


def _shape(text: str, is_word: bool) -> str:
    if not is_word:
        return "punct"
    if text.isdigit():
        return "digit"
    if any(ch.isdigit() for ch in text):
        return "alnum"  # "q7", "12A", "p.7" pieces
    if text.isupper() and len(text) > 1:
        return "upper"
    if text[:1].isupper():
        return "title"
    return "lower"


def _admin_tags(tokens: Sequence[Token], spans: Iterable[AdminSpan]) -> list[str]:
    """Per token: "B-typed", "I-strong", ... for tokens the gazetteer matched, else "O"."""
    tags = ["O"] * len(tokens)
    starts = [t.start for t in tokens]
    for start, end, kind in spans:
        i = bisect.bisect_left(starts, start)
        first = True
        while i < len(tokens) and tokens[i].end <= end:
            tags[i] = ("B-" if first else "I-") + kind
            first = False
            i += 1
    return tags


_OFFSETS = (-2, -1, 1, 2)
_EDGES = tuple(f"{offset}:p:{'BOS' if offset < 0 else 'EOS'}" for offset in _OFFSETS)


@functools.lru_cache(maxsize=WORDS_KEPT)
def _token_attributes(text: str, admin: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """crfsuite attributes (each of weight 1) of one token: its own, then those it lends a
    token at each offset in `_OFFSETS` from it. A token's depend only on its text and gazetteer
    tag, and customers use the same few thousand words, so they are built once per word."""
    plain, acc, is_word = _forms(text)
    shape = _shape(text, is_word)
    own = ["bias", "p:" + plain, "shape:" + shape, "admin:" + admin]
    if is_word:
        own += ["w:" + acc, "pre2:" + plain[:2], "suf2:" + plain[-2:], "pre3:" + plain[:3], "suf3:" + plain[-3:]]
        if acc != plain:
            own.append("diac")
        if plain in STREET_WORDS:
            own.append("street")
        if plain in ADMIN_WORDS:
            own.append("adminword")
        if plain in CUE_WORDS:
            own.append("cue")
        if len(plain) <= 2:
            own.append("short")
    lent = []
    for offset in _OFFSETS:
        attributes = [f"{offset}:p:{plain}", f"{offset}:shape:{shape}", f"{offset}:admin:{admin}"]
        if plain in STREET_WORDS:
            attributes.append(f"{offset}:street")
        if plain in ADMIN_WORDS:
            attributes.append(f"{offset}:adminword")
        if plain in CUE_WORDS:
            attributes.append(f"{offset}:cue")
        lent.append(tuple(attributes))
    return tuple(own), tuple(lent)


_Attributes = tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]


def featurize(
    tokens: Sequence[Token],
    admin_tags: Sequence[str],
    attributes_of: Callable[[str, str], _Attributes] = _token_attributes,
    known: Container[str] | None = None,
) -> list[list[str]]:
    """crfsuite attributes per token: the token's own features (word forms, shape, gazetteer
    tag, street/admin/cue word) plus its two neighbours' on each side and the word pair it
    ends. With `known` (and `attributes_of` giving only known ones), only the attributes a
    trained model has: crfsuite ignores the others, and there are ten times as many of them."""
    parts = [attributes_of(tok.text, tag) for tok, tag in zip(tokens, admin_tags, strict=True)]
    n = len(tokens)
    out: list[list[str]] = []
    for i, (own, _) in enumerate(parts):
        attributes = list(own)
        for k, offset in enumerate(_OFFSETS):
            j = i + offset
            if 0 <= j < n:
                attributes += parts[j][1][k]
            elif known is None or _EDGES[k] in known:
                attributes.append(_EDGES[k])
        if i > 0:
            pair = f"-1:p|p:{tokens[i - 1].plain}|{tokens[i].plain}"
            if known is None or pair in known:
                attributes.append(pair)
        out.append(attributes)
    return out


def bio_labels(tokens: Sequence[Token], spans: Iterable[tuple[int, int]]) -> list[str]:
    """BIO tags for tokens covered by the annotated (start, end) spans."""
    labels = ["O"] * len(tokens)
    for start, end in spans:
        inside = False
        for i, tok in enumerate(tokens):
            if tok.start >= start and tok.end <= end:
                labels[i] = "I" if inside else "B"
                inside = True
    return labels


class AddressTagger:
    """CRF over BIO tags for address spans; `tag(text)` returns (start, end) character spans.

    `admin_spans`, when given, is a function returning the gazetteer's administrative-unit
    matches for a text; it must be a module-level function so the tagger stays picklable.
    """

    def __init__(self, model: bytes, admin_spans: Callable[[str], list[AdminSpan]] | None = None) -> None:
        self.model = model
        self.admin_spans = admin_spans
        self._local = threading.local()
        self._known = _model_attributes(model)
        self._attribute_cache: dict[tuple[str, str], _Attributes] = {}

    def _attributes(self, text: str, admin: str) -> _Attributes:
        """`_token_attributes` without those the model does not have (all of them if its
        attributes could not be read)."""
        found = self._attribute_cache.get((text, admin))
        if found is None:
            own, lent = found = _token_attributes(text, admin)
            known = self._known
            if known is not None:
                found = (tuple(a for a in own if a in known), tuple(tuple(a for a in part if a in known) for part in lent))
            if len(self._attribute_cache) < WORDS_KEPT:
                self._attribute_cache[(text, admin)] = found
        return found

    # -- training ----------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        examples: Iterable[Any],
        *,
        entity: str = "location",
        admin_spans: Callable[[str], list[AdminSpan]] | None = None,
        c1: float = 0.05,
        c2: float = 0.05,
        max_iterations: int = 200,
    ) -> AddressTagger:
        """Train on `nlu.training_data.Example`s: their `entity` annotations are the positives,
        every other token (including other examples with no such entity) is "O"."""
        xs: list[list[list[str]]] = []
        ys: list[list[str]] = []
        for example in examples:
            text = example.text
            tokens = tokenize(text, limit=MAX_TOKENS)
            if not tokens:
                continue
            gold = [(e["start"], e["end"]) for e in example.entities if e.get("entity") == entity]
            admin = admin_spans(text) if admin_spans else []
            xs.append(featurize(tokens, _admin_tags(tokens, admin)))
            ys.append(bio_labels(tokens, gold))
        if not any("B" in y for y in ys):
            raise ValueError(f"no '{entity}' annotations to learn address spans from")
        crf = sklearn_crfsuite.CRF(
            algorithm="lbfgs", c1=c1, c2=c2, max_iterations=max_iterations, all_possible_transitions=True
        )
        crf.fit(xs, ys)
        model = Path(crf.modelfile.name).read_bytes()
        crf.modelfile.cleanup()
        return cls(model, admin_spans)

    # -- tagging -----------------------------------------------------------------------------

    def _tagger(self) -> pycrfsuite.Tagger:
        tagger = getattr(self._local, "tagger", None)
        if tagger is None:
            tagger = pycrfsuite.Tagger()
            tagger.open_inmemory(self.model)
            self._local.tagger = tagger
        return tagger

    def spans(
        self, text: str, admin: Sequence[AdminSpan] | None = None, tokens: Sequence[Token] | None = None
    ) -> list[tuple[int, int, float]]:
        """(start, end, confidence) of address spans; confidence is the mean marginal probability
        of the predicted tags. `admin` are the gazetteer matches (computed if not given);
        `tokens`: `tokenize(text, limit=MAX_TOKENS)` if the caller has them."""
        if _shouting(text):
            # Same length for Vietnamese letters, so offsets stay valid. The tagger then finds
            # the units but, without capitals, often not where a street name starts.
            text, tokens = text.lower(), None
        if tokens is None:
            tokens = tokenize(text, limit=MAX_TOKENS)
        if not tokens:
            return []
        if admin is None:
            admin = self.admin_spans(text) if self.admin_spans else []
        tagger = self._tagger()
        tagger.set(featurize(tokens, _admin_tags(tokens, admin), self._attributes, self._known))
        tags = tagger.tag()
        found: list[tuple[int, int, float]] = []
        i = 0
        while i < len(tags):
            if tags[i] == "O" or (tags[i] == "I" and not tokens[i].is_word):
                i += 1
                continue
            j = i
            while j + 1 < len(tags) and tags[j + 1] == "I":
                j += 1
            # Trim punctuation at the edges: "quận 1," -> "quận 1".
            first, last = i, j
            while first <= last and not tokens[first].is_word:
                first += 1
            while last >= first and not tokens[last].is_word:
                last -= 1
            if first <= last:
                probs = [tagger.marginal(tags[k], k) for k in range(first, last + 1)]
                found.append((tokens[first].start, tokens[last].end, sum(probs) / len(probs)))
            i = j + 1
        return found

    def tag(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character spans of the addresses in `text`."""
        return [(start, end) for start, end, _ in self.spans(text)]

    # -- persistence -------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"model": self.model, "admin_spans": self.admin_spans}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["model"], state.get("admin_spans"))  # type: ignore[misc]


def _model_attributes(model: bytes) -> frozenset[str] | None:
    """The attributes a trained crfsuite model has weights for (from its dump); None, and every
    attribute is passed, if the dump does not list as many as its header counts."""
    try:  # the dump goes through a temporary file
        tagger = pycrfsuite.Tagger()
        tagger.open_inmemory(model)
        info = tagger.info()
        tagger.close()
    except (OSError, ValueError):
        return None
    known = frozenset(info.attributes)
    return known if str(len(known)) == str(info.header.get("num_attrs")) else None
