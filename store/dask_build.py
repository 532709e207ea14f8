"""Building a count store on Dask (`nextword build --engine dask`): tokenize and count on a cluster, write to SQLite.

The result is the store the local build gives for the same files and options (identical `export-arpa` output),
written as a base model (see `store.bulk`). The pipeline, in `distributed` futures:

1. read (one task per *block*: a whole prose file, or a line-aligned slice of a pretokenized file): the worker
   reads and analyses its text exactly as `CountStore.build` does a file, encodes it with ids local to the block
   (first occurrence) and keeps that stream; the driver gets the block's new words, their counts, its casing
   counts.
2. vocabulary (driver, blocks in input order): global ids in first-occurrence order over the files in the given
   order, as the local build assigns them; then `lm_core.counting.limit_vocabulary` for `--vocab-limit`. The
   driver holds the vocabulary and its counts (memory proportional to the vocabulary, not to the n-grams).
3. count (one task per block): the stream in global ids is counted (`lm_core.counting.count_ngrams`) and the
   n-grams of orders 2.. are split into P partitions by a hash of their last two words. An n-gram and every
   n-gram one word longer to its left share their last two words, so each partition holds whole continuation
   counts.
4. reduce (one task per partition): raw counts summed, continuation counts (distinct words before each n-gram)
   counted, count-of-counts (raw and adjusted) of the full data, then the pruning cut-offs (`prune_limits`,
   `prune_table`) applied, KenLM-style: what is kept keeps the full data's statistics, and what is dropped is
   summed per context (`hidden_mass`; a context's followers span partitions, so the store adds up the pieces).
5. write (driver): partitions are written as they complete, one at a time, inside one transaction of a store
   under a temporary name; unigrams (from the driver's word counts and the partitions' continuation counts),
   count-of-counts and casing last; then the file is renamed into place.

A worker that dies has its tasks run again elsewhere (`distributed` recomputes lost results from their inputs);
the driver holds every stage's futures until the last partition is written, since the scheduler forgets a task no
one holds once its dependents are done, and a lost result whose inputs were forgotten cannot be recomputed (a build
whose worker died mid-count then failed with "cancelled ... already forgotten"); the workers keep the streams
and the counted pieces until then. If a task keeps killing workers the build fails with `KilledWorker`, the
temporary file is removed and the target is untouched.
Pretokenized files are cut only where no secret (`store.secrets`) can span the cut, so blocks drop exactly the
lines the whole file drops; prose files are never split (a sentence, a code fence or a secret can span lines).
Workers read the input files themselves: with `scheduler`, every worker must see them at the same paths.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lm_core.counting import (
    HiddenMass,
    OrderTable,
    count_ngrams,
    encode_sentences,
    hidden_mass,
    limit_vocabulary,
    prune_limits,
    prune_table,
    table_count_of_counts,
)
from lm_core.counts import ADJUSTED, COC_MAX, RAW
from lm_core.vocab import Vocab
from store import secrets, sources
from store.bulk import (
    BuildResult,
    base_source_name,
    casing_of_vocabulary,
    check_input_files,
    new_store,
    refuse_existing_store,
)
from store.errors import InputError, StoreError

if TYPE_CHECKING:
    from distributed import Client, Future

    from store.countstore import BaseWriter

INSTALL_HINT = "pip install 'nextword[dask]'"
MIN_BLOCK_BYTES = 1 << 20
MAX_BLOCK_BYTES = 16 << 20
"""Pretokenized files are cut into blocks of 1 to 16 MiB, about 4 per worker for small corpora."""
BLOCKS_PER_WORKER = 4
PARTITION_INPUT_BYTES = 8 << 20
"""One reduce partition per this many bytes of input (at least 2 per worker): each holds about 1/P of the n-grams."""
SECRET_WINDOW_BYTES = 256 << 10
"""Bytes on each side of a cut searched for a secret spanning it (the longest bounded one, a PEM block with its
END line, is at most 50,000 characters: under 200 KiB)."""
_PEM_CONTINUATION = re.compile(r"(?:[A-Za-z0-9+/=]{1,100}|[A-Za-z-]{1,30}: [^\n]{0,200}|[ \t]{0,10})(?=\n|\\n|\Z)")
"""A line that could continue a PEM private key block with no END line (`store.secrets`' private_key_block rule):
such a block may run over any number of them, so no cut is made before one."""
_MIX_A, _MIX_B = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)

TaskHook = Callable[[str, int], None]
"""Called on the worker at the start of each task with its stage ('read', 'count', 'reduce') and index (a block's
or a partition's): for tracing, and for the tests' fault injection."""


# --- planning (driver) ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """Bytes [start, end) of one input file, read and analysed by one task; blocks are numbered in input order."""

    index: int
    path: str
    start: int
    end: int


def plan_blocks(files: Sequence[Path], tokenizer: str, block_bytes: int) -> list[Block]:
    """The blocks of `files` in input order: whole files in prose mode; pretokenized files cut at safe line starts
    about every `block_bytes` bytes."""
    blocks: list[Block] = []
    for file in files:
        size = file.stat().st_size
        cuts = _safe_cuts(file, size, block_bytes) if tokenizer == "pretokenized" else []
        edges = [0, *cuts, size]
        for start, end in itertools.pairwise(edges):
            blocks.append(Block(len(blocks), str(file.resolve()), start, end))
    return blocks


def _safe_cuts(file: Path, size: int, block_bytes: int) -> list[int]:
    """Byte offsets (line starts) where `file` can be cut without changing what its analysis keeps."""
    cuts: list[int] = []
    with file.open("rb") as f:
        target = block_bytes
        while target < size:
            cut = _next_safe_line_start(f, size, target)
            if cut >= size:
                break
            cuts.append(cut)
            target = cut + block_bytes
    return cuts


def _next_safe_line_start(f: Any, size: int, pos: int) -> int:
    """The first line start at or after `pos` where no secret spans the cut (or `size`)."""
    while pos < size:
        f.seek(pos - 1)
        f.readline()  # through the newline ending the line that holds byte pos - 1
        pos = f.tell()
        if pos >= size:
            return size
        line = f.readline()
        if _PEM_CONTINUATION.match(line.decode("utf-8", "replace")):
            pos += len(line)
            continue
        spanning_end = _secret_spanning(f, size, pos)
        if spanning_end is None:
            return pos
        pos = spanning_end
    return size


def _secret_spanning(f: Any, size: int, cut: int) -> int | None:
    """The end (a byte offset) of a secret that spans `cut` in the text around it, or None."""
    lo = max(0, cut - SECRET_WINDOW_BYTES)  # mid-line or mid-character at worst: that can only flag more cuts
    f.seek(lo)
    data = f.read(min(size, cut + SECRET_WINDOW_BYTES) - lo)
    head = data[: cut - lo].decode("utf-8", "replace")
    text = head + data[cut - lo :].decode("utf-8", "replace")
    at = len(head)
    for found in secrets.find_secrets(text):
        if found.start < at < found.end:
            return lo + len(text[: found.end].encode("utf-8", "replace"))
    return None


def default_block_bytes(total_bytes: int, workers: int) -> int:
    """Bytes per block: about `BLOCKS_PER_WORKER` blocks per worker, within 1 to 16 MiB."""
    share = total_bytes // max(1, BLOCKS_PER_WORKER * workers)
    return max(MIN_BLOCK_BYTES, min(MAX_BLOCK_BYTES, share))


def default_partitions(total_bytes: int, workers: int) -> int:
    """Reduce partitions: one per `PARTITION_INPUT_BYTES` of input, at least 2 per worker."""
    return max(2 * workers, math.ceil(total_bytes / PARTITION_INPUT_BYTES))


# --- tasks (workers) ------------------------------------------------------------------------------------------------
@dataclass
class BlockSummary:
    """What the driver learns of one block: its words by local id from 3 up (first occurrence), the count of every
    local id (specials included), its casing counts, its tokens (sentence ends included) and its words."""

    words: list[str]
    counts: np.ndarray
    casing: Counter[tuple[str, str]]
    tokens: int
    word_tokens: int


@dataclass
class PartitionResult:
    """One reduce partition: its kept rows of orders 2..N (sorted by word ids), the count-of-counts of all its rows
    before pruning, the continuation counts it gives unigrams: (word ids, distinct bigrams ending in each), and the
    mass its pruned rows of orders 2..N leave after their contexts (part of each context's total)."""

    tables: list[OrderTable]
    coc: dict[tuple[int, str], tuple[int, ...]]
    unigram_ids: np.ndarray
    unigram_cont: np.ndarray
    hidden: list[HiddenMass]


def read_block(block: Block, tokenizer: str, hook: TaskHook | None) -> tuple[BlockSummary, np.ndarray]:
    """Read and analyse one block; its summary and its token stream in local ids (int32, kept on the worker)."""
    if hook is not None:
        hook("read", block.index)
    analysed = sources.analyse(_block_text(block), tokenizer)
    vocab = Vocab()
    stream = encode_sentences(analysed.sentences, vocab)
    counts = np.bincount(stream, minlength=len(vocab)).astype(np.int64)
    summary = BlockSummary(vocab.words[3:], counts, analysed.casing, analysed.tokens, analysed.words)
    return summary, stream.astype(np.int32)


def _block_text(block: Block) -> str:
    """The block's text, checked as `store.sources.read_text_file` checks a file (errors name file offsets)."""
    path = Path(block.path)
    try:
        with path.open("rb") as f:
            f.seek(block.start)
            data = f.read(block.end - block.start)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    if block.start == 0:
        return sources.decode_text(data, str(path))
    if b"\x00" in data:
        raise InputError(f"{path} looks like a binary file (it contains NUL bytes); only text files can be read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = block.start + exc.start
        with path.open("rb") as f:
            line = f.read(offset).count(b"\n") + 1
        raise InputError(f"{path} is not valid UTF-8 (byte {offset}, line {line}); convert it to UTF-8") from exc


def global_stream(stream: np.ndarray, local_to_global: np.ndarray) -> np.ndarray:
    """A block's stream in the corpus' (unlimited) vocabulary ids (int32)."""
    return local_to_global.astype(np.int32)[stream]


def count_block(
    stream: np.ndarray, limit_map: np.ndarray | None, order: int, partitions: int, index: int, hook: TaskHook | None
) -> list[list[OrderTable]]:
    """Count one block's n-grams (in final ids) and split orders 2..N by partition: result[j][n - 2]."""
    if hook is not None:
        hook("count", index)
    ids = stream.astype(np.int64) if limit_map is None else limit_map[stream]
    tables = count_ngrams(ids, order).tables
    pieces: list[list[OrderTable]] = [[] for _ in range(partitions)]
    for table in tables[1:]:
        part = partition_of(table.grams, partitions)
        by_part = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[by_part], np.arange(partitions + 1))
        grams, count = table.grams[by_part].astype(np.int32), table.count[by_part]
        for j in range(partitions):
            lo, hi = bounds[j], bounds[j + 1]
            pieces[j].append(OrderTable(grams[lo:hi], count[lo:hi], np.zeros(0, np.int64)))
    return pieces


def partition_of(grams: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each n-gram (rows of word ids, order >= 2): a hash of its last two words, mod `partitions`."""
    a = grams[:, -2].astype(np.uint64)
    b = grams[:, -1].astype(np.uint64)
    h = (a * _MIX_A + b) * _MIX_B
    h ^= h >> np.uint64(31)
    return (h % np.uint64(partitions)).astype(np.int64)


def reduce_partition(
    index: int, order: int, width: int, limits: Sequence[int], hook: TaskHook | None, *pieces: list[OrderTable]
) -> PartitionResult:
    """Sum one partition's pieces (one per block), compute its continuation counts and count-of-counts, prune.

    Rows of order n are identified by `rank of their suffix (one order down) * width + first word`, the suffix
    being in this partition too; `width` exceeds every word id.
    """
    if hook is not None:
        hook("reduce", index)
    keys: list[np.ndarray] = []  # keys[n - 2]: sorted distinct keys of order n
    grams_by_order: list[np.ndarray] = []
    counts_by_order: list[np.ndarray] = []
    conts: list[np.ndarray] = []
    for n in range(2, order + 1):
        grams = np.concatenate([p[n - 2].grams for p in pieces]).astype(np.int64).reshape(-1, n)
        count = np.concatenate([p[n - 2].count for p in pieces])
        if n > 2 and (len(keys[-1]) + 1) * width >= 2**63:
            raise StoreError(f"a partition holds too many {n - 1}-grams for 64-bit keys; use more partitions")
        suffix_rank = grams[:, 1] if n == 2 else _ranks(grams[:, 1:], keys, width)
        key = suffix_rank * width + grams[:, 0]
        by_key = np.argsort(key, kind="stable")
        sorted_key = key[by_key]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if len(key) else np.zeros(0, np.int64)
        keys.append(sorted_key[starts])
        grams_by_order.append(grams[by_key[starts]])
        counts_by_order.append(np.add.reduceat(count[by_key], starts) if len(starts) else count[:0])
        if n > 2:  # each distinct n-gram adds one to its suffix's continuation count
            conts.append(np.bincount(keys[-1] // width, minlength=len(keys[-2])).astype(np.int64))
    conts.append(np.zeros(len(keys[-1]), np.int64))  # the highest order has none
    tables = [OrderTable(g, c, cc) for g, c, cc in zip(grams_by_order, counts_by_order, conts, strict=True)]
    coc = {(n, kind): table_count_of_counts(t, kind) for n, t in enumerate(tables, start=2) for kind in (RAW, ADJUSTED)}
    unigram_ids, unigram_cont = np.unique(tables[0].grams[:, 1], return_counts=True)
    kept = [_sorted_rows(prune_table(t, limits[n - 1])) for n, t in enumerate(tables, start=2)]
    hidden = [hidden_mass(t, limits[n - 1], only_kept_contexts=False) for n, t in enumerate(tables, start=2)]
    return PartitionResult(kept, coc, unigram_ids, unigram_cont.astype(np.int64), hidden)


def _ranks(grams: np.ndarray, keys: list[np.ndarray], width: int) -> np.ndarray:
    """The rank (row among the sorted distinct keys) of each row of `grams` (order m >= 2, all present)."""
    m = grams.shape[1]
    rank = grams[:, -1]
    for k in range(2, m + 1):
        rank = np.searchsorted(keys[k - 2], rank * width + grams[:, m - k])
    return rank


def _sorted_rows(table: OrderTable) -> OrderTable:
    """Rows in word-id order (the order of the store's primary key: cheaper inserts)."""
    by_words = np.lexsort(table.grams.T[::-1])
    return OrderTable(table.grams[by_words], table.count[by_words], table.cont[by_words])


# --- the driver -----------------------------------------------------------------------------------------------------
@dataclass
class _Vocabulary:
    """The corpus' vocabulary as blocks arrive in input order, with each word's count and the casing counts."""

    vocab: Vocab
    counts: np.ndarray
    casing: Counter[tuple[str, str]]
    tokens: int = 0
    word_tokens: int = 0

    @classmethod
    def empty(cls) -> _Vocabulary:
        return cls(Vocab(), np.zeros(1024, np.int64), Counter())

    def add(self, summary: BlockSummary) -> np.ndarray:
        """Add a block's words (new ones get the next ids); its local-to-global id map."""
        local_to_global = np.asarray([0, 1, 2, *(self.vocab.add(w) for w in summary.words)], dtype=np.int64)
        if len(self.vocab) > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(max(len(self.vocab), len(self.counts)), np.int64)])
        np.add.at(self.counts, local_to_global, summary.counts)
        self.casing.update(summary.casing)
        self.tokens += summary.tokens
        self.word_tokens += summary.word_tokens
        return local_to_global


def build_with_dask(
    path: str | Path,
    files: Sequence[str | Path],
    *,
    order: int,
    tokenizer: str,
    min_counts: Sequence[int] | None = None,
    vocab_limit: int | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    partitions: int | None = None,
    block_bytes: int | None = None,
    hook: TaskHook | None = None,
) -> BuildResult:
    """Build a new store at `path` from `files` on Dask (see the module docstring); nothing is left on failure.

    `scheduler`: the address of a running scheduler; without it a `distributed.LocalCluster` of `workers` processes
    (default: the usable cores), one thread each, runs on this machine. `partitions` and `block_bytes` (bytes of
    pretokenized text per read task) default from the input size and the number of workers.
    """
    path = Path(path).expanduser()
    paths = check_input_files(files)
    refuse_existing_store(path)
    limits = prune_limits(min_counts or [1], order)
    total_bytes = sum(p.stat().st_size for p in paths)
    try:
        with _client(scheduler, workers) as client:
            n_workers = max(1, len(client.nthreads()))
            blocks = plan_blocks(paths, tokenizer, block_bytes or default_block_bytes(total_bytes, n_workers))
            parts = partitions or default_partitions(total_bytes, n_workers)
            return _run(client, path, paths, blocks, order, tokenizer, limits, vocab_limit, parts, hook)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"the Dask build failed, no store was written: {_describe(exc)}") from exc


def _run(
    client: Client,
    path: Path,
    paths: list[Path],
    blocks: list[Block],
    order: int,
    tokenizer: str,
    limits: list[int],
    vocab_limit: int | None,
    partitions: int,
    hook: TaskHook | None,
) -> BuildResult:
    """Stages 1 to 5 of the module docstring; returns what was written."""
    corpus, streams, held = _read(client, blocks, tokenizer, hook)
    if corpus.word_tokens == 0:
        raise InputError("the corpus is empty: no words in " + ", ".join(str(p) for p in paths))
    full_counts = corpus.counts[: len(corpus.vocab)]
    vocab, limit_map = limit_vocabulary(corpus.vocab, full_counts, vocab_limit)
    scattered = None if vocab is corpus.vocab else client.scatter(limit_map, broadcast=True)  # every worker needs it
    with new_store(path, order, tokenizer) as store, store.base_writer(vocab, base_source_name(paths)) as writer:
        totals = _Totals.empty(order, len(vocab))
        if order > 1:
            reduced, counting = _submit_counts(client, streams, scattered, order, partitions, len(vocab), limits, hook)
            held += counting  # held until every partition is written: see the module docstring
            for result in _as_completed(client, reduced):
                totals.add(writer, result)
        del held, streams
        unigram_counts = np.bincount(limit_map, full_counts, len(vocab)).astype(np.int64)
        totals.finish(writer, _unigram_table(unigram_counts, totals.unigram_cont))
        writer.add_casing(casing_of_vocabulary(corpus.casing, vocab))
    return BuildResult(corpus.tokens, len(paths), totals.written)


def _read(
    client: Client, blocks: list[Block], tokenizer: str, hook: TaskHook | None
) -> tuple[_Vocabulary, list[Future], list[Future]]:
    """Stages 1 and 2: the corpus vocabulary, each block's stream in its ids (futures, kept on the workers), and
    the futures the streams are made from (held by the caller, so that a lost stream can be made again)."""
    read = [client.submit(read_block, b, tokenizer, hook, pure=False, priority=-b.index) for b in blocks]
    corpus = _Vocabulary.empty()
    streams = []
    for future in read:  # in input order: first occurrence decides the ids
        local_to_global = corpus.add(client.submit(_first, future, pure=False).result())
        streams.append(client.submit(_second_global, future, local_to_global, pure=False))
    return corpus, streams, read


@dataclass
class _Totals:
    """What the driver sums over the partitions while writing them: rows written, count-of-counts, and the
    continuation counts of unigrams."""

    written: dict[int, int]
    coc: dict[tuple[int, str], np.ndarray]
    unigram_cont: np.ndarray

    @classmethod
    def empty(cls, order: int, vocabulary: int) -> _Totals:
        coc = {(n, kind): np.zeros(COC_MAX, np.int64) for n in range(1, order + 1) for kind in (RAW, ADJUSTED)}
        return cls({n: 0 for n in range(1, order + 1)}, coc, np.zeros(vocabulary, np.int64))

    def add(self, writer: BaseWriter, result: PartitionResult) -> None:
        """Write one partition's rows and add up its statistics."""
        for n, table in enumerate(result.tables, start=2):
            writer.add_rows(table)
            self.written[n] += len(table)
        for mass in result.hidden:
            writer.add_hidden_mass(mass)
        for key, values in result.coc.items():
            self.coc[key] += values
        np.add.at(self.unigram_cont, result.unigram_ids, result.unigram_cont)

    def finish(self, writer: BaseWriter, unigrams: OrderTable) -> None:
        """Write the unigrams and every order's count-of-counts."""
        writer.add_rows(unigrams)
        self.written[1] = len(unigrams)
        for kind in (RAW, ADJUSTED):
            self.coc[(1, kind)] += table_count_of_counts(unigrams, kind)
        for (n, kind), values in self.coc.items():
            writer.add_count_of_counts(n, kind, values.tolist())


def _first(pair: tuple[BlockSummary, np.ndarray]) -> BlockSummary:
    return pair[0]


def _second_global(pair: tuple[BlockSummary, np.ndarray], local_to_global: np.ndarray) -> np.ndarray:
    return global_stream(pair[1], local_to_global)


def _submit_counts(
    client: Client,
    streams: list[Future],
    limit_map: Future | None,
    order: int,
    partitions: int,
    width: int,
    limits: list[int],
    hook: TaskHook | None,
) -> tuple[list[Future], list[Future]]:
    """Submit stages 3 and 4; the futures of the reduce partitions, and those of the counting they are made from
    (held by the caller, so that a lost piece can be counted again)."""
    import operator

    counted = [
        client.submit(count_block, s, limit_map, order, partitions, i, hook, pure=False) for i, s in enumerate(streams)
    ]
    pieces = [[client.submit(operator.getitem, c, j, pure=False) for c in counted] for j in range(partitions)]
    reduced = [
        client.submit(reduce_partition, j, order, width, limits, hook, *pieces[j], pure=False)
        for j in range(partitions)
    ]
    return reduced, [*counted, *itertools.chain.from_iterable(pieces)]


def _as_completed(client: Client, futures: list[Future]) -> Iterator[PartitionResult]:
    """Each result as it completes; its future is released as soon as it has been read."""
    from distributed import as_completed

    completed = as_completed(futures, loop=client.loop)
    futures.clear()
    for future in completed:
        result = future.result()
        future.release()
        yield result


def _unigram_table(counts: np.ndarray, cont: np.ndarray) -> OrderTable:
    """Order 1: every word id with a positive count (the lone `<s>` included), its count and continuation count."""
    ids = np.flatnonzero(counts)
    return OrderTable(ids[:, None], counts[ids].astype(np.int64), cont[ids])


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A client of the scheduler at `scheduler`, or of a new LocalCluster of `workers` processes (closed after)."""
    distributed = import_distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise StoreError(f"cannot reach the Dask scheduler at {scheduler}: {_one_line(exc)}") from exc
        with client:
            yield client
        return
    with (
        local_cluster(workers or usable_cores()) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


def local_cluster(workers: int) -> Any:
    """A `distributed.LocalCluster` of `workers` processes, one thread each, on this machine only: no dashboard, its
    HTTP endpoints on a free loopback port, its logs silenced (errors reach the caller through the futures)."""
    distributed = import_distributed()
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.CRITICAL,
    )


def import_distributed() -> Any:
    """The `distributed` module, or a `StoreError` saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise StoreError(f"the Dask build needs dask and distributed: {INSTALL_HINT}") from exc
    return distributed


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _describe(exc: BaseException) -> str:
    """A failed build's cause in one line (a KilledWorker's long message shortened to what it means)."""
    if type(exc).__name__ == "KilledWorker":
        task = re.search(r"task '([A-Za-z_]+)", str(exc))
        return (
            f"KilledWorker: every worker that ran a {task.group(1) if task else 'task'} task died "
            "(out of memory? see the workers' logs)"
        )
    return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    """An exception as one line: its type and its message with whitespace collapsed (at most 300 characters)."""
    text = " ".join(str(exc).split()) or "no message"
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}"
