"""A long editing session through one `nextword serve`: resident memory and completion latency over time.

One server on a copy of the shipped model (blended with the shipped LSTM unless `--ngram`), then `--documents`
Markdown documents one after another: each is opened, `--words` words of WikiText-2 test prose are typed into it
word by word with a completion request after every word, it is saved (the server learns it on the background
thread) and typing goes straight on in the next document, whose first completions therefore run while the last one
is learned; the saved document is closed a few words later (as a person switches tabs). Every `--every` documents
the server's resident memory (VmRSS) and the completion latencies since the last reading are recorded; the
completions typed in the first `AFTER_SAVE` words after a save are also reported on their own. Writes a table, a
plot of RSS over documents (`bench/plots/soak_rss.png`) and the `soak` section of `bench/RESULTS.md`.

Run it in the background, it is long (~15 minutes for 1,000 documents on an idle core):
    nohup .venv/bin/python bench/soak.py > soak.log 2>&1 &
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLOTS = ROOT / "bench" / "plots"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Stopwatch,
    base_parser,
    corpus_files,
    fmt,
    markdown_table,
    percentiles,
    publish,
    results_path,
    seeded_store,
    step,
)
from bench.lsp_latency import RawClient, prose_paragraphs  # noqa: E402
from lsp_server.default_model import UNK_MARKER  # noqa: E402
from lsp_server.heap import TRIM_INTERVAL_S  # noqa: E402

AFTER_SAVE = 5  # completions counted as "right after a save" (the learn of the last document may still run)
SETTLE_WAIT_S = TRIM_INTERVAL_S + 1.0  # a settled reading waits this long after the learns: the server trims its heap
CLOSE_AFTER = 5  # words typed into the next document before the saved one is closed


def document_texts(test_file: Path, count: int, words: int, every_paragraph: bool = False) -> list[list[str]]:
    """`count` documents of `words` words each, from WikiText-2 test prose paragraphs (cycled). By default only the
    paragraphs without `<unk>` (about 5,100 words: 1,000 documents repeat them about 30 times, so most learns find
    their sentences learned already); with `every_paragraph`, every prose paragraph with its `<unk>` tokens left out
    (about 200,000 words: fresh text throughout, as a person writes)."""
    if every_paragraph:
        paragraphs = [
            [w for w in p.split(" ") if UNK_MARKER not in w and "<unk>" not in w]
            for p in prose_paragraphs(test_file, keep_unknown=True)
        ]
    else:
        paragraphs = [p.split(" ") for p in prose_paragraphs(test_file)]
    stream = [w for p in paragraphs for w in p if w]
    out = []
    for i in range(count):
        start = (i * words) % max(1, len(stream) - words)
        out.append(stream[start : start + words])
    return out


def position(text: str) -> dict[str, int]:
    lines = text.split("\n")
    return {"line": len(lines) - 1, "character": len(lines[-1].encode("utf-16-le")) // 2}


def start(
    db: Path, env: dict[str, str], neural: str, cache_megabytes: int | None = None, tree: Path = ROOT
) -> RawClient:
    """A server of the nextword source tree `tree` on the store `db`, initialised, its neural model attached."""
    env = {**env, "PYTHONPATH": str(tree)}
    client = RawClient([sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(db)], env, cwd=tree)
    options: dict[str, Any] = {"neuralModel": neural}
    if cache_megabytes is not None:
        options["cacheMegabytes"] = cache_megabytes
    client.request(
        "initialize", {"processId": os.getpid(), "capabilities": {}, "rootUri": None, "initializationOptions": options}
    )
    client.notify("initialized", {})
    if neural != "none":
        deadline = time.monotonic() + 120
        while "neural_model" not in client.request(
            "workspace/executeCommand", {"command": "nextword.statistics", "arguments": []}
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the neural model was never attached")
            time.sleep(0.05)
    return client


class Session:
    """One server's session, typed a block of documents at a time (`type`), so that two servers can take turns."""

    def __init__(self, client: RawClient, every: int, settled_readings: bool = True) -> None:
        self.client, self.every, self.settled_readings = client, every, settled_readings
        self.readings: list[dict[str, float]] = []
        self.window: list[float] = []
        self.after_save: list[float] = []
        self.everything: list[float] = []
        self.pending_close: str | None = None
        self.typed = 0
        self.started = time.perf_counter()
        rss0, _ = client.rss()
        nan = float("nan")
        self.readings.append({"documents": 0, "rss": rss0, "settled": rss0, "p50": nan, "p99": nan, "max": nan})

    def type(self, documents: list[list[str]]) -> None:
        """Type, save and close these documents, numbered on from the last block."""
        client = self.client
        for words in documents:
            self.typed += 1
            d = self.typed
            uri = f"file:///soak/doc{d:05d}.md"
            client.notify(
                "textDocument/didOpen",
                {"textDocument": {"uri": uri, "languageId": "markdown", "version": 1, "text": ""}},
            )
            text = ""
            for i, word in enumerate(words):
                text = f"{text}{word} "
                client.notify(
                    "textDocument/didChange",
                    {"textDocument": {"uri": uri, "version": i + 2}, "contentChanges": [{"text": text}]},
                )
                with Stopwatch() as sw:
                    client.request(
                        "textDocument/completion", {"textDocument": {"uri": uri}, "position": position(text)}
                    )
                ms = sw.seconds * 1000
                self.window.append(ms)
                self.everything.append(ms)
                if d > 1 and i < AFTER_SAVE:
                    self.after_save.append(ms)
                if self.pending_close is not None and i == CLOSE_AFTER:
                    client.notify("textDocument/didClose", {"textDocument": {"uri": self.pending_close}})
                    self.pending_close = None
            client.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
            self.pending_close = uri
            if d % self.every == 0:
                self.read()

    def read(self) -> None:
        """A reading: RSS now (the last document's learn may still run), latency of the completions since the last
        reading; then, with `settled_readings`, RSS once the server's background work is done and its heap trimmed
        (the same point of every document's cycle, for the trend: the first reading swings with where in a learn
        or in malloc's free lists it falls)."""
        if not self.window:
            return
        rss, _ = self.client.rss()
        p50, _, p99 = percentiles(self.window)
        d = self.typed
        settled = float("nan")
        if self.settled_readings:
            self.settle()
            time.sleep(SETTLE_WAIT_S)
            settled, _ = self.client.rss()
        self.readings.append(
            {"documents": d, "rss": rss, "settled": settled, "p50": p50, "p99": p99, "max": max(self.window)}
        )
        print(
            f"{d:>6} documents  RSS {rss / 2**20:7.1f} MB  settled {settled / 2**20:7.1f} MB  "
            f"p50 {p50:5.2f}  p99 {p99:6.2f}  "
            f"max {max(self.window):.1f} ms  ({time.perf_counter() - self.started:,.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        self.window = []

    def settle(self) -> None:
        """Wait until the server's background work (the last document's learn) is done: the statistics command
        runs on the same background thread, after it."""
        self.client.request("workspace/executeCommand", {"command": "nextword.statistics", "arguments": []})

    def result(self) -> dict[str, Any]:
        _, peak = self.client.rss()
        return {"readings": self.readings, "after_save": self.after_save, "all": self.everything, "peak": peak}


def plot(results: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """RSS over documents, one line per configuration (matplotlib; skipped without it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot)", file=sys.stderr)
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, result in results.items():
        xs = [r["documents"] for r in result["readings"]]
        ax.plot(xs, [r["rss"] / 2**20 for r in result["readings"]], marker=".", label=f"{name}, while typing")
        settled = [r.get("settled", float("nan")) / 2**20 for r in result["readings"]]
        if any(v == v for v in settled[1:]):
            ax.plot(xs, settled, marker=".", label=f"{name}, settled (learns done, heap trimmed)")
    ax.set_xlabel("documents opened, typed, saved and closed")
    ax.set_ylabel("server RSS, MB")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("nextword serve: resident memory over a long session")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(results: dict[str, dict[str, Any]], words: int, plot_path: Path | None) -> str:
    rows, summary = [], []
    for name, result in results.items():
        readings = result["readings"]
        for r in readings[1:]:
            rows.append(
                [
                    name,
                    fmt(int(r["documents"])),
                    f"{r['rss'] / 2**20:,.1f}",
                    f"{r['settled'] / 2**20:,.1f}",
                    fmt(r["p50"]),
                    fmt(r["p99"]),
                ]
            )
        last = readings[-1]
        half = next(r for r in readings if r["documents"] >= last["documents"] / 2)
        peak = max([result.get("peak", 0), *(r["rss"] for r in readings)])
        p50, _, p99 = percentiles(result["all"])
        s50, _, s99 = percentiles(result["after_save"])
        worst_window_p99 = max(r["p99"] for r in readings[1:])
        summary.append(
            [
                name,
                fmt(int(last["documents"])),
                f"{peak / 2**20:,.1f}",
                f"{(last['rss'] - half['rss']) / 2**20:+,.1f}",
                f"{(last['settled'] - half['settled']) / 2**20:+,.1f}",
                f"{p50:.2f} / {p99:.2f}",
                fmt(worst_window_p99),
                f"{s50:.2f} / {s99:.2f}",
                fmt(max(result["all"]), 1),
            ]
        )
    body = (
        f"One `nextword serve` on a copy of the shipped model; documents of {words} words of WikiText-2 test prose, "
        "each opened, typed word by word with a completion request after every word, saved (learned on the "
        f"background thread) and closed {CLOSE_AFTER} words into the next one. Latency is the client's round trip "
        f"(ms); 'after a save': the first {AFTER_SAVE} completions of each next document, while the last one is "
        "learned. Aims (issue 19): RSS with the blend < 300 MB, the last half of the documents adding < 10 MB, "
        "completion p99 <= 10 ms throughout. Peak RSS is the server's high-water mark (VmHWM). A reading's RSS is "
        "read twice: while typing goes on (the last document's learn may still run, freed memory not yet "
        f"returned), and settled: after the server's background work is done and {SETTLE_WAIT_S:.0f} s, within which "
        "the server gives freed heap memory back (`lsp_server.heap`); the next document's first completions then "
        "meet no learn, once every reading.\n\n"
        + markdown_table(
            [
                "model",
                "documents",
                "peak RSS MB",
                "RSS change over the last half MB",
                "settled RSS change over the last half MB",
                "p50 / p99 ms",
                "worst p99 of a reading",
                "after a save p50 / p99 ms",
                "max ms",
            ],
            summary,
        )
        + "\n\nReadings (RSS after that many documents; latency of the completions since the last reading):\n\n"
        + markdown_table(["model", "documents", "RSS MB", "settled RSS MB", "p50 ms", "p99 ms"], rows)
    )
    if plot_path is not None:
        body += f"\n\n![RSS over documents](plots/{plot_path.name})\n"
    return body


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000, help="documents in the session (default 1000)")
    parser.add_argument("--words", type=int, default=150, help="words typed into each document (default 150)")
    parser.add_argument("--every", type=int, default=20, help="documents between readings (default 20)")
    parser.add_argument(
        "--models", nargs="*", default=["blend"], choices=["n-gram", "blend"], help="what to run (default: blend)"
    )
    parser.add_argument(
        "--cache-megabytes", type=int, default=None, help="the server's cacheMegabytes setting (default: its own)"
    )
    parser.add_argument(
        "--fresh-text",
        action="store_true",
        help="type every WikiText-2 test paragraph (its <unk> left out), not only the ~5,100 words without <unk>",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another nextword source tree (e.g. a git worktree of an earlier commit): its server types the same "
        "documents, the two taking turns every --every documents (the other one idle, its learns finished; which "
        "one goes first alternates), so both meet the machine's same hours",
    )
    parser.add_argument("--baseline-name", default=None, help="what to call it in the table (default: its path)")
    parser.add_argument("--plots", type=Path, default=None, help=f"where the RSS plot goes (default {PLOTS})")
    parser.add_argument(
        "--no-settled-readings",
        action="store_true",
        help=f"read RSS only while typing goes on (no {SETTLE_WAIT_S:.0f} s wait for a settled reading)",
    )
    args = parser.parse_args()
    count = 40 if args.quick else args.documents
    (test_file,) = corpus_files(args, ["wikitext-2/wiki.test.tokens"])
    documents = document_texts(test_file, count, args.words, every_paragraph=args.fresh_text)
    trees = [("", ROOT)]
    if args.baseline is not None:
        trees.append((f", baseline {args.baseline_name or args.baseline}", args.baseline.resolve()))
    results: dict[str, dict[str, Any]] = {}
    with Stopwatch() as total:
        for model in args.models:
            with contextlib.ExitStack() as stack:
                sessions: dict[str, Session] = {}
                for suffix, tree in trees:
                    tmp = stack.enter_context(tempfile.TemporaryDirectory())
                    db = seeded_store(Path(tmp) / "store.db")
                    env = {**os.environ, "XDG_DATA_HOME": tmp}
                    neural = "none" if model == "n-gram" else "default"
                    client = start(db, env, neural, args.cache_megabytes, tree)
                    stack.callback(client.close)
                    sessions[model + suffix] = Session(client, args.every, not args.no_settled_readings)
                with step(f"{model}: {count} documents of {args.words} words, {len(trees)} tree(s) taking turns"):
                    for turn, block in enumerate(range(0, count, args.every)):
                        # the tree that types second after a block does better (the other's learns just ended):
                        # each goes first every other block
                        order = list(sessions.values())
                        for typing in order[::-1] if turn % 2 else order:
                            typing.type(documents[block : block + args.every])
                            typing.read()
                            if len(sessions) > 1:
                                typing.settle()
                for name, typing in sessions.items():
                    results[name] = typing.result()
    plot_path = plot(results, (args.plots or PLOTS) / "soak_rss.png") if results_path(args) is not None else None
    body = report(results, args.words, plot_path)
    print(body)
    publish(args, "soak", "A long editing session (soak)", body, total.seconds)


if __name__ == "__main__":
    main()
