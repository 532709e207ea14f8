"""Personal adaptation as a model: the document cache's probabilities by hand, the mixture sums to 1, EM finds the
held-out optimum, and the Engine refits on new text before learning it, keeps the weights in the store, and
suggests from the cache of the document being edited."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lm_core.adaptation import Adaptation, DocumentCache, bucket_of, make_blend, user_model
from lm_core.blend import em_weights
from lm_core.counting import count_ngrams, encode_sentences
from lm_core.ngram import NgramModel
from lm_core.vocab import Vocab
from lsp_server.engine import ADAPTATION_KEY, Engine
from store.countstore import CountStore

BASE = ["the cat sat on the mat", "the dog sat on the log", "a cat ran to the dog", "the red car ran"]
USER = ["the red car sat on the log", "a red car ran to the mat", "the red car ran"]


def sentences(lines: list[str]) -> list[list[str]]:
    return [[*line.split(), "</s>"] for line in lines]


@pytest.fixture
def store_model() -> NgramModel:
    vocab = Vocab()
    return NgramModel(count_ngrams(encode_sentences(sentences(BASE + USER), vocab), 3, vocab))


def test_the_document_cache_mixes_its_bigrams_with_its_unigrams_by_hand(store_model: NgramModel) -> None:
    cache = DocumentCache(store_model, mu=1.0)
    cache.set_tokens(["the", "cat", "the", "mat", "</s>"])  # N = 5: the 2, cat 1, mat 1, </s> 1
    # after "the": cat 1, mat 1 (2 in all); P(mat | the) = (1 + 1 * 1/5) / (2 + 1)
    assert math.exp(cache.logprob("mat", ("<s>", "the"))) == pytest.approx(1.2 / 3, abs=1e-12)
    # after a word the cache never saw: the unigram share alone, (0 + 1 * 2/5) / (0 + 1)
    assert math.exp(cache.logprob("the", ("dog",))) == pytest.approx(0.4, abs=1e-12)
    # a sentence start: after <s> (the first token, and what follows </s>), "the" once
    assert math.exp(cache.logprob("the", ("<s>",))) == pytest.approx((1 + 0.4) / 2, abs=1e-12)
    assert cache.logprob("dog", ("the",)) == -math.inf
    words, probs = cache.distribution_arrays(("<s>", "the"))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert probs[words.index("mat")] == pytest.approx(1.2 / 3, abs=1e-12)


def test_an_empty_cache_is_the_store_model(store_model: NgramModel) -> None:
    cache = DocumentCache(store_model)
    assert cache.logprob("cat", ("the",)) == store_model.logprob("cat", ("the",))
    _, probs = cache.distribution_arrays(("the",))
    assert np.array_equal(probs, store_model.distribution_arrays(("the",))[1])


def test_the_mixture_sums_to_one_and_is_the_weighted_sum(store_model: NgramModel) -> None:
    user = user_model(sentences(USER), 3)
    cache = DocumentCache(store_model)
    cache.set_tokens(["the", "red", "car", "ran", "</s>", "the"])
    weights = [0.5, 0.3, 0.2]
    blend = make_blend(store_model, user, cache, weights)
    for context in [("<s>",), ("<s>", "the"), ("the", "red"), ("zebra",)]:
        assert sum(blend.distribution(context).values()) == pytest.approx(1.0, abs=1e-9)
    expected = 0.5 * math.exp(store_model.logprob("car", ("the", "red")))
    expected += 0.3 * math.exp(user.logprob("car", ("the", "red"))) + 0.2 * math.exp(cache.logprob("car", ("red",)))
    assert math.exp(blend.logprob("car", ("the", "red"))) == pytest.approx(expected, abs=1e-12)
    assert user_model([["</s>"]], 3) is None


def test_em_weights_are_the_held_out_optimum(store_model: NgramModel) -> None:
    adaptation = Adaptation(store_model, parts=("user", "cache"))
    adaptation.set_user_text(sentences(USER))
    weights = adaptation.observe(sentences(["the red car sat on the mat", "a red car ran"]))
    assert weights.sum() == pytest.approx(1.0)
    rows = adaptation.held_out.rows

    def likelihood(w: np.ndarray) -> float:
        with np.errstate(divide="ignore"):
            return float(np.logaddexp.reduce(rows + np.log(w), axis=1).mean())

    best = likelihood(weights)
    for i in range(3):
        for j in range(3):
            if i != j:
                moved = weights.copy()
                step = min(0.02, moved[j])
                moved[i] += step
                moved[j] -= step
                assert likelihood(moved) <= best + 1e-6
    assert weights[1] > weights[0]  # the held-out text is the user's: the user layer weighs more than the store
    only_user = adaptation.fit(("user",))
    assert only_user[2] == 0 and only_user.sum() == pytest.approx(1.0)
    assert np.allclose(em_weights(rows[:, :2]), only_user[:2], atol=1e-6)


def test_the_engine_refits_on_new_text_before_learning_it_and_keeps_the_weights(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with CountStore.open(db, create=True, tokenizer="pretokenized", order=3) as store:
        store.learn("base", "\n".join(BASE * 3) + "\n")
    engine = Engine.open(db)
    engine.enable_adaptation()
    assert engine.adaptation is not None and engine.adaptation.user is not None
    engine.learn("one", "\n".join(USER) + "\n")
    tokens = sum(len(line.split()) + 1 for line in USER[:2])  # "the red car ran" was learned before: not held out
    saved = json.loads(engine.store.setting(ADAPTATION_KEY))
    assert saved["fitted_tokens"] == tokens
    assert sum(saved["weights"]) == pytest.approx(1.0, abs=1e-5)
    # learning it again with one more line: only that line is new, held-out text
    engine.learn("one", "\n".join([*USER, "the dog ran"]) + "\n")
    assert json.loads(engine.store.setting(ADAPTATION_KEY))["fitted_tokens"] == tokens + 4
    assert "adaptation" in engine.stats()
    weights = engine.adaptation.weights.copy()
    engine.close()
    again = Engine.open(db)
    again.enable_adaptation()
    assert np.allclose(again.adaptation.weights, weights, atol=1e-6)
    again.close()


def test_completion_reads_the_document_being_edited(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with CountStore.open(db, create=True, tokenizer="pretokenized", order=3) as store:
        store.learn("base", "\n".join(BASE * 3) + "\n")
    engine = Engine.open(db)
    engine.enable_adaptation(parts=("cache",))
    adaptation = engine.adaptation
    assert adaptation is not None
    document = "the red car ran\nthe red car sat\nthe "
    adapted = {s.word: s.prob for s in engine.complete_at(document, len(document), 10).suggestions}
    assert adaptation.cache.tokens == ("the", "red", "car", "ran", "</s>", "the", "red", "car", "sat", "</s>", "the")
    w = adaptation.weights
    store_p = math.exp(engine.ngram.logprob("red", ("<s>", "the")))
    cache_p = (2 + 1.0 * 2 / 11) / (2 + 1.0)  # after "the": red twice (the last "the" has no follower yet); N = 11
    expected = (w[0] + w[1]) * store_p + w[2] * cache_p
    assert math.exp(adaptation.blend.logprob("red", ("<s>", "the"))) == pytest.approx(expected, abs=1e-12)
    engine.disable_adaptation()
    plain = {s.word: s.prob for s in engine.complete_at(document, len(document), 10).suggestions}
    assert adapted["red"] > plain["red"]  # the document's own bigram lifts it
    engine.close()


def test_bucketed_weights_follow_how_often_the_user_saw_the_context(store_model: NgramModel) -> None:
    adaptation = Adaptation(store_model, parts=("user",), bucketed=True)
    adaptation.set_user_text(sentences(USER))  # the user layer saw "red" 3 times, "dog" never
    assert (bucket_of(adaptation.user, ("red",)), bucket_of(adaptation.user, ("dog",))) == (1, 0)
    adaptation.bucket_weights = np.asarray([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    blend = adaptation.blend
    for context, (ws, wu) in [(("the", "red"), (0.2, 0.8)), (("the", "dog"), (0.9, 0.1))]:
        expected = ws * math.exp(store_model.logprob("car", context))
        expected += wu * math.exp(adaptation.user.logprob("car", context))
        assert math.exp(blend.logprob("car", context)) == pytest.approx(expected, abs=1e-12)
        assert sum(blend.distribution(context).values()) == pytest.approx(1.0, abs=1e-9)
        top = blend.predict(context, 3)
        assert top[0].prob == pytest.approx(blend.distribution(context)[top[0].word], abs=1e-12)
    adaptation.observe(sentences(["the red car sat on the mat", "a red car ran", "the dog ran"]))
    assert adaptation.bucket_weights.shape == (4, 3)
    assert np.allclose(adaptation.bucket_weights.sum(axis=1), 1.0) and (adaptation.bucket_weights[:, 2] == 0).all()


def test_the_cache_of_a_prose_document_is_its_tokens_before_the_word_being_typed(tmp_path: Path) -> None:
    db = tmp_path / "prose.db"
    with CountStore.open(db, create=True) as store:  # prose
        store.learn("base", "The cat sat on the mat. The dog ran to the log. A red car ran.\n" * 3)
    engine = Engine.open(db)
    engine.enable_adaptation(parts=("cache",))
    first = "The cat sat. The dog ran.\n\nA red car ran. The red d"
    engine.complete_at(first, len(first), 5)
    expected = ("the", "cat", "sat", ".", "</s>", "the", "dog", "ran", ".", "</s>")
    expected += ("a", "red", "car", "ran", ".", "</s>", "the", "red")
    assert engine.adaptation.cache.tokens == expected
    # typing on: the paragraphs and sentences above come from the memo, and the result is the same as afresh
    second = first[:-1] + "dog sat. It ran"
    engine.complete_at(second, len(second), 5)
    assert engine.adaptation.cache.tokens == (*expected, "dog", "sat", ".", "</s>", "it")
    engine.close()


def test_a_growing_document_updates_the_cache_as_a_fresh_one_would_count_it(store_model: NgramModel) -> None:
    document = ["the", "cat", "sat", "</s>", "the", "red", "car", "ran", "to", "the", "mat", "</s>"]
    document += ["a", "dog", "ran", "</s>"]
    growing = DocumentCache(store_model, max_tokens=5)
    for end in range(1, len(document) + 1):
        growing.set_tokens(document[:end])
        fresh = DocumentCache(store_model, max_tokens=5)
        fresh.set_tokens(document[end - 5 if end > 5 else 0 : end])
        assert growing.tokens == fresh.tokens
        for context in [("<s>",), ("the",), ("ran",), ("</s>",)]:
            for word in ("the", "ran", "</s>", "dog"):
                assert growing.logprob(word, context) == pytest.approx(fresh.logprob(word, context), abs=1e-12)
        _, probs = growing.distribution_arrays(("ran",))
        assert np.allclose(probs, fresh.distribution_arrays(("ran",))[1], atol=1e-12)


def test_held_out_rows_scored_a_sentence_at_a_time_equal_the_rows_token_by_token(store_model: NgramModel) -> None:
    """Words the user layer does not know (dog, cat, mat, zebra) take the cheap path (the store's mass over the words
    the user layer lacks, from its follower lists): the same numbers as the blend's whole distributions."""
    from lm_core.adaptation import held_out_rows, pair_blend
    from lm_core.metrics import contexts

    user = user_model(sentences(["the red car ran", "a red car sat"]), 3)
    pair = pair_blend(store_model, user)
    long = "a cat ran to the dog and the red car sat on the mat by the log"  # scored in pieces of 8 tokens
    text = sentences(["the dog sat on the mat", "a cat ran to the zebra", long, "the red car ran to the log"])
    rows, _ = held_out_rows(pair, DocumentCache(store_model), text, user)
    cache, expected = DocumentCache(store_model), []
    for word, context in contexts([t for s in text for t in s], 2):
        expected.append([*pair.component_logprobs(word, context), cache.logprob(word, context)])
        cache.push(word)
    assert rows.shape == (len(expected), 3)
    assert np.allclose(rows, np.asarray(expected), rtol=0, atol=1e-12)
    assert np.isfinite(rows[:, 1]).all()


def test_a_sample_of_held_out_sentences_scores_as_the_whole_text_does(store_model: NgramModel) -> None:
    """Only the sampled sentences are scored, each exactly as when every sentence is (the cache reads the skipped
    ones too, as the document held them); the sample is the same on every call."""
    from lm_core.adaptation import held_out_rows, pair_blend, sampled

    user = user_model(sentences(["the red car ran", "a red car sat"]), 3)
    pair = pair_blend(store_model, user)
    text = sentences([f"the {w} car sat on the mat" for w in ("red", "big", "old", "new", "fast", "blue", "dog")])
    every, _ = held_out_rows(pair, DocumentCache(store_model), text, user)
    sample, _ = held_out_rows(pair, DocumentCache(store_model), text, user, sample_every=3)
    picked = [sampled(s, 3) for s in text]
    assert 0 < sum(picked) < len(text)  # these sentences give a real sample (crc32 is fixed)
    token_picked = [p for sentence, p in zip(text, picked, strict=True) for _ in sentence]
    positions = [i for i, p in enumerate(token_picked) if p]
    assert sample.shape == (len(positions), 3)
    assert np.allclose(sample, every[positions], rtol=0, atol=1e-12)
    assert [sampled(s, 3) for s in text] == picked and all(sampled(s, 1) for s in text)


def test_once_the_held_out_window_is_full_a_sample_of_new_text_is_scored(store_model: NgramModel) -> None:
    from lm_core.adaptation import HELD_OUT_SAMPLE_WHEN_FULL, HeldOut, sampled

    adaptation = Adaptation(store_model, parts=("user", "cache"))
    adaptation.set_user_text(sentences(USER))
    adaptation.held_out = HeldOut(limit=10)
    first = sentences(["the red car sat on the mat", "a red car ran"])
    adaptation.observe(first)
    assert adaptation.fitted_tokens == sum(map(len, first))  # the window was not full: every token
    later = sentences([f"the {w} car ran to the mat" for w in ("red", "big", "old", "new", "fast", "blue")])
    adaptation.observe(later)
    expected = sum(len(s) for s in later if sampled(s, HELD_OUT_SAMPLE_WHEN_FULL))
    assert 0 < expected < sum(map(len, later))
    assert adaptation.fitted_tokens == sum(map(len, first)) + expected


@pytest.mark.parametrize("context", [(), ("<s>",), ("<s>", "the"), ("the", "red"), ("zebra", "ran"), ("on", "the")])
def test_the_mass_over_a_set_of_words_is_the_sum_of_their_probabilities(store_model: NgramModel, context) -> None:
    words, probs = store_model.distribution_arrays(context)
    chosen = np.zeros(len(words))
    chosen[[i for i, w in enumerate(words) if w in {"cat", "dog", "<unk>", "</s>", "mat"}]] = 1.0
    assert store_model.mass_over(context, chosen) == pytest.approx(float(probs @ chosen), abs=1e-15)
    assert store_model.mass_over(context, np.ones(len(words))) == pytest.approx(1.0, abs=1e-12)


def test_the_user_layer_built_with_pauses_is_the_one_built_without(tmp_path: Path) -> None:
    """The server's learner yields while it reads the learned text back and encodes it: the pauses come as often
    as promised (every ENCODE_PAUSE_SENTENCES sentences; a whole source at a time, once past PAUSE_TOKENS tokens)
    and change nothing."""
    from lm_core.counting import ENCODE_PAUSE_SENTENCES
    from store.countstore import PAUSE_TOKENS

    lines = [f"{' '.join(USER[i % 3].split()[: 2 + i % 5])} w{i % 97}" for i in range(3_000)]
    calls: list[str] = []
    vocab_a, vocab_b = Vocab(), Vocab()
    plain = encode_sentences(sentences(lines), vocab_a)
    paused = encode_sentences(sentences(lines), vocab_b, pause=lambda: calls.append("encode"))
    assert np.array_equal(plain, paused) and vocab_a.words == vocab_b.words
    assert calls.count("encode") == len(lines) // ENCODE_PAUSE_SENTENCES
    db = tmp_path / "s.db"
    with CountStore.open(db, create=True, tokenizer="pretokenized", order=3) as store:
        for part in range(6):
            store.learn(f"doc{part}", "\n".join(lines[part * 500 : (part + 1) * 500]) + "\n")
        whole = store.learned_sentences(latest_tokens=10**9)
        read = store.learned_sentences(latest_tokens=10**9, pause=lambda: calls.append("read"))
    assert read == whole == sentences(lines)
    read_tokens = sum(len(s) + 1 for s in whole)  # each <s> is read too
    assert 1 <= calls.count("read") <= read_tokens // PAUSE_TOKENS  # at most once per PAUSE_TOKENS tokens read
    layer, again = user_model(whole, 3), user_model(whole, 3, pause=lambda: None)
    for n in (1, 2, 3):
        assert np.array_equal(layer.counts.tables[n - 1].grams, again.counts.tables[n - 1].grams)
        assert np.array_equal(layer.counts.tables[n - 1].count, again.counts.tables[n - 1].count)
