"""`nextword doctor`: check a store, and rebuild it from its sources when it is damaged or its counts are wrong.

Checks, in order (each problem is one line):

1. the file opens as an SQLite database, read-only;
2. `PRAGMA quick_check` and `PRAGMA integrity_check` find nothing;
3. it is a nextword count store of a schema version this nextword reads;
4. the invariant: its tables (n-gram raw and continuation counts, count-of-counts, casing) equal a fresh rebuild
   from the sources it recorded as learned, each source's token-id stream and casing counts replayed into an empty
   store. A `base` source (the shipped default model a user store starts from) has no text behind it: it is rebuilt
   from the model file the caller names when that file's base is the same (same name, token count and date);
   otherwise the invariant cannot be checked and the diagnosis says so.

Repair (`repair`) never writes to the damaged file: it reads what it can from it (read-only), writes a new store
beside it from the sources it could read (a `file` source whose recorded stream is unreadable is read again from its
file, if that still exists), moves the damaged file (and its `-wal`/`-shm`) aside as `NAME.damaged-<timestamp>`
(a name not taken yet: nothing is ever overwritten), and moves the rebuilt store into place. Stop editors and other
writers first: a server that keeps the old file open would go on writing to the damaged copy.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sqlite3
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lm_core.counts import ADJUSTED, RAW
from lm_core.vocab import BOS_ID
from store import schema, sources
from store.countstore import CountStore, SourceInfo
from store.errors import StoreError

MAX_LINES = 20
"""At most this many lines per kind of problem."""

BaseModel = Callable[[], Path | None]
"""Gives the file of the model a `base` source came from (decompressed), or None; called only when needed."""


@dataclass
class Diagnosis:
    path: Path
    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what passed, one line each

    @property
    def healthy(self) -> bool:
        return not self.problems


@dataclass
class Salvage:
    """What could be read from a store file."""

    meta: dict[str, str] | None
    words: list[str | None]  # by id; None where the vocabulary row could not be read
    records: list[tuple[SourceInfo, bytes | None, bytes | None]]  # (info, stream blob, casing blob)
    sources_readable: bool
    problems: list[str] = field(default_factory=list)


@dataclass
class Repair:
    path: Path
    damaged: Path  # where the damaged file now is
    restored: list[str]  # sources rebuilt from their recorded streams
    reread: list[str]  # file sources read again from their files
    lost: list[str]  # sources that could not be rebuilt: "name (why)"


# --- reading ---------------------------------------------------------------------------------------------------------
def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(schema.read_only_uri(path), uri=True)


def _decode(words: list[str | None], blob: bytes | None) -> list[list[str]] | None:
    """A recorded token-id stream as sentences of words (each ending with `</s>`); None if it cannot be read."""
    try:
        stream = sources.unpack_stream(blob)
    except (zlib.error, ValueError):
        return None
    if len(stream) and (stream.min() < 0 or stream.max() >= len(words)):
        return None
    if len(stream) and stream[0] != BOS_ID:
        return None
    sentences: list[list[str]] = []
    for sentence in np.split(stream, np.flatnonzero(stream == BOS_ID))[1:]:
        tokens = [words[i] for i in sentence[1:].tolist()]
        if not tokens or tokens[-1] != "</s>" or any(t is None for t in tokens):
            return None
        sentences.append(tokens)  # type: ignore[arg-type]
    return sentences


def _casing(blob: bytes | None) -> Counter[tuple[str, str]] | None:
    try:
        return sources.unpack_casing(blob)
    except (zlib.error, ValueError, TypeError):
        return None


def salvage(path: Path) -> Salvage:
    """Read, read-only and row by row where whole tables fail, the meta, vocabulary and sources of a store."""
    problems: list[str] = []
    try:
        db = _connect_read_only(path)
    except sqlite3.DatabaseError as exc:
        return Salvage(None, [], [], False, [f"cannot open {path}: {exc}"])
    db.text_factory = lambda data: data.decode("utf-8", "replace")  # damaged text is read, not fatal
    try:
        try:
            meta: dict[str, str] | None = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            meta = None
            problems.append(f"the meta table cannot be read ({exc})")
        words = _read_vocab(db, problems)
        records, readable = _read_sources(db, problems)
    finally:
        db.close()
    return Salvage(meta, words, records, readable, problems)


def _read_vocab(db: sqlite3.Connection, problems: list[str]) -> list[str | None]:
    try:
        rows = db.execute("SELECT id, word FROM vocab ORDER BY id").fetchall()
    except sqlite3.DatabaseError as exc:
        problems.append(f"the vocabulary cannot be read whole ({exc}); reading it word by word")
        rows = []
        try:
            top = db.execute("SELECT max(id) FROM vocab").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            top = 10_000_000
        misses = 0
        for wid in range(top + 1):
            try:
                row = db.execute("SELECT id, word FROM vocab WHERE id = ?", (wid,)).fetchone()
            except sqlite3.DatabaseError:
                row = None
            if row is None:
                misses += 1
                if misses > 100_000:
                    break
                continue
            misses = 0
            rows.append(row)
    words: list[str | None] = [None] * (max((r[0] for r in rows), default=-1) + 1)
    for wid, word in rows:
        words[wid] = word
    return words


_SOURCE_COLUMNS = "name, kind, tokens, sha256, learned_at, stream, casing"


def _record(row: tuple) -> tuple[SourceInfo, bytes | None, bytes | None]:
    name, kind, tokens, sha, learned_at, stream, casing = row
    return SourceInfo(name, kind, tokens, sha, learned_at), stream, casing


def _read_sources(
    db: sqlite3.Connection, problems: list[str]
) -> tuple[list[tuple[SourceInfo, bytes | None, bytes | None]], bool]:
    try:
        return [_record(r) for r in db.execute(f"SELECT {_SOURCE_COLUMNS} FROM sources ORDER BY name")], True
    except sqlite3.DatabaseError as exc:
        problems.append(f"the sources table cannot be read whole ({exc}); reading it row by row")
    try:
        rowids = [r[0] for r in db.execute("SELECT rowid FROM sources")]
    except sqlite3.DatabaseError:
        return [], False
    records = []
    for rowid in rowids:
        values: list[object] = []
        for column in _SOURCE_COLUMNS.split(", "):  # column by column: a damaged one spoils only itself
            try:
                values.append(db.execute(f"SELECT {column} FROM sources WHERE rowid = ?", (rowid,)).fetchone()[0])
            except (sqlite3.DatabaseError, TypeError):
                values.append(None)
        if not isinstance(values[0], str) or not isinstance(values[1], str):
            problems.append(f"source row {rowid} cannot be read")
            continue
        records.append(_record(tuple(values)))
    return sorted(records, key=lambda r: r[0].name), True


# --- rebuilding ------------------------------------------------------------------------------------------------------
@dataclass
class _Rebuilt:
    restored: list[str]
    reread: list[str]
    lost: list[str]
    base_checked: bool  # False: the store has a base that could not be rebuilt


def _matching_base(info: SourceInfo, base_model: BaseModel | None) -> Path | None:
    """The model file a base source came from, if the caller has it and its base row is the same."""
    model = base_model() if base_model is not None else None
    if model is None or not model.exists():
        return None
    try:
        db = _connect_read_only(model)
        try:
            row = db.execute("SELECT name, tokens, learned_at FROM sources WHERE kind = 'base'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError:
        return None
    return model if row == (info.name, info.tokens, info.learned_at) else None


def rebuild(found: Salvage, target: Path, base_model: BaseModel | None = None) -> _Rebuilt:
    """Write a new store at `target` (which must not exist) from what `salvage` read."""
    meta = found.meta or {}
    order = int(meta.get("order", "5"))
    tokenizer = meta.get("tokenizer", "prose")
    restored: list[str] = []
    reread: list[str] = []
    lost: list[str] = []
    base_checked = True
    bases = [info for info, _, _ in found.records if info.kind == "base"]
    for info in bases[1:]:
        lost.append(f"{info.name} (a second base model)")
    model = _matching_base(bases[0], base_model) if bases else None
    if bases and model is None:
        base_checked = False
        lost.append(f"{bases[0].name} (a base model with no text behind it, and not the shipped one)")
    if model is not None:
        shutil.copyfile(model, target)
        os.chmod(target, 0o600)
    with CountStore.open(target, order=order, tokenizer=tokenizer, create=True) as store:
        for info, stream, casing_blob in found.records:
            if info.kind == "base":
                continue
            sentences = _decode(found.words, stream)
            casing = _casing(casing_blob)
            if sentences is not None and casing is not None:
                tokens = sum(len(sentence) for sentence in sentences)  # as learn counted them
                store.restore_source(dataclasses.replace(info, tokens=tokens), sentences, casing)
                restored.append(info.name)
                continue
            # a file: learned by path (`nextword learn` recorded kind "document" before it said "file")
            if info.kind in ("file", "document") and Path(info.name).is_absolute() and Path(info.name).is_file():
                try:
                    store.learn(info.name, sources.read_user_text(Path(info.name)), kind="file")
                except StoreError as exc:
                    lost.append(f"{info.name} (its record is damaged and its file cannot be learned: {exc})")
                else:
                    reread.append(info.name)
                continue
            gone = " and its file is gone" if info.kind == "file" or Path(info.name).is_absolute() else ""
            lost.append(f"{info.name} (its recorded token stream is damaged{gone})")
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return _Rebuilt(restored, reread, lost, base_checked)


# --- comparing -------------------------------------------------------------------------------------------------------
def compare(store: CountStore, rebuilt: CountStore, limit: int = MAX_LINES) -> list[str]:
    """How `store`'s counts differ from `rebuilt`'s, one line each (word ids differ between them: rows are matched
    by their words)."""
    problems: list[str] = []
    if store.order != rebuilt.order:
        return [f"order {store.order} but the rebuild has order {rebuilt.order}"]
    mine, theirs = store.load_tables(), rebuilt.load_tables()
    words = store.vocab.words
    ids = (rebuilt.vocab.get(w) for w in words)
    to_rebuilt = np.asarray([-1 if i is None else i for i in ids], dtype=np.int64)
    rebuilt_words = rebuilt.vocab.words
    for n in range(1, store.order + 1):
        a, b = mine.tables[n - 1], theirs.tables[n - 1]
        grams = to_rebuilt[a.grams] if len(a.grams) else a.grams.reshape(0, n)
        rows_a = _rows(grams, a.count, a.cont)
        rows_b = _rows(b.grams, b.count, b.cont)
        if rows_a == rows_b:
            continue
        differing = [g for g in rows_a.keys() | rows_b.keys() if rows_a.get(g) != rows_b.get(g)]
        problems.append(f"{len(differing):,} {n}-gram count(s) differ from a rebuild from the sources")
        for gram in sorted(differing)[:limit]:
            text = " ".join(rebuilt_words[i] if i >= 0 else "?" for i in gram)
            have, want = rows_a.get(gram, (0, 0)), rows_b.get(gram, (0, 0))
            problems.append(
                f"  {n}-gram '{text}': count {have[0]}, continuation {have[1]}; the sources give {want[0]}, {want[1]}"
            )
    for n in range(1, store.order + 1):
        for kind in (RAW, ADJUSTED):
            have, want = store.stored_count_of_counts(n, kind), rebuilt.stored_count_of_counts(n, kind)
            if have != want:
                problems.append(f"count-of-counts ({n}-grams, {kind}) are {list(have)}; sources give {list(want)}")
    casing = _casing_rows(store)
    if casing != _casing_rows(rebuilt):
        problems.append("the casing table differs from a rebuild from the sources")
    return problems


def _rows(grams: np.ndarray, count: np.ndarray, cont: np.ndarray) -> dict[tuple[int, ...], tuple[int, int]]:
    return {tuple(g): (c, cc) for g, c, cc in zip(grams.tolist(), count.tolist(), cont.tolist(), strict=True)}


def _casing_rows(store: CountStore) -> Counter[tuple[str, str]]:
    words = store.vocab.words
    return Counter({(words[i], s): n for i, s, n in store.db.execute("SELECT id, surface, n FROM casing")})


# --- the two entry points -------------------------------------------------------------------------------------------
def diagnose(path: str | Path, base_model: BaseModel | None = None) -> Diagnosis:
    """Check the store at `path` (nothing is written to it) and list its problems."""
    path = Path(path).expanduser()
    report = Diagnosis(path)
    if not path.is_file():
        report.problems.append(f"{path}: no such file")
        return report
    try:
        db = _connect_read_only(path)
    except sqlite3.DatabaseError as exc:
        report.problems.append(f"{path} cannot be opened: {exc}")
        return report
    try:
        for pragma in ("quick_check", "integrity_check"):
            try:
                rows = [str(r[0]) for r in db.execute(f"PRAGMA {pragma}({MAX_LINES})")]
            except sqlite3.DatabaseError as exc:
                rows = [str(exc)]
            if rows == ["ok"]:
                report.checked.append(f"PRAGMA {pragma}: ok")
            else:
                report.problems.extend(f"{pragma}: {row}" for row in rows[:MAX_LINES])
        if report.problems:
            return report
        try:
            kind = dict(db.execute("SELECT key, value FROM meta").fetchall()).get("kind", schema.COUNTS)
            if kind == schema.ARPA:
                schema.read_meta(db, path, schema.ARPA)
                report.checked.append("an imported ARPA model: it has no sources to rebuild it from")
                return report
            schema.read_meta(db, path)
        except sqlite3.DatabaseError:
            report.problems.append(f"{path} is an SQLite database but not a nextword store")
            return report
        except StoreError as exc:
            report.problems.append(str(exc))
            return report
        report.checked.append("a nextword count store, schema version " + str(schema.SCHEMA_VERSION))
    finally:
        db.close()
    _check_invariant(path, report, base_model)
    return report


def _check_invariant(path: Path, report: Diagnosis, base_model: BaseModel | None) -> None:
    found = salvage(path)
    report.problems.extend(found.problems)
    with tempfile.TemporaryDirectory(prefix="nextword-doctor-") as tmp:
        rebuilt = rebuild(found, Path(tmp) / "rebuilt.db", base_model)
        for item in rebuilt.lost:
            if rebuilt.base_checked or "base model" not in item:
                report.problems.append(f"source {item}")
        for name in rebuilt.reread:
            report.problems.append(f"source {name}: its recorded token stream is damaged (its file can be read again)")
        if not rebuilt.base_checked:
            report.checked.append(
                "the invariant cannot be checked: the store's base model has no text behind it "
                "(only the shipped default model can be rebuilt)"
            )
            return
        try:
            with CountStore.open(path) as store, CountStore.open(Path(tmp) / "rebuilt.db") as fresh:
                differences = compare(store, fresh)
        except (StoreError, sqlite3.DatabaseError) as exc:
            report.problems.append(f"the counts cannot be compared with a rebuild: {exc}")
            return
    report.problems.extend(differences)
    if not differences:
        n = len(found.records)
        report.checked.append(f"the counts equal a rebuild from the {n} recorded source{'s' if n != 1 else ''}")


def repair(path: str | Path, base_model: BaseModel | None = None, label: str = "damaged") -> Repair:
    """Rebuild the store at `path` from its sources; the old file is kept aside as `NAME.<label>-<timestamp>`.

    A rebuild of a healthy store (label "replaced") drops what forgetting leaves behind: the vocabulary keeps every
    word ever learned (word ids are never reused), so a forgotten document's words stay in it until a rebuild."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise StoreError(f"{path}: no such file")
    if not schema.writable(path):
        raise StoreError(
            f"{path.parent} is not writable: a repair writes the rebuilt store beside the old one; copy {path.name} "
            "to a writable folder and repair it there (it was left untouched)"
        )
    found = salvage(path)
    if not found.sources_readable:
        raise StoreError(f"{path}: its list of sources cannot be read, so it cannot be rebuilt; it was left untouched")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = _free_name(path.with_name(f"{path.name}.rebuilt-{stamp}"))
    try:
        rebuilt = rebuild(found, target, base_model)
    except BaseException:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        raise
    damaged = _free_name(path.with_name(f"{path.name}.{label}-{stamp}"))
    os.replace(path, damaged)
    for suffix in ("-wal", "-shm"):
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            os.replace(companion, Path(f"{damaged}{suffix}"))
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)  # checkpointed and empty
    os.replace(target, path)
    return Repair(path, damaged, rebuilt.restored, rebuilt.reread, rebuilt.lost)


def _free_name(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`, ...: the first name no file has (with its -wal and -shm)."""
    candidate, i = path, 0
    while any(Path(f"{candidate}{s}").exists() for s in ("", "-wal", "-shm")):
        i += 1
        candidate = path.with_name(f"{path.name}.{i}")
    return candidate


__all__ = ["Diagnosis", "Repair", "compare", "diagnose", "rebuild", "repair", "salvage"]
