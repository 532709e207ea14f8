"""Long editing sessions: caches bounded in bytes, completions that never wait for a learn, checkpoints out of the
learns. Real SQLite stores of their own, tiny texts."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lm_core.ngram import NgramModel
from lm_core.oddities import OddityConfig
from lsp_server.engine import Engine
from store.countstore import CountStore
from store.sqlite_counts import SqliteCounts, level_bytes

TEXT = (
    "The cat sat on the mat. The dog sat on the log. A cat saw a dog near the old mill. "
    "Their house is over there. It is too late to go to the shop. The weather was fine and the cat slept. "
)


def words(i: int) -> str:
    """A sentence of its own for each i (distinct words, so every sentence and context is new)."""
    return f"Word{i} follows word{i + 1} and then word{i + 2} ends it. "


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    with CountStore.open(path, order=3, tokenizer="prose", create=True) as store:
        store.learn("base", TEXT + "".join(words(i) for i in range(0, 600, 3)))
    return path


def test_the_follower_cache_stays_within_its_byte_budget(store_path: Path) -> None:
    with CountStore.open(store_path) as store:
        counts = SqliteCounts(store, cache_bytes=20_000)
        ids = [store.vocab.get(w) for w in store.vocab.words[3:]]
        for wid in ids:
            counts.level((wid,))
        assert 0 < counts.cached_bytes <= 20_000
        kept = list(counts._levels.items())
        assert counts.cached_bytes == sum(level_bytes(c, level) for c, level in kept)  # the count is exact
        assert kept[-1][0] == (ids[-1],)  # the most recent stays; the oldest went first
        assert (ids[0],) not in counts._levels
        counts.set_cache_bytes(2_000)  # a smaller budget evicts at once
        assert counts.cached_bytes <= 2_000
        counts.close()


def test_a_bounded_cache_gives_the_same_probabilities(store_path: Path) -> None:
    with CountStore.open(store_path) as store:
        small = NgramModel(SqliteCounts(store, cache_bytes=3_000))
        large = NgramModel(SqliteCounts(store))
        small.memo_bytes = 1_000
        contexts = [("<s>", "the"), ("the", "cat"), ("cat", "sat"), ("word30", "follows"), ("<s>",), ()]
        for context in contexts * 3:
            assert small.predict(context, 5) == large.predict(context, 5)
            assert small.logprob("dog", context) == large.logprob("dog", context)


def test_checked_sentences_stay_within_the_budget_and_results_do_not_change(store_path: Path) -> None:
    engine = Engine.open(store_path)
    try:
        document = "".join(words(i) for i in range(0, 300, 3)) + "The cat sat on the the mat."
        config = OddityConfig(threshold_bits=1.0)
        expected = engine.check(document, config)
        assert [o.word for o in expected.oddities] == ["the"]  # the doubled word
        engine.set_cache_budget(8 * 4_000)  # an eighth of it for checked sentences: a few of them
        assert engine.sentence_cache_bytes <= 4_000
        again = engine.check(document, config)  # most sentences were evicted: scored again, the same results
        assert again == expected
        assert 0 < engine.sentence_cache_bytes <= 4_000
    finally:
        engine.close()


def test_a_reader_never_waits_for_this_process_writer(store_path: Path) -> None:
    """A learn holds the store's lock for its whole transaction; a completion on another thread goes on reading the
    last committed counts meanwhile (it used to wait on the lock to check for other processes' commits)."""
    engine = Engine.open(store_path)
    try:
        before = engine.next_words(("<s>", "the"), 3)
        store = engine.store
        store.lock.acquire()  # what a learn in progress holds
        try:
            time.sleep(0.05)  # past OTHER_WRITERS_CHECK_S, so the reader wants to look for other writers
            done = threading.Event()
            result: list[object] = []

            def complete() -> None:
                result.append(engine.next_words(("<s>", "the"), 3))
                done.set()

            threading.Thread(target=complete).start()
            assert done.wait(5), "the completion waited for the writer's lock"
            assert result[0] == before
        finally:
            store.lock.release()
    finally:
        engine.close()


def test_deferred_checkpoints_leave_the_log_to_an_explicit_checkpoint(store_path: Path) -> None:
    with CountStore.open(store_path) as store:
        store.defer_checkpoints()
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        store.checkpoint()
        for i in range(5):
            store.learn(f"doc{i}", words(1000 + i))
        wal = Path(f"{store_path}-wal")
        pages = store.db.execute("PRAGMA page_size").fetchone()[0]
        assert wal.stat().st_size > 5 * pages  # the learns' pages wait in the log ...
        assert store.checkpoint() == 0  # ... until the checkpoint moves every one into the file
        reader = CountStore.open(store_path)
        try:
            assert reader.sources() == store.sources()  # nothing was lost or half-written
        finally:
            reader.close()
        store.lock.acquire()
        store.db.execute("BEGIN IMMEDIATE")
        try:
            assert store.checkpoint() == -1  # inside a write: not now
        finally:
            store.db.execute("ROLLBACK")
            store.lock.release()
