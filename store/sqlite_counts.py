"""`SqliteCounts`: the `CountReader` that n-gram models use over a `CountStore`.

It reads through a connection of its own, so a learn in progress (on the store's connection, another thread or
another process) never shows half-applied and never blocks a read: WAL gives each query the last committed state.
Follower lists are cached in memory, least recently used first out, within a budget in bytes (`cache_bytes`; the
connection's SQLite page cache gets a quarter of it), and dropped when the counts change: after another process's
writes all of them (noticed within `OTHER_WRITERS_CHECK_S`), after this process's writes only the follower lists
they changed (the store records them per commit).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from lm_core.counts import Level
from lm_core.vocab import BOS_ID, Vocab
from store import schema
from store.countstore import Changes, CountStore

DEFAULT_CACHE_BYTES = 32 * 2**20
CACHED_LEVELS = 50_000
"""Follower lists kept at most (besides the byte budget): bounds the per-entry overhead when many lists are tiny,
as most higher-order contexts' are."""
LEVEL_OVERHEAD_BYTES = 400  # a Level's Python objects (the dataclass, three array headers, the key tuple, the entry)


def level_bytes(context: tuple[int, ...], level: Level) -> int:
    """What one cached follower list costs in memory, in bytes (approximately: its arrays exactly)."""
    return level.ids.nbytes + level.count.nbytes + level.cont.nbytes + LEVEL_OVERHEAD_BYTES + 8 * len(context)


class SqliteCounts:
    """Reads counts from a `CountStore`; implements `lm_core.counts.CountReader`."""

    def __init__(
        self, store: CountStore, cache_size: int = CACHED_LEVELS, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self.store = store
        self.order = store.order
        self.cache_size = cache_size  # follower lists kept, at most ...
        self.cache_bytes = cache_bytes  # ... and their bytes (arrays and objects), at most
        self.db = schema.connect(store.path, create=False)
        self.lock = threading.RLock()
        self._levels: OrderedDict[tuple[int, ...], Level] = OrderedDict()
        self._bytes = 0  # of the cached follower lists
        self.set_cache_bytes(cache_bytes)
        self._coc: dict[tuple[int, str], tuple[int, ...]] = {}
        self._hidden = schema.has_hidden_mass(self.db)
        self._queries = [self._level_query(n, self._hidden) for n in range(1, self.order + 1)]
        self._version = 0
        self._seen_commits = store.commits
        self._seen_external = store.external_changes()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def set_cache_bytes(self, cache_bytes: int) -> None:
        """Keep at most `cache_bytes` of follower lists (evicting the least recently used now), and let this
        reader's SQLite connection cache at most a quarter of that in pages."""
        with self.lock:
            self.cache_bytes = cache_bytes
            self.db.execute(f"PRAGMA cache_size = -{max(256, cache_bytes // 4 // 1024)}")
            self._evict()

    @property
    def cached_bytes(self) -> int:
        """Bytes of the follower lists cached now."""
        return self._bytes

    def _remember(self, context: tuple[int, ...], level: Level) -> None:
        """Cache a follower list (the caller holds the lock)."""
        old = self._levels.pop(context, None)
        if old is not None:
            self._bytes -= level_bytes(context, old)
        self._levels[context] = level
        self._bytes += level_bytes(context, level)

    def _forget(self, context: tuple[int, ...]) -> None:
        old = self._levels.pop(context, None)
        if old is not None:
            self._bytes -= level_bytes(context, old)

    def _evict(self) -> None:
        """Least recently used out until both bounds hold (the caller holds the lock)."""
        while self._levels and (len(self._levels) > self.cache_size or self._bytes > self.cache_bytes):
            context, level = self._levels.popitem(last=False)
            self._bytes -= level_bytes(context, level)

    @property
    def vocab(self) -> Vocab:
        return self.store.vocab

    @property
    def version(self) -> int:
        """Changes (and caches go) whenever the counts change; see the module docstring."""
        return self._refresh()

    def _refresh(self) -> int:
        """Drop what the counts' changes since the last look made stale (all of it after another process's
        writes, only the changed follower lists after this process's); returns the version."""
        with self.lock:
            external, commits = self.store.external_changes(), self.store.commits
            if external != self._seen_external:
                self._drop_all()
            elif commits != self._seen_commits:
                changes = self.store.changes_since(self._seen_commits)
                if changes is None:
                    self._drop_all()
                else:
                    self._drop_changed(changes)
            else:
                return self._version
            self._seen_external, self._seen_commits = external, commits
            self._version += 1
            return self._version

    def _drop_all(self) -> None:
        self._levels.clear()
        self._bytes = 0
        self._coc.clear()

    def _drop_changed(self, changes: list[Changes]) -> None:
        """Drop only the follower lists these commits changed; patch the (large) unigram level in place."""
        unigrams: set[int] = set()
        for change in changes:
            for context in change.contexts:
                self._forget(context)
            unigrams |= change.unigrams
        self._coc.clear()
        cached = self._levels.get(())
        if cached is not None and unigrams:
            self._remember((), self._patched_unigrams(cached, sorted(unigrams)))

    def _patched_unigrams(self, level: Level, changed: list[int]) -> Level:
        rows: list[tuple[int, int, int]] = []
        for start in range(0, len(changed), 500):
            chunk = changed[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT w1, c, cc FROM ng1 WHERE w1 IN ({marks}) AND w1 <> {BOS_ID}"
            rows += self.db.execute(query, chunk).fetchall()
        keep = ~np.isin(level.ids, np.asarray(changed, dtype=np.int64))
        fresh = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        ids = np.concatenate([level.ids[keep], fresh[:, 0]])
        order = np.argsort(ids, kind="stable")
        count = np.concatenate([level.count[keep], fresh[:, 1]])
        cont = np.concatenate([level.cont[keep], fresh[:, 2]])
        return Level(ids[order], count[order], cont[order])

    @staticmethod
    def _level_query(n: int, hidden: bool) -> str:
        """The followers of a context (order n); with `hidden`, then the context's hidden mass as word id -1."""
        if n == 1:
            return f"SELECT w1, c, cc FROM ng1 WHERE w1 <> {BOS_ID}"
        cols = schema.columns(n)
        where = " AND ".join(f"{c} = :{c}" for c in cols[:-1])
        query = f"SELECT {cols[-1]}, c, cc FROM ng{n} WHERE {where}"
        return query + (f" UNION ALL SELECT {HIDDEN_ID}, c, cc FROM hidden{n - 1} WHERE {where}" if hidden else "")

    def level(self, context: tuple[int, ...]) -> Level:
        """Followers of `context` (word ids), ascending by id; `()` is the unigram level without `<s>`."""
        self._refresh()
        with self.lock:
            cached = self._levels.get(context)
            if cached is not None:
                self._levels.move_to_end(context)
                return cached
        if len(context) >= self.order:
            raise ValueError(f"context of {len(context)} words needs order {len(context) + 1}, store has {self.order}")
        params = {f"w{i}": w for i, w in enumerate(context, start=1)}
        with self.lock:
            rows = self.db.execute(self._queries[len(context)], params).fetchall()
        level = _level_of(np.asarray(rows, dtype=np.int64).reshape(-1, 3))
        with self.lock:
            self._remember(context, level)
            self._evict()
        return level

    def count_of_counts(self, order: int, kind: str) -> tuple[int, ...]:
        self._refresh()
        key = (order, kind)
        with self.lock:
            if key not in self._coc:
                rows = self.db.execute("SELECT v FROM coc WHERE n = ? AND kind = ? ORDER BY k", key)
                self._coc[key] = tuple(r[0] for r in rows)
            return self._coc[key]

    def surface_of(self, word: str) -> str:
        """The most frequent surface form of a normalised word (the word itself if none is recorded)."""
        wid = self.vocab.get(word)
        if wid is None:
            return word
        with self.lock:
            row = self.db.execute(
                "SELECT surface FROM casing WHERE id = ? ORDER BY n DESC, surface LIMIT 1", (wid,)
            ).fetchone()
        return row[0] if row else word

    def prefetch(self, contexts: set[tuple[int, ...]]) -> None:
        """Fetch the follower lists of many contexts at once (one query per order instead of one per context):
        scoring a whole document needs thousands of them."""
        self._refresh()
        with self.lock:
            wanted = [c for c in contexts if c and len(c) < self.order and c not in self._levels]
        by_order: dict[int, list[tuple[int, ...]]] = {}
        for context in wanted:
            by_order.setdefault(len(context) + 1, []).append(context)
        for n, group in by_order.items():
            for context, level in self._fetch_many(n, group).items():
                with self.lock:
                    self._remember(context, level)
        with self.lock:
            self._evict()

    def _fetch_many(self, n: int, contexts: list[tuple[int, ...]]) -> dict[tuple[int, ...], Level]:
        cols = schema.columns(n)
        key = ", ".join(cols[:-1])
        join = " AND ".join(f"g.{c} = p.{c}" for c in cols[:-1])
        with self.lock:
            self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS pf{n} ({key}, PRIMARY KEY ({key})) WITHOUT ROWID")
            self.db.execute(f"DELETE FROM temp.pf{n}")
            self.db.executemany(f"INSERT OR IGNORE INTO temp.pf{n} VALUES ({', '.join('?' * (n - 1))})", contexts)
            rows = self.db.execute(
                f"SELECT {', '.join('g.' + c for c in cols)}, g.c, g.cc FROM temp.pf{n} AS p "
                f"JOIN ng{n} AS g ON {join} ORDER BY {', '.join('g.' + c for c in cols)}"
            ).fetchall()
            if self._hidden:
                hjoin = " AND ".join(f"h.{c} = p.{c}" for c in cols[:-1])
                rows += self.db.execute(
                    f"SELECT {', '.join('h.' + c for c in cols[:-1])}, {HIDDEN_ID}, h.c, h.cc FROM temp.pf{n} AS p "
                    f"JOIN hidden{n - 1} AS h ON {hjoin}"
                ).fetchall()
        levels = {context: Level.empty() for context in contexts}
        if not rows:
            return levels
        data = np.asarray(rows, dtype=np.int64)
        data = data[np.lexsort(data[:, :n].T[::-1])]  # by context, then word id (the hidden row, id -1, first)
        heads = data[:, : n - 1]
        starts = np.flatnonzero(np.r_[True, np.any(heads[1:] != heads[:-1], axis=1)])
        ends = np.r_[starts[1:], len(data)]
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            block = data[start:end]
            levels[tuple(block[0, : n - 1].tolist())] = _level_of(block[:, n - 1 :])
        return levels


HIDDEN_ID = -1
"""The word id under which the level queries return a context's hidden mass (no word has a negative id)."""


def _level_of(rows: np.ndarray) -> Level:
    """A Level from (word id, c, cc) rows in ascending word order, the hidden mass's row (id -1) anywhere."""
    if len(rows) == 0:
        return Level.empty()
    hidden = rows[:, 0] == HIDDEN_ID
    followers = rows[~hidden]
    order = np.argsort(followers[:, 0], kind="stable")
    followers = followers[order]
    mass = rows[hidden]
    hidden_count, hidden_cont = (int(mass[0, 1]), int(mass[0, 2])) if len(mass) else (0, 0)
    return Level(followers[:, 0].copy(), followers[:, 1].copy(), followers[:, 2].copy(), hidden_count, hidden_cont)
