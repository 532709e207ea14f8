"""Scale-out build: the Dask build's throughput with 1 and 2 workers beside the local build, the peak memory of each
worker and of the driver, and store sizes per cut-off level (the measurements docs/SCALE.md extrapolates from).

1. speed: WikiText-2 train (5-gram, pretokenized; unpruned and with --prune 1,1,2,2), Reuters train+test raw text
   (3-gram, prose: two files, so at most two read tasks) and its .tok.txt (3-gram, pretokenized). Each build runs in
   a fresh process: the local build (`nextword build`'s code: `CountStore.build`, or `build_local_base` when
   pruned), then `store.dask_build.build_with_dask` on a LocalCluster of 1 and of 2 worker processes started in that
   process (its start is timed apart and not in tokens/s). Worker RSS is sampled with psutil every 50 ms; the
   driver's peak is the process's VmHWM (the scheduler, the nannies, the client and the SQLite writer all live in it).
2. sizes: local base builds (no per-file token streams, as a Dask build writes them), 5-gram, of WikiText-2 train
   (pretokenized) and Reuters train+test (prose) at 25, 50 and 100% of their lines, at cut-offs none, 1,1,2,2 and
   1,2,3,3, and 1,1,2,2 with --vocab-limit 10000 (100% only): store bytes and n-gram rows per order; then, per order
   and cut-off, the exponent b of rows ~ tokens^b fitted on the three sizes (log-log least squares), and the rows and
   bytes that gives at 0.8 billion tokens (the One Billion Word Benchmark's training set, Chelba et al. 2013).

    python bench/scale_build.py                  # both parts, each speed build twice (the median); ~8 minutes
    python bench/scale_build.py --parts sizes    # only the store sizes (local builds, about 1.5 minutes)
    python bench/scale_build.py --quick          # the first 100,000 words of each corpus, once; nothing written
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.build_speed import slice_files  # noqa: E402
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

SECTION = "scale-build"
MIB = 2**20
QUICK_WORDS = 100_000
SAMPLE_S = 0.05
TARGET_TOKENS = 0.8e9
"""Tokens of the One Billion Word Benchmark's training set (about 0.8 billion words; its sentence ends add ~4%)."""
PARTS = ("speed", "sizes")
WIKITEXT = ("wikitext-2/wiki.train.tokens",)
REUTERS_RAW = ("reuters/reuters.train.txt", "reuters/reuters.test.txt")
REUTERS_TOK = ("reuters/reuters.train.tok.txt", "reuters/reuters.test.tok.txt")


@dataclass(frozen=True)
class Job:
    label: str
    files: tuple[str, ...]
    order: int
    tokenizer: str
    prune: tuple[int, ...] | None = None


SPEED_JOBS = (
    Job("WikiText-2 train", WIKITEXT, 5, "pretokenized"),
    Job("WikiText-2 train", WIKITEXT, 5, "pretokenized", (1, 1, 2, 2)),
    Job("Reuters train+test, raw text", REUTERS_RAW, 3, "prose"),
    Job("Reuters train+test, .tok.txt", REUTERS_TOK, 3, "pretokenized"),
)
ENGINES = (("local", 0), ("dask", 1), ("dask", 2))


@dataclass(frozen=True)
class Cutoff:
    label: str
    prune: tuple[int, ...] | None
    vocab_limit: int | None = None
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)


CUTOFFS = (
    Cutoff("none", None),
    Cutoff("1,1,2,2", (1, 1, 2, 2)),
    Cutoff("1,2,3,3", (1, 2, 3, 3)),
    Cutoff("1,1,2,2 + vocab 10,000", (1, 1, 2, 2), 10_000, (1.0,)),
)
SIZE_CORPORA = (("WikiText-2 train", WIKITEXT, "pretokenized"), ("Reuters train+test", REUTERS_RAW, "prose"))
SIZE_ORDER = 5


# --- children: one build in a fresh process ------------------------------------------------------------------------
def child_build(spec: dict) -> dict:
    """One build (the child's only work); its times, sizes and memory as a JSON-able dict."""
    db = Path(spec["db"])
    files = [Path(f) for f in spec["files"]]
    prune = tuple(spec["prune"]) if spec["prune"] else None
    if spec["engine"] == "local":
        with Stopwatch() as sw:
            tokens, ngrams = _local_build(db, files, spec["order"], spec["tokenizer"], prune)
        return {
            "seconds": sw.seconds,
            "start": 0.0,
            "tokens": tokens,
            "ngrams": ngrams,
            "peak": peak_rss_bytes(),
            "workers_peak": [],
            "bytes": file_bytes(db),
        }
    return _dask_child(spec, db, files, prune)


def _local_build(
    db: Path, files: list[Path], order: int, tokenizer: str, prune: tuple[int, ...] | None
) -> tuple[int, dict[str, int]]:
    from store.bulk import build_local_base
    from store.countstore import CountStore

    if prune:
        result = build_local_base(db, files, order, tokenizer, prune)
        return result.tokens, {str(n): c for n, c in result.ngrams.items()}
    with CountStore.open(db, order=order, tokenizer=tokenizer, create=True) as store:
        tokens = store.build(files)
        ngrams = store.stats()["ngrams"]
    return tokens, {str(n): c for n, c in ngrams.items()}  # type: ignore[union-attr]


def _dask_child(spec: dict, db: Path, files: list[Path], prune: tuple[int, ...] | None) -> dict:
    """A LocalCluster of spec["workers"] processes, its workers' RSS sampled while `build_with_dask` runs on it."""
    import os

    import distributed

    from store.dask_build import build_with_dask, local_cluster

    with Stopwatch() as start:
        cluster = local_cluster(spec["workers"])
        with distributed.Client(cluster, set_as_default=False) as client:
            pids = list(client.run(os.getpid).values())
    sampler = _RssSampler(pids)
    sampler.start()
    try:
        with Stopwatch() as sw:
            result = build_with_dask(
                db,
                files,
                order=spec["order"],
                tokenizer=spec["tokenizer"],
                min_counts=prune,
                scheduler=cluster.scheduler_address,
            )
    finally:
        sampler.stop()
        cluster.close()
    return {
        "seconds": sw.seconds,
        "start": start.seconds,
        "tokens": result.tokens,
        "ngrams": {str(n): c for n, c in result.ngrams.items()},
        "peak": peak_rss_bytes(),
        "workers_peak": sampler.peaks(),
        "bytes": file_bytes(db),
    }


class _RssSampler(threading.Thread):
    """The highest RSS (bytes) seen of each process, sampled every SAMPLE_S seconds."""

    def __init__(self, pids: list[int]) -> None:
        import psutil

        super().__init__(daemon=True)
        self.processes = [psutil.Process(p) for p in pids]
        self.highest = [0] * len(pids)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for i, process in enumerate(self.processes):
                with contextlib.suppress(Exception):  # a restarted or exited worker: keep what was seen
                    self.highest[i] = max(self.highest[i], process.memory_info().rss)
            self.done.wait(SAMPLE_S)

    def stop(self) -> None:
        self.done.set()
        self.join()

    def peaks(self) -> list[int]:
        return list(self.highest)


# --- part 1: speed --------------------------------------------------------------------------------------------------
@dataclass
class SpeedResult:
    job: Job
    engine: str
    workers: int
    runs: list[dict]

    def median(self, key: str) -> float:
        return statistics.median(float(r[key]) for r in self.runs)


def run_speed(jobs: dict[Job, list[Path]], repeat: int, workdir: Path) -> list[SpeedResult]:
    results = []
    for job, files in jobs.items():
        for engine, workers in ENGINES:
            result = SpeedResult(job, engine, workers, [])
            for i in range(repeat):
                db = workdir / f"speed-{i}.db"
                spec = {
                    "db": str(db),
                    "engine": engine,
                    "workers": workers,
                    "files": [str(f) for f in files],
                    "order": job.order,
                    "tokenizer": job.tokenizer,
                    "prune": job.prune,
                }
                label = f"{job.label} {job.order}-gram{_pruned(job)}: {_engine(engine, workers)} {i + 1}/{repeat}"
                with step(label):
                    result.runs.append(run_child([__file__, "--child-build", json.dumps(spec)]))
                for p in workdir.glob("speed-*"):
                    p.unlink()
            results.append(result)
    return results


def _pruned(job: Job) -> str:
    return f", --prune {','.join(map(str, job.prune))}" if job.prune else ""


def _engine(engine: str, workers: int) -> str:
    return "local" if engine == "local" else f"dask, {workers} worker{'s' if workers > 1 else ''}"


def speed_report(results: list[SpeedResult], repeat: int, quick: bool) -> str:
    header = [
        "Corpus",
        "Order",
        "Tokenizer",
        "Engine",
        "Tokens",
        "Build s",
        "Tokens/s",
        "vs local",
        "Cluster start s",
        "Driver peak MiB",
        "Worker peak MiB",
        "Store MiB",
        "Same rows as local",
    ]
    rows = []
    local: dict[Job, SpeedResult] = {r.job: r for r in results if r.engine == "local"}
    for r in results:
        seconds, tokens = r.median("seconds"), r.median("tokens")
        base = local.get(r.job)
        ratio = (tokens / seconds) / (base.median("tokens") / base.median("seconds")) if base else math.nan
        workers = [max(run["workers_peak"] or [0]) for run in r.runs]
        same = "-"
        if r.engine == "dask" and base is not None:
            same = "yes" if r.runs[0]["ngrams"] == base.runs[0]["ngrams"] else "NO"
        rows.append(
            [
                r.job.label,
                str(r.job.order),
                r.job.tokenizer + _pruned(r.job),
                _engine(r.engine, r.workers),
                fmt(int(tokens)),
                f"{seconds:.2f}",
                fmt(round(tokens / seconds)),
                f"{ratio:.2f}",
                f"{r.median('start'):.1f}" if r.engine == "dask" else "-",
                fmt(max(x["peak"] for x in r.runs) / MIB, 0),
                fmt(max(workers) / MIB, 0) if r.engine == "dask" else "-",
                fmt(r.median("bytes") / MIB, 1),
                same,
            ]
        )
    scope = f"the first {QUICK_WORDS:,} words of each corpus" if quick else "the whole corpora"
    return "\n".join(
        [
            f"Builds over {scope}, each in a fresh process, median of {repeat}. Tokens/s = tokens (sentence ends "
            "included) / build seconds; the Dask cluster's start (LocalCluster of worker processes, one thread "
            "each) is timed apart. Driver peak: VmHWM of the build process (scheduler, nannies, client and the "
            "SQLite writer). "
            f"Worker peak: the highest RSS of any worker process, sampled every {SAMPLE_S * 1000:.0f} ms with psutil.",
            "",
            markdown_table(header, rows),
            "",
            "- The local build without --prune keeps each file's token stream (so files can be forgotten); the Dask "
            "build and pruned builds write a base model without them, hence the smaller stores.",
            '- "Same rows": n-gram rows per order equal the local build\'s (the tests check identical ARPA exports).',
        ]
    )


# --- part 2: sizes --------------------------------------------------------------------------------------------------
@dataclass
class SizePoint:
    corpus: str
    cutoff: Cutoff
    fraction: float
    tokens: int
    ngrams: dict[int, int]
    bytes: int
    seconds: float


def head_fraction(paths: list[Path], fraction: float, workdir: Path) -> list[Path]:
    """Copies of the first `fraction` of each file's lines (the files themselves at 1.0)."""
    if fraction >= 1.0:
        return paths
    out = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        dest = workdir / f"{int(fraction * 100)}pct-{path.name}"
        dest.write_text("".join(lines[: int(len(lines) * fraction)]), encoding="utf-8")
        out.append(dest)
    return out


def run_sizes(corpora: dict[str, tuple[list[Path], str]], workdir: Path) -> list[SizePoint]:
    from store.bulk import build_local_base

    points = []
    for name, (paths, tokenizer) in corpora.items():
        for cutoff in CUTOFFS:
            for fraction in cutoff.fractions:
                files = head_fraction(paths, fraction, workdir)
                db = workdir / "size.db"
                with step(f"{name} {fraction:.0%}, cut-offs {cutoff.label}") as sw:
                    result = build_local_base(db, files, SIZE_ORDER, tokenizer, cutoff.prune, cutoff.vocab_limit)
                size = file_bytes(db)
                points.append(SizePoint(name, cutoff, fraction, result.tokens, result.ngrams, size, sw.seconds))
                db.unlink()
    return points


def fit_exponent(points: list[SizePoint], order: int) -> float:
    """b in rows_order ~ tokens^b, least squares in log-log over the points (nan with fewer than 2)."""
    if len(points) < 2:
        return math.nan
    x = np.log([p.tokens for p in points])
    y = np.log([max(p.ngrams[order], 1) for p in points])
    return float(np.polyfit(x, y, 1)[0])


def sizes_report(points: list[SizePoint]) -> str:
    orders = range(1, SIZE_ORDER + 1)
    header = [
        "Corpus",
        "Cut-offs",
        "Share",
        "Tokens",
        *(f"{n}-grams" for n in orders),
        "Store MiB",
        "Bytes/row",
        "Build s",
    ]
    rows = [
        [
            p.corpus,
            p.cutoff.label,
            f"{p.fraction:.0%}",
            fmt(p.tokens),
            *(fmt(p.ngrams[n]) for n in orders),
            fmt(p.bytes / MIB, 1),
            fmt(p.bytes / sum(p.ngrams.values()), 1),
            f"{p.seconds:.1f}",
        ]
        for p in points
    ]
    fit_header = [
        "Corpus",
        "Cut-offs",
        *(f"b, {n}-grams" for n in orders),
        *(f"{n}-grams at 0.8B" for n in orders),
        "Store GiB at 0.8B",
    ]
    fits = []
    for corpus in dict.fromkeys(p.corpus for p in points):
        unpruned = [p for p in points if p.corpus == corpus and p.cutoff.prune is None and p.cutoff.vocab_limit is None]
        for cutoff in CUTOFFS:
            series = [p for p in points if p.corpus == corpus and p.cutoff == cutoff]
            if len(series) < 2 or len(unpruned) < 2:
                continue
            betas, low, high = extrapolate(series, unpruned)
            per_row = _full(series).bytes / sum(_full(series).ngrams.values())
            fits.append(
                [
                    corpus,
                    cutoff.label,
                    *(f"{b:.2f}" for b in betas),
                    *(_span(lo, hi) for lo, hi in zip(low, high, strict=True)),
                    _span(sum(low) * per_row / 2**30, sum(high) * per_row / 2**30, gib=True),
                ]
            )
    return "\n".join(
        [
            f"Local base builds ({SIZE_ORDER}-gram, no per-file streams: what a Dask build writes) of the first 25, 50 "
            "and 100% of each corpus' lines. Store MiB: the .db file after the build; bytes/row: the file over all "
            "n-gram rows.",
            "",
            markdown_table(header, rows),
            "",
            "Growth fitted per order (rows ~ tokens^b over the three sizes, log-log least squares) and carried to 0.8 "
            "billion tokens. Unpruned: rows at 100% x (0.8e9 / tokens)^b. Pruned, a range: low = the unpruned "
            "estimate x the share of rows the cut-off keeps at 100% (that share grows with the corpus, so this is "
            "low); high = the pruned rows' own fit, capped at the unpruned estimate. Bytes at this corpus' bytes "
            "per row. A 400x extrapolation from one small corpus: an order-of-magnitude guide, see docs/SCALE.md.",
            "",
            markdown_table(fit_header, fits),
        ]
    )


def extrapolate(series: list[SizePoint], unpruned: list[SizePoint]) -> tuple[list[float], list[float], list[float]]:
    """Per order: the fitted exponent of `series`, and the (low, high) rows it gives at TARGET_TOKENS."""
    orders = range(1, SIZE_ORDER + 1)
    full, full_unpruned = _full(series), _full(unpruned)
    scale = TARGET_TOKENS / full.tokens
    betas = [fit_exponent(series, n) for n in orders]
    ceiling = [full_unpruned.ngrams[n] * scale ** fit_exponent(unpruned, n) for n in orders]
    high = [min(full.ngrams[n] * scale**b, c) for n, b, c in zip(orders, betas, ceiling, strict=True)]
    low = [c * full.ngrams[n] / full_unpruned.ngrams[n] for n, c in zip(orders, ceiling, strict=True)]
    return betas, low, high


def _full(series: list[SizePoint]) -> SizePoint:
    return next(p for p in series if p.fraction == 1.0)


def _span(low: float, high: float, gib: bool = False) -> str:
    """One estimate, or a low-high range when they differ by over 5%."""
    show = (lambda v: f"{v:,.1f}") if gib else _short
    low, high = min(low, high), max(low, high)
    return show(low) if high <= low * 1.05 else f"{show(low)}-{show(high)}"


def _short(value: float) -> str:
    """A large count in words: 1.2M, 3.4B."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


# --- main -----------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--parts", nargs="*", default=list(PARTS), choices=PARTS, help="what to run (default all)")
    parser.add_argument("--repeat", type=int, default=None, help="speed builds per engine (default 2, 1 with --quick)")
    parser.add_argument("--workdir", type=Path, default=None, help="where stores are built (a temp dir)")
    parser.add_argument("--child-build", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_build:
        print(json.dumps(child_build(json.loads(args.child_build))))
        return
    corpora = corpora_dir(args.corpora)
    require_files(corpora, sorted({*WIKITEXT, *REUTERS_RAW, *REUTERS_TOK}))
    repeat = args.repeat or (1 if args.quick else 2)
    print(f"machine: {machine(['dask', 'distributed'])}", flush=True)
    started = time.perf_counter()
    bodies = []
    with tempfile.TemporaryDirectory(prefix="nextword-bench-scale-", dir=args.workdir) as tmp:
        workdir = Path(tmp)

        def files(relative: tuple[str, ...]) -> list[Path]:
            paths = require_files(corpora, relative)
            return slice_files(paths, QUICK_WORDS, workdir) if args.quick else paths

        if "speed" in args.parts:
            jobs = {job: files(job.files) for job in SPEED_JOBS}
            bodies.append(
                "### Build throughput and memory\n\n"
                + speed_report(run_speed(jobs, repeat, workdir), repeat, args.quick)
            )
        if "sizes" in args.parts:
            size_corpora = {name: (files(rel), tok) for name, rel, tok in SIZE_CORPORA}
            bodies.append("### Store size per cut-off level\n\n" + sizes_report(run_sizes(size_corpora, workdir)))
    runtime = time.perf_counter() - started
    body = "\n\n".join(bodies)
    print("\n" + body)
    print(f"\nruntime {runtime:.0f} s")
    out = results_path(args)
    if out is not None:
        title = "Scale-out build on Dask (`bench/scale_build.py`)"
        write_section(out, SECTION, section_text(title, body, runtime, ["dask", "distributed"]))


if __name__ == "__main__":
    main()
