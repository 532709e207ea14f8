"""`SqliteCounts`: the `CountReader` that n-gram models use over a `CountStore`.

It reads through connections of its own, one per thread, so a learn in progress (on the store's connection,
another thread or another process) never shows half-applied and never blocks a read (WAL gives each query the last
committed state), and one thread's bulk read never holds up another's read. Follower lists are cached in memory
(shared by the threads), least recently used first out, within a budget in bytes (`cache_bytes`; the connections'
SQLite page caches get a quarter of it), and dropped when the counts change: after another process's writes all of
them (noticed within `OTHER_WRITERS_CHECK_S`), after this process's writes only the follower lists they changed
(the store records them per commit, with their rows: long lists in use are patched in place, `patched`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

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


PATCH_MIN_FOLLOWERS = 200
"""A cached follower list a commit changed is patched with the commit's rows when it has at least this many
followers, else dropped (a short one is read again at once when it is asked for; a long one, "of the", costs
milliseconds to read and parse, and patching it a fraction of one; patching every short list a learn touches costs
more than reading the few asked for again)."""


class SqliteCounts:
    """Reads counts from a `CountStore`; implements `lm_core.counts.CountReader`."""

    def __init__(
        self, store: CountStore, cache_size: int = CACHED_LEVELS, cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self.store = store
        self.order = store.order
        self.cache_size = cache_size  # follower lists kept, at most ...
        self.cache_bytes = cache_bytes  # ... and their bytes (arrays and objects), at most
        self.lock = threading.RLock()  # guards the cache (and the list of connections), not the reads themselves
        self._connections: dict[int, sqlite3.Connection] = {}  # one per thread: see `db`
        self._pages_set: dict[int, int] = {}  # the cache_size each connection was given
        self._cache_pages = 0
        self._levels: OrderedDict[tuple[int, ...], Level] = OrderedDict()
        # cached lists a commit changed, with the rows to put in when one is next asked for (word id -> (c, cc));
        # the unigram level's changed word ids: patching every changed list at once cost the first completion
        # after a learn ~17 ms, most of it lists it never read
        self._pending: dict[tuple[int, ...], dict[int, tuple[int, int]]] = {}
        self._pending_unigrams: set[int] = set()
        self._bytes = 0  # of the cached follower lists
        self.set_cache_bytes(cache_bytes)
        self._coc: dict[tuple[int, str], tuple[int, ...]] = {}
        self._hidden = schema.has_hidden_mass(self.db)
        self._queries = [self._level_query(n, self._hidden) for n in range(1, self.order + 1)]
        self._version = 0
        self._seen_commits = store.commits
        self._seen_external = store.external_changes()

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection to the store (made on first use). Each thread reads through its own, so a bulk
        read on the background thread (a check's prefetch) never holds up a completion's read on
        the interactive thread: SQLite's write-ahead log lets readers run side by side."""
        ident = threading.get_ident()
        db = self._connections.get(ident)
        if db is None:
            db = schema.connect(self.store.path, create=False)
            with self.lock:
                self._connections[ident] = db
        if self._pages_set.get(ident) != self._cache_pages:
            db.execute(f"PRAGMA cache_size = -{self._cache_pages}")
            self._pages_set[ident] = self._cache_pages
        return db

    def close(self) -> None:
        with self.lock:
            connections, self._connections = list(self._connections.values()), {}
            self._pages_set = {}
        for db in connections:
            db.close()

    def set_cache_bytes(self, cache_bytes: int) -> None:
        """Keep at most `cache_bytes` of follower lists (evicting the least recently used now), and let this
        reader's SQLite connections cache at most a quarter of that in pages (an eighth each: a server reads on two
        threads, see `db`)."""
        with self.lock:
            self.cache_bytes = cache_bytes
            self._cache_pages = max(256, cache_bytes // 8 // 1024)  # KiB; each connection applies it (see `db`)
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
        self._pending.pop(context, None)
        self._levels[context] = level
        self._bytes += level_bytes(context, level)

    def _forget(self, context: tuple[int, ...]) -> None:
        self._pending.pop(context, None)
        old = self._levels.pop(context, None)
        if old is not None:
            self._bytes -= level_bytes(context, old)

    def _evict(self) -> None:
        """Least recently used out until both bounds hold (the caller holds the lock)."""
        while self._levels and (len(self._levels) > self.cache_size or self._bytes > self.cache_bytes):
            context, level = self._levels.popitem(last=False)
            self._bytes -= level_bytes(context, level)
            self._pending.pop(context, None)

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
        self._pending.clear()
        self._pending_unigrams.clear()
        self._bytes = 0
        self._coc.clear()

    def _drop_changed(self, changes: list[Changes]) -> None:
        """Drop the short follower lists these commits changed; the long ones (and the unigram level) are patched
        when next asked for (`_cached`), with the commits' own rows: no read."""
        unigrams: set[int] = set()
        for change in changes:
            for context in change.contexts:
                cached = self._levels.get(context)
                rows = change.rows.get(context)
                if cached is not None and rows is not None and len(cached) >= PATCH_MIN_FOLLOWERS:
                    self._pending.setdefault(context, {}).update(rows)  # a later commit's rows replace an earlier's
                    continue
                self._forget(context)  # a short one is read again when asked for (a fraction of a millisecond)
            unigrams |= change.unigrams
        self._coc.clear()
        if () in self._levels:
            self._pending_unigrams |= unigrams

    def _cached(self, context: tuple[int, ...]) -> Level | None:
        """The cached follower list of `context` (the caller holds the lock), patched first if commits changed it
        since it was cached; None when it is not cached."""
        level = self._levels.get(context)
        if level is None:
            return None
        rows = self._pending.pop(context, None)
        if rows is not None:
            level = patched(level, rows)
            self._remember(context, level)
        if not context and self._pending_unigrams:
            changed, self._pending_unigrams = sorted(self._pending_unigrams), set()
            level = self._patched_unigrams(level, changed)
            self._remember(context, level)
        self._levels.move_to_end(context)
        return level

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
        """The followers of a context (order n) packed as one row of three comma-separated texts (word ids, c, cc;
        see `_unpacked`); with `hidden`, the context's hidden mass as one more follower, word id -1."""
        if n == 1:
            rows = f"SELECT w1 AS w, c, cc FROM ng1 WHERE w1 <> {BOS_ID}"
        else:
            cols = schema.columns(n)
            where = " AND ".join(f"{c} = :{c}" for c in cols[:-1])
            rows = f"SELECT {cols[-1]} AS w, c, cc FROM ng{n} WHERE {where}"
            if hidden:
                rows += f" UNION ALL SELECT {HIDDEN_ID}, c, cc FROM hidden{n - 1} WHERE {where}"
        return f"SELECT group_concat(w), group_concat(c), group_concat(cc) FROM ({rows})"

    def level(self, context: tuple[int, ...]) -> Level:
        """Followers of `context` (word ids), ascending by id; `()` is the unigram level without `<s>`."""
        self._refresh()
        with self.lock:
            cached = self._cached(context)
            if cached is not None:
                return cached
        if len(context) >= self.order:
            raise ValueError(f"context of {len(context)} words needs order {len(context) + 1}, store has {self.order}")
        params = {f"w{i}": w for i, w in enumerate(context, start=1)}
        packed = self.db.execute(self._queries[len(context)], params).fetchone()
        level = _level_of(_unpacked(packed))
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
        row = self.db.execute(
            "SELECT surface FROM casing WHERE id = ? ORDER BY n DESC, surface LIMIT 1", (wid,)
        ).fetchone()
        return row[0] if row else word

    def prefetch(self, contexts: set[tuple[int, ...]], pause: Callable[[], None] | None = None) -> None:
        """Fetch the follower lists of many contexts at once (one query per order instead of one per context):
        scoring a whole document needs thousands of them. `pause`, when given, is called before each order's
        query (the server lets a waiting completion go first)."""
        self._refresh()
        self._fetched(contexts, pause)

    def levels(self, contexts: Sequence[tuple[int, ...]]) -> list[Level]:
        """`level` of each context, the counts' version checked once and the lists not cached fetched in one query
        per order (they are returned even if the cache's budget cannot keep them all)."""
        self._refresh()
        fetched = self._fetched(contexts)
        out = []
        for context in contexts:
            level = fetched.get(context)
            if level is None:
                with self.lock:
                    level = self._cached(context)
            out.append(level if level is not None else self.level(context))
        return out

    def _fetched(
        self, contexts: Iterable[tuple[int, ...]], pause: Callable[[], None] | None = None
    ) -> dict[tuple[int, ...], Level]:
        """Fetch and cache the follower lists of the contexts (of 1 to order - 1 words) not cached now; returns
        what it fetched. `pause` is called before each order's query."""
        with self.lock:
            wanted = {c for c in contexts if c and len(c) < self.order and c not in self._levels}
        by_order: dict[int, list[tuple[int, ...]]] = {}
        for context in wanted:
            by_order.setdefault(len(context) + 1, []).append(context)
        fetched: dict[tuple[int, ...], Level] = {}
        for n, group in by_order.items():
            if pause is not None:
                pause()
            fetched.update(self._fetch_many(n, group))
        with self.lock:
            for context, level in fetched.items():
                self._remember(context, level)
            self._evict()
        return fetched

    def _fetch_many(self, n: int, contexts: list[tuple[int, ...]]) -> dict[tuple[int, ...], Level]:
        """The follower lists of many contexts of n - 1 words: one query, each context's followers packed into one
        row as text, grouped in the order of the contexts' temporary table (so SQLite neither sorts nor hands
        Python a tuple per follower), and every context's text parsed by numpy at once (`_split_levels`)."""
        cols = schema.columns(n)
        key = ", ".join(cols[:-1])
        heads = ", ".join(f"p.{c}" for c in cols[:-1])
        join = " AND ".join(f"g.{c} = p.{c}" for c in cols[:-1])
        packed = f"count(*), group_concat(g.{cols[-1]}), group_concat(g.c), group_concat(g.cc)"
        db = self.db  # this thread's: its temporary table is its own
        db.execute(f"CREATE TEMP TABLE IF NOT EXISTS pf{n} ({key}, PRIMARY KEY ({key})) WITHOUT ROWID")
        db.execute(f"DELETE FROM temp.pf{n}")
        db.executemany(f"INSERT OR IGNORE INTO temp.pf{n} VALUES ({', '.join('?' * (n - 1))})", contexts)
        rows = db.execute(
            f"SELECT {heads}, {packed} FROM temp.pf{n} AS p JOIN ng{n} AS g ON {join} GROUP BY {heads}"
        ).fetchall()
        hidden = {}
        if self._hidden:
            hjoin = " AND ".join(f"h.{c} = p.{c}" for c in cols[:-1])
            for *head, c, cc in db.execute(
                f"SELECT {heads}, h.c, h.cc FROM temp.pf{n} AS p JOIN hidden{n - 1} AS h ON {hjoin}"
            ):
                hidden[tuple(head)] = (c, cc)
        levels = dict.fromkeys(contexts, _EMPTY)
        heads_of = [tuple(row[: n - 1]) for row in rows]
        for context, level in zip(heads_of, _split_levels([row[n - 1 :] for row in rows]), strict=True):
            mass = hidden.pop(context, None)
            levels[context] = level if mass is None else Level(level.ids, level.count, level.cont, *mass)
        for context, mass in hidden.items():  # a hidden mass without a kept follower (never written; harmless)
            levels[context] = _level_of(_unpacked(None), mass)
        return levels


HIDDEN_ID = -1
"""The word id under which the level queries return a context's hidden mass (no word has a negative id)."""
_EMPTY = Level.empty()  # the followers of every unseen context (its arrays are never written)


def patched(level: Level, rows: dict[int, tuple[int, int]]) -> Level:
    """`level` with its changed followers (word id -> (c, cc); c = 0: gone) put in, ids kept ascending and the
    hidden mass kept: the follower list a fresh read would give after the commit that changed them."""
    changed = np.fromiter(rows, dtype=np.int64, count=len(rows))
    values = np.asarray(list(rows.values()), dtype=np.int64).reshape(-1, 2)
    keep = ~np.isin(level.ids, changed)
    ids, count, cont = level.ids[keep], level.count[keep], level.cont[keep]
    live = values[:, 0] > 0
    order = np.argsort(changed[live])
    new_ids, new_values = changed[live][order], values[live][order]
    at = np.searchsorted(ids, new_ids)
    return Level(
        np.insert(ids, at, new_ids),
        np.insert(count, at, new_values[:, 0]),
        np.insert(cont, at, new_values[:, 1]),
        level.hidden_count,
        level.hidden_cont,
    )


def _split_levels(packed: list[tuple[int, str, str, str]]) -> list[Level]:
    """Levels from packed rows (followers, their word ids, c and cc as comma-separated texts): the texts of all
    rows joined and parsed once, then cut into each row's followers (copies, so that a cached level never keeps
    another's memory alive); a row whose ids are not ascending is sorted."""
    if not packed:
        return []
    lengths = np.asarray([row[0] for row in packed], dtype=np.int64)
    columns = [np.fromstring(",".join(row[k] for row in packed), dtype=np.int64, sep=",") for k in (1, 2, 3)]
    if any(len(column) != int(lengths.sum()) for column in columns):
        raise ValueError("a packed follower list does not match its length")
    ids, count, cont = columns
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    ascending = np.ones(len(ids), dtype=bool)
    ascending[1:] = ids[1:] > ids[:-1]
    ascending[starts] = True  # each list's first id
    unsorted = set(np.searchsorted(ends, np.flatnonzero(~ascending), side="right").tolist())
    out = []
    for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if k in unsorted:
            rows = np.stack([ids[start:end], count[start:end], cont[start:end]], axis=1)
            out.append(_level_of(rows))
        else:
            out.append(Level(ids[start:end].copy(), count[start:end].copy(), cont[start:end].copy()))
    return out


def _unpacked(packed: tuple[str | None, str | None, str | None] | None) -> np.ndarray:
    """(word id, c, cc) rows (F, 3) int64 from the three comma-separated texts a packed level query returns (None
    for no followers): numpy parses them, far faster than one Python tuple per follower."""
    if packed is None or packed[0] is None:
        return np.zeros((0, 3), dtype=np.int64)
    columns = [np.fromstring(text, dtype=np.int64, sep=",") for text in packed]
    return np.stack(columns, axis=1)


def _level_of(rows: np.ndarray, hidden: tuple[int, int] = (0, 0)) -> Level:
    """A Level from (word id, c, cc) rows in any order, the hidden mass's row (id -1) among them or given as
    `hidden` (its raw and continuation counts)."""
    if len(rows) == 0:
        return Level(_EMPTY.ids, _EMPTY.ids, _EMPTY.ids, *hidden) if any(hidden) else _EMPTY
    is_hidden = rows[:, 0] == HIDDEN_ID
    followers = rows[~is_hidden]
    if len(followers) > 1 and not bool((followers[1:, 0] > followers[:-1, 0]).all()):
        followers = followers[np.argsort(followers[:, 0], kind="stable")]
    mass = rows[is_hidden]
    hidden_count, hidden_cont = (int(mass[0, 1]), int(mass[0, 2])) if len(mass) else hidden
    return Level(followers[:, 0].copy(), followers[:, 1].copy(), followers[:, 2].copy(), hidden_count, hidden_cont)
