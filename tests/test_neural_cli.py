"""`nextword train-neural` and `nextword eval`, end to end on tiny texts of their own."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from lm_core.neural import load_checkpoint, update_checkpoint_metrics
from tests.conftest import error_of, ok, run

TINY = ["--hidden", "16", "--layers", "1", "--batch-size", "4", "--bptt", "10", "--dropout", "0"]


def grammar_lines(n: int, seed: int) -> str:
    rng = random.Random(seed)
    nouns, verbs = ["cat", "dog", "bird", "cow"], ["sees", "likes", "chases"]
    return "".join(f"the {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}\n" for _ in range(n))


@pytest.fixture(autouse=True)
def private(private_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's real store out of reach (`private_data_dir`), and the test's folder as the working directory."""
    monkeypatch.chdir(tmp_path)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "train.txt"
    path.write_text(grammar_lines(300, seed=0))
    return path


def test_train_neural_writes_a_checkpoint_and_a_plot(corpus: Path, tmp_path: Path) -> None:
    out = ok(
        "train-neural",
        "--pretokenized",
        "--cell",
        "gru",
        "--epochs",
        "2",
        *TINY,
        "-o",
        "m.pt",
        "--plot",
        "c.png",
        corpus,
    )
    assert "epoch 1/2: train perplexity" in out and "epoch 2/2" in out and "best valid perplexity" in out
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint.config.cell == "gru" and "chases" in checkpoint.vocab
    assert len(checkpoint.metrics["valid_loss"]) == 2
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_train_neural_without_the_plot_extra_says_so_before_training(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if nextword[plot] were not installed
    args = ("train-neural", "--pretokenized", "--epochs", "1", *TINY, "-o", "m.pt", corpus)
    assert error_of(*args, "--plot", "c.png") == "plotting needs matplotlib: pip install 'nextword[plot]'"
    assert error_of(*args, "--plot", "c.jpg") == "c.jpg: a plot is written as .png or .svg, not .jpg"
    assert not (tmp_path / "m.pt").exists()  # nothing was trained


def test_train_neural_learns_the_documents_of_the_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text(grammar_lines(200, seed=1).replace("cow", "yak"))
    ok("build", "--db", "s.db", "--pretokenized", "--order", "3", tmp_path / "notes.txt")
    out = ok("train-neural", "--from-store", "--db", "s.db", "--epochs", "1", *TINY, "-o", "m.pt")
    assert "epoch 1/1" in out
    assert "yak" in load_checkpoint(tmp_path / "m.pt").vocab


def test_train_neural_fine_tunes_and_resumes(corpus: Path, tmp_path: Path) -> None:
    ok("train-neural", "--pretokenized", "--epochs", "1", *TINY, "-o", "base.pt", corpus)
    update_checkpoint_metrics(tmp_path / "base.pt", blend_weight=0.37)  # as the shipped model has one
    (tmp_path / "mine.txt").write_text(grammar_lines(100, seed=2).replace("bird", "owl"))
    out = ok("train-neural", "--pretokenized", "--epochs", "1", "--init", "base.pt", "-o", "mine.pt", "mine.txt")
    assert "fine-tuning base.pt" in out
    tuned = load_checkpoint(tmp_path / "mine.pt")
    assert tuned.vocab == load_checkpoint(tmp_path / "base.pt").vocab  # owl is <unk>
    assert tuned.metrics["blend_weight"] == 0.37  # kept: the user's text is no fair ground to refit it
    ok("train-neural", "--pretokenized", "--epochs", "2", "--resume", "-o", "mine.pt", "mine.txt")
    assert load_checkpoint(tmp_path / "mine.pt").metrics["epoch"] == [1, 2]


def test_train_neural_errors_are_one_line(corpus: Path, tmp_path: Path) -> None:
    assert "give text files" in error_of("train-neural", "-o", "m.pt")
    assert "no such file" in error_of("train-neural", "-o", "m.pt", "absent.txt")
    assert "keeps the checkpoint's shape; drop --cell" in error_of(
        "train-neural", "--init", "x.pt", "--cell", "gru", "-o", "m.pt", corpus
    )
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert "not a readable neural checkpoint" in error_of("train-neural", "--init", "bad.pt", "-o", "m.pt", corpus)
    (tmp_path / "short.txt").write_text("one line\n")
    assert "too little text" in error_of("train-neural", "--pretokenized", "-o", "m.pt", "short.txt")
    assert not (tmp_path / "m.pt").exists()


def test_eval_prints_ngram_neural_and_blend_side_by_side(corpus: Path, tmp_path: Path) -> None:
    ok("build", "--db", "s.db", "--pretokenized", "--order", "3", corpus)
    ok("train-neural", "--pretokenized", "--epochs", "1", *TINY, "-o", "m.pt", corpus)
    (tmp_path / "test.txt").write_text(grammar_lines(20, seed=3))
    out = ok("eval", "--db", "s.db", "--neural", "m.pt", "test.txt")
    assert "fit by EM on the first half" in out and "perplexity on the second half" in out
    rows = {line.split()[0]: float(line.split()[-1]) for line in out.splitlines()[2:]}
    assert set(rows) == {"n-gram", "neural", "blend"}
    assert all(1 < ppl < 20 for ppl in rows.values())
    assert "n-gram" in ok("eval", "--db", "s.db", "test.txt")
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    # eval says what it measures (stdout) before it opens the neural model
    assert "bad.pt is not a readable neural checkpoint" in error_of(
        "eval", "--db", "s.db", "--neural", "bad.pt", "test.txt", report_first=True
    )


def test_complete_and_score_blend_with_a_neural_model(corpus: Path, tmp_path: Path) -> None:
    ok("build", "--db", "s.db", "--pretokenized", "--order", "3", corpus)
    ok("train-neural", "--pretokenized", "--epochs", "1", *TINY, "-o", "m.pt", corpus)

    def probabilities(output: str) -> dict[str, float]:
        return {line.split()[1]: float(line.split()[2]) for line in output.splitlines()}

    ngram = probabilities(ok("complete", "--db", "s.db", "-k", "20", "the cat sees the"))
    blend = probabilities(ok("complete", "--db", "s.db", "-k", "20", "--neural", "m.pt", "the cat sees the"))
    nouns = {"cat", "dog", "bird", "cow"}  # the only words seen after "sees the" ...
    assert set(list(ngram)[:4]) == set(list(blend)[:4]) == nouns
    assert blend != ngram  # ... weighed otherwise
    assert sum(blend.values()) <= 1.005  # a distribution (printed to 3 significant digits)
    (tmp_path / "t.txt").write_text(grammar_lines(5, seed=9))
    assert "perplexity" in ok("score", "--db", "s.db", "--neural", "m.pt", "t.txt")
    alone = run("complete", "--db", "s.db", "--neural", "default", "the cat sees the")  # no model fits this store
    assert alone.exit_code == 0 and probabilities(alone.stdout) == ngram and "n-gram model alone" in alone.stderr
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert "not a readable neural checkpoint" in error_of("complete", "--db", "s.db", "--neural", "bad.pt", "the")


def test_eval_neural_default_needs_a_model_that_fits_the_store(corpus: Path, tmp_path: Path) -> None:
    ok("build", "--db", "s.db", "--pretokenized", "--order", "3", corpus)
    (tmp_path / "test.txt").write_text(grammar_lines(20, seed=3))
    message = error_of("eval", "--db", "s.db", "--neural", "default", "test.txt", report_first=True)
    assert "no neural model for this store" in message
    ok("train-neural", "--pretokenized", "--epochs", "1", *TINY, "-o", "s.db.neural.pt", corpus)  # "retrained"
    rows = ok("eval", "--db", "s.db", "--neural", "default", "test.txt")
    assert "neural" in rows and "blend" in rows
