"""Build the default model that nextword ships: an n-gram store from WikiText-2 train, pruned and xz-compressed.

    python -m lsp_server.default_model            # reads ../shared/corpora or $NEXTWORD_CORPORA

WikiText-2 (Merity et al. 2016, CC BY-SA 3.0) is tokenized in its own way (`@-@` for hyphens, `do n't`, headings
as `= = Title = =`). We undo that, so the text reads as prose, and count it with the same prose tokenizer the editor
uses (case-folded, with a casing table for display). WikiText's `<unk>` stays the unknown word. Pruning drops
rare higher-order n-grams so the compressed file stays under 20 MB.
"""

from __future__ import annotations

import argparse
import lzma
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from lm_core import tokenize
from lm_core.counting import count_ngrams, encode_sentences, prune
from lm_core.vocab import UNK, Vocab
from lsp_server.paths import DEFAULT_MODEL
from store.countstore import CountStore

UNK_MARKER = "Qxunkxq"  # stands for WikiText's <unk> while the prose tokenizer runs
DEFAULT_ORDER = 5
DEFAULT_MIN_COUNTS = (1, 1, 1, 2, 2)  # WikiText-2 valid perplexity 195 (xz 8.8 MB); (1,1,2,2,2) gives 213 (4.5 MB)
MAX_BYTES = 20 * 1024 * 1024

_JOINS = [(" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", ".")]
_CLITIC = re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d)\b", re.IGNORECASE)
_HEADING = re.compile(r"^\s*(=+)\s*(.*?)\s*=+\s*$")


def corpora_dir(given: str | None = None) -> Path:
    """The shared corpora: `given`, else $NEXTWORD_CORPORA, else ../shared/corpora beside the project."""
    if given:
        return Path(given)
    if os.environ.get("NEXTWORD_CORPORA"):
        return Path(os.environ["NEXTWORD_CORPORA"])
    return Path(__file__).resolve().parents[2] / "shared" / "corpora"


def detokenize_wikitext(line: str) -> str:
    """One WikiText line as prose: headings become Markdown headings, WikiText's joins are undone."""
    heading = _HEADING.match(line)
    if heading:
        return "#" * len(heading.group(1)) + " " + heading.group(2)
    text = line.strip()
    for old, new in _JOINS:
        text = text.replace(old, new)
    return _CLITIC.sub(r"\1", text).replace(UNK, UNK_MARKER)


def analyse_wikitext(text: str) -> tuple[list[list[str]], Counter[tuple[str, str]]]:
    """Sentences of normalised tokens (`<unk>` restored) and the casing counts, paragraph by paragraph."""
    marker = UNK_MARKER.casefold()
    sentences: list[list[str]] = []
    casing: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        if not line.strip():
            continue
        for sentence in tokenize.sentences(detokenize_wikitext(line)):
            sentences.append([UNK if t.norm == marker else t.norm for t in sentence])
            for token in sentence[1:]:
                if token.kind == "word" and token.norm != marker:
                    casing[(token.norm, token.surface)] += 1
    return sentences, casing


def build_default_model(
    corpus: Path, output: Path, order: int = DEFAULT_ORDER, min_counts: tuple[int, ...] = DEFAULT_MIN_COUNTS
) -> dict[str, float]:
    """Count, prune, write a base store, compress it to `output`; returns figures for the log."""
    started = time.perf_counter()
    sentences, casing = analyse_wikitext(corpus.read_text(encoding="utf-8"))
    vocab = Vocab()
    tables = prune(count_ngrams(encode_sentences(sentences, vocab), order, vocab), min_counts)
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "default.db"
        with CountStore.open(db_path, order=order, tokenizer="prose", create=True) as store:
            store.add_base(tables, name="WikiText-2 train (CC BY-SA 3.0)", casing=casing)
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.db.execute("PRAGMA journal_mode = DELETE")
            store.db.execute("VACUUM")
        raw_bytes = db_path.stat().st_size
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(db_path, "rb") as src, lzma.open(output, "wb", preset=9 | lzma.PRESET_EXTREME) as dst:
            dst.write(src.read())
    return {
        "tokens": float(sum(len(s) for s in sentences)),
        "ngrams": float(sum(len(t) for t in tables.tables)),
        "db_bytes": float(raw_bytes),
        "xz_bytes": float(output.stat().st_size),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", help="folder with wikitext-2/ (default: $NEXTWORD_CORPORA or ../shared/corpora)")
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER)
    parser.add_argument("--min-counts", default=",".join(map(str, DEFAULT_MIN_COUNTS)), help="per order, e.g. 1,1,2,2")
    parser.add_argument("--output", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    corpus = corpora_dir(args.corpora) / "wikitext-2" / "wiki.train.tokens"
    if not corpus.exists():
        print(f"nextword: error: {corpus} not found; give --corpora or set NEXTWORD_CORPORA", file=sys.stderr)
        return 1
    min_counts = tuple(int(x) for x in args.min_counts.split(","))
    figures = build_default_model(corpus, args.output, args.order, min_counts)
    print(
        f"{args.output}: order {args.order}, min counts {min_counts}, {figures['tokens']:,.0f} tokens, "
        f"{figures['ngrams']:,.0f} n-grams, store {figures['db_bytes'] / 1e6:.1f} MB, "
        f"xz {figures['xz_bytes'] / 1e6:.1f} MB, {figures['seconds']:.1f} s"
    )
    if figures["xz_bytes"] > MAX_BYTES:
        print("nextword: error: the compressed model is over 20 MB; prune harder", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
