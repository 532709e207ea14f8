"""Test perplexity of add-delta, Katz and Kneser-Ney on PTB and WikiText-2, beside KenLM scoring our exported ARPA.

One 5-gram pretokenized store is built per corpus from its training set; every model reads it through
`SqliteCounts` (a fresh reader per model, so no model profits from another's cache). Test text: each line's words
plus one `</s>` (blank lines too), `<unk>` an ordinary word, `</s>` counted; contexts restart at `<s>` each line.
Where `kenlm` imports, our KN3 and KN5 are exported as ARPA and KenLM scores the same lines
(`kenlm.Model(arpa).score(line, bos=True, eos=True)`, log10) in the same run.

    python bench/perplexity.py            # full test sets: about 3 minutes
    python bench/perplexity.py --quick    # the first 5,000 test tokens (whole lines) of each corpus
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Stopwatch,
    base_parser,
    built_store,
    corpus_files,
    fmt,
    machine,
    markdown_table,
    publish,
    step,
)
from lm_core.counting import CountTables  # noqa: E402
from lm_core.metrics import LN10, score_tokens  # noqa: E402
from lm_core.ngram import NgramModel, Smoothing  # noqa: E402
from lm_core.tokenize import pretokenized_sentences  # noqa: E402
from store.arpa import export_arpa  # noqa: E402
from store.countstore import CountStore  # noqa: E402
from store.sqlite_counts import SqliteCounts  # noqa: E402

try:
    import kenlm  # type: ignore[import-not-found]
except ImportError:  # the column is left out
    kenlm = None

SECTION = "perplexity"
STORE_ORDER = 5
QUICK_TOKENS = 5_000
PTB_KN5_REFERENCE = 141.19  # KenLM lmplz KN5 on PTB test (Mikolov et al. report 141.2)
AIM_RELATIVE = 0.005  # our KN5 within 0.5 % of it


@dataclass(frozen=True)
class Corpus:
    name: str
    train: str
    test: str
    kn5_reference: float | None  # published test perplexity of a KN5 model, if any


@dataclass(frozen=True)
class ModelSpec:
    label: str
    smoothing: Smoothing
    order: int
    delta: float = 1.0
    arpa: bool = False  # exported and scored by KenLM too


CORPORA = (
    Corpus("PTB", "ptb/ptb.train.txt", "ptb/ptb.test.txt", PTB_KN5_REFERENCE),
    Corpus("WikiText-2", "wikitext-2/wiki.train.tokens", "wikitext-2/wiki.test.tokens", None),
)
MODELS = (
    ModelSpec("Laplace (add-delta, delta=1), 3-gram", Smoothing.ADD_DELTA, 3, delta=1.0),
    ModelSpec("Lidstone (add-delta, delta=0.01), 3-gram", Smoothing.ADD_DELTA, 3, delta=0.01),
    ModelSpec("Katz, 3-gram", Smoothing.KATZ, 3),
    ModelSpec("KN3 (interpolated modified KN)", Smoothing.KNESER_NEY, 3, arpa=True),
    ModelSpec("KN5 (interpolated modified KN)", Smoothing.KNESER_NEY, 5, arpa=True),
)


@dataclass
class Score:
    perplexity: float
    seconds: float
    line_log10: list[float]  # log10 probability of each test line (its words and </s>)
    zero_tokens: int = 0  # tokens the model gave probability 0 (perplexity inf)
    finite_perplexity: float = math.nan  # the perplexity over the other tokens


@dataclass
class Row:
    corpus: Corpus
    spec: ModelSpec
    tokens: int
    ours: Score
    kenlm: Score | None = None
    kenlm_load_s: float = math.nan
    export_s: float = math.nan


# --- test text ------------------------------------------------------------------------------------------------------
def test_sentences(path: Path, max_tokens: int | None) -> list[list[str]]:
    """Each test line's words plus `</s>`; with `max_tokens`, whole lines up to at least that many tokens."""
    sentences = pretokenized_sentences(path.read_text(encoding="utf-8"))
    if max_tokens is None:
        return sentences
    kept, total = [], 0
    for sentence in sentences:
        if total >= max_tokens:
            break
        kept.append(sentence)
        total += len(sentence)
    return kept


def perplexity_of(total_ln: float, tokens: int) -> float:
    return math.exp(-total_ln / tokens)


# --- scoring --------------------------------------------------------------------------------------------------------
def score_ours(store: CountStore, spec: ModelSpec, sentences: list[list[str]]) -> Score:
    """Our model's perplexity and per-line log10 probabilities (a fresh reader, so a cold cache)."""
    counts = SqliteCounts(store)
    model = NgramModel(counts, smoothing=spec.smoothing, order=spec.order, delta=spec.delta)
    flat = [token for sentence in sentences for token in sentence]
    try:
        with Stopwatch() as sw:
            scores = score_tokens(model, flat)
    finally:
        _close(counts)
    logprobs = [s.logprob for s in scores]
    line_log10, i = [], 0
    for sentence in sentences:
        line_log10.append(math.fsum(logprobs[i : i + len(sentence)]) / LN10)
        i += len(sentence)
    finite = [lp for lp in logprobs if lp > -math.inf]
    zeros = len(logprobs) - len(finite)
    finite_ppl = perplexity_of(math.fsum(finite), len(finite)) if finite else math.nan
    return Score(perplexity_of(math.fsum(logprobs), len(flat)), sw.seconds, line_log10, zeros, finite_ppl)


def _close(counts: SqliteCounts) -> None:
    """Close the reader's own connection (readers that share the store's connection have no `close`)."""
    close = getattr(counts, "close", None)
    if close is not None:
        close()


def score_kenlm(model: object, sentences: list[list[str]]) -> Score:
    """KenLM's perplexity of the same lines: `score(line, bos=True, eos=True)` counts each line's `</s>`."""
    with Stopwatch() as sw:
        line_log10 = [model.score(" ".join(s[:-1]), bos=True, eos=True) for s in sentences]  # type: ignore[attr-defined]
    tokens = sum(len(s) for s in sentences)
    return Score(perplexity_of(math.fsum(line_log10) * LN10, tokens), sw.seconds, line_log10)


def compare_with_kenlm(row: Row, tables: CountTables, sentences: list[list[str]], workdir: Path) -> None:
    """Export our model as ARPA, load it in KenLM and score the test lines with it."""
    arpa = workdir / f"{row.corpus.name}-kn{row.spec.order}.arpa"
    with Stopwatch() as export:
        export_arpa(tables, arpa, order=row.spec.order)
    with Stopwatch() as load:
        model = kenlm.Model(str(arpa))
    row.export_s, row.kenlm_load_s = export.seconds, load.seconds
    row.kenlm = score_kenlm(model, sentences)
    del model
    arpa.unlink()


def run_corpus(corpus: Corpus, train: Path, test: Path, quick: bool, workdir: Path) -> tuple[list[Row], str]:
    """Build the corpus's 5-gram store and score every model on its test set; returns rows and a build note."""
    sentences = test_sentences(test, QUICK_TOKENS if quick else None)
    tokens = sum(len(s) for s in sentences)
    db = workdir / f"{corpus.name}.db"
    with step(f"{corpus.name}: building a {STORE_ORDER}-gram store from {train.name}") as build:
        store, train_tokens = built_store(db, [train], STORE_ORDER)
    note = f"{corpus.name}: {train_tokens:,} training tokens, {STORE_ORDER}-gram store built in {build.seconds:.1f} s"
    rows = []
    tables = store.load_tables() if kenlm is not None else None
    try:
        for spec in MODELS:
            with step(f"{corpus.name}: {spec.label} on {tokens:,} test tokens"):
                row = Row(corpus, spec, tokens, score_ours(store, spec, sentences))
                if spec.arpa and tables is not None:
                    compare_with_kenlm(row, tables, sentences, workdir)
            rows.append(row)
    finally:
        store.close()
        db.unlink(missing_ok=True)
    return rows, note


# --- report ---------------------------------------------------------------------------------------------------------
def max_line_diff(row: Row) -> float:
    if row.kenlm is None:
        return math.nan
    return max(abs(a - b) for a, b in zip(row.ours.line_log10, row.kenlm.line_log10, strict=True))


def perplexity_table(rows: list[Row], quick: bool) -> str:
    """Perplexities; published figures only beside full test sets (a slice is not comparable)."""
    header = [
        "Corpus",
        "Model",
        "Test tokens",
        "Perplexity (ours)",
        "tokens with P=0 (perplexity of the rest)",
        "KenLM, our ARPA",
        "ours / KenLM",
        "max abs diff log10 per line",
        "Published",
        "ours / published",
    ]
    body = []
    for r in rows:
        is_kn5 = r.spec.smoothing is Smoothing.KNESER_NEY and r.spec.order == 5
        ref = r.corpus.kn5_reference if is_kn5 and not quick else None
        kl = r.kenlm.perplexity if r.kenlm else None
        body.append(
            [
                r.corpus.name,
                r.spec.label,
                fmt(r.tokens),
                fmt(r.ours.perplexity),
                f"{r.ours.zero_tokens:,} ({fmt(r.ours.finite_perplexity)})" if r.ours.zero_tokens else "0",
                fmt(kl),
                fmt(r.ours.perplexity / kl, 5) if kl else "-",
                fmt(max_line_diff(r), 6) if r.kenlm else "-",
                fmt(ref),
                fmt(r.ours.perplexity / ref, 4) if ref else "-",
            ]
        )
    return markdown_table(header, body)


def speed_table(rows: list[Row]) -> str:
    header = [
        "Corpus",
        "Model",
        "ours: s",
        "ours: tokens/s",
        "ARPA export s",
        "KenLM load s",
        "KenLM score s",
        "KenLM tokens/s",
        "ours / KenLM (score time)",
    ]
    body = []
    for r in rows:
        k = r.kenlm
        body.append(
            [
                r.corpus.name,
                r.spec.label,
                fmt(r.ours.seconds, 1),
                fmt(round(r.tokens / r.ours.seconds)),
                fmt(r.export_s, 1) if k else "-",
                fmt(r.kenlm_load_s, 1) if k else "-",
                fmt(k.seconds, 3) if k else "-",
                fmt(round(r.tokens / k.seconds)) if k else "-",
                fmt(r.ours.seconds / k.seconds, 0) + "x" if k else "-",
            ]
        )
    return markdown_table(header, body)


def aim_line(rows: list[Row], quick: bool) -> str:
    if quick:
        return f"Aim (PTB KN5 within {AIM_RELATIVE:.1%} of {PTB_KN5_REFERENCE}): not judged on a quick run's slice."
    kn5 = next((r for r in rows if r.corpus.name == "PTB" and r.spec.order == 5 and r.spec.arpa), None)
    if kn5 is None:
        return ""
    off = kn5.ours.perplexity / PTB_KN5_REFERENCE - 1
    verdict = "met" if abs(off) <= AIM_RELATIVE else "NOT met"
    return (
        f"Aim (PTB KN5 within {AIM_RELATIVE:.1%} of {PTB_KN5_REFERENCE}): {verdict} - ours "
        f"{kn5.ours.perplexity:.2f}, {off:+.2%}."
    )


def zero_note(rows: list[Row]) -> list[str]:
    """Why a model has an infinite perplexity, if one has."""
    zeros = [r for r in rows if r.ours.zero_tokens]
    if not zeros:
        return []
    which = ", ".join(f"{r.spec.label} on {r.corpus.name}: {r.ours.zero_tokens:,}" for r in zeros)
    return [
        f"Tokens given probability 0 (so perplexity inf; the figure in brackets leaves them out): {which}. For Katz "
        "this happens where some context in the backoff chain has only followers seen more than k=5 times: "
        "Good-Turing discounts nothing there, so no mass is left to back off and every unseen word gets 0 "
        "(`NgramModel._katz`, alpha = 0)."
    ]


def report(rows: list[Row], notes: list[str], quick: bool) -> str:
    scope = f"the first {QUICK_TOKENS:,} test tokens (whole lines) of each corpus" if quick else "the full test sets"
    kenlm_note = (
        "KenLM: `kenlm.Model(arpa).score(line, bos=True, eos=True)` over our exported ARPA (log10, converted)."
        if kenlm is not None
        else "KenLM: the `kenlm` module is not installed, so there is no in-run reference."
    )
    parts = [
        f"Test perplexity on {scope}: each line's `split()` plus one `</s>` (counted), `<unk>` an ordinary word.",
        "All models read one 5-gram pretokenized store per corpus (`NgramModel(SqliteCounts(store), ...)`); "
        "add-delta uses the full 3-gram context with no backoff (delta=1 is Laplace, delta=0.01 Lidstone); "
        "Katz uses Good-Turing discounts for counts up to 5.",
        kenlm_note,
        "",
        perplexity_table(rows, quick),
        "",
        aim_line(rows, quick),
        "",
        "The per-line differences from KenLM come from rounding: the ARPA file holds 7 decimals and KenLM keeps "
        "32-bit floats, which adds up over long WikiText-2 paragraphs (hundreds of tokens a line).",
        "",
        "Scoring time (ours: `lm_core.metrics.score_tokens`, one `logprob` call per token; KenLM: scoring only, "
        "its ARPA load shown apart):",
        "",
        speed_table(rows),
        "",
        *[f"- {n}" for n in [*zero_note(rows), *notes]],
    ]
    return "\n".join(parts)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--workdir", type=Path, default=None, help="where stores and ARPA files go (a temp dir)")
    args = parser.parse_args()
    corpus_files(args, [f for c in CORPORA for f in (c.train, c.test)])  # names every missing file at once
    files = {c.name: corpus_files(args, [c.train, c.test]) for c in CORPORA}
    print(f"machine: {machine(['kenlm'])}", flush=True)
    start = time.perf_counter()
    rows: list[Row] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nextword-bench-ppl-", dir=args.workdir) as tmp:
        for corpus in CORPORA:
            corpus_rows, note = run_corpus(corpus, *files[corpus.name], args.quick, Path(tmp))
            rows += corpus_rows
            notes.append(note)
    runtime = time.perf_counter() - start
    body = report(rows, notes, args.quick)
    print("\n" + body)
    print(f"\nruntime {runtime:.0f} s")
    publish(args, SECTION, "Perplexity (`bench/perplexity.py`)", body, runtime, ["kenlm"])


if __name__ == "__main__":
    main()
