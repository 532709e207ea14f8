"""Data-parallel training (`lm_core.distributed`): 2 processes (gloo, CPU, spawned from the test) with a global batch
of B rows train exactly as 1 process with B rows; a bad batch size and a failing process are one-line errors, never
a hang; `nextword train-neural --nproc 2` and the same command under torchrun write one loadable checkpoint.

Tolerances: the two runs add the same numbers in another order (the matrix products run over B/2 rows instead of
B, the gradients are summed by an all-reduce, the loss is a sum / count instead of a mean), so they agree to float32
rounding, not always bit for bit. Measured on the runs below: a third of the 28 steps' losses are equal, the rest
within 1.5e-7 relative; the weights after 28 steps within 2e-7 absolute. The tests allow 1e-5 relative on every
step's loss and 1e-5 absolute on the weights. Normalising by each process's own token count instead (a per-process
mean) misses both by far: losses off by up to 1e-3 relative, weights by 2e-3.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from click.testing import CliRunner

from lm_core.distributed import Launch, launched, train_data_parallel
from lm_core.neural import NeuralConfig, build_model, load_checkpoint
from lm_core.training import TrainConfig, TrainingError, TrainingJob, TrainProgress, build_vocab, encode, train
from lsp_server.cli import main

torch.set_num_threads(1)  # tiny models: threads only contend (and the machine is shared)

LIMIT_S = 120  # a test that runs longer than this has hung: it fails (and its processes are ended)
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


def sentences(n: int, seed: int) -> list[list[str]]:
    """Sentences of 4 to 8 tokens, so that each process's rows hold a different number of `<s>` targets."""
    rng = random.Random(seed)
    nouns, verbs, adjectives = ["cat", "dog", "bird", "cow"], ["sees", "likes", "chases"], ["big", "old", "red"]
    return [
        ["the", *rng.choices(adjectives, k=rng.randint(0, 2)), rng.choice(nouns), rng.choice(verbs)]
        + (["the", rng.choice(nouns)] if rng.random() < 0.5 else [])
        + ["</s>"]
        for _ in range(n)
    ]


TRAIN, VALID = sentences(60, seed=0), sentences(10, seed=1)
VOCAB = build_vocab(TRAIN)
TRAIN_IDS, VALID_IDS = encode(TRAIN, VOCAB), encode(VALID, VOCAB)


class StepLosses:
    """A progress callback (picklable, so a spawned process can run it) that appends each report's loss to a file:
    with log_every=1, the mean loss of the global batch at every step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, report: TrainProgress) -> None:
        if report.valid_perplexity is None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{report.loss!r}\n")

    def read(self) -> list[float]:
        return [float(line) for line in self.path.read_text(encoding="utf-8").split()]


class FailAt:
    """A `should_stop` (polled every step by every process) that makes process `rank` fail at step `step`: it
    raises, or kills its own process with SIGKILL (a crash that leaves no message)."""

    def __init__(self, rank: int, step: int, how: str) -> None:
        self.rank, self.step, self.how, self.calls = rank, step, how, 0

    def __call__(self) -> bool:
        self.calls += 1
        if dist.get_rank() == self.rank and self.calls == self.step:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected failure in process {self.rank}")
        return False


@pytest.fixture(autouse=True)
def time_limit() -> Iterator[None]:
    """Fail a test that runs past LIMIT_S (SIGALRM): a hang must never pass, nor block the suite."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"the test ran longer than {LIMIT_S} s: training processes hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    assert not multiprocessing.active_children(), "training processes were left running"


def tiny_model(cell: str) -> torch.nn.Module:
    torch.manual_seed(7)
    return build_model(NeuralConfig(cell=cell, vocab_size=len(VOCAB), embed_dim=16, hidden_dim=16, layers=1, dropout=0))


def job(model: torch.nn.Module, config: TrainConfig, path: Path) -> TrainingJob:
    return TrainingJob(model, TRAIN_IDS, VALID_IDS, VOCAB, config, path)


@pytest.mark.parametrize(
    ("cell", "optimizer", "lr", "clip"),
    [("lstm", "adam", 2e-3, 0.1), ("gru", "sgd", 1.0, 0.0)],  # clipping on (it binds at every step here) and off
    ids=["lstm-adam-clipped", "gru-sgd"],
)
def test_two_processes_train_exactly_as_one_with_the_same_global_batch(
    cell: str, optimizer: str, lr: float, clip: float, tmp_path: Path
) -> None:
    config = TrainConfig(epochs=2, batch_size=4, bptt=8, optimizer=optimizer, lr=lr, clip_norm=clip, log_every=1)
    one, two = StepLosses(tmp_path / "one.txt"), StepLosses(tmp_path / "two.txt")
    single, parallel = tiny_model(cell), tiny_model(cell)
    alone = train(job(single, config, tmp_path / "one.pt"), progress=one)
    shared = train_data_parallel(2, job(parallel, config, tmp_path / "two.pt"), progress=two)

    assert shared.steps == alone.steps == 28 and shared.stopped == alone.stopped == "epochs"
    losses_one, losses_two = one.read(), two.read()
    assert len(losses_two) == len(losses_one) == 28  # one report a step: process 0 alone reports
    for step, (a, b) in enumerate(zip(losses_one, losses_two, strict=True), start=1):
        assert math.isclose(a, b, rel_tol=LOSS_RTOL), f"step {step}: {a} alone, {b} in 2 processes"
    assert math.isclose(shared.best_valid_loss, alone.best_valid_loss, rel_tol=LOSS_RTOL)
    saved_one, saved_two = load_checkpoint(tmp_path / "one.pt"), load_checkpoint(tmp_path / "two.pt")
    for name, weight in saved_one.model.state_dict().items():
        torch.testing.assert_close(saved_two.model.state_dict()[name], weight, rtol=0, atol=WEIGHT_ATOL)
        torch.testing.assert_close(parallel.state_dict()[name], weight, rtol=0, atol=WEIGHT_ATOL)  # returned model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pt", "one.txt", "two.pt", "two.txt"]  # no leftovers


def test_a_batch_that_does_not_split_over_the_processes_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RANK", "WORLD_SIZE", "NEXTWORD_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    config = TrainConfig(epochs=1, batch_size=5, bptt=8)
    with pytest.raises(TrainingError, match="a batch of 5 rows does not split evenly over 2 processes"):
        train_data_parallel(2, job(tiny_model("lstm"), config, tmp_path / "m.pt"))
    corpus = tmp_path / "train.txt"
    corpus.write_text("the cat sees the dog\n" * 50)
    result = CliRunner().invoke(
        main,
        [
            "train-neural",
            "--pretokenized",
            "--batch-size",
            "5",
            "--nproc",
            "2",
            "-o",
            str(tmp_path / "m.pt"),
            str(corpus),
        ],
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "nextword: error: a batch of 5 rows does not split evenly over 2 processes; "
        "give a batch size that is a multiple of 2"
    )
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    ("rank", "how", "expected"),
    [
        (1, "raise", "training process 1 of 2 failed: RuntimeError: injected failure in process 1"),
        (0, "kill", "training process 0 of 2 was killed by signal SIGKILL"),
    ],
    ids=["process-1-raises", "process-0-is-killed"],
)
def test_a_failing_process_ends_the_whole_run_at_once_with_its_message(
    rank: int, how: str, expected: str, tmp_path: Path
) -> None:
    config = TrainConfig(epochs=50, batch_size=4, bptt=8)  # far longer than the test's limit, were it to hang
    start = time.monotonic()
    with pytest.raises(TrainingError) as failure:
        fail = FailAt(rank, 3, how)
        train_data_parallel(2, job(tiny_model("lstm"), config, tmp_path / "m.pt"), should_stop=fail)
    assert str(failure.value) == expected  # the failing process's own error, not its peer's lost connection
    assert time.monotonic() - start < 60


def test_the_launchers_variables_name_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert launched() is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launched() is None  # one process: plain training
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launched() == Launch(rank=3, world_size=4, local_rank=1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(TrainingError, match=r"RANK 4 is outside 0\.\.3"):
        launched()


def grammar_file(path: Path) -> Path:
    rng = random.Random(0)
    nouns, verbs = ["cat", "dog", "bird", "cow"], ["sees", "likes", "chases"]
    lines = (f"the {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(nouns)}\n" for _ in range(300))
    path.write_text("".join(lines))
    return path


TINY = ["--pretokenized", "--hidden", "16", "--layers", "1", "--batch-size", "4", "--bptt", "10", "--dropout", "0"]


def nextword(*args: str, cwd: Path, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh process (the spawned processes write to its real stdout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NEXTWORD_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    command = [sys.executable, *launcher, "-m", "lsp_server.cli", "train-neural", *TINY, *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=LIMIT_S - 10)


@pytest.mark.parametrize(
    "launcher",
    [(), ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")],
    ids=["nproc", "torchrun"],
)
def test_the_cli_trains_in_two_processes_and_writes_one_checkpoint(launcher: tuple[str, ...], tmp_path: Path) -> None:
    corpus = grammar_file(tmp_path / "train.txt")
    nproc = [] if launcher else ["--nproc", "2"]
    outputs = ["-o", "m.pt", "--plot", "c.png"]
    run = nextword("--epochs", "2", *nproc, *outputs, str(corpus), cwd=tmp_path, launcher=launcher)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "2 processes, 2 rows each" in lines[0]
    assert [line.split(":")[0] for line in lines[1:]] == ["epoch 1/2", "epoch 2/2", "m.pt"]  # printed once
    checkpoint = load_checkpoint(tmp_path / "m.pt")
    assert checkpoint.training is not None and len(checkpoint.metrics["valid_loss"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "m.pt", "train.txt"]  # nothing else written
