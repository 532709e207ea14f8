"""The neural model's inference paths side by side: torch (as before, `torch.set_num_threads(1)`) and numpy
(`lm_core.inference`, what the server, `complete`, `check`, `score` and `eval` use now), on the shipped LSTM.

Each path runs in a fresh process (so import time and resident memory are its own): the time to import it and load
the checkpoint, the process's resident memory after loading and after the timings, the next-word distribution after
one more token from a cached state (typing), after a fresh 64-token context (a completion in a new place), and
scoring ~5,000 words of WikiText-2 test prose sentence by sentence (batched: padded batches of sentences for numpy;
one forward pass per sentence for torch, as before). The numpy path's largest difference in probability from
torch's is reported too (tests/test_inference.py asserts <= 1e-5 on small models).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Stopwatch,
    base_parser,
    corpora_dir,
    fmt,
    markdown_table,
    peak_rss_bytes,
    percentiles,
    require_files,
    results_path,
    run_child,
    section_text,
    write_section,
)

CONTEXT = 64  # tokens of a fresh context (the Engine's UNBOUNDED_CONTEXT)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return peak_rss_bytes()


def child(path: str, backend: str, tokens_file: str, repeats: int) -> None:
    """Run in a fresh process: time one backend, print a JSON line."""
    started = time.perf_counter()
    if backend == "torch":
        import torch

        from lm_core.neural import load_checkpoint

        torch.set_num_threads(1)
        checkpoint = load_checkpoint(path)
        model, vocab = checkpoint.model, checkpoint.vocab
    else:
        from lm_core.inference import load_network

        loaded = load_network(path)
        model, vocab = loaded.network, loaded.vocab
    load_s = time.perf_counter() - started
    rss_loaded = rss_bytes()
    tokens: list[str] = json.loads(Path(tokens_file).read_text())
    step = torch_steps(model, vocab) if backend == "torch" else numpy_steps(model, vocab)
    typing_ms, fresh_ms = [], []
    for r in range(repeats):
        start = (r * 7) % (len(tokens) - CONTEXT - 1)
        context = tokens[start : start + CONTEXT]
        with Stopwatch() as sw:
            step["fresh"](context)
        fresh_ms.append(sw.seconds * 1000)
        with Stopwatch() as sw:
            step["next"](tokens[start + CONTEXT])
        typing_ms.append(sw.seconds * 1000)
    with Stopwatch() as sw:
        scores = step["score"](tokens)
    print(
        json.dumps(
            {
                "load_s": load_s,
                "rss_loaded": rss_loaded,
                "typing_ms": typing_ms,
                "fresh_ms": fresh_ms,
                "score_s": sw.seconds,
                "tokens": len(tokens),
                "probe": step["probe"](tokens[:CONTEXT]),
                "scores_head": scores[:2000],
                "rss_end": rss_bytes(),
            }
        )
    )


def numpy_steps(network: Any, vocab: list[str]) -> dict[str, Any]:
    import numpy as np

    from lm_core.inference import NeuralLM

    lm = NeuralLM(network, vocab)
    current: list[Any] = [(), None]

    def fresh(context: list[str]) -> None:  # a new document key: no cached state
        current[0], current[1] = tuple(context), ("document", lm.tokens_run)
        lm.logprobs_after(current[1], current[0])

    def next_token(token: str) -> None:  # the same document, one more token: only it runs
        lm.logprobs_after(current[1], (*current[0], token))

    def probe(context: list[str]) -> list[float]:
        return np.exp(NeuralLM(network, vocab).logprobs_after("probe", tuple(context))).tolist()

    return {"fresh": fresh, "next": next_token, "score": lm.sentence_logprobs, "probe": probe}


def torch_steps(model: Any, vocab: list[str]) -> dict[str, Any]:
    """The torch path as it was: one forward pass per call from the cached state, log-softmax in float64."""
    import torch
    from torch.nn import functional as F

    ids = {w: i for i, w in enumerate(vocab)}
    states: dict[str, Any] = {}

    def run(tokens: list[str], state: Any) -> tuple[Any, Any]:
        x = torch.tensor([[ids.get(t, 0) for t in tokens]])
        with torch.inference_mode():
            logits, state = model(x, state, last_only=True)
            return F.log_softmax(logits[0, -1].double(), dim=-1), state

    def fresh(context: list[str]) -> None:
        states["typing"] = run(context, model.init_state(1))[1]

    def next_token(token: str) -> None:
        run([token], states["typing"])

    def score(tokens: list[str]) -> list[float]:
        out, sentence = [], []
        for token in tokens:
            sentence.append(token)
            if token == "</s>":
                x = torch.tensor([[1, *(ids.get(t, 0) for t in sentence[:-1])]])
                with torch.inference_mode():
                    logits, _ = model(x, model.init_state(1))
                    lp = F.log_softmax(logits[0].double(), dim=-1)
                out += lp.gather(1, torch.tensor([[ids.get(t, 0)] for t in sentence]))[:, 0].tolist()
                sentence = []
        return out

    def probe(context: list[str]) -> list[float]:
        return run(context, model.init_state(1))[0].exp().tolist()

    return {"fresh": fresh, "next": next_token, "score": score, "probe": probe}


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="typing and fresh-context calls (default 200)")
    parser.add_argument("--child", nargs=4, help=argparse_hidden())
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    import tempfile

    from bench.lsp_latency import document_of
    from lm_core import tokenize
    from lsp_server.paths import DEFAULT_NEURAL_MODEL

    corpora = corpora_dir(args.corpora)
    test_file = require_files(corpora, ["wikitext-2/wiki.test.tokens"])[0]
    text = document_of(test_file, 1_000 if args.quick else 5_000)
    tokens = [t.norm for sentence in tokenize.sentences(text) for t in sentence]
    repeats = 20 if args.quick else args.repeats
    results = {}
    with Stopwatch() as total, tempfile.TemporaryDirectory() as tmp:
        tokens_file = Path(tmp) / "tokens.json"
        tokens_file.write_text(json.dumps(tokens))
        for backend in ("torch", "numpy"):
            argv = [str(Path(__file__)), "--child", str(DEFAULT_NEURAL_MODEL), backend, str(tokens_file), str(repeats)]
            results[backend] = run_child(argv, timeout=3600)
    body = report(results)
    print(body)
    path = results_path(args)
    if path is not None:
        title = "Neural inference: torch vs numpy (`bench/neural_inference.py`)"
        write_section(path, "neural_inference", section_text(title, body, total.seconds))


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def report(results: dict[str, dict[str, Any]]) -> str:
    torch_r, numpy_r = results["torch"], results["numpy"]
    difference = max(abs(a - b) for a, b in zip(torch_r["probe"], numpy_r["probe"], strict=True))
    score_difference = max(abs(a - b) for a, b in zip(torch_r["scores_head"], numpy_r["scores_head"], strict=True))
    rows = []
    for name, r in results.items():
        t50, _, t99 = percentiles(r["typing_ms"])
        f50, _, f99 = percentiles(r["fresh_ms"])
        rows.append(
            [
                name,
                f"{r['load_s']:.2f}",
                f"{r['rss_loaded'] / 2**20:,.0f}",
                f"{r['rss_end'] / 2**20:,.0f}",
                f"{t50:.2f} / {t99:.2f}",
                f"{f50:.2f} / {f99:.2f}",
                f"{r['score_s']:.2f}",
                fmt(r["tokens"] / r["score_s"], 0),
            ]
        )
    ratio = torch_r["score_s"] / numpy_r["score_s"]
    return (
        "The shipped LSTM (2x200, 20,000 words, half-precision checkpoint) in a fresh process per path; one BLAS / "
        "torch thread each.\n\n"
        + markdown_table(
            [
                "path",
                "import + load s",
                "RSS loaded MB",
                "RSS at the end MB",
                "one more token p50 / p99 ms",
                f"fresh {CONTEXT}-token context p50 / p99 ms",
                f"score {results['numpy']['tokens']:,} tokens s",
                "tokens/s",
            ],
            rows,
        )
        + f"\n\nScoring: numpy {ratio:.1f}x torch's speed. Largest difference in probability (numpy vs torch, one "
        f"distribution after {CONTEXT} tokens): {difference:.2e}; in log-probability over the first 2,000 scored "
        f"tokens: {score_difference:.2e}.\n"
    )


if __name__ == "__main__":
    main()
