"""Build time and peak memory of count stores: 5-gram PTB and WikiText-2, 3-gram Reuters (prose and pretokenized).

Each build runs in a fresh Python process that does only that build (`CountStore.open(...).build([...])`, then
`close()`); the child reports its wall time and its resident-set high-water mark (VmHWM), and its RSS after the
imports, before the build. Where `nltk` imports, NLTK's `KneserNeyInterpolated(3).fit` over
`padded_everygram_pipeline` of PTB train runs the same way as an in-run reference for our PTB 3-gram build.

    python bench/build_speed.py            # every build 3 times (the median is reported); about 2 minutes
    python bench/build_speed.py --quick    # the first 100,000 words of each corpus, once
    python bench/build_speed.py --jobs reuters-raw --reference ../main   # one build, and another tree's, alternately

With `--reference DIR` each build also runs with nextword imported from the source tree DIR, alternating with this
tree's runs (a shared machine's load then falls on both alike); rows marked "(reference)", and "this / reference"
compares the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_ENV = "NEXTWORD_BENCH_SOURCE"  # a child that builds with another source tree imports nextword from there
SOURCE = Path(os.environ.get(SOURCE_ENV, ROOT))
if str(SOURCE) not in sys.path:
    sys.path.insert(0, str(SOURCE))

from bench.common import (  # noqa: E402
    Stopwatch,
    base_parser,
    corpora_dir,
    file_bytes,
    fmt,
    machine,
    markdown_table,
    peak_rss_bytes,
    require_files,
    results_path,
    run_child,
    section_text,
    step,
    write_section,
)

SECTION = "build_speed"
MIB = 2**20
QUICK_WORDS = 100_000
NLTK_SLICE_WORDS = 100_000  # NLTK's fallback slice when the whole of PTB train takes too long
NLTK_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class Reference:
    label: str
    seconds: float | None  # None: measured in this run (NLTK)
    aim: float | None = None  # ours <= aim x the reference
    aim_label: str = ""


@dataclass(frozen=True)
class Job:
    label: str
    files: tuple[str, ...]
    order: int
    tokenizer: str
    reference: Reference | None = None
    key: str = ""  # for --jobs


LMPLZ = Reference("KenLM lmplz, PTB 5-gram (published, not run here)", 1.8, aim=3.0, aim_label="<= 3x lmplz")
SLIDE = Reference('course slide: "a few seconds"', 5.0, aim=1.0, aim_label="<= 5 s")
NLTK = Reference("NLTK KneserNeyInterpolated(3).fit (in-run)", None)

JOBS = (
    Job("PTB train", ("ptb/ptb.train.txt",), 5, "pretokenized", LMPLZ, "ptb-5"),
    Job("PTB train", ("ptb/ptb.train.txt",), 3, "pretokenized", NLTK, "ptb-3"),
    Job("WikiText-2 train", ("wikitext-2/wiki.train.tokens",), 5, "pretokenized", key="wikitext-5"),
    Job(
        "Reuters train+test, raw text",
        ("reuters/reuters.train.txt", "reuters/reuters.test.txt"),
        3,
        "prose",
        SLIDE,
        "reuters-raw",
    ),
    Job(
        "Reuters train+test, .tok.txt",
        ("reuters/reuters.train.tok.txt", "reuters/reuters.test.tok.txt"),
        3,
        "pretokenized",
        SLIDE,
        "reuters-tok",
    ),
)


@dataclass
class Result:
    job: Job
    runs: list[dict] = field(default_factory=list)

    def median(self, key: str) -> float:
        return statistics.median(float(r[key]) for r in self.runs)

    def most(self, key: str) -> float:
        return max(float(r[key]) for r in self.runs)


# --- children: one build, or NLTK's fit, in a fresh process ---------------------------------------------------------
def child_build(spec: dict) -> dict:
    """Build one store (the child's only work); its time, size and memory as a JSON-able dict."""
    from store.countstore import CountStore

    baseline = _current_rss()
    db = Path(spec["db"])
    cpu = time.process_time()
    with Stopwatch() as sw:
        store = CountStore.open(db, order=spec["order"], tokenizer=spec["tokenizer"], create=True)
        tokens = store.build(spec["files"])
        store.close()
    cpu = time.process_time() - cpu
    peak = peak_rss_bytes()
    size = file_bytes(db)
    with CountStore.open(db) as store:
        ngrams = sum(store.stats()["ngrams"].values())  # type: ignore[union-attr]
    return {
        "seconds": sw.seconds,
        "cpu": cpu,
        "tokens": tokens,
        "peak": peak,
        "baseline": baseline,
        "bytes": size,
        "ngrams": ngrams,
    }


def child_nltk(spec: dict) -> dict:
    """NLTK: read and split the text, then `KneserNeyInterpolated(order).fit` on the padded everygrams."""
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    baseline = _current_rss()
    with Stopwatch() as sw:
        sentences = [line.split() for line in Path(spec["file"]).read_text(encoding="utf-8").splitlines()]
        sentences = _first_words(sentences, spec.get("max_words"))
        train, vocab = padded_everygram_pipeline(spec["order"], sentences)
        model = KneserNeyInterpolated(spec["order"])
        model.fit(train, vocab)
    tokens = sum(len(s) + 1 for s in sentences)  # with one </s> a line, as our counts
    return {"seconds": sw.seconds, "tokens": tokens, "peak": peak_rss_bytes(), "baseline": baseline, "ngrams": -1}


def _first_words(sentences: list[list[str]], max_words: int | None) -> list[list[str]]:
    if max_words is None:
        return sentences
    kept, total = [], 0
    for s in sentences:
        if total >= max_words:
            break
        kept.append(s)
        total += len(s) + 1
    return kept


def _current_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- the parent -----------------------------------------------------------------------------------------------------
def slice_files(paths: list[Path], max_words: int, workdir: Path) -> list[Path]:
    """Copies of the first lines of each file, about `max_words` words in all (for --quick)."""
    out, budget = [], max_words
    for path in paths:
        kept: list[str] = []
        with path.open(encoding="utf-8") as f:
            for line in f:
                if budget <= 0:
                    break
                kept.append(line)
                budget -= len(line.split()) + 1
        dest = workdir / f"head-{path.name}"
        dest.write_text("".join(kept), encoding="utf-8")
        out.append(dest)
    return out


def run_builds(job: Job, files: list[Path], repeat: int, workdir: Path, reference: Path | None = None) -> list[Result]:
    """`repeat` builds of `job` in fresh processes; with `reference`, as many with nextword imported from that
    source tree, alternating with ours. Our result first."""
    trees = [ROOT] + ([reference] if reference is not None else [])
    results = [Result(job if tree == ROOT else Job(f"{job.label} (reference)", *_fields(job))) for tree in trees]
    for i in range(repeat):
        for tree, result in zip(trees, results, strict=True):
            db = workdir / f"build-{i}.db"
            spec = {"db": str(db), "order": job.order, "tokenizer": job.tokenizer, "files": [str(f) for f in files]}
            name = "" if tree == ROOT else " (reference)"
            with step(f"{job.label}: {job.order}-gram {job.tokenizer} build {i + 1}/{repeat}{name}"):
                result.runs.append(_build_child(spec, tree))
            for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                p.unlink(missing_ok=True)
    return results


def _fields(job: Job) -> tuple:
    return (job.files, job.order, job.tokenizer, job.reference, job.key)


def _build_child(spec: dict, tree: Path) -> dict:
    """One build in a fresh process, nextword imported from `tree`."""
    if tree == ROOT:
        return run_child([__file__, "--child-build", json.dumps(spec)])
    env = {**os.environ, "PYTHONPATH": str(tree), SOURCE_ENV: str(tree)}
    return run_child([__file__, "--child-build", json.dumps(spec)], env=env, cwd=tree)


def run_nltk(train: Path, repeat: int, max_words: int | None) -> tuple[Result, str]:
    """NLTK's fit on PTB train (a slice if the whole takes over NLTK_TIMEOUT_S); the result and what was fit."""
    result = Result(Job("PTB train (NLTK)", ("ptb/ptb.train.txt",), 3, "split()"))
    for i in range(repeat):
        spec = {"file": str(train), "order": 3, "max_words": max_words}
        try:
            with step(f"NLTK KneserNeyInterpolated(3).fit, run {i + 1}/{repeat}"):
                result.runs.append(run_child([__file__, "--child-nltk", json.dumps(spec)], timeout=NLTK_TIMEOUT_S))
        except subprocess.TimeoutExpired:
            if max_words is not None and max_words <= NLTK_SLICE_WORDS:
                raise
            print(f"NLTK took over {NLTK_TIMEOUT_S:.0f} s; fitting a slice instead", file=sys.stderr)
            return run_nltk(train, repeat, NLTK_SLICE_WORDS)
    scope = "the whole of PTB train" if max_words is None else f"the first {max_words:,} words of PTB train"
    return result, scope


def nltk_available() -> bool:
    try:
        import nltk.lm  # noqa: F401
    except ImportError:
        return False
    return True


# --- report ---------------------------------------------------------------------------------------------------------
def reference_cells(r: Result, nltk: Result | None, quick: bool) -> tuple[str, str, str]:
    """(reference, ours / reference, aim) cells for one result; fixed references only for the full corpora."""
    ref = r.job.reference
    if ref is None or (quick and ref.seconds is not None):
        return "-", "-", "-"
    if ref.seconds is None:  # NLTK, measured in this run on the same text
        if nltk is None or not nltk.runs:
            return "NLTK not installed", "-", "-"
        if nltk.median("tokens") != r.median("tokens"):
            return f"{ref.label}: {nltk.median('seconds'):.1f} s on a slice", "-", "-"
        return (
            f"{ref.label}: {nltk.median('seconds'):.1f} s",
            f"{r.median('seconds') / nltk.median('seconds'):.2f}",
            "-",
        )
    ratio = r.median("seconds") / ref.seconds
    aim = "-" if ref.aim is None else f"{ref.aim_label}: {'met' if ratio <= ref.aim else 'NOT met'}"
    return f"{ref.label}: {ref.seconds:g} s", f"{ratio:.2f}", aim


def result_row(r: Result, nltk: Result | None, repeat: int, quick: bool, ours: Result | None = None) -> list[str]:
    """One row; for a reference tree's build (`ours`: this tree's same build) the reference cell compares them."""
    ref, ratio, aim = reference_cells(r, nltk, quick)
    if ours is not None:
        ratio = f"this / reference: {ours.median('seconds') / r.median('seconds'):.2f} wall"
        if all("cpu" in x for x in [*r.runs, *ours.runs]):
            ratio += f", {ours.median('cpu') / r.median('cpu'):.2f} CPU"
        ref, aim = "same build, the reference tree", "-"
    seconds = r.median("seconds")
    spread = f" ({min(x['seconds'] for x in r.runs):.2f}-{r.most('seconds'):.2f})" if repeat > 1 else ""
    return [
        r.job.label,
        str(r.job.order),
        r.job.tokenizer,
        fmt(int(r.median("tokens"))),
        f"{seconds:.2f}{spread}",
        f"{r.median('cpu'):.2f}" if all("cpu" in x for x in r.runs) else "-",
        fmt(round(r.median("tokens") / seconds)),
        fmt(r.most("peak") / MIB, 0),
        fmt(r.median("baseline") / MIB, 0),
        fmt(r.median("bytes") / MIB, 1) if "bytes" in r.runs[0] else "-",
        fmt(int(r.median("ngrams"))) if r.median("ngrams") >= 0 else "-",
        ref,
        ratio,
        aim,
    ]


def report(results: list[Result], nltk: Result | None, nltk_scope: str, repeat: int, quick: bool) -> str:
    header = [
        "Corpus",
        "Order",
        "Tokenizer",
        "Tokens (with </s>)",
        "Wall s" + (f" (median of {repeat}, range)" if repeat > 1 else ""),
        "CPU s (median)",
        "Tokens/s",
        "Peak RSS MiB",
        "RSS before build MiB",
        "Store MiB",
        "N-grams",
        "Reference",
        "ours / ref",
        "Aim",
    ]
    ours = {r.job.label: r for r in results}
    rows = [
        result_row(
            r,
            nltk,
            repeat,
            quick,
            ours.get(r.job.label.removesuffix(" (reference)")) if "(reference)" in r.job.label else None,
        )
        for r in results
    ]
    if nltk is not None and nltk.runs:
        rows.append(result_row(nltk, None, repeat, quick))
    scope = f"the first {QUICK_WORDS:,} words of each corpus" if quick else "the whole corpora"
    lines = [
        f"Builds over {scope}; each in a fresh process doing only the build (open, build, close - the WAL "
        "checkpointed), its peak RSS read from VmHWM in that process; store size on disk after closing.",
        "",
        markdown_table(header, rows),
        "",
    ]
    if nltk is not None and nltk.runs:
        lines.append(
            f"- NLTK row: `padded_everygram_pipeline(3, lines)` + `KneserNeyInterpolated(3).fit` over {nltk_scope} "
            "(reading and `split()` included, as our build includes reading and tokenizing). NLTK's fit only counts; "
            "its Kneser-Ney sums are computed at each `score` call."
        )
    else:
        lines.append("- NLTK did not run (not installed, or not asked for): no in-run reference for PTB 3-gram.")
    lines.append(
        "- The lmplz figure (1.8 s wall for the PTB 5-gram) and the slide's few seconds are fixed reference points, "
        "not measured in this run; the machine is shared, so read those ratios with that in mind."
    )
    return "\n".join(lines)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--repeat", type=int, default=None, help="builds per corpus (default 3, 1 with --quick)")
    parser.add_argument("--workdir", type=Path, default=None, help="where stores are built (a temp dir)")
    parser.add_argument(
        "--jobs", default=None, help="only these builds, comma-separated: " + ", ".join(j.key for j in JOBS)
    )
    parser.add_argument("--reference", type=Path, default=None, help="also build with this source tree (../main)")
    parser.add_argument("--no-nltk", action="store_true", help="skip the NLTK reference")
    parser.add_argument("--child-build", help=argparse.SUPPRESS)
    parser.add_argument("--child-nltk", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_build or args.child_nltk:
        out = child_build(json.loads(args.child_build)) if args.child_build else child_nltk(json.loads(args.child_nltk))
        print(json.dumps(out))
        return
    corpora = corpora_dir(args.corpora)
    wanted = None if args.jobs is None else {k.strip() for k in args.jobs.split(",")}
    jobs = [job for job in JOBS if wanted is None or job.key in wanted]
    require_files(corpora, sorted({f for job in jobs for f in job.files}))  # names every missing file at once
    files = {job: require_files(corpora, job.files) for job in jobs}
    repeat = args.repeat or (1 if args.quick else 3)
    print(f"machine: {machine(['nltk'])}", flush=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nextword-bench-build-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        results = []
        for job in jobs:
            paths = slice_files(files[job], QUICK_WORDS, workdir) if args.quick else files[job]
            reference = args.reference.resolve() if args.reference else None
            results.extend(run_builds(job, paths, repeat, workdir, reference))
        nltk, nltk_scope = None, ""
        if nltk_available() and not args.no_nltk and JOBS[1] in jobs:
            ptb = slice_files(files[JOBS[1]], QUICK_WORDS, workdir)[0] if args.quick else files[JOBS[1]][0]
            nltk, nltk_scope = run_nltk(ptb, repeat, None)
            if args.quick:
                nltk_scope = f"the first {QUICK_WORDS:,} words of PTB train"
    runtime = time.perf_counter() - start
    body = report(results, nltk, nltk_scope, repeat, args.quick)
    print("\n" + body)
    print(f"\nruntime {runtime:.0f} s")
    out = results_path(args)
    if out is not None:
        title = "Build speed and memory (`bench/build_speed.py`)"
        write_section(out, SECTION, section_text(title, body, runtime, ["nltk"]))


if __name__ == "__main__":
    main()
