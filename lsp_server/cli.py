"""The `nextword` command line. Every command calls the same Engine / lm_core / store code as the server.

Errors are one line on stderr and a non-zero exit status, never a traceback (set NEXTWORD_DEBUG=1 to see one).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lm_core.files import make_private_folder, write_private_text
from lm_core.smoothing import Smoothing
from lsp_server.paths import (
    DEFAULT_NEURAL,
    DEFAULT_NEURAL_MODEL,
    default_db_path,
    seed_from_default_model,
)
from store.errors import StoreError

if TYPE_CHECKING:
    from lm_core.distributed import Launch
    from lm_core.neural import Checkpoint, NeuralConfig
    from lm_core.ngram import NgramConfig
    from lm_core.training import TrainingJob, TrainProgress, TrainResult
    from lsp_server.engine import Engine

# The models, the store and numpy are imported inside the commands that use them, so that `nextword serve` answers
# the editor's `initialize` before loading them (bench/startup.py).

EXIT_ERROR = 1


def fail(message: str) -> None:
    click.echo(f"nextword: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit after a broken pipe raises nothing more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def friendly_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every error into one line and exit status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:  # the reader went away (`nextword complete ... | head -1`): not an error
            _quiet_stdout()
            sys.exit(0)
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
    "--model-order", type=click.IntRange(1), default=None, help="Use a lower order than the store's."
)


neural_option = click.option(
    "--neural",
    default="none",
    show_default=True,
    help="Blend with a neural model: a checkpoint, or 'default' (your retrained one beside the store, else the "
    "shipped LSTM when the store grew from the shipped model), as the server's neuralModel setting.",
)


empty_store_option = click.option(
    "--empty-store",
    is_flag=True,
    help="A store that is not there yet starts empty, not from the shipped model.",
)


def open_store(db: Path | None, config: NgramConfig | None = None, empty: bool = False) -> Engine:
    """The engine over the store at `db`; a store that is not there yet is made from the shipped model (and this
    says so on stderr, once), or empty with `empty`."""
    from lsp_server.engine import Engine

    engine = Engine.open(db, config, create=empty, seed=not empty)
    note = engine.seeded_note()
    if note:
        click.echo(note, err=True)
    return engine


def open_engine(
    db: Path | None,
    smoothing: str = "kneser-ney",
    model_order: int | None = None,
    neural: str = "none",
    neural_required: bool = False,
) -> Engine:
    """The engine over the store at `db`, blended with the neural model `neural` picks (see `neural_option`); with
    `neural_required`, a 'default' that picks none for this store is an error rather than a note."""
    from lm_core.inference import CheckpointError
    from lm_core.ngram import NgramConfig

    engine = open_store(db, NgramConfig(smoothing=Smoothing(smoothing), order=model_order))
    try:
        engine.use_neural(neural)
    except CheckpointError as exc:
        engine.close()
        fail(str(exc))
    if engine.neural is not None:  # one command in a process of its own: its scoring may use every core
        from lm_core.inference import set_batch_threads

        set_batch_threads(os.cpu_count() or 1)
    if engine.neural is None and neural.strip().lower() == DEFAULT_NEURAL:
        if neural_required:
            fail("no neural model for this store: none retrained beside it, and it did not grow from the shipped one")
        click.echo("(no neural model for this store: the n-gram model alone)", err=True)
    return engine


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
@click.option(
    "--prune",
    "prune_text",
    default=None,
    metavar="CUTOFFS",
    help="Per-order minimum counts, e.g. 1,1,2,2: an n-gram of order n seen fewer times than its cut-off is dropped "
    "(unigrams never; the last cut-off repeats). What is kept keeps the full data's Kneser-Ney statistics (as KenLM).",
)
@click.option(
    "--vocab-limit",
    type=int,
    default=None,
    metavar="N",
    help="Keep the N most frequent words (ties by word); the others are counted as <unk>.",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="local: count in this process. dask: read and count on a Dask cluster (pip install 'nextword[dask]').",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="With --engine dask: a running Dask scheduler (tcp://host:8786); its workers must see FILES at the same "
    "paths [default: a local cluster of worker processes].",
)
@click.option("--workers", type=int, default=None, help="Worker processes of the local Dask cluster [default: cores].")
@friendly_errors
def build(
    files: tuple[Path, ...],
    db: Path | None,
    order: int | None,
    pretokenized: bool,
    prune_text: str | None,
    vocab_limit: int | None,
    engine: str,
    scheduler: str | None,
    workers: int | None,
) -> None:
    """Count n-grams of FILES into a store (created if missing; added to if not).

    With --prune, --vocab-limit or --engine dask the counts go into a new store as its base model: an existing
    store is refused, and the files' text is not kept (the local engine counts everything in memory first), so a
    file cannot be forgotten from it afterwards; learning on top of it works. The new store is written under a
    temporary name and renamed into place only when complete.

    Example: nextword build --db ptb.db --order 5 --pretokenized ptb.train.txt
    """
    from lm_core.counting import DEFAULT_ORDER
    from store.countstore import MAX_ORDER

    if order is not None and not 1 <= order <= MAX_ORDER:
        fail(f"--order must be between 1 and {MAX_ORDER}, not {order}")
    for file in files:  # before anything is created
        if not file.exists():
            fail(f"{file}: no such file")
        if file.is_dir():
            fail(f"{file} is a directory; give the text files inside it")
    path = db or default_db_path()
    tokenizer = "pretokenized" if pretokenized else "prose"
    if engine == "local" and (scheduler is not None or workers is not None):
        fail("--scheduler and --workers go with --engine dask")
    if prune_text is not None or vocab_limit is not None or engine == "dask":
        plan = BaseBuild(order or DEFAULT_ORDER, tokenizer, prune_text, vocab_limit, engine, scheduler, workers)
        _build_base(files, path, plan)
    else:
        _build_counts(files, path, order, tokenizer)


def _build_counts(files: tuple[Path, ...], path: Path, order: int | None, tokenizer: str) -> None:
    """`build` into a store that keeps each file's text (so it can be forgotten): made (empty) if missing."""
    from lm_core.counting import DEFAULT_ORDER
    from store.countstore import CountStore

    existed = path.exists() and path.stat().st_size > 0
    try:  # a store that cannot even be set up (a full disk) leaves no empty file behind
        opened = CountStore.open(
            path, order=order or (None if existed else DEFAULT_ORDER), tokenizer=tokenizer, create=True
        )
    except BaseException:
        if not existed:
            _remove_store(path)
        raise
    with opened as store:
        try:
            with _counting_bar(files) as bar:
                tokens = store.build(files, progress=bar.update)
        except BaseException:
            if not existed:
                store.close()
                _remove_store(path)
            raise
        ngrams = store.stats()["ngrams"]
    _say_built(path, tokens, len(files), ngrams)  # type: ignore[arg-type]


@dataclass(frozen=True)
class BaseBuild:
    """The options of a `build` into a new store whose counts are its base model (--prune, --vocab-limit or
    --engine dask), as given."""

    order: int
    tokenizer: str
    prune_text: str | None  # per-order cut-offs, "1,1,2" (see lm_core.counting.parse_min_counts)
    vocab_limit: int | None
    engine: str  # "local" or "dask"
    scheduler: str | None
    workers: int | None


def _build_base(files: tuple[Path, ...], path: Path, plan: BaseBuild) -> None:
    """`build` with --prune, --vocab-limit or --engine dask: a new store whose counts are its base model."""
    from lm_core.counting import parse_min_counts
    from store.bulk import build_local_base, refuse_existing_store

    try:
        min_counts = parse_min_counts(plan.prune_text, plan.order) if plan.prune_text is not None else None
    except ValueError as exc:
        fail(str(exc))
    if plan.vocab_limit is not None and plan.vocab_limit < 1:
        fail(f"--vocab-limit must be at least 1, not {plan.vocab_limit}")
    if plan.workers is not None and plan.workers < 1:
        fail(f"--workers must be at least 1, not {plan.workers}")
    if plan.scheduler is not None and plan.workers is not None:
        fail("--workers sizes the local cluster; a --scheduler brings its own workers")
    refuse_existing_store(path)
    if plan.engine == "dask":
        from store.dask_build import build_with_dask

        result = build_with_dask(
            path,
            files,
            order=plan.order,
            tokenizer=plan.tokenizer,
            min_counts=min_counts,
            vocab_limit=plan.vocab_limit,
            scheduler=plan.scheduler,
            workers=plan.workers,
        )
    else:
        with _counting_bar(files) as bar:
            result = build_local_base(
                path, files, plan.order, plan.tokenizer, min_counts, plan.vocab_limit, progress=bar.update
            )
    _say_built(path, result.tokens, result.files, result.ngrams)


def _counting_bar(files: tuple[Path, ...]) -> Any:
    """A progress bar over the files' bytes on stderr (hidden when stderr is not a terminal)."""
    total_bytes = sum(f.stat().st_size for f in files)
    return click.progressbar(length=total_bytes, label="counting", file=sys.stderr, hidden=not _interactive())


def _say_built(path: Path, tokens: int, files: int, ngrams: dict[int, int]) -> None:
    counts = ", ".join(f"{n}-grams {c:,}" for n, c in ngrams.items())
    click.echo(f"{path}: {tokens:,} tokens from {files} file(s); {counts}")


def _interactive() -> bool:
    return sys.stderr.isatty()


def _remove_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@db_option
@empty_store_option
@friendly_errors
def learn(file: Path, db: Path | None, empty_store: bool) -> None:
    """Learn a text file (again): its old contribution, if any, is replaced.

    Example: nextword learn notes/today.md
    """
    from lsp_server.large_inputs import learn_file

    result = learn_file(file, db, lambda: open_store(db, empty=empty_store))  # streamed; a bad file creates nothing
    verb = "re-learned" if result.replaced else "learned"
    if result.secrets:
        kinds = ", ".join(sorted(set(result.secrets)))
        click.echo(f"not learned: {len(result.secrets)} sentence(s) holding a secret ({kinds})")
    click.echo(f"{verb} {result.source}: {result.tokens:,} tokens, {result.changed_ngrams:,} n-gram counts changed")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@db_option
@friendly_errors
def forget(file: Path, db: Path | None) -> None:
    """Remove everything learned from FILE (the file itself may be gone).

    Example: nextword forget notes/today.md
    """
    from store.countstore import source_name

    engine = open_store(db)
    result = engine.forget(source_name(file))
    click.echo(f"forgot {result.source}: {result.changed_ngrams:,} n-gram counts changed")


@main.command()
@click.argument("text")
@db_option
@click.option("-k", "--top", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many words.")
@click.option("--prefix", default="", help="Only words starting with this (the word being typed).")
@smoothing_option
@model_order_option
@neural_option
@friendly_errors
def complete(
    text: str, db: Path | None, k: int, prefix: str, smoothing: str, model_order: int | None, neural: str
) -> None:
    """Print the most probable next words after TEXT, with their probabilities.

    Example: nextword complete "the sun rises every" --neural default
    """
    engine = open_engine(db, smoothing, model_order, neural)
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
@neural_option
@friendly_errors
def score(file: Path, db: Path | None, top: int, smoothing: str, model_order: int | None, neural: str) -> None:
    """Perplexity of FILE under the model, and its most surprising words.

    Example: nextword score --top 5 draft.md
    """
    from lsp_server.large_inputs import score_file
    from store.sources import refuse_secret_file

    refuse_secret_file(file)
    engine = open_engine(db, smoothing, model_order, neural)
    result = score_file(engine, file, top)  # streamed, with progress for a large file
    if result.tokens == 0:
        fail(f"{file} has no words to score")
    click.echo(f"{file}: perplexity {result.perplexity:.2f} over {result.tokens:,} tokens (sentence ends included)")
    if result.worst:
        click.echo("most surprising words (bits = -log2 P):")
    for place in result.worst:
        w = place.score
        expected = ", ".join(s.word for s in engine.next_words(w.context, 3))
        bits = "inf" if math.isinf(w.surprisal) else f"{w.surprisal:.1f}"
        click.echo(f"  {f'{place.line}:{place.column}':<9} {w.word!r:<20} {bits:>6} bits   likelier: {expected}")


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
    from lm_core.sampling import SamplingConfig

    if temperature <= 0:
        fail("--temperature must be above 0 (use --greedy for the most probable words)")
    engine = open_engine(db, smoothing, model_order)
    config = SamplingConfig(temperature, top_k, top_p, greedy, seed=random_seed)
    click.echo((seed + " " if seed else "") + engine.generate(seed, n, config))


@main.command(name="export-arpa")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="ARPA file to write."
)
@db_option
@model_order_option
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@friendly_errors
def export_arpa_command(output: Path, db: Path | None, model_order: int | None, force: bool) -> None:
    """Write the store's interpolated modified Kneser-Ney model as an ARPA file (log10).

    Example: nextword export-arpa --db ptb.db -o ptb.arpa
    """
    if output.exists() and not force:
        fail(f"{output} exists; give --force to replace it")
    engine = open_store(db)
    written = engine.export_arpa(output, model_order)
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
    from lm_core.vocab import UNK
    from store.arpa import ArpaStore

    store = ArpaStore.import_arpa(file, db, tokenizer="prose" if prose else "pretokenized")
    click.echo(f"{db}: imported order-{store.order} ARPA model from {file}")
    if store.model().logprob(UNK, ()) == -math.inf:
        click.echo("note: the model lists no <unk>: unknown words score -inf (perplexity inf), where KenLM gives -100")


@main.command()
@db_option
@click.option("--tcp", is_flag=True, help="Listen on TCP instead of stdio.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind with --tcp.")
@click.option("--port", type=click.IntRange(1, 65535), default=2087, show_default=True, help="Port for --tcp.")
@empty_store_option
@friendly_errors
def serve(db: Path | None, tcp: bool, host: str, port: int, empty_store: bool) -> None:
    """Run the language server (stdio by default) for VS Code, Neovim or any LSP client.

    Example: nextword serve --db ~/notes.db
    """
    from lsp_server.prelude import serve as serve_main

    serve_main(tcp=tcp, host=host, port=port, db=str(db) if db else None, empty_store=empty_store)


@main.command()
@db_option
@friendly_errors
def stats(db: Path | None) -> None:
    """Show what the store holds: n-grams per order, vocabulary, sources.

    Example: nextword stats
    """
    engine = open_store(db)
    info = engine.stats()
    for key, value in info.items():
        if key == "ngrams":
            value = ", ".join(f"{n}: {c:,}" for n, c in value.items())
        elif isinstance(value, int):
            value = f"{value:,}"
        click.echo(f"{key:>12}: {value}")
    for source in engine.sources():
        click.echo(f"  {source.kind:<8} {source.tokens:>10,} tokens  {source.learned_at}  {source.name}")


# --- neural models ----------------------------------------------------------------------------------------------------
# torch is imported inside these commands only, so that every other command (and the server) starts without it.
SGD_LR = 20.0  # plain SGD's learning rate, as in word_language_model (Adam's is TrainConfig's default)


def _text_sentences(files: tuple[Path, ...], pretokenized: bool) -> list[list[str]]:
    """Sentences (each ending with `</s>`) of text files, tokenized for pretokenized or prose text; credential files
    are refused and sentences holding a secret dropped, as `learn` does (a checkpoint's vocabulary is plain text)."""
    from store.sources import analyse, read_corpus_file

    tokenizer = "pretokenized" if pretokenized else "prose"
    return [s for file in files for s in analyse(read_corpus_file(file), tokenizer).sentences]


def print_progress(p: TrainProgress) -> None:
    """Training progress: a status line on an interactive stderr; one line per finished epoch on stdout."""
    if p.valid_perplexity is not None:
        if _interactive():
            click.echo("\r\033[K", nl=False, err=True)
        click.echo(
            f"epoch {p.epoch}/{p.epochs}: train perplexity {p.perplexity:,.2f}, "
            f"valid perplexity {p.valid_perplexity:,.2f}, lr {p.lr:.3g}"
        )
    elif _interactive():
        click.echo(
            f"\r\033[Kepoch {p.epoch}/{p.epochs}  batch {p.batch}/{p.batches}  loss {p.loss:.3f}  "
            f"perplexity {p.perplexity:,.1f}  lr {p.lr:.3g}  {p.tokens_per_s:,.0f} tokens/s",
            nl=False,
            err=True,
        )


@main.command(name="train-neural")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--from-store", is_flag=True, help="Train on the documents the store has learned (your own text) too.")
@db_option
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Checkpoint to write."
)
@click.option(
    "--init",
    "init_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Fine-tune this checkpoint (its vocabulary and shape) instead of training from scratch; 'default': the "
    "shipped LSTM (prose text only).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted run from the training state saved in -o.")
@click.option("--cell", default=None, help="Network: rnn (Elman), lstm, gru or window [default: lstm].")
@click.option("--hidden", type=click.IntRange(1), default=None, help="Hidden units per layer [default: 200].")
@click.option("--embed", type=click.IntRange(1), default=None, help="Word-vector size [default: --hidden].")
@click.option("--layers", type=click.IntRange(1), default=None, help="Recurrent layers [default: 2].")
@click.option("--window", type=click.IntRange(1), default=None, help="The window model's context in words [4].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None, help="Dropout [default: 0.2].")
@click.option("--tie/--no-tie", default=None, help="Share input and output word vectors [default: tie].")
@click.option("--vocab-size", type=click.IntRange(4), default=10_000, show_default=True, help="Most words kept.")
@click.option("--epochs", type=click.IntRange(1), default=6, show_default=True, help="Passes over the text.")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=None, help="Stop after this long.")
@click.option("--batch-size", type=click.IntRange(1), default=20, show_default=True, help="Parallel streams.")
@click.option("--bptt", type=click.IntRange(1), default=35, show_default=True, help="Truncated BPTT length.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help="[default: adam 0.002, sgd 20].")
@click.option("--clip", type=click.FloatRange(0), default=0.5, show_default=True, help="Gradient norm bound (0: off).")
@click.option("--seed", type=int, default=1234, show_default=True, help="Random seed.")
@click.option("--valid", "valid_file", type=click.Path(path_type=Path), default=None, help="Validation text file.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The training curves as .png or .svg (needs nextword[plot]).",
)
@click.option("--pretokenized", is_flag=True, help="FILES are one sentence a line, split on spaces.")
@click.option("--device", default="cpu", show_default=True, help="Where to train: cpu, cuda, mps.")
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="CPU threads for torch (more only help on idle cores: on busy ones they slow training many times over).",
)
@click.option(
    "--nproc",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Processes training together (data parallel, --threads each); --batch-size is their total and must be a "
    "multiple. Under torchrun, torchrun's processes are used instead.",
)
@friendly_errors
def train_neural(
    files: tuple[Path, ...],
    from_store: bool,
    db: Path | None,
    output: Path,
    init_path: Path | None,
    resume: bool,
    cell: str | None,
    hidden: int | None,
    embed: int | None,
    layers: int | None,
    window: int | None,
    dropout: float | None,
    tie: bool | None,
    vocab_size: int,
    epochs: int,
    minutes: float | None,
    batch_size: int,
    bptt: int,
    optimizer: str,
    lr: float | None,
    clip: float,
    seed: int,
    valid_file: Path | None,
    plot: Path | None,
    pretokenized: bool,
    device: str,
    threads: int,
    nproc: int,
) -> None:
    """Train a neural language model (offline) on FILES and/or your own text in the store.

    Holds out the last 10% of the text for validation (or --valid FILE); writes the best model to -o after every
    epoch, so an interrupted run keeps its best model (continue it with --resume). With --init, fine-tunes a
    trained model (keeping its vocabulary and shape) instead of starting from scratch. With --nproc N (or under
    torchrun), N processes share each batch (data parallel) and train as one process would with the same batch.

    Example: nextword train-neural --pretokenized --cell lstm --epochs 6 -o ptb-lstm.pt ptb.train.txt
    """
    shape = {"cell": cell, "hidden": hidden, "embed": embed, "layers": layers, "window": window, "tie": tie}
    _check_training_options(files, valid_file, from_store, init_path, resume, shape, plot)
    if init_path is not None and str(init_path) == DEFAULT_NEURAL:
        init_path = DEFAULT_NEURAL_MODEL
    from lm_core import neural, training

    config = training.TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        bptt=bptt,
        optimizer=optimizer,
        lr=lr if lr is not None else (SGD_LR if optimizer == "sgd" else training.TrainConfig.lr),
        clip_norm=clip,
        max_minutes=minutes,
        seed=seed,
        device=device,
    )
    try:
        launch, processes = _training_processes(nproc, batch_size, threads, device)
        start = _starting_model(init_path or (output if resume else None), shape, dropout, vocab_size)
        sentences = _training_sentences(files, pretokenized, from_store, db)
        valid = _text_sentences((valid_file,), pretokenized) if valid_file is not None else None
        job = training.prepare(sentences, output, config, start, valid, resume)
    except neural.NeuralError as exc:
        fail(str(exc))
    first_process = launch is None or launch.rank == 0  # the one that prints, plots and writes the checkpoint
    if first_process:
        click.echo(_training_summary(job, init_path, processes))
    result = _run_training(job, launch, nproc, threads)
    if first_process:
        _finish_training(result, output, plot)


def _check_training_options(
    files: tuple[Path, ...],
    valid_file: Path | None,
    from_store: bool,
    init_path: Path | None,
    resume: bool,
    shape: dict[str, Any],
    plot: Path | None,
) -> None:
    """Fail (one line) on options that do not go together, unreadable text files, or a plot that cannot be
    drawn: before any work."""
    from store.secrets import is_secret_path
    from store.sources import read_corpus_file

    if not files and not from_store:
        fail("give text files to train on, or --from-store for the documents the store has learned")
    if (init_path is not None or resume) and any(v is not None for v in shape.values()):
        given = ", ".join(f"--{k}" for k, v in shape.items() if v is not None)
        fail(f"{'--init' if init_path else '--resume'} keeps the checkpoint's shape; drop {given}")
    if init_path is not None and resume:
        fail("--resume continues -o's own run; it cannot be combined with --init")
    for file in (*files, *([valid_file] if valid_file else [])):
        if not file.is_file() or is_secret_path(file):
            read_corpus_file(file)  # says why (missing, a directory, credentials) before any work
    if plot is not None:  # before training, not after it
        from lsp_server import plots

        try:
            plots.check_path(plot)
            plots.require_matplotlib()
        except plots.PlotError as exc:
            fail(str(exc))


def _training_processes(nproc: int, batch_size: int, threads: int, device: str) -> tuple[Launch | None, int]:
    """Under torchrun, this process's place and torchrun's process count; else (None, --nproc). Sets torch's
    threads and checks the device."""
    import torch

    from lm_core import distributed

    launch = distributed.launched()  # several processes: spawned here (--nproc), or started by torchrun
    if launch is not None and nproc not in (1, launch.world_size):
        fail(f"--nproc {nproc}: under torchrun its {launch.world_size} processes train; drop --nproc")
    processes = launch.world_size if launch is not None else nproc
    distributed.check_divisible(batch_size, processes)
    torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {device}: torch sees no CUDA device here; use --device cpu")
    return launch, processes


def _starting_model(
    checkpoint_path: Path | None, shape: dict[str, Any], dropout: float | None, vocab_size: int
) -> NeuralConfig | Checkpoint:
    """The checkpoint to start from (to fine-tune or resume; --dropout replaces its dropout), or a fresh model's
    shape from the options."""
    from dataclasses import replace

    from lm_core import neural

    if checkpoint_path is not None:
        checkpoint = neural.load_checkpoint(checkpoint_path)
        if dropout is None:
            return checkpoint
        return replace(checkpoint, config=replace(checkpoint.config, dropout=dropout))
    default = neural.NeuralConfig  # the defaults the options' help names
    size = shape["hidden"] or default.hidden_dim
    embed = shape["embed"] or size
    return neural.NeuralConfig(
        cell=shape["cell"] or default.cell,
        vocab_size=vocab_size,
        embed_dim=embed,
        hidden_dim=size,
        layers=shape["layers"] or default.layers,
        dropout=default.dropout if dropout is None else dropout,
        tie_weights=embed == size if shape["tie"] is None else shape["tie"],
        window=shape["window"] or default.window,
    )


def _training_sentences(
    files: tuple[Path, ...], pretokenized: bool, from_store: bool, db: Path | None
) -> list[list[str]]:
    """The sentences of FILES, and with --from-store the documents the store has learned."""
    sentences = _text_sentences(files, pretokenized)
    if from_store:
        engine = open_store(db)
        if files and not pretokenized and engine.tokenizer == "pretokenized":
            fail("the store holds pretokenized text; give --pretokenized so FILES are read the same way")
        sentences += engine.learned_sentences()
        engine.close()
    return sentences


def _training_summary(job: TrainingJob, init_path: Path | None, processes: int) -> str:
    """The line said before training: the model, the data, and how it is split over processes."""
    config = job.model.config
    unknown = float((job.train_ids == 0).float().mean()) * 100
    params = sum(p.numel() for p in job.model.parameters())
    shape_text = f"{config.cell} {config.layers}x{config.hidden_dim}" if config.cell != "window" else "window"
    rows = job.config.batch_size // processes
    return (
        f"training {shape_text} ({params:,} weights, vocabulary {len(job.vocab):,} words) on {len(job.train_ids):,} "
        f"tokens ({unknown:.1f}% <unk>), validating on {len(job.valid_ids):,}"
        + (f"; fine-tuning {init_path}" if init_path else "")
        + (f"; {processes} processes, {rows} rows each" if processes > 1 else "")
    )


def _run_training(job: TrainingJob, launch: Launch | None, nproc: int, threads: int) -> TrainResult:
    """Train the job: as one of torchrun's processes, over --nproc processes spawned here, or in this one."""
    from lm_core import distributed, neural, training

    try:
        if launch is not None:
            return distributed.train_in_group(launch, job, print_progress)
        if nproc > 1:
            return distributed.train_data_parallel(nproc, job, print_progress, threads=threads)
        return training.train(job, print_progress)
    except (neural.NeuralError, ValueError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        output = job.checkpoint_path
        kept = f"{output} holds the best model of the finished epochs" if output.exists() else "nothing was written"
        click.echo(f"\nnextword: interrupted; {kept} (continue with --resume)", err=True)
        sys.exit(130)


def _finish_training(result: TrainResult, output: Path, plot: Path | None) -> None:
    """The training curves (with --plot) and the closing line."""
    if plot is not None:
        from lsp_server import plots

        plots.training_curves(result.metrics, plot)
    click.echo(
        f"{output}: best valid perplexity {result.best_valid_perplexity:,.2f} "
        f"(epoch {result.metrics.get('best_epoch', '?')}); stopped: {result.stopped}"
        + (f"; curves in {plot}" if plot else "")
    )


@main.command(name="eval")
@click.argument("file", type=click.Path(path_type=Path))
@db_option
@click.option(
    "--neural",
    "neural_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Neural checkpoint, or 'default' (the retrained or the shipped one, as the server picks).",
)
@click.option("--pretokenized", is_flag=True, help="FILE is one sentence a line, split on spaces.")
@smoothing_option
@model_order_option
@friendly_errors
def eval_command(
    file: Path, db: Path | None, neural_path: Path | None, pretokenized: bool, smoothing: str, model_order: int | None
) -> None:
    """Perplexity of FILE under the n-gram model, a neural model and their blend, side by side.

    The blend's weights are fit by EM on the first half of FILE's sentences; every perplexity is measured on the
    second half (per token, sentence ends included, each sentence scored from its start).

    Example: nextword eval --db ptb.db --neural ptb-lstm.pt --pretokenized ptb.test.txt
    """
    from lsp_server.large_inputs import eval_sentences
    from store.sources import refuse_secret_file

    refuse_secret_file(file)
    neural = str(neural_path) if neural_path is not None else "none"
    engine = open_engine(db, smoothing, model_order, neural, neural_required=neural_path is not None)
    sentences = eval_sentences(file, "pretokenized" if pretokenized or engine.tokenizer == "pretokenized" else "prose")
    half = len(sentences) // 2
    if half == 0:
        fail(f"{file} needs at least 2 sentences (one half fits the blend, the other is scored)")
    fit = [w for s in sentences[:half] for w in s]
    held = [w for s in sentences[half:] for w in s]
    click.echo(
        f"{file}: blend weights fit by EM on the first half ({len(fit):,} tokens); perplexity on the second half "
        f"({len(held):,} tokens, sentence ends included)"
    )
    rows = engine.compare(fit, held)
    width = max(len(row.description) for row in rows)
    click.echo(f"  {'model':<7} {'':<{width}}  perplexity")
    for row in rows:
        click.echo(f"  {row.name:<7} {row.description:<{width}}  {row.perplexity:>10,.2f}")
    if neural_path is None:
        click.echo("  (give --neural CHECKPOINT to compare a neural model and the blend)")


@main.command()
@db_option
@click.option("--repair", is_flag=True, help="Rebuild a store with problems from its sources (kept aside, not lost).")
@click.option(
    "--rebuild",
    is_flag=True,
    help="Rebuild even a healthy store: drops the words of forgotten documents (see SECURITY.md).",
)
@friendly_errors
def doctor(db: Path | None, repair: bool, rebuild: bool) -> None:
    """Check a store: SQLite's integrity checks, then that its counts equal a rebuild from the sources it learned.

    With --repair a store with problems is rebuilt from the sources it can read; the damaged file is kept beside it
    as NAME.damaged-<time>, never overwritten. --rebuild rebuilds a healthy store too (the old file is kept as
    NAME.replaced-<time>: delete it). Stop editors using the store first.

    Example: nextword doctor --db ~/notes.db --repair
    """
    from store import doctor as store_doctor

    path = (db or default_db_path()).expanduser()
    if not path.exists():
        fail(f"no store at {path}")
    with _shipped_model() as base:
        report = store_doctor.diagnose(path, base)
        for line in report.checked:
            click.echo(f"ok: {line}")
        for line in report.problems:
            click.echo(f"problem: {line}")
        if report.healthy and not rebuild:
            click.echo(f"{path}: healthy")
            return
        if not report.healthy and not (repair or rebuild):
            fail(f"{path} has problems; 'nextword doctor --repair' rebuilds it from its sources")
        label = "damaged" if not report.healthy else "replaced"
        result = store_doctor.repair(path, base, label)
        click.echo(f"the {'damaged' if label == 'damaged' else 'old'} file is kept as {result.damaged}")
        click.echo(
            f"rebuilt {path}: {len(result.restored)} source(s) from their records, "
            f"{len(result.reread)} read again from their files, {len(result.lost)} lost"
        )
        for item in result.lost:
            click.echo(f"lost: {item}")
        after = store_doctor.diagnose(path, base)
        for line in after.problems:
            click.echo(f"problem after the rebuild: {line}")
        if not after.healthy:
            fail(f"{path} still has problems after the rebuild")
        click.echo(f"{path}: healthy")


@contextlib.contextmanager
def _shipped_model() -> Iterator[Callable[[], Path | None]]:
    """The shipped default model, decompressed into a temporary folder on first use (a user store's base)."""
    with tempfile.TemporaryDirectory(prefix="nextword-doctor-") as tmp:
        found: list[Path | None] = []

        def model() -> Path | None:
            if not found:
                target = Path(tmp) / "default-model.db"
                found.append(target if seed_from_default_model(target) else None)
            return found[0]

        yield model


@main.command(name="report")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
@db_option
@click.option("--alternatives", type=click.IntRange(0, 20), default=3, show_default=True, help="Per word tooltip.")
@friendly_errors
def report_command(file: Path, output: Path, db: Path | None, alternatives: int) -> None:
    """Write a self-contained HTML page of FILE: each word coloured by its surprisal, the likelier words on
    hover, the perplexity and the odd words summarised.

    Example: nextword report draft.md -o draft.html
    """
    from lsp_server.report import format_perplexity, render_report
    from store.secrets import redact
    from store.sources import read_user_text

    text = redact(read_user_text(file))  # the page shows the text: never a secret in it
    engine = open_engine(db)
    try:
        checked = engine.check(text)
        page = render_report(engine, text, f"nextword report: {file.name}", alternatives, checked)
    finally:
        engine.close()
    make_private_folder(output.parent)
    write_private_text(output, page)
    click.echo(
        f"{output}: perplexity {format_perplexity(checked.perplexity)} over {checked.tokens:,} tokens, "
        f"{len(checked.oddities):,} odd word(s)"
    )


def run() -> None:
    """The console script: click's usage errors become one line too."""
    try:
        main.main(standalone_mode=False)
        if not sys.stdout.closed:  # the server closes it on exit
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)
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
