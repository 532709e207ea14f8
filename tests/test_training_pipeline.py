"""The training pipeline (`training.prepare` -> `training.train`): the held-out split, the too-little-text check, a
fresh model or a checkpoint to start from, the blend weight kept in every checkpoint; and the option errors of the
commands that call it (`nextword train-neural`, the default-model builder)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from lm_core.neural import Checkpoint, NeuralConfig, build_model, load_checkpoint
from lm_core.training import (
    SMALL_MODEL,
    TooLittleText,
    TrainConfig,
    TrainingError,
    prepare,
    train,
    train_on_sentences,
)
from lm_core.vocab import BOS_ID
from lsp_server import default_model
from lsp_server.cli import main

torch.set_num_threads(1)  # tiny models: threads only contend (and the machine is shared)

WORDS = ["the", "cat", "sees", "a", "dog"]
SENTENCES = [[*WORDS[: 1 + i % 4], "</s>"] for i in range(40)]  # 2 to 5 tokens each, 140 in all
TINY = NeuralConfig(cell="gru", vocab_size=100, embed_dim=8, hidden_dim=8, layers=1, dropout=0.0)
QUICK = TrainConfig(epochs=1, batch_size=4, bptt=8)


def test_the_last_tenth_of_the_tokens_is_held_out_from_a_sentence_start(tmp_path: Path) -> None:
    job = prepare(SENTENCES, tmp_path / "m.pt", QUICK, TINY)
    # 14 tokens held out (10% of 140): the last 4 sentences hold 5 + 4 + 3 + 2 = 14 tokens.
    assert len(job.valid_ids) == 14 + 4  # each sentence starts with <s>
    assert len(job.train_ids) == (140 - 14) + 36
    assert job.train_ids[0] == job.valid_ids[0] == BOS_ID
    assert job.checkpoint_path == tmp_path / "m.pt" and not job.resume


def test_a_validation_text_given_is_used_and_every_sentence_trains(tmp_path: Path) -> None:
    valid = [["a", "cat", "</s>"]]
    job = prepare(SENTENCES, tmp_path / "m.pt", QUICK, TINY, valid=valid)
    assert len(job.train_ids) == 140 + 40
    assert job.valid_ids.tolist() == [BOS_ID, job.vocab.index("a"), job.vocab.index("cat"), job.vocab.index("</s>")]


def test_too_little_text_is_a_named_error_with_the_token_count(tmp_path: Path) -> None:
    config = dataclasses.replace(QUICK, batch_size=8)  # training needs 2 x 8 tokens
    short = [["the", "cat", "</s>"]] * 6  # 18 tokens: 15 train, 3 held out
    with pytest.raises(TooLittleText) as error:
        prepare(short, tmp_path / "m.pt", config, TINY)
    assert str(error.value) == "too little text to train on (18 tokens); give more text"
    assert error.value.tokens == 18 and isinstance(error.value, TrainingError)
    enough = short[:5] + [["the", "cat", "sees", "</s>"]] * 2  # 23 tokens: 19 train (5 + 1 sentences), 4 held out
    assert len(prepare(enough, tmp_path / "m.pt", config, TINY).train_ids) == 19 + 6
    with pytest.raises(TooLittleText):
        prepare(SENTENCES, tmp_path / "m.pt", QUICK, TINY, valid=[])
    assert not (tmp_path / "m.pt").exists()


def test_a_fresh_model_has_the_shape_given_and_a_vocabulary_of_the_commonest_words(tmp_path: Path) -> None:
    job = prepare(SENTENCES, tmp_path / "m.pt", QUICK, dataclasses.replace(TINY, vocab_size=5))
    assert job.vocab == ["<unk>", "<s>", "</s>", "the", "cat"]  # "the" in every sentence, "cat" in 3 of 4
    assert job.model.config == dataclasses.replace(TINY, vocab_size=5)
    assert job.blend_weight is None
    again = prepare(SENTENCES, tmp_path / "m.pt", QUICK, dataclasses.replace(TINY, vocab_size=5))
    for name, weight in job.model.state_dict().items():  # the config's seed decides the initial weights
        assert torch.equal(again.model.state_dict()[name], weight)


def test_fine_tuning_keeps_the_checkpoints_shape_vocabulary_weights_and_blend_weight(tmp_path: Path) -> None:
    base = checkpoint(blend_weight=0.37)
    job = prepare(SENTENCES, tmp_path / "m.pt", QUICK, base)
    assert job.vocab == base.vocab and job.model.config == base.config and job.blend_weight == 0.37
    for name, weight in base.model.state_dict().items():
        assert torch.equal(job.model.state_dict()[name], weight)
    assert job.model is not base.model  # trained in place: the checkpoint's own model is left alone
    train(job)
    saved = load_checkpoint(tmp_path / "m.pt")
    assert saved.metrics["blend_weight"] == 0.37 and list(saved.metrics)[-1] == "blend_weight"


def test_a_checkpoint_without_a_blend_weight_gets_none(tmp_path: Path) -> None:
    job = prepare(SENTENCES, tmp_path / "m.pt", QUICK, checkpoint(blend_weight=None))
    assert job.blend_weight is None
    train(job)
    assert "blend_weight" not in load_checkpoint(tmp_path / "m.pt").metrics


def test_the_blend_weight_is_in_the_checkpoint_of_a_run_that_was_cancelled_after_an_epoch(tmp_path: Path) -> None:
    job = prepare(SENTENCES, tmp_path / "m.pt", dataclasses.replace(QUICK, epochs=3), checkpoint(blend_weight=0.5))
    epochs_done: list[int] = []
    result = train(job, progress=lambda p: epochs_done.append(p.epoch), should_stop=lambda: 2 in epochs_done)
    assert result.stopped == "cancelled" and result.epochs_run == 1
    assert load_checkpoint(tmp_path / "m.pt").metrics["blend_weight"] == 0.5


def test_train_on_sentences_is_prepare_then_train(tmp_path: Path) -> None:
    config = dataclasses.replace(QUICK, epochs=2)
    one = train_on_sentences(SENTENCES, tmp_path / "one.pt", config=config, vocab_size=6)
    two = train(prepare(SENTENCES, tmp_path / "two.pt", config, dataclasses.replace(SMALL_MODEL, vocab_size=6)))
    assert one.metrics["valid_loss"] == two.metrics["valid_loss"]
    first, second = load_checkpoint(tmp_path / "one.pt"), load_checkpoint(tmp_path / "two.pt")
    assert first.config == second.config == dataclasses.replace(SMALL_MODEL, vocab_size=6)
    for name, weight in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], weight)


def checkpoint(blend_weight: float | None) -> Checkpoint:
    """A small trained-from-nothing checkpoint (seeded weights) over the words of SENTENCES."""
    vocab = ["<unk>", "<s>", "</s>", *WORDS]
    config = dataclasses.replace(TINY, vocab_size=len(vocab))
    torch.manual_seed(3)
    metrics = {} if blend_weight is None else {"blend_weight": blend_weight}
    return Checkpoint(build_model(config).eval(), config, vocab, metrics, None)


# --- the commands that call it ----------------------------------------------------------------------------------------
def test_train_neural_names_the_cells_when_one_is_unknown(tmp_path: Path) -> None:
    corpus = tmp_path / "train.txt"
    corpus.write_text("the cat sees the dog\n" * 50)
    result = CliRunner().invoke(
        main, ["train-neural", "--cell", "transformer", "-o", str(tmp_path / "m.pt"), str(corpus)]
    )
    assert result.exit_code == 1
    assert result.stderr == "nextword: error: cell must be one of rnn, lstm, gru, window, not 'transformer'\n"
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("neural", [False, True], ids=["ngram", "neural"])
def test_the_default_model_builder_says_in_one_line_when_the_corpus_is_missing(
    neural: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert default_model.main(["--corpora", str(tmp_path), *(["--neural"] if neural else [])]) == 1
    folder = tmp_path / "wikitext-2"
    assert capsys.readouterr().err == (
        f"nextword: error: {folder} holds no WikiText-2; give --corpora or set NEXTWORD_CORPORA\n"
    )
