"""The small interface through which n-gram models read counts.

The count store (`store.sqlite_counts.SqliteCounts`) implements it over SQLite; `lm_core.counting.CountTables`
implements it over numpy arrays in memory. Models never see SQL.

Two counts are kept for every n-gram `g = (w1, ..., wn)`:
- `count`: the raw count c(g), how often g occurred (sentences are padded with one `<s>` and one `</s>`);
- `cont`: the continuation count N1+(. g), the number of distinct words v with c(v g) > 0 (0 at the store's
  highest order, where there is nothing longer to look at). Kneser-Ney's lower orders use it.

A pruned model (`lm_core.counting.prune`) also keeps, for each context that still has a follower, the *hidden
mass* of the followers pruning dropped: the sum of their raw counts and of their continuation counts. Kneser-Ney
adds it to the context's total and to its backoff weight, exactly as KenLM's `lmplz --prune` does (a context keeps
the full data's denominator, and the pruned n-grams' mass goes to the shorter context).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lm_core.vocab import Vocab

COC_MAX = 10
"""Count-of-counts are kept for counts 1..COC_MAX (Kneser-Ney needs 1..4, Katz with k=5 needs 1..6)."""

RAW, ADJUSTED = "raw", "adjusted"
"""Kinds of count-of-counts: over raw counts, or over Kneser-Ney adjusted counts (the continuation count, or the
raw count for n-grams that start with `<s>`, which nothing can precede)."""


@dataclass(frozen=True, slots=True)
class Level:
    """The followers of one context: parallel arrays, `ids` ascending."""

    ids: np.ndarray  # (F,) int64 word ids of the words seen after the context
    count: np.ndarray  # (F,) int64 raw counts c(context w)
    cont: np.ndarray  # (F,) int64 continuation counts N1+(. context w)
    hidden_count: int = 0  # sum of the raw counts of the followers pruning dropped (0 when nothing was pruned)
    hidden_cont: int = 0  # sum of their continuation counts

    @staticmethod
    def empty() -> Level:
        z = np.zeros(0, dtype=np.int64)
        return Level(z, z, z)

    def __len__(self) -> int:
        return len(self.ids)

    def filtered(self, mask: np.ndarray) -> Level:
        return Level(self.ids[mask], self.count[mask], self.cont[mask], self.hidden_count, self.hidden_cont)

    def hidden(self, raw: bool) -> int:
        """The pruned followers' mass in the counts a level uses: raw counts, or continuation counts."""
        return self.hidden_count if raw else self.hidden_cont


class CountReader(Protocol):
    """What the n-gram estimators read.

    `level(())` is the unigram level: every word with a positive count except `<s>`. `level(context)` for a
    context of word ids (1 to order-1 of them) gives the words seen after it. `count_of_counts(n, kind)` gives
    (n_1, ..., n_COC_MAX): how many n-grams of order n have count exactly k, over raw or adjusted counts (n-grams
    that are the single token `<s>` excluded). `version` changes whenever any count changes, so callers can cache.
    """

    order: int
    vocab: Vocab

    @property
    def version(self) -> int: ...

    def level(self, context: tuple[int, ...]) -> Level: ...

    def count_of_counts(self, order: int, kind: str) -> tuple[int, ...]: ...
