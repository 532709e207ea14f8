"""Backoff models over ARPA-style tables, and interpolated Kneser-Ney rewritten as such tables.

An ARPA table lists, per order n, n-grams `h w` with log10 P(w | h) and, below the highest order, a log10 backoff
weight bow(h w) used when `h w` is the context of a longer n-gram. Scoring follows KenLM (and the ARPA standard):

    log10 P(w | h) = log10 p(h w)                     if `h w` is listed,
                   = log10 bow(h) + log10 P(w | h')   else, where h' drops the oldest word of h,

with bow(h) = 1 (log10 0) for a context that is not listed, unknown words scored as `<unk>`, and contexts that
never reach before `<s>`. An n-gram whose shorter suffix is missing (ARPA files pruned by SRILM have them) is still
found: KenLM inserts the missing suffix with its backed-off probability and backoff 1, which is the same as taking
the longest listed `h w` among the suffixes of the context. A model that lists no `<unk>` scores an unknown word
-inf (natural log; a perplexity of inf), where KenLM gives it log10 -100: nextword does not pretend a probability it
has not got, and `nextword import-arpa` says so when it imports such a model.

Interpolated Kneser-Ney is exactly such a model: listing every counted n-gram with its
full interpolated probability and each context's interpolation weight gamma as its backoff reproduces
`lm_core.ngram.NgramModel` (smoothing kneser-ney) for every word and context (`kneser_ney_tables`).

Units: everything stored in tables is log10 (as in ARPA files); `BackoffModel.logprob` returns natural logs like
every `LanguageModel`.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np

from lm_core.counting import CountTables, adjusted_counts
from lm_core.counts import ADJUSTED, RAW
from lm_core.metrics import LN10
from lm_core.model import Context, Prediction, kth_largest, top_predictions
from lm_core.smoothing import kneser_ney_discounts
from lm_core.vocab import BOS, BOS_ID, UNK_ID, Vocab

BOS_LOG10PROB = -99.0
"""The log10 probability ARPA files give `<s>`, which is never predicted (KenLM and SRILM write -99)."""


class BackoffTables(Protocol):
    """ARPA-style tables as `BackoffModel` reads them, from memory (`ArpaTables`) or SQLite (`store.arpa`).

    Word ids come from `vocab`. Values are log10. `entry` gives (log10 prob, log10 backoff) of one listed n-gram
    (backoff 0.0 where the ARPA line had none), or None when it is not listed. `followers(context)` gives the ids
    (ascending) and log10 probs of the listed n-grams `context + (w,)`, for a context of 1 .. order-1 ids.
    `unigrams()` gives every listed unigram except `<s>`, ids ascending: the vocabulary a model predicts from.
    """

    order: int
    vocab: Vocab

    def entry(self, ngram: tuple[int, ...]) -> tuple[float, float] | None: ...

    def followers(self, context: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]: ...

    def unigrams(self) -> tuple[np.ndarray, np.ndarray]: ...


# --- in-memory tables ---------------------------------------------------------------------------------------------
@dataclass
class ArpaOrder:
    """The n-grams of one order, rows sorted lexicographically by word ids."""

    grams: np.ndarray  # (M, n) int64 word ids
    logprob: np.ndarray  # (M,) float64 log10 P(w_n | w_1 .. w_n-1); NaN marks a blank (see `ArpaTables`)
    backoff: np.ndarray  # (M,) float64 log10 backoff weight; 0.0 where none is listed
    has_backoff: np.ndarray  # (M,) bool: the n-gram's ARPA line carries a backoff field

    def __len__(self) -> int:
        return len(self.logprob)

    @staticmethod
    def empty(n: int) -> ArpaOrder:
        return ArpaOrder(np.zeros((0, n), np.int64), np.zeros(0), np.zeros(0), np.zeros(0, bool))


class DuplicateNgramError(ValueError):
    """The same n-gram was given twice; `order` and `index` (its position in the input arrays) say which."""

    def __init__(self, order: int, index: int) -> None:
        super().__init__(f"duplicate {order}-gram (input row {index})")
        self.order = order
        self.index = index


class ArpaTables:
    """ARPA tables in memory: per order, sorted n-grams with log10 probs and backoffs. A `BackoffTables`.

    Lookups use the hierarchical keys of `lm_core.counting.CountTables` (`key = row_of_prefix * width + last_id`),
    which need every n-gram's prefix to be a row one order down. ARPA files from pruning tools can lack some;
    these are added as blanks: rows with a NaN log10 prob, never reported by `entry` or `followers`, so scoring
    backs off past them exactly as if they were absent. `listed_counts()` and the ARPA writer skip them.
    """

    def __init__(self, order: int, vocab: Vocab, orders: list[ArpaOrder]) -> None:
        if len(orders) != order or order < 1:
            raise ValueError(f"an order-{order} model needs {order} tables, not {len(orders)}")
        self.order = order
        self.vocab = vocab
        self.orders = orders
        self._width = 1 + max(int(o.grams.max(initial=0)) for o in orders)
        self._keys: list[np.ndarray] = []
        self._build_index()
        self._unigrams: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def from_arrays(
        cls,
        vocab: Vocab,
        grams: list[np.ndarray],
        logprob: list[np.ndarray],
        backoff: list[np.ndarray],
        has_backoff: list[np.ndarray],
    ) -> ArpaTables:
        """Tables from unsorted per-order arrays (log10 values). Raises `DuplicateNgramError` on a repeat."""
        orders = []
        for n, (g, p, b, h) in enumerate(zip(grams, logprob, backoff, has_backoff, strict=True), start=1):
            g = np.asarray(g, dtype=np.int64).reshape(-1, n)
            perm = np.lexsort(g.T[::-1]) if len(g) else np.zeros(0, np.int64)
            g = g[perm]
            same = np.flatnonzero(np.all(g[1:] == g[:-1], axis=1)) if len(g) > 1 else np.zeros(0, np.int64)
            if len(same):
                raise DuplicateNgramError(n, int(max(perm[same[0]], perm[same[0] + 1])))
            orders.append(
                ArpaOrder(
                    g, np.asarray(p, np.float64)[perm], np.asarray(b, np.float64)[perm], np.asarray(h, bool)[perm]
                )
            )
        return cls(len(orders), vocab, orders)

    # --- the index -------------------------------------------------------------------------------------------
    def _build_index(self) -> None:
        """Keys per order, adding blank rows for missing prefixes (a missing one may need blanks further down)."""
        self._keys = [self.orders[0].grams[:, 0].copy()]
        n = 2
        while n <= self.order:
            table = self.orders[n - 1]
            prefix = self.rows(table.grams[:, :-1])
            missing = prefix < 0
            if missing.any():
                self._add_blanks(n - 1, np.unique(table.grams[missing, :-1], axis=0))
                self._keys = self._keys[: n - 2]
                if n == 2:
                    self._keys = [self.orders[0].grams[:, 0].copy()]
                    continue
                n -= 1
                continue
            self._keys.append(prefix * self._width + table.grams[:, -1])
            n += 1

    def _add_blanks(self, n: int, grams: np.ndarray) -> None:
        old = self.orders[n - 1]
        g = np.concatenate([old.grams, grams])
        perm = np.lexsort(g.T[::-1])
        blank = np.zeros(len(grams))
        self.orders[n - 1] = ArpaOrder(
            g[perm],
            np.concatenate([old.logprob, blank + np.nan])[perm],
            np.concatenate([old.backoff, blank])[perm],
            np.concatenate([old.has_backoff, blank.astype(bool)])[perm],
        )

    def rows(self, grams: np.ndarray) -> np.ndarray:
        """Row numbers of `grams` (an (M, n) int array) in the order-n table; -1 where absent."""
        grams = np.asarray(grams, dtype=np.int64)
        rank = np.zeros(len(grams), dtype=np.int64)
        found = np.ones(len(grams), dtype=bool)
        for j in range(grams.shape[1]):
            key = grams[:, j] if j == 0 else rank * self._width + grams[:, j]
            table_keys = self._keys[j]
            if len(table_keys) == 0:
                return np.full(len(grams), -1, dtype=np.int64)
            pos = np.minimum(np.searchsorted(table_keys, key), len(table_keys) - 1)
            found &= (table_keys[pos] == key) & (grams[:, j] >= 0) & (grams[:, j] < self._width)
            rank = np.where(found, pos, 0)
        return np.where(found, rank, -1)

    def _row(self, ngram: tuple[int, ...]) -> int:
        """Row of one n-gram in its order's table, or -1 (scalar binary searches)."""
        rank = -1
        for j, wid in enumerate(ngram):
            if not 0 <= wid < self._width:
                return -1
            key = wid if j == 0 else rank * self._width + wid
            keys = self._keys[j]
            pos = int(np.searchsorted(keys, key))
            if pos >= len(keys) or keys[pos] != key:
                return -1
            rank = pos
        return rank

    # --- BackoffTables --------------------------------------------------------------------------------------
    def entry(self, ngram: tuple[int, ...]) -> tuple[float, float] | None:
        """(log10 prob, log10 backoff) of a listed n-gram, or None."""
        if not 1 <= len(ngram) <= self.order:
            return None
        row = self._row(ngram)
        if row < 0:
            return None
        table = self.orders[len(ngram) - 1]
        p = float(table.logprob[row])
        return None if math.isnan(p) else (p, float(table.backoff[row]))

    def followers(self, context: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Ids (ascending) and log10 probs of the listed n-grams `context + (w,)`."""
        n = len(context) + 1
        row = self._row(context) if 2 <= n <= self.order else -1
        if row < 0:
            return np.zeros(0, np.int64), np.zeros(0)
        lo, hi = np.searchsorted(self._keys[n - 1], [row * self._width, (row + 1) * self._width])
        table = self.orders[n - 1]
        ids, p = table.grams[lo:hi, -1], table.logprob[lo:hi]
        keep = ~np.isnan(p)
        return (ids, p) if keep.all() else (ids[keep], p[keep])

    def unigrams(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids (ascending) and log10 probs of every listed unigram except `<s>`."""
        if self._unigrams is None:
            t = self.orders[0]
            keep = (t.grams[:, 0] != BOS_ID) & ~np.isnan(t.logprob)
            self._unigrams = (t.grams[keep, 0].copy(), t.logprob[keep].copy())
        return self._unigrams

    def listed_counts(self) -> dict[int, int]:
        """How many n-grams each order lists (blanks excluded)."""
        return {n: int((~np.isnan(o.logprob)).sum()) for n, o in enumerate(self.orders, start=1)}


# --- Kneser-Ney as backoff tables ---------------------------------------------------------------------------------
def kneser_ney_tables(counts: CountTables, order: int | None = None) -> ArpaTables:
    """The interpolated modified Kneser-Ney model of `NgramModel(counts, smoothing=KNESER_NEY, order=order)` as
        ARPA tables (log10), vectorised per order.

        Every counted n-gram `h w` is listed with the model's full probability
        p(w | h) = max(a(h w) - D(a), 0) / T(h) + gamma(h) p(w | h'), computed from its context's statistics (grouped
        over the sorted rows with `np.add.reduceat`) and its suffix's probability one order down (`CountTables.rows`).
        A context h gets backoff log10 gamma(h), so an unlisted `h w` backs off to gamma(h) p(w | h'), which is what
        the interpolation gives it. Unigrams: all of V plus `<unk>` (the uniform share gamma/|V| if unseen) and `<s>`
        at -99. Over pruned counts each context's total and gamma include its pruned followers' mass
    (`CountTables.hidden_of`), as `lmplz --prune` writes them. This mirrors `NgramModel._kneser_ney` operation for
    operation; keep the two in step.
    """
    order = order or counts.order
    if not 1 <= order <= counts.order:
        raise ValueError(f"model order {order} must be between 1 and the counts' order {counts.order}")
    first = counts.tables[0]
    is_bos = first.grams[:, 0] == BOS_ID
    vocab_size = len(np.union1d(first.grams[~is_bos, 0], [UNK_ID]))

    # probs[n-1]: linear P(w | h) of each order-n row. <s> is not in the unigram level (count 0 there); <unk>,
    # unseen or not, is scored as one more row of the unigram level (appended, then split off).
    values = np.where(is_bos, 0, first.count if order == 1 else adjusted_counts(first))
    uniform = np.full(len(values) + 1, 1.0 / vocab_size)
    p1, _ = _interpolate(np.r_[values, 0], np.zeros(1, np.int64), _discounts(counts, 1, order), uniform)
    probs, unk_prob = [p1[:-1]], p1[-1:]
    gammas: list[tuple[np.ndarray, np.ndarray]] = []  # per order n-1: (context rows, gamma)
    for n in range(2, order + 1):
        table = counts.tables[n - 1]
        values = table.count if n == order else adjusted_counts(table)
        context_rows = counts.rows(table.grams[:, :-1])
        lower = probs[n - 2][counts.rows(table.grams[:, 1:])]
        starts = np.flatnonzero(np.r_[True, context_rows[1:] != context_rows[:-1]]) if len(values) else context_rows
        hidden_count, hidden_cont = counts.hidden_of(n - 1, context_rows[starts])
        raw = n == order or table.grams[starts, 0] == BOS_ID  # as adjusted_counts: raw after a context at <s>
        hidden = np.where(raw, hidden_count, hidden_cont)
        p, gamma = _interpolate(values, starts, _discounts(counts, n, order), lower, hidden)
        probs.append(p)
        gammas.append((context_rows[starts], gamma))

    orders = []
    for n in range(1, order + 1):
        grams = counts.tables[n - 1].grams
        with np.errstate(divide="ignore"):
            logprob = np.log10(probs[n - 1])
        backoff = np.zeros(len(grams))
        has_backoff = np.zeros(len(grams), dtype=bool)
        if n < order:
            rows, gamma = gammas[n - 1]
            backoff[rows] = np.log10(gamma)
            has_backoff[rows] = True
        if n == 1:
            logprob[is_bos] = BOS_LOG10PROB
            if UNK_ID not in grams[:, 0]:  # <unk> was never seen: the uniform share (ids are sorted, UNK_ID is 0)
                grams = np.concatenate([[[UNK_ID]], grams])
                with np.errstate(divide="ignore"):
                    logprob = np.concatenate([np.log10(unk_prob), logprob])
                backoff, has_backoff = np.r_[0.0, backoff], np.r_[False, has_backoff]
        orders.append(ArpaOrder(grams, logprob, backoff, has_backoff))
    return ArpaTables(order, counts.vocab, orders)


def _discounts(counts: CountTables, n: int, order: int) -> tuple[float, float, float]:
    return kneser_ney_discounts(counts.count_of_counts(n, RAW if n == order else ADJUSTED))


def _interpolate(
    values: np.ndarray,
    starts: np.ndarray,
    discounts: tuple[float, float, float],
    lower: np.ndarray,
    hidden: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One interpolated KN level for many contexts at once: rows grouped by context, each group starting at
    `starts`; `values` are the counts the level uses (raw or adjusted), `lower` each row's probability one order
    down, `hidden` each group's pruned mass in the same counts (added to its total and its gamma's numerator).
    Returns each row's probability and each group's gamma (1.0 for a group whose counts sum to 0: the model
    skips such a level, so its rows get `lower` unchanged)."""
    if len(values) == 0:
        return np.zeros(0), np.zeros(0)
    d1, d2, d3 = discounts
    hidden = np.zeros(len(starts), np.int64) if hidden is None else hidden
    total = np.add.reduceat(values, starts) + hidden
    n1 = np.add.reduceat((values == 1).astype(np.int64), starts)
    n2 = np.add.reduceat((values == 2).astype(np.int64), starts)
    n3 = np.add.reduceat((values >= 3).astype(np.int64), starts)
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(values)]))
    seen = total > 0
    safe_total = np.where(seen, total, 1)
    gamma = np.where(seen, (d1 * n1 + d2 * n2 + d3 * n3 + hidden) / safe_total, 1.0)
    discount = np.array([0.0, d1, d2, d3])[np.minimum(values, 3)]
    p = np.maximum(values - discount, 0.0) / safe_total[group] + gamma[group] * lower
    return np.where(seen[group], p, lower), gamma


# --- the model -----------------------------------------------------------------------------------------------------
class BackoffModel:
    """A `LanguageModel` over ARPA-style backoff tables, scoring as KenLM does (see the module docstring).

    `logprob` is a natural log (log10 values from the tables times ln 10). The vocabulary it predicts from and
    normalises over is every listed unigram except `<s>`.
    """

    def __init__(self, tables: BackoffTables, context_cache_size: int = 10_000) -> None:
        self.tables = tables
        self.order: int = tables.order
        self.vocab = tables.vocab
        self._context_cache_size = context_cache_size
        self._backoff_sums: OrderedDict[tuple[int, ...], list[float]] = OrderedDict()
        self._sorted_words: tuple[list[str], np.ndarray] | None = None

    # --- public interface --------------------------------------------------------------------------------------
    def logprob(self, word: str, context: Context) -> float:
        """Natural log of P(word | context); -inf for `<s>`, and for unknown words when `<unk>` is not listed."""
        if word == BOS:
            return -math.inf
        wid = self._word_id(word)
        unigram = self.tables.entry((wid,))
        if unigram is None:
            return -math.inf
        ids = self._context_ids(context)
        log10p, matched = unigram[0], 0
        for m in range(1, len(ids) + 1):  # the longest listed match, even past a missing shorter one (see below)
            e = self.tables.entry((*ids[len(ids) - m :], wid))
            if e is not None:
                log10p, matched = e[0], m
        return (log10p + self._context_backoffs(ids)[matched]) * LN10

    def log10prob(self, word: str, context: Context) -> float:
        """log10 P(word | context), as KenLM's `full_scores` reports it."""
        return self.logprob(word, context) / LN10

    def predict(self, context: Context, k: int = 10, prefix: str = "") -> list[Prediction]:
        """The k most probable next words starting with `prefix`, most probable first (ties by word).

        Exact: a word that no context suffix lists scores sum(backoffs) + its unigram log10 prob, the same sum for
        every such word, so the best of them are the best unigrams. The candidates are every listed follower of
        every context suffix plus the top (k + their number) unigrams (and any tied with the last of those).
        """
        if k <= 0:
            return []
        ids = self._context_ids(context)
        scores = partial(self._natural_logprobs, ids)
        return top_predictions(self._candidates(ids, k, prefix), scores, self.vocab.words, k, log=True)

    def distribution(self, context: Context) -> dict[str, float]:
        """P(w | context) for every w the model predicts from (sums to 1 for a normalised model)."""
        ids = self._context_ids(context)
        vocab_ids = self.tables.unigrams()[0]
        logp = self._natural_logprobs(ids, vocab_ids)
        words = self.vocab.words
        return {words[w]: math.exp(lp) for w, lp in zip(vocab_ids.tolist(), logp.tolist(), strict=True)}

    # --- contexts -----------------------------------------------------------------------------------------------
    def _word_id(self, word: str) -> int:
        """The word's id if it is a listed unigram, else `<unk>`'s."""
        wid = self.vocab.get(word)
        if wid is None:
            return UNK_ID
        ids = self.tables.unigrams()[0]
        pos = int(np.searchsorted(ids, wid))
        return wid if pos < len(ids) and ids[pos] == wid else UNK_ID

    def _context_ids(self, context: Context) -> tuple[int, ...]:
        """The last order-1 tokens of `context` as ids, never reaching back past a `<s>`; unknown words as `<unk>`."""
        tokens = list(context)
        if BOS in tokens:
            tokens = tokens[len(tokens) - 1 - tokens[::-1].index(BOS) :]
        tokens = tokens[max(0, len(tokens) - (self.order - 1)) :] if self.order > 1 else []
        return tuple(BOS_ID if (t == BOS and i == 0) else self._word_id(t) for i, t in enumerate(tokens))

    def _context_backoffs(self, ids: tuple[int, ...]) -> list[float]:
        """sums[j]: the log10 backoffs of the context suffixes longer than j words, summed (0.0 for j = len(ids))."""
        cached = self._backoff_sums.get(ids)
        if cached is not None:
            self._backoff_sums.move_to_end(ids)
            return cached
        sums = [0.0] * (len(ids) + 1)
        # sums[j] = bow(ids[-(j+1):]) + ... + bow(ids), accumulated from the longest suffix down, in one order.
        acc = 0.0
        for length in range(len(ids), 0, -1):
            e = self.tables.entry(ids[len(ids) - length :])
            acc = acc + (e[1] if e is not None else 0.0)
            sums[length - 1] = acc
        self._backoff_sums[ids] = sums
        if len(self._backoff_sums) > self._context_cache_size:
            self._backoff_sums.popitem(last=False)
        return sums

    # --- vectorised scoring ------------------------------------------------------------------------------------
    def _natural_logprobs(self, ids: tuple[int, ...], words: np.ndarray) -> np.ndarray:
        """Natural log P(w | ids) for listed unigram ids `words`; the same arithmetic as `logprob`."""
        uni_ids, uni_p = self.tables.unigrams()
        log10p = _lookup(uni_ids, uni_p, words, -math.inf)
        matched = np.zeros(len(words), dtype=np.int64)
        for m in range(1, len(ids) + 1):
            f_ids, f_p = self.tables.followers(ids[len(ids) - m :])
            if len(f_ids) == 0:
                continue
            pos = np.minimum(np.searchsorted(f_ids, words), len(f_ids) - 1)
            listed = f_ids[pos] == words
            log10p = np.where(listed, f_p[pos], log10p)
            matched[listed] = m
        sums = np.asarray(self._context_backoffs(ids))
        return (log10p + sums[matched]) * LN10

    def _candidates(self, ids: tuple[int, ...], k: int, prefix: str) -> np.ndarray:
        listed = [self.tables.followers(ids[len(ids) - m :])[0] for m in range(1, len(ids) + 1)]
        seen = np.unique(np.concatenate(listed)) if listed else np.zeros(0, np.int64)
        uni_ids, uni_p = self.tables.unigrams()
        pool = self._prefix_ids(prefix)
        if prefix:
            seen = seen[np.isin(seen, pool)]
        seen = seen[seen != BOS_ID]
        base = uni_p[np.searchsorted(uni_ids, pool)]
        top_n = min(len(pool), k + len(seen))
        if top_n == 0:
            return seen.astype(np.int64)
        threshold = kth_largest(base, top_n)
        return np.union1d(seen, pool[base >= threshold]).astype(np.int64)

    def _prefix_ids(self, prefix: str) -> np.ndarray:
        """Ids of listed unigrams (not `<s>`) whose word starts with `prefix`, ascending."""
        uni_ids = self.tables.unigrams()[0]
        if not prefix:
            return uni_ids
        if self._sorted_words is None:
            all_words = self.vocab.words
            order = sorted(range(len(uni_ids)), key=lambda i: all_words[uni_ids[i]])
            self._sorted_words = ([all_words[uni_ids[i]] for i in order], uni_ids[order])
        words, sorted_ids = self._sorted_words
        lo = bisect_left(words, prefix)
        hi = bisect_left(words, prefix + "\U0010ffff", lo)
        return np.sort(sorted_ids[lo:hi])


def _lookup(ids: np.ndarray, values: np.ndarray, words: np.ndarray, fill: float) -> np.ndarray:
    """values[i] where ids[i] == word (ids ascending), `fill` elsewhere."""
    if len(ids) == 0:
        return np.full(len(words), fill)
    pos = np.minimum(np.searchsorted(ids, words), len(ids) - 1)
    return np.where(ids[pos] == words, values[pos], fill)
