"""Neural language models on PTB and WikiText-2: perplexity beside KN5 and the blend, the cells compared on one
budget, and per-suggestion latency from the cached state.

1. PTB and WikiText-2: an LSTM (2 x 200, tied weights, dropout) trained on train, early-stopped on valid; test
   perplexity of KN5 (a 5-gram store built in the run), the LSTM, and their blend (weights fit by EM on valid).
   Test text as in `bench/perplexity.py`: one `</s>` per line, `<unk>` an ordinary word; read two ways: each line
   scored from `<s>`, and the whole text as one stream with the LSTM's state carried across lines (as published
   LSTM perplexities are measured, and as the editor's document state reads). Checkpoints are kept in bench/out/.
2. Elman RNN, LSTM, GRU and Bengio's window model on PTB, each with the same wall-clock budget: test perplexity.
3. Latency of one suggestion (the next-word distribution and its top 10) while typing PTB test sentences word by
   word: from the document's cached state (only the new word runs) and recomputed from the sentence start, beside
   the n-gram model's `predict`.

    python bench/neural.py --parts ptb --minutes 30 --threads 2   # one part: ptb, wikitext2, cells, latency
    python bench/neural.py                      # all: about (2 + 4) x --minutes on CPU, plus scoring
    python bench/neural.py --minutes 2          # a shorter budget per model
    python bench/neural.py --device cuda        # on a GPU
    python bench/neural.py --quick              # a smoke run on small slices (about a minute), nothing written
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import (  # noqa: E402
    base_parser,
    built_store,
    corpora_dir,
    corpus_files,
    fmt,
    machine,
    markdown_table,
    percentiles,
    publish,
    require_files,
    step,
)
from lm_core.blend import em_weights  # noqa: E402
from lm_core.metrics import perplexity_of_scores, score_tokens  # noqa: E402
from lm_core.neural import NeuralConfig, NeuralLM, build_model, update_checkpoint_metrics  # noqa: E402
from lm_core.ngram import NgramModel  # noqa: E402
from lm_core.tokenize import pretokenized_sentences  # noqa: E402
from lm_core.training import TrainConfig, TrainingJob, build_vocab, encode, train  # noqa: E402
from store.sqlite_counts import SqliteCounts  # noqa: E402

SECTION = "neural"
QUICK_TRAIN_TOKENS = 30_000
QUICK_EVAL_TOKENS = 2_000
EM_TOKENS = 30_000  # the blend weights are fit on (at most) this many validation tokens
LATENCY_SENTENCES = 100


@dataclass(frozen=True)
class Corpus:
    name: str
    train: str
    valid: str
    test: str


PTB = Corpus("PTB", "ptb/ptb.train.txt", "ptb/ptb.valid.txt", "ptb/ptb.test.txt")
WIKITEXT2 = Corpus(
    "WikiText-2", "wikitext-2/wiki.train.tokens", "wikitext-2/wiki.valid.tokens", "wikitext-2/wiki.test.tokens"
)


@dataclass
class Data:
    train: list[list[str]]
    valid: list[list[str]]
    test: list[list[str]]
    train_path: Path  # the training text as a file (the n-gram store is built from it)

    def flat(self, part: str, limit: int | None = None) -> list[str]:
        tokens: list[str] = []
        for sentence in getattr(self, part):
            if limit is not None and tokens and len(tokens) + len(sentence) > limit:
                break
            tokens += sentence
        return tokens


_LOADED: dict[tuple[str, bool], Data] = {}


def load(corpus: Corpus, root: Path, quick: bool, tmp: Path) -> Data:
    """The corpus as sentences (read once per run)."""
    if (corpus.name, quick) not in _LOADED:
        _LOADED[corpus.name, quick] = _read(corpus, root, quick, tmp)
    return _LOADED[corpus.name, quick]


def _read(corpus: Corpus, root: Path, quick: bool, tmp: Path) -> Data:
    train_path, valid_path, test_path = require_files(root, [corpus.train, corpus.valid, corpus.test])
    parts = [pretokenized_sentences(p.read_text(encoding="utf-8")) for p in (train_path, valid_path, test_path)]
    if quick:
        parts = [_first_tokens(parts[0], QUICK_TRAIN_TOKENS), *(_first_tokens(p, QUICK_EVAL_TOKENS) for p in parts[1:])]
        train_path = tmp / f"{corpus.name}.train.txt"
        train_path.write_text("".join(" ".join(s[:-1]) + "\n" for s in parts[0]), encoding="utf-8")
    return Data(*parts, train_path)


def _first_tokens(sentences: list[list[str]], limit: int) -> list[list[str]]:
    out, n = [], 0
    for s in sentences:
        if n >= limit:
            break
        out.append(s)
        n += len(s)
    return out


def ngram_model(data: Data, tmp: Path, name: str) -> NgramModel:
    store, _ = built_store(tmp / f"{name}.db", [data.train_path], 5)
    return NgramModel(SqliteCounts(store))


def train_model(cell: str, data: Data, args, tmp: Path, name: str) -> tuple[NeuralLM, dict]:
    """Train one model on the budget; returns it and what the table reports about training."""
    vocab = build_vocab(data.train)
    size = 32 if args.quick else args.hidden
    config = NeuralConfig(
        cell=cell,
        vocab_size=len(vocab),
        embed_dim=size,
        hidden_dim=size,
        layers=1 if cell == "window" else 2,
        dropout=0.0 if args.quick else args.dropout,
        tie_weights=True,
        window=4,
    )
    torch.manual_seed(1234)
    model = build_model(config)
    lr = 20.0 if args.optimizer == "sgd" else 2e-3
    train_config = TrainConfig(
        epochs=1 if args.quick else args.epochs,
        optimizer=args.optimizer,
        lr=lr,
        clip_norm=0.25 if args.optimizer == "sgd" else 0.5,
        max_minutes=0.25 if args.quick else args.minutes,
        device=args.device,
    )
    started = time.perf_counter()
    keep = Path(args.keep) if args.keep and not args.quick else tmp
    keep.mkdir(parents=True, exist_ok=True)
    checkpoint = keep / f"{name}-{cell}.pt" if cell not in name else keep / f"{name}.pt"
    result = train(
        TrainingJob(model, encode(data.train, vocab), encode(data.valid, vocab), vocab, train_config, checkpoint)
    )
    print(f"checkpoint: {checkpoint}", flush=True)
    model.cpu()
    seconds = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    info = {
        "epochs": result.epochs_run,
        "seconds": seconds,
        "params": params,
        "stopped": result.stopped,
        "checkpoint": checkpoint,
    }
    return NeuralLM(model, vocab), info


def corpus_rows(corpus: Corpus, args, root: Path, tmp: Path) -> list[list[str]]:
    """KN5, the LSTM and their blend on the test text, each line scored from `<s>` and the text as one stream."""
    data = load(corpus, root, args.quick, tmp)
    test, valid = data.flat("test"), data.flat("valid", EM_TOKENS)
    with step(f"{corpus.name}: KN5 store"):
        ngram = ngram_model(data, tmp, corpus.name)
    with step(f"{corpus.name}: KN5 scores (test, valid)"):
        kn5_test = [s.logprob for s in score_tokens(ngram, test)]
        kn5_valid = [s.logprob for s in score_tokens(ngram, valid)]
    with step(f"{corpus.name}: LSTM"):
        lm, info = train_model("lstm", data, args, tmp, corpus.name)
    rows = []
    for reading, scorer in (("each line from <s>", lm.sentence_logprobs), ("one stream", lm.stream_logprobs)):
        with step(f"{corpus.name}: LSTM and blend, {reading}"):
            neural_test, neural_valid = scorer(test), scorer(valid)
            weights = em_weights(np.column_stack([kn5_valid, neural_valid]))  # fit on valid
            blended = mixture(np.column_stack([kn5_test, neural_test]), weights)
        if scorer == lm.sentence_logprobs and info["checkpoint"].exists():  # as bench/evaluation.py reads text
            update_checkpoint_metrics(info["checkpoint"], blend_weight=float(weights[1]))
        rows.append(
            [
                corpus.name,
                reading,
                fmt(len(test)),
                fmt(perplexity_of_scores(kn5_test)),
                fmt(perplexity_of_scores(neural_test)),
                f"{weights[1]:.2f}",
                fmt(perplexity_of_scores(blended)),
                f"{perplexity_of_scores(blended) / perplexity_of_scores(kn5_test):.3f}",
            ]
        )
    rows[0].append(
        f"{info['epochs']} epoch(s), {info['seconds']:,.0f} s, {info['stopped']}; {info['params']:,} weights"
    )
    rows[1].append("(the same model)")
    return rows


def mixture(logprobs: np.ndarray, weights: np.ndarray) -> list[float]:
    """Per-token natural-log probability of the linear blend of the columns' models (what `Blend` gives when every
    word is in each model's vocabulary, as in these closed-vocabulary corpora)."""
    with np.errstate(divide="ignore"):
        return np.logaddexp.reduce(logprobs + np.log(weights), axis=1).tolist()


def cell_rows(args, root: Path, tmp: Path) -> list[list[str]]:
    data = load(PTB, root, args.quick, tmp)
    test = data.flat("test")
    rows = []
    for cell in ("rnn", "lstm", "gru", "window"):
        with step(f"PTB: {cell}"):
            lm, info = train_model(cell, data, args, tmp, f"PTB-cells-{cell}")
            per_line = perplexity_of_scores(lm.sentence_logprobs(test))
            stream = perplexity_of_scores(lm.stream_logprobs(test))
        rows.append(
            [cell, fmt(info["params"]), str(info["epochs"]), fmt(info["seconds"], 0), fmt(per_line), fmt(stream)]
        )
    return rows


def latency_rows(args, root: Path, tmp: Path) -> list[list[str]]:
    """Per-suggestion latency while typing test sentences word by word (ms)."""
    data = load(WIKITEXT2, root, args.quick, tmp)  # its vocabulary: 33,278 words
    torch.set_num_threads(1)
    lm, _ = train_model("lstm", data, _short(args), tmp, "latency")
    ngram = ngram_model(data, tmp, "latency")
    cached, fresh, ngram_ms = [], [], []
    for n, sentence in enumerate(data.test[:LATENCY_SENTENCES]):
        words = ["<s>", *sentence[:-1]]
        for i in range(1, len(words) + 1):
            t0 = time.perf_counter()
            lm.top_k(lm.logprobs_after(("doc", n), words[:i]), 10)
            t1 = time.perf_counter()
            lm.top_k(lm.logprobs_after(("fresh", n, i), words[:i]), 10)  # a new key: from the sentence start
            t2 = time.perf_counter()
            ngram.predict(tuple(words[max(0, i - 4) : i]), 10)
            t3 = time.perf_counter()
            cached.append((t1 - t0) * 1000)
            fresh.append((t2 - t1) * 1000)
            ngram_ms.append((t3 - t2) * 1000)
    rows = []
    for label, values in (
        ("neural, cached state", cached),
        ("neural, from the start", fresh),
        ("KN5 predict", ngram_ms),
    ):
        p50, p95, p99 = percentiles(values)
        rows.append([label, fmt(len(values)), fmt(p50, 3), fmt(p95, 3), fmt(p99, 3)])
    return rows


def _short(args):
    """The latency model only needs realistic shapes, not a long training run."""
    from argparse import Namespace

    return Namespace(**{**vars(args), "minutes": min(args.minutes, 0.5), "epochs": 1})


PARTS = ("ptb", "wikitext2", "cells", "latency")


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per model (default 10)")
    parser.add_argument("--epochs", type=int, default=40, help="most epochs per model (early stopping ends sooner)")
    parser.add_argument("--hidden", type=int, default=200, help="hidden units (and word-vector size)")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout (default 0.2)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared)")
    parser.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS, help="what to run (default all)")
    parser.add_argument(
        "--keep", default=str(ROOT / "bench" / "out"), help="folder for the trained checkpoints (default bench/out)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = corpora_dir(args.corpora)  # each corpus is read when a part first needs it (see `data`)
    wanted = [c for c, part in ((PTB, "ptb"), (WIKITEXT2, "wikitext2")) if part in args.parts]
    corpus_files(args, [f for c in [PTB, WIKITEXT2] for f in (c.train, c.valid, c.test)])
    print(f"machine: {machine(['torch'])}; device {args.device}", flush=True)
    size, dropout, budget = (32, 0.0, 0.25) if args.quick else (args.hidden, args.dropout, args.minutes)
    setup = (
        f"2x{size}, tied, dropout {dropout}, {args.optimizer}, batch 20, BPTT 35, budget {budget:g} min per model on "
        f"{args.device} with {args.threads} thread(s)"
        + (f" (quick: {QUICK_TRAIN_TOKENS:,} training tokens, {QUICK_EVAL_TOKENS:,} test tokens)" if args.quick else "")
    )
    with tempfile.TemporaryDirectory(prefix="nextword-bench-neural-") as tmp_name:
        tmp = Path(tmp_name)
        for corpus in wanted:
            start = time.perf_counter()
            rows = corpus_rows(corpus, args, root, tmp)
            body = "\n".join(
                [
                    f"Test perplexity of KN5, an LSTM ({setup}) and their blend (weights fit by EM on the first "
                    f"{EM_TOKENS:,} validation tokens). Read two ways: each line from `<s>` (as `bench/perplexity.py` "
                    "scores KN5), and the text as one stream, the LSTM's state carried across lines (how published "
                    "LSTM perplexities are measured; KN5 is the same either way).\n",
                    markdown_table(
                        [
                            "corpus",
                            "reading",
                            "test tokens",
                            "KN5",
                            "LSTM",
                            "neural weight",
                            "blend",
                            "blend / KN5",
                            "training",
                        ],
                        rows,
                    ),
                ]
            )
            report(args, f"neural-{corpus.name}", f"Neural models: {corpus.name} (`bench/neural.py`)", body, start)
        if "cells" in args.parts:
            start = time.perf_counter()
            body = "\n".join(
                [
                    f"PTB, the same budget for each model ({setup}; window: Bengio's model, 4 words of context, "
                    "one hidden layer); test perplexity:\n",
                    markdown_table(
                        ["model", "weights", "epochs", "seconds", "each line from <s>", "one stream"],
                        cell_rows(args, root, tmp),
                    ),
                ]
            )
            report(args, "neural-cells", "Neural models: RNN, LSTM, GRU, window (`bench/neural.py`)", body, start)
        if "latency" in args.parts:
            start = time.perf_counter()
            body = "\n".join(
                [
                    f"One suggestion (distribution + top 10) while typing {LATENCY_SENTENCES} WikiText-2 test lines "
                    f"word by word, a 2x{size} LSTM over WikiText-2's whole vocabulary (33,278 words), one CPU thread, "
                    "ms:\n",
                    markdown_table(["model", "suggestions", "p50", "p95", "p99"], latency_rows(args, root, tmp)),
                ]
            )
            report(args, "neural-latency", "Neural models: suggestion latency (`bench/neural.py`)", body, start)


def report(args, name: str, title: str, body: str, start: float) -> None:
    """Print one part's table and write it as its own section of the results file."""
    runtime = time.perf_counter() - start
    print("\n" + body + f"\n\nruntime {runtime:.0f} s", flush=True)
    publish(args, name, title, body, runtime, ["torch"])


if __name__ == "__main__":
    main()
