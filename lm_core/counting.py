"""Counting n-grams with numpy, and `CountTables`: all counts of a corpus in memory, as a `CountReader`.

A token stream is a flat int array of word ids in which every sentence is `<s> w1 ... wk </s>`. N-grams never
cross a sentence boundary; the lone `<s>` is kept as an order-1 row (so every n-gram's prefix has a row) but is
excluded from the unigram distribution and the count-of-counts.

Each order's table is sorted lexicographically by word ids. Rows are found through a hierarchical key:
`key = rank_of_prefix * width + last_word`, where `rank_of_prefix` is the prefix's row in the table one order
below, so the followers of a context are one contiguous slice and lookups are binary searches.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from lm_core.counts import ADJUSTED, COC_MAX, RAW, Level
from lm_core.vocab import BOS_ID, UNK_ID, Vocab

DEFAULT_ORDER = 5
"""The n-gram order counted when none is given (a new store, the shipped model): 5-grams, as KenLM's usual models."""


ENCODE_PAUSE_SENTENCES = 512
"""`encode_sentences` calls its `pause` every this many sentences (~1 ms of work)."""


def encode_sentences(
    sentences: Iterable[Sequence[str]], vocab: Vocab, grow: bool = True, pause: Callable[[], None] | None = None
) -> np.ndarray:
    """A token stream (int64) for `sentences` (each a list of tokens ending with `</s>`), with `<s>` prepended.

    New words are added to `vocab` when `grow`, else mapped to `<unk>`. A literal "<s>" inside text is `<unk>`.
    `pause` is called every `ENCODE_PAUSE_SENTENCES` sentences.
    """
    ids: list[int] = []
    known = vocab.index  # words already in `vocab`: most sentences need nothing else (a dict lookup per token)
    lookup = vocab.add if grow else vocab.id_of
    for done, sentence in enumerate(sentences, start=1):
        if pause is not None and done % ENCODE_PAUSE_SENTENCES == 0:
            pause()
        try:
            part = [known[w] for w in sentence]
        except KeyError:
            part = [lookup(w) for w in sentence]
        if BOS_ID in part:  # a literal "<s>" in the text
            part = [UNK_ID if i == BOS_ID else i for i in part]
        ids.append(BOS_ID)
        ids += part
    return np.asarray(ids, dtype=np.int64)


@dataclass
class OrderTable:
    """All n-grams of one order, rows sorted lexicographically."""

    grams: np.ndarray  # (M, n) int64 word ids
    count: np.ndarray  # (M,) int64 raw counts
    cont: np.ndarray  # (M,) int64 continuation counts (all 0 at the highest order)

    def __len__(self) -> int:
        return len(self.count)


@dataclass
class HiddenMass:
    """What pruning dropped after contexts of one order (see `lm_core.counts`): per context that keeps at least one
    follower and lost at least one, the sums of the lost followers' raw counts and continuation counts."""

    contexts: np.ndarray  # (M, n) int64 word ids, rows sorted lexicographically
    count: np.ndarray  # (M,) int64 summed raw counts of the pruned followers
    cont: np.ndarray  # (M,) int64 summed continuation counts of the pruned followers

    def __len__(self) -> int:
        return len(self.count)

    @staticmethod
    def empty(n: int) -> HiddenMass:
        z = np.zeros(0, np.int64)
        return HiddenMass(np.zeros((0, n), np.int64), z, z)


@dataclass
class CountTables:
    """Every n-gram count of a token stream, up to `order`, in memory. Implements `CountReader`."""

    order: int
    tables: list[OrderTable]  # tables[n - 1] holds order n
    vocab: Vocab = field(default_factory=Vocab)
    version: int = 0
    frozen_coc: dict[tuple[int, str], tuple[int, ...]] | None = None  # set by prune(): the full data's
    hidden: list[HiddenMass] | None = None  # set by prune(): hidden[n - 1] after contexts of n words (n < order)
    _keys: list[np.ndarray] | None = field(default=None, repr=False)
    _width: int = field(default=0, repr=False)
    _hidden_dense: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _unigram_level: tuple[int, Level] | None = field(default=None, repr=False)  # (version, the unigram level)

    # --- lookups -------------------------------------------------------------------------------------------
    def _index(self) -> list[np.ndarray]:
        if self._keys is None:
            self._hidden_dense = {}
            self._width = int(max((t.grams.max(initial=0) for t in self.tables), default=0)) + 1
            self._keys = [self.tables[0].grams[:, 0].copy()]
            for n in range(2, self.order + 1):
                grams = self.tables[n - 1].grams
                prefix = self.rows(grams[:, :-1])
                self._keys.append(prefix * self._width + grams[:, -1])
        return self._keys

    def rows(self, grams: np.ndarray) -> np.ndarray:
        """Row numbers of `grams` (an (M, n) array) in the order-n table; -1 where an n-gram is absent."""
        keys = self._index()
        grams = np.asarray(grams, dtype=np.int64)
        rank = np.zeros(len(grams), dtype=np.int64)
        found = np.ones(len(grams), dtype=bool)
        for j in range(grams.shape[1]):
            key = grams[:, j] if j == 0 else rank * self._width + grams[:, j]
            table_keys = keys[j]
            pos = np.searchsorted(table_keys, key)
            pos_clipped = np.minimum(pos, max(len(table_keys) - 1, 0))
            in_range = (grams[:, j] >= 0) & (grams[:, j] < self._width)  # else rank * width + id would alias
            hit = (pos < len(table_keys)) & (table_keys[pos_clipped] == key) if len(table_keys) else pos < 0
            found &= hit & in_range
            rank = np.where(found, pos_clipped, 0)
        return np.where(found, rank, -1)

    def row_of(self, gram: Sequence[int]) -> int:
        """`rows` of one n-gram (-1 when absent), with one scalar search per word instead of the array path's dozen
        small numpy calls per word: a completion, or a learn's held-out token, asks about one context at a time."""
        keys = self._index()
        width = self._width
        rank = 0
        for j, word in enumerate(gram):
            if not 0 <= word < width:
                return -1
            key = word if j == 0 else rank * width + word
            table_keys = keys[j]
            pos = int(table_keys.searchsorted(key))
            if pos >= len(table_keys) or table_keys[pos] != key:
                return -1
            rank = pos
        return rank

    def count(self, gram: Sequence[int]) -> int:
        """Raw count of one n-gram of word ids."""
        row = self.row_of(gram)
        return int(self.tables[len(gram) - 1].count[row]) if row >= 0 else 0

    def level(self, context: tuple[int, ...]) -> Level:
        """Followers of `context` (word ids); `()` gives the unigram level without `<s>`."""
        if not context:  # one object per version (a model keeps tables derived from it while it is the same)
            if self._unigram_level is None or self._unigram_level[0] != self.version:
                t = self.tables[0]
                keep = t.grams[:, 0] != BOS_ID
                self._unigram_level = (self.version, Level(t.grams[keep, 0], t.count[keep], t.cont[keep]))
            return self._unigram_level[1]
        n = len(context) + 1
        if n > self.order:
            raise ValueError(f"context of {len(context)} words needs order {n}, tables have {self.order}")
        row = self.row_of(context)
        if row < 0:
            return Level.empty()
        keys = self._index()[n - 1]
        lo, hi = keys.searchsorted([row * self._width, (row + 1) * self._width]).tolist()
        t = self.tables[n - 1]
        if not self.hidden:  # nothing pruned
            return Level(t.grams[lo:hi, -1], t.count[lo:hi], t.cont[lo:hi])
        hidden_count, hidden_cont = self.hidden_of(n - 1, np.asarray([row]))
        return Level(t.grams[lo:hi, -1], t.count[lo:hi], t.cont[lo:hi], int(hidden_count[0]), int(hidden_cont[0]))

    def hidden_of(self, n: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The hidden mass (raw, continuation) after each of the order-n contexts at `rows` (0 where none)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.hidden or n < 1 or n > len(self.hidden) or len(self.hidden[n - 1]) == 0:
            zero = np.zeros(len(rows), np.int64)
            return zero, zero.copy()
        self._index()  # (re)builds the keys, and drops stale dense arrays
        if n not in self._hidden_dense:
            mass = self.hidden[n - 1]
            at = self.rows(mass.contexts)
            known = at >= 0
            dense_count = np.zeros(len(self.tables[n - 1]), np.int64)
            dense_cont = np.zeros(len(self.tables[n - 1]), np.int64)
            dense_count[at[known]] = mass.count[known]
            dense_cont[at[known]] = mass.cont[known]
            self._hidden_dense[n] = (dense_count, dense_cont)
        dense_count, dense_cont = self._hidden_dense[n]
        return dense_count[rows], dense_cont[rows]

    def count_of_counts(self, order: int, kind: str) -> tuple[int, ...]:
        """(n_1, ..., n_COC_MAX) over raw or adjusted counts of order `order` (the lone `<s>` excluded)."""
        if self.frozen_coc is not None:
            return self.frozen_coc[(order, kind)]
        return table_count_of_counts(self.tables[order - 1], kind)

    def touch(self) -> None:
        """Mark the tables changed (drops the lookup index)."""
        self._keys = None
        self.version += 1


def adjusted_counts(table: OrderTable) -> np.ndarray:
    """Kneser-Ney adjusted counts: the raw count for n-grams starting with `<s>`, else the continuation count."""
    return np.where(table.grams[:, 0] == BOS_ID, table.count, table.cont)


def table_count_of_counts(table: OrderTable, kind: str) -> tuple[int, ...]:
    """(n_1, ..., n_COC_MAX) of one order's rows (or any subset of them: histograms of disjoint subsets add up),
    over raw or adjusted counts; the lone `<s>` of order 1 is left out."""
    values = adjusted_counts(table) if kind == ADJUSTED else table.count
    if table.grams.shape[1] == 1:
        values = values[table.grams[:, 0] != BOS_ID]
    hist = np.bincount(np.minimum(values, COC_MAX + 1), minlength=COC_MAX + 2)
    return tuple(int(x) for x in hist[1 : COC_MAX + 1])


def count_ngrams(stream: np.ndarray, order: int, vocab: Vocab | None = None) -> CountTables:
    """Count every n-gram of order 1..`order` in a token stream (see the module docstring)."""
    if not 1 <= order <= 9:
        raise ValueError(f"order must be between 1 and 9, not {order}")
    stream = np.asarray(stream, dtype=np.int64)
    if len(stream) and stream[0] != BOS_ID:
        raise ValueError("a token stream starts with <s>")
    vocab = vocab if vocab is not None else Vocab()
    if len(stream) == 0:
        empty = [
            OrderTable(np.zeros((0, n), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
            for n in range(1, order + 1)
        ]
        return CountTables(order, empty, vocab)
    width = int(stream.max()) + 1
    sentence = np.cumsum(stream == BOS_ID)
    ids, rank, counts = np.unique(stream, return_inverse=True, return_counts=True)
    tables = [OrderTable(ids[:, None], counts.astype(np.int64), np.zeros(len(ids), np.int64))]
    for n in range(2, order + 1):
        starts = np.flatnonzero(sentence[: len(stream) - n + 1] == sentence[n - 1 :])
        keys = rank[starts] * width + stream[starts + n - 1]
        uniq, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        prev = tables[-1]
        # Each distinct n-gram adds one to the continuation count of its suffix (one order down).
        suffix_rank = rank[starts[first] + 1]
        prev.cont = np.bincount(suffix_rank, minlength=len(prev)).astype(np.int64)
        grams = np.column_stack([prev.grams[uniq // width], uniq % width])
        tables.append(OrderTable(grams, counts.astype(np.int64), np.zeros(len(uniq), np.int64)))
        rank_n = np.full(len(stream), -1, dtype=np.int64)
        rank_n[starts] = inverse
        rank = rank_n
    return CountTables(order, tables, vocab)


def prune_limits(min_counts: Sequence[int], order: int) -> list[int]:
    """The minimum raw count of each order 1..`order` (a count, not a frequency) from per-order cut-offs.

    Order 1 is always kept whole (its limit is 1 whatever `min_counts[0]` says); order n keeps n-grams counted at
    least `min_counts[n-1]` times, the last cut-off repeating for higher orders. The limits must not decrease with
    the order, so every kept n-gram keeps its prefix and its suffix (`ValueError` otherwise).
    """
    given = list(min_counts) or [1]
    limits = [1, *(given[min(n, len(given) - 1)] for n in range(1, order))]
    if any(b < a for a, b in itertools.pairwise(limits)):
        raise ValueError(f"pruning thresholds must not decrease with the order: {list(min_counts)}")
    return limits


def parse_min_counts(text: str, order: int) -> tuple[int, ...]:
    """Per-order cut-offs written as `1,1,2,2` (order 1 first; a missing order repeats the last cut-off).

    The first must be 1 (unigrams are never pruned), each a positive integer, at most `order` of them, never
    decreasing; anything else is a one-line `ValueError`.
    """
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"--prune takes per-order minimum counts such as 1,1,2,2 (positive integers), not {text!r}")
    counts = tuple(int(p) for p in parts)
    if counts[0] != 1:
        raise ValueError(f"--prune {text}: unigrams are never pruned, so the first cut-off must be 1")
    if len(counts) > order:
        raise ValueError(f"--prune {text} gives {len(counts)} cut-offs but the order is {order}")
    if any(b < a for a, b in itertools.pairwise(counts)):
        raise ValueError(f"--prune {text}: the cut-offs must not decrease with the order")
    return counts


def prune_table(table: OrderTable, limit: int) -> OrderTable:
    """The rows of one order counted at least `limit` times, with their counts and continuation counts as they are."""
    if limit <= 1:
        return OrderTable(table.grams, table.count, table.cont)
    keep = table.count >= limit
    return OrderTable(table.grams[keep], table.count[keep], table.cont[keep])


def hidden_mass(table: OrderTable, limit: int, only_kept_contexts: bool = True) -> HiddenMass:
    """What `prune_table(table, limit)` drops, summed per context (the n-gram without its last word; rows in any
    order). With `only_kept_contexts`, only for the contexts that keep at least one follower (a context whose
    followers all go backs off with weight 1 anyway); without it for every context that loses one (a partition of
    a distributed build sees only some of a context's followers)."""
    n = table.grams.shape[1]
    if limit <= 1 or len(table) == 0:
        return HiddenMass.empty(n - 1)
    by_context = np.lexsort(table.grams[:, :-1].T[::-1])
    context = table.grams[by_context, :-1]
    count, cont = table.count[by_context], table.cont[by_context]
    starts = np.flatnonzero(np.r_[True, np.any(context[1:] != context[:-1], axis=1)])
    dropped = count < limit
    lost_count = np.add.reduceat(np.where(dropped, count, 0), starts)
    lost_cont = np.add.reduceat(np.where(dropped, cont, 0), starts)
    mark = np.add.reduceat(dropped.astype(np.int64), starts) > 0
    if only_kept_contexts:
        mark &= np.add.reduceat((~dropped).astype(np.int64), starts) > 0
    return HiddenMass(context[starts[mark]], lost_count[mark], lost_cont[mark])


def prune(tables: CountTables, min_counts: Sequence[int], keep_statistics: bool = True) -> CountTables:
    """Drop n-grams of order n whose raw count is below `min_counts[n-1]` (see `prune_limits`).

    With `keep_statistics` (the default, as KenLM's `lmplz --prune` estimates) the kept n-grams keep the
    continuation counts and the count-of-counts (so the discounts) of the full data, and each context keeps the
    mass of its pruned followers (`HiddenMass`), so Kneser-Ney keeps the full data's context totals and gives the
    pruned mass to the shorter context. Without it everything is recomputed from what is kept, as if the pruned
    n-grams had never been seen.
    """
    limits = prune_limits(min_counts, tables.order)
    kept = [prune_table(t, limit) for t, limit in zip(tables.tables, limits, strict=True)]
    result = CountTables(tables.order, kept, tables.vocab)
    if keep_statistics:
        result.frozen_coc = {
            (n, kind): tables.count_of_counts(n, kind) for n in range(1, tables.order + 1) for kind in (RAW, ADJUSTED)
        }
        result.hidden = [hidden_mass(t, limit) for t, limit in zip(tables.tables[1:], limits[1:], strict=True)]
    else:
        for n in range(2, tables.order + 1):
            suffix_rows = result.rows(kept[n - 1].grams[:, 1:])
            kept[n - 2].cont = np.bincount(suffix_rows, minlength=len(kept[n - 2])).astype(np.int64)
        result.touch()
    return result


def limit_vocabulary(vocab: Vocab, counts: np.ndarray, limit: int | None) -> tuple[Vocab, np.ndarray]:
    """Keep the `limit` most frequent words of `vocab`; the others become `<unk>`.

    `counts[i]` is how often word id i occurs (tokens, not types). Ties are broken by the word (code-point order),
    so the rule does not depend on the input's order; `<unk>`, `<s>` and `</s>` are always kept and do not count
    towards the limit. The kept words keep the relative order of their ids (first occurrence, for a vocabulary
    grown while reading). Returns the new vocabulary and `mapping`, an int64 array from old ids to new ids
    (`UNK_ID` for a dropped word); with `limit` None the vocabulary is unchanged and `mapping` is the identity.
    """
    words = vocab.words
    if limit is None or len(words) - 3 <= limit:
        return vocab, np.arange(len(words), dtype=np.int64)
    if limit < 1:
        raise ValueError(f"a vocabulary limit keeps at least 1 word, not {limit}")
    regular = np.asarray(counts, dtype=np.int64)[3 : len(words)]
    threshold = np.partition(regular, len(regular) - limit)[len(regular) - limit]  # the limit-th largest count
    kept = np.zeros(len(words), dtype=bool)
    kept[:3] = True
    kept[3:] = regular > threshold
    tied = (np.flatnonzero(regular == threshold) + 3).tolist()
    kept[sorted(tied, key=words.__getitem__)[: limit - int(kept[3:].sum())]] = True
    new_vocab = Vocab(words[i] for i in np.flatnonzero(kept[3:]) + 3)
    mapping = np.full(len(words), UNK_ID, dtype=np.int64)
    mapping[kept] = np.arange(len(new_vocab))
    return new_vocab, mapping


def ngram_delta(new: CountTables, old: CountTables) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per order, the n-grams whose raw count differs and by how much: [(grams (M, n), new - old (M,)), ...]."""
    deltas = []
    for n in range(1, new.order + 1):
        a, b = new.tables[n - 1], old.tables[n - 1]
        if len(b) == 0 or len(a) == 0:  # a new source, or one forgotten: its rows are already sorted and distinct
            grams, change = (a.grams, a.count) if len(b) == 0 else (b.grams, -b.count)
            deltas.append((grams.reshape(-1, n), change))
            continue
        grams = np.concatenate([a.grams, b.grams]).reshape(-1, n)
        change = np.concatenate([a.count, -b.count])
        if len(grams) == 0:
            deltas.append((grams, change))
            continue
        uniq, summed = _sum_by_row(grams, change)
        keep = summed != 0
        deltas.append((uniq[keep], summed[keep]))
    return deltas


def _sum_by_row(grams: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct rows of `grams` (M, n) sorted lexicographically, the sum of `values` over each row's
    occurrences): `np.unique(grams, axis=0)` and a bincount, but sorted with `np.lexsort` over the columns, which
    lets go of the interpreter lock (np.unique's sort of rows as one structured value holds it: seconds for a 2 MB
    document learned again, during which a completion cannot run)."""
    order = np.lexsort(grams.T[::-1])
    rows, sorted_values = grams[order], values[order]
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    at = np.flatnonzero(starts)
    return rows[at], np.add.reduceat(sorted_values, at).astype(np.int64)
