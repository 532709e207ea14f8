"""Build the default models that nextword ships: an n-gram store from WikiText-2 train, pruned and gzip-compressed,
and a small neural model (an LSTM) trained on the same text with the same tokens.

    python -m lsp_server.default_model            # the n-gram store; reads ../shared/corpora or $NEXTWORD_CORPORA
    python -m lsp_server.default_model --neural   # the neural model (about --minutes of training on 2 CPU cores)

WikiText-2 (Merity et al. 2016, CC BY-SA 3.0) is tokenized in its own way (`@-@` for hyphens, `do n't`, headings
as `= = Title = =`). We undo that, so the text reads as prose, and count it with the same prose tokenizer the editor
uses (case-folded, with a casing table for display). WikiText's `<unk>` stays the unknown word. Pruning drops
rare higher-order n-grams so the compressed file stays under 20 MB.

The neural model reads the very tokens the store counts (so the two blend word for word): a 2 x 200 LSTM with tied
word vectors over the NEURAL_VOCAB commonest words (the rest is `<unk>`, whose mass the blend shares among the
store's other words), trained on train and early-stopped on valid; its blend weight is fit by EM on valid against
the shipped n-gram store, and it is saved in half precision (under 15 MB).
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from lm_core import tokenize
from lm_core.counting import DEFAULT_ORDER, CountTables, count_ngrams, encode_sentences, prune
from lm_core.inference import NeuralConfig, NeuralLM
from lm_core.vocab import UNK, Vocab
from lsp_server.paths import DEFAULT_BASE_NAME, DEFAULT_MODEL, DEFAULT_NEURAL_MODEL
from store.countstore import CountStore

UNK_MARKER = "Qxunkxq"  # stands for WikiText's <unk> while the prose tokenizer runs
DEFAULT_MIN_COUNTS = (1, 1, 1, 2, 2)  # WikiText-2 valid perplexity 195 (gzip 13.9 MB, xz 8.8); (1,1,2,2,2) gives 213
MAX_BYTES = 20 * 1024 * 1024  # the compressed store shipped in the package stays under this (pruning sees to it)
NEURAL_VOCAB = 20_000  # words the neural model knows (with <unk> <s> </s>)
NEURAL_MAX_BYTES = 15 * 1024 * 1024  # the shipped neural model stays under this (a smaller NEURAL_VOCAB sees to it)
NEURAL_EPOCHS = 40  # at most; early stopping on valid or the time budget ends training first
NEURAL_MINUTES = 78.0  # the training budget: the shipped model trained 78 minutes on 2 CPU cores (the best of 6 epochs:
# the 5th: valid perplexity 114 in training, where the 25-minute budget before gave 145)
NEURAL_THREADS = 2  # torch CPU threads: the 2 cores of the machine the shipped model was built on
NEURAL_LOG_EVERY = 200  # steps between progress lines (an epoch of WikiText-2 is about 3,000 steps)
EM_TOKENS = 30_000  # validation tokens the blend weight is fit on
NEURAL_SHAPE = NeuralConfig(
    cell="lstm", vocab_size=NEURAL_VOCAB, embed_dim=200, hidden_dim=200, layers=2, dropout=0.25, tie_weights=True
)

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


def valid_perplexity(tables: CountTables, valid: Path) -> float:
    """Perplexity (per token, sentence ends counted) of the Kneser-Ney model of `tables` on WikiText-2 valid read
    as prose, as the store gives it (the same counts, hidden mass and discounts)."""
    from lm_core.metrics import perplexity_of_scores, score_tokens
    from lm_core.ngram import NgramModel

    sentences, _ = analyse_wikitext(valid.read_text(encoding="utf-8"))
    tokens = [t for sentence in sentences for t in sentence]
    return perplexity_of_scores([s.logprob for s in score_tokens(NgramModel(tables), tokens)])


def build_default_model(
    corpus: Path,
    output: Path,
    order: int = DEFAULT_ORDER,
    min_counts: tuple[int, ...] = DEFAULT_MIN_COUNTS,
    valid: Path | None = None,
) -> dict[str, float]:
    """Count, prune, write a base store, compress it to `output`; returns figures for the log (with `valid`, the
    model's perplexity on that WikiText file too)."""
    started = time.perf_counter()
    sentences, casing = analyse_wikitext(corpus.read_text(encoding="utf-8"))
    vocab = Vocab()
    tables = prune(count_ngrams(encode_sentences(sentences, vocab), order, vocab), min_counts)
    perplexity = valid_perplexity(tables, valid) if valid is not None else math.nan
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "default.db"
        with CountStore.open(db_path, order=order, tokenizer="prose", create=True) as store:
            store.add_base(tables, name=DEFAULT_BASE_NAME, casing=casing)
            store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            store.db.execute("PRAGMA journal_mode = DELETE")
            store.db.execute("VACUUM")
        raw_bytes = db_path.stat().st_size
        output.parent.mkdir(parents=True, exist_ok=True)
        with (  # no name or time inside: the same bytes from the same store
            open(db_path, "rb") as src,
            open(output, "wb") as out,
            gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=out, mtime=0) as dst,
        ):
            dst.write(src.read())
    return {
        "tokens": float(sum(len(s) for s in sentences)),
        "ngrams": float(sum(len(t) for t in tables.tables)),
        "db_bytes": float(raw_bytes),
        "compressed_bytes": float(output.stat().st_size),
        "valid_perplexity": perplexity,
        "seconds": time.perf_counter() - started,
    }


def build_default_neural(
    corpora: Path,
    output: Path,
    ngram_store: Path = DEFAULT_MODEL,
    minutes: float = NEURAL_MINUTES,
    threads: int = NEURAL_THREADS,
) -> dict[str, float]:
    """Train the shipped neural model on WikiText-2 train (prose tokens, as the store counts them), fit its blend
    weight by EM on valid against the shipped n-gram store, and save it (half precision) to `output`."""
    import torch

    from lm_core import neural, training
    from lsp_server.cli import print_progress

    started = time.perf_counter()
    torch.set_num_threads(threads)
    train_sentences, _ = analyse_wikitext((corpora / "wikitext-2" / "wiki.train.tokens").read_text(encoding="utf-8"))
    valid_sentences, _ = analyse_wikitext((corpora / "wikitext-2" / "wiki.valid.tokens").read_text(encoding="utf-8"))
    config = training.TrainConfig(epochs=NEURAL_EPOCHS, max_minutes=minutes, log_every=NEURAL_LOG_EVERY)
    with tempfile.TemporaryDirectory() as tmp:
        job = training.prepare(train_sentences, Path(tmp) / "neural.pt", config, NEURAL_SHAPE, valid_sentences)
        result = training.train(job, progress=print_progress)
        held = [t for s in valid_sentences for t in s][:EM_TOKENS]
        fit = _fit_blend(NeuralLM(job.model, job.vocab), held, ngram_store, Path(tmp) / "default.db")
    metrics = {**result.metrics, **fit, "corpus": "WikiText-2 train (CC BY-SA 3.0), prose tokens"}
    neural.save_checkpoint(output, job.model, job.model.config, job.vocab, metrics, half=True)
    return {
        "epochs": float(result.epochs_run),
        "params": float(sum(p.numel() for p in job.model.parameters())),
        "bytes": float(output.stat().st_size),
        "blend_weight": float(fit["blend_weight"]),
        "ngram": float(metrics["valid_perplexity_ngram"]),
        "neural": float(metrics["valid_perplexity_neural"]),
        "blend": float(metrics["valid_perplexity_blend"]),
        "ratio": metrics["valid_perplexity_blend"] / metrics["valid_perplexity_ngram"],
        "seconds": time.perf_counter() - started,
    }


def _fit_blend(lm: NeuralLM, held: list[str], ngram_store: Path, db: Path) -> dict[str, float | int]:
    """The neural model's blend weight, fit by EM on the `held` tokens against the shipped n-gram store (seeded
    into `db`), and the perplexities on them of the n-gram model, the neural model and the blend."""
    from lm_core import blend
    from lm_core.metrics import perplexity_of_scores, score_tokens
    from lm_core.ngram import NgramModel
    from lsp_server.paths import seed_from_default_model
    from store.sqlite_counts import SqliteCounts

    if not seed_from_default_model(db, ngram_store):
        raise FileNotFoundError(f"{ngram_store}: the shipped n-gram store is missing; build it first")
    with CountStore.open(db) as store:
        ngram = NgramModel(SqliteCounts(store))
        weights = blend.fit_weights_em([ngram, lm], held)
        ngram_scores = [s.logprob for s in score_tokens(ngram, held)]
        neural_scores = [s.logprob for s in score_tokens(blend.Blend([ngram, lm], [0.0, 1.0]), held)]
        blended = [s.logprob for s in score_tokens(blend.Blend([ngram, lm], weights), held)]
        ngram.counts.close()
    return {
        "blend_weight": float(weights[1]),
        "blend_fit_tokens": len(held),
        "valid_perplexity_ngram": perplexity_of_scores(ngram_scores),
        "valid_perplexity_neural": perplexity_of_scores(neural_scores),
        "valid_perplexity_blend": perplexity_of_scores(blended),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", help="folder with wikitext-2/ (default: $NEXTWORD_CORPORA or ../shared/corpora)")
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER)
    parser.add_argument("--min-counts", default=",".join(map(str, DEFAULT_MIN_COUNTS)), help="per order, e.g. 1,1,2,2")
    parser.add_argument("--output", type=Path, default=None, help="where to write (default: the shipped file)")
    parser.add_argument("--neural", action="store_true", help="build the neural model (the store must exist)")
    parser.add_argument("--minutes", type=float, default=NEURAL_MINUTES, help="the neural model's training budget")
    parser.add_argument("--threads", type=int, default=NEURAL_THREADS, help="torch CPU threads for training")
    args = parser.parse_args(argv)
    folder = corpora_dir(args.corpora) / "wikitext-2"
    needed = ("train", "valid") if args.neural else ("train",)  # the n-gram store reports valid perplexity if it can
    if not all((folder / f"wiki.{part}.tokens").exists() for part in needed):
        return _error(f"{folder} holds no WikiText-2; give --corpora or set NEXTWORD_CORPORA")
    return _main_neural(args, folder) if args.neural else _main_ngram(args, folder)


def _main_ngram(args: argparse.Namespace, folder: Path) -> int:
    output = args.output or DEFAULT_MODEL
    min_counts = tuple(int(x) for x in args.min_counts.split(","))
    valid = folder / "wiki.valid.tokens"
    figures = build_default_model(
        folder / "wiki.train.tokens", output, args.order, min_counts, valid if valid.exists() else None
    )
    print(
        f"{output}: order {args.order}, min counts {min_counts}, {figures['tokens']:,.0f} tokens, "
        f"{figures['ngrams']:,.0f} n-grams, store {figures['db_bytes'] / 1e6:.1f} MB, "
        f"gzip {figures['compressed_bytes'] / 1e6:.1f} MB, WikiText-2 valid perplexity (prose tokens) "
        f"{figures['valid_perplexity']:.1f}, {figures['seconds']:.1f} s"
    )
    if figures["compressed_bytes"] > MAX_BYTES:
        return _error(f"the compressed model is over {_megabytes(MAX_BYTES)}; prune harder")
    return 0


def _main_neural(args: argparse.Namespace, folder: Path) -> int:
    output = args.output or DEFAULT_NEURAL_MODEL
    f = build_default_neural(folder.parent, output, minutes=args.minutes, threads=args.threads)
    print(
        f"{output}: {f['params']:,.0f} weights, {f['epochs']:.0f} epoch(s), {f['bytes'] / 1e6:.1f} MB; "
        f"WikiText-2 valid perplexity (prose tokens, first {EM_TOKENS:,}): n-gram {f['ngram']:.1f}, "
        f"neural {f['neural']:.1f}, blend {f['blend']:.1f} (neural weight {f['blend_weight']:.2f}, "
        f"{f['ratio']:.3f} x the n-gram's); {f['seconds']:.0f} s"
    )
    if f["bytes"] > NEURAL_MAX_BYTES:
        return _error(f"the neural model is over {_megabytes(NEURAL_MAX_BYTES)}; lower NEURAL_VOCAB")
    return 0


def _megabytes(limit: int) -> str:
    return f"{limit / 2**20:g} MB"


def _error(message: str) -> int:
    """Say what went wrong on stderr, in one line; the exit status."""
    print(f"nextword: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
