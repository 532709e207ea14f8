"""Helpers shared by the reliability scripts (`bench/stress.py`, `bench/crash.py`, `bench/fuzz_server.py`) and their
fast subsets in `tests/test_reliability.py`: made-up prose, snapshots of a store by words, rebuilding a store from
texts, and the check a reader runs on every committed state.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lm_core.counts import ADJUSTED, RAW  # noqa: E402
from store.countstore import CountStore  # noqa: E402

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "ran",
    "on",
    "under",
    "mat",
    "rug",
    "house",
    "garden",
    "river",
    "stone",
    "cloud",
    "music",
    "paper",
    "window",
    "silver",
    "forest",
    "candle",
    "mirror",
    "quickly",
    "slowly",
    "green",
    "red",
    "big",
    "small",
    "old",
    "new",
    "we",
    "they",
    "you",
    "it",
    "is",
    "was",
    "were",
    "has",
    "have",
    "had",
    "and",
    "but",
    "or",
    "then",
    "because",
    "when",
    "after",
    "before",
    "every",
    "morning",
    "evening",
    "night",
    "light",
    "dark",
    "warm",
    "cold",
    "happy",
    "quiet",
    "loud",
    "near",
    "far",
]


def make_text(rng: random.Random, sentences: tuple[int, int] = (1, 8)) -> str:
    """A few made-up prose sentences (capitalised, with punctuation); sometimes several paragraphs."""
    out = []
    for _ in range(rng.randint(*sentences)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 12))]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", ".", ".", "!", "?"]))
        if rng.random() < 0.2:
            out.append("\n\n")
    return " ".join(out).replace(" \n\n ", "\n\n").strip() + "\n"


def snapshot(store: CountStore) -> dict[str, Any]:
    """Everything the tables hold, keyed by words (ids depend on history)."""
    words = store.vocab.words
    tables = store.load_tables()
    ngrams = {
        tuple(words[i] for i in gram): (c, cc)
        for table in tables.tables
        for gram, c, cc in zip(table.grams.tolist(), table.count.tolist(), table.cont.tolist(), strict=True)
    }
    coc = {(n, k): store.stored_count_of_counts(n, k) for n in range(1, store.order + 1) for k in (RAW, ADJUSTED)}
    casing = sorted((words[i], s, n) for i, s, n in store.db.execute("SELECT id, surface, n FROM casing"))
    return {"ngrams": ngrams, "coc": coc, "casing": casing}


def snapshot_of(path: Path) -> dict[str, Any]:
    with CountStore.open(path) as store:
        return snapshot(store)


def rebuilt_snapshot(path: Path, texts: dict[str, str], order: int, tokenizer: str = "prose") -> dict[str, Any]:
    """The snapshot of a fresh store (created at `path`) that learned `texts` (source name -> text)."""
    with CountStore.open(path, order=order, tokenizer=tokenizer, create=True) as store:
        for name in sorted(texts):
            store.learn(name, texts[name])
        return snapshot(store)


def recorded_sources(path: Path) -> dict[str, str | None]:
    """Source name -> the sha256 of the text recorded as learned from it."""
    with CountStore.open(path) as store:
        return {s.name: s.sha256 for s in store.sources()}


def integrity(path: Path) -> list[str]:
    """`PRAGMA integrity_check` rows other than "ok"."""
    db = sqlite3.connect(path)
    try:
        rows = [str(r[0]) for r in db.execute("PRAGMA integrity_check")]
    finally:
        db.close()
    return [] if rows == ["ok"] else rows


def violations(db: sqlite3.Connection, order: int) -> list[str]:
    """What must hold in every committed state of a store without a base model, read in one transaction (so from
    one snapshot): the unigram and the bigram counts both sum to the tokens the sources recorded, as many sentence
    starts as ends, and the stored count-of-counts (raw, every order) match the rows. A half-applied learn or
    forget breaks at least one of them."""
    problems: list[str] = []
    db.execute("BEGIN")
    try:
        tokens = db.execute("SELECT COALESCE(sum(tokens), 0) FROM sources").fetchone()[0]
        unigrams = db.execute("SELECT COALESCE(sum(c), 0) FROM ng1 WHERE w1 <> 1").fetchone()[0]
        starts = db.execute("SELECT COALESCE(sum(c), 0) FROM ng1 WHERE w1 = 1").fetchone()[0]
        ends = db.execute("SELECT COALESCE(sum(c), 0) FROM ng1 WHERE w1 = 2").fetchone()[0]
        if unigrams != tokens:
            problems.append(f"unigram counts sum to {unigrams}, the sources recorded {tokens} tokens")
        if starts != ends:
            problems.append(f"{starts} sentence starts but {ends} sentence ends")
        if order >= 2:
            bigrams = db.execute("SELECT COALESCE(sum(c), 0) FROM ng2").fetchone()[0]
            if bigrams != tokens:
                problems.append(f"bigram counts sum to {bigrams}, the sources recorded {tokens} tokens")
        for n in range(1, order + 1):
            where = "AND w1 <> 1" if n == 1 else ""
            rows = dict(db.execute(f"SELECT c, count(*) FROM ng{n} WHERE c BETWEEN 1 AND 10 {where} GROUP BY c"))
            stored = dict(db.execute("SELECT k, v FROM coc WHERE n = ? AND kind = ?", (n, RAW)))
            if any(stored.get(k, 0) != rows.get(k, 0) for k in range(1, 11)):
                problems.append(f"order-{n} count-of-counts {stored} do not match the rows {rows}")
    finally:
        db.execute("COMMIT")
    return problems
