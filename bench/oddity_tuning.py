"""A fast tuning loop for the grammar oddities, on development data only: errors planted in WikiText-2 *valid*
(as `bench/evaluation.py` plants them in test), the first half of JFLEG dev (the tuning half) and false alarms on
clean WikiText-2 valid paragraphs.

Every candidate edit is scored once, under open settings (low gates, no threshold, no per-kind bits), and kept in a
cache file; each setting to try is then a replay of the selection (`lm_core.oddities.select`) over the cached
candidates, which takes seconds. The replay matches a check at those settings closely but not exactly (a check at
stricter settings drops a few candidates early, in its first look at each edit); `--check` runs the real
`Engine.check` at the settings instead, to confirm.

    python bench/oddity_tuning.py                      # score the candidates (minutes), then the defaults' figures
    python bench/oddity_tuning.py --set threshold_bits=9 --set insertion_bits=-4   # a replay at other settings
    python bench/oddity_tuning.py --grid threshold_bits=8,9,10 --grid insertion_bits=-6,-4,-2   # every combination
    python bench/oddity_tuning.py --check --set threshold_bits=9   # the real check at those settings
    python bench/oddity_tuning.py --check --neural CHECKPOINT --set blend_bits=-2   # the blend's real check
    python bench/oddity_tuning.py --search 2 --set ...   # coordinate ascent from those settings (see `search`)
    python bench/oddity_tuning.py --write   # the real check at the previous and the current defaults: RESULTS.md

Only `--write` writes its section ("oddity-tuning") of bench/RESULTS.md; these are development figures, and
`bench/evaluation.py` reports the test ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import pickle
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS,
    corpora_dir,
    fmt,
    markdown_table,
    require_files,
    section_text,
    write_section,
)
from bench.evaluation import (  # noqa: E402
    PLANTED_KINDS,
    SEED,
    Sizes,
    build_oddity_data,
    clean_paragraphs,
    pct,
)
from bench.grammar_data import load_jfleg, score_learner  # noqa: E402
from lm_core.evaluation import precision_recall  # noqa: E402
from lm_core.metrics import surprisal_bits  # noqa: E402
from lm_core.oddities import (  # noqa: E402
    UNGATED,
    CheckSetup,
    OddityConfig,
    _pairs_seen,
    candidate_is_gated,
    score_candidates,
    score_tokens_many,
    select,
)
from lsp_server.engine import Engine  # noqa: E402
from lsp_server.paths import seed_from_default_model  # noqa: E402

OPEN = OddityConfig(
    threshold_bits=0.0,
    gate_bits=4.0,
    insertion_gate_bits=6.0,
    deletion_bits=0.0,
    insertion_bits=-8.0,
    kind_bits=(),
    short_margin_bits=4.0,
    short_keep=8,
    seen_pairs=False,
)
"""The settings the candidates are scored under: anything a plausible setting could flag is kept (the seen-pair
filter is replayed: `Scored.unseen`)."""
PREVIOUS = OddityConfig(
    gate_bits=7.0,
    insertion_gate_bits=10.0,
    deletion_bits=2.0,
    insertion_bits=0.0,
    frequency_weight=0.3,
    kind_bits=(("confusion", -3.0), ("doubled", -7.0), ("spelling", 2.0)),
)
"""The settings before this tuning (the threshold was 10 bits then too)."""
DEV_BOOKS = ("gutenberg/austen-emma.txt", "gutenberg/carroll-alice.txt", "gutenberg/chesterton-thursday.txt")
"""Clean prose for false alarms besides WikiText-2 valid: not the paragraphs `bench/evaluation.py` tests on (Alice's
first 200 paragraphs; the other two books are not in the test at all)."""
DEV_SIZES = Sizes(0, 0, 0, 1_500, 420, 20_000)  # planted: 1,500 sentences, 60 errors of each kind; 20,000 clean words


@dataclass
class Scored:
    """One checked sentence: its document, tokens (norms and character spans), per-token surprisal (bits) and
    every candidate edit with its (normalised gain, raw window gain) in bits under `OPEN`."""

    doc: int
    norms: tuple[str, ...]
    spans: list[tuple[int, int]]
    bits: list[float]
    found: list
    unseen: frozenset[int] = frozenset()  # the candidates (positions in `found`) that make a pair never seen


def score_texts(engine: Engine, texts: list[str], config: OddityConfig = OPEN) -> list[Scored]:
    """Every sentence of every text with its candidates (n-gram model), in batches as `Engine.check` does."""
    out = []
    vocab = engine.oddity_vocabulary()
    model = engine.ngram
    pending = [(doc, sentence) for doc, text in enumerate(texts) for sentence in engine._sentences(text)]
    for start in range(0, len(pending), 64):
        part = pending[start : start + 64]
        scores = score_tokens_many(model, [[t.norm for t in s] for _, s in part], engine._memo)
        inputs = [engine._sentence_input(s, model, lps) for (_, s), lps in zip(part, scores, strict=True)]
        found = score_candidates(CheckSetup(model, config, vocab, None, engine._memo), inputs)
        for (doc, sentence), item, edits in zip(part, inputs, found, strict=True):
            bits = [surprisal_bits(lp) for lp in item.logprobs]
            spans = [(t.start, t.end) for t in sentence]
            unseen = frozenset(n for n, (edit, _) in enumerate(edits) if not _pairs_seen(item.tokens, edit, vocab))
            out.append(Scored(doc, tuple(item.tokens), spans, bits, edits, unseen))
    return out


def replay(scored: list[Scored], config: OddityConfig) -> list[tuple[int, int, int, str]]:
    """The flags (document, start, end, kind) a check at `config` would raise, from the cached candidates."""
    flags = []
    for s in scored:
        kept = []
        for n, (edit, (gain, raw)) in enumerate(s.found):
            if edit.kind not in config.kinds or candidate_is_gated(s.norms, edit, s.bits, config):
                continue
            if config.seen_pairs and n in s.unseen and edit.kind not in UNGATED:
                continue
            if OPEN.frequency_weight and len(edit.tokens) == 1 and edit.stop - edit.start == 1:
                unigram = (raw - gain) / OPEN.frequency_weight
                gain = raw - config.frequency_weight * unigram
            kept.append((edit, (gain, raw)))
        for odd in select(s.norms, kept, config, s.bits):
            flags.append((s.doc, s.spans[odd.index][0], s.spans[odd.end - 1][1], odd.alternatives[0].kind))
    return flags


def checked(engine: Engine, texts: list[str], config: OddityConfig) -> list[tuple[int, int, int, str]]:
    """The flags of the real `Engine.check` of each text at `config`."""
    return [
        (doc, odd.start, odd.end, odd.kinds[0] if odd.kinds else "")
        for doc, text in enumerate(texts)
        for odd in engine.check(text, config).oddities
    ]


@dataclass
class DevData:
    planted_texts: list[str]
    planted: list[tuple[int, str, tuple[int, int]]]  # (document, kind, span)
    jfleg_texts: list[str]
    jfleg: list
    clean_texts: list[str]  # WikiText-2 valid paragraphs, then the books' (from document `wiki_docs` on)
    clean_words: int  # of the WikiText-2 paragraphs
    wiki_docs: int
    book_words: int


def gutenberg_paragraphs(corpora: Path, books: tuple[str, ...], words: int) -> list[str]:
    """About `words` words of paragraphs (8 words or more) from the books: Alice's first 200 paragraphs (the
    evaluation reads the ones after), the start of the others."""
    out = []
    for book in require_files(corpora, list(books)):
        n = 0
        paragraphs = [" ".join(p.split()) for p in book.read_text(encoding="utf-8", errors="replace").split("\n\n")]
        for paragraph in paragraphs[20:200] if "alice" in book.name else paragraphs[40:]:
            if n >= words // len(books):
                break
            if len(paragraph.split()) >= 8:
                out.append(paragraph)
                n += len(paragraph.split())
    return out


def dev_data(corpora: Path, engine: Engine) -> DevData:
    (valid,) = require_files(corpora, ["wikitext-2/wiki.valid.tokens"])
    (jfleg_src,) = require_files(corpora, ["jfleg-dev/dev.src"])
    data = build_oddity_data(valid, DEV_SIZES, engine.oddity_vocabulary().known)
    jfleg = load_jfleg(jfleg_src.parent, frozenset(engine.ngram.counts.vocab.words))
    jfleg = jfleg[: len(jfleg) // 2]  # the tuning half
    wiki = clean_paragraphs(corpora, DEV_SIZES.clean_words, "valid")["WikiText-2 valid"]
    books = gutenberg_paragraphs(corpora, DEV_BOOKS, DEV_SIZES.clean_words)
    return DevData(
        data.sentences,
        [(e.doc, e.kind, e.span) for e in data.errors],
        [s.text for s in jfleg],
        jfleg,
        wiki + books,
        sum(len(t.split()) for t in wiki),
        len(wiki),
        sum(len(t.split()) for t in books),
    )


def figures(
    data: DevData, planted: list, jfleg: list, clean: list
) -> dict[str, float | dict[str, float] | Counter[str]]:
    """The development figures of one setting's flags on the three sets."""
    truth = [(doc, *span) for doc, _, span in data.planted]
    spans = [(d, a, b) for d, a, b, _ in planted]
    precision, recall = precision_recall(spans, truth)
    per_kind = {}
    for kind in PLANTED_KINDS:
        kind_truth = [(doc, *span) for doc, k, span in data.planted if k == kind]
        per_kind[kind] = precision_recall(spans, kind_truth)[1]
    per_doc: list[list[tuple[int, int]]] = [[] for _ in data.jfleg]
    for d, a, b, _ in jfleg:
        per_doc[d].append((a, b))
    learner = score_learner(data.jfleg, per_doc)
    jfleg_right: Counter[str] = Counter()
    for d, a, b, k in jfleg:
        sentence = data.jfleg[d]
        touched = [i for i, (x, y) in enumerate(sentence.spans) if x < b and a < y]
        jfleg_right[k] += any(sentence.errors[i] for i in touched)
    wrong = Counter(k for (d, a, b, k) in planted if not any(_overlap((d, a, b), t) for t in truth))
    return {
        "planted precision": precision,
        "planted recall": recall,
        "per kind": per_kind,
        "jfleg precision": learner.precision,
        "jfleg recall": learner.recall,
        "jfleg F0.5": learner.f05,
        "jfleg sentences": learner.sentence_rate,
        "false alarms": 1000 * sum(d < data.wiki_docs for d, *_ in clean) / data.clean_words,
        "book false alarms": 1000 * sum(d >= data.wiki_docs for d, *_ in clean) / data.book_words,
        "wrong planted kinds": wrong,
        "clean kinds": Counter(k for *_, k in clean),
        "jfleg kinds": Counter(k for *_, k in jfleg),
        "jfleg correct kinds": jfleg_right,
        "planted kinds": Counter(k for *_, k in planted),
    }


def kind_table(f: dict) -> str:
    """Per kind of flag: planted-error flags (and how many were wrong), JFLEG flags (and how many correct), flags on
    clean text."""
    kinds = sorted(set(f["planted kinds"]) | set(f["jfleg kinds"]) | set(f["clean kinds"]))
    body = [
        [k, fmt(f["planted kinds"][k]), fmt(f["wrong planted kinds"][k]), fmt(f["jfleg kinds"][k]),
         fmt(f["jfleg correct kinds"][k]), fmt(f["clean kinds"][k])]
        for k in kinds
    ]  # fmt: skip
    return markdown_table(["kind", "planted flags", "wrong", "JFLEG flags", "correct", "clean flags"], body)


def _overlap(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def parse_settings(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        name, _, value = item.partition("=")
        out[name] = _value(name, value)
    return out


def _value(name: str, value: str) -> object:
    if name == "kind_bits":  # kind:bits;kind:bits
        return tuple((k, float(v)) for k, v in (p.split(":") for p in value.split(";") if p))
    if name == "kinds":
        return frozenset(value.split(";"))
    field_type = {f.name: f.type for f in dataclasses.fields(OddityConfig)}[name]
    return int(value) if field_type == "int" else float(value)


def row(settings: dict[str, object], f: dict) -> list[str]:
    return [
        ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults",
        pct(f["planted precision"]),
        pct(f["planted recall"]),
        *(pct(f["per kind"][k]) for k in PLANTED_KINDS),
        pct(f["jfleg precision"]),
        pct(f["jfleg recall"]),
        pct(f["jfleg F0.5"]),
        pct(f["jfleg sentences"]),
        fmt(f["false alarms"], 2),
        fmt(f["book false alarms"], 2),
    ]


HEADER = [
    "settings", "planted P %", "planted R %", *(f"{k} %" for k in PLANTED_KINDS), "JFLEG P %", "JFLEG R %",
    "JFLEG F0.5 %", "JFLEG sentences %", "false alarms / 1k words (WikiText-2 valid)",
    "(Gutenberg)",
]  # fmt: skip


TUNED = ("gate_bits", "insertion_gate_bits", "insertion_bits", "deletion_bits", "frequency_weight")
STEPS = {"frequency_weight": (-0.2, -0.1, 0.1, 0.2)}
KIND_STEPS = (-3.0, -2.0, -1.0, 1.0, 2.0, 3.0)


def objective(f: dict, limits: argparse.Namespace) -> float:
    """What the search maximises: JFLEG's F0.5 plus half the planted errors' F1 (fractions), among settings within
    the limits: false flags per 1,000 clean words of WikiText-2 valid (`max_alarms`) and of the books
    (`max_book_alarms`), JFLEG precision (`min_precision`) and planted-error precision (`min_planted_precision`: the
    untouched sentences' flags are false alarms on more WikiText-2 valid)."""
    over = (
        max(0.0, f["false alarms"] / limits.max_alarms - 1)
        + max(0.0, f["book false alarms"] / limits.max_book_alarms - 1)
        + max(0.0, limits.min_precision - f["jfleg precision"])
        + max(0.0, limits.min_planted_precision - f["planted precision"])
    )
    if over > 0:  # outside the limits: the less outside, the better (so the search can walk back inside)
        return -over
    p, r = f["planted precision"], f["planted recall"]
    return f["jfleg F0.5"] + 0.5 * (2 * p * r / (p + r) if p + r else 0.0)


def search(
    data: DevData, cached: list, start: dict[str, object], limits: argparse.Namespace, sweeps: int
) -> dict[str, object]:
    """Coordinate ascent over the gates, the insertion and deletion bits, the frequency weight and each kind's
    extra bits (the threshold stays): one setting at a time, the best of a few steps kept."""
    settings = dict(start)
    kinds = dict(settings.pop("kind_bits", OddityConfig().kind_bits))  # type: ignore[arg-type]
    for kind in ("article", "preposition", "inflection", "transposition", "missing word", "spelling", "confusion",
                 "doubled"):  # fmt: skip
        kinds.setdefault(kind, 0.0)

    def score(s: dict[str, object], k: dict[str, float]) -> float:
        config = dataclasses.replace(OddityConfig(), **s, kind_bits=tuple(sorted(k.items())))
        return objective(figures(data, *(replay(c, config) for c in cached)), limits)

    best = score(settings, kinds)
    for _ in range(sweeps):
        for name in (*TUNED, *(f"kind:{k}" for k in kinds)):
            if name.startswith("kind:"):
                kind = name[5:]
                tries = [(settings, {**kinds, kind: kinds[kind] + d}) for d in KIND_STEPS]
            else:
                now = float(settings.get(name, getattr(OddityConfig(), name)))
                tries = [({**settings, name: round(now + d, 2)}, kinds) for d in STEPS.get(name, KIND_STEPS)]
            for s, k in tries:
                value = score(s, k)
                if value > best + 1e-9:
                    best, settings, kinds = value, s, k
                    print(f"{best:.4f} {name}: {s} {k}", flush=True)
    return {**settings, "kind_bits": tuple(sorted(kinds.items()))}


def write(engine: Engine, data: DevData, start: float) -> None:
    """The real `Engine.check` on the development sets at the previous settings and at the current defaults."""
    rows, kinds = [], []
    for name, config in (("previous settings", PREVIOUS), ("current defaults", OddityConfig())):
        texts = (data.planted_texts, data.jfleg_texts, data.clean_texts)
        f = figures(data, *(checked(engine, t, config) for t in texts))
        rows.append(row({name: ""}, f))
        kinds.append(f"{name}:\n\n{kind_table(f)}")
    table = markdown_table(HEADER, rows)
    print(table)
    body = "\n\n".join(
        [
            "Development figures only (the test figures are in the evaluation-oddity section): `Engine.check` with the "
            "shipped n-gram model on errors planted in WikiText-2 *valid* (1,500 sentences, 60 errors of each kind, "
            "planted as `bench/evaluation.py` plants them in test), the first half of JFLEG dev (the tuning half) "
            f"and {data.clean_words:,} words of clean WikiText-2 valid paragraphs (false alarms). The current defaults "
            "came from `--search` (coordinate ascent over the gates, the insertion and deletion bits, the frequency "
            "weight and each kind's bits, maximising JFLEG's F0.5 plus half the planted errors' F1 with at most 1.8 "
            "false flags per 1,000 clean words), then were checked here with the real check.",
            table,
            "Flags per kind (planted: flags and how many touched no planted error; JFLEG: flags and how many touched "
            "an error token; clean: every flag is a false alarm):",
            *kinds,
        ]
    )
    title = "Oddity tuning on development data (`bench/oddity_tuning.py`)"
    write_section(RESULTS, "oddity-tuning", section_text(title, body, time.perf_counter() - start, ["harper-py"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/nextword-oddity-tuning.pickle"))
    parser.add_argument("--rescore", action="store_true", help="score the candidates again (the code changed)")
    parser.add_argument("--set", action="append", default=[], help="a setting of OddityConfig, NAME=VALUE")
    parser.add_argument("--grid", action="append", default=[], help="NAME=V1,V2,...: every combination is replayed")
    parser.add_argument("--check", action="store_true", help="the real Engine.check at the settings, not a replay")
    parser.add_argument("--neural", type=Path, default=None, help="--check with this checkpoint blended in")
    parser.add_argument("--kinds", action="store_true", help="print which kinds the flags are")
    parser.add_argument("--write", action="store_true", help="the previous and current defaults into RESULTS.md")
    parser.add_argument("--search", type=int, default=0, help="this many sweeps of coordinate ascent from --set")
    parser.add_argument("--max-alarms", type=float, default=1.8, help="search: false flags per 1,000 clean words")
    parser.add_argument("--min-precision", type=float, default=0.7, help="search: JFLEG precision at least")
    parser.add_argument("--max-book-alarms", type=float, default=4.0, help="search: false flags per 1,000 book words")
    parser.add_argument("--min-planted-precision", type=float, default=0.7, help="search: planted precision at least")
    args = parser.parse_args()
    corpora = corpora_dir(args.corpora)
    db = args.cache.with_suffix(".db")
    if not db.exists():
        seed_from_default_model(db)
    engine = Engine.open(db)
    start = time.perf_counter()
    data = dev_data(corpora, engine)
    base = parse_settings(args.set)
    if args.write:
        write(engine, data, start)
        return
    if args.check:
        if args.neural is not None:
            engine.attach_neural(args.neural)
        config = dataclasses.replace(OddityConfig(), **base)
        flags = [checked(engine, texts, config) for texts in (data.planted_texts, data.jfleg_texts, data.clean_texts)]
        f = figures(data, *flags)
        print(markdown_table(HEADER, [row(base, f)]))
        print(f"(Engine.check: {time.perf_counter() - start:.0f} s)")
        if args.kinds:
            print(kind_table(f))
        return
    if args.cache.exists() and not args.rescore:
        cached = pickle.loads(args.cache.read_bytes())
    else:
        random.seed(SEED)
        cached = [score_texts(engine, texts) for texts in (data.planted_texts, data.jfleg_texts, data.clean_texts)]
        args.cache.write_bytes(pickle.dumps(cached))
        print(f"(candidates scored in {time.perf_counter() - start:.0f} s)")
    if args.search:
        found = search(data, cached, base, args, args.search)
        base = found
        print("found:", found)
    grid = [
        (name, [_value(name, v) for v in values.split(",")])
        for name, _, values in (g.partition("=") for g in args.grid)
    ]
    rows = []
    for combo in itertools.product(*(values for _, values in grid)) if grid else [()]:
        settings = {**base, **{name: v for (name, _), v in zip(grid, combo, strict=True)}}
        config = dataclasses.replace(OddityConfig(), **settings)
        f = figures(data, *(replay(s, config) for s in cached))
        rows.append(row(settings, f))
        if args.kinds:
            print(kind_table(f))
    print(markdown_table(HEADER, rows))
    engine.close()


if __name__ == "__main__":
    main()
