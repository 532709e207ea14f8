"""Pruned Kneser-Ney as KenLM's `lmplz --prune` estimates it: each context keeps the full data's total, and the mass
of its pruned followers goes into its backoff weight. Values derived by hand on a small text."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lm_core.backoff import BackoffModel, kneser_ney_tables
from lm_core.counting import count_ngrams, encode_sentences, prune
from lm_core.counts import ADJUSTED, RAW
from lm_core.ngram import NgramModel
from lm_core.smoothing import kneser_ney_discounts
from lm_core.tokenize import pretokenized_sentences
from lm_core.vocab import Vocab
from store.arpa import export_arpa
from store.bulk import build_local_base
from store.countstore import CountStore
from store.sqlite_counts import SqliteCounts

# Trigrams (one <s> per line): <s> a b 3, a b c 2, b c </s> 2, a b d 1, b d </s> 1, <s> x b 1, x b e 1, b e </s> 1.
# --prune 1,1,2 keeps the trigrams seen twice or more: <s> a b, a b c, b c </s>. After "a b" the kept follower c
# (2) and the pruned d (1): the context keeps its full total 3, and d's 1 goes into its backoff weight. After
# "x b" everything was pruned: no hidden mass is kept (the context backs off with weight 1 either way).
TEXT = "a b c\na b c\na b d\nx b e\n"


def tables(min_counts: tuple[int, ...] | None = (1, 1, 2)):
    vocab = Vocab()
    counted = count_ngrams(encode_sentences(pretokenized_sentences(TEXT), vocab), 3, vocab)
    return prune(counted, min_counts) if min_counts else counted


def discounts(counts, n: int, kind: str) -> tuple[float, float, float, float]:
    return (0.0, *kneser_ney_discounts(counts.count_of_counts(n, kind)))


def hand_p_c_after_a_b(counts) -> tuple[float, float]:
    """P(c | a b) and gamma(a b) by hand (natural probabilities)."""
    d3, d2, d1 = discounts(counts, 3, RAW), discounts(counts, 2, ADJUSTED), discounts(counts, 1, ADJUSTED)
    # unigram level, continuation counts: a 1 (<s>), b 2 (a, x), c 1, d 1, e 1, x 1, </s> 3 (c, d, e): total 10;
    # V = those 7 words and <unk>.
    gamma1 = (5 * d1[1] + 1 * d1[2] + 1 * d1[3]) / 10
    p_c = (1 - d1[1]) / 10 + gamma1 / 8
    # after "b", continuation counts over the full data: c 1 (a), d 1 (a), e 1 (x); nothing pruned at order 2
    p_c_b = (1 - d2[1]) / 3 + (3 * d2[1] / 3) * p_c
    # after "a b", raw counts: c 2 kept, d 1 pruned (hidden 1); total 3
    gamma_ab = (d3[2] + 1) / 3
    return (2 - d3[2]) / 3 + gamma_ab * p_c_b, gamma_ab


def test_pruning_keeps_each_context_total_and_moves_the_pruned_mass_into_its_backoff() -> None:
    pruned = tables()
    vocab = pruned.vocab
    level = pruned.level((vocab.get("a"), vocab.get("b")))
    assert (vocab.words[int(level.ids[0])], int(level.count[0]), level.hidden_count) == ("c", 2, 1)
    assert pruned.level((vocab.get("x"), vocab.get("b"))).hidden_count == 0  # nothing kept after "x b"
    expected, _ = hand_p_c_after_a_b(pruned)
    model = NgramModel(pruned)
    assert model.logprob("c", ["a", "b"]) == pytest.approx(math.log(expected), abs=1e-12)
    # the estimate from the kept followers alone would be (2 - D2) / 2 + D2 / 2 * P(c | b): not KenLM's
    d2 = discounts(pruned, 3, RAW)[2]
    kept_only = (2 - d2) / 2 + d2 / 2 * math.exp(model.logprob("c", ["b"]))
    assert abs(math.log(kept_only) - math.log(expected)) > 0.01


def test_a_pruned_distribution_sums_to_one_in_every_context() -> None:
    model = NgramModel(tables())
    for context in ([], ["a"], ["b"], ["a", "b"], ["x", "b"], ["<s>", "a"], ["b", "c"]):
        assert sum(model.distribution(context).values()) == pytest.approx(1.0, abs=1e-12)


def test_a_pruned_word_backs_off_with_the_context_backoff_weight() -> None:
    pruned = tables()
    model = NgramModel(pruned)
    _, gamma_ab = hand_p_c_after_a_b(pruned)
    assert model.logprob("d", ["a", "b"]) == pytest.approx(math.log(gamma_ab) + model.logprob("d", ["b"]), abs=1e-12)
    assert model.logprob("e", ["x", "b"]) == pytest.approx(model.logprob("e", ["b"]), abs=1e-12)


def test_the_arpa_export_lists_the_kenlm_probabilities_and_backoffs() -> None:
    pruned = tables()
    expected, gamma_ab = hand_p_c_after_a_b(pruned)
    arpa = kneser_ney_tables(pruned)
    vocab = pruned.vocab
    a, b, c = vocab.get("a"), vocab.get("b"), vocab.get("c")
    assert arpa.entry((a, b, c))[0] == pytest.approx(math.log10(expected), abs=1e-12)
    assert arpa.entry((a, b))[1] == pytest.approx(math.log10(gamma_ab), abs=1e-12)
    backoff, model = BackoffModel(arpa), NgramModel(pruned)
    for context in ([], ["a"], ["b"], ["a", "b"], ["x", "b"], ["<s>", "a"], ["<s>", "x"]):
        for word in ("a", "b", "c", "d", "e", "x", "</s>", "zzz"):
            assert backoff.logprob(word, context) == pytest.approx(model.logprob(word, context), abs=1e-12)


def test_the_store_keeps_the_hidden_mass_and_reads_the_same_model(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    build_local_base(tmp_path / "p.db", [path], 3, "pretokenized", (1, 1, 2))
    memory = NgramModel(tables())
    with CountStore.open(tmp_path / "p.db") as store:
        rows = store.db.execute("SELECT w1, w2, c, cc FROM hidden2").fetchall()
        words = store.vocab.words
        assert [(words[w1], words[w2], c, cc) for w1, w2, c, cc in rows] == [("a", "b", 1, 0)]
        assert store.db.execute("SELECT count(*) FROM hidden1").fetchone()[0] == 0
        reader = SqliteCounts(store)
        stored = NgramModel(reader)
        for context in ([], ["b"], ["a", "b"], ["x", "b"]):
            for word in ("a", "c", "d", "e", "</s>"):
                assert stored.logprob(word, context) == pytest.approx(memory.logprob(word, context), abs=1e-12)
        reader.prefetch({(store.vocab.get("a"), store.vocab.get("b"))})  # the bulk path reads it too
        assert reader.level((store.vocab.get("a"), store.vocab.get("b"))).hidden_count == 1
        loaded = store.load_tables()
        export_arpa(loaded, tmp_path / "store.arpa")
    export_arpa(tables(), tmp_path / "memory.arpa")
    assert (tmp_path / "store.arpa").read_bytes() == (tmp_path / "memory.arpa").read_bytes()


def test_learning_on_a_pruned_base_keeps_its_hidden_mass_and_forgetting_restores_the_model(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    build_local_base(tmp_path / "p.db", [path], 3, "pretokenized", (1, 1, 2))
    with CountStore.open(tmp_path / "p.db") as store:
        reader = SqliteCounts(store)
        model = NgramModel(reader)
        before = model.logprob("c", ["a", "b"])
        store.learn("note", "a b d\na b d\n")
        ab = (store.vocab.get("a"), store.vocab.get("b"))
        level = reader.level(ab)
        # d is now counted (learned twice), c as before; the base's hidden 1 stays: total 2 + 2 + 1
        assert dict(zip(level.ids.tolist(), level.count.tolist(), strict=True)) == {
            store.vocab.get("c"): 2,
            store.vocab.get("d"): 2,
        }
        assert level.hidden_count == 1
        assert sum(model.distribution(["a", "b"]).values()) == pytest.approx(1.0, abs=1e-12)
        store.forget("note")
        assert model.logprob("c", ["a", "b"]) == before


def test_without_pruning_nothing_is_hidden() -> None:
    counted = tables(None)
    assert counted.hidden is None
    assert NgramModel(counted).logprob("c", ["a", "b"]) == pytest.approx(
        NgramModel(prune(counted, (1, 1, 1))).logprob("c", ["a", "b"]), abs=0
    )
    assert all(len(m) == 0 for m in prune(counted, (1, 1, 1)).hidden)
    assert np.array_equal(prune(counted, (1, 1, 1)).tables[2].count, counted.tables[2].count)
