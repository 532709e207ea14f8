"""The count store's SQLite schema (version 1) and opening a file safely.

Tables:
- `meta(key, value)`: app, schema_version, order, tokenizer.
- `vocab(id, word)`: ids 0, 1, 2 are `<unk>`, `<s>`, `</s>`; ids are never reused.
- `ng{n}(w1..wn, c, cc)` for n = 1..order, WITHOUT ROWID, keyed by word ids: raw count and continuation count
  (distinct words seen before the n-gram; 0 at the highest order). A row exists exactly when c > 0.
- `coc(n, kind, k, v)`: how many order-n n-grams have count exactly k (k = 1..10), kind 'raw' or 'adjusted'.
- `hidden{n}(w1..wn, c, cc)` for n = 1..order-1: a pruned base's hidden mass after the context w1..wn (the summed
  raw and continuation counts of its followers that pruning dropped; see `lm_core.counts`). Written once with the
  base, never changed by learning. Stores made before these tables existed have none: read as no hidden mass.
- `casing(id, surface, n)`: how often each word was written in each surface form (not at a sentence start).
- `sources(name, kind, stream, casing, tokens, sha256, learned_at)`: what was learned, with what is needed to take
  it back (the token-id stream and casing counts, zlib-compressed).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from lm_core.counts import ADJUSTED, COC_MAX, RAW
from lm_core.files import make_private_folder
from lm_core.vocab import BOS, EOS, UNK
from store.errors import CorruptStoreError, NotAStoreError, StoreMismatchError

APP = "nextword"
SCHEMA_VERSION = 1
TOKENIZERS = ("prose", "pretokenized")
BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for another process's transaction before giving up."""
COUNTS, ARPA = "counts", "arpa"
"""Kinds of store file: n-gram counts that learn (CountStore), or an imported ARPA model (store.arpa.ArpaStore)."""


def columns(n: int) -> list[str]:
    """The word-id column names of an order-n table: w1 .. wn."""
    return [f"w{i}" for i in range(1, n + 1)]


def create_schema(db: sqlite3.Connection, order: int, tokenizer: str) -> None:
    """Create every table of an empty store (inside the caller's transaction)."""
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    meta = {
        "app": APP,
        "kind": COUNTS,
        "schema_version": str(SCHEMA_VERSION),
        "order": str(order),
        "tokenizer": tokenizer,
    }
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    db.execute("CREATE TABLE vocab (id INTEGER PRIMARY KEY, word TEXT NOT NULL UNIQUE)")
    db.executemany("INSERT INTO vocab VALUES (?, ?)", [(0, UNK), (1, BOS), (2, EOS)])
    for n in range(1, order + 1):
        cols = columns(n)
        db.execute(
            f"CREATE TABLE ng{n} ({', '.join(f'{c} INTEGER NOT NULL' for c in cols)}, "
            f"c INTEGER NOT NULL, cc INTEGER NOT NULL DEFAULT 0, PRIMARY KEY ({', '.join(cols)})) WITHOUT ROWID"
        )
    for n in range(1, order):
        cols = columns(n)
        db.execute(
            f"CREATE TABLE hidden{n} ({', '.join(f'{c} INTEGER NOT NULL' for c in cols)}, "
            f"c INTEGER NOT NULL, cc INTEGER NOT NULL, PRIMARY KEY ({', '.join(cols)})) WITHOUT ROWID"
        )
    db.execute(
        "CREATE TABLE coc (n INTEGER NOT NULL, kind TEXT NOT NULL, k INTEGER NOT NULL, v INTEGER NOT NULL, "
        "PRIMARY KEY (n, kind, k)) WITHOUT ROWID"
    )
    db.executemany(
        "INSERT INTO coc VALUES (?, ?, ?, 0)",
        [(n, kind, k) for n in range(1, order + 1) for kind in (RAW, ADJUSTED) for k in range(1, COC_MAX + 1)],
    )
    db.execute(
        "CREATE TABLE casing (id INTEGER NOT NULL, surface TEXT NOT NULL, n INTEGER NOT NULL, "
        "PRIMARY KEY (id, surface)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE sources (name TEXT PRIMARY KEY, kind TEXT NOT NULL, stream BLOB, casing BLOB, "
        "tokens INTEGER NOT NULL, sha256 TEXT, learned_at TEXT NOT NULL)"
    )


def has_hidden_mass(db: sqlite3.Connection) -> bool:
    """Whether the store has the `hidden{n}` tables (stores made before them read as having no hidden mass)."""
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'hidden1'").fetchone() is not None


def connect(path: Path, create: bool) -> sqlite3.Connection:
    """Open (or create, with file mode 0600) an SQLite file, in WAL mode, autocommit."""
    if create and not path.exists():
        make_private_folder(path.parent)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    read_only = path.exists() and not writable(path)
    if path.exists() and path.is_file() and path.stat().st_size > 0:
        _refuse_foreign(path)  # before anything is written: WAL mode would change a foreign file's header
    if read_only:  # read it as it is; a write says "read-only" (see `is_read_only_error`)
        db = sqlite3.connect(read_only_uri(path), uri=True, isolation_level=None, check_same_thread=False)
    else:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal" and not read_only:
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA temp_store = MEMORY")
        db.execute("PRAGMA secure_delete = ON")  # deleted content (a forgotten document) is overwritten with zeros
        db.execute("PRAGMA cache_size = -65536")
        # A learn dirties hundreds of pages spread over the tables; checkpointing (which fsyncs) every 1000 pages,
        # SQLite's default, would checkpoint after almost every learn.
        db.execute("PRAGMA wal_autocheckpoint = 10000")
    except sqlite3.DatabaseError as exc:
        db.close()
        raise classify(path, exc) from exc
    return db


def writable(path: Path) -> bool:
    """Whether the store file at `path` and its folder (where SQLite keeps its -wal and -shm files) can be written."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def read_only_uri(path: Path) -> str:
    """An SQLite URI that reads `path` without writing anything: `mode=ro`, or `immutable=1` where the folder
    cannot be written (a WAL store needs its -shm file even to read, and SQLite could not create it there; a
    commit in a -wal file that was never checkpointed is then not seen)."""
    flag = "mode=ro" if os.access(path.parent, os.W_OK) else "immutable=1"
    return f"file:{quote(str(path))}?{flag}"


def is_read_only_error(exc: BaseException) -> bool:
    """Whether an SQLite error means the store cannot be written (a read-only file, folder or file system)."""
    return isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc)


def read_only_message(path: Path) -> str:
    return f"{path} is read-only (it or its folder cannot be written): it can be read but not changed"


def _refuse_foreign(path: Path) -> None:
    """Raise `NotAStoreError` if the SQLite file at `path` is not a nextword store, reading it only."""
    try:
        db = sqlite3.connect(read_only_uri(path), uri=True, timeout=30.0)
    except sqlite3.DatabaseError as exc:
        raise classify(path, exc) from exc
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        app = db.execute("SELECT value FROM meta WHERE key = 'app'").fetchone() if "meta" in names else None
    except sqlite3.DatabaseError as exc:
        raise classify(path, exc) from exc
    finally:
        db.close()
    if app is None or app[0] != APP:
        raise NotAStoreError(f"{path} is an SQLite database but not a nextword store; it was left untouched")


def classify(path: Path, exc: sqlite3.DatabaseError) -> Exception:
    """Turn an SQLite error on open into a named store error."""
    message = str(exc)
    if "file is not a database" in message or "not a database" in message:
        return NotAStoreError(f"{path} is not a nextword store (not an SQLite database); it was left untouched")
    return CorruptStoreError(f"{path} is damaged ({message}); it was left untouched")


def peek_kind(path: Path) -> str | None:
    """The kind of store file at `path` (COUNTS or ARPA), or None if there is no file; nothing is written."""
    if not path.exists() or path.is_dir() or path.stat().st_size == 0:
        return None
    try:
        db = sqlite3.connect(read_only_uri(path), uri=True)
    except sqlite3.DatabaseError as exc:
        raise classify(path, exc) from exc
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in names:
            raise NotAStoreError(f"{path} is an SQLite database but not a nextword store; it was left untouched")
        row = db.execute("SELECT value FROM meta WHERE key = 'kind'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise classify(path, exc) from exc
    finally:
        db.close()
    return row[0] if row else COUNTS


def read_meta(db: sqlite3.Connection, path: Path, kind: str = COUNTS) -> dict[str, str]:
    """The store's meta table; raises if the file is not a nextword store of this kind and schema version."""
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in names:
            raise NotAStoreError(f"{path} is an SQLite database but not a nextword store; it was left untouched")
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise classify(path, exc) from exc
    if meta.get("app") != APP:
        raise NotAStoreError(f"{path} is an SQLite database but not a nextword store; it was left untouched")
    if meta.get("kind", COUNTS) != kind:
        raise StoreMismatchError(
            f"{path} holds an {meta.get('kind')} model, not {kind}"
            + ("; an imported ARPA model can score and complete but not learn" if meta.get("kind") == ARPA else "")
        )
    if meta.get("schema_version") != str(SCHEMA_VERSION):
        raise StoreMismatchError(
            f"{path} has store schema version {meta.get('schema_version')}, this nextword reads version "
            f"{SCHEMA_VERSION}; rebuild it with 'nextword build'"
        )
    return meta
