"""ARPA files: exporting the Kneser-Ney model, reading any ARPA model, and `ArpaStore` (an imported one in SQLite).

ARPA values are log10 (the layout: `\\data\\`, `ngram n=COUNT` lines, `\\n-grams:` sections of
`log10prob<TAB>w1 ... wn[<TAB>log10backoff]`, `\\end\\`). Models use natural logs; the conversion happens in
`lm_core.backoff.BackoffModel`. KenLM's conventions are followed: unigrams include `<unk>` and `<s>` (at -99), and
n-grams that are never a context (those ending in `</s>`, and the highest order) carry no backoff.

The SQLite layout of an imported model (meta kind `arpa`, schema version 1): `meta(key, value)`; `vocab(id, word)`;
`arpa{n}(w1 .. wn, p, b)` WITHOUT ROWID keyed by word ids, `p` the log10 probability and `b` the log10 backoff
(NULL where the ARPA line had none).
"""

from __future__ import annotations

import gzip
import sqlite3
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from lm_core.backoff import ArpaOrder, ArpaTables, BackoffModel, DuplicateNgramError, kneser_ney_tables
from lm_core.counting import CountTables
from lm_core.files import open_private
from lm_core.ngram import NgramConfig
from lm_core.vocab import BOS, BOS_ID, EOS, UNK, Vocab
from store import schema
from store.base import StoreFile, check_tokenizer, is_new_store_file
from store.errors import ImportedModelError, InputError, StoreError

if TYPE_CHECKING:
    from store.countstore import LearnResult, SourceInfo
    from store.sources import Analysed

CACHED_FOLLOWER_LISTS = 50_000
"""Follower lists an imported model's reader keeps (least recently used out), as many as `SqliteCounts` keeps: an
imported model never changes, so the bound is only there for memory."""
CHUNK_ROWS = 500_000
"""The writer formats this many n-grams at a time (bounds the memory of the text being built)."""

_STR = np.dtypes.StringDType()


# --- writing ----------------------------------------------------------------------------------------------------------
def export_arpa(tables: CountTables, path: str | Path, order: int | None = None) -> dict[int, int]:
    """Write the interpolated modified Kneser-Ney model of `NgramModel(tables, smoothing=KNESER_NEY, order=order)`
    as an ARPA file (log10). Under ARPA backoff semantics it gives exactly the model's probabilities (to the 7
    decimals written). Returns how many n-grams of each order were written."""
    return write_arpa(kneser_ney_tables(tables, order), path)


def write_arpa(tables: ArpaTables, path: str | Path) -> dict[int, int]:
    """Write ARPA tables (log10 values, 7 decimals) to `path`; returns the n-grams written per order.

    Rows are written in table order; a backoff is written where `has_backoff` says the n-gram carries one.
    Formatting is vectorised with numpy strings, `CHUNK_ROWS` rows at a time, into one buffered file handle.
    """
    path = Path(path).expanduser()
    bad = next((w for w in tables.vocab.words if not w or any(c.isspace() for c in w)), None)
    if bad is not None:
        raise ValueError(f"the word {bad!r} cannot be written to an ARPA file: words must be non-empty, no spaces")
    counts = tables.listed_counts()
    words = np.array(tables.vocab.words, dtype=_STR)
    with open_private(path, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as f:
        f.write("\\data\\\n" + "".join(f"ngram {n}={c}\n" for n, c in counts.items()))
        text = words[:0]
        for n, table in enumerate(tables.orders, start=1):
            # The words of every row: its prefix's words (one order down) + " " + its last word.
            last = words[table.grams[:, -1]]
            text = last if n == 1 else np.strings.add(np.strings.add(text[tables.rows(table.grams[:, :-1])], " "), last)
            f.write(f"\n\\{n}-grams:\n")
            for lo in range(0, len(table), CHUNK_ROWS):
                _write_rows(f, table, text, lo, min(lo + CHUNK_ROWS, len(table)))
        f.write("\n\\end\\\n")
    return counts


def _write_rows(f: IO[str], table: ArpaOrder, text: np.ndarray, lo: int, hi: int) -> None:
    listed = ~np.isnan(table.logprob[lo:hi])
    lines = np.strings.add(np.strings.add(_format(table.logprob[lo:hi][listed]), "\t"), text[lo:hi][listed])
    has = table.has_backoff[lo:hi][listed]
    if has.any():
        backoff = _format(table.backoff[lo:hi][listed][has])
        lines[has] = np.strings.add(np.strings.add(lines[has], "\t"), backoff)
    if len(lines):
        f.write("\n".join(lines.tolist()))
        f.write("\n")


def _format(values: np.ndarray) -> np.ndarray:
    """log10 values as short decimal strings, exact to 7 decimals (the shortest repr of the rounded float)."""
    return np.round(values, 7).astype(_STR)


# --- reading ----------------------------------------------------------------------------------------------------------
def read_arpa(path: str | Path) -> ArpaTables:
    """Parse an ARPA file (plain or .gz), streaming line by line, into `ArpaTables` (log10 values).

    Word ids: `<unk>`, `<s>`, `</s>` are 0, 1, 2, other words follow in the order of the unigram section. Every
    problem is an `InputError` that names the line: no file, no `\\data\\` header, bad `ngram n=COUNT` lines, a
    section whose size differs from its count (a truncated file), malformed n-gram lines, words missing from the
    unigrams, duplicate n-grams, no `\\end\\`.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an ARPA file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return _ArpaReader(path, f).read()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not an ARPA file (not UTF-8 text: {exc.reason})") from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc


class _ArpaReader:
    """One pass over an ARPA file's lines; `read` returns the tables or raises InputError."""

    def __init__(self, path: Path, f: IO[str]) -> None:
        self.path = path
        self.lines: Iterator[tuple[int, str]] = enumerate(f, start=1)
        self.lineno = 0
        self.section_lines: list[int] = []  # the line of each section's first n-gram

    def error(self, message: str, lineno: int | None = None) -> InputError:
        return InputError(f"{self.path}, line {lineno if lineno is not None else self.lineno}: {message}")

    def next_line(self) -> str | None:
        """The next line, stripped; None at the end of the file."""
        item = next(self.lines, None)
        if item is None:
            self.lineno += 1
            return None
        self.lineno = item[0]
        return item[1].strip()

    def next_nonblank(self) -> str | None:
        while (line := self.next_line()) is not None:
            if line:
                return line
        return None

    def read(self) -> ArpaTables:
        while (line := self.next_line()) != "\\data\\":
            if line is None:
                raise InputError(f"{self.path}: not an ARPA file (no \\data\\ line)")
        counts, line = self.read_counts()
        word_ids = {UNK: 0, BOS: 1, EOS: 2}
        sections = []
        for n in range(1, len(counts) + 1):
            if line != f"\\{n}-grams:":
                found = "the end of the file" if line is None else repr(line[:60])
                raise self.error(f"expected the \\{n}-grams: section, found {found}")
            sections.append(self.read_section(n, counts[n - 1], word_ids))
            line = self.next_nonblank()
            if line is not None and not line.startswith("\\"):
                raise self.error(f"more {n}-grams than the {counts[n - 1]} that \\data\\ announces")
        if line != "\\end\\":
            found = "the end of the file (truncated?)" if line is None else repr(line[:60])
            raise self.error(f"expected \\end\\, found {found}")
        vocab = Vocab(list(word_ids)[3:])
        try:
            return ArpaTables.from_arrays(vocab, *(list(column) for column in zip(*sections, strict=True)))
        except DuplicateNgramError as exc:
            raise self.error(f"duplicate {exc.order}-gram", self.section_lines[exc.order - 1] + exc.index) from exc

    def read_counts(self) -> tuple[list[int], str | None]:
        """The `ngram N=COUNT` lines after `\\data\\`, and the first non-blank line after them."""
        counts: list[int] = []
        while (line := self.next_nonblank()) is not None and not line.startswith("\\"):
            key, _, value = line.partition("=")
            parts = key.split()
            if len(parts) != 2 or parts[0] != "ngram" or not parts[1].isdigit() or not value.strip().isdigit():
                raise self.error(f"expected 'ngram N=COUNT', found {line[:60]!r}")
            n, count = int(parts[1]), int(value)
            if n != len(counts) + 1:
                raise self.error(f"expected the count of {len(counts) + 1}-grams, found one for {n}-grams")
            counts.append(count)
        if not counts:
            raise self.error("\\data\\ gives no 'ngram N=COUNT' lines")
        return counts, line

    def read_section(
        self, n: int, count: int, word_ids: dict[str, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """`count` lines of n-grams: (ids (count, n), log10 probs, log10 backoffs, has backoff)."""
        ids, probs, backoffs, has = array("q"), array("d"), array("d"), array("b")
        self.section_lines.append(self.lineno + 1)
        for i in range(count):
            line = self.next_line()
            if not line or line.startswith("\\"):
                where = "the end of the file" if line is None else ("a blank line" if not line else repr(line[:60]))
                raise self.error(
                    f"the \\{n}-grams: section ends after {i} n-grams at {where}, but \\data\\ announces {count} "
                    "(a truncated file?)"
                )
            parts = line.split()
            if len(parts) not in (n + 1, n + 2):
                raise self.error(f"expected 'log10prob', {n} word(s) and an optional backoff, found {line[:60]!r}")
            try:
                prob = float(parts[0])
                backoff = float(parts[n + 1]) if len(parts) == n + 2 else 0.0
            except ValueError:
                raise self.error(f"not a number in {line[:60]!r}") from None
            if prob != prob or backoff != backoff:
                raise self.error(f"NaN in {line[:60]!r}")
            if prob > 0:  # KenLM refuses these too: a probability above 1
                raise self.error(f"the log10 probability {parts[0]} is above 0 (a probability above 1)")
            if n == 1:
                ids.append(word_ids.setdefault(parts[1], len(word_ids)))  # a repeat is caught as a duplicate
            else:
                try:
                    ids.extend([word_ids[w] for w in parts[1 : n + 1]])
                except KeyError as exc:
                    raise self.error(f"the word {exc.args[0]!r} is not among the unigrams") from None
            probs.append(prob)
            backoffs.append(backoff)
            has.append(len(parts) == n + 2)
        grams = np.frombuffer(ids, dtype=np.int64).reshape(-1, n) if count else np.zeros((0, n), np.int64)
        return grams, np.frombuffer(probs), np.frombuffer(backoffs), np.frombuffer(has, dtype=np.int8).astype(bool)


# --- the SQLite store of an imported model ----------------------------------------------------------------------------
class ArpaStore(StoreFile):
    """An imported ARPA model in one SQLite file (a `ModelStore` that cannot learn). Use `ArpaStore.import_arpa` or
    `ArpaStore.open`; close it (or use it as a context manager) when done. Read-only after the import: it scores
    and completes, it never learns (those methods raise `ImportedModelError`)."""

    learnable = False

    def __init__(self, db: sqlite3.Connection, path: Path, meta: dict[str, str]) -> None:
        super().__init__(db, path, meta)
        self.vocab = Vocab()
        for wid, word in db.execute("SELECT id, word FROM vocab WHERE id >= 3 ORDER BY id"):
            if self.vocab.add(word) != wid:
                raise StoreError(f"{path}: vocabulary ids are not contiguous; import the ARPA file again")

    @classmethod
    def import_arpa(cls, arpa_path: str | Path, db_path: str | Path, tokenizer: str = "pretokenized") -> ArpaStore:
        """Read an ARPA file and write it into a new store at `db_path` (never over an existing non-empty file).

        The file is parsed completely before the store is created, and written in one transaction; on any failure
        nothing is left behind.
        """
        db_path = Path(db_path).expanduser()
        check_tokenizer(tokenizer)
        if not is_new_store_file(db_path):
            raise StoreError(f"{db_path} already exists; an import never overwrites a store, give a new file")
        tables = read_arpa(arpa_path)
        created = not db_path.exists()
        db = schema.connect(db_path, create=True)
        try:
            db.execute("BEGIN IMMEDIATE")
            _write_store(db, tables, tokenizer, str(Path(arpa_path).expanduser().resolve()))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            db.close()
            if created:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db_path}{suffix}").unlink(missing_ok=True)
            raise
        db.close()
        return cls.open(db_path)

    @classmethod
    def open(cls, path: str | Path) -> ArpaStore:
        """Open an imported model; `StoreMismatchError` if the file is a count store, `StoreError` if missing."""
        path = Path(path).expanduser()
        if is_new_store_file(path):
            raise StoreError(f"no model at {path}; create one with 'nextword import-arpa FILE --db {path}'")
        db = schema.connect(path, create=False)
        try:
            meta = schema.read_meta(db, path, kind=schema.ARPA)
            return cls(db, path, meta)
        except BaseException:
            db.close()
            raise

    # --- what a count store does and an imported model cannot (the `ModelStore` protocol) ---------------------------
    def _cannot(self, what: str) -> ImportedModelError:
        return ImportedModelError(f"{self.path} is an imported ARPA model: it scores and completes but cannot {what}")

    def learn(
        self, source: str, text: str, kind: str = "document", pause: Callable[[], None] | None = None
    ) -> LearnResult:
        raise self._cannot("learn")

    def learn_analysed(
        self,
        source: str,
        analysed: Analysed,
        digest: str,
        kind: str = "document",
        pause: Callable[[], None] | None = None,
    ) -> LearnResult:
        raise self._cannot("learn")

    def learn_file(self, path: str | Path) -> LearnResult:
        raise self._cannot("learn")

    def forget(self, source: str) -> LearnResult:
        raise self._cannot("forget")

    def export_arpa(self, path: str | Path, order: int | None = None) -> dict[int, int]:
        raise ImportedModelError(
            f"{self.path} is an imported ARPA model, not a count store: export the ARPA file it came from"
        )

    def save_setting(self, key: str, value: str) -> None:
        raise self._cannot("keep settings")

    def sources(self) -> list[SourceInfo]:
        return []

    def learned_sentences(
        self, latest_tokens: int | None = None, pause: Callable[[], None] | None = None
    ) -> list[list[str]]:
        return []

    def setting(self, key: str) -> str | None:
        return None

    def version(self) -> int:
        """Always 0: an imported model never changes."""
        return 0

    def surface_of(self, word: str) -> str:
        """The word itself: an imported model records no casing."""
        return word

    def set_cache_bytes(self, total_bytes: int) -> None:
        """Nothing to size: the reader's follower lists are bounded by count (CACHED_FOLLOWER_LISTS), and the
        connection keeps SQLite's default page cache."""

    def defer_checkpoints(self) -> None:
        """Nothing to defer: an imported model is never written after its import."""

    def checkpoint(self) -> int:
        """0: nothing of an imported model is ever in a write-ahead log after its import."""
        return 0

    # --- reading -------------------------------------------------------------------------------------------------
    def tables(self, cache_size: int = CACHED_FOLLOWER_LISTS) -> SqliteArpaTables:
        """A `BackoffTables` reader over this store (follower lists cached, least recently used out)."""
        return SqliteArpaTables(self, cache_size)

    def model(self, config: NgramConfig | None = None) -> BackoffModel:
        """The `LanguageModel` of this store (natural logs, as every model). Its estimates are fixed: a `config`
        other than the default (another order or smoothing) is a `StoreError`."""
        if config is not None and config != NgramConfig():
            raise StoreError(
                f"{self.path} is an imported ARPA model: it keeps its own order and backoff weights, so "
                "--model-order and --smoothing do not apply"
            )
        return BackoffModel(self.tables())

    def load_tables(self) -> ArpaTables:
        """Every n-gram in memory (for exports and checks); log10 values, as stored."""
        orders = []
        with self.lock:
            for n in range(1, self.order + 1):
                cols = ", ".join(schema.columns(n))
                rows = self.db.execute(
                    f"SELECT {cols}, p, b IS NOT NULL, COALESCE(b, 0.0) FROM arpa{n} ORDER BY {cols}"
                ).fetchall()
                data = np.asarray(rows, dtype=np.float64).reshape(-1, n + 3)
                orders.append(
                    ArpaOrder(
                        data[:, :n].astype(np.int64), data[:, n].copy(), data[:, n + 2].copy(), data[:, n + 1] > 0
                    )
                )
        return ArpaTables(self.order, self.vocab, orders)

    def counts(self) -> dict[int, int]:
        """How many n-grams each order holds."""
        with self.lock:
            return {n: self.db.execute(f"SELECT count(*) FROM arpa{n}").fetchone()[0] for n in range(1, self.order + 1)}

    def stats(self) -> dict[str, object]:
        """Sizes: n-grams per order, vocabulary, file size in bytes."""
        counts = self.counts()
        return {
            "path": str(self.path),
            "kind": schema.ARPA,
            "order": self.order,
            "tokenizer": self.tokenizer,
            "vocabulary": counts.get(1, 0),
            "ngrams": counts,
            "bytes": self.path.stat().st_size if self.path.exists() else 0,
        }


def _write_store(db: sqlite3.Connection, tables: ArpaTables, tokenizer: str, source: str) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    meta = {
        "app": schema.APP,
        "kind": schema.ARPA,
        "schema_version": str(schema.SCHEMA_VERSION),
        "order": str(tables.order),
        "tokenizer": tokenizer,
        "source": source,
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    db.execute("CREATE TABLE vocab (id INTEGER PRIMARY KEY, word TEXT NOT NULL UNIQUE)")
    db.executemany("INSERT INTO vocab VALUES (?, ?)", enumerate(tables.vocab.words))
    for n, table in enumerate(tables.orders, start=1):
        cols = schema.columns(n)
        db.execute(
            f"CREATE TABLE arpa{n} ({', '.join(f'{c} INTEGER NOT NULL' for c in cols)}, p REAL NOT NULL, b REAL, "
            f"PRIMARY KEY ({', '.join(cols)})) WITHOUT ROWID"
        )
        listed = ~np.isnan(table.logprob)
        backoff = np.where(table.has_backoff[listed], table.backoff[listed], None)
        rows = zip(
            *(c.tolist() for c in table.grams[listed].T), table.logprob[listed].tolist(), backoff.tolist(), strict=True
        )
        db.executemany(f"INSERT INTO arpa{n} VALUES ({', '.join('?' * (n + 2))})", rows)


class SqliteArpaTables:
    """`BackoffTables` over an `ArpaStore` (log10 values). Follower lists are cached, least recently used out;
    an imported model never changes, so nothing needs invalidating."""

    def __init__(self, store: ArpaStore, cache_size: int = CACHED_FOLLOWER_LISTS) -> None:
        self.store = store
        self.order = store.order
        self.vocab = store.vocab
        self.cache_size = cache_size
        self._followers: OrderedDict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._unigrams: tuple[np.ndarray, np.ndarray] | None = None
        self._entry_queries = [
            f"SELECT p, b FROM arpa{n} WHERE " + " AND ".join(f"{c} = ?" for c in schema.columns(n))
            for n in range(1, self.order + 1)
        ]
        self._follower_queries = [
            f"SELECT w{n}, p FROM arpa{n} WHERE "
            + " AND ".join(f"{c} = ?" for c in schema.columns(n - 1))
            + f" ORDER BY w{n}"
            for n in range(2, self.order + 1)
        ]

    def entry(self, ngram: tuple[int, ...]) -> tuple[float, float] | None:
        """(log10 prob, log10 backoff; 0.0 where none) of a listed n-gram, or None."""
        if not 1 <= len(ngram) <= self.order:
            return None
        with self.store.lock:
            row = self.store.db.execute(self._entry_queries[len(ngram) - 1], ngram).fetchone()
        return None if row is None else (row[0], row[1] if row[1] is not None else 0.0)

    def followers(self, context: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Ids (ascending) and log10 probs of the listed n-grams `context + (w,)`."""
        cached = self._followers.get(context)
        if cached is not None:
            self._followers.move_to_end(context)
            return cached
        if not 1 <= len(context) < self.order:
            return np.zeros(0, np.int64), np.zeros(0)
        with self.store.lock:
            rows = self.store.db.execute(self._follower_queries[len(context) - 1], context).fetchall()
        data = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
        result = (data[:, 0].astype(np.int64), data[:, 1].copy())
        self._followers[context] = result
        if len(self._followers) > self.cache_size:
            self._followers.popitem(last=False)
        return result

    def unigrams(self) -> tuple[np.ndarray, np.ndarray]:
        """Ids (ascending) and log10 probs of every listed unigram except `<s>`."""
        if self._unigrams is None:
            with self.store.lock:
                rows = self.store.db.execute(f"SELECT w1, p FROM arpa1 WHERE w1 <> {BOS_ID} ORDER BY w1").fetchall()
            data = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
            self._unigrams = (data[:, 0].astype(np.int64), data[:, 1].copy())
        return self._unigrams
