"""What every kind of store offers (`ModelStore`), and the file handling the kinds share (`StoreFile`).

Two kinds exist: a count store (`store.countstore.CountStore`: counts that learn and forget, read by a Kneser-Ney
model) and an imported ARPA model (`store.arpa.ArpaStore`: fixed log10 probabilities and backoffs, read by a
backoff model). Callers hold a `ModelStore` and never ask which one they have: an imported model says that it
cannot learn through `learnable`, and its learning methods raise `ImportedModelError` (one line).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Self

from store import schema
from store.errors import StoreError

if TYPE_CHECKING:
    from lm_core.backoff import BackoffModel
    from lm_core.ngram import NgramConfig, NgramModel
    from store.countstore import LearnResult, SourceInfo
    from store.sources import Analysed


class ModelStore(Protocol):
    """A store file that a model reads: what the Engine, the CLI and the server use, whatever the kind."""

    path: Path
    order: int  # the highest n-gram order it holds
    tokenizer: str  # one of schema.TOKENIZERS: how text is split into tokens for it

    @property
    def learnable(self) -> bool:
        """Whether `learn`, `learn_file` and `forget` can change it (False: they raise `ImportedModelError`)."""
        ...

    def version(self) -> int:
        """A number that changes whenever its counts change (runs a query at most every few milliseconds)."""
        ...

    def model(self, config: NgramConfig | None = None) -> NgramModel | BackoffModel:
        """The language model over it (natural logs), estimated as `config` says where the kind allows it."""
        ...

    def surface_of(self, word: str) -> str:
        """The most frequent surface form of a normalised word (the word itself where none is recorded)."""
        ...

    def set_cache_bytes(self, total_bytes: int) -> None:
        """Bound its SQLite page caches and its model reader's caches by their shares of `total_bytes`."""
        ...

    def learn(
        self, source: str, text: str, kind: str = "document", pause: Callable[[], None] | None = None
    ) -> LearnResult:
        """Make `text` the current content of `source`; `pause()` is called every few milliseconds of work."""
        ...

    def learn_analysed(
        self,
        source: str,
        analysed: Analysed,
        digest: str,
        kind: str = "document",
        pause: Callable[[], None] | None = None,
    ) -> LearnResult:
        """`learn` of a text already analysed with its tokenizer; `digest` is the text's `sources.sha256`."""
        ...

    def learn_file(self, path: str | Path) -> LearnResult: ...

    def forget(self, source: str) -> LearnResult: ...

    def sources(self) -> list[SourceInfo]:
        """What it learned from, oldest first (none for an imported model)."""
        ...

    def learned_sentences(
        self, latest_tokens: int | None = None, pause: Callable[[], None] | None = None
    ) -> list[list[str]]:
        """The sentences (each ending with `</s>`) of the documents and files it learned, oldest first (none for an
        imported model); with `latest_tokens`, only about that many of the latest. `pause` is called now and then
        while they are decoded (the server lets a waiting completion go first)."""
        ...

    def export_arpa(self, path: str | Path, order: int | None = None) -> dict[int, int]:
        """Write its interpolated modified Kneser-Ney model (of `order`, default its own) as an ARPA file (log10);
        the n-grams written per order. `ImportedModelError` for an imported model (export the file it came from)."""
        ...

    def setting(self, key: str) -> str | None: ...

    def save_setting(self, key: str, value: str) -> None: ...

    def defer_checkpoints(self) -> None:
        """Leave write-ahead-log checkpoints to `checkpoint` (a long-running server calls it when learning is
        quiet)."""
        ...

    def checkpoint(self) -> int:
        """Checkpoint the write-ahead log; returns the pages written back."""
        ...

    def stats(self) -> dict[str, object]: ...

    def close(self) -> None: ...


class StoreFile:
    """One open store file of either kind: its connection, path, order and tokenizer (from its meta table) and the
    lock around the connection. Close it (or use it as a context manager) when done."""

    def __init__(self, db: sqlite3.Connection, path: Path, meta: dict[str, str]) -> None:
        self.db = db
        self.path = path
        self.order = int(meta["order"])
        self.tokenizer = meta["tokenizer"]
        self.lock = threading.RLock()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_new_store_file(path: Path) -> bool:
    """Whether no store is at `path` yet (no file, or an empty one); `StoreError` if `path` is a directory."""
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a store file")
    return not path.exists() or path.stat().st_size == 0


def check_tokenizer(tokenizer: str | None) -> None:
    """`StoreError` unless `tokenizer` is None or one of `schema.TOKENIZERS`."""
    if tokenizer is not None and tokenizer not in schema.TOKENIZERS:
        raise StoreError(f"tokenizer must be one of {', '.join(schema.TOKENIZERS)}, not {tokenizer!r}")


def open_model_store(path: Path, create: bool = False) -> ModelStore:
    """The store at `path`, of whichever kind the file is (an imported ARPA model, else a count store; with
    `create`, an empty count store where there is none). `StoreError` (one line) when it cannot be opened."""
    from store.arpa import ArpaStore
    from store.countstore import CountStore

    if schema.peek_kind(path) == schema.ARPA:
        return ArpaStore.open(path)
    return CountStore.open(path, create=create)
