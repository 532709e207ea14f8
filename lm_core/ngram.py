"""One n-gram language model over a `CountReader`, with the smoothing as a parameter.

Smoothings (`Smoothing`):
- `mle`: maximum likelihood, c(h w) / c(h) in the longest context h that was seen. Unseen words get 0.
- `add-delta`: (c(h w) + delta) / (c(h) + delta |V|) in the full context; delta = 1 is Laplace, other values Lidstone.
- `stupid-backoff`: Brants et al. (2007). c(h w) / c(h) if seen, else 0.4 x the score in the shorter context.
  It does NOT normalise: its "probabilities" are scores that need not sum to 1, and its perplexity means little.
- `katz`: Katz backoff with Good-Turing discounts for counts up to 5 and backoff weights that normalise.
- `kneser-ney` (the default): interpolated modified Kneser-Ney (Chen and Goodman 1998) with three discounts per
  order from count-of-counts, continuation counts below the highest order, interpolated with the uniform
  distribution at the bottom, as KenLM's lmplz estimates it. Over pruned counts, each context's total and backoff
  weight include the mass of its pruned followers (`Level.hidden`), as `lmplz --prune` estimates:
  p(w | h) = max(a - D(a), 0) / (sum of kept a + hidden) for a kept follower, and
  gamma(h) = (D1 N1 + D2 N2 + D3 N3+ over the kept followers + hidden) / (sum of kept a + hidden).

The vocabulary V over which every normalised smoothing sums to 1 is every word with a positive count (not `<s>`)
plus `<unk>`. Unknown words are scored as `<unk>`. All log-probabilities are natural logs.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from lm_core.counts import ADJUSTED, RAW, CountReader, Level
from lm_core.model import Context, Prediction, kth_largest, top_predictions
from lm_core.smoothing import Smoothing, good_turing_ratios, kneser_ney_discounts
from lm_core.vocab import BOS, BOS_ID, UNK_ID
from lm_core.word_lists import SHARED as SHARED_WORD_LISTS

NORMALISED = (Smoothing.MLE, Smoothing.ADD_DELTA, Smoothing.KATZ, Smoothing.KNESER_NEY)


@dataclass(frozen=True)
class NgramConfig:
    """How to estimate: the smoothing and its parameters."""

    smoothing: Smoothing = Smoothing.KNESER_NEY
    order: int | None = None  # None: the count reader's order
    delta: float = 1.0  # add-delta: 1.0 is Laplace, anything else Lidstone
    backoff_factor: float = 0.4  # stupid backoff's fixed multiplier per backed-off order
    katz_k: int = 5  # Katz: counts above this are trusted, not discounted


MASS_WEIGHTS_KEPT = 8  # weight arrays whose unigram-level sum `mass_over` keeps
KN_MEMO_BYTES = 16 * 2**20  # default bound of the Kneser-Ney level memo (`NgramModel.memo_bytes`)
KN_MEMO_OVERHEAD_BYTES = 300  # one memo entry's Python objects


KnEntry = tuple[np.ndarray, np.ndarray, int, float, tuple[float, float, float, float]]
"""A context's Kneser-Ney level: follower ids, their (adjusted) counts, the total, gamma, and (0, D1, D2, D3)."""
_MISSING = object()


class _Memo(dict):
    """A dict that counts the bytes of the arrays its entries hold."""

    nbytes = 0


def _first_keys(memo: dict, count: int) -> list:
    """The first `count` keys of a dict other threads may change meanwhile (taken again if one did: listing them
    can let another thread run, when an allocation sets off the garbage collector)."""
    while True:
        try:
            return list(itertools.islice(memo, count))
        except RuntimeError:  # "dictionary changed size during iteration"
            continue


class _Cache:
    """Per-version memo of vocabulary-wide arrays; dropped whenever the counts change."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.items: dict[object, object] = {}


VERSION_TRIES = 5
"""`distribution_arrays` reads at most this many times while the counts keep changing under it."""


class _CountsMoved(Exception):
    """A follower list names a word the vocabulary-wide tables in use do not have: the counts gained a word (a
    learn committed on another thread) between the two reads."""


class NgramModel:
    """An n-gram `LanguageModel` reading counts through a `CountReader`."""

    scores_unknown_words_as_unk = True  # logprob of a word outside V is that of <unk> (a Blend relies on it)

    def __init__(self, counts: CountReader, config: NgramConfig | None = None, **overrides: object) -> None:
        config = config or NgramConfig()
        if overrides:
            config = NgramConfig(**{**config.__dict__, **overrides})  # type: ignore[arg-type]
        self.config = config
        self.counts = counts
        self.smoothing = Smoothing(config.smoothing)
        self.order: int = config.order or counts.order
        if not 1 <= self.order <= counts.order:
            raise ValueError(f"model order {self.order} must be between 1 and the counts' order {counts.order}")
        if config.delta <= 0:
            raise ValueError("add-delta needs delta > 0")
        self._cache = _Cache()
        # vocabulary_words' last list and V's ids then: kept while V does not change
        self._last_vocabulary: tuple[np.ndarray, list[str]] = (np.zeros(0, np.int64), [])
        self.memo_bytes = KN_MEMO_BYTES  # bytes of follower arrays the Kneser-Ney level memo may hold

    # --- public interface --------------------------------------------------------------------------------
    def logprob(self, word: str, context: Context) -> float:
        """Natural log of P(word | context); -inf where the smoothing gives 0."""
        if word == BOS:
            return -math.inf
        ids = self._context_ids(context)
        wid = self.counts.vocab.id_of(word)
        if self.smoothing is Smoothing.KNESER_NEY:
            p = self._kneser_ney_one(ids, wid)
        else:
            p = float(self._probs(ids, np.asarray([wid], dtype=np.int64))[0])
        return math.log(p) if p > 0 else -math.inf

    def logprobs(self, queries: Sequence[tuple[str, Context]]) -> list[float]:
        """`logprob` of many (word, context) pairs at once, the same floats. Under Kneser-Ney the follower lists
        they need are fetched in bulk, one round per order, the counts' version checked once; a context of n
        words that was never seen ends the walk up the orders, as every longer context ending with it is unseen
        too (a count store keeps every suffix of what it keeps: pruning cut-offs never fall with the order). The
        interpolation runs over all queries at once, one order at a time, with numpy (the same operations in the
        same order as `_kneser_ney_one`, so the same floats)."""
        if self.smoothing is not Smoothing.KNESER_NEY:
            return [self.logprob(word, context) for word, context in queries]
        id_of = self.counts.vocab.id_of
        contexts: dict[Context, tuple[int, ...]] = {}
        items = []
        for word, context in queries:
            ids = contexts.get(context)
            if ids is None:
                ids = contexts[context] = self._context_ids(context)
            items.append((ids, id_of(word) if word != BOS else -1))
        walking = [q for q, (_, wid) in enumerate(items) if wid >= 0]  # <s> is never predicted: -inf
        words = np.asarray([wid for _, wid in items], dtype=np.int64)
        p = np.full(len(items), 1.0 / self._vocab_size())
        for n in range(1, self.order + 1):
            walking = [q for q in walking if len(items[q][0]) >= n - 1]
            if not walking:
                break
            keys = [items[q][0][len(items[q][0]) - n + 1 :] if n > 1 else () for q in walking]
            entries = self._kn_entries(keys, n)
            if n > 1:  # an unseen context ends the walk: every longer one is unseen too
                walking = [q for q, key in zip(walking, keys, strict=True) if entries[key] is not None]
                keys = [key for key in keys if entries[key] is not None]
            elif entries[()] is None:
                continue
            if walking:
                at = np.asarray(walking, dtype=np.int64)
                p[at] = _interpolate(entries, keys, words[at], p[at])
        log = math.log
        return [log(x) if x > 0 and wid >= 0 else -math.inf for x, (_, wid) in zip(p.tolist(), items, strict=True)]

    def _kn_entries(self, keys: Sequence[tuple[int, ...]], n: int) -> dict[tuple[int, ...], KnEntry | None]:
        """`_kn_level` of each distinct context of n - 1 words among `keys`: from the memo, else from follower lists
        read in one round (`levels` of a reader that reads in bulk: one version check, one query per order)."""
        memo = self._cached("kn_levels", _Memo)
        distinct: dict[tuple[int, ...], KnEntry | None] = {}
        missing = []
        for key in keys:
            if key not in distinct:
                entry = memo.get(key, _MISSING)
                if entry is _MISSING:
                    missing.append(key)
                distinct[key] = entry
        if missing:
            bulk = getattr(self.counts, "levels", None)
            levels = bulk(missing) if bulk is not None else [self.counts.level(key) for key in missing]
            discounts = self._discounts(n, RAW if n == self.order else ADJUSTED)  # once, not once per list
            for key, level in zip(missing, levels, strict=True):
                distinct[key] = self._remember_entry(memo, key, self._kn_entry(level, n, key, discounts))
        return distinct

    def distribution(self, context: Context) -> dict[str, float]:
        """P(w | context) for every w in the vocabulary V (sums to 1 for normalised smoothings)."""
        vocab_ids = self.vocabulary_ids()
        probs = self._probs(self._context_ids(context), vocab_ids)
        words = self.counts.vocab.words
        return {words[i]: float(p) for i, p in zip(vocab_ids.tolist(), probs.tolist(), strict=True)}

    def distribution_arrays(self, context: Context) -> tuple[list[str], np.ndarray]:
        """(V's words, P(w | context) for each as float64): `distribution` as arrays, the word list the same object
        while the counts do not change. Under Kneser-Ney it starts from the cached unigram level and touches only
        each longer context's followers (a blend reads the whole distribution on every key press).

        The counts may change on another thread meanwhile (a learn commits): the words and the probabilities are
        taken from one version of them, read again when the version moved (else a word list of one version would
        come with the probabilities of the next, one word shorter or longer)."""
        for attempt in range(VERSION_TRIES):
            version = self.counts.version
            words = self.vocabulary_words()
            ids = self._context_ids(context)
            try:
                if self.smoothing is not Smoothing.KNESER_NEY:
                    probs = self._probs(ids, self.vocabulary_ids())
                else:
                    probs = self._kneser_ney_dense(ids)
            except _CountsMoved:
                if attempt == VERSION_TRIES - 1:
                    raise RuntimeError("the counts kept gaining words while a distribution was read") from None
                continue
            if self.counts.version == version and len(probs) == len(words):
                break
        return words, probs

    def vocabulary_words(self) -> list[str]:
        """V's words in id order: the list `distribution_arrays` returns (the same object while V stays the same,
        across count changes too, so a `Blend` keeps what it derived from it)."""
        return self._cached("vocab_words", self._current_vocabulary_words)

    def _current_vocabulary_words(self) -> list[str]:
        """V's words for the current counts: the last list while V's ids are unchanged (most learns add no new word);
        the last list extended when the new ids only follow its ids (new words get new, larger ids)."""
        ids, (last_ids, last_words) = self.vocabulary_ids(), self._last_vocabulary
        if np.array_equal(ids, last_ids):
            return last_words
        every = self.counts.vocab.words
        if len(ids) > len(last_ids) and np.array_equal(ids[: len(last_ids)], last_ids):
            words = last_words + [every[i] for i in ids[len(last_ids) :].tolist()]
        else:
            words = [every[i] for i in ids.tolist()]
        self._last_vocabulary = (ids, words)
        return words

    def word_positions(self) -> dict[str, int]:
        """Each word of V -> its position in `vocabulary_words()`."""
        return SHARED_WORD_LISTS.index(self.vocabulary_words()).position

    def _kneser_ney_dense(self, ids: tuple[int, ...]) -> np.ndarray:
        """`_kneser_ney` over all of V with the same arithmetic (so the same floats): the unigram level for every
        word is cached; each longer level scales it by gamma and adds the discounted counts of its followers."""
        vocab_ids = self.vocabulary_ids()
        positions = self._vocabulary_positions()
        p = self._dense_unigram_level().copy()
        if len(p) != len(vocab_ids) or (len(vocab_ids) and len(positions) != int(vocab_ids[-1]) + 1):
            raise _CountsMoved  # the three tables came from two versions of the counts
        for n in range(2, len(ids) + 2):
            entry = self._kn_level(ids, n)
            if entry is None:
                break  # an unseen context: every longer one is unseen too (see `logprobs`)
            level_ids, values, total, gamma, discounts = entry
            if len(level_ids) and level_ids[-1] >= len(positions):  # ids ascending: the last is the largest
                raise _CountsMoved
            p *= gamma
            at = positions[level_ids]
            a = values.astype(np.float64)
            p[at] += np.maximum(a - np.asarray(discounts)[np.minimum(values, 3)], 0.0) / total
        return p

    def mass_over(self, context: Context, weights: np.ndarray) -> float:
        """sum over V of P(w | context) * weights[i], `weights` a float64 array over `vocabulary_words()` positions
        (1.0/0.0 for the probability of a set of words). Under Kneser-Ney it follows `_kneser_ney_dense` level by
        level, touching only each context's followers (the unigram level's sum is kept per weights array)."""
        if self.smoothing is not Smoothing.KNESER_NEY:
            return float(self.distribution_arrays(context)[1] @ weights)
        ids = self._context_ids(context)
        positions = self._vocabulary_positions()
        sums = self._cached("kn_unigram_mass", dict)
        held = sums.get(id(weights))
        if held is None or held[0] is not weights:
            unigram = self._dense_unigram_level()
            held = sums[id(weights)] = (weights, float(unigram @ weights))
            while len(sums) > MASS_WEIGHTS_KEPT:
                sums.pop(next(iter(sums), None), None)  # shared by the threads: another may have dropped it
        total = held[1]
        for n in range(2, len(ids) + 2):
            entry = self._kn_level(ids, n)
            if entry is None:
                break  # an unseen context: every longer one is unseen too (see `logprobs`)
            level_ids, values, level_total, gamma, discounts = entry
            at = positions[level_ids]
            a = values.astype(np.float64)
            alpha = np.maximum(a - np.asarray(discounts)[np.minimum(values, 3)], 0.0) / level_total
            total = gamma * total + float(alpha @ weights[at])
        return total

    def predict(self, context: Context, k: int = 10, prefix: str = "") -> list[Prediction]:
        """The k most probable next words starting with `prefix`, most probable first (ties by word).

        Exact: candidates are the followers of every context order plus the best words of the unigram level,
        enough of them that no other word can beat the k-th (see `_candidates`).
        """
        if k <= 0:
            return []
        ids = self._context_ids(context)
        return top_predictions(self._candidates(ids, k, prefix), partial(self._probs, ids), self.counts.vocab.words, k)

    def warm(self, pause: Callable[[], None] | None = None) -> None:
        """Derive now what the first distribution after a change of the counts would derive (V's ids, words and
        positions, the word index, Kneser-Ney's unigram level over V), `pause` called before each step (each is up
        to a few milliseconds: the server lets a waiting completion go first). Results do not change."""
        steps = [self.vocabulary_ids, self.vocabulary_words, self._vocabulary_positions, self.word_positions]
        if self.smoothing is Smoothing.KNESER_NEY:
            steps.append(self._dense_unigram_level)
        for step in steps:
            if pause is not None:
                pause()
            step()

    def prefetch(self, contexts: Iterable[Context], pause: Callable[[], None] | None = None) -> None:
        """Warm the count reader for many contexts at once (if it can fetch in bulk); results do not change.
        `pause`, when given, is called between the reader's queries."""
        fetch = getattr(self.counts, "prefetch", None)
        if fetch is None:
            return
        wanted: set[tuple[int, ...]] = set()
        for context in contexts:
            ids = self._context_ids(context)
            wanted.update(ids[len(ids) - n :] for n in range(1, len(ids) + 1))
        fetch(wanted, pause)

    def _dense_unigram_level(self) -> np.ndarray:
        """Kneser-Ney's unigram level over V (positions of `vocabulary_ids()`), kept per version. Everything it is
        made from is read inside (a word list the caller took earlier may be an older version's, and would be kept
        under the newer one: a 1,000-document soak's completions then failed on every try)."""
        return self._cached("kn_dense_unigram", lambda: self._kneser_ney((), self._levels(()), self.vocabulary_ids()))

    def _vocabulary_positions(self) -> np.ndarray:
        """Each word id's position in `vocabulary_ids()` (-1 for an id outside V), an array indexed by id: a
        follower list's positions are one gather (searching the sorted ids was most of a dense distribution's
        cost after a word with thousands of followers)."""

        def make() -> np.ndarray:
            vocab_ids = self.vocabulary_ids()
            table = np.full(int(vocab_ids.max()) + 1 if len(vocab_ids) else 0, -1, dtype=np.int64)
            table[vocab_ids] = np.arange(len(vocab_ids))
            return table

        return self._cached("vocab_positions", make)

    def vocabulary_ids(self) -> np.ndarray:
        """Ids of V: every word with a positive count except `<s>`, plus `<unk>`; ascending."""
        return self._cached("vocab", lambda: _with_unk(self.counts.level(()).ids))

    # --- contexts and candidates ---------------------------------------------------------------------------
    def _context_ids(self, context: Context) -> tuple[int, ...]:
        """The last order-1 tokens of `context` as ids, never reaching back past a `<s>`."""
        tokens = list(context)
        if BOS in tokens:
            tokens = tokens[len(tokens) - 1 - tokens[::-1].index(BOS) :]
        tokens = tokens[max(0, len(tokens) - (self.order - 1)) :] if self.order > 1 else []
        vocab = self.counts.vocab
        return tuple(BOS_ID if (t == BOS and i == 0) else vocab.id_of(t) for i, t in enumerate(tokens))

    def _levels(self, ids: tuple[int, ...]) -> list[Level]:
        """levels[n-1] holds the followers of the last n-1 context words, for n = 1 .. len(ids)+1."""
        return [self.counts.level(ids[len(ids) - n :] if n else ()) for n in range(len(ids) + 1)]

    def _candidates(self, ids: tuple[int, ...], k: int, prefix: str) -> np.ndarray:
        """Word ids that must contain the top k: all higher-order followers plus the top (k + their number)
        words of the unigram-level score. Any other word only gets backed-off mass, a product of backoff
        weights times its unigram-level score, which is at most that of those unigram-level words."""
        levels = self._levels(ids)
        # Every follower of a longer context also follows the shorter one: the bigram level holds them all.
        seen = levels[1].ids if len(levels) > 1 else np.zeros(0, np.int64)
        pool = self._prefix_ids(prefix)
        if prefix:
            seen = seen[np.isin(seen, pool, assume_unique=True)]
        top_n = min(len(pool), k + len(seen))
        if prefix:
            base = self._dense_unigram_scores()[pool]
            # every word tied with the top_n-th too, so that ties are broken by word exactly
            top = pool[base >= kth_largest(base, top_n)] if top_n else pool[:0]
        else:
            ranked = self._ranked_vocabulary()
            if 0 < top_n < len(ranked):
                scores = self._dense_unigram_scores()
                last = scores[ranked[top_n - 1]]
                top_n = int(np.searchsorted(-scores[ranked], -last, side="right"))
            top = ranked[:top_n]
        return np.concatenate([seen, top[~np.isin(top, seen, assume_unique=True)]]).astype(np.int64)

    def _prefix_ids(self, prefix: str) -> np.ndarray:
        """Ids in V whose word starts with `prefix`."""
        if not prefix:
            return self.vocabulary_ids()
        words, ids = self._cached("sorted_words", self._sort_vocabulary)
        lo = bisect_left(words, prefix)
        hi = bisect_left(words, prefix + "\U0010ffff", lo)
        return np.sort(ids[lo:hi])

    def _sort_vocabulary(self) -> tuple[list[str], np.ndarray]:
        all_words = self.counts.vocab.words
        vocab_ids = self.vocabulary_ids()
        order = sorted(range(len(vocab_ids)), key=lambda i: all_words[vocab_ids[i]])
        return [all_words[vocab_ids[i]] for i in order], vocab_ids[order]

    def _dense_unigram_scores(self) -> np.ndarray:
        """The unigram-level probability (or score) of every word, indexed by word id (0 outside V)."""

        def make() -> np.ndarray:
            vocab_ids = self.vocabulary_ids()
            dense = np.zeros(max(len(self.counts.vocab), int(vocab_ids.max(initial=0)) + 1))
            dense[vocab_ids] = self._probs((), vocab_ids)
            return dense

        return self._cached("unigram", make)

    def _ranked_vocabulary(self) -> np.ndarray:
        """V's ids by descending unigram-level score."""

        def make() -> np.ndarray:
            vocab_ids = self.vocabulary_ids()
            return vocab_ids[np.argsort(-self._dense_unigram_scores()[vocab_ids], kind="stable")]

        return self._cached("ranked", make)

    def _dense_level(self, level: Level, values: np.ndarray, key: str) -> np.ndarray:
        """A level's values indexed by word id (for the big unigram level: a gather beats a binary search)."""

        def make() -> tuple[Level, np.ndarray]:
            dense = np.zeros(max(len(self.counts.vocab), int(level.ids.max(initial=0)) + 1), dtype=values.dtype)
            dense[level.ids] = values
            return level, dense

        made_from, dense = self._cached(key, make)
        if made_from is not level:  # kept for another version's level (taken by a caller before the counts moved)
            made_from, dense = make()
        return dense

    def _unigram_values(self, level: Level, values: np.ndarray, key: str, words: np.ndarray) -> np.ndarray:
        dense = self._dense_level(level, values, key)
        if len(words) and int(words.max()) >= len(dense):
            return _lookup(level.ids, values, words)
        return dense[words]

    def _cached(self, key: str, make):
        version = self.counts.version
        cache = self._cache
        if cache.version != version:
            # a new memo, not the old one cleared: a thread still making a value for the old version (the counts
            # changed on another thread meanwhile) then keeps it in the old memo, never in this version's
            cache = _Cache()
            cache.version = version
            self._cache = cache
        value = cache.items.get(key)
        if value is None:
            value = cache.items[key] = make()
        return value

    # --- the estimators --------------------------------------------------------------------------------------
    def _probs(self, ids: tuple[int, ...], words: np.ndarray) -> np.ndarray:
        """P(w | context ids) for each id in `words` (float64 array)."""
        levels = self._levels(ids)
        if self.smoothing is Smoothing.KNESER_NEY:
            return self._kneser_ney(ids, levels, words)
        if self.smoothing is Smoothing.KATZ:
            return self._katz(levels, words)
        if self.smoothing is Smoothing.STUPID_BACKOFF:
            return self._stupid_backoff(levels, words)
        if self.smoothing is Smoothing.ADD_DELTA:
            return self._add_delta(levels[-1], words)
        return self._mle(levels, words)

    def _vocab_size(self) -> int:
        return len(self.vocabulary_ids())

    def _discounts(self, n: int, kind: str) -> tuple[float, float, float]:
        return self._cached(f"kn{n}{kind}", lambda: kneser_ney_discounts(self.counts.count_of_counts(n, kind)))

    def _kneser_ney(self, ids: tuple[int, ...], levels: list[Level], words: np.ndarray) -> np.ndarray:
        p = np.full(len(words), 1.0 / self._vocab_size())
        for n, level in enumerate(levels, start=1):
            raw = n == self.order or (n > 1 and ids[len(ids) - n + 1] == BOS_ID)
            values = level.count if raw else level.cont
            hidden = level.hidden(raw)
            total = int(values.sum()) + hidden
            if total == 0:
                continue  # unseen context: all mass goes to the shorter context
            d1, d2, d3 = self._discounts(n, RAW if n == self.order else ADJUSTED)
            n1, n2 = int((values == 1).sum()), int((values == 2).sum())
            n3 = len(values) - n1 - n2 - int((values == 0).sum())
            gamma = (d1 * n1 + d2 * n2 + d3 * n3 + hidden) / total
            if n == 1:
                a = self._unigram_values(level, values, f"dense{raw}", words)
            else:
                a = _lookup(level.ids, values, words)
            discount = np.asarray((0.0, d1, d2, d3))[np.minimum(a, 3)]
            p = np.maximum(a - discount, 0.0) / total + gamma * p
        return p

    def _kn_level(self, ids: tuple[int, ...], n: int) -> KnEntry | None:
        """One level's followers, adjusted counts, total, gamma and discounts; None for an unseen context."""
        memo = self._cached("kn_levels", _Memo)
        key = ids[len(ids) - n + 1 :] if n > 1 else ()
        if key in memo:
            return memo[key]
        discounts = self._discounts(n, RAW if n == self.order else ADJUSTED)
        return self._remember_entry(memo, key, self._kn_entry(self.counts.level(key), n, key, discounts))

    def _kn_entry(
        self, level: Level, n: int, key: tuple[int, ...], discounts: tuple[float, float, float]
    ) -> KnEntry | None:
        """`_kn_level`'s entry for the followers `level` of context `key` (n - 1 words), with the order's
        `discounts` (D1, D2, D3+)."""
        raw = n == self.order or (n > 1 and key[0] == BOS_ID)
        hidden = level.hidden(raw)
        if not len(level) and not hidden:
            return None
        values = level.count if raw else level.cont
        total = int(values.sum()) + hidden
        if not total:
            return None
        d1, d2, d3 = discounts
        _, n1, n2, n3 = np.bincount(np.minimum(values, 3), minlength=4).tolist()[:4]
        return level.ids, values, total, (d1 * n1 + d2 * n2 + d3 * n3 + hidden) / total, (0.0, d1, d2, d3)

    def _remember_entry(self, memo: _Memo, key: tuple[int, ...], entry: KnEntry | None) -> KnEntry | None:
        """Keep `entry` in the memo, which keeps follower arrays alive: bounded in bytes, as the reader is (the
        oldest half goes when it is full, so a document's working set is not dropped all at once)."""
        if entry is not None:
            memo.nbytes += entry[0].nbytes + entry[1].nbytes + KN_MEMO_OVERHEAD_BYTES
        if memo.nbytes > self.memo_bytes:
            # the memo is shared by the threads: another may have dropped an entry since the list was taken
            for old in _first_keys(memo, (len(memo) + 1) // 2):
                dropped = memo.pop(old, None)
                if dropped is not None:
                    memo.nbytes -= dropped[0].nbytes + dropped[1].nbytes + KN_MEMO_OVERHEAD_BYTES
            if memo.nbytes > self.memo_bytes:  # one entry larger than the whole budget
                memo.clear()
                memo.nbytes = 0
        memo[key] = entry
        return entry

    def _kneser_ney_one(self, ids: tuple[int, ...], wid: int) -> float:
        """P(wid | ids) under Kneser-Ney for one word, in plain floats (the same arithmetic as `_kneser_ney`)."""
        p = 1.0 / self._vocab_size()
        for n in range(1, len(ids) + 2):
            entry = self._kn_level(ids, n)
            if entry is None:
                if n > 1:
                    break  # an unseen context: every longer one is unseen too (see `logprobs`)
                continue
            level_ids, values, total, gamma, discounts = entry
            pos = int(level_ids.searchsorted(wid))
            a = int(values[pos]) if pos < len(level_ids) and level_ids[pos] == wid else 0
            p = max(a - discounts[min(a, 3)], 0.0) / total + gamma * p
        return p

    def _katz_ratios(self, n: int) -> np.ndarray:
        def make() -> np.ndarray:
            k = self.config.katz_k
            ratios = good_turing_ratios(self.counts.count_of_counts(n, RAW), k)
            return np.asarray((1.0, *ratios), dtype=np.float64)  # index c for c <= k; 1.0 at 0 (unused)

        return self._cached(f"katz{n}", make)

    def _katz_seen(self, n: int, level: Level, discount: bool) -> tuple[np.ndarray, int]:
        """Discounted probabilities d_c c / T of the seen followers of one level, and T.

        Where Good-Turing leaves no mass at all (every follower seen more than k times), the level is discounted
        absolutely instead (D = n1 / (n1 + 2 n2) of the order), so that unseen words never get probability 0.
        """
        total = int(level.count.sum())
        c = level.count
        if not discount:
            return c / total, total
        k = self.config.katz_k
        ratios = self._katz_ratios(n)
        d = np.where(c <= k, ratios[np.minimum(c, k)], 1.0)
        seen = d * c / total
        if 1.0 - float(seen.sum()) <= 1e-12:
            n1, n2 = self.counts.count_of_counts(n, RAW)[:2]
            absolute = n1 / (n1 + 2 * n2) if n1 > 0 else 0.5
            seen = np.maximum(c - absolute, 0.0) / total
        return seen, total

    def _katz(self, levels: list[Level], words: np.ndarray) -> np.ndarray:
        unigram = levels[0]
        unseen_words = self._vocab_size() - len(unigram)
        seen_p = self._cached("katz_unigram", lambda: self._katz_seen(1, unigram, discount=unseen_words > 0)[0])
        left = 1.0 - float(seen_p.sum())
        p = _lookup(unigram.ids, seen_p, words, fill=left / unseen_words if unseen_words else 0.0)
        prev_level, prev_seen = unigram, seen_p
        for n, level in enumerate(levels[1:], start=2):
            if len(level) == 0:
                continue
            lower = _lookup(prev_level.ids, prev_seen, level.ids)
            denominator = 1.0 - float(lower.sum())
            if denominator <= 1e-12:  # the context was followed by every word: nothing to back off to
                seen_p, _ = self._katz_seen(n, level, discount=False)
                alpha = 0.0
            else:
                seen_p, _ = self._katz_seen(n, level, discount=True)
                alpha = (1.0 - float(seen_p.sum())) / denominator
            in_level = np.isin(words, level.ids)
            p = np.where(in_level, _lookup(level.ids, seen_p, words), alpha * p)
            prev_level, prev_seen = level, seen_p
        return p

    def _stupid_backoff(self, levels: list[Level], words: np.ndarray) -> np.ndarray:
        score = np.zeros(len(words))
        factor = 1.0
        for level in reversed(levels):
            if len(level):
                c = _lookup(level.ids, level.count, words)
                score = np.where((score == 0) & (c > 0), factor * c / level.count.sum(), score)
            factor *= self.config.backoff_factor
        return score

    def _add_delta(self, level: Level, words: np.ndarray) -> np.ndarray:
        delta = self.config.delta
        c = _lookup(level.ids, level.count, words)
        return (c + delta) / (level.count.sum() + delta * self._vocab_size())

    def _mle(self, levels: list[Level], words: np.ndarray) -> np.ndarray:
        level = next((lvl for lvl in reversed(levels) if len(lvl)), levels[0])
        total = level.count.sum()
        return _lookup(level.ids, level.count, words) / total if total else np.zeros(len(words))


def _lookup(ids: np.ndarray, values: np.ndarray, words: np.ndarray, fill: float = 0) -> np.ndarray:
    """values[i] where ids[i] == word, for each word; `fill` where the word is not among `ids` (ids ascending)."""
    if len(ids) == 0:
        return np.full(len(words), fill, dtype=np.float64 if isinstance(fill, float) else values.dtype)
    pos = np.minimum(np.searchsorted(ids, words), len(ids) - 1)
    hit = ids[pos] == words
    return np.where(hit, values[pos], fill)


def _interpolate(
    entries: dict[tuple[int, ...], KnEntry | None],
    keys: Sequence[tuple[int, ...]],
    words: np.ndarray,
    lower: np.ndarray,
) -> np.ndarray:
    """One order of interpolated Kneser-Ney for many (context, word) pairs at once: max(a - D(a), 0) / total +
    gamma x lower, where a is the word's (adjusted) count after its context (keys[i], whose `_kn_level` entry is in
    `entries`), for words (Q,) ids and `lower` (Q,) the probabilities of the order below. The follower lists are
    laid end to end, each id offset by its list's number times 2^32, so one binary search finds every word."""
    index: dict[tuple[int, ...], int] = {}
    lists = []
    for key in keys:
        if key not in index:
            index[key] = len(lists)
            lists.append(entries[key])
    which = np.asarray([index[key] for key in keys], dtype=np.int64)
    a = _follower_counts([entry[0] for entry in lists], [entry[1] for entry in lists], which, words)
    totals = np.asarray([entry[2] for entry in lists], dtype=np.int64)
    gammas = np.asarray([entry[3] for entry in lists], dtype=np.float64)
    discounts = np.asarray([entry[4] for entry in lists], dtype=np.float64)
    discount = discounts[which, np.minimum(a, 3)]
    return np.maximum(a - discount, 0.0) / totals[which] + gammas[which] * lower


LONG_FOLLOWER_LIST = 1024
"""`_follower_counts` searches a follower list at least this long on its own (copying it costs more than a search)."""


def _follower_counts(
    follower_ids: Sequence[np.ndarray], follower_values: Sequence[np.ndarray], which: np.ndarray, words: np.ndarray
) -> np.ndarray:
    """For each query q, the value of word words[q] in follower list which[q] (its ids ascending), 0 where the word
    is not among them (int64). Long lists (the unigram level, the followers of "the") are searched one by one; the
    short ones are laid end to end, each id offset by its list's number times 2^32, so one binary search finds all
    their words (copying a 40,000-word list for a few queries was most of the cost of scoring a short text)."""
    a = np.zeros(len(words), dtype=np.int64)
    short = []
    for i, ids in enumerate(follower_ids):
        if len(ids) < LONG_FOLLOWER_LIST:
            short.append(i)
            continue
        at = np.flatnonzero(which == i)
        pos = np.minimum(np.searchsorted(ids, words[at]), len(ids) - 1)
        a[at] = np.where(ids[pos] == words[at], follower_values[i][pos], 0)
    if not short:
        return a
    if len(short) < len(follower_ids):
        renumber = np.full(len(follower_ids), -1, dtype=np.int64)
        renumber[short] = np.arange(len(short))
        at = np.flatnonzero(renumber[which] >= 0)
        lists = renumber[which[at]]
    else:
        at, lists = np.arange(len(words)), which
    lengths = np.asarray([len(follower_ids[i]) for i in short], dtype=np.int64)
    followers = np.concatenate([follower_ids[i] for i in short]).astype(np.int64) + np.repeat(
        np.arange(len(short), dtype=np.int64) << 32, lengths
    )
    if not len(followers):
        return a
    values = np.concatenate([follower_values[i] for i in short])
    wanted = (lists << 32) + words[at]
    pos = np.minimum(np.searchsorted(followers, wanted), len(followers) - 1)
    a[at] = np.where(followers[pos] == wanted, values[pos], 0)
    return a


def _with_unk(ids: np.ndarray) -> np.ndarray:
    """Ascending distinct word ids with `<unk>`'s among them (int64)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) > 1 and not bool((ids[1:] > ids[:-1]).all()):
        return np.union1d(ids, [UNK_ID]).astype(np.int64)
    at = int(ids.searchsorted(UNK_ID))
    if at < len(ids) and ids[at] == UNK_ID:
        return ids.copy()
    return np.insert(ids, at, UNK_ID)
