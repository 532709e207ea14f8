"""Neural language models on PTB and WikiText-2: perplexity beside KN5 and the blend, the cells compared on one
budget, and per-suggestion latency from the cached state.

1. PTB and WikiText-2: an LSTM (2 x 200, tied weights, dropout) trained on train, early-stopped on valid; test
   perplexity of KN5 (a 5-gram store built in the run), the LSTM, and their blend (weights fit by EM on valid).
   Test text as in `bench/perplexity.py`: one `</s>` per line, `<unk>` an ordinary word, each line scored from `<s>`
   (so recurrent models do not carry context across lines; published numbers that do are lower).
2. Elman RNN, LSTM, GRU and Bengio's window model on PTB, each with the same wall-clock budget: test perplexity.
3. Latency of one suggestion (the next-word distribution and its top 10) while typing PTB test sentences word by
   word: from the document's cached state (only the new word runs) and recomputed from the sentence start, beside
   the n-gram model's `predict`.

    python bench/neural.py                      # about (2 + 4) x --minutes on CPU, plus scoring
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

import torch  # noqa: E402

from bench.common import (  # noqa: E402
    base_parser,
    corpora_dir,
    fmt,
    machine,
    markdown_table,
    percentiles,
    require_files,
    results_path,
    section_text,
    step,
    write_section,
)
from lm_core.blend import Blend, fit_weights_em  # noqa: E402
from lm_core.metrics import perplexity, perplexity_of_scores  # noqa: E402
from lm_core.neural import NeuralConfig, NeuralLM, build_model  # noqa: E402
from lm_core.ngram import NgramModel  # noqa: E402
from lm_core.tokenize import pretokenized_sentences  # noqa: E402
from lm_core.training import TrainConfig, build_vocab, encode, train  # noqa: E402
from store.countstore import CountStore  # noqa: E402
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
    store = CountStore.open(tmp / f"{name}.db", order=5, tokenizer="pretokenized", create=True)
    store.build([data.train_path])
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
    result = train(model, encode(data.train, vocab), encode(data.valid, vocab), train_config, tmp / f"{name}.pt", vocab)
    model.cpu()
    seconds = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    info = {"epochs": result.epochs_run, "seconds": seconds, "params": params, "stopped": result.stopped}
    return NeuralLM(model, vocab), info


def corpus_rows(corpus: Corpus, args, root: Path, tmp: Path) -> list[list[str]]:
    data = load(corpus, root, args.quick, tmp)
    test = data.flat("test")
    with step(f"{corpus.name}: KN5 store"):
        ngram = ngram_model(data, tmp, corpus.name)
    with step(f"{corpus.name}: KN5 test perplexity"):
        kn5 = perplexity(ngram, test)
    with step(f"{corpus.name}: LSTM"):
        lm, info = train_model("lstm", data, args, tmp, corpus.name)
    with step(f"{corpus.name}: LSTM test perplexity"):
        lstm = perplexity_of_scores(lm.sentence_logprobs(test))
    with step(f"{corpus.name}: blend weights by EM on valid"):
        weights = fit_weights_em([ngram, lm], data.flat("valid", EM_TOKENS))
    with step(f"{corpus.name}: blend test perplexity"):
        blended = perplexity(Blend([ngram, lm], weights), test)
    training = f"{info['epochs']} epoch(s), {info['seconds']:,.0f} s, {info['stopped']}"
    return [
        [corpus.name, fmt(len(test)), fmt(kn5), fmt(lstm), f"{weights[1]:.2f}", fmt(blended), training],
    ]


def cell_rows(args, root: Path, tmp: Path) -> list[list[str]]:
    data = load(PTB, root, args.quick, tmp)
    test = data.flat("test")
    rows = []
    for cell in ("rnn", "lstm", "gru", "window"):
        with step(f"PTB: {cell}"):
            lm, info = train_model(cell, data, args, tmp, f"cell-{cell}")
            ppl = perplexity_of_scores(lm.sentence_logprobs(test))
        rows.append([cell, fmt(info["params"]), str(info["epochs"]), fmt(info["seconds"], 0), fmt(ppl)])
    return rows


def latency_rows(args, root: Path, tmp: Path) -> list[list[str]]:
    """Per-suggestion latency while typing test sentences word by word (ms)."""
    data = load(PTB, root, args.quick, tmp)
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


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per model (default 10)")
    parser.add_argument("--epochs", type=int, default=40, help="most epochs per model (early stopping ends sooner)")
    parser.add_argument("--hidden", type=int, default=200, help="hidden units (and word-vector size)")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout (default 0.2)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["wikitext2", "cells", "latency"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = corpora_dir(args.corpora)
    wanted = [PTB] + ([] if "wikitext2" in args.skip else [WIKITEXT2])
    require_files(root, [f for c in wanted for f in (c.train, c.valid, c.test)])
    print(f"machine: {machine(['torch'])}; device {args.device}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nextword-bench-neural-") as tmp_name:
        tmp = Path(tmp_name)
        perplexities = [row for corpus in wanted for row in corpus_rows(corpus, args, root, tmp)]
        cells = [] if "cells" in args.skip else cell_rows(args, root, tmp)
        latency = [] if "latency" in args.skip else latency_rows(args, root, tmp)
    runtime = time.perf_counter() - start
    size, dropout, budget = (32, 0.0, 0.25) if args.quick else (args.hidden, args.dropout, args.minutes)
    parts = [
        f"Test perplexity (one `</s>` per line, each line scored from `<s>`); LSTM 2x{size}, tied, dropout "
        f"{dropout}, {args.optimizer}, budget {budget:g} min per model on {args.device}; blend weights "
        f"fit by EM on the first {EM_TOKENS:,} validation tokens"
        + (f" (quick: {QUICK_TRAIN_TOKENS:,} training tokens, {QUICK_EVAL_TOKENS:,} test tokens)" if args.quick else "")
        + ".\n",
        markdown_table(["corpus", "test tokens", "KN5", "LSTM", "neural weight", "blend", "training"], perplexities),
    ]
    if cells:
        parts += [
            "\nPTB, the same budget for each cell (window: Bengio's model, 4 words of context):\n",
            markdown_table(["cell", "weights", "epochs", "seconds", "test perplexity"], cells),
        ]
    if latency:
        parts += [
            f"\nOne suggestion (distribution + top 10) while typing {LATENCY_SENTENCES} PTB test sentences word by "
            "word, one CPU thread, ms:\n",
            markdown_table(["model", "suggestions", "p50", "p95", "p99"], latency),
        ]
    body = "\n".join(parts)
    print("\n" + body)
    print(f"\nruntime {runtime:.0f} s")
    out = results_path(args)
    if out is not None:
        write_section(out, SECTION, section_text("Neural models (`bench/neural.py`)", body, runtime, ["torch"]))


if __name__ == "__main__":
    main()
