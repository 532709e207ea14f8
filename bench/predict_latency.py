"""`predict` latency and `learn` time on a WikiText-2 5-gram pretokenized store.

The store is built from WikiText-2 train once and cached (`--store`, default under /tmp; rebuilt when missing, built
from other text, or with `--rebuild`). Predict: `NgramModel(SqliteCounts(store)).predict(context, k=10)` at random
word positions of WikiText-2 test (never at a `</s>`), the context being up to 4 previous tokens of the same line
(starting with `<s>` near the line start); once without a prefix and once with the first 1 or 2 letters (alternately)
of the true next word, each from a freshly opened store whose first call is reported apart (cold: empty caches, warm
OS page cache). Learn: 200-word paragraphs of WikiText-2 test learned as new documents into a copy of the store, then
each learned again with a few words changed; the first `predict` after each learn is timed too (a learn drops the
caches); the store defers its WAL checkpoints to an explicit one between rounds, as the server does. Then learning
through the Engine as the server does (`Engine.learn` of 200-word prose paragraphs into a store seeded from the
shipped model, checkpoints deferred), with personal adaptation off and on, each in a fresh process, timed in parts:
adaptation's bookkeeping, tokenizing with the secret scan, counting and the count updates, casing, and the commit;
with `--reference DIR` the same runs for another source tree (e.g. the main branch) in the same run. Where `nltk`
imports, NLTK's `KneserNeyInterpolated(3)` on a slice of WikiText-2 train scores our top 10 candidates for some
contexts, beside our `predict` on a store of the same slice.

    python bench/predict_latency.py            # 2,000 predict calls per variant, 30 + 30 learns; about 30 s
    python bench/predict_latency.py --quick    # 200 calls, 5 + 5 learns, 10 NLTK contexts
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ENV = "NEXTWORD_BENCH_SOURCE"  # a child that measures another source tree imports nextword from there
SOURCE = Path(os.environ.get(SOURCE_ENV, ROOT))
if str(SOURCE) not in sys.path:
    sys.path.insert(0, str(SOURCE))

from bench.common import (  # noqa: E402
    Stopwatch,
    base_parser,
    built_store,
    corpus_files,
    fmt,
    machine,
    markdown_table,
    percentiles,
    publish,
    run_child,
    step,
)
from lm_core.model import Prediction  # noqa: E402
from lm_core.ngram import NgramModel  # noqa: E402
from lm_core.vocab import BOS  # noqa: E402
from store.countstore import CountStore, source_name  # noqa: E402
from store.sources import sha256  # noqa: E402
from store.sqlite_counts import SqliteCounts  # noqa: E402

SECTION = "predict_latency"
ENGINE_SECTION = "engine_learn"
ENGINE_LEARN_INTRO = (
    "Learning through the Engine as the server does: 200-word prose paragraphs of WikiText-2 test (detokenized) "
    "learned as new documents with `Engine.learn` into a store seeded from the shipped model (a pruned prose 5-gram "
    "store), WAL checkpoints deferred; each row in a fresh process; rows marked (reference) ran another source tree."
)
TRAIN, TEST = "wikitext-2/wiki.train.tokens", "wikitext-2/wiki.test.tokens"
DEFAULT_STORE = Path(tempfile.gettempdir()) / "nextword-bench" / "wikitext2-5gram.db"
ORDER = 5
CONTEXT_TOKENS = ORDER - 1
K = 10
PARAGRAPH_WORDS = 200
EDITED_WORDS = 3
NLTK_ORDER = 3
NLTK_SLICE_WORDS = 100_000
AIM_PREDICT_P99_MS = 5.0
AIM_LEARN_MS = 10.0


@dataclass(frozen=True)
class Position:
    context: tuple[str, ...]
    word: str  # the true next word


@dataclass
class Timings:
    label: str
    ms: list[float]  # warm calls
    cold_ms: float = float("nan")
    open_ms: float = float("nan")
    hit_at_k: float = float("nan")  # share of calls whose true word is among the k predictions
    top1: float = float("nan")


# --- text ------------------------------------------------------------------------------------------------------------
def test_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]


def sample_positions(lines: list[list[str]], n: int, rng: random.Random) -> list[Position]:
    """`n` distinct random word positions (never a `</s>`) and their contexts."""
    slots = [(i, j) for i, words in enumerate(lines) for j in range(len(words))]
    picked = rng.sample(slots, n)
    return [Position(tuple([BOS, *lines[i][:j]][-CONTEXT_TOKENS:]), lines[i][j]) for i, j in picked]


def prefix_of(word: str, i: int) -> str:
    """The first 1 or 2 letters of `word` (alternately by call number)."""
    return word[: 1 + i % 2]


def paragraphs(lines: list[list[str]], n: int, rng: random.Random) -> list[list[str]]:
    """`n` paragraphs of WikiText-2 test: the first PARAGRAPH_WORDS words of lines at least that long."""
    long_lines = [words[:PARAGRAPH_WORDS] for words in lines if len(words) >= PARAGRAPH_WORDS]
    return rng.sample(long_lines, min(n, len(long_lines)))


def edited(words: list[str], vocabulary: Sequence[str], rng: random.Random) -> list[str]:
    """`words` with EDITED_WORDS of them replaced by other words (an edit of the paragraph)."""
    out = list(words)
    for i in rng.sample(range(len(out)), EDITED_WORDS):
        out[i] = rng.choice(vocabulary)
    return out


# --- the store -------------------------------------------------------------------------------------------------------
def ensure_store(path: Path, train: Path, rebuild: bool) -> tuple[Path, str]:
    """The cached WikiText-2 5-gram store at `path` (built unless it holds exactly `train`); and a note."""
    if path.exists() and not rebuild and _holds_only(path, train):
        return path, f"reused the cached store {path}"
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)
    with step(f"building the {ORDER}-gram store {path} from {train.name}") as sw:
        built_store(path, [train], ORDER)[0].close()
    return path, f"built the store {path} in {sw.seconds:.1f} s"


def _holds_only(path: Path, train: Path) -> bool:
    try:
        with CountStore.open(path) as store:
            if store.order != ORDER or store.tokenizer != "pretokenized":
                return False
            infos = store.sources()
    except Exception:  # any unreadable or foreign file is rebuilt
        return False
    digest = sha256(train.read_text(encoding="utf-8"))
    return len(infos) == 1 and infos[0].name == source_name(train) and infos[0].sha256 == digest


@dataclass
class Opened:
    """A freshly opened store, its reader and the model over it (empty caches)."""

    store: CountStore
    counts: SqliteCounts
    model: NgramModel
    open_ms: float

    def close(self) -> None:
        close = getattr(self.counts, "close", None)  # a reader with a connection of its own
        if close is not None:
            close()
        self.store.close()


def open_model(path: Path) -> Opened:
    """Open the store and a model over it, timing that (ms)."""
    with Stopwatch() as sw:
        store = CountStore.open(path)
        counts = SqliteCounts(store)
        model = NgramModel(counts)
    return Opened(store, counts, model, sw.seconds * 1000)


def timed(call: Callable[[], list[Prediction]]) -> tuple[list[Prediction], float]:
    start = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - start) * 1000


# --- predict ---------------------------------------------------------------------------------------------------------
def predict_latency(path: Path, positions: list[Position], with_prefix: bool) -> Timings:
    """The first call (cold) on a fresh store, then one call per remaining position."""
    label = "prefix: first 1-2 letters of the true word" if with_prefix else "no prefix"
    opened = open_model(path)
    model = opened.model
    try:
        ms, hits, top1 = [], 0, 0
        cold_ms = float("nan")
        for i, pos in enumerate(positions):
            prefix = prefix_of(pos.word, i) if with_prefix else ""
            predictions, elapsed = timed(lambda pos=pos, prefix=prefix: model.predict(pos.context, k=K, prefix=prefix))
            words = [p.word for p in predictions]
            if i == 0:
                cold_ms = elapsed
                continue
            ms.append(elapsed)
            hits += pos.word in words
            top1 += bool(words) and words[0] == pos.word
    finally:
        opened.close()
    n = len(ms)
    return Timings(label, ms, cold_ms, opened.open_ms, hits / n, top1 / n)


# --- learn -----------------------------------------------------------------------------------------------------------
@dataclass
class LearnTimings:
    new_ms: list[float]
    relearn_ms: list[float]
    predict_after_ms: list[float]  # the first predict after each learn (caches dropped by the learn)
    tokens: int
    wal_autocheckpoint: int  # pages, as the store sets it


def learn_times(path: Path, texts: list[list[str]], positions: list[Position], workdir: Path) -> LearnTimings:
    """Learn each paragraph as a new document into a copy of the store, then each again with a few words changed."""
    copy = workdir / "learn-copy.db"
    shutil.copyfile(path, copy)
    rng = random.Random(1)
    vocabulary = sorted({w for words in texts for w in words})
    opened = open_model(copy)
    store, model = opened.store, opened.model
    store.defer_checkpoints()  # as the server does: checkpoints when learning is quiet, here between the rounds
    new_ms, relearn_ms, after_ms, tokens = [], [], [], 0
    autocheckpoint = int(store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    try:
        model.predict(positions[0].context, k=K)  # warm the caches once; each learn drops them again
        for round_ms, make in ((new_ms, lambda w: w), (relearn_ms, lambda w: edited(w, vocabulary, rng))):
            store.checkpoint()
            for i, words in enumerate(texts):
                text = " ".join(make(words)) + "\n"
                with Stopwatch() as sw:
                    result = store.learn(f"doc-{i}", text)
                round_ms.append(sw.seconds * 1000)
                tokens = result.tokens
                pos = positions[(i + 1) % len(positions)]
                after_ms.append(timed(lambda pos=pos: model.predict(pos.context, k=K))[1])
    finally:
        opened.close()
        for p in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
            p.unlink(missing_ok=True)
    return LearnTimings(new_ms, relearn_ms, after_ms, tokens, autocheckpoint)


# --- learning through the Engine, in parts -------------------------------------------------------------------------
LEARN_PARTS = {  # part -> (module, attribute) of what is timed; the commit is what the store's update spends besides
    "adaptation before": ("lsp_server.engine", "Engine._adapt_before_learning"),
    "tokenize + secrets": ("store.sources", "analyse"),
    "secret scan": ("store.secrets", "find_secrets"),
    "count + count updates": ("store.countstore", "CountStore._apply_stream_change"),
    "casing": ("store.countstore", "CountStore._apply_casing"),
    "store learn": ("store.countstore", "CountStore.learn_analysed"),  # the update of an analysed text (both trees)
    "adaptation after": ("lsp_server.engine", "Engine._adapt_after_learning"),
}


def _timed_parts(spent: dict[str, list[float]]) -> None:
    """Wrap each of `LEARN_PARTS` so that every call appends its milliseconds to `spent[part]`."""
    import importlib

    for part, (module, attribute) in LEARN_PARTS.items():
        owner: object = importlib.import_module(module)
        *path, name = attribute.split(".")
        for step_name in path:
            owner = getattr(owner, step_name)
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed_call(*args: object, _original=original, _part=part, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent.setdefault(_part, []).append((time.perf_counter() - started) * 1000)

        setattr(owner, name, timed_call)


def child_engine_learn(spec: dict) -> dict:
    """In this process: a store seeded from the shipped model, `Engine.learn` of each text as a new document
    (adaptation on or off, checkpoints deferred), the first completion after each; milliseconds per call and part."""
    from bench.common import seeded_store
    from lsp_server.engine import Engine

    spent: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="nextword-bench-learn-") as tmp:
        engine = Engine.open(seeded_store(Path(tmp) / "seeded.db"))
        engine.defer_checkpoints()
        if spec["adaptation"]:
            engine.enable_adaptation()
        engine.next_words((BOS, "the"), K)  # warm
        _timed_parts(spent)
        learn_ms, after_ms = [], []
        for i, text in enumerate(spec["texts"]):
            with Stopwatch() as sw:
                engine.learn(f"doc-{i}", text)
            learn_ms.append(sw.seconds * 1000)
            with Stopwatch() as sw:
                engine.next_words((BOS, "the"), K)
            after_ms.append(sw.seconds * 1000)
        engine.close()
    timed = (spent[p] for p in ("store learn", "count + count updates", "casing"))
    commit = [s - c - k for s, c, k in zip(*timed, strict=True)]
    parts = {p: spent.get(p, []) for p in LEARN_PARTS if p != "store learn"}
    return {"learn": learn_ms, "after": after_ms, "parts": {**parts, "commit and the rest": commit}}


def prose_texts(test: Path, count: int, words: int = PARAGRAPH_WORDS) -> list[str]:
    """`count` prose texts of `words` words from WikiText-2 test paragraphs (detokenized, as a person writes)."""
    from lsp_server.default_model import detokenize_wikitext

    running = " ".join(
        detokenize_wikitext(line)
        for line in test.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("=")
    ).split()
    return [" ".join(running[i * words : (i + 1) * words]) for i in range(count)]


def engine_learn_runs(texts: list[str], reference: Path | None) -> dict[str, dict]:
    """Each (source tree, adaptation) pair in a fresh process: label -> `child_engine_learn`'s figures."""
    runs = {}
    trees = [("this tree", ROOT)] + ([("reference", reference.resolve())] if reference is not None else [])
    for adaptation in (False, True):
        for tree, source in trees:
            label = f"adaptation {'on' if adaptation else 'off'}" + ("" if source == ROOT else f" ({tree})")
            spec = json.dumps({"adaptation": adaptation, "texts": texts})
            env = {**os.environ, SOURCE_ENV: str(source), "PYTHONPATH": str(source)}
            with step(f"Engine.learn of {len(texts)} documents, {label}"):
                runs[label] = run_child([__file__, "--child-engine-learn", spec], env=env, cwd=source)
    return runs


def engine_learn_table(runs: dict[str, dict]) -> str:
    header = [
        "Engine.learn, new 200-word document",
        "calls",
        "p50 ms",
        "p95 ms",
        "max ms",
        f"aim <= {AIM_LEARN_MS:g} ms p95",
        "first completion after p50 ms",
    ]
    rows = []
    for label, r in runs.items():
        p50, p95 = percentiles(r["learn"], (50, 95))
        verdict = "met" if p95 <= AIM_LEARN_MS else "NOT met"
        after = percentiles(r["after"], (50,))[0]
        rows.append(
            [label, fmt(len(r["learn"])), fmt(p50, 2), fmt(p95, 2), fmt(max(r["learn"]), 1), verdict, fmt(after, 2)]
        )
    parts = list(next(iter(runs.values()))["parts"])
    part_rows = [
        [
            label,
            *(
                f"{percentiles(r['parts'][p], (50,))[0]:.2f} / {percentiles(r['parts'][p], (95,))[0]:.2f}"
                if r["parts"].get(p)
                else "-"
                for p in parts
            ),
        ]
        for label, r in runs.items()
    ]
    return (
        markdown_table(header, rows) + "\n\nWhere a learn's time goes (p50 / p95 ms per learn; the secret scan "
        "is part of tokenizing; commit and the rest = the store's update of the analysed text "
        "(`CountStore.learn_analysed`) less its timed parts: writing the source's row, new words, the commit):\n\n"
        + markdown_table(["", *parts], part_rows)
    )


# --- NLTK reference --------------------------------------------------------------------------------------------------
@dataclass
class NltkTimings:
    contexts: int
    candidates: int
    vocab: int
    nltk_ms: list[float]  # per context: scoring our top candidates with NLTK
    ours_ms: list[float]  # per context: our predict(k=10) on a store of the same slice
    fit_s: float


def nltk_reference(train: Path, positions: list[Position], workdir: Path) -> NltkTimings | None:
    """NLTK KneserNeyInterpolated(3) on the first NLTK_SLICE_WORDS words of train; None without nltk."""
    try:
        from nltk.lm import KneserNeyInterpolated
        from nltk.lm.preprocessing import padded_everygram_pipeline
    except ImportError:
        return None
    lines, total = [], 0
    with train.open(encoding="utf-8") as f:
        for line in f:
            if total >= NLTK_SLICE_WORDS:
                break
            lines.append(line)
            total += len(line.split()) + 1
    with Stopwatch() as fit:
        lm = KneserNeyInterpolated(NLTK_ORDER)
        lm.fit(*padded_everygram_pipeline(NLTK_ORDER, [line.split() for line in lines]))
    slice_path = workdir / "nltk-slice.txt"
    slice_path.write_text("".join(lines), encoding="utf-8")
    db = workdir / "nltk-slice.db"
    built_store(db, [slice_path], NLTK_ORDER)[0].close()
    opened = open_model(db)
    model = opened.model
    nltk_ms, ours_ms, candidates = [], [], 0
    try:
        model.predict(positions[0].context, k=K)  # warm
        for pos in positions:
            context = pos.context[-(NLTK_ORDER - 1) :]
            predictions, ms = timed(lambda context=context: model.predict(context, k=K))
            ours_ms.append(ms)
            with Stopwatch() as sw:
                for p in predictions:
                    lm.score(p.word, list(context))
            nltk_ms.append(sw.seconds * 1000)
            candidates += len(predictions)
        vocab = len(model.vocabulary_ids())
    finally:
        opened.close()
    return NltkTimings(len(positions), candidates, vocab, nltk_ms, ours_ms, fit.seconds)


# --- report ----------------------------------------------------------------------------------------------------------
def predict_table(results: list[Timings]) -> str:
    header = ["predict(k=10)", "calls", "open ms", "cold ms", "p50 ms", "p95 ms", "p99 ms", "max ms", "hit@10", "top-1"]
    rows = []
    for t in results:
        p50, p95, p99 = percentiles(t.ms)
        rows.append(
            [
                t.label,
                fmt(len(t.ms)),
                fmt(t.open_ms, 1),
                fmt(t.cold_ms, 1),
                fmt(p50, 3),
                fmt(p95, 3),
                fmt(p99, 3),
                fmt(max(t.ms), 1),
                f"{t.hit_at_k:.1%}",
                f"{t.top1:.1%}",
            ]
        )
    return markdown_table(header, rows)


def learn_table(lt: LearnTimings) -> str:
    header = ["", "calls", "p50 ms", "p95 ms", "max ms", f"aim <= {AIM_LEARN_MS:g} ms: p50, p95"]
    rows = []
    for label, ms, aim in (
        (f"learn a new {PARAGRAPH_WORDS}-word document", lt.new_ms, True),
        (f"learn it again, {EDITED_WORDS} words changed", lt.relearn_ms, True),
        ("first predict(k=10) after a learn", lt.predict_after_ms, False),
    ):
        p50, p95 = percentiles(ms, (50, 95))
        verdict = ", ".join("met" if v <= AIM_LEARN_MS else "NOT met" for v in (p50, p95)) if aim else "-"
        rows.append([label, fmt(len(ms)), fmt(p50, 2), fmt(p95, 2), fmt(max(ms), 2), verdict])
    return markdown_table(header, rows)


def spike_note(lt: LearnTimings) -> str:
    """How many learns took far longer than the median (SQLite's WAL checkpoints land on some of them)."""
    learns = lt.new_ms + lt.relearn_ms
    median = percentiles(learns, (50,))[0]
    slow = [ms for ms in learns if ms > 3 * median]
    return (
        f"{len(slow)} of {len(learns)} learns took over 3x the median of all learns ({median:.1f} ms)"
        + (f": {', '.join(f'{ms:.0f}' for ms in slow)} ms" if slow else "")
        + f". The store checkpoints its WAL every {lt.wal_autocheckpoint:,} pages (`PRAGMA wal_autocheckpoint`), "
        "and that checkpoint runs inside whichever commit crosses the mark."
    )


def nltk_lines(nt: NltkTimings | None) -> list[str]:
    if nt is None:
        return ["- NLTK is not installed: no in-run reference for predict."]
    per_context = percentiles(nt.nltk_ms, (50,))[0]
    per_candidate = sum(nt.nltk_ms) / max(nt.candidates, 1)
    ours = percentiles(nt.ours_ms, (50,))[0]
    full = per_candidate * nt.vocab / 1000
    header = ["on the same slice", "per context (p50)", "ratio to ours"]
    rows = [
        [f"ours: predict(k={K})", f"{ours:.3f} ms", "1"],
        [f"NLTK: score our top {K} (a lower bound)", f"{per_context:.1f} ms", f"{per_context / ours:,.0f}x"],
        [
            f"NLTK: score all {nt.vocab:,} words of V (estimated: {per_candidate:.2f} ms per word)",
            f"{full:,.0f} s",
            f"{full * 1000 / ours:,.0f}x",
        ],
    ]
    return [
        f"NLTK reference: `KneserNeyInterpolated({NLTK_ORDER})` fit on the first {NLTK_SLICE_WORDS:,} words of "
        f"WikiText-2 train ({nt.fit_s:.1f} s), and our {NLTK_ORDER}-gram store of the same slice. For {nt.contexts} "
        f"contexts (the last {NLTK_ORDER - 1} tokens of sampled positions), our `predict(k={K})` is timed, then "
        f"NLTK's `score(word, context)` of each of our top {K} words. NLTK has no top-k query: a predict would "
        "score every word of the vocabulary, so the last row extrapolates from the per-word time.",
        "",
        markdown_table(header, rows),
    ]


def report(
    results: list[Timings],
    learn: LearnTimings,
    engine_runs: dict[str, dict],
    nltk: NltkTimings | None,
    notes: list[str],
    quick: bool,
) -> str:
    p99 = max(percentiles(t.ms, (99,))[0] for t in results)
    verdict = "met" if p99 <= AIM_PREDICT_P99_MS else "NOT met"
    parts = [
        f"WikiText-2 {ORDER}-gram pretokenized store (Kneser-Ney, the default smoothing); positions from WikiText-2 "
        f"test, context up to {CONTEXT_TOKENS} previous tokens of the line; hit@10 / top-1: the true next word among "
        "the predictions / first." + (" Quick run." if quick else ""),
        "",
        predict_table(results),
        "",
        f"Aim (predict p99 <= {AIM_PREDICT_P99_MS:g} ms): {verdict} - worst p99 {p99:.2f} ms.",
        "",
        f"Learning {PARAGRAPH_WORDS}-word paragraphs of WikiText-2 test ({learn.tokens} tokens with `</s>`) into a "
        "copy of the store (one transaction each, `synchronous=NORMAL`, WAL):",
        "",
        learn_table(learn),
        "",
        spike_note(learn),
        "",
        ENGINE_LEARN_INTRO,
        "",
        engine_learn_table(engine_runs),
        "",
        *nltk_lines(nltk),
        "",
        *[f"- {n}" for n in notes],
    ]
    return "\n".join(parts)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"cached store (default {DEFAULT_STORE})")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached store")
    parser.add_argument("--calls", type=int, default=None, help="predict calls per variant (default 2000; quick 200)")
    parser.add_argument("--learns", type=int, default=None, help="paragraphs learned (default 30; quick 5)")
    parser.add_argument("--nltk-contexts", type=int, default=None, help="NLTK contexts (default 50; quick 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for positions and paragraphs")
    parser.add_argument(
        "--reference", type=Path, default=None, help="also learn through the Engine of this source tree (../main)"
    )
    parser.add_argument("--only-engine-learn", action="store_true", help="only the Engine.learn part (printed)")
    parser.add_argument("--child-engine-learn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_engine_learn:
        print(json.dumps(child_engine_learn(json.loads(args.child_engine_learn))))
        return
    train, test = corpus_files(args, [TRAIN, TEST])
    calls = args.calls or (200 if args.quick else 2000)
    learns = args.learns or (5 if args.quick else 30)
    nltk_contexts = args.nltk_contexts or (10 if args.quick else 50)
    print(f"machine: {machine(['nltk'])}", flush=True)
    start = time.perf_counter()
    rng = random.Random(args.seed)
    lines = test_lines(test)
    positions = sample_positions(lines, calls + 1, rng)  # the first is the cold call
    texts = prose_texts(test, learns)
    if args.only_engine_learn:
        body = ENGINE_LEARN_INTRO + "\n\n" + engine_learn_table(engine_learn_runs(texts, args.reference))
        print(body)
        publish(
            args,
            ENGINE_SECTION,
            "Learning through the Engine (`bench/predict_latency.py --only-engine-learn`)",
            body,
            time.perf_counter() - start,
        )
        return
    path, note = ensure_store(args.store.expanduser(), train, args.rebuild)
    results = []
    for with_prefix in (False, True):
        with step(f"{calls + 1} predict calls, {'with' if with_prefix else 'without'} a prefix"):
            results.append(predict_latency(path, positions, with_prefix))
    with tempfile.TemporaryDirectory(prefix="nextword-bench-predict-") as tmp:
        with step(f"{learns} learns + {learns} re-learns"):
            learn = learn_times(path, paragraphs(lines, learns, rng), positions, Path(tmp))
        with step(f"NLTK reference on {nltk_contexts} contexts"):
            nltk = nltk_reference(train, positions[1 : nltk_contexts + 1], Path(tmp))
    engine_runs = engine_learn_runs(texts, args.reference)
    runtime = time.perf_counter() - start
    body = report(results, learn, engine_runs, nltk, [note.replace(str(path), f"`{path}`")], args.quick)
    print("\n" + body)
    print(f"\nruntime {runtime:.0f} s")
    publish(args, SECTION, "Predict latency and learn time (`bench/predict_latency.py`)", body, runtime, ["nltk"])


if __name__ == "__main__":
    main()
