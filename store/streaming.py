"""Reading large inputs in bounded pieces, with progress (learn, build, score, eval).

A file is read in chunks (`READ_CHUNK_BYTES`), decoded incrementally (a UTF-8 character split between two chunks
is decoded whole) and cut into pieces at sentence starts, each analysed as it comes: memory holds one piece of text
and what is kept of it (sentences of shared word strings, casing counts), never the whole file as text and tokens.
The result is exactly what `sources.analyse` gives for the whole text:

- prose: a piece ends where the tokenizer is at a sentence start (`tokenize.sentences_from`), at least
  `MARGIN_CHARS` before the end of the text read so far, so every construct the tokenizer looks ahead for (inline
  code spans: 4,000 characters at most) is decided on the same characters as in one scan; the scan goes on from
  there with the Markdown line state it had;
- pretokenized: a piece ends after a newline;
- secrets: the detectors run over each piece with `OVERLAP_CHARS` of the text before it and `MARGIN_CHARS` after
  it, and a sentence's extent reaches to its neighbours' tokens across a cut, as in `sources.analyse`.

Progress: reading an input of at least `progress_threshold_bytes()` (`$NEXTWORD_PROGRESS_MB`, default 32 MB) shows
a line on stderr: redrawn in place on a terminal, else one line per tenth read.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from lm_core import tokenize
from store import sources
from store.errors import InputError

if TYPE_CHECKING:
    from store import secrets  # imported where text is read (see store/sources.py)

READ_CHUNK_BYTES = 1 << 20
"""Bytes read from a file at a time."""
PIECE_CHARS = 1 << 20
"""Characters analysed at a time (about): a piece is at least this long unless the text ends."""
MARGIN_CHARS = 8192
"""Characters kept past a cut: more than any look-ahead of the tokenizer (inline code: 4,000 characters)."""
OVERLAP_CHARS = 4096
"""Characters before a piece that the secret detectors see again (a secret written across a cut is found)."""
PAUSE_PIECE_CHARS = 8_192
"""Characters analysed at a time by `analyse_text` (a pause after each): ~8 ms of tokenizing and keeping the
sentences (32 KB pieces took 35-45 ms each while a 1.9 MB document was learned, and a completion that came during one
waited 25-35 ms for its end)."""
PROGRESS_ENV = "NEXTWORD_PROGRESS_MB"
DEFAULT_PROGRESS_MB = 32.0


def progress_threshold_bytes() -> int:
    """Inputs at least this large (bytes) show progress: `$NEXTWORD_PROGRESS_MB` megabytes (10^6 bytes), else 32."""
    return sources.megabytes_setting(PROGRESS_ENV, DEFAULT_PROGRESS_MB, allow_zero=True)


class ByteProgress:
    """A progress line on stderr for reading `total` bytes of `label`: "reading notes.md: 12.0 of 50.0 MB (24 %)".

    Shown only for inputs of at least `progress_threshold_bytes()`; redrawn in place on a terminal, else one line
    each time another tenth is read. Call it with the bytes read since the last call; `done()` ends the line."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total, self.read = label, total, 0
        self.stream = stream or sys.stderr
        self.shown = total >= progress_threshold_bytes()
        self.tty = self.shown and self.stream.isatty()
        self.next_tenth = 1

    def __call__(self, n: int) -> None:
        self.read += n
        if not self.shown:
            return
        fraction = self.read / self.total if self.total else 1.0
        if self.tty:
            self.stream.write("\r" + self.line(fraction))
            self.stream.flush()
        elif fraction * 10 >= self.next_tenth:
            self.next_tenth = int(fraction * 10) + 1
            self.stream.write(self.line(fraction) + "\n")
            self.stream.flush()

    def line(self, fraction: float) -> str:
        return f"reading {self.label}: {self.read / 1e6:,.1f} of {self.total / 1e6:,.1f} MB ({fraction:.0%})"

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def read_chunks(
    path: Path, max_bytes: int, chunk_bytes: int | None = None, progress: Callable[[int], None] | None = None
) -> Iterator[str]:
    """The UTF-8 text of `path` (a BOM dropped), decoded `chunk_bytes` (`READ_CHUNK_BYTES`) at a time, with the
    `InputError`s of `sources.read_text_file`, in its order: missing, a directory, larger than `max_bytes` (found
    before anything is read for a regular file), then NUL bytes or invalid UTF-8 (text stops at the first problem,
    which is raised once the size is known to be within the limit). `progress(n)` gets the bytes of each chunk."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give the text files inside it")
    chunk_bytes = chunk_bytes or READ_CHUNK_BYTES
    try:
        if path.is_file() and path.stat().st_size > max_bytes:
            raise _too_large(path, max_bytes)
        with path.open("rb") as f:
            yield from _decoded(path, f, max_bytes, chunk_bytes, progress)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc


def _too_large(path: Path, max_bytes: int) -> InputError:
    return InputError(
        f"{path} is larger than the maximum document size ({max_bytes / 1e6:,.6g} MB); "
        f"set {sources.MAX_DOCUMENT_ENV} to read it, or split it"
    )


def _decoded(
    path: Path, f: BinaryIO, max_bytes: int, chunk_bytes: int, progress: Callable[[int], None] | None
) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    size = newlines = 0
    first = True
    problem: InputError | None = None  # the first NUL or invalid UTF-8: raised once the size is known
    while True:
        data = f.read(min(chunk_bytes, max_bytes + 1 - size))
        size += len(data)
        if size > max_bytes:
            raise _too_large(path, max_bytes)
        if progress and data:
            progress(len(data))
        if problem is None and b"\x00" in data:
            problem = InputError(
                f"{path} looks like a binary file (it contains NUL bytes); only text files can be read"
            )
        if problem is None:
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(data, not data)
            except UnicodeDecodeError as exc:
                start = size - len(data) - pending + exc.start  # the byte in the file
                line = newlines + exc.object[: exc.start].count(b"\n") + 1
                problem = InputError(f"{path} is not valid UTF-8 (byte {start}, line {line}); convert it to UTF-8")
            else:
                if first and text:
                    text, first = text.removeprefix("\ufeff"), False  # a byte order mark is no text
                newlines += text.count("\n")
                if text:
                    yield text
        if not data:
            if problem is not None:
                raise problem
            return


@dataclass
class Document:
    """What reading a file in pieces keeps: its analysis (as `sources.analyse` of the whole text), the SHA-256 of
    its text (as `sources.sha256`) and its size in bytes."""

    analysed: sources.Analysed
    sha256: str
    bytes: int


def read_document(
    path: Path,
    tokenizer: str,
    max_bytes: int | None = None,
    progress: Callable[[int], None] | None = None,
    piece_chars: int | None = None,
    chunk_bytes: int | None = None,
    drop_secrets: bool = True,
) -> Document:
    """Read and analyse `path` in pieces (see the module's docstring): exactly `sources.analyse` of its whole text,
    with the errors of `sources.read_text_file`. At most `max_bytes` (default `sources.max_document_bytes()`).
    With `drop_secrets` off (eval: nothing is kept), sentences holding a secret stay and none is looked for."""
    limit = sources.max_document_bytes() if max_bytes is None else max_bytes
    digest = hashlib.sha256()
    size = 0

    def counted(n: int) -> None:
        nonlocal size
        size += n
        if progress:
            progress(n)

    def hashed() -> Iterator[str]:
        for text in read_chunks(path, limit, chunk_bytes, counted):
            digest.update(text.encode("utf-8", "surrogatepass"))
            yield text

    acc = _Accumulator()
    if tokenizer == "prose":
        for batch in prose_batches(hashed(), piece_chars):
            _analyse_prose(batch, acc, drop_secrets)
    else:
        for batch in line_batches(hashed(), piece_chars):
            _analyse_lines(batch, acc, drop_secrets)
    return Document(acc.result(), digest.hexdigest(), size)


def read_corpus_document(path: Path, tokenizer: str, progress: Callable[[int], None] | None = None) -> Document:
    """`read_document` for a corpus file (build): any size, but a regular file and never a credentials file (as
    `sources.read_corpus_file`)."""
    sources.refuse_secret_file(path)
    if path.exists() and not path.is_dir() and not path.is_file():
        raise InputError(f"{path} is not a regular file (a device, pipe or socket); give a text file")
    return read_document(path, tokenizer, max_bytes=1 << 62, progress=progress)


def analyse_pausing(text: str, tokenizer: str, pause: Callable[[], None] | None) -> sources.Analysed:
    """`sources.analyse(text, tokenizer)`; with `pause`, a prose text longer than `PAUSE_PIECE_CHARS` is analysed in
    pieces with a pause after each (`analyse_text`: the same result)."""
    if pause is not None and tokenizer == "prose" and len(text) > PAUSE_PIECE_CHARS:
        return analyse_text(text, tokenizer, pause)
    return sources.analyse(text, tokenizer)


def analyse_text(
    text: str, tokenizer: str, pause: Callable[[], None], piece_chars: int | None = None
) -> sources.Analysed:
    """`sources.analyse(text, tokenizer)` (prose: exactly; pretokenized lines are not cleaned of lone surrogates
    here), in pieces of about `piece_chars` (`PAUSE_PIECE_CHARS`) characters, calling `pause()` after each: a learn
    in the server lets a completion that waits go first."""
    piece_chars = piece_chars or PAUSE_PIECE_CHARS
    chunks = (text[i : i + piece_chars] for i in range(0, len(text), piece_chars))
    acc = _Accumulator()
    if tokenizer == "prose":
        for batch in prose_batches(chunks, piece_chars):
            _analyse_prose(batch, acc, True)
            pause()
    else:
        for batch in line_batches(chunks, piece_chars):
            _analyse_lines(batch, acc, True)
            pause()
    return acc.result()


@dataclass
class _Accumulator:
    """Sentences, casing and secrets gathered piece by piece (word strings shared: one object per distinct word)."""

    sentences: list[list[str]] = field(default_factory=list)
    casing: Counter[tuple[str, str]] = field(default_factory=Counter)
    secrets: dict[tuple[int, int, str], None] = field(default_factory=dict)  # (start, end, kind) in the whole text
    words: dict[str, str] = field(default_factory=dict)

    def add(self, sentences: list[list[str]]) -> None:
        """Sentences of normalised tokens (pretokenized: no casing)."""
        share = self.words.setdefault
        self.sentences.extend([share(w, w) for w in sentence] for sentence in sentences)

    def add_tokens(self, sentences: list[list[tokenize.Token]]) -> None:
        """Prose sentences, as `sources.analyse` keeps them: each sentence's normalised tokens, and how each word was
        written where it is not the sentence's first token (casing). One pass over the tokens, read by index (a
        token is a named tuple: surface 0, norm 1, kind 4), as the build reads millions of them."""
        share = self.words.setdefault
        self.sentences.extend([share(t[1], t[1]) for t in sentence] for sentence in sentences)
        self.casing.update([(t[1], t[0]) for sentence in sentences for t in sentence[1:] if t[4] == "word"])

    def secrets_in(self, text: str, offset: int, lo: int, hi: int) -> list[secrets.Secret]:
        """Every secret of `text` (a piece with text around it; `offset`: its place in the whole text); the kinds of
        those overlapping `[lo, hi)`, the region this piece answers for, are noted, each secret once."""
        from store import secrets

        found = secrets.find_secrets(text)
        for s in found:
            if s.end > lo and s.start < hi:
                self.secrets.setdefault((offset + s.start, offset + s.end, s.kind))
        return found

    def result(self) -> sources.Analysed:
        kinds = tuple(kind for _, _, kind in sorted(self.secrets))
        return sources.Analysed(self.sentences, self.casing, kinds)


def _fill(buffer: str, chunks: Iterator[str], size: int) -> tuple[str, bool]:
    """`buffer` with chunks appended until it holds `size` characters; whether the text ended first."""
    parts = [buffer]
    have = len(buffer)
    for text in chunks:
        parts.append(text)
        have += len(text)
        if have >= size:
            return "".join(parts), False
    return "".join(parts), True


@dataclass(frozen=True)
class Batch:
    """Sentences of a text read in pieces: `text[start:end]` is what they were read from, `text` holds some text
    around it (for the secret detectors), and `offset` is `text[0]`'s place in the whole text. Prose: `sentences`
    are the tokenizer's (offsets in `text`), `start` the previous sentence's end and `end` the next one's start
    (as `sources.without_secrets` wants them). Pretokenized: `sentences` is empty; `text[start:end]` is whole lines."""

    text: str
    offset: int
    start: int
    end: int
    sentences: list[list[tokenize.Token]]


def prose_batches(chunks: Iterator[str], piece_chars: int | None = None) -> Iterator[Batch]:
    """Prose sentences of the text `chunks` make up, as `tokenize.sentences` of the whole text gives them, in
    batches cut at sentence starts (see the module's docstring), of about `piece_chars` (`PIECE_CHARS`)."""
    piece_chars = piece_chars or PIECE_CHARS
    buffer, offset = "", 0  # buffer[0] is at `offset` in the whole text
    pos, state, before = 0, tokenize.ScanState(), 0  # where the scan goes on; its line state; last sentence's end
    ended = False
    ahead = 2 * MARGIN_CHARS  # read past the piece: the sentence across its end, then the margin after that
    while True:
        if not ended:
            buffer, ended = _fill(buffer, chunks, pos + piece_chars + ahead)
        stop = pos + piece_chars if not ended else len(buffer) + 1
        found, resume, next_state = tokenize.sentences_from(buffer, pos, state, stop)
        if not ended and (resume is None or resume > len(buffer) - MARGIN_CHARS):
            # a sentence runs on past the margin, or to the end of what was read (the scan then gives no place to
            # go on from, which is not the end of the text): read further for this piece only, then scan it again
            # (the pieces after it keep their size: a piece that grew for good made every later pause come later)
            ahead *= 2
            continue
        ahead = 2 * MARGIN_CHARS
        yield Batch(buffer, offset, before, len(buffer) if resume is None else resume, found)
        if resume is None:
            return
        before = found[-1][-1].end if found else before
        keep = max(0, min(before, resume) - OVERLAP_CHARS)
        buffer, offset = buffer[keep:], offset + keep
        pos, before, state = resume - keep, before - keep, next_state


def line_batches(chunks: Iterator[str], piece_chars: int | None = None) -> Iterator[Batch]:
    """Whole lines of the text `chunks` make up, in batches cut after a newline, of about `piece_chars`."""
    piece_chars = piece_chars or PIECE_CHARS
    buffer, offset, start = "", 0, 0  # buffer[:start]: already given, kept as context for the secret detectors
    ended = False
    while True:
        if not ended:
            buffer, ended = _fill(buffer, chunks, start + piece_chars + MARGIN_CHARS)
        cut = len(buffer) if ended else buffer.rfind("\n", start, len(buffer) - MARGIN_CHARS) + 1
        if cut <= start and not ended:
            piece_chars *= 2  # one line runs on past the margin: read more
            continue
        yield Batch(buffer, offset, start, cut, [])
        if ended:
            return
        keep = max(0, cut - OVERLAP_CHARS)
        buffer, offset, start = buffer[keep:], offset + keep, cut - keep


def _analyse_prose(batch: Batch, acc: _Accumulator, drop_secrets: bool) -> None:
    """As `sources.analyse` in prose mode, for one batch."""
    near = acc.secrets_in(batch.text, batch.offset, batch.start, batch.end) if drop_secrets else []
    found = batch.sentences
    kept = sources.without_secrets(batch.text, found, near, batch.start, batch.end) if near and found else found
    acc.add_tokens(kept)


def _analyse_lines(batch: Batch, acc: _Accumulator, drop_secrets: bool) -> None:
    """As `sources.analyse` in pretokenized mode (a line a sentence), for one batch."""
    start, end = batch.start, batch.end
    piece = batch.text[start:end]
    near = acc.secrets_in(batch.text, batch.offset, start, end) if drop_secrets else []
    clipped = [
        dataclasses.replace(s, start=max(s.start, start) - start, end=min(s.end, end) - start)
        for s in near
        if s.end > start and s.start < end
    ]
    acc.add(tokenize.pretokenized_sentences(sources.blank_secret_lines(piece, clipped) if clipped else piece))
