"""The Engine with a neural model attached: a blend of the n-gram and neural models, every Engine method working
with the blend's unbounded order, and a bad checkpoint leaving the n-gram model in place."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lm_core import training
from lm_core.blend import Blend
from lm_core.neural import CheckpointError, NeuralConfig, build_model, save_checkpoint
from lsp_server.engine import UNBOUNDED_CONTEXT, Engine
from store.countstore import CountStore

TEXT = """\
The cat sat on the mat. The cat sat on the mat again. The dog sat on the rug.
There is a problem with the plan. There is a cat on the mat. I have a dog. I have a cat.
It is better than nothing. Their house is big. Their dog is big. I saw the cat on the mat.
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("neural-engine") / "s.db"
    with CountStore.open(path, order=3, tokenizer="prose", create=True) as s:
        s.learn("notes", TEXT * 3)
    return path


@pytest.fixture(scope="module")
def checkpoint(store: Path) -> Path:
    """A small LSTM trained one epoch on the store's own documents (what nextword.retrainNeural does)."""
    torch.set_num_threads(1)
    with CountStore.open(store) as s:
        sentences = s.learned_sentences()
    path = store.with_name("m.pt")
    config = training.TrainConfig(epochs=1, batch_size=4, bptt=10)
    result = training.train_on_sentences(sentences, path, config=config)
    assert result.epochs_run == 1 and path.exists()
    return path


@pytest.fixture
def engine(store: Path) -> Engine:
    engine = Engine.open(store)
    yield engine
    engine.close()


def test_learned_sentences_are_the_documents_tokens(store: Path) -> None:
    with CountStore.open(store) as s:
        sentences = s.learned_sentences()
    assert sentences[0] == ["the", "cat", "sat", "on", "the", "mat", ".", "</s>"]
    assert len(sentences) == 3 * 11


def test_attached_model_is_a_blend_that_sums_to_one(engine: Engine, checkpoint: Path) -> None:
    text = "The cat sat on the "
    before = engine.complete_at(text, len(text), 5).suggestions
    assert engine.model is engine.ngram
    engine.attach_neural(checkpoint, 0.4)
    assert isinstance(engine.model, Blend) and engine.model.order is None and engine.context_width == UNBOUNDED_CONTEXT
    assert engine.model.weights.tolist() == [0.6, 0.4]
    after = engine.complete_at(text, len(text), 5).suggestions
    assert after and [s.prob for s in after] != [s.prob for s in before]
    assert math.isclose(sum(engine.model.distribution(engine.context_of(text)).values()), 1.0, abs_tol=1e-9)
    assert engine.stats()["neural_model"] == str(checkpoint)
    engine.detach_neural()
    assert engine.model is engine.ngram
    assert engine.complete_at(text, len(text), 5).suggestions == before


def test_every_engine_method_works_with_the_unbounded_blend(engine: Engine, checkpoint: Path) -> None:
    engine.attach_neural(checkpoint)
    assert engine.neural_weight == 0.3  # the checkpoint has no blend weight of its own
    long = "the cat and " * 40 + "the dog sat on the "  # one sentence: the context is cut at 64 tokens
    assert len(engine.context_of(long)) == UNBOUNDED_CONTEXT
    assert engine.complete_at(long, len(long), 3).suggestions
    checked = engine.check("Their is a problem. I saw the the cat.")
    assert checked.tokens > 0 and math.isfinite(checked.perplexity)
    info = engine.word_info("I saw the cat on the mat.", 11)
    assert info is not None and info.word == "cat" and 0 < info.prob < 1
    scored = engine.score("The cat sat on the mat.")
    assert math.isfinite(scored.perplexity) and [w.word for w in scored.words][:2] == ["The", "cat"]
    assert engine.next_words(("<s>",), 3, sentence_start=True)[0].word[0].isupper()  # casing from the store


def test_a_checkpoint_weight_is_used_when_none_is_given(engine: Engine, checkpoint: Path, tmp_path: Path) -> None:
    loaded = torch.load(checkpoint, weights_only=True)
    loaded["metrics"]["blend_weight"] = 0.55
    torch.save(loaded, tmp_path / "w.pt")
    engine.attach_neural(tmp_path / "w.pt")
    assert engine.neural_weight == 0.55


def test_bad_checkpoints_leave_the_ngram_model(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    torch.manual_seed(0)
    foreign = ["<unk>", "<s>", "</s>", "zebra", "quark", "lemma"]
    config = NeuralConfig(cell="gru", vocab_size=len(foreign), embed_dim=8, hidden_dim=8, layers=1, dropout=0)
    save_checkpoint(tmp_path / "foreign.pt", build_model(config), config, foreign)
    for path, reason in [
        (tmp_path / "absent.pt", "no such checkpoint"),
        (tmp_path / "bad.pt", "not a readable neural checkpoint"),
        (tmp_path / "foreign.pt", "knows only 0% of the store's"),
    ]:
        with pytest.raises(CheckpointError) as raised:
            engine.attach_neural(path)
        message = str(raised.value)
        assert reason in message and str(path) in message and "\n" not in message
        assert engine.model is engine.ngram and engine.neural is None


# --- which neural model the `neuralModel` setting picks ------------------------------------------------------------
def test_the_default_setting_picks_the_retrained_model_then_the_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsp_server import paths

    shipped = tmp_path / "shipped.pt"
    monkeypatch.setattr(paths, "DEFAULT_NEURAL_MODEL", shipped)
    store = tmp_path / "s.db"
    grew_from_shipped = [paths.DEFAULT_BASE_NAME]
    assert paths.neural_model_path("default", store, grew_from_shipped) is None  # nothing shipped, nothing retrained
    shipped.write_bytes(b"x")
    assert paths.neural_model_path("default", store, grew_from_shipped) == shipped
    assert paths.neural_model_path("Default", store, []) is None  # another store: the shipped model does not fit
    personal = paths.personal_neural_path(store)
    assert personal == tmp_path / "s.db.neural.pt"
    personal.write_bytes(b"x")
    assert paths.neural_model_path("default", store, grew_from_shipped) == personal  # the user's own comes first
    assert paths.neural_model_path("default", store, []) == personal
    for off in (None, "", "none", "OFF", " none "):
        assert paths.neural_model_path(off, store, grew_from_shipped) is None
    assert paths.neural_model_path("~/m.pt", store, []) == Path.home() / "m.pt"


def test_the_settings_read_an_empty_or_null_neural_model_as_none() -> None:
    from lsp_server.settings import Settings, parse_settings

    assert Settings().neural_model == "default"
    for raw, expected in ((None, "none"), ("", "none"), ("  ", "none"), ("/m.pt", "/m.pt"), ("default", "default")):
        settings, problems = parse_settings({"neuralModel": raw})
        assert settings.neural_model == expected and problems == []
    settings, [problem] = parse_settings({"neuralModel": 3})
    assert settings.neural_model == "default" and "neuralModel" in problem


def test_a_store_seeded_from_the_shipped_model_names_its_base(tmp_path: Path) -> None:
    from lsp_server.paths import DEFAULT_BASE_NAME, DEFAULT_MODEL, seed_from_default_model

    if not DEFAULT_MODEL.exists():
        pytest.skip(f"the shipped default model {DEFAULT_MODEL} is missing")
    assert seed_from_default_model(tmp_path / "fresh.db")  # what the default store gets on first use
    engine = Engine.open(tmp_path / "fresh.db")
    try:
        assert engine.base_sources() == [DEFAULT_BASE_NAME]
    finally:
        engine.close()


def test_fine_tuning_keeps_the_blend_weight_the_model_came_with(store: Path, checkpoint: Path, tmp_path: Path) -> None:
    from lm_core.neural import load_checkpoint, update_checkpoint_metrics

    base = tmp_path / "base.pt"
    base.write_bytes(checkpoint.read_bytes())
    update_checkpoint_metrics(base, blend_weight=0.42)
    assert load_checkpoint(base).metrics["blend_weight"] == 0.42
    with CountStore.open(store) as s:
        sentences = s.learned_sentences()
    tuned = tmp_path / "tuned.pt"
    config = training.TrainConfig(epochs=1, batch_size=4, bptt=10)
    training.train_on_sentences(sentences, tuned, init=load_checkpoint(base), config=config)
    assert load_checkpoint(tuned).metrics["blend_weight"] == 0.42
    engine = Engine.open(store)
    try:
        engine.attach_neural(tuned)
        assert engine.neural_weight == 0.42
    finally:
        engine.close()


def test_a_blend_scores_whole_sentences_as_it_scores_word_by_word(engine: Engine, checkpoint: Path) -> None:
    from lm_core.metrics import score_tokens, sentence_scores

    engine.attach_neural(checkpoint, 0.4)
    blend = engine.model
    # words both models know, a word neither knows (scored as <unk>, through the per-word path), <unk> itself
    tokens = "the cat sat on the mat . </s> their zebra is big . </s> <unk> sat on the rug </s>".split()  # noqa: SIM905
    assert "zebra" not in blend.models[1] and "zebra" not in engine.ngram.distribution(("<s>",))
    word_by_word = [s.logprob for s in score_tokens(blend, tokens)]
    assert blend.sentence_logprobs(tokens) == pytest.approx(word_by_word, abs=1e-6)  # one network call a sentence
    assert sentence_scores(blend, tokens) == pytest.approx(word_by_word, abs=1e-6)
    assert sentence_scores(engine.ngram, tokens) == word_by_word[:0] + [
        s.logprob for s in score_tokens(engine.ngram, tokens)
    ]


def test_use_neural_attaches_what_the_setting_picks_and_says_whether_anything_changed(
    engine: Engine, checkpoint: Path
) -> None:
    assert engine.neural_model_path("none") is None and engine.neural_model_path(str(checkpoint)) == checkpoint
    assert engine.use_neural("none") is False  # nothing attached, nothing to detach
    assert engine.use_neural(str(checkpoint)) is True
    attached = engine.neural
    assert attached is not None and (attached.path, attached.weight) == (checkpoint, 0.3)
    assert engine.use_neural(str(checkpoint)) is False and engine.neural is attached  # the same model: kept
    assert engine.use_neural(str(checkpoint), 0.5) is True  # another weight: attached again
    assert engine.neural is not None and engine.neural.weight == engine.neural_weight == 0.5
    assert engine.neural.generation == attached.generation + 1
    assert engine.use_neural("off") is True and engine.neural is None and engine.neural_path is None
    assert engine.neural_weight == 0.0


def test_compare_scores_the_ngram_the_neural_model_and_their_em_blend(engine: Engine, checkpoint: Path) -> None:
    from lm_core.blend import fit_weights_em
    from lm_core.metrics import perplexity

    fit = ["the", "cat", "sat", "on", "the", "mat", ".", "</s>", "the", "dog", "sat", "on", "the", "rug", ".", "</s>"]
    held = ["there", "is", "a", "cat", "on", "the", "mat", ".", "</s>", "i", "have", "a", "dog", ".", "</s>"]
    engine.attach_neural(checkpoint)
    neural = engine.neural.language_model()
    rows = engine.compare(fit, held)
    assert [row.name for row in rows] == ["n-gram", "neural", "blend"]
    assert rows[0].perplexity == pytest.approx(perplexity(engine.ngram, held), rel=1e-9)
    assert rows[1].perplexity == pytest.approx(perplexity(neural, held), rel=1e-6)
    weights = fit_weights_em([engine.ngram, neural], fit)
    assert rows[2].description == f"{weights[0]:.2f} n-gram + {weights[1]:.2f} neural"
    assert rows[2].perplexity == pytest.approx(perplexity(Blend([engine.ngram, neural], weights), held), rel=1e-6)
    assert rows[1].description.startswith("lstm 1x")
