"""Crash safety: kill -9 a writer at random moments, many times, and check the store after each kill.

A writer process learns and forgets made-up documents on one store as fast as it can, logging each operation
before it starts ("begin") and after it commits ("done"). The script kills it with SIGKILL after a random delay,
then checks the store: `PRAGMA integrity_check` passes; the recorded sources are exactly what the logged operations
left (every operation logged "done" is there; the one in flight, if any, is either wholly there or not at all);
and the counts equal a fresh store that learned the recorded texts (regenerated from the writer's seed). The next
writer goes on with the same store.

    python bench/crash.py                 # 100 kills
    python bench/crash.py --quick         # 10 kills, not written to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
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
from bench.reliability import integrity, make_text, rebuilt_snapshot, snapshot_of  # noqa: E402
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


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--writer":
        writer(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="how many times to kill the writer (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 kills, not written to bench/RESULTS.md")
    parser.add_argument("--results", type=Path, default=None, help="results file (default bench/RESULTS.md)")
    args = parser.parse_args()
    kills = 10 if args.quick else args.kills
    with tempfile.TemporaryDirectory(prefix="nextword-crash-") as tmp:
        result = run_crashes(Path(tmp), kills, args.seed)
    body = report(result)
    print(body)
    path = args.results or (None if args.quick else RESULTS)
    if path is not None:
        write_section(path, "crash", section_text("Crash safety: kill -9 a writer", body, result.seconds))
    if result.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
