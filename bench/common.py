"""Helpers shared by the benchmarks: corpus lookup, the machine, timing, peak memory and `bench/RESULTS.md`.

Every benchmark reads `../shared/corpora` (relative to the repository root) unless `--corpora DIR` or
`$NEXTWORD_CORPORA` names another folder, prints a table and replaces its own section of `bench/RESULTS.md`
(between `<!-- NAME:start -->` and `<!-- NAME:end -->`), so the benchmarks can run in any order.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import platform
import re
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from store.countstore import CountStore

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
DEFAULT_CORPORA = ROOT.parent / "shared" / "corpora"
CORPORA_ENV = "NEXTWORD_CORPORA"

PREAMBLE = """# Benchmark results

Written by the benchmarks in `bench/`; each one replaces only its own section (between its `<!-- NAME:start -->`
and `<!-- NAME:end -->` markers), so they can run in any order. Run them from the repository root, after
`.venv/bin/pip install -e '.[bench]'` (KenLM and NLTK are the in-run references; without them those columns are
left out):

```sh
.venv/bin/python bench/perplexity.py        # test perplexity on PTB and WikiText-2, beside KenLM (~3 min)
.venv/bin/python bench/build_speed.py       # build time and peak memory of PTB, WikiText-2 and Reuters stores (~2 min)
.venv/bin/python bench/scale_build.py       # Dask build (1, 2 workers) vs local, memory, store size per cut-off (8 min)
.venv/bin/python bench/predict_latency.py   # predict() latency and learn() time on a WikiText-2 5-gram store
.venv/bin/python bench/evaluation.py        # next-word accuracy, keystroke savings, adaptation, oddities vs Harper
.venv/bin/python bench/replot.py            # re-draw evaluation.py's charts (bench/plots/) from its tables below
.venv/bin/python bench/stress.py            # concurrent writers on one store; bench/crash.py: kill -9 a writer
.venv/bin/python bench/fuzz_server.py       # 10,000 random and malformed JSON-RPC messages against the server (~30 s)
.venv/bin/python bench/lsp_latency.py       # completion round trips through `nextword serve` over stdio
.venv/bin/python bench/startup.py           # server ready and first completion, also in Neovim (--baseline DIR)
.venv/bin/python bench/check_speed.py       # cold check of 5,000 words, re-check after an edit, eval with the blend
.venv/bin/python bench/large_input.py       # learn and score a 50 MB file in pieces vs whole: time, peak memory
```

Each takes `--corpora DIR` (default `../shared/corpora`, or `$NEXTWORD_CORPORA`), `--quick` for a small smoke run
(not written here unless `--results PATH` is given) and `--help`. Times are wall-clock on a shared machine, so
each section compares with a reference measured in the same run, as a ratio, where one exists.
"""


# --- command line and corpora ---------------------------------------------------------------------------------------
def base_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes: --corpora, --quick, --results."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--corpora",
        type=Path,
        default=None,
        help=f"folder of the corpora (default: ${CORPORA_ENV}, else {DEFAULT_CORPORA})",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run; not written to bench/RESULTS.md")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"the results file to update (default: {RESULTS.relative_to(ROOT)}; a --quick run writes none)",
    )
    return parser


def corpora_dir(option: Path | None) -> Path:
    """The corpora folder: the option, else $NEXTWORD_CORPORA, else ../shared/corpora from the repository root."""
    if option is not None:
        return option.expanduser()
    env = os.environ.get(CORPORA_ENV)
    return Path(env).expanduser() if env else DEFAULT_CORPORA


def require_files(corpora: Path, relative: Sequence[str]) -> list[Path]:
    """The corpus files, or exit with a message naming every one that is missing and where it was looked for."""
    paths = [corpora / r for r in relative]
    missing = [r for r, p in zip(relative, paths, strict=True) if not p.is_file()]
    if missing:
        if corpora == DEFAULT_CORPORA:
            origin = "the default, ../shared/corpora from the repository root"
        elif os.environ.get(CORPORA_ENV) and Path(os.environ[CORPORA_ENV]).expanduser() == corpora:
            origin = f"from ${CORPORA_ENV}"
        else:
            origin = "from --corpora"
        names = "\n".join(f"  {r}" for r in missing)
        sys.exit(
            f"error: missing corpus file(s) in {corpora} ({origin}):\n{names}\n"
            f"Point --corpora DIR or ${CORPORA_ENV} at a folder holding them (see ../shared/corpora/README.md)."
        )
    return paths


def corpus_files(args: argparse.Namespace, relative: Sequence[str]) -> list[Path]:
    """The corpus files `relative` to the corpora folder that `--corpora` picks (see `corpora_dir`), or exit with a
    message naming every one that is missing (see `require_files`)."""
    return require_files(corpora_dir(args.corpora), relative)


def results_path(args: argparse.Namespace) -> Path | None:
    """Where to write the results: --results if given, none for --quick, else bench/RESULTS.md."""
    if args.results is not None:
        return args.results
    return None if args.quick else RESULTS


def command_line() -> str:
    """The command as it was run, relative to the repository root where possible."""
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return shlex.join(["python", str(script), *sys.argv[1:]])


# --- the machine ----------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    return math.nan


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def package_version(name: str) -> str | None:
    """The installed version of a distribution, or None."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine(extra: Sequence[str] = ()) -> str:
    """One line naming the machine and the software versions that matter (plus `extra` package names)."""
    parts = [
        f"{cpu_model()}, {usable_cores()} cores",
        f"{ram_gib():.0f} GiB RAM",
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
        f"numpy {np.__version__}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    parts += [f"{name} {package_version(name) or 'not installed'}" for name in extra]
    return "; ".join(parts)


# --- timing and memory ----------------------------------------------------------------------------------------------
@dataclass
class Stopwatch:
    """Wall-clock seconds of a `with` block (`time.perf_counter`)."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> list[float]:
    """The given percentiles of `values` (linear interpolation); nan for no values."""
    if not values:
        return [math.nan for _ in qs]
    return [float(v) for v in np.percentile(np.asarray(values, dtype=np.float64), qs)]


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (VmHWM; ru_maxrss where /proc is missing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def run_child(
    argv: Sequence[str],
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> dict[str, object]:
    """Run `python argv...` in a fresh process (in `cwd`, with `env` if given) and return the JSON object it prints
    on its last stdout line.

    Used to measure one job's peak memory on its own (the child reports `peak_rss_bytes()` itself), and to run
    another source tree's code (`env` with its PYTHONPATH, `cwd` the tree).
    """
    proc = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {shlex.join(argv)} failed ({proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"child {shlex.join(argv)} printed nothing")
    return json.loads(lines[-1])


def file_bytes(path: Path) -> int:
    """Size on disk of an SQLite file with its -wal and -shm companions, if any."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


# --- tables ---------------------------------------------------------------------------------------------------------
def fmt(value: float | int | str | None, digits: int = 2) -> str:
    """A number for a table: thousands separators for integers, `digits` decimals otherwise, "-" for None/nan."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table (also readable as plain text)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


# --- RESULTS.md -----------------------------------------------------------------------------------------------------
def section_text(title: str, body: str, runtime_s: float, extra_packages: Sequence[str] = ()) -> str:
    """A section: its title, date, machine, exact command and runtime, then the body."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"## {title}\n\n"
        f"- Date: {date}\n"
        f"- Machine: {machine(extra_packages)}\n"
        f"- Command: `{command_line()}`\n"
        f"- Runtime: {runtime_s:,.0f} s\n\n"
        f"{body.strip()}\n"
    )


def replace_section(text: str, name: str, content: str) -> str:
    """`text` with the section `name` replaced by `content` (appended if it is not there yet)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{content.strip()}\n{end}"
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        return text[:i] + block + text[j + len(end) :]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def publish(
    args: argparse.Namespace, name: str, title: str, body: str, runtime_s: float, extra_packages: Sequence[str] = ()
) -> Path | None:
    """Write the benchmark's section `name` (see `section_text`) where `results_path(args)` says; returns that
    file, or None when nothing is written (a --quick run without --results)."""
    out = results_path(args)
    if out is not None:
        write_section(out, name, section_text(title, body, runtime_s, extra_packages))
    return out


_FIRST_SECTION = re.compile(r"^<!-- [\w-]+:start -->$", re.MULTILINE)


def write_section(path: Path, name: str, content: str) -> None:
    """Replace this benchmark's section of the results file, under a file lock; the preamble (everything before
    the first section) is rewritten from `PREAMBLE`, the other sections are kept as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        old = f.read()
        first = _FIRST_SECTION.search(old)
        sections = old[first.start() :] if first else ""
        f.seek(0)
        f.truncate()
        f.write(replace_section(PREAMBLE + "\n" + sections, name, content))
    print(f"\nwrote the '{name}' section of {path}")


@contextlib.contextmanager
def step(label: str) -> Iterator[Stopwatch]:
    """Print `label`, time the block, print how long it took (progress on stderr)."""
    print(f"... {label}", end="", file=sys.stderr, flush=True)
    with Stopwatch() as sw:
        yield sw
    print(f" {sw.seconds:.1f} s", file=sys.stderr, flush=True)


# --- stores ---------------------------------------------------------------------------------------------------------
def built_store(
    db: Path, corpus: Sequence[Path], order: int, tokenizer: str = "pretokenized"
) -> tuple[CountStore, int]:
    """A new count store at `db` of the given order and tokenizer, built from the corpus files (`CountStore.build`),
    left open; and the number of tokens it counted. The caller closes the store."""
    from store.countstore import CountStore

    store = CountStore.open(db, order=order, tokenizer=tokenizer, create=True)
    return store, store.build(list(corpus))


def seeded_store(db: Path) -> Path:
    """A new store at `db` seeded from the shipped default model (as a user's first store is); exits with a message
    when the model is missing."""
    from lsp_server.paths import seed_from_default_model

    if not seed_from_default_model(db):
        sys.exit("error: the shipped default model is missing; run python -m lsp_server.default_model")
    return db
