"""Concurrent writers on one store: processes learning and forgetting through `CountStore`, real `nextword serve`
processes learning on save and forgetting by command, and the `nextword` CLI, all at once, while reader processes
check on every committed state they see that nothing is half applied.

Each store writer owns a few sources and shares a few with every other writer (so learns and forgets of one source
race); the servers and the CLI own theirs. At the end the store must hold exactly the sources each writer last left
(shared ones: one of the texts written to them), its counts must equal a fresh store that learned those texts, and
`nextword doctor` must find nothing. Readers run `bench.reliability.violations` in a loop: the unigram and bigram
sums against the sources' token counts, sentence starts against ends, the count-of-counts against the rows.

    python bench/stress.py                      # 4 writers x 1,000 operations, 2 servers, the CLI, 2 readers
    python bench/stress.py --quick              # a smoke run, not written to bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, Stopwatch, fmt, markdown_table, percentiles, section_text, write_section  # noqa: E402
from bench.reliability import (  # noqa: E402
    make_text,
    rebuilt_snapshot,
    recorded_sources,
    snapshot_of,
    violations,
)
from store.countstore import CountStore  # noqa: E402
from store.errors import UnknownSourceError  # noqa: E402
from store.sources import sha256  # noqa: E402

ORDER = 3
SHARED = ["shared-0", "shared-1"]


@dataclass
class WriterLog:
    """What one writer did: every text it learned per source (by sha256), and the state it last left its own
    sources in (sha256, or None when its last operation forgot the source)."""

    kind: str
    texts: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    final: dict[str, str | None] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    learns: int = 0
    forgets: int = 0

    def plain(self) -> WriterLog:
        self.texts = {k: dict(v) for k, v in self.texts.items()}
        return self


# --- the writers --------------------------------------------------------------------------------------------------
def store_writer(path: str, wid: int, ops: int, seed: int, queue: Any) -> None:
    """A process learning and forgetting through CountStore (what the CLI and each server do underneath); puts its
    log on `queue`, or the traceback of what stopped it (a string), so the parent never waits for a dead writer."""
    try:
        _store_writer(path, wid, ops, seed, queue)
    except BaseException:
        import traceback

        queue.put(f"writer {wid}: {traceback.format_exc()}")
        raise


def _store_writer(path: str, wid: int, ops: int, seed: int, queue: Any) -> None:
    rng = random.Random(seed)
    own = [f"store{wid}-{i}" for i in range(4)]
    log = WriterLog("CountStore")
    with CountStore.open(path) as store:
        for _ in range(ops):
            name = rng.choice(own + SHARED)
            started = time.perf_counter()
            if rng.random() < 0.7:
                text = make_text(rng)
                store.learn(name, text)
                log.texts[name][sha256(text)] = text
                log.learns += 1
                if name in own:
                    log.final[name] = sha256(text)
            else:
                with contextlib.suppress(UnknownSourceError):
                    store.forget(name)
                log.forgets += 1
                if name in own:
                    log.final[name] = None
            log.latencies_ms.append((time.perf_counter() - started) * 1000)
    queue.put(log.plain())


def reader(path: str, stop: Any, queue: Any) -> None:
    """A process checking `violations` on every state it can read until told to stop."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    checks, found = 0, []
    while not stop.is_set():
        problems = violations(db, ORDER)
        checks += 1
        if problems:
            found.extend(problems)
    db.close()
    queue.put({"checks": checks, "violations": found[:20], "count": len(found)})


def server_writer(path: Path, wid: int, ops: int, seed: int, env: dict[str, str], logs: list[WriterLog]) -> None:
    """Drive a real `nextword serve`: edit and save documents (learned on save), forget them by command."""
    from bench.lsp_latency import RawClient

    rng = random.Random(seed)
    log = WriterLog("nextword serve")
    uris = [f"file:///stress/server{wid}-{i}.md" for i in range(3)]
    versions: dict[str, int] = {}
    client = RawClient([sys.executable, "-m", "lsp_server.cli", "serve", "--db", str(path)], env)
    try:
        client.request(
            "initialize",
            {
                "processId": os.getpid(),
                "capabilities": {},
                "rootUri": None,
                "initializationOptions": {"nextword": {"debounceMs": 0}},
            },
        )
        client.notify("initialized", {})
        for _ in range(ops):
            uri = rng.choice(uris)
            started = time.perf_counter()
            if rng.random() < 0.75:
                text = make_text(rng)
                if uri not in versions:
                    versions[uri] = 1
                    item = {"uri": uri, "languageId": "markdown", "version": 1, "text": text}
                    client.notify("textDocument/didOpen", {"textDocument": item})
                else:
                    versions[uri] += 1
                    client.notify(
                        "textDocument/didChange",
                        {"textDocument": {"uri": uri, "version": versions[uri]}, "contentChanges": [{"text": text}]},
                    )
                client.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
                client.request("workspace/executeCommand", {"command": "nextword.statistics", "arguments": []})
                log.texts[uri][sha256(text)] = text
                log.final[uri] = sha256(text)
                log.learns += 1
            else:
                client.request("workspace/executeCommand", {"command": "nextword.forgetDocument", "arguments": [uri]})
                log.final[uri] = None
                log.forgets += 1
            log.latencies_ms.append((time.perf_counter() - started) * 1000)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # learning on save is asynchronous: wait for the last saves to land
            recorded = recorded_sources(path)
            if all(recorded.get(uri) == sha for uri, sha in log.final.items() if sha is not None):
                break
            time.sleep(0.05)
    finally:
        client.close()
    logs.append(log.plain())


def cli_writer(path: Path, folder: Path, ops: int, seed: int, env: dict[str, str], logs: list[WriterLog]) -> None:
    """Run `nextword learn FILE` and `nextword forget FILE` as separate processes."""
    rng = random.Random(seed)
    log = WriterLog("nextword CLI")
    files = [folder / f"cli-{i}.md" for i in range(2)]
    for _ in range(ops):
        file = rng.choice(files)
        name = str(file.resolve())
        started = time.perf_counter()
        if rng.random() < 0.7:
            text = make_text(rng)
            file.write_text(text, encoding="utf-8")
            argv = ["learn", str(file)]
            log.texts[name][sha256(text)] = text
            log.final[name] = sha256(text)
            log.learns += 1
        else:
            argv = ["forget", str(file)]
            log.final[name] = None
            log.forgets += 1
        done = subprocess.run(
            [sys.executable, "-m", "lsp_server.cli", *argv, "--db", str(path)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 and "nothing was learned" not in done.stderr:
            raise RuntimeError(f"nextword {' '.join(argv)} failed: {done.stderr.strip()}")
        log.latencies_ms.append((time.perf_counter() - started) * 1000)
    logs.append(log.plain())


def _writer_log(queue: Any, writers: list[Any], timeout_s: float = 600) -> WriterLog:
    """The next writer process's log; RuntimeError with its traceback when a writer failed, or when none came
    within `timeout_s` while a writer had already died (its log will never come)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            item = queue.get(timeout=1)
        except Exception:  # queue.Empty
            dead = [p.exitcode for p in writers if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"a writer process failed (exit codes {dead}) or sent nothing") from None
            continue
        if isinstance(item, str):
            raise RuntimeError(f"a writer process failed: {item}")
        return item


# --- one run ------------------------------------------------------------------------------------------------------
@dataclass
class StressResult:
    writers: list[WriterLog]
    reader_checks: int
    reader_violations: list[str]
    reader_violation_count: int
    problems: list[str]  # final-state problems (empty when everything holds)
    seconds: float
    sources: int


def run_stress(
    folder: Path,
    procs: int = 4,
    ops: int = 1000,
    readers: int = 2,
    servers: int = 2,
    server_ops: int = 200,
    cli_ops: int = 20,
    seed: int = 0,
) -> StressResult:
    """Run every writer at once on a new store in `folder` and check the end state (see the module's doc)."""
    path = folder / "stress.db"
    CountStore.open(path, order=ORDER, tokenizer="prose", create=True).close()
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "xdg"), "NEXTWORD_DB": str(folder / "unused.db")}
    ctx = mp.get_context("spawn")
    queue, reader_queue, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    with Stopwatch() as sw:
        reader_procs = [ctx.Process(target=reader, args=(str(path), stop, reader_queue)) for _ in range(readers)]
        writer_procs = [
            ctx.Process(target=store_writer, args=(str(path), w, ops, seed * 1000 + w, queue)) for w in range(procs)
        ]
        for p in reader_procs + writer_procs:
            p.start()
        thread_logs: list[WriterLog] = []
        threads = [
            threading.Thread(target=server_writer, args=(path, s, server_ops, seed * 1000 + 100 + s, env, thread_logs))
            for s in range(servers)
        ]
        if cli_ops:
            threads.append(
                threading.Thread(target=cli_writer, args=(path, folder, cli_ops, seed * 1000 + 200, env, thread_logs))
            )
        for t in threads:
            t.start()
        logs = [_writer_log(queue, writer_procs) for _ in writer_procs]
        for p in writer_procs:
            p.join()
        for t in threads:
            t.join()
        stop.set()
        reads = [reader_queue.get() for _ in reader_procs]
        for p in reader_procs:
            p.join()
    logs += thread_logs
    if any(p.exitcode for p in writer_procs):
        raise RuntimeError("a writer process failed")
    if len(logs) != procs + servers + (1 if cli_ops else 0):
        raise RuntimeError("a writer thread failed (see its traceback above)")
    return StressResult(
        writers=logs,
        reader_checks=sum(r["checks"] for r in reads),
        reader_violations=[v for r in reads for v in r["violations"]],
        reader_violation_count=sum(r["count"] for r in reads),
        problems=check_end_state(path, logs, folder),
        seconds=sw.seconds,
        sources=len(recorded_sources(path)),
    )


def check_end_state(path: Path, logs: list[WriterLog], folder: Path) -> list[str]:
    """The recorded sources are what the writers last left; the counts equal a rebuild from those texts; doctor
    finds nothing."""
    from store import doctor

    problems: list[str] = []
    recorded = recorded_sources(path)
    texts: dict[str, dict[str, str]] = defaultdict(dict)
    for log in logs:
        for name, by_sha in log.texts.items():
            texts[name].update(by_sha)
        for name, sha in log.final.items():
            if recorded.get(name) != sha:
                problems.append(f"{name}: recorded {recorded.get(name)}, its writer last left {sha}")
    chosen: dict[str, str] = {}
    for name, sha in recorded.items():
        if sha not in texts.get(name, {}):
            problems.append(f"{name}: recorded a text no writer wrote ({sha})")
        else:
            chosen[name] = texts[name][sha]  # type: ignore[index]
    if snapshot_of(path) != rebuilt_snapshot(folder / "rebuilt.db", chosen, ORDER):
        problems.append("the counts differ from a fresh store that learned the recorded texts")
    report = doctor.diagnose(path)
    problems.extend(f"doctor: {p}" for p in report.problems)
    return problems


# --- the script ---------------------------------------------------------------------------------------------------
def report(result: StressResult, args: argparse.Namespace) -> str:
    rows = []
    by_kind: dict[str, list[WriterLog]] = defaultdict(list)
    for log in result.writers:
        by_kind[log.kind].append(log)
    for kind, logs in by_kind.items():
        latencies = [x for log in logs for x in log.latencies_ms]
        p50, _, p99 = percentiles(latencies)
        rows.append(
            [
                kind,
                fmt(len(logs)),
                fmt(sum(log.learns for log in logs)),
                fmt(sum(log.forgets for log in logs)),
                fmt(p50),
                fmt(p99),
            ]
        )
    table = markdown_table(["writer", "processes", "learns", "forgets", "p50 ms / op", "p99 ms / op"], rows)
    verdict = "yes" if not result.problems else "NO: " + "; ".join(result.problems[:5])
    return (
        f"{args.procs} processes learning and forgetting through `CountStore` ({args.ops:,} operations each, on 4 "
        f"sources of their own and 2 shared by all), {args.servers} `nextword serve` processes learning on save and "
        f"forgetting by command ({args.server_ops:,} operations each), and {args.cli_ops} `nextword learn`/`forget` "
        f"runs, all on one order-{ORDER} prose store at once, with {args.readers} reader processes checking every "
        f"state they read.\n\n{table}\n\n"
        f"| check | result |\n|---|---|\n"
        f"| wall time | {result.seconds:.1f} s |\n"
        f"| reader checks (sums, sentence starts and ends, count-of-counts, each in one read transaction) | "
        f"{result.reader_checks:,} |\n"
        f"| states a reader saw half applied | {result.reader_violation_count} |\n"
        f"| sources at the end | {result.sources} |\n"
        f"| each writer's sources as it last left them; counts == a fresh store of the recorded texts; doctor "
        f"healthy | {verdict} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--procs", type=int, default=4, help="CountStore writer processes (default 4)")
    parser.add_argument("--ops", type=int, default=1000, help="operations per writer process (default 1000)")
    parser.add_argument("--readers", type=int, default=2, help="reader processes (default 2)")
    parser.add_argument("--servers", type=int, default=2, help="nextword serve processes (default 2)")
    parser.add_argument("--server-ops", type=int, default=200, help="operations per server (default 200)")
    parser.add_argument("--cli-ops", type=int, default=20, help="nextword learn/forget runs (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run, not written to bench/RESULTS.md")
    parser.add_argument("--results", type=Path, default=None, help="results file (default bench/RESULTS.md)")
    args = parser.parse_args()
    if args.quick:
        args.ops, args.server_ops, args.cli_ops = 50, 20, 2
    with tempfile.TemporaryDirectory(prefix="nextword-stress-") as tmp:
        result = run_stress(
            Path(tmp), args.procs, args.ops, args.readers, args.servers, args.server_ops, args.cli_ops, args.seed
        )
    body = report(result, args)
    print(body)
    path = args.results or (None if args.quick else RESULTS)
    if path is not None:
        write_section(path, "stress", section_text("Concurrent writers on one store", body, result.seconds))
    if result.problems or result.reader_violation_count:
        sys.exit(1)


if __name__ == "__main__":
    main()
