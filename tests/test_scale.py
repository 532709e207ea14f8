"""The scale-out build (`store.dask_build`, `nextword build --engine dask`) and pruning for big corpora.

On one LocalCluster of 2 worker processes (1 thread each) for the module: the Dask-built store equals the local
build (identical `export-arpa` bytes, identical tables) with and without --prune and --vocab-limit, prose and
pretokenized; pruning and the vocabulary limit on a hand-worked example; a worker killed mid-build; the CLI.
Small texts of their own, never ../shared.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

from lm_core.counting import count_ngrams, encode_sentences, limit_vocabulary, parse_min_counts, prune  # noqa: E402
from lm_core.counts import ADJUSTED, RAW  # noqa: E402
from lm_core.tokenize import pretokenized_sentences  # noqa: E402
from lm_core.vocab import Vocab  # noqa: E402
from store.arpa import export_arpa  # noqa: E402
from store.bulk import build_local_base  # noqa: E402
from store.countstore import CountStore  # noqa: E402
from store.dask_build import build_with_dask, local_cluster, plan_blocks  # noqa: E402
from store.errors import InputError, StoreError  # noqa: E402
from tests.conftest import error_of, ok  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_data_dir")

PROSE = [
    "The cat sat on the mat. The cat sat on the Mat again!\n\nA dog barked at the cat; the cat ran away.\n"
    "Dr. Smith said the cat is fine. The dog is fine too.\n",
    "Nextword counts n-grams. NextWord predicts the next word, and the cat sat on the mat.\n"
    "```\ncode is skipped here\n\nstill code\n```\nThe dog sat on the mat. The dog ran.\n",
    "Short one. The cat ran away! Did the dog run away? Yes, the dog ran away.\n",
]
PRETOKENIZED = [
    "the cat sat on the mat\nthe dog sat on the log\n\nthe cat sat on the log <unk>\n",
    "a <s> literal and a </s> literal and <unk> words\nthe cat ran away\nthe dog ran\n",
    "the cat sat\nthe the the cat\nzebra quux the cat sat on the mat\nthe dog ran away\n",
]
OPTIONS = {
    "all": (None, None),
    "pruned": ((1, 2, 2), None),
    "vocab": (None, 6),
    "pruned+vocab": ((1, 1, 2), 5),
}
ORDER = 4


# --- fixtures and helpers ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A LocalCluster of 2 worker processes, 1 thread each; a task may kill its worker once (then: KilledWorker)."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = local_cluster(2)
    with cluster:
        yield cluster.scheduler_address


@pytest.fixture
def two_workers(scheduler: str) -> Iterator[str]:
    """The cluster, with both workers back (restarted by their nannies) after a test that kills them."""
    yield scheduler
    with distributed.Client(scheduler, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)


def corpus(folder: Path, tokenizer: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    texts = PROSE if tokenizer == "prose" else PRETOKENIZED
    paths = [folder / f"{tokenizer}-{i}.txt" for i in range(len(texts))]
    for path, text in zip(paths, texts, strict=True):
        path.write_text(text, encoding="utf-8")
    return paths


def local_build(db: Path, files: list[Path], tokenizer: str, min_counts: tuple[int, ...] | None, limit: int | None):
    """The local engine: the ordinary build without options, the in-memory base build with them."""
    if min_counts is None and limit is None:
        with CountStore.open(db, order=ORDER, tokenizer=tokenizer, create=True) as store:
            store.build(files)
    else:
        build_local_base(db, files, ORDER, tokenizer, min_counts, limit)


def arpa_bytes(db: Path) -> bytes:
    out = db.with_suffix(".arpa")
    with CountStore.open(db) as store:
        export_arpa(store.load_tables(), out)
    return out.read_bytes()


def contents(db: Path) -> dict[str, object]:
    """Everything a store's counts are: vocabulary (ids), n-gram rows, count-of-counts, casing (by id)."""
    with CountStore.open(db) as store:
        rows = {
            n: store.db.execute(
                f"SELECT * FROM ng{n} ORDER BY {', '.join(f'w{i}' for i in range(1, n + 1))}"
            ).fetchall()
            for n in range(1, store.order + 1)
        }
        coc = {(n, k): store.stored_count_of_counts(n, k) for n in range(1, store.order + 1) for k in (RAW, ADJUSTED)}
        casing = store.db.execute("SELECT id, surface, n FROM casing ORDER BY id, surface").fetchall()
        return {"vocab": list(store.vocab.words), "rows": rows, "coc": coc, "casing": casing}


def by_words(db: Path) -> dict[str, object]:
    """A store's n-grams keyed by words: (count, continuation count); its count-of-counts; its vocabulary."""
    with CountStore.open(db) as store:
        words = store.vocab.words
        tables = store.load_tables()
        ngrams = {
            tuple(words[i] for i in gram): (c, cc)
            for table in tables.tables
            for gram, c, cc in zip(table.grams.tolist(), table.count.tolist(), table.cont.tolist(), strict=True)
        }
        coc = {(n, k): store.stored_count_of_counts(n, k) for n in range(1, store.order + 1) for k in (RAW, ADJUSTED)}
        return {"vocab": list(words), "ngrams": ngrams, "coc": coc}


def kill_worker(stage: str, index: int, *, when: tuple[str, int], marker: str | None = None) -> None:
    """A task hook: the task `when` kills its worker process (only the first time when `marker` names a file)."""
    if (stage, index) != when:
        return
    if marker is not None:
        if os.path.exists(marker):
            return
        Path(marker).touch()
    os._exit(1)


# --- the Dask build equals the local build ----------------------------------------------------------------------------
@pytest.mark.parametrize("tokenizer", ["prose", "pretokenized"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_dask_build_equals_local_build(tmp_path: Path, scheduler: str, tokenizer: str, option: str) -> None:
    files = corpus(tmp_path / "in", tokenizer)
    min_counts, limit = OPTIONS[option]
    local_build(tmp_path / "local.db", files, tokenizer, min_counts, limit)
    result = build_with_dask(
        tmp_path / "dask.db",
        files,
        order=ORDER,
        tokenizer=tokenizer,
        min_counts=min_counts,
        vocab_limit=limit,
        scheduler=scheduler,
        partitions=3,
        block_bytes=40,  # pretokenized files in several blocks each
    )
    assert arpa_bytes(tmp_path / "dask.db") == arpa_bytes(tmp_path / "local.db")
    assert contents(tmp_path / "dask.db") == contents(tmp_path / "local.db")
    with CountStore.open(tmp_path / "local.db") as store:
        assert result.tokens == sum(s.tokens for s in store.sources())
        assert result.ngrams == store.stats()["ngrams"]
    with CountStore.open(tmp_path / "dask.db") as store:
        assert [s.kind for s in store.sources()] == ["base"]


@pytest.mark.parametrize("order", [1, 2])
def test_low_orders_equal_the_local_build(tmp_path: Path, scheduler: str, order: int) -> None:
    files = corpus(tmp_path / "in", "pretokenized")
    build_local_base(tmp_path / "local.db", files, order, "pretokenized", None, 6)
    build_with_dask(
        tmp_path / "dask.db", files, order=order, tokenizer="pretokenized", vocab_limit=6, scheduler=scheduler
    )
    assert contents(tmp_path / "dask.db") == contents(tmp_path / "local.db")
    assert arpa_bytes(tmp_path / "dask.db") == arpa_bytes(tmp_path / "local.db")


def test_pretokenized_files_are_split_into_blocks(tmp_path: Path) -> None:
    files = corpus(tmp_path, "pretokenized")
    blocks = plan_blocks(files, "pretokenized", 40)
    assert len(blocks) > len(files)
    for file in files:
        mine = [b for b in blocks if b.path == str(file.resolve())]
        assert mine[0].start == 0 and mine[-1].end == file.stat().st_size
        assert all(a.end == b.start for a, b in itertools.pairwise(mine))
        data = file.read_bytes()
        assert all(data[b.start - 1 : b.start] == b"\n" for b in mine[1:])  # cuts at line starts
    assert len(plan_blocks(corpus(tmp_path / "p", "prose"), "prose", 40)) == len(PROSE)  # prose: whole files


KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx1\nQm9ndXMga2V5IGRhdGE=\n-----END RSA PRIVATE KEY-----\n"


NO_END_KEY = "-----BEGIN EC PRIVATE KEY-----\nQUJD\n\nREVG\nProc-Type: 4,ENCRYPTED\nR0hJ\n"
SECRETS_TEXT = (
    "the cat sat\n" * 3 + KEY + "the dog ran\n" * 3 + NO_END_KEY + "the end line\n"
    "password = hunter2hunter2 is here\nthe cat ran\n"
)


@pytest.mark.parametrize(
    ("window", "text"),
    [
        (None, SECRETS_TEXT),
        (8, "the cat sat\n" * 3 + NO_END_KEY + "the dog ran\n" * 3),  # a key with no END longer than the window
    ],
)
def test_a_secret_across_a_block_boundary_is_dropped_as_in_the_whole_file(
    tmp_path: Path, scheduler: str, window: int | None, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if window is not None:
        monkeypatch.setattr("store.dask_build.SECRET_WINDOW_BYTES", window)
    path = tmp_path / "keys.txt"
    path.write_text(text, encoding="utf-8")
    local_build(tmp_path / "local.db", [path], "pretokenized", None, None)
    for block_bytes in (10, 25, 40):
        db = tmp_path / f"dask{block_bytes}.db"
        build_with_dask(db, [path], order=ORDER, tokenizer="pretokenized", scheduler=scheduler, block_bytes=block_bytes)
        assert contents(db) == contents(tmp_path / "local.db")
    vocab = " ".join(by_words(tmp_path / "local.db")["vocab"])  # type: ignore[arg-type]
    assert "QUJD" not in vocab and "REVG" not in vocab and "R0hJ" not in vocab


def test_bad_utf8_in_a_later_block_is_named_as_the_local_build_names_it(tmp_path: Path, scheduler: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"the cat sat\n" * 20 + b"the \xff dog\n" + b"the end\n")
    with pytest.raises(InputError) as local:
        local_build(tmp_path / "local.db", [path], "pretokenized", (1, 2), None)
    with pytest.raises(InputError) as dask_error:
        build_with_dask(
            tmp_path / "dask.db", [path], order=ORDER, tokenizer="pretokenized", scheduler=scheduler, block_bytes=50
        )
    assert str(dask_error.value) == str(local.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]


# --- pruning and the vocabulary limit, by hand ------------------------------------------------------------------------
# Pretokenized, order 3. Counts: a 3, b 2, c 2, d 1; --vocab-limit 2 keeps a and b (b and c tie at 2: b < c), so
# the text counted is "a b <unk> / b a <unk> / a <unk>". Bigrams: <s>a 2, ab 1, b<unk> 1, <unk></s> 3, <s>b 1,
# ba 1, a<unk> 2; trigrams: <s>ab, ab<unk>, b<unk></s>, <s>ba, ba<unk>, <s>a<unk> once each, a<unk></s> twice.
# Continuation counts (distinct words before): a 2 (<s>, b), b 2 (a, <s>), <unk> 2 (b, a), </s> 1; ab 1, b<unk> 1,
# <unk></s> 2, ba 1, a<unk> 2, <s>a 0, <s>b 0. --prune 1,2,2 keeps bigrams and trigrams seen twice or more, with the
# full data's statistics.
HAND_TEXT = "a b c\nb a d\na c\n"
HAND_NGRAMS = {
    ("<s>",): (3, 0),
    ("a",): (3, 2),
    ("b",): (2, 2),
    ("<unk>",): (3, 2),
    ("</s>",): (3, 1),
    ("<s>", "a"): (2, 0),
    ("a", "<unk>"): (2, 2),
    ("<unk>", "</s>"): (3, 2),
    ("a", "<unk>", "</s>"): (2, 0),
}
ZEROS = (0,) * 8
HAND_COC = {
    (1, RAW): (0, 1, 3, 0, *ZEROS[:6]),  # a 3, b 2, <unk> 3, </s> 3
    (1, ADJUSTED): (1, 3, *ZEROS),  # continuation counts 2, 2, 2, 1
    (2, RAW): (4, 2, 1, 0, *ZEROS[:6]),  # 2 1 1 3 1 1 2
    (2, ADJUSTED): (4, 3, *ZEROS),  # <s>a 2 and <s>b 1 raw; the others' continuation counts 1 1 2 1 2
    (3, RAW): (6, 1, *ZEROS),
    (3, ADJUSTED): (3, 0, *ZEROS),  # only the three starting with <s>, raw
}


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_pruning_and_vocabulary_limit_by_hand(tmp_path: Path, scheduler: str, engine: str) -> None:
    path = tmp_path / "hand.txt"
    path.write_text(HAND_TEXT, encoding="utf-8")
    db = tmp_path / "hand.db"
    if engine == "local":
        build_local_base(db, [path], 3, "pretokenized", (1, 2, 2), 2)
    else:
        build_with_dask(
            db, [path], order=3, tokenizer="pretokenized", min_counts=(1, 2, 2), vocab_limit=2, scheduler=scheduler
        )
    assert by_words(db) == {"vocab": ["<unk>", "<s>", "</s>", "a", "b"], "ngrams": HAND_NGRAMS, "coc": HAND_COC}


def test_the_vocabulary_limit_breaks_ties_by_word_whatever_the_order_of_the_text() -> None:
    for text in ("z y x w\nz y\n", "w x y z\ny z\n"):  # z and y twice; w and x once
        vocab = Vocab()
        stream = encode_sentences(pretokenized_sentences(text), vocab)
        kept, mapping = limit_vocabulary(vocab, np.bincount(stream, minlength=len(vocab)), 3)
        assert sorted(kept.words[3:]) == ["w", "y", "z"]  # w beats x in the tie
        assert kept.words[3:] == [w for w in vocab.words[3:] if w != "x"]  # first occurrence order
        assert mapping[vocab.get("x")] == 0
    assert limit_vocabulary(vocab, np.bincount(stream), 10)[0] is vocab


def test_export_of_a_pruned_store_keeps_the_full_data_discounts(tmp_path: Path) -> None:
    files = corpus(tmp_path, "pretokenized")
    build_local_base(tmp_path / "p.db", files, ORDER, "pretokenized", (1, 2), None)
    vocab = Vocab()
    text = "".join(p.read_text(encoding="utf-8") for p in files)
    tables = prune(count_ngrams(encode_sentences(pretokenized_sentences(text), vocab), ORDER, vocab), (1, 2))
    export_arpa(tables, tmp_path / "memory.arpa")
    assert arpa_bytes(tmp_path / "p.db") == (tmp_path / "memory.arpa").read_bytes()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,x", "positive integers"),
        ("", "positive integers"),
        ("1,0,2", "positive integers"),
        ("2,2", "first cut-off must be 1"),
        ("1,3,2", "must not decrease"),
        ("1,2,2,1", "must not decrease"),
        ("1,1,1,1,1", "gives 5 cut-offs but the order is 4"),
    ],
)
def test_bad_cutoffs_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_min_counts(text, 4)


# --- a worker killed mid-build ----------------------------------------------------------------------------------------
def test_a_worker_killed_once_mid_build_is_retried_with_the_same_result(tmp_path: Path, two_workers: str) -> None:
    files = corpus(tmp_path / "in", "prose")
    local_build(tmp_path / "local.db", files, "prose", (1, 2, 2), 8)
    marker = tmp_path / "killed-once"
    build_with_dask(
        tmp_path / "dask.db",
        files,
        order=ORDER,
        tokenizer="prose",
        min_counts=(1, 2, 2),
        vocab_limit=8,
        scheduler=two_workers,
        partitions=3,
        hook=functools.partial(kill_worker, when=("count", 0), marker=str(marker)),
    )
    assert marker.exists()  # the worker did die
    assert arpa_bytes(tmp_path / "dask.db") == arpa_bytes(tmp_path / "local.db")


def test_a_task_that_always_kills_its_worker_fails_cleanly(tmp_path: Path, two_workers: str) -> None:
    files = corpus(tmp_path / "in", "pretokenized")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(StoreError) as failure:
        build_with_dask(
            out / "dask.db",
            files,
            order=ORDER,
            tokenizer="pretokenized",
            scheduler=two_workers,
            hook=functools.partial(kill_worker, when=("reduce", 0)),
        )
    message = str(failure.value)
    assert message.startswith("the Dask build failed, no store was written: KilledWorker: ")
    assert "reduce_partition" in message and "\n" not in message
    assert list(out.iterdir()) == []  # neither the store nor its temporary file


# --- the command line -------------------------------------------------------------------------------------------------
def test_cli_dask_build_on_its_own_local_cluster_equals_the_local_build(tmp_path: Path) -> None:
    files = corpus(tmp_path / "in", "pretokenized")
    common = ("--order", ORDER, "--pretokenized", "--prune", "1,1,2", "--vocab-limit", 7)
    ok("build", "--db", tmp_path / "local.db", *common, *files)
    said = ok("build", "--engine", "dask", "--workers", 2, "--db", tmp_path / "dask.db", *common, *files)
    assert said.startswith(f"{tmp_path / 'dask.db'}: ") and "4-grams" in said
    for name in ("local", "dask"):
        ok("export-arpa", "--db", tmp_path / f"{name}.db", "-o", tmp_path / f"{name}.arpa")
    assert (tmp_path / "dask.arpa").read_bytes() == (tmp_path / "local.arpa").read_bytes()


def test_cli_dask_build_on_a_scheduler_equals_the_plain_local_build(tmp_path: Path, scheduler: str) -> None:
    files = corpus(tmp_path / "in", "prose")
    ok("build", "--db", tmp_path / "local.db", "--order", 3, *files)
    ok("build", "--engine", "dask", "--scheduler", scheduler, "--db", tmp_path / "dask.db", "--order", 3, *files)
    assert arpa_bytes(tmp_path / "dask.db") == arpa_bytes(tmp_path / "local.db")


@pytest.mark.parametrize("cutoffs", ["1,x", "2,2", "1,3,2", "", "1,1,1,1,1,1"])
@pytest.mark.parametrize("engine", ["local", "dask"])
def test_cli_bad_prune_strings_are_one_line_errors(tmp_path: Path, cutoffs: str, engine: str) -> None:
    text = corpus(tmp_path, "pretokenized")[0]
    message = error_of("build", "--engine", engine, "--prune", cutoffs, "--db", tmp_path / "s.db", text)
    assert "--prune" in message
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--vocab-limit", 0), "--vocab-limit must be at least 1"),
        (("--engine", "dask", "--workers", 0), "--workers must be at least 1"),
        (("--scheduler", "tcp://127.0.0.1:1"), "--scheduler and --workers go with --engine dask"),
        (("--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--workers", 2), "a --scheduler brings its own"),
    ],
)
def test_cli_bad_engine_options_are_one_line_errors(tmp_path: Path, args: tuple[object, ...], message: str) -> None:
    text = corpus(tmp_path, "prose")[0]
    assert message in error_of("build", *args, "--db", tmp_path / "s.db", text)
    assert not (tmp_path / "s.db").exists()


def test_cli_dask_build_refuses_an_existing_store_and_leaves_it_untouched(tmp_path: Path, scheduler: str) -> None:
    files = corpus(tmp_path / "in", "prose")
    db = tmp_path / "s.db"
    ok("build", "--db", db, "--order", 3, files[0])
    before = db.read_bytes()
    message = error_of("build", "--engine", "dask", "--scheduler", scheduler, "--db", db, *files)
    assert "already exists" in message
    assert db.read_bytes() == before


def test_cli_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    text = corpus(tmp_path, "prose")[0]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        message = error_of(
            "build", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--db", tmp_path / "s.db", text
        )
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in message
    assert not (tmp_path / "s.db").exists()


def test_cli_without_dask_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = corpus(tmp_path, "prose")[0]
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    message = error_of("build", "--engine", "dask", "--db", tmp_path / "s.db", text)
    assert "pip install 'nextword[dask]'" in message
    assert not (tmp_path / "s.db").exists()


def test_cli_a_failed_local_pruned_build_leaves_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the cat \xff\n")
    assert "not valid UTF-8" in error_of("build", "--prune", "1,2", "--db", tmp_path / "s.db", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.txt"]
