"""The SQLite count store: build, learn, forget, read back.

The invariant (checked by the tests): after any sequence of builds, learns and forgets, the tables equal a fresh
build over the current text of every source. Learning a source again applies the difference between its new and
old n-gram multisets; forgetting applies minus its contribution. Each learn or forget is one transaction, so a
crash or a concurrent writer never leaves half of one applied.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lm_core.counting import (
    DEFAULT_ORDER,
    CountTables,
    HiddenMass,
    OrderTable,
    count_ngrams,
    encode_sentences,
    ngram_delta,
)
from lm_core.counts import ADJUSTED, COC_MAX, RAW
from lm_core.files import make_private_folder
from lm_core.ngram import NgramConfig, NgramModel
from lm_core.vocab import BOS_ID, EOS_ID, Vocab
from store import schema, sources, streaming
from store.base import StoreFile, check_tokenizer, is_new_store_file
from store.errors import InputError, StoreError, StoreMismatchError, UnknownSourceError

if TYPE_CHECKING:
    from store.sqlite_counts import SqliteCounts

FORGOTTEN = "\x00forgotten\x00{}"
"""What a forgotten word's vocabulary row becomes (no tokenizer produces a NUL, so no text can match it)."""
OTHER_WRITERS_CHECK_S = 0.02
"""How often readers look for other processes' commits (PRAGMA data_version)."""
MAX_ORDER = 9
CHUNK_TOKENS = 4_000_000
"""Bulk builds, and learns of a new source, count this many tokens at a time, so memory stays bounded however large
the corpus or the file."""


CHANGE_LOG_SIZE = 8
"""Commits whose changes are remembered, so that readers drop only the follower lists they changed (this process's
readers take each commit in right after it; one that fell further behind drops everything it cached) ..."""
CHANGE_LOG_ROWS = 40_000
"""... and changed rows remembered in all, at most (the newest commit's whatever its size): each is ~0.3 KB of
Python objects; 64 commits of documents learned together held ~50 MB in a soak."""
MIN_PAGE_CACHE_KIB = 256
"""SQLite's page cache is never made smaller than this (KiB), whatever the budget."""


@dataclass
class Changes:
    """What one commit changed: follower lists of these contexts (word-id tuples), and these unigrams; `rows`: for
    each of those contexts, its changed followers as (word id, c, cc) after the commit (c = 0: the follower is
    gone), so a reader can patch a cached follower list instead of reading it again."""

    contexts: set[tuple[int, ...]]
    unigrams: set[int]
    rows: dict[tuple[int, ...], dict[int, tuple[int, int]]] = field(default_factory=dict)
    size: int = 0  # rows recorded (what the change log's bound counts)


@dataclass(frozen=True)
class SourceInfo:
    name: str
    kind: str  # "file", "document" or "base"
    tokens: int
    sha256: str | None
    learned_at: str


@dataclass(frozen=True)
class LearnResult:
    source: str
    tokens: int  # tokens now counted for the source (sentence ends included)
    changed_ngrams: int  # n-gram rows whose raw count changed
    replaced: bool  # the source had been learned before
    secrets: tuple[str, ...] = ()  # kinds of secrets found; their sentences were not learned


def check_order(order: int) -> int:
    if not isinstance(order, int) or not 1 <= order <= MAX_ORDER:
        raise StoreError(f"order must be between 1 and {MAX_ORDER}, not {order}")
    return order


class CountStore(StoreFile):
    """One store file of counts (a `ModelStore` that learns). Use `CountStore.open(path)`; close it (or use it as a
    context manager) when done."""

    learnable = True

    def __init__(self, db: sqlite3.Connection, path: Path, meta: dict[str, str]) -> None:
        super().__init__(db, path, meta)
        self.vocab = Vocab()
        self._vocab_epoch: str | None = None
        self._commits = 0
        self._external = 0
        self._change_log: dict[int, Changes] = {}
        self._pending: Changes | None = None
        self._seen_data_version: int | None = None
        self._checked_at = -math.inf
        self._reader: SqliteCounts | None = None  # the models' reader (see `reader`), made on first use
        self._pause: Callable[[], None] = _no_pause  # called between the steps of a count update (see `learn`)
        self.chunk_tokens = CHUNK_TOKENS  # a new source longer than this is counted in chunks (`_add_in_chunks`)
        self._sync_vocab()

    # --- opening -------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        order: int | None = None,
        tokenizer: str | None = None,
        create: bool = False,
    ) -> CountStore:
        """Open the store at `path`; with `create`, make an empty one (order 5, prose) if there is none.

        `order` and `tokenizer`, when given, must match an existing store (else `StoreMismatchError`).
        """
        path = Path(path).expanduser()
        if order is not None:
            check_order(order)
        check_tokenizer(tokenizer)
        is_new = is_new_store_file(path)
        if is_new and not create:
            raise StoreError(f"no store at {path}; create one with 'nextword build FILES' or 'nextword learn FILE'")
        if not is_new:
            schema.peek_kind(path)  # read-only: a foreign or damaged file is refused before anything writes to it
        db = schema.connect(path, create=create)
        try:
            if is_new:
                db.execute("BEGIN IMMEDIATE")
                schema.create_schema(db, order or DEFAULT_ORDER, tokenizer or "prose")
                db.execute("COMMIT")
            meta = schema.read_meta(db, path)
            store = cls(db, path, meta)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise schema.classify(path, exc) from exc
        except BaseException:
            db.close()
            raise
        if order is not None and order != store.order:
            store.close()
            raise StoreMismatchError(f"{path} holds order-{store.order} counts, not order {order}")
        if tokenizer is not None and tokenizer != store.tokenizer:
            store.close()
            raise StoreMismatchError(f"{path} was built with the {store.tokenizer} tokenizer, not {tokenizer}")
        return store

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        super().close()

    # --- the model over it ---------------------------------------------------------------------------------
    def reader(self) -> SqliteCounts:
        """The `CountReader` that this store's models share (its own connection and caches; see `SqliteCounts`)."""
        if self._reader is None:
            from store.sqlite_counts import SqliteCounts

            self._reader = SqliteCounts(self)
        return self._reader

    def model(self, config: NgramConfig | None = None) -> NgramModel:
        """The n-gram model over these counts, estimated as `config` says (default: interpolated modified
        Kneser-Ney of the store's order)."""
        return NgramModel(self.reader(), config or NgramConfig())

    def surface_of(self, word: str) -> str:
        """The most frequent surface form of a normalised word (the word itself if none is recorded)."""
        return self.reader().surface_of(word)

    def set_cache_bytes(self, total_bytes: int) -> None:
        """Half of `total_bytes` for the reader's follower lists (a quarter of that for its SQLite page cache), an
        eighth for this connection's SQLite page cache."""
        self.reader().set_cache_bytes(total_bytes // 2)
        with self.lock:
            self.db.execute(f"PRAGMA cache_size = -{max(MIN_PAGE_CACHE_KIB, total_bytes // 8 // 1024)}")

    # --- change tracking -----------------------------------------------------------------------------------
    def version(self) -> int:
        """Changes whenever counts change: at once for this connection's writes, and within
        `OTHER_WRITERS_CHECK_S` for another process's (checking costs a query, so it is not done on every call)."""
        return self._commits + self.external_changes()

    def external_changes(self) -> int:
        """How many times other connections' commits were noticed, looking (one query) at most every
        OTHER_WRITERS_CHECK_S; the words they added are loaded when their commit is noticed."""
        now = time.monotonic()
        # Never wait for this process's writer (it holds the lock for a whole learn): a reader on another thread
        # reads the last committed state through its own connection, and looks again on its next call.
        if now - self._checked_at >= OTHER_WRITERS_CHECK_S and self.lock.acquire(blocking=False):
            try:
                self._checked_at = now
                data_version = self.db.execute("PRAGMA data_version").fetchone()[0]
                if data_version != self._seen_data_version:
                    if self._seen_data_version is not None:
                        self._external += 1
                        if not self.db.in_transaction:
                            self._sync_vocab()
                    self._seen_data_version = data_version
            finally:
                self.lock.release()
        return self._external

    @property
    def commits(self) -> int:
        """How many write transactions this object has run (readers compare it to notice this process's writes)."""
        return self._commits

    def _trim_change_log(self) -> None:
        """Forget the oldest commits' changes until CHANGE_LOG_SIZE commits and CHANGE_LOG_ROWS rows are left (the
        newest commit's are kept whatever their size)."""
        log = self._change_log
        total = sum(change.size for change in log.values())
        for commit in sorted(log)[:-1]:
            if len(log) <= CHANGE_LOG_SIZE and total <= CHANGE_LOG_ROWS:
                break
            total -= log.pop(commit).size

    def changes_since(self, commit: int) -> list[Changes] | None:
        """What this object's commits after `commit` changed, oldest first; None if any is not known."""
        found = [self._change_log.get(c) for c in range(commit + 1, self._commits + 1)]
        return None if any(f is None for f in found) else found  # type: ignore[return-value]

    def _sync_vocab(self) -> None:
        epoch = self.db.execute("SELECT value FROM meta WHERE key = 'vocab_epoch'").fetchone()
        epoch = epoch[0] if epoch else "0"
        if epoch != self._vocab_epoch:  # words were forgotten (here or in another process): read them all again
            self.vocab = Vocab()
            self._vocab_epoch = epoch
        start = len(self.vocab)
        # read in bulk (ids are the primary key: contiguous when the last is start + count - 1)
        words = [w for (w,) in self.db.execute("SELECT word FROM vocab WHERE id >= ? ORDER BY id", (start,))]
        last = self.db.execute("SELECT max(id) FROM vocab").fetchone()[0]
        if words and (last != start + len(words) - 1 or not self.vocab.extend(words)):
            raise StoreError(f"{self.path}: vocabulary ids are not contiguous; run 'nextword doctor'")

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; on failure everything (the in-memory vocabulary too) is rolled back."""
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if schema.is_read_only_error(exc):
                    raise StoreError(schema.read_only_message(self.path)) from exc
                raise
            self._pending = Changes(set(), set())
            try:
                self._sync_vocab()
                known = len(self.vocab)
                yield
                new_words = self.vocab.words[known:]
                self.db.executemany(
                    "INSERT INTO vocab VALUES (?, ?)", [(known + i, w) for i, w in enumerate(new_words)]
                )
                self.db.execute("COMMIT")
                self._commits += 1
                if self._pending is not None:
                    self._change_log[self._commits] = self._pending
                self._trim_change_log()
            except BaseException as exc:
                if self.db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
                    self.db.execute("ROLLBACK")
                self._vocab_epoch = None
                self._sync_vocab()
                self._commits += 1  # unknown changes: readers drop everything
                if schema.is_read_only_error(exc):
                    raise StoreError(schema.read_only_message(self.path)) from exc
                if isinstance(exc, sqlite3.OperationalError) and _disk_full(exc):
                    raise StoreError(f"the disk holding {self.path} is full; nothing was changed") from exc
                if isinstance(exc, sqlite3.OperationalError) and "disk I/O error" in str(exc):
                    raise StoreError(
                        f"{self.path} could not be written (disk I/O error: a full disk, a file-size limit or a "
                        "failing disk); nothing was changed"
                    ) from exc
                raise
            finally:
                self._pending = None

    # --- learning and forgetting ---------------------------------------------------------------------------
    def learn(
        self, source: str, text: str, kind: str = "document", pause: Callable[[], None] | None = None
    ) -> LearnResult:
        """Make `text` the current content of `source`, replacing what it contributed before.

        `pause()`, when given, is called every few milliseconds of work (the server lets a completion that waits go
        first): a prose text longer than `streaming.PAUSE_PIECE_CHARS` is analysed in pieces (`store.streaming`,
        the same result as at once), and the count update pauses between its steps and every `PAUSE_ROWS` rows."""
        analysed = streaming.analyse_pausing(text, self.tokenizer, pause)
        return self.learn_analysed(source, analysed, sources.sha256(text), kind, pause)

    def learn_analysed(
        self,
        source: str,
        analysed: sources.Analysed,
        digest: str,
        kind: str = "document",
        pause: Callable[[], None] | None = None,
    ) -> LearnResult:
        """`learn` of a text already analysed with this store's tokenizer (`store.streaming` reads large files in
        pieces); `digest` is the text's `sources.sha256`; `pause` as in `learn`."""
        return self.learn_many_analysed([(source, analysed, digest)], kind, pause)[0]

    def learn_many_analysed(
        self,
        documents: Sequence[tuple[str, sources.Analysed, str]],
        kind: str = "document",
        pause: Callable[[], None] | None = None,
    ) -> list[LearnResult]:
        """`learn_analysed` of several sources at once, each given as (name, analysis, digest): one transaction and
        one count update. N-grams never cross a sentence end, so the counts of the sources' token streams joined are
        the sum of theirs, and the tables end as the learns one after another would leave them (the invariant), for
        one update and one commit (the server learns together the documents saved while a person types). Each
        result's `changed_ngrams` counts the rows the whole update changed. A source named twice: `ValueError`."""
        names = [name for name, _, _ in documents]
        if len(set(names)) != len(names):
            raise ValueError("a source is named twice in one learn")
        if not documents:
            return []
        with self._write(), self._pausing(pause):
            olds = [self._source_contribution(name) for name in names]
            news = [encode_sentences(analysed.sentences, self.vocab) for _, analysed, _ in documents]
            changed = self._apply_stream_change(_joined(news), _joined([stream for stream, _, _ in olds]))
            added: Counter[tuple[str, str]] = Counter()
            removed: Counter[tuple[str, str]] = Counter()
            for (_, analysed, _), (_, old_casing, _) in zip(documents, olds, strict=True):
                added += analysed.casing - old_casing
                removed += old_casing - analysed.casing
            self._apply_casing(added, removed)
            self.db.executemany(
                "INSERT OR REPLACE INTO sources VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        name,
                        kind,
                        sources.pack_stream(stream),
                        sources.pack_casing(analysed.casing),
                        analysed.tokens,
                        digest,
                        _now(),
                    )
                    for (name, analysed, digest), stream in zip(documents, news, strict=True)
                ],
            )
            self._forget_unused_words()
        return [
            LearnResult(name, analysed.tokens, changed, existed, analysed.secrets)
            for (name, analysed, _), (_, _, existed) in zip(documents, olds, strict=True)
        ]

    @contextmanager
    def _pausing(self, pause: Callable[[], None] | None) -> Iterator[None]:
        """Inside the block, the count update calls `pause` between its steps (see `learn`)."""
        self._pause = pause or _no_pause
        try:
            yield
        finally:
            self._pause = _no_pause

    def learn_file(self, path: str | Path) -> LearnResult:
        """Learn a text file; its resolved path names the source."""
        path = Path(path).expanduser()
        text = sources.read_user_text(path)
        return self.learn(source_name(path), text, kind="file")

    def forget(self, source: str) -> LearnResult:
        """Remove every trace of `source`: its counts, casing and the record of it."""
        with self._write():
            old_stream, old_casing, existed = self._source_contribution(source)
            if not existed:
                raise UnknownSourceError(f"nothing was learned from {source!r}; see 'nextword stats' for sources")
            changed = self._apply_stream_change(np.zeros(0, np.int64), old_stream)
            self._apply_casing(Counter(), old_casing)
            self.db.execute("DELETE FROM sources WHERE name = ?", (source,))
            self._forget_unused_words()
        self._empty_wal()
        return LearnResult(source, 0, changed, True)

    def defer_checkpoints(self) -> None:
        """Stop SQLite from checkpointing the write-ahead log inside whichever commit crosses its mark (a learn
        that happens to cross it took ~100 ms longer): the owner calls `checkpoint` when nothing waits (the server:
        on the background thread, once learning has been quiet for a moment)."""
        with self.lock:
            self.db.execute("PRAGMA wal_autocheckpoint = 0")

    def checkpoint(self) -> int:
        """Copy committed pages from the write-ahead log into the store file (a PASSIVE checkpoint: it never waits
        for readers or writers, and none waits for it). Returns how many pages of the log are still not in the file
        (0: all of them; more when a reader still uses older pages), or -1 when a write is in progress."""
        with self.lock:
            if self.db.in_transaction:
                return -1
            busy, log_pages, moved = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return -1 if busy else max(0, int(log_pages) - int(moved))

    def _empty_wal(self) -> None:
        """Move the zeroed pages out of the write-ahead log now rather than at some later checkpoint — but only if
        nobody is reading or writing at this instant: a waiting checkpoint would hold other writers back."""
        with self.lock:
            self.db.execute("PRAGMA busy_timeout = 0")
            try:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError:
                pass  # busy: the next automatic checkpoint will do it
            finally:
                self.db.execute(f"PRAGMA busy_timeout = {schema.BUSY_TIMEOUT_MS}")

    def _forget_unused_words(self) -> None:
        """Words no source uses any more leave the vocabulary too: their ids keep a placeholder (ids are never
        reused), so nothing of a forgotten document stays in the file (deleted content is zeroed: secure_delete)."""
        unused = [r[0] for r in self.db.execute(f"SELECT w1 FROM temp.ch1 WHERE new = 0 AND w1 > {EOS_ID}")]
        if not unused:
            return
        self.db.executemany("UPDATE vocab SET word = ? WHERE id = ?", [(FORGOTTEN.format(i), i) for i in unused])
        self.vocab.retire(unused, FORGOTTEN)
        epoch = str(int(self._vocab_epoch or "0") + 1)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('vocab_epoch', ?)", (epoch,))
        self._vocab_epoch = epoch

    def restore_source(
        self, info: SourceInfo, sentences: Sequence[Sequence[str]], casing: Counter[tuple[str, str]]
    ) -> LearnResult:
        """`nextword doctor`'s entry point: add a source from its recorded sentences (decoded from another store's
        token-id stream) and casing counts, exactly as learning its text did, keeping its name, kind, token count,
        sha256 and date."""
        with self._write():
            if self._source_contribution(info.name)[2]:
                raise StoreError(f"{info.name!r} is already in {self.path}")
            stream = encode_sentences(sentences, self.vocab)
            changed = self._apply_stream_change(stream, np.zeros(0, np.int64))
            self._apply_casing(casing, Counter())
            self.db.execute(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    info.name,
                    info.kind,
                    sources.pack_stream(stream),
                    sources.pack_casing(casing),
                    info.tokens,
                    info.sha256,
                    info.learned_at,
                ),
            )
        return LearnResult(info.name, info.tokens, changed, False)

    def _source_contribution(self, source: str) -> tuple[np.ndarray, Counter[tuple[str, str]], bool]:
        row = self.db.execute("SELECT kind, stream, casing FROM sources WHERE name = ?", (source,)).fetchone()
        if row is None:
            return np.zeros(0, np.int64), Counter(), False
        if row[0] == "base":
            raise StoreError(f"{source!r} is the store's base model; it cannot be re-learned or forgotten")
        return sources.unpack_stream(row[1]), sources.unpack_casing(row[2]), True

    def _apply_stream_change(self, new: np.ndarray, old: np.ndarray) -> int:
        """Apply count(new) - count(old) to the tables; returns how many n-gram rows changed. A new source longer than
        `chunk_tokens` (a large file) is counted and applied a chunk at a time (`_add_in_chunks`)."""
        if len(old) == 0 and len(new) > self.chunk_tokens:
            return self._add_in_chunks(new)
        deltas = ngram_delta(count_ngrams(new, self.order), count_ngrams(old, self.order))
        self._apply_deltas(deltas)
        return sum(len(change) for _, change in deltas)

    def _add_in_chunks(self, stream: np.ndarray) -> int:
        """Add a new source's counts a chunk of about `chunk_tokens` tokens at a time (cut at sentence starts), each
        chunk applied as a learn applies its counts, so the tables end as one update would leave them while memory
        holds one chunk's counts (counting 12 million tokens at once took ~1 GB). Returns the distinct n-grams of
        `stream` (the rows whose count changed), gathered across chunks in temporary tables."""
        orders = range(1, self.order + 1)
        for n in orders:
            key = ", ".join(schema.columns(n))
            self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS seen{n} ({key}, PRIMARY KEY ({key})) WITHOUT ROWID")
            self.db.execute(f"DELETE FROM temp.seen{n}")
        for chunk in sentence_chunks(stream, self.chunk_tokens):
            tables = count_ngrams(chunk, self.order)
            self._apply_deltas([(t.grams, t.count) for t in tables.tables])
            del tables
            for n in orders:
                key = ", ".join(schema.columns(n))
                self.db.execute(f"INSERT OR IGNORE INTO temp.seen{n} SELECT {key} FROM temp.ch{n}")
        changed = sum(self.db.execute(f"SELECT count(*) FROM temp.seen{n}").fetchone()[0] for n in orders)
        for n in orders:
            self.db.execute(f"DELETE FROM temp.seen{n}")
        return changed

    # --- bulk build ----------------------------------------------------------------------------------------
    def build(
        self,
        paths: Sequence[str | Path],
        progress: Callable[[int], None] | None = None,
        chunk_tokens: int = CHUNK_TOKENS,
    ) -> int:
        """Learn many files at once; returns the number of tokens counted.

        Files are read one at a time, each in pieces (`store.streaming`), and counted in chunks of about
        `chunk_tokens` tokens, so memory is bounded by the chunk and one file's token strings, not the corpus.
        Into an empty store the first chunk is written directly; later chunks are merged exactly as a learn would.
        All files are checked before anything is written; the whole build is one transaction. `progress(n)` is
        called with the bytes read since its last call.
        """
        files = [Path(p).expanduser() for p in paths]
        if not files:
            raise InputError("no input files")
        for path in files:  # fail early, before any work, on a file that cannot be read
            if not path.exists():
                raise InputError(f"{path}: no such file")
            if path.is_dir():
                raise InputError(f"{path} is a directory; give the text files inside it")
        total = words = 0
        with self._write():
            pending: list[np.ndarray] = []
            pending_tokens = 0
            for path in files:
                document = streaming.read_corpus_document(path, self.tokenizer, progress)
                name = source_name(path)
                if self._source_contribution(name)[2]:
                    raise InputError(f"{path} is already in the store; use 'nextword learn' to update it")
                analysed = document.analysed
                stream = encode_sentences(analysed.sentences, self.vocab)
                self.db.execute(
                    "INSERT INTO sources VALUES (?, 'file', ?, ?, ?, ?, ?)",
                    (
                        name,
                        sources.pack_stream(stream),
                        sources.pack_casing(analysed.casing),
                        analysed.tokens,
                        document.sha256,
                        _now(),
                    ),
                )
                self._apply_casing(analysed.casing, Counter())
                pending.append(stream)
                pending_tokens += len(stream)
                total += analysed.tokens
                words += analysed.words
                if pending_tokens >= chunk_tokens:
                    self._add_counts(np.concatenate(pending))
                    pending, pending_tokens = [], 0
            if words == 0:
                raise InputError("the corpus is empty: no words in " + ", ".join(str(p) for p in files))
            if pending:
                self._add_counts(np.concatenate(pending))
        return total

    def _add_counts(self, stream: np.ndarray) -> None:
        """Add a stream's counts: a direct write into empty tables, else a merge."""
        tables = count_ngrams(stream, self.order)
        if self.db.execute("SELECT 1 FROM ng1 LIMIT 1").fetchone() is None:
            self._write_tables(tables)
        else:
            empty = count_ngrams(np.zeros(0, np.int64), self.order)
            self._apply_deltas(ngram_delta(tables, empty))

    def add_base(self, tables: CountTables, name: str = "base", casing: Counter[tuple[str, str]] | None = None) -> None:
        """Make a count table (e.g. a pruned corpus model) and its casing counts the base of an empty store.

        The base has no text behind it, so it cannot be forgotten or re-learned; sources learned on top of it
        still keep the invariant (tables == base + a fresh count of their text).
        """
        with self.base_writer(tables.vocab, name) as writer:
            for n, table in enumerate(tables.tables, start=1):
                writer.add_rows(table)
                for kind in (RAW, ADJUSTED):
                    writer.add_count_of_counts(n, kind, tables.count_of_counts(n, kind))
            for mass in tables.hidden or []:
                writer.add_hidden_mass(mass)
            writer.add_casing(casing or Counter())

    @contextmanager
    def base_writer(self, vocab: Vocab, name: str) -> Iterator[BaseWriter]:
        """Write a base model into this empty store piece by piece, in one transaction (see `BaseWriter`).

        `vocab` is the vocabulary the pieces' word ids refer to; its words are added to the store in id order.
        The source row (kind `base`, its token count taken from the unigram rows) is written when the block ends
        without an error; on an error nothing at all is written.
        """
        with self._write():
            if self.db.execute("SELECT 1 FROM ng1 LIMIT 1").fetchone() is not None:
                raise StoreError("a base model can only be written into an empty store")
            remap = np.asarray([self.vocab.add(w) for w in vocab.words], dtype=np.int64)
            writer = BaseWriter(self, remap)
            yield writer
            self._drop_idle_hidden_mass()
            self.db.execute(
                "INSERT INTO sources VALUES (?, 'base', NULL, NULL, ?, NULL, ?)", (name, writer.tokens, _now())
            )

    def _drop_idle_hidden_mass(self) -> None:
        """Keep hidden mass only after contexts that kept a follower (pieces may have given it for any context)."""
        if not schema.has_hidden_mass(self.db):
            return
        for n in range(1, self.order):
            match = " AND ".join(f"g.{c} = h.{c}" for c in schema.columns(n))
            self.db.execute(f"DELETE FROM hidden{n} AS h WHERE NOT EXISTS (SELECT 1 FROM ng{n + 1} AS g WHERE {match})")

    def _write_tables(self, tables: CountTables) -> None:
        self._pending = None  # too much changed to list: readers drop all they cached
        for n, table in enumerate(tables.tables, start=1):
            rows = _rows(*table.grams.T, table.count, table.cont)
            self.db.executemany(f"INSERT INTO ng{n} VALUES ({', '.join('?' * (n + 2))})", rows)
            for kind in (RAW, ADJUSTED):
                self.db.executemany(
                    "UPDATE coc SET v = ? WHERE n = ? AND kind = ? AND k = ?",
                    [(v, n, kind, k) for k, v in enumerate(tables.count_of_counts(n, kind), start=1)],
                )

    # --- the incremental update ----------------------------------------------------------------------------
    def _apply_deltas(self, deltas: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Apply raw-count changes per order and keep continuation counts and count-of-counts exact.

        Phase 1, each order: new raw counts (rows that reach 0 stay until phase 3). Phase 2, from the top order
        down: an n-gram that appears or disappears changes its suffix's continuation count by one. Phase 3:
        rows with a zero count are deleted.
        """
        for n in range(1, self.order + 1):
            self._apply_raw(n, *deltas[n - 1])
            self._pause()
        for n in range(self.order, 1, -1):
            self._apply_continuation(n)
            self._pause()
        self._record_changes()
        for n in range(1, self.order + 1):
            self._pause()
            key = ", ".join(schema.columns(n))
            self.db.execute(f"DELETE FROM ng{n} WHERE ({key}) IN (SELECT {key} FROM temp.ch{n} WHERE new = 0)")
        self._pause()  # then the new words and the commit

    def _record_changes(self) -> None:
        """Note which follower lists the update changed, so readers in this process drop only those."""
        if self._pending is None:
            return
        db = self.db
        changed_rows = sum(
            db.execute(f"SELECT count(*) FROM temp.ch{n}").fetchone()[0] for n in range(2, self.order + 1)
        )
        if changed_rows > RECORD_MAX_ROWS:
            self._pending = None  # too much changed to list: readers drop all they cached (cheaper than the list)
            return
        unigrams = "SELECT w1 FROM temp.ch1" + (" UNION SELECT w1 FROM temp.e1" if self.order > 1 else "")
        self._pending.unigrams.update(r[0] for r in db.execute(unigrams))
        rows = self._pending.rows
        for n in range(2, self.order + 1):
            self._pause()
            cols = schema.columns(n)
            key = ", ".join(cols)
            changed = f"SELECT {key} FROM temp.ch{n}"
            if n < self.order:
                changed += f" UNION SELECT {key} FROM temp.e{n}"
            match = " AND ".join(f"g.{c} = k.{c}" for c in cols)
            found = db.execute(
                f"SELECT k.*, coalesce(g.c, 0), coalesce(g.cc, 0) FROM ({changed}) AS k LEFT JOIN ng{n} AS g ON {match}"
            )
            for i, (*gram, c, cc) in enumerate(found, start=1):  # the final counts (rows to be deleted have c = 0)
                if i % RECORD_PAUSE_ROWS == 0:
                    self._pause()
                context = tuple(gram[:-1])
                rows.setdefault(context, {})[gram[-1]] = (c, cc)  # a later piece of the same learn wins
                self._pending.contexts.add(context)
                self._pending.size += 1

    def _apply_raw(self, n: int, grams: np.ndarray, change: np.ndarray) -> None:
        cols = schema.columns(n)
        key = ", ".join(cols)
        db = self.db
        db.execute(f"CREATE TEMP TABLE IF NOT EXISTS d{n} ({key}, dc, PRIMARY KEY ({key})) WITHOUT ROWID")
        db.execute(f"CREATE TEMP TABLE IF NOT EXISTS ch{n} ({key}, old, new, PRIMARY KEY ({key})) WITHOUT ROWID")
        db.execute(f"DELETE FROM temp.d{n}")
        db.execute(f"DELETE FROM temp.ch{n}")
        if len(change) == 0:
            return
        db.executemany(
            f"INSERT INTO temp.d{n} VALUES ({', '.join('?' * (n + 1))})",
            _rows(*grams.T, change, pause=self._pause),
        )
        join = " AND ".join(f"g.{c} = d.{c}" for c in cols)
        db.execute(
            f"INSERT INTO temp.ch{n} SELECT {', '.join('d.' + c for c in cols)}, COALESCE(g.c, 0), "
            f"COALESCE(g.c, 0) + d.dc FROM temp.d{n} AS d LEFT JOIN ng{n} AS g ON {join}"
        )
        if db.execute(f"SELECT 1 FROM temp.ch{n} WHERE new < 0 LIMIT 1").fetchone():
            raise StoreError(f"{self.path}: counts do not match the recorded sources; run 'nextword doctor'")
        db.execute(
            f"INSERT INTO ng{n} ({key}, c, cc) SELECT {key}, new, 0 FROM temp.ch{n} WHERE true "
            f"ON CONFLICT ({key}) DO UPDATE SET c = excluded.c"
        )
        raw_rows = f"SELECT old, new FROM temp.ch{n}" + (f" WHERE w1 <> {BOS_ID}" if n == 1 else "")
        self._update_coc(n, RAW, raw_rows)
        if n >= 2:  # n-grams starting with <s> use their raw count as the adjusted count
            self._update_coc(n, ADJUSTED, f"SELECT old, new FROM temp.ch{n} WHERE w1 = {BOS_ID}")

    def _apply_continuation(self, n: int) -> None:
        """N-grams of order n that appeared (+1) or disappeared (-1) change their suffix's continuation count."""
        m = n - 1
        mcols = schema.columns(m)
        mkey = ", ".join(mcols)
        suffix = ", ".join(schema.columns(n)[1:])
        db = self.db
        db.execute(f"CREATE TEMP TABLE IF NOT EXISTS e{m} ({mkey}, d, PRIMARY KEY ({mkey})) WITHOUT ROWID")
        db.execute(f"DELETE FROM temp.e{m}")
        db.execute(
            f"INSERT INTO temp.e{m} SELECT {suffix}, SUM(CASE WHEN new > 0 THEN 1 ELSE -1 END) "
            f"FROM temp.ch{n} WHERE (old > 0) <> (new > 0) GROUP BY {suffix}"
        )
        join = " AND ".join(f"ng{m}.{c} = e.{c}" for c in mcols)
        self._update_coc(m, ADJUSTED, f"SELECT ng{m}.cc, ng{m}.cc + e.d FROM temp.e{m} AS e JOIN ng{m} ON {join}")
        db.execute(f"UPDATE ng{m} SET cc = ng{m}.cc + e.d FROM temp.e{m} AS e WHERE {join}")

    def _update_coc(self, n: int, kind: str, old_new_query: str) -> None:
        rows = self.db.execute(
            f"WITH x(o, nw) AS ({old_new_query}) SELECT v, SUM(s) FROM "
            f"(SELECT o AS v, -1 AS s FROM x UNION ALL SELECT nw, 1 FROM x) "
            f"WHERE v BETWEEN 1 AND {COC_MAX} GROUP BY v"
        ).fetchall()
        self.db.executemany(
            "UPDATE coc SET v = v + ? WHERE n = ? AND kind = ? AND k = ?",
            [(d, n, kind, k) for k, d in rows if d],
        )

    def _apply_casing(self, added: Counter[tuple[str, str]], removed: Counter[tuple[str, str]]) -> None:
        if not added and not removed:
            return
        rows = [(self.vocab.add(w), s, n) for (w, s), n in added.items()]
        removing = [(self.vocab.add(w), s, -n) for (w, s), n in removed.items()]
        self.db.executemany(
            "INSERT INTO casing VALUES (?, ?, ?) ON CONFLICT (id, surface) DO UPDATE SET n = n + excluded.n",
            rows + removing,
        )
        # Only a removal can bring a count to zero: look at those rows alone (a scan of the whole table, which a base
        # model fills with every word, was 20 ms of a 200-word learn's p50 on the loaded 2-core machine; now 0.7 ms)
        self.db.executemany("DELETE FROM casing WHERE id = ? AND surface = ? AND n <= 0", [r[:2] for r in removing])

    # --- reading -------------------------------------------------------------------------------------------
    def sources(self) -> list[SourceInfo]:
        with self.lock:
            rows = self.db.execute("SELECT name, kind, tokens, sha256, learned_at FROM sources ORDER BY name")
            return [SourceInfo(*row) for row in rows]

    def learned_sentences(
        self, latest_tokens: int | None = None, pause: Callable[[], None] | None = None
    ) -> list[list[str]]:
        """The sentences (each ending with `</s>`) of every document and file the store has learned, oldest first;
        a base model has no text. What `nextword train-neural --from-store` and the server's retraining read.

        With `latest_tokens`, only the most recently learned sources, newest first until their tokens (counting
        `</s>`, not `<s>`) reach that many (the source that crosses the mark is kept whole), still oldest first:
        the cost and the memory stay bounded however much was learned. `pause` is called every `PAUSE_TOKENS`
        tokens decoded."""
        query = "SELECT stream FROM sources WHERE stream IS NOT NULL ORDER BY learned_at DESC, name DESC"
        with self.lock:
            cursor = self.db.execute(query)
            blobs: list[bytes] = []
            tokens = 0
            for (blob,) in cursor:
                if latest_tokens is not None and tokens >= latest_tokens:
                    break
                blobs.append(blob)
                stream = sources.unpack_stream(blob)
                tokens += int(len(stream) - np.count_nonzero(stream == BOS_ID))
            cursor.close()
            words = self.vocab.words
        out: list[list[str]] = []
        decoded = 0
        for blob in reversed(blobs):
            sentence: list[str] = []
            stream = sources.unpack_stream(blob)
            decoded += len(stream)
            if pause is not None and decoded >= PAUSE_TOKENS:
                pause()
                decoded = 0
            for wid in stream.tolist():  # <s> w1 .. wk </s> <s> ...
                if wid == BOS_ID:
                    sentence = []
                    out.append(sentence)
                else:
                    sentence.append(words[wid])
        return [s for s in out if s]

    def export_arpa(self, path: str | Path, order: int | None = None) -> dict[int, int]:
        """Write the interpolated modified Kneser-Ney model of these counts (of `order`, default the store's) as an
        ARPA file (log10; see `store.arpa.export_arpa`), its folder made (private) if missing; the n-grams written
        per order."""
        from store.arpa import export_arpa

        path = Path(path).expanduser()
        make_private_folder(path.parent)
        return export_arpa(self.load_tables(), path, order)

    def load_tables(self) -> CountTables:
        """Every count in memory (for exports, batch scoring and checks), with the stored count-of-counts."""
        with self.lock:
            self.external_changes()  # loads the words another process added, if it committed meanwhile
            tables = []
            for n in range(1, self.order + 1):
                cols = schema.columns(n)
                rows = self.db.execute(f"SELECT {', '.join(cols)}, c, cc FROM ng{n} ORDER BY {', '.join(cols)}")
                data = np.asarray(rows.fetchall(), dtype=np.int64).reshape(-1, n + 2)
                tables.append(OrderTable(data[:, :n].copy(), data[:, n].copy(), data[:, n + 1].copy()))
            # The stored count-of-counts, as the store's own reader uses: a pruned base keeps its full data's.
            orders = range(1, self.order + 1)
            coc = {(n, kind): self.stored_count_of_counts(n, kind) for n in orders for kind in (RAW, ADJUSTED)}
            return CountTables(self.order, tables, self.vocab, frozen_coc=coc, hidden=self._load_hidden_mass())

    def _load_hidden_mass(self) -> list[HiddenMass] | None:
        """The base's hidden mass per context order (None when it has none)."""
        if not schema.has_hidden_mass(self.db):
            return None
        masses = []
        for n in range(1, self.order):
            cols = ", ".join(schema.columns(n))
            rows = self.db.execute(f"SELECT {cols}, c, cc FROM hidden{n} ORDER BY {cols}").fetchall()
            data = np.asarray(rows, dtype=np.int64).reshape(-1, n + 2)
            masses.append(HiddenMass(data[:, :n].copy(), data[:, n].copy(), data[:, n + 1].copy()))
        return masses if any(len(m) for m in masses) else None

    def setting(self, key: str) -> str | None:
        """A value kept in the store's meta table under `key` (e.g. the adaptation weights), or None."""
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (f"setting.{key}",)).fetchone()
            return row[0] if row else None

    def save_setting(self, key: str, value: str) -> None:
        """Keep `value` under `key` in the meta table (one small write of its own; counts do not change)."""
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"setting.{key}", value))

    def stored_count_of_counts(self, n: int, kind: str) -> tuple[int, ...]:
        with self.lock:
            rows = self.db.execute("SELECT v FROM coc WHERE n = ? AND kind = ? ORDER BY k", (n, kind))
            return tuple(r[0] for r in rows)

    def casing(self) -> dict[str, str]:
        """Each word's most frequent surface form (only words whose surface forms were recorded)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT v.word, c.surface FROM casing AS c JOIN vocab AS v ON v.id = c.id "
                "ORDER BY c.id, c.n, c.surface DESC"
            )
            return dict(rows.fetchall())  # the last row per word (highest n) wins

    def stats(self) -> dict[str, object]:
        """Sizes: n-grams per order, vocabulary, sources, tokens, file size in bytes."""
        with self.lock:
            ngrams = {n: self.db.execute(f"SELECT count(*) FROM ng{n}").fetchone()[0] for n in range(1, self.order + 1)}
            n_sources, tokens = self.db.execute("SELECT count(*), COALESCE(sum(tokens), 0) FROM sources").fetchone()
        return {
            "path": str(self.path),
            "order": self.order,
            "tokenizer": self.tokenizer,
            "vocabulary": ngrams.get(1, 0) - (1 if ngrams.get(1) else 0),
            "ngrams": ngrams,
            "sources": n_sources,
            "tokens": tokens,
            "bytes": self.path.stat().st_size if self.path.exists() else 0,
        }


class BaseWriter:
    """Rows of a base model going into an empty store (from `CountStore.base_writer`), inside its transaction.

    Pieces may come in any order and any size (a distributed build writes one partition at a time), but each
    n-gram must come exactly once; count-of-counts given in pieces are added up.
    """

    def __init__(self, store: CountStore, remap: np.ndarray) -> None:
        self.store = store
        self.remap = None if np.array_equal(remap, np.arange(len(remap))) else remap
        self.tokens = 0
        """Tokens the base counts (its unigram counts without `<s>`; sentence ends included)."""

    def add_rows(self, table: OrderTable) -> None:
        """Insert one order's rows (any subset of them, none already written)."""
        n = table.grams.shape[1]
        grams = table.grams if self.remap is None else self.remap[table.grams]
        self.store.db.executemany(
            f"INSERT INTO ng{n} VALUES ({', '.join('?' * (n + 2))})", _rows(*grams.T, table.count, table.cont)
        )
        if n == 1:
            self.tokens += int(table.count[grams[:, 0] != BOS_ID].sum())

    def add_hidden_mass(self, mass: HiddenMass) -> None:
        """Add the pruned followers' mass after some contexts (pieces for the same context add up)."""
        n = mass.contexts.shape[1]
        if len(mass) == 0:
            return
        contexts = mass.contexts if self.remap is None else self.remap[mass.contexts]
        cols = ", ".join(schema.columns(n))
        self.store.db.executemany(
            f"INSERT INTO hidden{n} VALUES ({', '.join('?' * (n + 2))}) ON CONFLICT ({cols}) "
            "DO UPDATE SET c = c + excluded.c, cc = cc + excluded.cc",
            _rows(*contexts.T, mass.count, mass.cont),
        )

    def add_count_of_counts(self, n: int, kind: str, values: Sequence[int]) -> None:
        """Add (n_1, ..., n_COC_MAX) of order `n`, kind raw or adjusted, to the stored count-of-counts."""
        self.store.db.executemany(
            "UPDATE coc SET v = v + ? WHERE n = ? AND kind = ? AND k = ?",
            [(int(v), n, kind, k) for k, v in enumerate(values, start=1) if v],
        )

    def add_casing(self, casing: Counter[tuple[str, str]]) -> None:
        """Add casing counts ((word, surface form) -> times); every word must be in the base's vocabulary."""
        unknown = next((w for w, _ in casing if self.store.vocab.get(w) is None), None)
        if unknown is not None:
            raise StoreError(f"casing counts name the word {unknown!r}, which the base model does not count")
        self.store._apply_casing(casing, Counter())


def source_name(path: Path) -> str:
    """A file source's name: its absolute, resolved path."""
    return str(path.expanduser().resolve())


ROWS_AT_ONCE = 65_536
"""Rows turned into Python ints at a time for executemany: memory stays bounded (a row of Python ints costs ~100
bytes; all 5 million trigram rows of a 50 MB file at once were ~700 MB)."""


def sentence_chunks(stream: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """`stream` (a token stream: `<s> w1 .. wk </s> <s> ...`) in consecutive pieces, each ending where the first
    sentence that starts `size` or more tokens into it begins (a sentence longer than `size` stays whole)."""
    starts = np.flatnonzero(stream == BOS_ID)
    lo = 0
    while lo < len(stream):
        i = int(np.searchsorted(starts, lo + size))
        hi = int(starts[i]) if i < len(starts) else len(stream)
        yield stream[lo:hi]
        lo = hi


PAUSE_ROWS = 4096
"""With a pause (see `CountStore.learn`), rows are made this many at a time and `pause()` is called between them."""
RECORD_MAX_ROWS = 20_000
"""A learn that changes more n-grams than this (of order 2 and up; a document of ~4,000 words or more) is not
recorded for the readers in this process, which drop every follower list they cached instead: recording it costs
~30 us a row of interpreter time, and the readers' walk over it as much again under their lock (a 1.9 MB document:
~4 s and ~1 s, the second stalling completions)."""
RECORD_PAUSE_ROWS = 256
"""The record of a learn's changed follower lists pauses every this many rows (a row is a SQLite step and a few
dictionary updates, ~30 us: a 2 MB learn records a million of them)."""
PAUSE_TOKENS = 8192
"""`CountStore.learned_sentences` calls its `pause` after about this many tokens decoded (~1 ms of work)."""


def _rows(*columns: np.ndarray, pause: Callable[[], None] | None = None) -> Iterator[tuple[int, ...]]:
    """Rows for executemany from parallel integer columns (column-wise `tolist`: much faster than a 2-D tolist),
    `ROWS_AT_ONCE` at a time, or `PAUSE_ROWS` with `pause()` between them."""
    total = len(columns[0])
    step = ROWS_AT_ONCE if pause is None or pause is _no_pause else PAUSE_ROWS
    for lo in range(0, total, step):
        if lo and pause is not None:
            pause()
        yield from zip(*(c[lo : lo + step].tolist() for c in columns), strict=True)


def _joined(streams: Sequence[np.ndarray]) -> np.ndarray:
    """Token streams (each whole sentences, `<s>` .. `</s>`) one after another, as one stream."""
    return np.concatenate(streams) if streams else np.zeros(0, np.int64)


def _no_pause() -> None:
    """No pause: nothing waits."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _disk_full(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite failed for want of space (a full disk, or a file-size limit that SQLite reports as I/O)."""
    return "full" in str(exc) or getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_FULL,)
