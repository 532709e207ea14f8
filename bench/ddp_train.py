"""Data-parallel training throughput: tokens per second of one process against N processes (`lm_core.distributed`,
gloo on CPU) training the same LSTM on a slice of PTB, with the same global batch.

Setups are PROCESSESxTHREADS (threads per process): by default 1x1, 1x2 (one process using two cores) and 2x1 (two
processes, one core each), so that the data-parallel run is compared with a single process given the same cores.
Tokens per second are counted by process 0 between its first and last progress report of the first epoch (so
neither the start of the processes, the first steps nor validation count); the wall time includes all of them.
Dropout is 0, so every setup trains the same model (up to float summation order): the validation perplexities
agree, a check that the processes together see the same data as one.

    python bench/ddp_train.py                     # 300,000 PTB training tokens, 2x200 LSTM, one epoch per setup
    python bench/ddp_train.py --setups 1x1 2x1 4x1 --tokens 100000
    python bench/ddp_train.py --quick             # a smoke run (20,000 tokens, 1x32): nothing written
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import (  # noqa: E402
    base_parser,
    corpora_dir,
    fmt,
    machine,
    markdown_table,
    require_files,
    results_path,
    section_text,
    step,
    usable_cores,
    write_section,
)
from lm_core.distributed import train_data_parallel  # noqa: E402
from lm_core.neural import NeuralConfig, build_model  # noqa: E402
from lm_core.tokenize import pretokenized_sentences  # noqa: E402
from lm_core.training import TrainConfig, TrainingJob, TrainProgress, build_vocab, encode, train  # noqa: E402

SECTION = "ddp-train"
TRAIN_FILE, VALID_FILE = "ptb/ptb.train.txt", "ptb/ptb.valid.txt"
QUICK_TOKENS, QUICK_VALID_TOKENS, VALID_TOKENS = 20_000, 2_000, 20_000


@dataclass(frozen=True)
class Setup:
    processes: int
    threads: int  # per process

    @classmethod
    def parse(cls, text: str) -> Setup:
        """ "2x1" -> 2 processes of 1 thread each."""
        processes, _, threads = text.partition("x")
        return cls(int(processes), int(threads or 1))

    @property
    def name(self) -> str:
        return f"{self.processes}x{self.threads}"


class Timeline:
    """A progress callback (picklable: process 0 runs it) that logs (time, step) of each report within an epoch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, report: TrainProgress) -> None:
        if report.valid_perplexity is None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{time.monotonic()!r} {report.step}\n")

    def tokens_per_s(self, tokens_per_step: int) -> float:
        """Tokens per second between the first and last report (the steps before the first one are warm-up)."""
        points = [line.split() for line in self.path.read_text(encoding="utf-8").splitlines()]
        (t0, s0), (t1, s1) = (float(points[0][0]), int(points[0][1])), (float(points[-1][0]), int(points[-1][1]))
        return (s1 - s0) * tokens_per_step / (t1 - t0) if t1 > t0 else float("nan")


def first_tokens(sentences: list[list[str]], limit: int) -> list[list[str]]:
    out, n = [], 0
    for sentence in sentences:
        if n >= limit:
            break
        out.append(sentence)
        n += len(sentence)
    return out


@dataclass(frozen=True)
class Measured:
    tokens_per_s: float
    wall_s: float
    valid_perplexity: float


def run_setup(setup: Setup, data: tuple, args, folder: Path) -> Measured:
    """Train one epoch in this setup, from the same initial weights."""
    vocab, train_ids, valid_ids = data
    size = 32 if args.quick else args.hidden
    config = NeuralConfig("lstm", len(vocab), size, size, 1 if args.quick else 2, dropout=0.0, tie_weights=True)
    torch.manual_seed(1234)
    model = build_model(config)
    train_config = TrainConfig(epochs=1, batch_size=args.batch_size, bptt=35, log_every=args.log_every)
    timeline = Timeline(folder / f"{setup.name}.log")
    checkpoint = folder / f"{setup.name}.pt"
    started = time.perf_counter()
    job = TrainingJob(model, train_ids, valid_ids, vocab, train_config, checkpoint)
    if setup.processes == 1:
        torch.set_num_threads(setup.threads)
        result = train(job, progress=timeline)
    else:
        result = train_data_parallel(setup.processes, job, progress=timeline, threads=setup.threads)
    wall = time.perf_counter() - started
    rate = timeline.tokens_per_s(train_config.batch_size * train_config.bptt)
    return Measured(rate, wall, result.best_valid_perplexity)


def row(setup: Setup, measured: Measured, base_tokens_per_s: float) -> list[str]:
    """A table row: the setup, its tokens/s (and as a multiple of the first setup's), wall time, perplexity."""
    speedup = f"{measured.tokens_per_s / base_tokens_per_s:.2f}x"
    rate, wall, ppl = fmt(measured.tokens_per_s, 0), fmt(measured.wall_s, 1), fmt(measured.valid_perplexity)
    return [setup.name, str(setup.processes), str(setup.threads), rate, speedup, wall, ppl]


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--setups", nargs="+", default=["1x1", "1x2", "2x1"], help="PROCESSESxTHREADS each")
    parser.add_argument("--tokens", type=int, default=300_000, help="PTB training tokens (default 300,000)")
    parser.add_argument("--hidden", type=int, default=200, help="LSTM units per layer, 2 layers (default 200)")
    parser.add_argument("--batch-size", type=int, default=20, help="global batch, rows (default 20)")
    parser.add_argument("--log-every", type=int, default=10, help="steps between timing points (default 10)")
    args = parser.parse_args()
    setups = [Setup.parse(s) for s in args.setups]
    root = corpora_dir(args.corpora)
    train_path, valid_path = require_files(root, [TRAIN_FILE, VALID_FILE])
    print(f"machine: {machine(['torch'])}; load average {os.getloadavg()[0]:.2f}", flush=True)
    start = time.perf_counter()
    tokens, valid_tokens = (QUICK_TOKENS, QUICK_VALID_TOKENS) if args.quick else (args.tokens, VALID_TOKENS)
    with step("reading PTB"):
        train_sentences = first_tokens(pretokenized_sentences(train_path.read_text(encoding="utf-8")), tokens)
        valid_sentences = first_tokens(pretokenized_sentences(valid_path.read_text(encoding="utf-8")), valid_tokens)
        vocab = build_vocab(train_sentences)
        data = (vocab, encode(train_sentences, vocab), encode(valid_sentences, vocab))
    measured = []
    with tempfile.TemporaryDirectory(prefix="nextword-bench-ddp-") as tmp:
        for setup in setups:
            with step(f"setup {setup.name}"):
                measured.append(run_setup(setup, data, args, Path(tmp)))
    base = measured[0].tokens_per_s
    rows = [row(s, m, base) for s, m in zip(setups, measured, strict=True)]
    size = "1x32" if args.quick else f"2x{args.hidden}"
    body = "\n".join(
        [
            f"An LSTM ({size}, tied, dropout 0, adam, global batch {args.batch_size}, BPTT 35) trained for one epoch "
            f"on the first {len(data[1]):,} PTB training tokens, validated on {len(data[2]):,} PTB validation tokens, "
            f"in each setup (processes x CPU threads each; gloo over localhost). Tokens/s: process 0's count between "
            f"its first and last progress report; wall: the whole run, the processes' start and validation included. "
            f"{usable_cores()} usable cores; load average {os.getloadavg()[0]:.2f} at the end.\n",
            markdown_table(
                [
                    "setup",
                    "processes",
                    "threads each",
                    "tokens/s",
                    f"vs {setups[0].name}",
                    "wall s",
                    "valid perplexity",
                ],
                rows,
            ),
        ]
    )
    runtime = time.perf_counter() - start
    print("\n" + body + f"\n\nruntime {runtime:.0f} s", flush=True)
    out = results_path(args)
    if out is not None:
        title = "Data-parallel training: tokens/s of 1 vs N processes (`bench/ddp_train.py`)"
        write_section(out, SECTION, section_text(title, body, runtime, ["torch"]))


if __name__ == "__main__":
    main()
