"""Learning and scoring a large file: read in pieces (`store.streaming`, what `nextword learn` and `score` do) against
reading the whole text at once (`sources.read_text_file` + `CountStore.learn` / `Engine.score`, the reference, in
the same run). Each job runs in a fresh process that reports its own wall time and peak RSS.

The input is Project Gutenberg text from the corpora, repeated to the size asked (50 MB by default), in two shapes:
as written (lines and paragraphs) and as one line (the shape issue 15 found at 4 GB and 60 s). Scoring uses a
store learned from the first megabyte of the same text.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    base_parser,
    corpora_dir,
    fmt,
    machine,
    markdown_table,
    peak_rss_bytes,
    require_files,
    results_path,
    run_child,
    section_text,
    write_section,
)

SECTION = "large-input"
SOURCES = ["gutenberg/austen-emma.txt", "gutenberg/bible-kjv.txt", "gutenberg/carroll-alice.txt"]


def make_input(corpora: Path, size: int, one_line: bool, out: Path) -> Path:
    """About `size` bytes of the corpora's text, repeated; with `one_line`, newlines become spaces."""
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in require_files(corpora, SOURCES))
    if one_line:
        text = " ".join(text.split())
    data = text.encode("utf-8")
    with out.open("wb") as f:
        written = 0
        while written < size:
            part = data[: size - written]
            part = part[: len(part.decode("utf-8", "ignore").encode("utf-8"))]  # whole characters only
            f.write(part + (b" " if one_line else b"\n\n"))
            written += len(part) + (1 if one_line else 2)
    return out


def child(mode: str, file: Path, db: Path) -> None:
    """One job in this process; prints {"seconds": ..., "peak_rss": ..., "tokens": ..., "perplexity": ...}."""
    from store import sources
    from store.countstore import CountStore

    start = time.perf_counter()
    perplexity = math.nan
    if mode in ("learn-whole", "learn-streamed"):
        with CountStore.open(db, order=3, create=True) as store:
            if mode == "learn-whole":
                text = sources.read_text_file(file, 1 << 62)
                result = store.learn(str(file), text, kind="file")
            else:
                from store.streaming import read_document

                document = read_document(file, store.tokenizer, max_bytes=1 << 62)
                result = store.learn_analysed(str(file), document.analysed, document.sha256, kind="file")
            tokens = result.tokens
    else:
        from lsp_server.engine import Engine

        engine = Engine.open(db)
        if mode == "score-whole":
            text = sources.read_text_file(file, 1 << 62)
            scored = engine.score(text)
            sorted(scored.words, key=lambda w: -w.surprisal)[:10]
            tokens, perplexity = scored.tokens, scored.perplexity
        else:
            import os

            from lsp_server.large_inputs import score_file

            os.environ["NEXTWORD_MAX_DOCUMENT_MB"] = "1e9"
            result = score_file(engine, file, 10)
            tokens, perplexity = result.tokens, result.perplexity
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss": peak_rss_bytes(), "tokens": tokens, "perplexity": perplexity}))


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50.0, help="input size in MB (10^6 bytes) [default: 50]")
    parser.add_argument("--score-mb", type=float, default=2.0, help="size scored, in MB [default: 2]")
    parser.add_argument("--shapes", default="one line,as written", help="which shapes, comma-separated [default: both]")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "FILE", "DB"), help=argparse_hidden())
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    if args.quick:
        args.mb, args.score_mb = 5.0, 1.0
    corpora = corpora_dir(args.corpora)
    print(f"machine: {machine()}", flush=True)
    began = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shapes = [s.strip() for s in args.shapes.split(",")]
        for shape, one_line in (s for s in (("one line", True), ("as written", False)) if s[0] in shapes):
            learn_input = make_input(corpora, int(args.mb * 1e6), one_line, work / f"learn-{one_line}.txt")
            score_input = make_input(corpora, int(args.score_mb * 1e6), one_line, work / f"score-{one_line}.txt")
            seed = make_input(corpora, 1_000_000, one_line, work / f"seed-{one_line}.txt")
            scoring_db = work / f"scoring-{one_line}.db"
            run_child([__file__, "--child", "learn-streamed", str(seed), str(scoring_db)])
            for task, file, size in (("learn", learn_input, args.mb), ("score", score_input, args.score_mb)):
                measured = {}
                for way in ("whole", "streamed"):
                    db = scoring_db if task == "score" else work / f"{task}-{way}-{one_line}.db"
                    print(f"... {task} {size:g} MB {shape}, {way}", file=sys.stderr, flush=True)
                    measured[way] = run_child([__file__, "--child", f"{task}-{way}", str(file), str(db)])
                whole, streamed = measured["whole"], measured["streamed"]
                assert whole["tokens"] == streamed["tokens"], (whole, streamed)
                rows.append(
                    [
                        f"{task} {size:g} MB, {shape}",
                        fmt(int(whole["tokens"])),
                        fmt(whole["seconds"], 1),
                        fmt(streamed["seconds"], 1),
                        fmt(streamed["seconds"] / whole["seconds"]),
                        fmt(whole["peak_rss"] / 2**20, 0),
                        fmt(streamed["peak_rss"] / 2**20, 0),
                        fmt(streamed["peak_rss"] / whole["peak_rss"]),
                        "equal"
                        if whole["perplexity"] == streamed["perplexity"] or task == "learn"
                        else f"{whole['perplexity']:.6f} / {streamed['perplexity']:.6f}",
                    ]
                )
    header = [
        "job",
        "tokens",
        "whole text s",
        "in pieces s",
        "pieces / whole (time)",
        "whole text peak RSS MiB",
        "in pieces peak RSS MiB",
        "pieces / whole (RSS)",
        "perplexity",
    ]
    table = markdown_table(header, rows)
    print(table)
    runtime = time.perf_counter() - began
    body = (
        f"{table}\n\n"
        "Whole text: the file read at once (`sources.read_text_file`), then `CountStore.learn` (a 3-gram store) or "
        "`Engine.score` with the 10 most surprising words sorted out of every word's score. In pieces: "
        "`store.streaming.read_document` + `CountStore.learn_analysed`, or `lsp_server.large_inputs.score_file` (what "
        "`nextword learn` and `nextword score` run). Both give the same tokens and counts (`tests/test_streaming.py` "
        "checks that they are equal). Each job in a fresh process; peak RSS is the process's VmHWM. Times are "
        "wall-clock on a shared machine: compare the ratios."
    )
    out = results_path(args)
    if out is not None:
        write_section(out, SECTION, section_text("Large inputs (`bench/large_input.py`)", body, runtime))


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
