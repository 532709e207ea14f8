"""The store's invariant: after any learns, re-learns and forgets, its tables equal a fresh build of its sources."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.countstore import CountStore
from tests.conftest import store_snapshot

WORDS = ["the", "cat", "sat", "on", "a", "mat", "The", "Cat", "dog", "."]
counter = itertools.count()


def fresh_build(tmp: Path, docs: dict[str, str], order: int, tokenizer: str) -> dict[str, object]:
    path = tmp / f"fresh{next(counter)}.db"
    with CountStore.open(path, order=order, tokenizer=tokenizer, create=True) as store:
        for name in sorted(docs):
            store.learn(name, docs[name])
        return store_snapshot(store)


def test_relearning_an_edited_document_replaces_its_counts(tmp_path: Path) -> None:
    with CountStore.open(tmp_path / "s.db", order=3, tokenizer="pretokenized", create=True) as store:
        store.learn("doc", "a b c\nb c d\n")
        store.learn("doc", "a b d\n")
        assert store_snapshot(store) == fresh_build(tmp_path, {"doc": "a b d\n"}, 3, "pretokenized")


def test_forgetting_every_source_empties_the_store(tmp_path: Path) -> None:
    with CountStore.open(tmp_path / "s.db", order=4, tokenizer="prose", create=True) as store:
        store.learn("one", "The cat sat. The Cat ran!")
        store.learn("two", "A dog sat on the mat.")
        store.forget("one")
        store.forget("two")
        result = store_snapshot(store)
    assert result["ngrams"] == {}
    assert all(v == (0,) * 10 for v in result["coc"].values())
    assert result["casing"] == []


def test_bulk_build_equals_learning_each_file(tmp_path: Path) -> None:
    files = []
    for i, text in enumerate(["the cat sat\non the mat\n", "the dog sat\n", "a cat\n"]):
        files.append(tmp_path / f"f{i}.txt")
        files[-1].write_text(text)
    with CountStore.open(tmp_path / "bulk.db", order=3, tokenizer="pretokenized", create=True) as bulk:
        bulk.build(files)
        built = store_snapshot(bulk)
    with CountStore.open(tmp_path / "chunked.db", order=3, tokenizer="pretokenized", create=True) as chunked:
        chunked.build(files, chunk_tokens=3)  # merges chunk by chunk through the incremental path
        assert store_snapshot(chunked) == built
    docs = {str(f): f.read_text() for f in files}
    assert built == fresh_build(tmp_path, docs, 3, "pretokenized")


def test_a_large_new_source_learned_in_chunks_equals_learning_it_at_once(tmp_path: Path) -> None:
    text = "the cat sat\non the mat\nthe dog sat on the cat\na\n\nthe mat sat\n" * 3
    with CountStore.open(tmp_path / "whole.db", order=3, tokenizer="pretokenized", create=True) as whole:
        whole.learn("base", "the cat ran\n")
        at_once = whole.learn("doc", text)
        expected = store_snapshot(whole)
    with CountStore.open(tmp_path / "chunked.db", order=3, tokenizer="pretokenized", create=True) as chunked:
        chunked.learn("base", "the cat ran\n")
        chunked.chunk_tokens = 4  # every chunk a sentence or two: n-grams recur across chunks, and in "base"
        in_chunks = chunked.learn("doc", text)
        assert store_snapshot(chunked) == expected
        assert in_chunks == at_once  # the same tokens, and each changed row counted once
        # distinct n-grams of `text`: 9 of order 1 (7 words, </s> and the <s> row), 16 bigrams, 16 trigrams
        assert at_once.changed_ngrams == 9 + 16 + 16
        chunked.forget("doc")
        chunked.learn("doc", text)  # learned again after a forget: chunked again, still equal
        assert store_snapshot(chunked) == expected


sentence = st.lists(st.sampled_from(WORDS), min_size=0, max_size=7).map(" ".join)
document = st.lists(sentence, min_size=0, max_size=4).map("\n".join)
operation = st.tuples(st.sampled_from(["learn", "learn", "forget"]), st.sampled_from(["d1", "d2", "d3"]), document)


@pytest.mark.parametrize("tokenizer", ["pretokenized", "prose"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=12))
def test_any_sequence_of_learns_and_forgets_equals_a_fresh_build(
    tmp_path: Path, tokenizer: str, operations: list[tuple[str, str, str]]
) -> None:
    path = tmp_path / f"prop{next(counter)}.db"
    docs: dict[str, str] = {}
    with CountStore.open(path, order=3, tokenizer=tokenizer, create=True) as store:
        for op, name, text in operations:
            if op == "learn":
                store.learn(name, text)
                docs[name] = text
            elif name in docs:
                store.forget(name)
                del docs[name]
        assert store_snapshot(store) == fresh_build(tmp_path, docs, 3, tokenizer)


names = st.sampled_from(["d1", "d2", "d3"])


@pytest.mark.parametrize("tokenizer", ["pretokenized", "prose"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.dictionaries(names, document, max_size=3),
    together=st.dictionaries(names, document, min_size=1, max_size=3),
)
def test_learning_several_sources_at_once_equals_learning_them_one_after_another(
    tmp_path: Path, tokenizer: str, before: dict[str, str], together: dict[str, str]
) -> None:
    """One count update for several sources (`learn_many_analysed`, new ones and ones learned before) leaves the
    tables a fresh build of every source's current text gives, and each source's own contribution on record: forgetting
    any one of them afterwards leaves a fresh build of the others."""
    from store import sources, streaming

    path = tmp_path / f"many{next(counter)}.db"
    with CountStore.open(path, order=3, tokenizer=tokenizer, create=True) as store:
        for name in sorted(before):
            store.learn(name, before[name])
        analysed = [(n, streaming.analyse_pausing(t, tokenizer, None), sources.sha256(t)) for n, t in together.items()]
        results = store.learn_many_analysed(analysed)
        current = {**before, **together}
        assert store_snapshot(store) == fresh_build(tmp_path, current, 3, tokenizer)
        assert [(r.source, r.replaced, r.tokens) for r in results] == [
            (n, n in before, a.tokens) for n, a, _ in analysed
        ]
        assert {s.name: s.sha256 for s in store.sources()} == {n: sources.sha256(t) for n, t in current.items()}
        gone = sorted(together)[0]
        store.forget(gone)
        del current[gone]
        assert store_snapshot(store) == fresh_build(tmp_path, current, 3, tokenizer)


def test_a_source_named_twice_in_one_learn_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    from store import sources, streaming

    with CountStore.open(tmp_path / "s.db", order=3, tokenizer="prose", create=True) as store:
        store.learn("a", "The cat sat.")
        before = store_snapshot(store)
        text = "A dog ran."
        analysed = streaming.analyse_pausing(text, "prose", None)
        with pytest.raises(ValueError, match="named twice"):
            store.learn_many_analysed([("b", analysed, sources.sha256(text)), ("b", analysed, sources.sha256(text))])
        assert store_snapshot(store) == before
        assert [s.name for s in store.sources()] == ["a"]
        assert store.learn_many_analysed([]) == []


def all_contexts(store: CountStore) -> list[tuple[int, ...]]:
    tables = store.load_tables()
    return [()] + [tuple(g) for t in tables.tables[:-1] for g in t.grams.tolist()]


def test_a_warm_reader_sees_exactly_what_a_fresh_one_sees_after_each_learn(tmp_path: Path) -> None:
    import random

    from store.sqlite_counts import SqliteCounts

    rng = random.Random(7)
    with CountStore.open(tmp_path / "s.db", order=3, tokenizer="pretokenized", create=True) as store:
        warm = SqliteCounts(store)
        for step in range(25):
            name = f"d{rng.randrange(3)}"
            if step % 5 == 4:
                if any(s.name == name for s in store.sources()):
                    store.forget(name)
            else:
                lines = [" ".join(rng.choices(WORDS, k=rng.randrange(1, 6))) for _ in range(rng.randrange(1, 4))]
                store.learn(name, "\n".join(lines))
            contexts = [*all_contexts(store), (0,), (999,)]
            fresh = SqliteCounts(store)
            for context in contexts:
                got, want = warm.level(context), fresh.level(context)
                assert got.ids.tolist() == want.ids.tolist(), (step, context)
                assert got.count.tolist() == want.count.tolist(), (step, context)
                assert got.cont.tolist() == want.cont.tolist(), (step, context)
            fresh.close()
        warm.close()


unicode_document = st.text(min_size=0, max_size=80)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operations=st.lists(
        st.tuples(st.sampled_from(["learn", "forget"]), st.sampled_from(["a", "b"]), unicode_document),
        min_size=1,
        max_size=8,
    )
)
def test_arbitrary_unicode_learned_and_forgotten_equals_a_fresh_build(
    tmp_path: Path, operations: list[tuple[str, str, str]]
) -> None:
    """Any text at all (control characters, lone surrogates, every script) keeps the invariant, in prose mode."""
    path = tmp_path / f"uni{next(counter)}.db"
    docs: dict[str, str] = {}
    with CountStore.open(path, order=3, tokenizer="prose", create=True) as store:
        for op, name, text in operations:
            if op == "learn":
                store.learn(name, text)
                docs[name] = text
            elif name in docs:
                store.forget(name)
                del docs[name]
        assert store_snapshot(store) == fresh_build(tmp_path, docs, 3, "prose")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(3, 9), min_size=1, max_size=12), max_size=12),
    st.lists(st.lists(st.integers(3, 9), min_size=1, max_size=12), max_size=12),
)
def test_the_delta_of_two_texts_is_the_difference_of_their_ngram_counts(new: list, old: list) -> None:
    """`ngram_delta` (what a learn applies): per order, exactly the n-grams whose count differs between the two
    token streams, by that much, sorted as rows; counted here with a Counter of tuples."""
    from collections import Counter

    import numpy as np

    from lm_core.counting import count_ngrams, ngram_delta
    from lm_core.vocab import BOS_ID, EOS_ID

    def stream(sentences: list) -> np.ndarray:
        return np.asarray([t for s in sentences for t in (BOS_ID, *s, EOS_ID)] or [BOS_ID, EOS_ID], dtype=np.int64)

    def counted(s: np.ndarray, n: int) -> Counter:
        starts = [*np.flatnonzero(s == BOS_ID).tolist(), len(s)]
        grams: Counter = Counter()
        for a, b in itertools.pairwise(starts):
            sentence = s[a:b].tolist()
            grams.update(tuple(sentence[i : i + n]) for i in range(len(sentence) - n + 1))
        return grams

    a, b = stream(new), stream(old)
    deltas = ngram_delta(count_ngrams(a, 3), count_ngrams(b, 3))
    for n, (grams, change) in enumerate(deltas, start=1):
        expected = counted(a, n)
        expected.subtract(counted(b, n))
        rows = [tuple(g) for g in grams.tolist()]
        assert rows == sorted(rows)
        assert dict(zip(rows, change.tolist(), strict=True)) == {g: c for g, c in expected.items() if c}
