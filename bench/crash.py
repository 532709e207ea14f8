"""Crash safety: kill -9 a writer at random moments, many times, and check the store after each kill.

A writer process learns and forgets made-up documents on one store as fast as it can, logging each operation
before it starts ("begin") and after it commits ("done"). The script kills it with SIGKILL after a random delay,
then checks the store: `PRAGMA integrity_check` passes; the recorded sources are exactly what the logged operations
left (every operation logged "done" is there; the one in flight, if any, is either wholly there or not at all);
and the counts equal a fresh store that learned the recorded texts (regenerated from the writer's seed). The next
writer goes on with the same store.

Then two more parts. Disk full: a store on a small file system (a tmpfs of a few MB where this process may mount
one, else a file-size limit, RLIMIT_FSIZE, on the child processes) learns ever larger documents through the CLI
until the disk is full; every failure must be one line saying nothing was changed, the store must then pass the
same checks, and a `build` and a first-use seeding on the full disk must leave no file behind. Kill during build:
`nextword build --prune` (a new store written under a temporary name) is killed with SIGKILL at random moments;
the store must then be absent or complete, and the next build must remove the killed builds' temporary files and
give a store equal to an uninterrupted build.

    python bench/crash.py                 # 100 kills, 30 disk-full learns, 10 build kills
    python bench/crash.py --quick         # 10 kills, 8 disk-full learns, 3 build kills; not written to RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, Stopwatch, section_text, write_section  # noqa: E402
from bench.reliability import (  # noqa: E402
    integrity,
    make_text,
    rebuilt_snapshot,
    recorded_sources,
    snapshot_of,
)
from store.countstore import CountStore  # noqa: E402
from store.errors import UnknownSourceError  # noqa: E402
from store.sources import sha256  # noqa: E402

ORDER = 3
NAMES = [f"doc{i}" for i in range(6)]


def operations(seed: int) -> Iterator[tuple[int, str, str, str | None]]:
    """The writer's operations, the same every time for a seed: (index, "learn" or "forget", name, text)."""
    rng = random.Random(seed)
    for i in range(1_000_000):
        name = rng.choice(NAMES)
        if rng.random() < 0.75:
            yield i, "learn", name, make_text(rng, (5, 120))
        else:
            yield i, "forget", name, None


def writer(db: Path, log: Path, seed: int) -> None:
    """Run operations until killed, logging each one before it starts and after it commits."""
    with CountStore.open(db) as store, open(log, "a", encoding="utf-8") as out:
        begin_transaction = store._write

        @contextlib.contextmanager
        def logged() -> Iterator[None]:  # notes when the write transaction has begun (BEGIN IMMEDIATE)
            with begin_transaction():
                out.write("transaction\n")
                out.flush()
                yield

        store._write = logged  # type: ignore[method-assign]
        print("ready", flush=True)
        for i, op, name, text in operations(seed):
            out.write(f"begin {i} {op} {name} {sha256(text) if text is not None else '-'}\n")
            out.flush()
            if text is not None:
                store.learn(name, text)
            else:
                with contextlib.suppress(UnknownSourceError):
                    store.forget(name)
            out.write(f"done {i}\n")
            out.flush()


@dataclass
class CrashResult:
    kills: int = 0
    in_flight: int = 0  # kills that landed between an operation's "begin" and its "done"
    in_transaction: int = 0  # ... and after its write transaction had begun (BEGIN IMMEDIATE)
    in_flight_committed: int = 0  # ... whose transaction had committed all the same
    operations_done: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    check_seconds: float = 0.0


def replay(log: Path, state: dict[str, str]) -> tuple[dict[str, str], tuple[str, str, str] | None, bool]:
    """The sources after the log's completed operations, the operation in flight when the writer died, and whether
    its write transaction had begun."""
    state = dict(state)
    begun: tuple[str, str, str] | None = None
    in_transaction = False
    for line in log.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts[0] == "begin":
            begun, in_transaction = (parts[2], parts[3], parts[4]), False
        elif parts[0] == "transaction":
            in_transaction = True
        elif parts[0] == "done" and begun is not None:
            state = apply(state, begun)
            begun, in_transaction = None, False
    return state, begun, in_transaction


def apply(state: dict[str, str], operation: tuple[str, str, str]) -> dict[str, str]:
    op, name, sha = operation
    state = dict(state)
    if op == "learn":
        state[name] = sha
    else:
        state.pop(name, None)
    return state


def run_crashes(folder: Path, kills: int, seed: int = 0, max_delay: float = 0.4) -> CrashResult:
    """`kills` rounds of: start a writer, kill -9 it after a random delay, check the store."""
    db = folder / "crash.db"
    CountStore.open(db, order=ORDER, tokenizer="prose", create=True).close()
    rng = random.Random(seed)
    result = CrashResult()
    state: dict[str, str] = {}
    texts: dict[str, str] = {}  # sha256 -> text, over every writer so far
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Stopwatch() as total:
        for round_ in range(kills):
            log = folder / f"writer{round_}.log"
            writer_seed = seed * 100_000 + round_
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--writer", str(db), str(log), str(writer_seed)],
                stdout=subprocess.PIPE,
                env=env,
                cwd=ROOT,
            )
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                proc.kill()
                raise RuntimeError("the writer did not start")
            time.sleep(rng.uniform(0.0, max_delay))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            result.kills += 1
            with Stopwatch() as check:
                state = check_after_kill(db, log, writer_seed, state, texts, folder, result)
            result.check_seconds += check.seconds
    result.seconds = total.seconds
    return result


def check_after_kill(
    db: Path,
    log: Path,
    seed: int,
    state: dict[str, str],
    texts: dict[str, str],
    folder: Path,
    result: CrashResult,
) -> dict[str, str]:
    """Check the store after a kill; returns the sources it now holds (name -> sha256)."""
    done, in_flight, in_transaction = replay(log, state)
    result.in_transaction += in_transaction
    result.operations_done += sum(1 for line in log.read_text().splitlines() if line.startswith("done"))
    begun = [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("begin")]
    for i, _op, _name, text in operations(seed):  # the writer's texts, regenerated from its seed
        if i > max(begun, default=-1):
            break
        if text is not None:
            texts[sha256(text)] = text
    rows = integrity(db)
    if rows:
        result.problems.append(f"kill {result.kills}: integrity_check: {rows[:3]}")
        return done
    with CountStore.open(db) as store:
        recorded = {s.name: s.sha256 or "" for s in store.sources()}
    if in_flight is not None:
        result.in_flight += 1
    if recorded == done:
        now = done
    elif in_flight is not None and recorded == apply(done, in_flight):
        now = recorded
        result.in_flight_committed += 1
    else:
        result.problems.append(f"kill {result.kills}: sources {recorded} but the log says {done} (+ {in_flight})")
        return recorded
    missing = [sha for sha in now.values() if sha not in texts]
    if missing:
        result.problems.append(f"kill {result.kills}: no text known for {missing}")
        return now
    fresh = folder / f"rebuilt{result.kills}.db"
    if snapshot_of(db) != rebuilt_snapshot(fresh, {name: texts[sha] for name, sha in now.items()}, ORDER):
        result.problems.append(f"kill {result.kills}: the counts differ from a rebuild of the recorded sources")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    return now


def report(result: CrashResult) -> str:
    verdict = "all" if not result.problems else f"NOT all: {'; '.join(result.problems[:5])}"
    return (
        f"A writer learning and forgetting made-up documents (5-120 sentences) on one order-{ORDER} prose store, "
        f"killed with SIGKILL after a random 0-0.4 s, {result.kills} times; after each kill the store is checked "
        f"before the next writer goes on with it.\n\n"
        f"| measure | value |\n|---|---|\n"
        f"| kills | {result.kills} |\n"
        f"| operations committed before the kills, in all | {result.operations_done:,} |\n"
        f"| kills during an operation (between its begin and done log lines) | {result.in_flight} |\n"
        f"| ... of which inside its write transaction (after BEGIN IMMEDIATE) | {result.in_transaction} |\n"
        f"| ... of which the operation had committed all the same (else it was wholly absent) | "
        f"{result.in_flight_committed} |\n"
        f"| kills after which `integrity_check` passed, the sources were exactly the logged ones, and the counts "
        f"equalled a rebuild from them | {verdict} |\n"
        f"| wall time (checks) | {result.seconds:.1f} s ({result.check_seconds:.1f} s) |\n"
    )


# --- disk full ------------------------------------------------------------------------------------------------------
CLI = [sys.executable, "-m", "lsp_server.cli"]


@contextlib.contextmanager
def small_filesystem(folder: Path, megabytes: int) -> Iterator[tuple[Path, int | None, str]]:
    """(a folder on a file system of `megabytes`, or a plain folder and a per-file size limit for the children, and
    what it is in words)."""
    mount = folder / "small"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(mount)]
    made = subprocess.run(command, capture_output=True)
    if made.returncode == 0:
        try:
            yield mount, None, f"a {megabytes} MB tmpfs"
        finally:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    else:
        yield mount, megabytes * 1_000_000, f"RLIMIT_FSIZE {megabytes} MB per file (no tmpfs could be mounted)"


def run_cli(
    args: list[str], cwd: Path, limit: int | None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    def limited() -> None:
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = env or {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, preexec_fn=limited)


def unique_words_text(rng: random.Random, words: int) -> str:
    """Prose of made-up words that rarely repeat (so the store grows with every document)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    made = ("".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(words))
    sentences, sentence = [], []
    for word in made:
        sentence.append(word)
        if len(sentence) >= rng.randint(5, 15):
            sentences.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    return " ".join(sentences) + "\n"


@dataclass
class DiskFullResult:
    where: str = ""
    attempts: int = 0
    learned: int = 0
    full: int = 0  # learns refused for want of space, with one line saying nothing was changed
    problems: list[str] = field(default_factory=list)
    build_left: list[str] = field(default_factory=list)
    seed_left: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_disk_full(folder: Path, attempts: int, seed: int = 0, megabytes: int = 6) -> DiskFullResult:
    rng = random.Random(seed)
    result = DiskFullResult()
    with Stopwatch() as sw, small_filesystem(folder, megabytes) as (small, limit, where):
        result.where = where
        texts: dict[str, str] = {}
        for i in range(attempts):
            name = f"doc{i % 12}.txt"
            text = unique_words_text(rng, rng.randint(1_000, 10_000))
            (folder / name).write_text(text)  # the documents live outside the small file system
            answer = run_cli(["learn", "--db", str(small / "s.db"), str(folder / name)], small, limit)
            result.attempts += 1
            if answer.returncode == 0:
                result.learned += 1
                texts[str(folder / name)] = text
            elif "nothing was changed" in answer.stderr and answer.stderr.count("\n") == 1:
                result.full += 1
            else:
                result.problems.append(f"learn {i}: {answer.stderr.strip()[:200]}")
            if not (small / "s.db").exists():
                continue
            rows = integrity(small / "s.db")
            recorded = {n: sha for n, sha in recorded_sources(small / "s.db").items()}
            expected = {n: sha256(t) for n, t in texts.items()}
            if rows or recorded != expected:
                result.problems.append(f"learn {i}: integrity {rows[:2]}, sources {len(recorded)} vs {len(expected)}")
                texts = {n: t for n, t in texts.items() if n in recorded}
        if texts:
            rebuilt = folder / "rebuilt.db"
            if snapshot_of(small / "s.db") != rebuilt_snapshot(rebuilt, texts, 5):
                result.problems.append("after the disk filled, the counts differ from a rebuild of the sources")
        # a new store, and a first-use seeding, on the full disk
        big = folder / "big.txt"
        big.write_text(unique_words_text(rng, 200_000))
        build = run_cli(["build", "--db", str(small / "new.db"), str(big)], small, limit)
        if build.returncode == 0:
            result.problems.append("a build on the full disk succeeded (the disk was not full?)")
        result.build_left = sorted(p.name for p in small.iterdir() if p.name.startswith(("new.db", ".new.db")))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(small / "xdg")}
        env.pop("NEXTWORD_DB", None)
        seeded = run_cli(["complete", "the"], small, limit, env)
        if seeded.returncode == 0:
            result.problems.append("seeding on the full disk succeeded (the disk was not full?)")
        result.seed_left = sorted(str(p.relative_to(small)) for p in (small / "xdg").rglob("*") if p.is_file())
    result.seconds = sw.seconds
    return result


# --- kill during build ------------------------------------------------------------------------------------------------
@dataclass
class BuildKillResult:
    kills: int = 0
    store_absent: int = 0
    store_complete: int = 0
    leftovers_before: int = 0  # temporary files the killed builds left
    leftovers_after: int = 0  # ... still there after the next build
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_build_kills(folder: Path, kills: int, seed: int = 0) -> BuildKillResult:
    rng = random.Random(seed)
    result = BuildKillResult()
    corpus = folder / "corpus.txt"
    corpus.write_text(unique_words_text(rng, 150_000))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    build = ["build", "--prune", "1,1,2", "--order", "3", str(corpus)]
    with Stopwatch() as sw:
        reference = folder / "reference.db"
        started = time.perf_counter()
        if run_cli([*build[:1], "--db", str(reference), *build[1:]], folder, None).returncode != 0:
            raise RuntimeError("the reference build failed")
        full_time = time.perf_counter() - started
        truth = snapshot_of(reference)
        for k in range(kills):
            db = folder / f"killed{k}.db"
            proc = subprocess.Popen(
                [*CLI, build[0], "--db", str(db), *build[1:]],
                cwd=folder,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(0.3, full_time))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            result.kills += 1
            temps = list(folder.glob(f".{db.name}.*.building*"))
            result.leftovers_before += len(temps)
            if db.exists():
                if integrity(db) or snapshot_of(db) != truth:
                    result.problems.append(f"kill {k}: a store at the path that is not the complete build")
                result.store_complete += 1
                continue
            result.store_absent += 1
            again = run_cli([build[0], "--db", str(db), *build[1:]], folder, None)
            if again.returncode != 0 or snapshot_of(db) != truth:
                result.problems.append(f"kill {k}: the next build failed or differs: {again.stderr.strip()[:200]}")
            result.leftovers_after += len(list(folder.glob(f".{db.name}.*.building*")))
    result.seconds = sw.seconds
    return result


def report_disk_full(d: DiskFullResult, b: BuildKillResult) -> str:
    verdict = "yes" if not d.problems else "NO: " + "; ".join(d.problems[:3])
    build_verdict = "yes" if not b.problems else "NO: " + "; ".join(b.problems[:3])
    return (
        f"### Disk full ({d.where})\n\n"
        "| measure | value |\n|---|---|\n"
        f"| learns of made-up documents (1,000-10,000 new words) | {d.attempts} |\n"
        f"| ... learned | {d.learned} |\n"
        f"| ... refused in one line saying nothing was changed | {d.full} |\n"
        "| after each: integrity_check passed and the sources were exactly those learned; at the end the counts "
        f"equalled a rebuild from them | {verdict} |\n"
        f"| files a `build` of a new store on the full disk left | {', '.join(d.build_left) or 'none'} |\n"
        f"| files a first-use seeding on the full disk left | {', '.join(d.seed_left) or 'none'} |\n"
        f"| wall time | {d.seconds:.1f} s |\n\n"
        "### Kill -9 during `build --prune`\n\n"
        "| measure | value |\n|---|---|\n"
        f"| kills at a random moment of the build | {b.kills} |\n"
        "| ... after which no store was at the path / the complete store was | "
        f"{b.store_absent} / {b.store_complete} |\n"
        "| temporary `.building` files the killed builds left / still there after the next build | "
        f"{b.leftovers_before} / {b.leftovers_after} |\n"
        f"| the next build gave a store equal to an uninterrupted build | {build_verdict} |\n"
        f"| wall time | {b.seconds:.1f} s |\n"
    )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--writer":
        writer(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="how many times to kill the writer (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--disk-full", type=int, default=30, help="learns on the small file system (default 30)")
    parser.add_argument("--build-kills", type=int, default=10, help="builds to kill (default 10)")
    parser.add_argument("--quick", action="store_true", help="10 kills, not written to bench/RESULTS.md")
    parser.add_argument("--results", type=Path, default=None, help="results file (default bench/RESULTS.md)")
    args = parser.parse_args()
    kills = 10 if args.quick else args.kills
    with tempfile.TemporaryDirectory(prefix="nextword-crash-") as tmp:
        result = run_crashes(Path(tmp), kills, args.seed)
    with tempfile.TemporaryDirectory(prefix="nextword-crash-") as tmp:
        disk = run_disk_full(Path(tmp), 8 if args.quick else args.disk_full, args.seed)
    with tempfile.TemporaryDirectory(prefix="nextword-crash-") as tmp:
        builds = run_build_kills(Path(tmp), 3 if args.quick else args.build_kills, args.seed)
    result.problems += disk.problems + builds.problems
    body = report(result) + "\n" + report_disk_full(disk, builds)
    print(body)
    path = args.results or (None if args.quick else RESULTS)
    if path is not None:
        write_section(
            path,
            "crash",
            section_text(
                "Crash safety: kill -9 a writer, a full disk, kill -9 a build",
                body,
                result.seconds + disk.seconds + builds.seconds,
            ),
        )
    if result.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
