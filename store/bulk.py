"""Bulk builds into a new store file: what the pruned local build and the Dask build (`store.dask_build`) share.

Both write a *base* model (`CountStore.base_writer`): counts with no text behind them, so no per-file token
streams are kept (at billions of words they would be most of the file) and the sources table gets one row of kind
`base`. A store built so cannot take a file back ('nextword forget'); learning on top of it works as on the
shipped model. The file is built under a temporary name beside the target and renamed over it only when complete,
so a failed or interrupted build never leaves a partial store, and an existing store is never touched.

The vocabulary limit (`lm_core.counting.limit_vocabulary`) and pruning (`lm_core.counting.prune`, with its
`prune_limits`) are defined once in `lm_core.counting`; both engines call those functions.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm_core.counting import count_ngrams, encode_sentences, limit_vocabulary, prune
from lm_core.files import make_private_folder
from lm_core.vocab import Vocab
from store import sources, streaming
from store.countstore import CountStore, source_name
from store.errors import InputError, StoreError

SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class BuildResult:
    """What a bulk build wrote: tokens counted (sentence ends included), input files, n-gram rows per order."""

    tokens: int
    files: int
    ngrams: dict[int, int]


def check_input_files(paths: Sequence[str | Path]) -> list[Path]:
    """The input files as paths, or an `InputError` for none, a missing one, a directory, or one given twice."""
    files = [Path(p).expanduser() for p in paths]
    if not files:
        raise InputError("no input files")
    seen: set[str] = set()
    for path in files:
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path} is a directory; give the text files inside it")
        sources.refuse_secret_file(path)
        name = source_name(path)
        if name in seen:
            raise InputError(f"{path} is given twice")
        seen.add(name)
    return files


def refuse_existing_store(path: Path) -> None:
    """A bulk build writes a new store: `StoreError` if `path` already holds something (an empty file is fine)."""
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a store file")
    if path.exists() and path.stat().st_size > 0:
        raise StoreError(
            f"{path} already exists; a pruned, vocabulary-limited or Dask build writes a new store "
            "(give another --db, or delete it first)"
        )


def base_source_name(files: Sequence[Path]) -> str:
    """The sources-table name of a bulk build's base: its first input file, and how many more there were."""
    first = source_name(files[0])
    return f"build of {first}" + (f" and {len(files) - 1} more file(s)" if len(files) > 1 else "")


def casing_of_vocabulary(casing: Counter[tuple[str, str]], vocab: Vocab) -> Counter[tuple[str, str]]:
    """The casing counts of words in `vocab` only (a word a vocabulary limit made `<unk>` has no casing row)."""
    return Counter({key: n for key, n in casing.items() if vocab.get(key[0]) is not None})


@contextmanager
def new_store(path: Path, order: int, tokenizer: str) -> Iterator[CountStore]:
    """An empty store under a temporary name beside `path`, renamed to `path` when the block ends without error.

    On any error (or interrupt) the temporary file is removed and `path` is left as it was.
    """
    path = Path(path).expanduser()
    refuse_existing_store(path)
    make_private_folder(path.parent)
    remove_abandoned_builds(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".building", dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        with CountStore.open(temp, order=order, tokenizer=tokenizer, create=True) as store:
            # Nobody else opens the temporary file and a failure deletes it: no journal, no syncs until the end.
            store.db.execute("PRAGMA journal_mode = OFF")
            store.db.execute("PRAGMA synchronous = OFF")
            yield store
        _fsync(temp)
        refuse_existing_store(path)  # someone else made it meanwhile: keep theirs
        os.replace(temp, path)
        with contextlib.suppress(OSError):  # some file systems cannot sync a folder; the store is complete anyway
            _fsync(path.parent)
    finally:
        for suffix in ("", *SIDE_FILES):
            Path(f"{temp}{suffix}").unlink(missing_ok=True)


ABANDONED_UNNAMED_S = 24 * 3600  # a .building file without a process id is abandoned after a day


def remove_abandoned_builds(path: Path) -> list[Path]:
    """Remove the temporary files of builds of `path` whose process is gone (killed with -9, say: its `finally`
    never ran); returns them. A build names its file `.<store>.<pid>.<random>.building`."""
    removed = []
    prefix = f".{path.name}."
    for temp in path.parent.glob(f"{glob.escape(prefix)}*.building"):
        pid = temp.name[len(prefix) :].split(".", 1)[0]
        abandoned = False
        if pid.isdigit():
            abandoned = not _process_alive(int(pid))
        else:
            with contextlib.suppress(OSError):
                abandoned = time.time() - temp.stat().st_mtime > ABANDONED_UNNAMED_S
        if abandoned:
            for suffix in ("", *SIDE_FILES):
                Path(f"{temp}{suffix}").unlink(missing_ok=True)
            removed.append(temp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build_local_base(
    path: Path,
    files: Sequence[str | Path],
    order: int,
    tokenizer: str,
    min_counts: Sequence[int] | None = None,
    vocab_limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> BuildResult:
    """Count `files` in memory, limit the vocabulary, prune, and write the result as the base of a new store.

    Files are read in the given order, so word ids follow first occurrence (as in `CountStore.build`). Memory holds
    the whole token stream (int64, 8 bytes a token) and every count. `progress(n)` gets the bytes read since its
    last call.
    """
    paths = check_input_files(files)
    refuse_existing_store(path)
    vocab = Vocab()
    streams: list[np.ndarray] = []
    casing: Counter[tuple[str, str]] = Counter()
    tokens = words = 0
    for file in paths:
        analysed = streaming.read_corpus_document(file, tokenizer, progress).analysed
        streams.append(encode_sentences(analysed.sentences, vocab))
        casing.update(analysed.casing)
        tokens += analysed.tokens
        words += analysed.words
    if words == 0:
        raise InputError("the corpus is empty: no words in " + ", ".join(str(p) for p in paths))
    stream = np.concatenate(streams)
    del streams
    vocab, mapping = limit_vocabulary(vocab, np.bincount(stream, minlength=len(vocab)), vocab_limit)
    tables = count_ngrams(mapping[stream], order, vocab)
    del stream
    if min_counts:
        tables = prune(tables, min_counts)
    with new_store(path, order, tokenizer) as store:
        store.add_base(tables, base_source_name(paths), casing_of_vocabulary(casing, vocab))
    return BuildResult(tokens, len(paths), {n: len(t) for n, t in enumerate(tables.tables, start=1)})
