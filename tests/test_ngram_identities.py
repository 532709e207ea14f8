"""Identities every n-gram model must satisfy: normalisation, predict agreeing with logprob and distribution, the
SQLite store agreeing with the in-memory counts, and the same properties on random corpora."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lm_core.counting import CountTables, count_ngrams, encode_sentences
from lm_core.model import kth_largest
from lm_core.ngram import NgramModel, Smoothing
from lm_core.vocab import Vocab
from store.countstore import CountStore
from store.sqlite_counts import SqliteCounts

WORDS = "the then there they cat car cart dog door do a an and sat saw see ran run red read".split()  # noqa: SIM905
HANDWRITTEN = [
    "the cat sat",
    "the cat sat",
    "the dog ran",
    "a cat saw the dog",
    "then they ran",
    "",
    "the red car",
    "the",
]
PREFIXES = ["th", "ca", "d", "r", "s", "a", "the", "<", "x"]
NORMALISED = [
    ("mle", dict(smoothing=Smoothing.MLE)),
    ("laplace", dict(smoothing=Smoothing.ADD_DELTA, delta=1.0)),
    ("lidstone-0.1", dict(smoothing=Smoothing.ADD_DELTA, delta=0.1)),
    ("katz", dict(smoothing=Smoothing.KATZ)),
    ("kneser-ney", dict(smoothing=Smoothing.KNESER_NEY)),
]
ALL = [*NORMALISED, ("stupid-backoff", dict(smoothing=Smoothing.STUPID_BACKOFF))]


def corpus_lines() -> list[str]:
    rng = random.Random(0)
    weights = [1 / (i + 1) for i in range(len(WORDS))]  # Zipf-like, so n-grams repeat
    lines = [" ".join(rng.choices(WORDS, weights, k=rng.randint(1, 7))) for _ in range(30)]
    return lines + HANDWRITTEN


TEXT = "\n".join(corpus_lines())


def tables(lines: list[str], order: int, vocab: Vocab | None = None) -> CountTables:
    vocab = vocab if vocab is not None else Vocab()
    sentences = [[*line.split(), "</s>"] for line in lines]
    return count_ngrams(encode_sentences(sentences, vocab), order=order, vocab=vocab)


def contexts_of(lines: list[str], extra_words: list[str]) -> list[tuple[str, ...]]:
    """Every context seen in `lines` (up to 3 words, with and without `<s>`), plus unseen and unknown ones."""
    found: set[tuple[str, ...]] = {(), ("<s>",), ("zebra",), ("</s>",), ("zebra", "zebra", "zebra")}
    for line in lines:
        tokens = ["<s>", *line.split(), "</s>"]
        for i in range(1, len(tokens)):
            for j in range(max(0, i - 3), i):
                found.add(tuple(tokens[j:i]))
    rng = random.Random(1)
    for _ in range(40):
        n = rng.randint(1, 3)
        found.add(tuple(rng.choice([*extra_words, "zebra"]) for _ in range(n)))
        found.add(("<s>", *(rng.choice(extra_words) for _ in range(n - 1))))
    found.add(("the", "zebra", "cat"))
    found.add(("cat", "</s>", "<s>", "the"))
    return sorted(found)


CONTEXTS = contexts_of(corpus_lines(), WORDS)


@pytest.fixture(scope="module")
def counts() -> CountTables:
    return tables(corpus_lines(), order=4)


def check_predict(model: NgramModel, context: tuple[str, ...], k: int, prefix: str = "") -> None:
    """predict() == the top k of distribution() restricted to `prefix`, with probs == exp(logprob)."""
    predictions = model.predict(context, k=k, prefix=prefix)
    dist = {w: q for w, q in model.distribution(context).items() if w.startswith(prefix) and q > 0}
    probs = [pr.prob for pr in predictions]
    assert probs == sorted(probs, reverse=True)
    assert len({pr.word for pr in predictions}) == len(predictions)
    for pr in predictions:
        assert pr.word in dist, (context, prefix, pr)
        assert math.isclose(pr.prob, math.exp(model.logprob(pr.word, context)), rel_tol=1e-12), (context, pr)
        assert math.isclose(pr.prob, dist[pr.word], rel_tol=1e-12), (context, pr)
    top = sorted(dist.values(), reverse=True)[:k]
    assert len(probs) == len(top), (context, prefix, k)
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(probs, top, strict=True)), (context, prefix, k)


# --- normalisation ------------------------------------------------------------------------------------------------


def test_corpus_covers_the_cases():
    assert len(CONTEXTS) > 150 and ("<s>",) in CONTEXTS and ("the", "zebra", "cat") in CONTEXTS
    assert len({w for line in corpus_lines() for w in line.split()}) == 20


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize(("name", "kw"), NORMALISED, ids=[n for n, _ in NORMALISED])
def test_normalised_distributions_sum_to_one(counts, name, kw, order):
    model = NgramModel(counts, order=order, **kw)
    for context in CONTEXTS:
        dist = model.distribution(context)
        assert len(dist) == 22  # 20 words, </s> and <unk>; never <s>
        assert "<s>" not in dist and "<unk>" in dist
        assert sum(dist.values()) == pytest.approx(1, abs=1e-9), (name, order, context)


def test_normalised_when_unk_is_counted_and_a_context_is_followed_by_every_word():
    # A literal "<unk>" gets a count (Katz then has no unseen unigram); "x" is followed by all of V = {x, a, </s>,
    # <unk>} (Katz then has nothing to back off to).
    counts = tables(["x a", "x", "x <unk>", "x x", "<unk> a x"], order=3)
    for _, kw in NORMALISED:
        for order in (1, 2, 3):
            model = NgramModel(counts, order=order, **kw)
            for context in [(), ("x",), ("<s>",), ("<s>", "x"), ("x", "x"), ("zebra",), ("a", "x")]:
                assert sum(model.distribution(context).values()) == pytest.approx(1, abs=1e-9), (kw, order, context)
                check_predict(model, context, 2)


def test_stupid_backoff_does_not_normalise(counts):
    model = NgramModel(counts, smoothing=Smoothing.STUPID_BACKOFF)
    assert any(abs(sum(model.distribution(c).values()) - 1) > 1e-3 for c in CONTEXTS)


# --- predict agrees with logprob and distribution ---------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 4])
@pytest.mark.parametrize(("name", "kw"), ALL, ids=[n for n, _ in ALL])
def test_predict_is_the_top_k_of_the_distribution(counts, name, kw, order):
    model = NgramModel(counts, order=order, **kw)
    for context in CONTEXTS:
        for k in (2, 25):
            check_predict(model, context, k)


@pytest.mark.parametrize(("name", "kw"), ALL, ids=[n for n, _ in ALL])
def test_predict_with_a_prefix_is_the_top_k_of_the_filtered_distribution(counts, name, kw):
    model = NgramModel(counts, order=3, **kw)
    for context in CONTEXTS[::3]:
        for prefix in PREFIXES:
            for k in (1, 4):
                check_predict(model, context, k, prefix)


def test_predict_with_an_unmatched_prefix_is_empty(counts):
    assert NgramModel(counts).predict(("the",), k=5, prefix="xyz") == []


# --- SQLite store == in-memory counts --------------------------------------------------------------------------


def assert_same_models(store_counts, memory_counts, orders) -> None:
    for _, kw in ALL:
        for order in orders:
            a, b = NgramModel(store_counts, order=order, **kw), NgramModel(memory_counts, order=order, **kw)
            for context in CONTEXTS:
                assert a.distribution(context) == b.distribution(context), (kw, order, context)


def test_store_models_equal_in_memory_models(tmp_path):
    with CountStore.open(tmp_path / "s.db", order=3, tokenizer="pretokenized", create=True) as store:
        store.learn("doc", TEXT)
        assert_same_models(SqliteCounts(store), tables(corpus_lines(), order=3), orders=[1, 2, 3])


def test_store_models_equal_in_memory_models_after_relearning(tmp_path):
    lines = corpus_lines()
    with CountStore.open(tmp_path / "s.db", order=3, tokenizer="pretokenized", create=True) as store:
        store.learn("one", "\n".join(lines[:20]))
        store.learn("two", "\n".join(lines[20:]))
        store.learn("one", "\n".join(lines[5:15]) + "\nred red read")  # replaces "one"
        store.learn("three", "car cart car")
        store.forget("three")
        # Same word ids as the store (words it no longer counts keep their ids), so sums add in the same order.
        vocab = Vocab(store.vocab.words[3:])
        memory = tables([*lines[5:15], "red red read", *lines[20:]], order=3, vocab=vocab)
        assert_same_models(SqliteCounts(store), memory, orders=[2, 3])


# --- random corpora ---------------------------------------------------------------------------------------------

ALPHABET = ["a", "b", "ab", "c", "d", "e"]
sentences_st = st.lists(st.lists(st.sampled_from(ALPHABET), max_size=6), min_size=1, max_size=8)
context_st = st.tuples(st.booleans(), st.lists(st.sampled_from([*ALPHABET, "zebra"]), max_size=3))


@settings(max_examples=50, deadline=None)
@given(sentences=sentences_st, context=context_st, order=st.integers(1, 3))
def test_random_corpora_normalise_and_predict_the_top_3(sentences, context, order):
    counts = tables([" ".join(s) for s in sentences], order=3)
    start, words = context
    ctx = ("<s>", *words) if start else tuple(words)
    for smoothing in (Smoothing.KNESER_NEY, Smoothing.KATZ):
        model = NgramModel(counts, smoothing=smoothing, order=order)
        assert sum(model.distribution(ctx).values()) == pytest.approx(1, abs=1e-9)
        check_predict(model, ctx, 3)


@pytest.mark.parametrize("order", [1, 2, 4])
@pytest.mark.parametrize(("name", "kw"), ALL, ids=[n for n, _ in ALL])
def test_distribution_arrays_are_the_distribution_to_the_last_bit(counts, name, kw, order):
    """The dense Kneser-Ney path (cached unigram level, followers touched) does the same arithmetic."""
    model = NgramModel(counts, order=order, **kw)
    for context in CONTEXTS:
        expected = model.distribution(context)
        words, probs = model.distribution_arrays(context)
        assert words == list(expected)
        assert probs.tolist() == list(expected.values()), context
        assert model.distribution_arrays(context)[0] is words  # one word list while the counts stay


def test_in_memory_counts_give_one_unigram_level_per_version_and_a_model_keeps_its_tables_for_it() -> None:
    """A model keeps tables derived from the unigram level while it is the same object (a user layer's in-memory
    counts made a new one on every call, and the model rebuilt its dense unigram table on every completion)."""
    vocab = Vocab()
    counts = count_ngrams(encode_sentences([["a", "b", "a", "</s>"], ["b", "c", "</s>"]], vocab), 3, vocab)
    level = counts.level(())
    assert counts.level(()) is level
    model = NgramModel(counts)
    before = model.logprob("a", ("b",))
    table = model._dense_level(level, level.cont, "dense-test")
    assert model._dense_level(counts.level(()), level.cont, "dense-test") is table
    counts.touch()
    assert counts.level(()) is not level and counts.level(()).ids.tolist() == level.ids.tolist()
    assert model.logprob("a", ("b",)) == before


@pytest.mark.parametrize(("n", "k"), [(n, k) for n in (1, 10, 127, 128, 1_000, 50_000) for k in (1, 3, 10) if k <= n])
@pytest.mark.parametrize("kind", ["dirichlet", "ties", "constant", "with -inf"])
def test_kth_largest_equals_a_full_partition(n: int, k: int, kind: str) -> None:
    """The sampled bound never changes the answer: the k-th largest (repeats counted) as np.partition gives it,
    for long and short arrays, many ties, a constant array and -inf entries (a log-probability of 0)."""
    rng = np.random.default_rng(n * 31 + k)
    if kind == "dirichlet":
        values = rng.dirichlet(np.full(n, 0.05))
    elif kind == "ties":
        values = rng.integers(0, 4, n).astype(np.float64)
    elif kind == "constant":
        values = np.full(n, 0.25)
    else:
        values = np.log(np.maximum(rng.dirichlet(np.full(n, 0.05)), 1e-300))
        values[rng.random(n) < 0.5] = -np.inf
    expected = np.partition(values, n - k)[n - k]
    assert kth_largest(values, k) == expected
    assert kth_largest(values[::-1].copy(), k) == expected  # the sample's phase does not matter


def test_row_of_one_ngram_equals_the_array_lookup() -> None:
    """`CountTables.row_of` (the scalar path a completion's context takes) finds the row `rows` finds for every
    n-gram counted and for absent ones: unseen combinations, ids past the vocabulary, negative ids."""
    sentences = [[*s.split(), "</s>"] for s in HANDWRITTEN if s]
    tables = count_ngrams(encode_sentences(sentences * 2, Vocab()), 4)
    rng = random.Random(7)
    width = len(tables.vocab)
    for n in range(1, 5):
        grams = [tuple(int(w) for w in g) for g in tables.tables[n - 1].grams]
        grams += [tuple(rng.randrange(-1, width + 2) for _ in range(n)) for _ in range(300)]
        expected = tables.rows(np.asarray(grams, dtype=np.int64)).tolist()
        assert [tables.row_of(g) for g in grams] == expected
        assert sum(r >= 0 for r in expected) >= len(tables.tables[n - 1].grams)
