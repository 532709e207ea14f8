"""Completion latency through the real language server over stdio.

Starts `nextword serve` as a subprocess on a store built from WikiText-2 train (by default the shipped default
model, a pruned WikiText-2 train 5-gram store; `--full` builds an unpruned prose 5-gram store first), opens one
document, and for each of `--requests` positions taken from WikiText-2 test text sets the document to the text
before the position (didChange) and asks for a completion there — half of them right after a space, half after a
1-2 letter prefix of the true next word. Reports the round-trip latency (p50/p95/p99/max), the time from process
start to the first completion answer, and the server's resident memory; then the same while typing paragraphs
word by word. Both for the n-gram model alone and for its blend with the shipped neural model. A tiny JSON-RPC
client is used (not a full LSP client library) so the client's own overhead stays out of the figures. The round
trips' histogram (all kinds together, per model) goes to bench/plots/lsp_latency_histogram.png and .svg (needs
matplotlib: `pip install -e '.[bench]'`; with --quick, to a temporary folder unless --plots is given).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
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
    corpora_dir,
    fmt,
    markdown_table,
    percentiles,
    publish,
    require_files,
    seeded_store,
    step,
)

URI = "file:///bench/document.md"


class RawClient:
    """Just enough JSON-RPC over a child's stdin/stdout: requests answered in order, notifications skipped."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=cwd
        )
        self.next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        length = 0
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the server closed its output")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self.proc.stdout.read(length))

    def request(self, method: str, params: Any) -> Any:
        self.next_id += 1
        self.send({"id": self.next_id, "method": method, "params": params})
        while True:
            message = self.read()
            if message.get("id") == self.next_id and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message.get("result")
            if "method" in message and "id" in message:  # a request from the server: say yes
                self.send({"id": message["id"], "result": None})

    def wait_for(self, method: str, uri: str, timeout: float = 300.0) -> dict[str, Any]:
        """Read messages until the notification `method` for the document `uri` comes; return its params."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.read()
            if message.get("method") == method and message.get("params", {}).get("uri") == uri:
                return message["params"]
            if "method" in message and "id" in message:
                self.send({"id": message["id"], "result": None})
        raise RuntimeError(f"no {method} for {uri} within {timeout:.0f} s")

    def notify(self, method: str, params: Any) -> None:
        self.send({"method": method, "params": params})

    def rss(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the server in bytes."""
        values = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) * 1024
        return values.get("VmRSS", 0), values.get("VmHWM", 0)

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


def positions(test_file: Path, count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(text before the cursor, the word that truly follows) pairs from WikiText-2 test paragraphs, as prose."""
    from lsp_server.default_model import UNK_MARKER, detokenize_wikitext

    paragraphs = [
        detokenize_wikitext(line)
        for line in test_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("=")
    ]
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    while len(out) < count:
        words = rng.choice(paragraphs).split(" ")
        if len(words) < 3:
            continue
        cut = rng.randrange(1, len(words))
        following = words[cut]
        if not following.isalpha() or UNK_MARKER in following or UNK_MARKER in " ".join(words[:cut]):
            continue
        out.append((" ".join(words[:cut]) + " ", following))
    return out


def prepare_store(folder: Path, full: bool, corpora: Path) -> Path:
    """A prose store from WikiText-2 train: the shipped default model, or an unpruned 5-gram build."""
    db = folder / "wikitext2.db"
    if full:
        from lm_core.counting import count_ngrams, encode_sentences
        from lm_core.vocab import Vocab
        from lsp_server.default_model import analyse_wikitext
        from store.countstore import CountStore

        train = require_files(corpora, ["wikitext-2/wiki.train.tokens"])[0]
        sentences, casing = analyse_wikitext(train.read_text(encoding="utf-8"))
        vocab = Vocab()
        tables = count_ngrams(encode_sentences(sentences, vocab), 5, vocab)
        with CountStore.open(db, order=5, tokenizer="prose", create=True) as store:
            store.add_base(tables, name="WikiText-2 train", casing=casing)
    else:
        seeded_store(db)
    return db


def completion_params(text: str) -> dict[str, Any]:
    lines = text.split("\n")
    character = len(lines[-1].encode("utf-16-le")) // 2
    return {"textDocument": {"uri": URI}, "position": {"line": len(lines) - 1, "character": character}}


def prose_paragraphs(test_file: Path, seed: int = 1, keep_unknown: bool = False) -> list[str]:
    """WikiText-2 test paragraphs as prose (no headings; none with `<unk>` unless `keep_unknown`), shuffled."""
    from lsp_server.default_model import detokenize_wikitext

    paragraphs = [
        detokenize_wikitext(line)
        for line in test_file.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("=") and (keep_unknown or "<unk>" not in line)
    ]
    random.Random(seed).shuffle(paragraphs)
    return paragraphs


def typing_cases(test_file: Path, count: int) -> list[str]:
    """Texts as a person types WikiText-2 test paragraphs word by word: each is the paragraph so far plus a space
    (so a blended model's cached document state needs only the new word)."""
    out: list[str] = []
    for paragraph in prose_paragraphs(test_file):
        words = [w for w in paragraph.split(" ") if w]
        out += [" ".join(words[:i]) + " " for i in range(1, len(words))]
        if len(out) >= count:
            break
    return out[:count]


def learn_user_text(db: Path, corpora: Path) -> int:
    """The adaptive rows' user: the first 80 % of Austen's three Gutenberg books learned into the store, in two
    parts (the second scored before it is learned, so the mixture has fitted weights); returns the words learned."""
    from lsp_server.engine import Engine

    books = require_files(corpora, [f"gutenberg/austen-{b}.txt" for b in ("emma", "persuasion", "sense")])
    text = "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in books)
    text = text[: text.rfind("\n\n", 0, int(len(text) * 0.8))]
    cut = text.rfind("\n\n", 0, int(len(text) * 0.95))
    engine = Engine.open(db)
    engine.learn("austen-1", text[:cut])
    engine.enable_adaptation()
    engine.learn("austen-2", text[cut:])
    engine.close()
    return len(text.split())


def start_server(
    db: Path, env: dict[str, str], neural: str, adaptation: bool = False, source: Path = ROOT
) -> tuple[RawClient, float, float | None]:
    """A server on `db` (the nextword of the source tree `source`); returns it, the seconds from process start to
    the first completion answer, and (with a neural model or adaptation) the seconds until the blend was attached
    and the adaptive mixture on (polled through nextword.statistics)."""
    started = time.perf_counter()
    env = {**env, "PYTHONPATH": str(source)}
    client = RawClient([sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(db)], env, cwd=source)
    options = {"neuralModel": neural, "adaptation": adaptation}
    client.request(
        "initialize", {"processId": os.getpid(), "capabilities": {}, "rootUri": None, "initializationOptions": options}
    )
    client.notify("initialized", {})
    text = "The history of the "
    client.notify(
        "textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "markdown", "version": 1, "text": text}}
    )
    client.request("textDocument/completion", completion_params(text))
    first_completion_s = time.perf_counter() - started
    attached_s = None
    if neural != "none" or adaptation:
        deadline = time.monotonic() + 180

        def ready(stats: dict[str, Any]) -> bool:
            on = str(stats.get("adaptation", "")).startswith("on")
            return ("neural_model" in stats or neural == "none") and (on or not adaptation)

        statistics = {"command": "nextword.statistics", "arguments": []}
        while not ready(client.request("workspace/executeCommand", statistics)):
            if time.monotonic() > deadline:
                raise RuntimeError("the neural model or the adaptive mixture never came (default-neural.pt there?)")
            time.sleep(0.05)
        attached_s = time.perf_counter() - started
    return client, first_completion_s, attached_s


def timed_completions(client: RawClient, texts: list[str], version: int) -> tuple[list[float], int]:
    """Round-trip ms of a completion after each text (set by a didChange first)."""
    out = []
    for text in texts:
        version += 1
        client.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"text": text}]},
        )
        with Stopwatch() as sw:
            result = client.request("textDocument/completion", completion_params(text))
        if not result or not result.get("items"):
            raise RuntimeError(f"no completion for {text[-60:]!r}")
        out.append(sw.seconds * 1000)
    return out, version


def run(args: Any, neural: str, adaptation: bool = False, source: Path = ROOT) -> dict[str, Any]:
    corpora = corpora_dir(args.corpora)
    (test_file,) = require_files(corpora, ["wikitext-2/wiki.test.tokens"])
    count = 200 if args.quick else args.requests
    cases = positions(test_file, count)
    random_texts = [before + (following[: 1 + i % 2] if i % 2 else "") for i, (before, following) in enumerate(cases)]
    typed = typing_cases(test_file, count)
    with tempfile.TemporaryDirectory() as tmp:
        with step("preparing the store"):
            db = prepare_store(Path(tmp), args.full, corpora)
        if adaptation:
            with step("learning the user's text (Austen)"):
                learn_user_text(db, corpora)
        env = {**os.environ, "XDG_DATA_HOME": tmp}
        client, first_completion_s, attached_s = start_server(db, env, neural, adaptation, source)
        with step(f"{len(cases)} completions at random positions"):
            at_random, version = timed_completions(client, random_texts, 1)
        with step(f"{len(typed)} completions while typing paragraphs"):
            typing, _ = timed_completions(client, typed, version)
        with step("a 5,000-word document opened: its diagnostics through the server"):
            served_check_s = served_check(client, document_of(test_file))
        rss, hwm = client.rss()
        client.close()
        diagnostics = None
        if source == ROOT:
            with step("diagnostics of a 5,000-word document"):
                diagnostics = diagnostics_cost(db, test_file, neural)
    return {
        "diagnostics": diagnostics,
        "latencies": {
            "random position, after a space": at_random[0::2],
            "random position, 1-2 letters typed": at_random[1::2],
            "typing a paragraph, after each word": typing,
        },
        "first_completion_s": first_completion_s,
        "attached_s": attached_s,
        "served_check_s": served_check_s,
        "rss": rss,
        "hwm": hwm,
        "count": count,
    }


def document_of(test_file: Path, words: int = 5_000) -> str:
    """WikiText-2 test prose paragraphs as one document of about `words` words (whole paragraphs)."""
    text, n = [], 0
    for paragraph in prose_paragraphs(test_file):
        if n >= words:
            break
        text.append(paragraph)
        n += len(paragraph.split())
    return "\n\n".join(text)


def served_check(client: RawClient, document: str) -> float:
    """Seconds from opening `document` in the server to its diagnostics arriving (a cold check; the model was
    already used for completions)."""
    uri = "file:///bench/long-document.md"
    with Stopwatch() as sw:
        client.notify(
            "textDocument/didOpen",
            {"textDocument": {"uri": uri, "languageId": "markdown", "version": 1, "text": document}},
        )
        client.wait_for("textDocument/publishDiagnostics", uri)
    return sw.seconds


def diagnostics_cost(db: Path, test_file: Path, neural: str, words: int = 5_000) -> dict[str, float]:
    """Seconds of `Engine.check` (perplexity and odd words, what diagnostics publish) on a `words`-word document
    of WikiText-2 test prose: cold (every sentence scored), then after one word in the middle is changed (only
    that sentence is scored again)."""
    from lsp_server.engine import Engine
    from lsp_server.paths import neural_model_path

    document = document_of(test_file, words)
    engine = Engine.open(db)
    path = neural_model_path(neural, db, engine.base_sources())
    if path is not None:
        engine.attach_neural(path)
    with Stopwatch() as cold:
        engine.check(document)
    middle = len(document) // 2
    at = document.index(" the ", middle)
    with Stopwatch() as warm:
        engine.check(document[:at] + " a " + document[at + 5 :])
    engine.close()
    return {"words": float(len(document.split())), "cold_s": cold.seconds, "edit_s": warm.seconds}


def report(results: dict[str, dict[str, Any]], full: bool) -> str:
    rows, summary, checks = [], [], []
    for model, figures in results.items():
        everything = [x for values in figures["latencies"].values() for x in values]
        for name, values in [*figures["latencies"].items(), ("all", everything)]:
            p50, p95, p99 = percentiles(values)
            rows.append([model, name, fmt(len(values)), fmt(p50), fmt(p95), fmt(p99), fmt(max(values))])
        p50, _, p99 = percentiles(everything)
        d = figures["diagnostics"]
        if d is not None:
            checks.append([model, fmt(d["words"]), f"{d['cold_s'] * 1000:,.0f}", f"{d['edit_s'] * 1000:,.1f}"])
        attached = "-" if figures["attached_s"] is None else f"{figures['attached_s']:.2f} s"
        summary.append(
            [
                model,
                f"{p50:.2f} / {p99:.2f} ms",
                f"{figures['first_completion_s']:.2f} s",
                attached,
                f"{figures['served_check_s']:.2f} s",
                f"{figures['rss'] / 2**20:.0f} MiB ({figures['hwm'] / 2**20:.0f} MiB)",
            ]
        )
    table = markdown_table(["model", "completion", "requests", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows)
    store = "an unpruned prose 5-gram store" if full else "the shipped default model (pruned prose 5-gram)"
    head = [
        "model",
        "p50 / p99 (aim <= 3 / <= 10 ms)",
        "start to first answer (aim <= 1 s)",
        "start to blend attached (aim <= 2 s)",
        "5,000-word document opened to its diagnostics",
        "resident memory after it all (peak; aim <= 250 MB)",
    ]
    return (
        f"Round trips of `textDocument/completion` through `nextword serve` over stdio, on {store} built from "
        f"WikiText-2 train: at random positions from WikiText-2 test (each a new context: a blended model runs up "
        f"to 64 tokens through the network), and while typing WikiText-2 test paragraphs word by word (the "
        f"document's cached state: only the new word runs). Each request follows a didChange with the text before "
        f"the cursor. `n-gram`: neuralModel none; `blend`: neuralModel default (the shipped LSTM, attached in the "
        f"background; timing starts once it is); `+ adaptation`: the first 80 % of Austen's three books learned "
        f"first, the adaptive mixture on (store model, user layer, document cache; with the LSTM as a fourth "
        f"component in `blend + adaptation`), timing from when it is on; without: adaptation off. Then a 5,000-word "
        f"document of WikiText-2 test paragraphs is opened and its diagnostics awaited, and the server's resident "
        f"memory read. Rows marked (reference) run the server of another source tree (`--reference`) in the same "
        f"run.\n\n{table}\n\n{markdown_table(head, summary)}\n\n"
        "Diagnostics (`Engine.check`: perplexity and odd words) on WikiText-2 test paragraphs as one document, "
        "in process: cold, then after one word in the middle is changed (aims, issue 16: cold <= 1 s with the blend, "
        "<= 500 ms n-gram; after an edit <= 50 ms):\n\n"
        + markdown_table(["model", "words", "cold ms", "after a one-word edit ms"], checks)
        + "\n"
    )


def plot_histogram(results: dict[str, dict[str, Any]], folder: Path) -> Path:
    """Every completion round trip of each model (ms) as a histogram, PNG and SVG; returns the PNG's path."""
    from lsp_server import plots

    samples = {model: [x for values in r["latencies"].values() for x in values] for model, r in results.items()}
    title = "Completion round trips through `nextword serve` (stdio)"
    plots.latency_histogram(samples, folder / "lsp_latency_histogram.svg", title)
    return plots.latency_histogram(samples, folder / "lsp_latency_histogram.png", title)


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="completion requests per kind (default 2000)")
    parser.add_argument("--full", action="store_true", help="build an unpruned prose 5-gram store first (~1 min)")
    models = ["n-gram", "blend", "n-gram + adaptation", "blend + adaptation"]
    parser.add_argument("--models", nargs="*", default=models, choices=models, help="what to measure")
    parser.add_argument(
        "--reference", type=Path, default=None, help="also run the server of this source tree (e.g. ../main)"
    )
    parser.add_argument("--plots", type=Path, default=None, help=f"where the histogram goes (default {PLOTS})")
    args = parser.parse_args()
    with Stopwatch() as total:
        results = {}
        for model in args.models:
            neural = "default" if model.startswith("blend") else "none"
            adaptation = model.endswith("adaptation")
            results[model] = run(args, neural, adaptation)
            if args.reference is not None:
                results[f"{model} (reference)"] = run(args, neural, adaptation, args.reference.resolve())
    body = report(results, args.full)
    histogram = plot_histogram(results, args.plots or (Path(tempfile.mkdtemp()) if args.quick else PLOTS))
    if histogram.is_relative_to(ROOT / "bench"):
        body += f"\n\nHistogram of the round trips: [{histogram.name}]({histogram.relative_to(ROOT / 'bench')})"
    print(body)
    publish(args, "lsp_latency", "Completion latency through the server", body, total.seconds)


if __name__ == "__main__":
    main()
