"""The `nextword` command line. Every command calls the same Engine / lm_core / store code as the server.

Errors are one line on stderr and a non-zero exit status, never a traceback (set NEXTWORD_DEBUG=1 to see one).
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lm_core.ngram import NgramConfig, Smoothing
from lm_core.sampling import SamplingConfig, generate
from lsp_server.engine import Engine
from lsp_server.paths import default_db_path
from store.countstore import MAX_ORDER, CountStore, source_name
from store.errors import StoreError
from store.sources import read_text_file

EXIT_ERROR = 1


def fail(message: str) -> None:
    click.echo(f"nextword: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every error into one line and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if os.environ.get("NEXTWORD_DEBUG"):
                raise
            fail(f"the store could not be read ({exc}); it was left untouched")
        except (StoreError, ValueError, OSError) as exc:
            if os.environ.get("NEXTWORD_DEBUG"):
                raise
            fail(str(exc) or type(exc).__name__)
        except KeyboardInterrupt:
            click.echo("nextword: interrupted; nothing half-written was kept", err=True)
            sys.exit(130)
        except Exception as exc:  # the last line of defence: still one line
            if os.environ.get("NEXTWORD_DEBUG"):
                raise
            fail(f"internal error: {type(exc).__name__}: {exc} (set NEXTWORD_DEBUG=1 for details)")

    return wrapper


db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The store file (default: $NEXTWORD_DB or ~/.local/share/nextword/nextword.db, "
    "first seeded from the shipped model).",
)
smoothing_option = click.option(
    "--smoothing",
    type=click.Choice([s.value for s in Smoothing]),
    default=Smoothing.KNESER_NEY.value,
    show_default=True,
    help="How to estimate probabilities from counts.",
)
model_order_option = click.option(
    "--model-order", type=click.IntRange(1, MAX_ORDER), default=None, help="Use a lower order than the store's."
)


def open_engine(db: Path | None, smoothing: str = "kneser-ney", model_order: int | None = None) -> Engine:
    return Engine.open(db, NgramConfig(smoothing=Smoothing(smoothing), order=model_order))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nextword")
def main() -> None:
    """nextword: local, private predictive text. N-gram counts in SQLite, Kneser-Ney smoothing.

    Example: nextword complete "the sun rises every"
    """


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
@click.option("--order", type=int, default=None, help="N-gram order of a new store, 1 to 9 [default: 5].")
@click.option("--pretokenized", is_flag=True, help="Text is already tokenized: split on spaces, one sentence a line.")
@friendly_errors
def build(files: tuple[Path, ...], db: Path | None, order: int | None, pretokenized: bool) -> None:
    """Count n-grams of FILES into a store (created if missing; added to if not).

    Example: nextword build --db ptb.db --order 5 --pretokenized ptb.train.txt
    """
    if order is not None and not 1 <= order <= MAX_ORDER:
        fail(f"--order must be between 1 and {MAX_ORDER}, not {order}")
    for file in files:  # before anything is created
        if not file.exists():
            fail(f"{file}: no such file")
        if file.is_dir():
            fail(f"{file} is a directory; give the text files inside it")
    path = db or default_db_path()
    tokenizer = "pretokenized" if pretokenized else "prose"
    existed = path.exists() and path.stat().st_size > 0
    with CountStore.open(path, order=order or (None if existed else 5), tokenizer=tokenizer, create=True) as store:
        total_bytes = sum(f.stat().st_size for f in files)
        try:
            bar = click.progressbar(length=total_bytes, label="counting", file=sys.stderr, hidden=not _interactive())
            with bar:
                tokens = store.build(files, progress=bar.update)
        except BaseException:
            if not existed:
                store.close()
                _remove_store(path)
            raise
        stats = store.stats()
    counts = ", ".join(f"{n}-grams {c:,}" for n, c in stats["ngrams"].items())
    click.echo(f"{path}: {tokens:,} tokens from {len(files)} file(s); {counts}")


def _interactive() -> bool:
    return sys.stderr.isatty()


def _remove_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@db_option
@friendly_errors
def learn(file: Path, db: Path | None) -> None:
    """Learn a text file (again): its old contribution, if any, is replaced.

    Example: nextword learn notes/today.md
    """
    text = read_text_file(file)  # a file that cannot be learned creates nothing
    engine = Engine.open(db, create=True)
    result = engine.learn(source_name(file), text)
    verb = "re-learned" if result.replaced else "learned"
    click.echo(f"{verb} {result.source}: {result.tokens:,} tokens, {result.changed_ngrams:,} n-gram counts changed")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@db_option
@friendly_errors
def forget(file: Path, db: Path | None) -> None:
    """Remove everything learned from FILE (the file itself may be gone).

    Example: nextword forget notes/today.md
    """
    engine = Engine.open(db)
    result = engine.forget(source_name(file))
    click.echo(f"forgot {result.source}: {result.changed_ngrams:,} n-gram counts changed")


@main.command()
@click.argument("text")
@db_option
@click.option("-k", "--top", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many words.")
@click.option("--prefix", default="", help="Only words starting with this (the word being typed).")
@smoothing_option
@model_order_option
@friendly_errors
def complete(text: str, db: Path | None, k: int, prefix: str, smoothing: str, model_order: int | None) -> None:
    """Print the most probable next words after TEXT, with their probabilities.

    Example: nextword complete "the sun rises every"
    """
    engine = open_engine(db, smoothing, model_order)
    context = engine.context_of(text)
    sentence_start = len(context) == 1 and context[0] == "<s>"
    suggestions = engine.next_words(context, k, prefix, sentence_start)
    if not suggestions:
        click.echo("(no suggestions)")
    width = max((len(s.word) for s in suggestions), default=0)
    for rank, s in enumerate(suggestions, start=1):
        click.echo(f"{rank:>3}  {s.word:<{width}}  {s.prob:.3g}")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@db_option
@click.option(
    "--top", type=click.IntRange(0, 1000), default=10, show_default=True, help="Most surprising words to list."
)
@smoothing_option
@model_order_option
@friendly_errors
def score(file: Path, db: Path | None, top: int, smoothing: str, model_order: int | None) -> None:
    """Perplexity of FILE under the model, and its most surprising words.

    Example: nextword score --top 5 draft.md
    """
    text = read_text_file(file)
    engine = open_engine(db, smoothing, model_order)
    result = engine.score(text)
    if result.tokens == 0:
        fail(f"{file} has no words to score")
    click.echo(f"{file}: perplexity {result.perplexity:.2f} over {result.tokens:,} tokens (sentence ends included)")
    worst = sorted(result.words, key=lambda w: -w.surprisal)[:top]
    if worst:
        click.echo("most surprising words (bits = -log2 P):")
    for w in worst:
        line = text.count("\n", 0, w.start) + 1
        column = w.start - (text.rfind("\n", 0, w.start) + 1) + 1
        expected = ", ".join(s.word for s in engine.next_words(w.context, 3))
        bits = "inf" if math.isinf(w.surprisal) else f"{w.surprisal:.1f}"
        click.echo(f"  {f'{line}:{column}':<9} {w.word!r:<20} {bits:>6} bits   likelier: {expected}")


@main.command(name="generate")
@click.argument("seed", default="")
@db_option
@click.option(
    "-n", "--words", "n", type=click.IntRange(1, 10000), default=30, show_default=True, help="Tokens to generate."
)
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Above 0; lower is more predictable.")
@click.option("--top-k", type=click.IntRange(1), default=None, help="Sample from the k most probable words only.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None, help="Nucleus sampling mass.")
@click.option("--greedy", is_flag=True, help="Always take the most probable word.")
@click.option("--seed", "random_seed", type=int, default=None, help="Random seed, for the same text every time.")
@smoothing_option
@model_order_option
@friendly_errors
def generate_command(
    seed: str,
    db: Path | None,
    n: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    greedy: bool,
    random_seed: int | None,
    smoothing: str,
    model_order: int | None,
) -> None:
    """Continue SEED with text sampled from the model.

    Example: nextword generate "the history of" -n 20 --top-p 0.9 --seed 1
    """
    if temperature <= 0:
        fail("--temperature must be above 0 (use --greedy for the most probable words)")
    engine = open_engine(db, smoothing, model_order)
    context = list(engine.context_of(seed))
    seed_tokens = context[1:] if context[:1] == ["<s>"] else context
    config = SamplingConfig(temperature, top_k, top_p, greedy, seed=random_seed)
    words = generate(engine.model, seed_tokens, n, config)
    click.echo((seed + " " if seed else "") + engine.render(words, sentence_start=not seed.strip()))


@main.command(name="export-arpa")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ARPA file to write."
)
@db_option
@model_order_option
@friendly_errors
def export_arpa_command(output: Path, db: Path | None, model_order: int | None) -> None:
    """Write the store's interpolated modified Kneser-Ney model as an ARPA file (log10).

    Example: nextword export-arpa --db ptb.db -o ptb.arpa
    """
    from store.arpa import export_arpa

    engine = Engine.open(db)
    written = export_arpa(engine.counts_store.load_tables(), output, order=model_order)
    click.echo(f"{output}: " + ", ".join(f"{n}-grams {c:,}" for n, c in written.items()))


@main.command(name="import-arpa")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), required=True, help="New model file to create.")
@click.option("--prose", is_flag=True, help="The model's words are nextword prose tokens (case-folded), not raw text.")
@friendly_errors
def import_arpa_command(file: Path, db: Path, prose: bool) -> None:
    """Import an ARPA model (KenLM, SRILM) into a new model file that 'score' and 'complete' can use.

    Example: nextword import-arpa lm.arpa --db lm.db
    """
    from store.arpa import ArpaStore

    store = ArpaStore.import_arpa(file, db, tokenizer="prose" if prose else "pretokenized")
    click.echo(f"{db}: imported order-{store.order} ARPA model from {file}")


@main.command()
@db_option
@click.option("--tcp", is_flag=True, help="Listen on TCP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind with --tcp.")
@click.option("--port", type=click.IntRange(1, 65535), default=2087, show_default=True, help="Port for --tcp.")
@friendly_errors
def serve(db: Path | None, tcp: bool, host: str, port: int) -> None:
    """Run the language server (stdio by default) for VS Code, Neovim or any LSP client.

    Example: nextword serve --db ~/notes.db
    """
    from lsp_server.server import main as serve_main

    serve_main(tcp=tcp, host=host, port=port, db=str(db) if db else None)


@main.command()
@db_option
@friendly_errors
def stats(db: Path | None) -> None:
    """Show what the store holds: n-grams per order, vocabulary, sources.

    Example: nextword stats
    """
    engine = Engine.open(db)
    info = engine.stats()
    for key, value in info.items():
        if key == "ngrams":
            value = ", ".join(f"{n}: {c:,}" for n, c in value.items())
        elif isinstance(value, int):
            value = f"{value:,}"
        click.echo(f"{key:>12}: {value}")
    for source in engine.store.sources() if isinstance(engine.store, CountStore) else []:
        click.echo(f"  {source.kind:<8} {source.tokens:>10,} tokens  {source.learned_at}  {source.name}")


def run() -> None:
    """The console script: click's usage errors become one line too."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"nextword: error: {exc.format_message()} (see 'nextword --help')", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("nextword: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    run()
