"""The CLI's reading of user files, streamed (`store.streaming`): `learn`, `score` and `eval` read a file in pieces,
with a progress line on stderr for large ones, so memory holds what is kept of the text, not the text and its tokens.

`learn` reads (and checks) the whole file before a store that is not there yet is made: a file that cannot be
learned creates nothing, as before.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from lsp_server.engine import DocumentScore, Engine, WordScore
from lsp_server.paths import default_db_path
from store import schema, sources, streaming
from store.countstore import LearnResult, source_name


def _progress(file: Path) -> streaming.ByteProgress:
    try:
        size = file.stat().st_size
    except OSError:
        size = 0
    return streaming.ByteProgress(str(file), size)


def read_user_document(file: Path, tokenizer: str, drop_secrets: bool = True) -> streaming.Document:
    """A file the person wrote (learn, eval), read in pieces with progress: `sources.read_user_text`'s rules
    (never a credentials file; at most `sources.max_document_bytes()`), analysed as `sources.analyse` would."""
    sources.refuse_secret_file(file)
    progress = _progress(file)
    try:
        return streaming.read_document(file, tokenizer, progress=progress, drop_secrets=drop_secrets)
    finally:
        progress.done()


def learn_file(file: Path, db: Path | None, open_store: Callable[[], Engine]) -> LearnResult:
    """`nextword learn FILE`: an existing store is opened first (its tokenizer reads the file); for a store not
    there yet, the file is read as prose (a new store's tokenizer) before `open_store` makes it."""
    path = Path(db).expanduser() if db else default_db_path()
    if schema.peek_kind(path) is not None:
        store = open_store().counts_store
        document = read_user_document(file, store.tokenizer)
    else:
        document = read_user_document(file, "prose")
        store = open_store().counts_store
    return store.learn_analysed(source_name(file), document.analysed, document.sha256, kind="file")


@dataclass(frozen=True)
class ScoredWord:
    """A scored word with its place in the file: 1-based line and column (characters); `score`'s offsets are in
    the file's text."""

    line: int
    column: int
    score: WordScore


@dataclass(frozen=True)
class FileScore:
    """A file's perplexity (natural log inside; per token, sentence ends included), tokens scored, and its `top`
    most surprising words (ties in file order)."""

    perplexity: float
    tokens: int
    worst: list[ScoredWord]


class _Places:
    """Lines and columns of increasing offsets in a text read in overlapping batches (`text[0]` at `offset`)."""

    def __init__(self) -> None:
        self.counted = 0  # offset in the whole text counted up to
        self.lines = 0  # newlines before it
        self.line_start = 0  # the offset its line starts at

    def place(self, text: str, offset: int, at: int) -> tuple[int, int]:
        """(line, column), 1-based, of the whole text's offset `at` (at or after the last one asked), where
        `text[0]` is at `offset` and `text` reaches back to the last offset asked."""
        segment = text[self.counted - offset : at - offset]
        newlines = segment.count("\n")
        if newlines:
            self.lines += newlines
            self.line_start = self.counted + segment.rfind("\n") + 1
        self.counted = at
        return self.lines + 1, at - self.line_start + 1


def score_file(engine: Engine, file: Path, top: int) -> FileScore:
    """`nextword score FILE`: every token scored, piece by piece; the perplexity over all of them and the `top`
    most surprising words, as `Engine.score` of the whole text gives them."""
    sources.refuse_secret_file(file)
    progress = _progress(file)
    places = _Places()
    log_sum, tokens, order = 0.0, 0, 0
    heap: list[tuple[float, int, ScoredWord]] = []  # the `top` largest surprisals; the first written wins ties
    try:
        for text, offset, end, result in _scored_batches(engine, file, progress):
            tokens += result.tokens
            log_sum += math.log(result.perplexity) * result.tokens if result.tokens else 0.0
            for word in result.words:
                line, column = places.place(text, offset, offset + word.start)
                order += 1
                if len(heap) < top or (top and (word.surprisal, -order) > heap[0][:2]):
                    placed = ScoredWord(line, column, replace(word, start=offset + word.start, end=offset + word.end))
                    item = (word.surprisal, -order, placed)
                    (heapq.heappush if len(heap) < top else heapq.heapreplace)(heap, item)
            places.place(text, offset, offset + end)
    finally:
        progress.done()
    perplexity = math.exp(log_sum / tokens) if tokens else math.nan
    return FileScore(perplexity, tokens, [item[2] for item in sorted(heap, key=lambda i: i[:2], reverse=True)])


def _scored_batches(
    engine: Engine, file: Path, progress: Callable[[int], None]
) -> Iterator[tuple[str, int, int, DocumentScore]]:
    """(text, its offset in the file's text, where the batch ends in it, the batch's scores)."""
    chunks = streaming.read_chunks(file, sources.max_document_bytes(), progress=progress)
    if engine.tokenizer == "prose":
        for batch in streaming.prose_batches(chunks):
            yield batch.text, batch.offset, batch.end, engine.score_sentences(batch.sentences)
    else:
        for batch in streaming.line_batches(chunks):
            piece = batch.text[batch.start : batch.end]
            yield piece, batch.offset + batch.start, len(piece), engine.score(piece)


def eval_sentences(file: Path, tokenizer: str) -> list[list[str]]:
    """`nextword eval FILE`: its sentences (each ending with `</s>`), read in pieces; nothing is kept, so sentences
    holding a secret are scored like any other (as before)."""
    return read_user_document(file, tokenizer, drop_secrets=False).analysed.sentences
