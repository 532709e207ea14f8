"""`SqliteCounts`: the `CountReader` that n-gram models use over a `CountStore`.

Follower lists are cached in memory (least recently used first out) and the whole cache is dropped when the
store's version changes, that is after any learn or forget by this process or another one.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from lm_core.counts import Level
from lm_core.vocab import BOS_ID, Vocab
from store import schema
from store.countstore import CountStore


class SqliteCounts:
    """Reads counts from a `CountStore`; implements `lm_core.counts.CountReader`."""

    def __init__(self, store: CountStore, cache_size: int = 50_000) -> None:
        self.store = store
        self.order = store.order
        self.cache_size = cache_size
        self._levels: OrderedDict[tuple[int, ...], Level] = OrderedDict()
        self._coc: dict[tuple[int, str], tuple[int, ...]] = {}
        self._cache_version: int | None = None
        self._queries = [self._level_query(n) for n in range(1, self.order + 1)]

    @property
    def vocab(self) -> Vocab:
        return self.store.vocab

    @property
    def version(self) -> int:
        return self.store.version

    def _fresh(self) -> None:
        version = self.store.version
        if version != self._cache_version:
            self._levels.clear()
            self._coc.clear()
            self._cache_version = version

    @staticmethod
    def _level_query(n: int) -> str:
        if n == 1:
            return f"SELECT w1, c, cc FROM ng1 WHERE w1 <> {BOS_ID}"
        cols = schema.columns(n)
        where = " AND ".join(f"{c} = ?" for c in cols[:-1])
        return f"SELECT {cols[-1]}, c, cc FROM ng{n} WHERE {where}"

    def level(self, context: tuple[int, ...]) -> Level:
        """Followers of `context` (word ids), ascending by id; `()` is the unigram level without `<s>`."""
        self._fresh()
        cached = self._levels.get(context)
        if cached is not None:
            self._levels.move_to_end(context)
            return cached
        if len(context) >= self.order:
            raise ValueError(
                f"context of {len(context)} words needs order {len(context) + 1}, store has {self.order}"
            )
        with self.store.lock:
            rows = self.store.db.execute(self._queries[len(context)], context).fetchall()
        if rows:
            data = np.asarray(rows, dtype=np.int64)
            level = Level(data[:, 0].copy(), data[:, 1].copy(), data[:, 2].copy())
        else:
            level = Level.empty()
        self._levels[context] = level
        if len(self._levels) > self.cache_size:
            self._levels.popitem(last=False)
        return level

    def count_of_counts(self, order: int, kind: str) -> tuple[int, ...]:
        self._fresh()
        key = (order, kind)
        if key not in self._coc:
            self._coc[key] = self.store.stored_count_of_counts(order, kind)
        return self._coc[key]
