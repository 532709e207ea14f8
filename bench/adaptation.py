"""Personal adaptation as a model (`lm_core.adaptation`), part by part, on user texts of three genres, in one run.

For each user: the shipped default model seeded into a temporary store; the first 90 % of the user's learned part
learned; the last 10 % scored before it is learned (held out: the component log-probabilities EM fits the mixture
weights on), then learned too; then, on the user's held-out test text, next-word top-1/3/5 accuracy and keystroke
savings (KSR, k = 1, 3, 5; as `bench/evaluation.py`: suggestions as the editor shows them, display casing, a
suggestion taken as soon as the intended word shows) for:

- counts added: the store's model alone (what `learn` gave before: the user's counts added to the base's);
- + user layer: the store's model and a Kneser-Ney model of the learned text alone, EM weights;
- + document cache: the store's model and the cache of the document being typed (the test text before the cursor,
  up to `CACHE_TOKENS` tokens), EM weights;
- all: the three, EM weights; and the same with weights per context bucket (how often the user layer saw the
  context's last word: 0, 1-9, 10-99, 100+; each bucket's EM weights drawn towards the global ones).

Users (their test text never in the base, WikiText-2): Austen (Emma, Persuasion, Sense and Sensibility: first 80 %
learned, last 20 % test, as bench/evaluation.py), Reuters (train learned, test), Chesterton (Ball and the Cross,
Father Brown, Thursday: 80 / 20). Cost per suggestion: each configuration's suggest call, p50 / p99 ms.

    python bench/adaptation.py            # ~5k accuracy targets and ~3k KSR words per user (~30 min, 2 cores)
    python bench/adaptation.py --quick    # small slices
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    base_parser,
    corpora_dir,
    fmt,
    machine,
    markdown_table,
    percentiles,
    publish,
    require_files,
    seeded_store,
    step,
)
from bench.evaluation import KS, ksr_by_sentence, pct, prose_slice  # noqa: E402
from lm_core import tokenize  # noqa: E402
from lm_core.adaptation import Adaptation, DocumentCache  # noqa: E402
from lm_core.evaluation import KeystrokeResult, accuracy_from_ranks, is_word  # noqa: E402
from lm_core.vocab import BOS, EOS, UNK  # noqa: E402
from lsp_server.engine import Engine  # noqa: E402

SECTION = "adaptation"
CONFIGS = (
    ("counts added (store model alone)", (), False),
    ("+ user layer", ("user",), False),
    ("+ document cache", ("cache",), False),
    ("+ user layer + document cache", ("user", "cache"), False),
    ("+ user layer + document cache, weights per context bucket", ("user", "cache"), True),
)
HELD_OUT_SHARE = 0.1
AIM_KSR3 = 0.60
AIM_GAIN = 0.05


@dataclass
class Sizes:
    accuracy_words: int
    ksr_words: int
    fit_words: int  # held-out words (the end of the learned part) EM fits on


FULL = Sizes(5_000, 3_000, 10_000)
QUICK = Sizes(600, 200, 2_000)


@dataclass
class Row:
    user: str
    config: str
    weights: list[float]
    acc: dict[int, float]
    ksr: dict[int, KeystrokeResult]
    latency_ms: list[float] = field(default_factory=list)


def split_books(paths: Sequence[Path], share: float = 0.8) -> tuple[str, str]:
    text = "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in paths)
    cut = text.rfind("\n\n", 0, int(len(text) * share))
    return text[:cut], text[cut:]


def users(corpora: Path) -> list[tuple[str, str, str]]:
    austen = require_files(corpora, [f"gutenberg/austen-{b}.txt" for b in ("emma", "persuasion", "sense")])
    chesterton = require_files(corpora, [f"gutenberg/chesterton-{b}.txt" for b in ("ball", "brown", "thursday")])
    reuters = require_files(corpora, ["reuters/reuters.train.txt", "reuters/reuters.test.txt"])
    return [
        ("Austen (first 80 % of 3 books -> last 20 %)", *split_books(austen)),
        ("Reuters (train -> test)", *(p.read_text(encoding="utf-8", errors="replace") for p in reuters)),
        ("Chesterton (first 80 % of 3 books -> last 20 %)", *split_books(chesterton)),
    ]


def document_tokens(sentences: list[list[tokenize.Token]]) -> list[list[str]]:
    return [[t.norm for t in s] for s in sentences]


def suggest_with(engine: Engine, adaptation: Adaptation | None, latency: list[float], pushed: list[int]):
    """An editor's suggestions (display casing, words only) from the engine's store model or the mixture, the
    document cache holding the document's tokens before the cursor: the sentences typed before (pushed by the
    caller) and this sentence's words as they are typed (pushed here)."""
    width = engine.context_width

    def suggest(context: Sequence[str], prefix: str, k: int) -> list[str]:
        started = time.perf_counter()
        history = (BOS, *(w.casefold() for w in context))
        ctx = history[max(0, len(history) - width) :]
        if adaptation is None:
            words = engine.next_words(ctx, k, prefix, sentence_start=not context)
        else:
            for word in history[1 + pushed[0] :]:
                adaptation.cache.push(word)
            pushed[0] = len(history) - 1
            words = engine.next_words_from(adaptation.blend, ctx, k, prefix, sentence_start=not context)
        latency.append((time.perf_counter() - started) * 1000)
        return [s.word for s in words]

    return suggest


def evaluate(engine: Engine, adaptation: Adaptation | None, held: str, sizes: Sizes) -> tuple[dict, dict, list]:
    latency: list[float] = []
    # accuracy: every word target of the held-out slice, the cache holding the document before it
    tokens = [t for s in document_tokens(prose_slice(held, sizes.accuracy_words)) for t in s]
    ranks: list[int | None] = []
    history: list[str] = [BOS]
    width = engine.context_width
    fresh = DocumentCache(engine.ngram)
    if adaptation is not None:
        adaptation.cache = fresh  # (an Adaptation's blend reads its cache)
        adaptation._blend = None
    model = engine.ngram if adaptation is None else adaptation.blend
    for token in tokens:
        if token == UNK:
            ranks.append(None)
        elif is_word(token):
            ctx = tuple(history[max(0, len(history) - width) :])
            predicted = [s.word for s in engine.next_words_from(model, ctx, max(KS), "", display=False)]
            ranks.append(predicted.index(token) if token in predicted else None)
        history = [BOS] if token == EOS else [*history, token]
        fresh.push(token)  # the document so far
    accuracy = accuracy_from_ranks(ranks, KS)
    # keystroke savings, sentence by sentence, the document so far in the cache
    sentences = prose_slice(held, sizes.ksr_words)
    totals: dict[int, list[int]] = {k: [0, 0, 0, 0, 0] for k in KS}
    if adaptation is not None:
        adaptation.cache = DocumentCache(engine.ngram)
        adaptation._blend = None
    for sentence in sentences:
        words = [t.surface for t in sentence if t.kind != "eos"]
        pushed = [0]  # this sentence's words already in the cache
        for k, r in ksr_by_sentence(suggest_with(engine, adaptation, latency, pushed), [words]).items():
            for j, v in enumerate((r.typed, r.selections, r.without, r.words, r.taken)):
                totals[k][j] += v
        if adaptation is not None:  # the whole sentence is in the document now (its last word, its end)
            for word in words[pushed[0] :]:
                adaptation.cache.push(word.casefold())
            adaptation.cache.push(EOS)
    ksr = {k: KeystrokeResult(k, 1 - (t[0] + t[1]) / t[2] if t[2] else math.nan, *t) for k, t in totals.items()}
    return accuracy, ksr, latency


def run_user(name: str, learn: str, held: str, sizes: Sizes, workdir: Path) -> tuple[list[Row], str]:
    db = seeded_store(workdir / f"user-{abs(hash(name))}.db")
    engine = Engine.open(db)
    cut = learn.rfind("\n\n", 0, int(len(learn) * (1 - HELD_OUT_SHARE)))
    first, last = learn[:cut], learn[cut:]
    with step(f"{name}: learning {len(first.split()):,} words"):
        engine.learn("user-1", first)
    adaptation = Adaptation(engine.ngram, parts=("user", "cache"))
    with step(f"{name}: user layer over the learned text"):
        adaptation.set_user_text(engine.counts_store.learned_sentences())
    fit_sentences = document_tokens(prose_slice(last, sizes.fit_words))
    with step(f"{name}: scoring {sum(map(len, fit_sentences)):,} held-out tokens (before learning them), EM"):
        adaptation.observe(fit_sentences)
    with step(f"{name}: learning the last {len(last.split()):,} words; user layer again"):
        engine.learn("user-2", last)
        adaptation.set_user_text(engine.counts_store.learned_sentences())
    rows = []
    for label, parts, bucketed in CONFIGS:
        weights = adaptation.fit(parts)
        if parts:
            mixture = Adaptation(engine.ngram, weights.tolist(), adaptation.fitted_tokens, parts, bucketed)
            mixture.user, mixture.user_tokens = adaptation.user, adaptation.user_tokens
            mixture.bucket_weights = adaptation.fit_buckets(parts)
        else:
            mixture = None
        with step(f"{name}: {label}"):
            acc, ksr, latency = evaluate(engine, mixture, held, sizes)
        rows.append(Row(name, label, [round(w, 3) for w in weights.tolist()], acc, ksr, latency))
    engine.close()
    db.unlink(missing_ok=True)
    note = f"{name}: learned {len(learn.split()):,} whitespace words; EM on {len(adaptation.held_out.rows):,} tokens"
    return rows, note


def table(rows: list[Row]) -> str:
    header = [
        "user",
        "configuration",
        "weights (store, user, cache)",
        "top-1",
        "top-3",
        "top-5",
        "KSR k=1",
        "KSR k=3",
        "KSR k=5",
        "KSR k=3 vs counts added (points)",
        "suggest p50 / p99 ms",
    ]
    body = []
    baseline = {r.user: r.ksr[3].ksr for r in rows if not r.config.startswith("+")}
    for r in rows:
        p50, p99 = percentiles(r.latency_ms, (50, 99)) if r.latency_ms else (math.nan, math.nan)
        body.append(
            [
                r.user,
                r.config,
                ", ".join(f"{w:.3f}" for w in r.weights),
                *(pct(r.acc[k]) for k in KS),
                *(pct(r.ksr[k].ksr) for k in KS),
                fmt(100 * (r.ksr[3].ksr - baseline[r.user]), 1),
                f"{p50:.2f} / {p99:.2f}",
            ]
        )
    return markdown_table(header, body)


def aims(rows: list[Row]) -> list[str]:
    out = []
    for user in dict.fromkeys(r.user for r in rows):
        mine = {r.config: r for r in rows if r.user == user}
        base = mine[CONFIGS[0][0]].ksr[3].ksr
        best = max(mine[label].ksr[3].ksr for label, parts, _ in CONFIGS if parts)
        verdict = "met" if best >= AIM_KSR3 and best - base >= AIM_GAIN else "NOT met"
        out.append(
            f"- {user}: KSR k=3 with adaptation (best configuration) {pct(best)} % vs {pct(base)} % counts added "
            f"({100 * (best - base):+.1f} points); aim >= {AIM_KSR3:.0%} and >= +{100 * AIM_GAIN:.0f} points: "
            f"{verdict}."
        )
    return out


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--users", default="", help="comma-separated first words of the users to run (default all)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    corpora = corpora_dir(args.corpora)
    chosen = [u for u in users(corpora) if not args.users or u[0].split()[0].lower() in args.users.lower()]
    print(f"machine: {machine()}", flush=True)
    start = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nextword-bench-adapt-") as tmp:
        for name, learn, held in chosen:
            if args.quick:
                learn = learn[: len(learn) // 10]
            user_rows, note = run_user(name, learn, held, sizes, Path(tmp))
            rows += user_rows
            notes.append(note)
            print("\n" + table(user_rows) + "\n", flush=True)  # each user's figures as soon as they are in
    runtime = time.perf_counter() - start
    body = "\n".join(
        [
            f"Shipped default model seeded, the user's text learned (EM on the last {HELD_OUT_SHARE:.0%} of it, "
            f"scored before it was learned); accuracy over about {sizes.accuracy_words:,} word targets and KSR over "
            f"about {sizes.ksr_words:,} words of each user's test text, in one run on a shared 2-core machine.",
            "",
            table(rows),
            "",
            *aims(rows),
            *[f"- {n}" for n in notes],
        ]
    )
    print("\n" + body)
    publish(args, SECTION, "Personal adaptation by part (`bench/adaptation.py`)", body, runtime)


if __name__ == "__main__":
    main()
