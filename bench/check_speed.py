"""How fast a document is checked: a cold check of ~5,000 words, the re-check after a one-word edit, and
`nextword eval` of WikiText-2 test, with the n-gram model and with the blend (the shipped LSTM).

A check (`Engine.check`: the perplexity and the odd words of every sentence) runs on a freshly opened copy of the
shipped model (the count caches empty; lemminflect's tables and the oddity vocabulary built first and then frozen
out of the garbage collector's reach, as the server does at its start), on WikiText-2 test paragraphs (detokenized,
without `<unk>`) as one document; then one word is inserted in the middle and the document checked again (only the
changed sentence is scored again). Each figure is the median of `--runs` runs, each in a process of its own; CPU
seconds (this process's, `time.process_time`) are shown beside the wall-clock ones, since the machine is shared and
waits for a core inflate the wall clock.

References in the same run: the check for confusion sets and doubled words only (what nextword looked for before
issue 13), and, with `--baseline DIR`, another source tree of nextword (e.g. `git worktree add /tmp/base main`)
measured the same way, each row beside its twin from that tree as a ratio.

`eval`: `nextword eval wiki.test.tokens` (the blend's weights fit by EM on the first half, every perplexity on the
second) with `--neural default` and, as the reference, without it (the n-gram model alone), on a copy of the same
store.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import base_parser, corpora_dir, fmt, markdown_table, publish, require_files, seeded_store, step  # noqa: E402

SECTION = "check-speed"
WORDS = 5_000
EDIT_WORD = "very"

CHILD = r"""
import gc, json, math, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from lm_core import corrections
from lm_core.oddities import OddityConfig
from lsp_server.engine import Engine
from lsp_server.paths import DEFAULT_NEURAL_MODEL

db, document_file, setup = Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
document = document_file.read_text(encoding="utf-8")
cut = document.index(" ", len(document) // 2)
edited = document[:cut] + " EDIT_WORD" + document[cut:]
config = OddityConfig(kinds=frozenset({"confusion", "doubled"})) if setup == "reference" else OddityConfig()
corrections.warm()
engine = Engine.open(db)
if setup == "blend":
    engine.attach_neural(DEFAULT_NEURAL_MODEL)
engine.oddity_vocabulary()
gc.freeze()  # as the server, once its tables are loaded (`_settle`, `_warm_oddities`)
wall, cpu = time.perf_counter(), time.process_time()
checked = engine.check(document, config)
cold, cold_cpu = time.perf_counter() - wall, time.process_time() - cpu
wall, cpu = time.perf_counter(), time.process_time()
engine.check(edited, config)
edit, edit_cpu = time.perf_counter() - wall, time.process_time() - cpu
engine.close()
print(json.dumps({"cold": cold, "cold_cpu": cold_cpu, "edit": edit, "edit_cpu": edit_cpu,
                  "flags": len(checked.oddities), "perplexity": checked.perplexity}))
""".replace("EDIT_WORD", EDIT_WORD)

SETUPS = (
    ("reference", "n-gram, confusion sets and doubled words only (reference)"),
    ("ngram", "n-gram, all kinds"),
    ("blend", "blend (shipped LSTM), all kinds"),
)


def document_text(corpora: Path, words: int) -> str:
    """About `words` words of clean WikiText-2 test paragraphs, as `bench/evaluation.py` checks them."""
    from bench.evaluation import clean_paragraphs, document_of

    return document_of(clean_paragraphs(corpora, words)["WikiText-2 test"], words)


def fresh_copy(template: Path, work: Path) -> Path:
    """A copy of the store `template` (its WAL and shared-memory files left behind): opened cold."""
    db = work / "check.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(template, db)
    return db


def check_once(tree: Path, template: Path, work: Path, document: Path, setup: str) -> dict[str, float]:
    """One cold check and one re-check in a process of its own, with the code of `tree`."""
    db = fresh_copy(template, work)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(db), str(document), setup],
        capture_output=True, text=True, cwd=tree, env=env, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        sys.exit(f"error: the check in {tree} failed:\n{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def eval_once(tree: Path, template: Path, work: Path, test: Path, neural: bool) -> tuple[float, str]:
    """Wall seconds of `nextword eval` of `test` with the code of `tree` (with the shipped LSTM or without), and
    its perplexity lines."""
    db = fresh_copy(template, work)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-m", "lsp_server.cli", "eval", str(test), "--db", str(db)]
    argv += ["--neural", "default"] if neural else []
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=tree, env=env, check=False)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"error: nextword eval in {tree} failed:\n{out.stderr.strip()[-2000:]}")
    lines = [line.strip() for line in out.stdout.splitlines() if line.strip().startswith(("n-gram", "neural", "blend"))]
    return seconds, "; ".join(" ".join(line.split()) for line in lines)


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--runs", type=int, default=3, help="runs of each check (median; default 3)")
    parser.add_argument("--baseline", type=Path, default=None, help="another nextword source tree, measured alike")
    parser.add_argument("--no-eval", action="store_true", help="leave out `nextword eval` of WikiText-2 test")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    corpora = corpora_dir(args.corpora)
    (test,) = require_files(corpora, ["wikitext-2/wiki.test.tokens"])
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nextword-bench-check-") as tmp:
        work = Path(tmp)
        template = seeded_store(work / "template.db")
        document = work / "document.txt"
        text = document_text(corpora, 1_000 if args.quick else WORDS)
        document.write_text(text, encoding="utf-8")
        measured: dict[tuple[str, str], list[dict[str, float]]] = {}
        for run in range(runs):
            for setup, _ in SETUPS:
                for name, tree in trees:
                    with step(f"run {run + 1}/{runs}: {setup}, {name}"):
                        measured.setdefault((name, setup), []).append(check_once(tree, template, work, document, setup))
        evals = []
        if not args.no_eval:
            for name, tree in trees:
                for neural in (False, True):
                    with step(f"nextword eval of WikiText-2 test, {name}, {'blend' if neural else 'n-gram'}"):
                        evals.append((name, neural, *eval_once(tree, template, work, test, neural)))
    rows = []
    for setup, label in SETUPS:
        for name, _ in trees:
            results = measured[(name, setup)]
            cold = statistics.median(r["cold"] for r in results)
            twin = statistics.median(r["cold"] for r in measured[("baseline", setup)]) if args.baseline else None
            rows.append([
                label, name, fmt(len(text.split())), fmt(results[0]["flags"]), f"{results[0]['perplexity']:.2f}",
                fmt(1000 * cold, 0), fmt(1000 * statistics.median(r["cold_cpu"] for r in results), 0),
                f"{cold / twin:.2f}x" if twin else "-",
                fmt(1000 * statistics.median(r["edit"] for r in results), 1),
                fmt(1000 * statistics.median(r["edit_cpu"] for r in results), 1),
            ])  # fmt: skip
    header = ["Check", "code", "words", "flags", "perplexity", "cold ms", "cold CPU ms", "cold / baseline",
              "after a one-word edit ms", "edit CPU ms"]  # fmt: skip
    body = [
        f"`Engine.check` of {len(text.split()):,} words of WikiText-2 test paragraphs as one document, on a freshly "
        f"opened copy of the shipped model, then again after '{EDIT_WORD}' was inserted in the middle; median of "
        f"{runs} run(s), each in a process of its own. The machine is shared (2 cores): CPU ms are this process's "
        "own time, the wall-clock ms include waits for a core.",
        "",
        markdown_table(header, rows),
    ]
    if evals:
        eval_rows = [
            [name, "n-gram + shipped LSTM (--neural default)" if neural else "n-gram alone (reference)",
             fmt(seconds, 1), lines]
            for name, neural, seconds, lines in evals
        ]  # fmt: skip
        body += [
            "",
            f"`nextword eval {test.name}` (EM on the first half, perplexity on the second), wall-clock:",
            "",
            markdown_table(["code", "models", "seconds", "perplexities"], eval_rows),
        ]
    text_out = "\n".join(body)
    print(text_out)
    publish(args, SECTION, "Check speed: a cold check, a re-check, eval with the blend", text_out,
            time.perf_counter() - started)  # fmt: skip


if __name__ == "__main__":
    main()
