"""Long editing sessions: caches bounded in bytes, completions that never wait for a learn, checkpoints out of the
learns. Real SQLite stores of their own, tiny texts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lm_core.ngram import NgramModel
from lm_core.oddities import OddityConfig
from lsp_server.engine import Engine
from lsp_server.heap import HeapTrimmer
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


def test_the_latest_learned_sentences_are_the_newest_sources_whole_oldest_first(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with CountStore.open(path, order=3, tokenizer="pretokenized", create=True) as store:
        for i, text in enumerate(["a b c\nd e\n", "f g\n", "h i j k\n"]):
            store.learn(f"doc{i}", text)
        everything = store.learned_sentences()
        assert everything == [
            ["a", "b", "c", "</s>"],
            ["d", "e", "</s>"],
            ["f", "g", "</s>"],
            ["h", "i", "j", "k", "</s>"],
        ]
        # tokens count `</s>` and not `<s>`: the newest source has 5, the one before 3, the first 7
        assert store.learned_sentences(latest_tokens=5) == everything[3:]
        assert store.learned_sentences(latest_tokens=6) == everything[2:]  # the source crossing the mark is whole
        assert store.learned_sentences(latest_tokens=8) == everything[2:]
        assert store.learned_sentences(latest_tokens=9) == everything
        assert store.learned_sentences(latest_tokens=10**6) == everything


def test_the_user_layer_holds_only_the_latest_learned_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lsp_server.engine as engine_module

    path = tmp_path / "u.db"
    with CountStore.open(path, order=3, tokenizer="pretokenized", create=True) as store:
        store.learn("base", "the cat sat on the mat\nthe dog sat on the log\n")
    monkeypatch.setattr(engine_module, "USER_LAYER_TOKENS", 8)
    engine = Engine.open(path)
    engine.enable_adaptation()
    assert engine.adaptation is not None and engine.adaptation.user_tokens == 14  # the base text: 2 x 7 tokens
    engine.learn("one", "a red car ran\n")  # 5 tokens: with the base's last ones the mark is crossed
    assert engine.adaptation.user_tokens == 5 + 14
    engine.learn("two", "the red car sat on the log\n")  # 8 tokens: the mark is reached by this source alone
    assert engine.adaptation.user_tokens == 8
    assert engine.adaptation.user is not None
    assert set(engine.adaptation.user.vocabulary_words()) >= {"red", "car", "log"}
    assert "mat" not in engine.adaptation.user.vocabulary_words()  # the base left the user layer
    engine.close()


def test_the_user_layer_is_rebuilt_once_enough_new_text_came_and_at_once_after_a_forget(tmp_path: Path) -> None:
    path = tmp_path / "u.db"
    with CountStore.open(path, order=3, tokenizer="pretokenized", create=True) as store:
        store.learn("base", "the cat sat on the mat\nthe dog sat on the log\n" * 150)  # 2,100 tokens
    engine = Engine.open(path)
    engine.enable_adaptation()
    adaptation = engine.adaptation
    assert adaptation is not None and adaptation.user_tokens == 2_100
    layer = adaptation.user
    engine.learn("one", "a red car ran\n")  # 5 tokens: under 1 % of the layer, which stays as it was
    assert adaptation.user is layer and adaptation.user_tokens == 2_100
    assert adaptation.is_learned(["a", "red", "car", "ran", "</s>"])  # not held out again if saved again
    assert engine.model.logprob("red", ("a",)) > engine.model.logprob("blue", ("a",))  # the store has it at once
    engine.learn("two", "the red car sat on the log today\n" * 3)  # 27 more: the lag reaches 1 %, rebuilt
    assert adaptation.user is not layer and adaptation.user_tokens == 2_100 + 5 + 27
    assert "red" in adaptation.user.vocabulary_words()
    engine.learn("three", "a blue zebra ran\n" * 5)  # 25 tokens: rebuilt again
    assert "zebra" in adaptation.user.vocabulary_words()
    engine.learn("four", "a cat ran\n")  # 4 tokens: no rebuild ...
    engine.forget("three")  # ... but a forget rebuilds at once: the forgotten text leaves the user layer now
    assert adaptation.user_tokens == 2_100 + 5 + 27 + 4 and "zebra" not in adaptation.user.vocabulary_words()
    engine.close()


def test_learning_and_checking_stop_at_yield_points(store_path: Path) -> None:
    engine = Engine.open(store_path)
    engine.enable_adaptation()
    calls = []
    engine.yield_point = lambda: calls.append(1)
    engine.learn("one", "The dog saw the cat. The cat sat on the log.")
    held_out = 2  # both sentences are new, 6 tokens each with their end: one piece each (HELD_OUT_PIECE_TOKENS)
    assert len(calls) >= held_out + 2  # each held-out piece, before the store's learn and before the user layer
    calls.clear()
    engine.check(" ".join(words(i) for i in range(1000, 1000 + 3 * 20, 3)))  # 20 new sentences: 3 batches of 8
    assert len(calls) == 3
    engine.close()


def test_background_work_waits_while_a_completion_is_in_flight() -> None:
    from lsp_server import server as server_module

    ls = server_module.NextwordServer()
    ls.waiting = 1
    threading.Timer(0.05, lambda: setattr(ls, "waiting", 0)).start()
    started = time.monotonic()
    ls.yield_to_waiting()
    waited = time.monotonic() - started
    assert 0.04 <= waited < server_module.YIELD_MAX_S
    ls.waiting = 1  # a completion that never ends cannot starve the background for more than YIELD_MAX_S
    started = time.monotonic()
    ls.yield_to_waiting()
    assert server_module.YIELD_MAX_S <= time.monotonic() - started < server_module.YIELD_MAX_S + 0.2
    ls.waiting = 0
    started = time.monotonic()
    ls.yield_to_waiting()
    assert time.monotonic() - started < 0.01


def test_work_on_the_interactive_thread_never_waits_for_itself() -> None:
    from lsp_server import server as server_module

    ls = server_module.NextwordServer()
    ls.waiting = 1  # the completion that runs the work itself
    started = time.monotonic()
    ls.interactive.submit(ls.yield_to_waiting).result()
    assert time.monotonic() - started < 0.05
    ls.interactive.shutdown()


def test_the_user_layer_memo_is_within_the_cache_budget_before_and_after_a_learn(store_path: Path) -> None:
    engine = Engine.open(store_path)
    engine.set_cache_budget(8 * 2**20)
    engine.enable_adaptation()
    assert engine.adaptation is not None and engine.adaptation.user is not None
    assert engine.adaptation.user.memo_bytes == 2**19  # a sixteenth of the budget
    assert engine.ngram.memo_bytes == 2**19
    engine.learn("doc", "The red car ran to the log. A dog sat on the mat.")
    assert engine.adaptation.user.memo_bytes == 2**19  # the rebuilt user layer too
    engine.set_cache_budget(2**20)
    assert engine.adaptation.user.memo_bytes == 2**16
    engine.close()


def test_the_oddity_tables_are_out_of_the_collectors_reach_once_loaded(store_path: Path) -> None:
    """A full collection walks every object it tracks: the oddity tables (lemminflect's forms, the vocabulary's
    indexes), loaded once, are moved out of its reach as the model's are (`gc.freeze`)."""
    import gc

    from lsp_server import server as server_module

    ls = server_module.NextwordServer(db=str(store_path))
    try:
        server_module._warm_oddities(ls)
        vocabulary = ls.engine().oddity_vocabulary()
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(vocabulary) and not any(o is vocabulary for o in gc.get_objects())
    finally:
        gc.unfreeze()
        ls.engine().close()


def test_notifications_leave_no_future_behind() -> None:
    """pygls files a future for each notification a generator or coroutine handles (didChange: every keystroke) and
    never drops it; the server's protocol drops each once done."""
    import asyncio

    from lsprotocol import types

    from lsp_server import server as server_module

    ls = server_module.NextwordServer()

    async def notify_many() -> int:
        for _ in range(50):
            ls.protocol._handle_notification(types.SET_TRACE, types.SetTraceParams(value=types.TraceValue.Off))
        await asyncio.sleep(0.05)
        return len(ls.protocol._request_futures)

    assert asyncio.run(notify_many()) == 0


def test_after_a_learn_the_first_suggestion_derives_no_tables(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The learn's own thread derives the counts' new version, Kneser-Ney's unigram level and the mixture's word
    alignments (a new word included), and a new user layer is readied before it is used: the next suggestion (the
    interactive thread's) computes none of them."""
    from lm_core import blend

    engine = Engine.open(store_path)
    engine.enable_adaptation()
    engine.next_words(("<s>", "the"), 3)
    engine.learn("file:///a.md", "The brandnewword sat on the mat. The cat saw the brandnewword.")
    derived: list[str] = []
    unigram_level = NgramModel._kneser_ney
    extended, made = blend._extended_alignment, blend._alignment_from

    def spy(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            derived.append(name)
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(NgramModel, "_kneser_ney", spy("unigram level", unigram_level))
    monkeypatch.setattr(blend, "_extended_alignment", spy("alignment extended", extended))
    monkeypatch.setattr(blend, "_alignment_from", spy("alignment", made))
    suggestions = engine.next_words(("<s>", "the"), 3, prefix="brand")
    assert [s.word.casefold() for s in suggestions] == ["brandnewword"]  # the new version is the one suggesting
    assert derived == []
    engine.close()


def test_a_learn_patches_the_follower_lists_it_changed_in_the_cache(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit's own rows update the cached lists (no read; when a list is next asked for): each equals a fresh
    read, after a learn that adds followers and counts and after a forget that removes some."""
    from store import sqlite_counts

    monkeypatch.setattr(sqlite_counts, "PATCH_MIN_FOLLOWERS", 1)  # the toy store's lists are all short
    with CountStore.open(store_path) as store:
        counts = SqliteCounts(store)
        vocab = store.vocab

        def cached_equal_fresh() -> list[tuple[int, ...]]:
            counts.version  # noqa: B018  (notice the commit)
            fresh = SqliteCounts(store)
            kept_contexts = list(counts._levels)
            for context in kept_contexts:
                kept, read = counts.level(context), fresh.level(context)
                assert (kept.ids.tolist(), kept.count.tolist(), kept.cont.tolist()) == (
                    read.ids.tolist(),
                    read.count.tolist(),
                    read.cont.tolist(),
                ), context
            fresh.close()
            assert list(counts._levels) == kept_contexts  # patched in place: none dropped and read again
            return kept_contexts

        contexts = [(vocab.get("the"),), (vocab.get("cat"),), (vocab.get("the"), vocab.get("cat")), (vocab.get("dog"),)]
        for context in contexts:
            counts.level(context)
        store.learn("doc", "The cat sat on the big rug. The cat ran. A dog sat on the rug.")
        assert set(cached_equal_fresh()) >= set(contexts)  # patched, not dropped
        assert "big" in [vocab.words[i] for i in counts.level(contexts[0]).ids.tolist()]
        store.forget("doc")
        assert set(cached_equal_fresh()) >= set(contexts)
        assert "big" not in [vocab.words[i] for i in counts.level(contexts[0]).ids.tolist()]
        counts.level(())
        store.learn("one", "The cat saw a huge zebra.")  # two commits before the lists are read again: their rows
        store.learn("two", "The zebra saw the cat. The huge cat ran.")  # are merged, the later ones winning
        assert set(cached_equal_fresh()) >= {*contexts, ()}
        assert "zebra" in [vocab.words[i] for i in counts.level(()).ids.tolist()]
        store.forget("one")  # the unigram level loses words (their ids found by binary search) and changes counts
        store.forget("two")
        assert set(cached_equal_fresh()) >= {*contexts, ()}
        assert "zebra" not in [vocab.words[i] for i in counts.level(()).ids.tolist()]
        counts.close()


def test_a_learn_forgets_the_display_casing_of_its_own_words_only(store_path: Path) -> None:
    engine = Engine.open(store_path)
    assert engine.display("zorblax", False) == "zorblax"  # not known yet: shown as typed
    engine.display("dog", False)
    engine.learn("doc", "Zorblax met Zorblax on the mat. Zorblax said hello.")
    assert "dog" in engine._casing  # kept: the learn did not hold it
    assert "zorblax" not in engine._casing
    assert engine.display("zorblax", False) == "Zorblax"  # read again: the learned casing
    engine.close()


def commit_once_during(monkeypatch: pytest.MonkeyPatch, method: str, store: CountStore, text: str) -> list[bool]:
    """Make `NgramModel.<method>` learn `text` into `store` (a commit, as another thread's would land) the first time
    it is called, before it does its work; the list returned holds True once that happened."""
    original = getattr(NgramModel, method)
    learned: list[bool] = []

    def commit_first(self: NgramModel, *args: Any) -> Any:
        if not learned:
            learned.append(True)
            store.learn("doc", text)
        return original(self, *args)

    monkeypatch.setattr(NgramModel, method, commit_first)
    return learned


def test_a_distribution_is_read_from_one_version_of_the_counts(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A learn on another thread may commit while a completion reads the store model's distribution: the word list
    and the probabilities must still come from one version (a server's completion failed on 40,657 words against
    40,658 probabilities)."""
    with CountStore.open(store_path) as store:
        model = NgramModel(SqliteCounts(store))
        context = ("<s>", "the")
        model.distribution_arrays(context)
        # a commit lands between the word list and the probabilities
        learned = commit_once_during(monkeypatch, "_kneser_ney_dense", store, "The quokka sat on the mat.")
        words, probs = model.distribution_arrays(context)
        monkeypatch.undo()
        assert learned and len(words) == len(probs)
        fresh_words, fresh_probs = NgramModel(SqliteCounts(store)).distribution_arrays(context)
        assert words == fresh_words and probs.tolist() == fresh_probs.tolist()
        assert "quokka" in words


def test_a_follower_list_read_after_a_commit_never_meets_the_old_versions_word_positions(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit lands after the dense distribution took the vocabulary's positions and before it reads a follower
    list: the list names a word the positions do not have (a 1,000-document soak's completion failed on "index
    41044 is out of bounds for axis 0 with size 41044"); the distribution is read again, from one version."""
    with CountStore.open(store_path) as store:
        model = NgramModel(SqliteCounts(store))
        context = ("<s>", "the")
        model.distribution_arrays(context)
        text = "The quokka sat on the mat. The quokka ran."  # "quokka" now follows "the"
        learned = commit_once_during(monkeypatch, "_kn_level", store, text)
        words, probs = model.distribution_arrays(context)
        monkeypatch.undo()
        fresh_words, fresh_probs = NgramModel(SqliteCounts(store)).distribution_arrays(context)
        assert learned and words == fresh_words and probs.tolist() == fresh_probs.tolist()
        assert "quokka" in words


def test_a_table_made_from_an_older_word_list_is_never_kept_for_the_new_version(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dense distribution takes V's ids, then a learn commits before the unigram level over V is made: that
    table must come from the new version's ids, not the ids taken before (kept under the new version, it made every
    later completion of that version fail: "the counts kept gaining words" in a 1,000-document soak)."""
    with CountStore.open(store_path) as store:
        model = NgramModel(SqliteCounts(store))
        context = ("<s>", "the")
        model.distribution_arrays(context)
        # after V's ids were taken, before the positions and the unigram level are made
        learned = commit_once_during(monkeypatch, "_vocabulary_positions", store, "The quokka sat on the mat.")
        words, probs = model.distribution_arrays(context)
        monkeypatch.undo()
        fresh = NgramModel(SqliteCounts(store))
        for ctx in (context, ("<s>",), ("the", "quokka")):
            words, probs = model.distribution_arrays(ctx)
            fresh_words, fresh_probs = fresh.distribution_arrays(ctx)
            assert words == fresh_words and probs.tolist() == fresh_probs.tolist()
        assert learned and "quokka" in words
        assert model.logprob("quokka", ("the",)) == fresh.logprob("quokka", ("the",))


def test_a_value_made_for_an_old_version_never_lands_in_the_new_versions_memo(store_path: Path) -> None:
    """Two threads: one makes the word list for version v1 while the other, after a commit, already reads version
    v2; the v1 list must not end up in v2's memo (a server's completion failed on an index past the end)."""
    with CountStore.open(store_path) as store:
        model = NgramModel(SqliteCounts(store))
        context = ("<s>", "the")
        model.distribution_arrays(context)
        store.learn("first", "A wombat ran to the mat.")  # version v1
        make = model._current_vocabulary_words

        def made_while_another_thread_moves_on() -> list[str]:
            words = make()  # the list of v1
            store.learn("second", "The quokka sat on the mat.")  # version v2 ...
            model.vocabulary_ids()  # ... which the other thread reads at once
            return words

        model._current_vocabulary_words = made_while_another_thread_moves_on  # type: ignore[method-assign]
        model.vocabulary_words()
        model._current_vocabulary_words = make  # type: ignore[method-assign]
        words, probs = model.distribution_arrays(context)
        fresh_words, fresh_probs = NgramModel(SqliteCounts(store)).distribution_arrays(context)
        assert len(words) == len(probs) and words == fresh_words and probs.tolist() == fresh_probs.tolist()
        assert "quokka" in words


def _resident_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not HeapTrimmer().available, reason="the C library has no malloc_trim (not glibc)")
def test_the_heap_trimmer_gives_freed_memory_back_at_most_once_an_interval() -> None:
    trimmer = HeapTrimmer(interval_s=3600)
    trimmer.trim_if_due()
    blocks = [bytes(2048) for _ in range(40_000)]  # ~80 MB from malloc (too big for Python's small-object arenas)
    kept = blocks[::64]  # a block kept every 128 KB: freed memory is not at the heap's top, so free() keeps it
    del blocks
    before = _resident_mb()
    assert not trimmer.trim_if_due(after_s=0.05)  # within the interval, after short work: nothing done
    assert _resident_mb() > before - 20
    assert HeapTrimmer(interval_s=0).trim_if_due()
    assert _resident_mb() < before - 40
    assert len(kept) == 625
    assert trimmer.trim_if_due(after_s=0.5) and not trimmer.trim_if_due()  # after long work: at once, interval or not


ROOT = Path(__file__).resolve().parent.parent
MALLINFO = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                                "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
"""
MAPPED_AFTER_A_FREED_BLOCK = """
import numpy as np
if sys.argv[1] == "tuned":
    from lsp_server.heap import tune_malloc
    assert tune_malloc()
first = np.ones(500_000); del first  # 4 MB, mapped, then freed
before = libc.mallinfo2().hblkhd
second = np.ones(500_000)
print(libc.mallinfo2().hblkhd - before)
"""
HEAP_TOP_KEPT_AFTER_A_FREE = """
from lsp_server.heap import tune_malloc
assert tune_malloc()
block = bytearray(900_000)  # under the mmap threshold: the heap's top
before = libc.mallinfo2().arena
del block
print(before - libc.mallinfo2().arena)
"""


def _bytes_in_a_fresh_process(script: str, *args: str) -> int:
    """The number `script` (after MALLINFO) prints, run in a new interpreter with no MALLOC_ settings of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", MALLINFO + script, *args], capture_output=True, text=True, env=env, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not HeapTrimmer().available, reason="not glibc")
def test_freeing_a_block_at_the_top_of_the_heap_keeps_the_heap() -> None:
    """The trim threshold is set with the mmap threshold (fixing one stops glibc raising the other from 128 KB):
    otherwise the heap's top went back to the system at every free and every completion faulted it in again."""
    assert _bytes_in_a_fresh_process(HEAP_TOP_KEPT_AFTER_A_FREE) == 0


@pytest.mark.skipif(not HeapTrimmer().available, reason="not glibc")
@pytest.mark.parametrize("mode", ["default", "tuned"])
def test_large_blocks_keep_their_own_mapping_after_one_was_freed(mode: str) -> None:
    """glibc alone raises its mmap threshold to a freed mapped block's size, so the next block that large comes from
    the heap (where its hole stays); with `tune_malloc` it is mapped again (given back when freed)."""
    mapped = _bytes_in_a_fresh_process(MAPPED_AFTER_A_FREED_BLOCK, mode)
    if mode == "tuned":
        assert mapped >= 4_000_000
    else:
        assert mapped < 1_000_000  # what the tuning is for: without it, the heap


@pytest.mark.skipif(not HeapTrimmer().available, reason="the C library has no malloc_trim (not glibc)")
def test_a_trim_declined_within_the_interval_runs_when_the_interval_is_over() -> None:
    trimmer = HeapTrimmer(interval_s=1.0)
    assert trimmer.trim_if_due()
    blocks = [bytes(2048) for _ in range(40_000)]
    kept = blocks[::64]
    del blocks
    before = _resident_mb()
    assert not trimmer.trim_if_due() and trimmer.deferred  # declined, and promised for the interval's end
    assert not trimmer.trim_if_due()  # a second decline promises nothing more
    assert _resident_mb() > before - 20
    deadline = time.monotonic() + 10
    while trimmer.deferred and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not trimmer.deferred
    assert _resident_mb() < before - 40  # the freed memory went back without any further work
    assert len(kept) == 625
    assert not trimmer.trim_if_due()  # the deferred trim counts as the interval's trim


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="threads have their own priority on Linux")
def test_background_and_training_threads_run_at_a_lower_priority() -> None:
    from lsp_server import server as server_module

    ls = server_module.NextwordServer()
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    expected = min(19, own + server_module.BACKGROUND_NICE)
    assert ls.background.submit(niceness).result() == expected
    assert ls.training.submit(niceness).result() == expected
    assert ls.interactive.submit(niceness).result() == own  # completions keep the process's priority
    for pool in (ls.background, ls.training, ls.interactive):
        pool.shutdown()


def test_a_learn_that_changes_too_much_to_list_drops_the_cached_lists(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over RECORD_MAX_ROWS changed n-grams, the commit is not listed for this process's readers: they drop what
    they cached (instead of walking a list of millions under their lock) and read it again, equal to a fresh read."""
    from store import countstore

    monkeypatch.setattr(countstore, "RECORD_MAX_ROWS", 8)
    with CountStore.open(store_path) as store:
        counts = SqliteCounts(store)
        vocab = store.vocab
        context = (vocab.get("the"),)
        counts.level(context)
        store.learn("small", "the cat")  # at most 6 n-grams of order 2 and up ("<s> the", "the cat", ...): listed
        assert store.changes_since(store.commits - 1) is not None
        store.learn("large", "The cat sat on the big rug. The cat ran. A dog sat on the rug.")
        assert store.changes_since(store.commits - 1) is None
        counts.version  # noqa: B018  (notice the commit)
        assert context not in counts._levels  # dropped, not patched
        fresh = SqliteCounts(store)
        kept, read = counts.level(context), fresh.level(context)
        assert (kept.ids.tolist(), kept.count.tolist()) == (read.ids.tolist(), read.count.tolist())
        assert "big" in [vocab.words[i] for i in kept.ids.tolist()]
        fresh.close()


def test_an_engine_learns_several_documents_in_one_commit_as_it_would_one_by_one(tmp_path: Path) -> None:
    """`Engine.learn_many`: the store ends as learning the documents one by one leaves it, after one commit (what
    every suggestion derives changes once), and the adaptive mixture holds every sentence as learned."""
    import shutil

    from tests.conftest import store_snapshot

    base = tmp_path / "base.db"
    with CountStore.open(base, order=3, tokenizer="prose", create=True) as store:
        store.learn("base", TEXT)
    documents = [
        ("doc1", "The zorblax sat on the mat. A dog ran."),
        ("doc2", "The cat saw a zorblax. The zorblax ran to the log."),
        ("doc3", "A red car went by. The cat sat."),
    ]
    shutil.copy(base, tmp_path / "one.db")
    one_by_one = Engine.open(tmp_path / "one.db")
    one_by_one.enable_adaptation()
    for source, text in documents:
        one_by_one.learn(source, text)
    shutil.copy(base, tmp_path / "many.db")
    together = Engine.open(tmp_path / "many.db")
    together.enable_adaptation()
    commits = together.store.commits
    assert together.learn_many([]) == [] and together.store.commits == commits  # nothing to learn: no commit
    results = together.learn_many(documents)
    assert together.store.commits == commits + 1
    assert [r.source for r in results] == ["doc1", "doc2", "doc3"]
    assert [r.tokens for r in results] == [s.tokens for s in one_by_one.sources() if s.name.startswith("doc")]
    assert store_snapshot(together.store) == store_snapshot(one_by_one.store)
    assert together.adaptation is not None
    from store import streaming

    learned = [s for _, t in documents for s in streaming.analyse_pausing(t, "prose", None).sentences]
    assert learned and all(together.adaptation.is_learned(s) for s in learned)
    assert "zorblax" in [s.word.casefold() for s in together.next_words(("<s>", "the"), 5)]
    one_by_one.close()
    together.close()


def _learning_server(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[list[str]]]:
    """A server over the store whose engine notes the sources of every learn (the real learn runs)."""
    from lsp_server import server as server_module

    ls = server_module.NextwordServer(db=str(store_path))
    engine = ls.engine()
    calls: list[list[str]] = []
    learn_many = engine.learn_many

    def noted(documents: list[tuple[str, str]], kind: str = "document") -> list[Any]:
        calls.append([source for source, _ in documents])
        return learn_many(documents, kind)

    monkeypatch.setattr(engine, "learn_many", noted)
    return ls, calls


def test_documents_saved_while_typing_are_learned_together_once_typing_pauses(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from lsp_server import server as server_module

    ls, calls = _learning_server(store_path, monkeypatch)

    async def scenario() -> float:
        ls.last_interactive = time.monotonic()  # a completion was just answered
        started = time.monotonic()
        tasks = [
            asyncio.ensure_future(server_module.learn_together(ls, f"file:///d{i}.md", f"The zebra{i} ran home."))
            for i in range(3)
        ]
        await asyncio.sleep(server_module.LEARN_PAUSE_S / 3)
        assert calls == []  # typing has not paused yet
        results = await asyncio.gather(*tasks)
        assert [r.source for r in results] == [f"file:///d{i}.md" for i in range(3)]
        return time.monotonic() - started

    waited = asyncio.run(scenario())
    assert calls == [["file:///d0.md", "file:///d1.md", "file:///d2.md"]]  # one learn for the three
    assert waited >= server_module.LEARN_PAUSE_S
    assert {s.name for s in ls.engine().sources()} >= {f"file:///d{i}.md" for i in range(3)}
    ls.engine().close()


def test_saved_documents_are_learned_within_the_longest_wait_while_typing_goes_on(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from lsp_server import server as server_module

    monkeypatch.setattr(server_module, "LEARN_WAIT_MAX_S", 0.6)
    ls, calls = _learning_server(store_path, monkeypatch)

    async def typing(stop: asyncio.Event) -> None:
        while not stop.is_set():  # a completion every 20 ms: typing never pauses
            await ls.run(time.sleep, 0.005)
            await asyncio.sleep(0.015)

    async def scenario() -> float:
        stop = asyncio.Event()
        typist = asyncio.ensure_future(typing(stop))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        first = asyncio.ensure_future(server_module.learn_together(ls, "file:///a.md", "The quagga ran."))
        await asyncio.sleep(0.1)
        dropped = asyncio.ensure_future(server_module.learn_together(ls, "file:///b.md", "The okapi ran."))
        await asyncio.sleep(0.1)
        dropped.cancel()  # closed unsaved, or learning paused: it leaves the batch
        second = asyncio.ensure_future(server_module.learn_together(ls, "file:///c.md", "The eland ran."))
        await asyncio.gather(first, second)
        waited = time.monotonic() - started
        stop.set()
        await typist
        return waited

    waited = asyncio.run(scenario())
    assert calls == [["file:///a.md", "file:///c.md"]]
    assert 0.6 <= waited < 0.6 + 1.0
    assert "file:///b.md" not in {s.name for s in ls.engine().sources()}
    ls.engine().close()


def test_threads_sharing_a_models_memo_never_trip_over_each_others_evictions(store_path: Path) -> None:
    """The interactive and background threads share a model's Kneser-Ney memo; when it is full each evicts its
    older half, and an entry the other thread evicted first is simply gone (a soak's completion once failed with
    a KeyError there)."""
    with CountStore.open(store_path) as store:
        model = NgramModel(SqliteCounts(store))
        model.memo_bytes = 4_000  # a handful of entries: nearly every new context evicts
        vocab = [w for w in store.vocab.words[3:60]]
        contexts = [(a, b) for a in vocab[:20] for b in vocab[20:40]]
        failures: list[BaseException] = []
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # threads take turns as often as the interpreter allows

        def score(offset: int) -> None:
            try:
                for _ in range(5):
                    for context in contexts[offset:] + contexts[:offset]:
                        model.logprob("the", context)
            except BaseException as exc:  # reported by the assertion below
                failures.append(exc)

        try:
            threads = [threading.Thread(target=score, args=(k * 97,)) for k in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(switch)
        assert failures == []
        fresh = NgramModel(SqliteCounts(store))
        assert all(model.logprob("cat", c) == fresh.logprob("cat", c) for c in contexts[:50])


def test_the_change_log_keeps_a_few_commits_and_a_bounded_number_of_rows(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers in this process take each commit in right after it; what the store remembers of older commits is
    bounded (in commits and in rows), and a reader that fell further behind drops all it cached: still exact."""
    from store import countstore

    with CountStore.open(store_path) as store:
        counts = SqliteCounts(store)
        context = (store.vocab.get("the"),)
        counts.level(context)
        for i in range(countstore.CHANGE_LOG_SIZE + 3):
            store.learn(f"doc{i}", f"The cat sat on the mat number {i}.")
        assert store.changes_since(store.commits - countstore.CHANGE_LOG_SIZE) is not None
        assert store.changes_since(store.commits - countstore.CHANGE_LOG_SIZE - 1) is None
        monkeypatch.setattr(countstore, "CHANGE_LOG_ROWS", 10)
        store.learn("long", "The red dog ran to the big log by the old mill. " * 3)
        assert store.changes_since(store.commits - 1) is not None  # the newest is kept whatever its size
        assert store.changes_since(store.commits - 2) is None
        assert sum(c.size for c in store.changes_since(store.commits - 1) or []) > 10
        kept, fresh = counts.level(context), SqliteCounts(store).level(context)  # fell behind: read again
        assert (kept.ids.tolist(), kept.count.tolist(), kept.cont.tolist()) == (
            fresh.ids.tolist(),
            fresh.count.tolist(),
            fresh.cont.tolist(),
        )
        counts.close()
