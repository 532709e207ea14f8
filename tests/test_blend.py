"""The blend of an n-gram and a neural model: it sums to 1, agrees with itself, reconciles vocabularies, and EM finds
the weight of a known mixture."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from lm_core.blend import Blend, em_weights, fit_weights_em
from lm_core.counting import count_ngrams, encode_sentences
from lm_core.metrics import perplexity
from lm_core.model import Context, Prediction
from lm_core.neural import NeuralConfig, NeuralLM, build_model
from lm_core.ngram import NgramModel
from lm_core.vocab import Vocab

torch.set_num_threads(1)

LINES = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat ran to the dog",
    "the red car ran",
    "then the cat saw a dog",
]
# The neural model's vocabulary differs from the n-gram's: it lacks "log", "red", "then", "saw", "ran", "to" and knows
# "zebra" and "car" (the n-gram knows car, not zebra), as a shipped model's vocabulary differs from a user's store.
NEURAL_WORDS = ["<unk>", "<s>", "</s>", "the", "cat", "sat", "on", "mat", "dog", "a", "car", "zebra"]
CONTEXTS: list[Context] = [(), ("<s>",), ("<s>", "the"), ("<s>", "the", "cat", "sat"), ("zebra",), ("log", "the")]


@pytest.fixture(scope="module")
def ngram() -> NgramModel:
    vocab = Vocab()
    sentences = [[*line.split(), "</s>"] for line in LINES]
    return NgramModel(count_ngrams(encode_sentences(sentences, vocab), order=3, vocab=vocab))


@pytest.fixture(scope="module")
def neural() -> NeuralLM:
    torch.manual_seed(0)
    config = NeuralConfig(cell="gru", vocab_size=len(NEURAL_WORDS), embed_dim=8, hidden_dim=8, layers=1)
    model = build_model(config)
    with torch.no_grad():  # make <unk> likely, so that its share matters
        model.decoder.bias[0] = 2.0
    return NeuralLM(model, NEURAL_WORDS)


@pytest.fixture(scope="module")
def blend(ngram: NgramModel, neural: NeuralLM) -> Blend:
    return Blend([ngram, neural], [0.4, 0.6])


@pytest.mark.parametrize("context", CONTEXTS)
def test_blended_distributions_sum_to_one_over_the_ngram_vocabulary(blend: Blend, ngram: NgramModel, context) -> None:
    dist = blend.distribution(context)
    assert set(dist) == set(ngram.distribution(context))
    assert sum(dist.values()) == pytest.approx(1, abs=1e-9)
    _, rows = blend.component_arrays(context)
    assert rows.sum(axis=1) == pytest.approx([1, 1], abs=1e-9)  # the neural row re-expressed over the n-gram's words


@pytest.mark.parametrize("context", CONTEXTS)
def test_predict_agrees_with_logprob_and_distribution(blend: Blend, context) -> None:
    dist = blend.distribution(context)
    for prefix in ["", "c", "th", "zz"]:
        predictions = blend.predict(context, 4, prefix)
        matching = [(w, p) for w, p in dist.items() if w.startswith(prefix)]
        expected = sorted(matching, key=lambda wp: (-wp[1], wp[0]))[:4]
        assert [p.word for p in predictions] == [w for w, _ in expected]
        for p in predictions:
            assert p.prob == pytest.approx(math.exp(blend.logprob(p.word, context)), rel=1e-12)
            assert p.prob == pytest.approx(dist[p.word], rel=1e-12)


def test_a_word_both_models_know_is_a_plain_mixture(blend: Blend, ngram: NgramModel, neural: NeuralLM) -> None:
    context = ("<s>", "the")
    expected = 0.4 * math.exp(ngram.logprob("cat", context)) + 0.6 * math.exp(neural.logprob("cat", context))
    assert math.exp(blend.logprob("cat", context)) == pytest.approx(expected, rel=1e-12)


def test_the_neural_unk_mass_is_shared_in_proportion_to_the_ngram(blend: Blend, ngram: NgramModel, neural) -> None:
    context = ("<s>", "the")
    _, (p_ngram, p_neural) = blend.component_arrays(context)
    words, _ = blend.component_arrays(context)
    at = {w: i for i, w in enumerate(words)}
    # "log" and "red" are unknown to the neural model: their shares keep the n-gram's ratio
    assert p_neural[at["log"]] / p_neural[at["red"]] == pytest.approx(p_ngram[at["log"]] / p_ngram[at["red"]])
    pool = ["log", "red", "then", "saw", "ran", "to", "<unk>"]
    zebra = math.exp(neural.logprob("zebra", context))  # known to the neural model only: it goes to <unk>
    shared = sum(p_neural[at[w]] for w in pool)
    assert shared == pytest.approx(math.exp(neural.logprob("<unk>", context)) + zebra, rel=1e-12)


def test_a_word_outside_the_ngram_vocabulary_is_scored_as_unk(blend: Blend) -> None:
    for context in CONTEXTS:
        assert blend.logprob("zebra", context) == blend.logprob("<unk>", context) == blend.logprob("qqq", context)
        assert blend.logprob("<s>", context) == -math.inf


def test_weight_one_gives_back_the_component(ngram: NgramModel, neural: NeuralLM) -> None:
    only_ngram = Blend([ngram, neural], [1.0, 0.0])
    assert only_ngram.logprob("cat", ("<s>", "the")) == pytest.approx(ngram.logprob("cat", ("<s>", "the")), rel=1e-12)
    tokens = "the cat ran </s> a dog sat on the mat </s>".split()  # noqa: SIM905
    assert perplexity(only_ngram, tokens) == pytest.approx(perplexity(ngram, tokens), rel=1e-9)


def test_bad_weights_are_refused(ngram: NgramModel, neural: NeuralLM) -> None:
    for weights in ([0.5], [0.7, 0.7], [1.5, -0.5]):
        with pytest.raises(ValueError, match="weights"):
            Blend([ngram, neural], weights)


# --- EM -----------------------------------------------------------------------------------------------------------
class Fixed:
    """A context-free model with a fixed distribution (order 1), for a mixture whose weight is known."""

    order = 1

    def __init__(self, probs: dict[str, float]) -> None:
        self.probs = probs

    def logprob(self, word: str, context: Context) -> float:
        p = self.probs.get(word, self.probs["<unk>"])
        return math.log(p) if p > 0 else -math.inf

    def predict(self, context: Context, k: int = 10, prefix: str = "") -> list[Prediction]:
        ranked = sorted(self.probs.items(), key=lambda wp: (-wp[1], wp[0]))
        return [Prediction(w, p) for w, p in ranked if w.startswith(prefix)][:k]

    def distribution(self, context: Context) -> dict[str, float]:
        return dict(self.probs)


def _fixed(rng: random.Random, words: list[str]) -> Fixed:
    raw = [rng.random() ** 3 for _ in words]  # skewed, so the two distributions differ clearly
    return Fixed({w: r / sum(raw) for w, r in zip(words, raw, strict=True)})


def test_em_finds_the_known_weight_of_a_synthetic_mixture() -> None:
    rng = random.Random(0)
    words = ["<unk>", "</s>", *(f"w{i}" for i in range(30))]
    a, b = _fixed(rng, words), _fixed(rng, words)
    mixture = [0.3 * a.probs[w] + 0.7 * b.probs[w] for w in words]
    tokens = rng.choices(words, mixture, k=20_000)
    weights = fit_weights_em([a, b], tokens)
    assert weights[0] == pytest.approx(0.3, abs=0.02)
    assert sum(weights) == pytest.approx(1)


def test_em_weights_on_a_matrix_maximise_the_likelihood() -> None:
    rng = np.random.default_rng(0)
    logprobs = np.log(rng.random((500, 3)))
    w = em_weights(logprobs, iterations=2000, tol=0)

    def likelihood(weights: np.ndarray) -> float:
        return float(np.log(np.exp(logprobs) @ weights).mean())

    for _ in range(20):  # no other point of the simplex does better
        other = rng.dirichlet(np.ones(3))
        assert likelihood(w) >= likelihood(other) - 1e-9


def _em_in_logs(logprobs: np.ndarray, iterations: int = 200, tol: float = 1e-9) -> np.ndarray:
    """EM as written in log space (log-sum-exp over every row each iteration): what em_weights must equal."""
    lp = logprobs[np.isfinite(logprobs).any(axis=1)]
    w = np.full(lp.shape[1], 1.0 / lp.shape[1])
    previous = -math.inf
    with np.errstate(divide="ignore"):
        for _ in range(iterations):
            joint = lp + np.log(w)
            total = np.logaddexp.reduce(joint, axis=1)
            w = np.exp(joint - total[:, None]).mean(axis=0)
            w /= w.sum()
            if float(total.mean()) - previous < tol:
                break
            previous = float(total.mean())
    return w


def test_em_weights_equal_em_in_log_space_on_rows_of_any_scale() -> None:
    rng = np.random.default_rng(1)
    logprobs = np.log(rng.dirichlet(np.ones(3), 2_000)) - rng.uniform(0, 600, (2_000, 1))  # rows down to e^-600
    logprobs[::5, 2] = -math.inf  # a component that cannot explain some tokens
    logprobs[7] = -math.inf  # nor can any: left out
    calls = []
    fitted = em_weights(logprobs, pause=lambda: calls.append(1))
    assert np.allclose(fitted, _em_in_logs(logprobs), atol=1e-12)
    assert 1 < len(calls) <= 200  # paused before every iteration


def test_em_leaves_out_tokens_no_component_can_explain() -> None:
    logprobs = np.array([[math.log(0.5), math.log(0.1)], [-math.inf, -math.inf], [math.log(0.5), math.log(0.1)]])
    assert em_weights(logprobs)[0] == pytest.approx(1.0, abs=1e-3)


def test_fitting_the_blend_on_held_out_text_helps(ngram: NgramModel, neural: NeuralLM) -> None:
    held_out = "the cat sat on the log </s> a dog ran </s> the zebra sat on the mat </s>".split()  # noqa: SIM905
    weights = fit_weights_em([ngram, neural], held_out)
    best = perplexity(Blend([ngram, neural], weights), held_out)
    # where the best mixture is at a corner (all n-gram), EM only approaches it: within a millionth
    assert best <= perplexity(ngram, held_out) * (1 + 1e-6)
    assert best <= perplexity(Blend([ngram, neural], [0.5, 0.5]), held_out) + 1e-9


def test_batched_scoring_equals_word_by_word_with_words_one_model_lacks(ngram: NgramModel, neural: NeuralLM) -> None:
    """Words the neural model lacks (log, red, then, saw, ran, to) take the cheap <unk>-share path in batches;
    zebra (the n-gram lacks it) and <unk> the per-word path: every score equals blend.logprob word by word."""
    blend = Blend([ngram, neural], [0.4, 0.6])
    tokens = ["then", "the", "red", "dog", "saw", "a", "log", "</s>"]
    tokens += ["the", "zebra", "ran", "to", "the", "<unk>", "cat", "</s>", "</s>"]
    word_by_word = []
    history = ["<s>"]
    for word in tokens:
        word_by_word.append(Blend([ngram, neural], [0.4, 0.6]).logprob(word, tuple(history)))
        history = ["<s>"] if word == "</s>" else [*history, word]
    for _ in range(2):  # the first pass aligns the vocabularies, the second takes the cheap path
        assert blend.sentence_logprobs(tokens) == pytest.approx(word_by_word, abs=1e-6)  # float32 network
    windows = blend.score_continuations([(["then", "the"], ["red", "dog"]), ([], ["saw"]), (["a"], [])])
    assert windows[0] == pytest.approx(word_by_word[2:4], abs=1e-6)
    assert windows[1] == pytest.approx([Blend([ngram, neural], [0.4, 0.6]).logprob("saw", ("<s>",))], abs=1e-6)
    assert windows[2] == []


def test_unk_takes_the_cheap_path_when_the_ngram_knows_every_neural_word(ngram: NgramModel) -> None:
    words = [w for w in NEURAL_WORDS if w != "zebra"]  # every word the neural model knows, the n-gram knows too
    torch.manual_seed(1)
    config = NeuralConfig(cell="lstm", vocab_size=len(words), embed_dim=8, hidden_dim=8, layers=1)
    model = build_model(config)
    with torch.no_grad():
        model.decoder.bias[0] = 2.0
    neural = NeuralLM(model, words)
    tokens = ["the", "<unk>", "saw", "a", "<unk>", "</s>", "<unk>", "then", "</s>"]
    word_by_word, history = [], ["<s>"]
    for word in tokens:
        word_by_word.append(Blend([ngram, neural], [0.3, 0.7]).logprob(word, tuple(history)))
        history = ["<s>"] if word == "</s>" else [*history, word]
    blend = Blend([ngram, neural], [0.3, 0.7])
    for _ in range(2):
        runs_before = neural.tokens_run
        assert blend.sentence_logprobs(tokens) == pytest.approx(word_by_word, abs=1e-6)
    assert neural.tokens_run - runs_before == len(tokens)  # the second pass: the batch alone, no per-word runs


def test_the_alignment_found_in_bulk_is_the_word_by_word_one(blend: Blend, ngram: NgramModel, neural) -> None:
    ref, words_m = ngram.vocabulary_words(), neural.words
    blend.component_arrays(("<s>",))
    a = blend._alignment(1, words_m)
    index_m = {w: i for i, w in enumerate(words_m)}
    both = [(i, index_m[w]) for i, w in enumerate(ref) if w != "<unk>" and w in index_m]
    assert a.both_ref.tolist() == [i for i, _ in both] and a.both_m.tolist() == [j for _, j in both]
    assert a.pool_ref.tolist() == [i for i, w in enumerate(ref) if w == "<unk>" or w not in index_m]
    outside = [j for j, w in enumerate(words_m) if w not in ref and w != "<unk>"]
    assert a.extra_m.tolist() == outside == [1, 11]  # <s> and zebra
    assert a.unk_m == 0


def test_a_rebuilt_blend_shares_what_was_derived_from_the_same_word_lists(
    blend: Blend, ngram: NgramModel, neural: NeuralLM
) -> None:
    again = Blend([ngram, neural], [0.4, 0.6])
    context = ("<s>", "the")
    words, probs = blend.component_arrays(context)
    words_again, probs_again = again.component_arrays(context)
    assert words_again is words and np.array_equal(probs_again, probs)
    assert again._alignment(1, neural.words) is blend._alignment(1, neural.words)
    assert again._ref_index is blend._ref_index


def test_the_vocabulary_list_is_kept_while_counts_change_and_the_words_do_not(tmp_path) -> None:
    from store.countstore import CountStore

    with CountStore.open(tmp_path / "s.db", order=3, tokenizer="pretokenized", create=True) as store:
        store.learn("one", "\n".join(LINES) + "\n")
        model = store.model()
        before = model.vocabulary_words()
        store.learn("two", "the cat sat on the log\n")  # counts change, no new word
        assert model.counts.version != 0 and model.vocabulary_words() is before
        store.learn("three", "the zebra sat\n")  # a new word: a new list
        after = model.vocabulary_words()
        assert after is not before and "zebra" in after and after[: len(before)] == before
