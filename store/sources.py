"""Reading what is learned: files checked for being text, and text turned into sentences and casing counts."""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lm_core import tokenize
from store.errors import InputError

if TYPE_CHECKING:
    from store import secrets

# store.secrets (39 detectors, ~20 ms to compile) is imported by what reads or learns text, not by opening a store: a
# server's first completion does not wait for it (bench/startup.py).

BINARY_SNIFF_BYTES = 8192
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Analysed:
    """Text as the store learns it: normalised sentences (each ending with `</s>`) and casing counts."""

    sentences: list[list[str]]
    casing: Counter[tuple[str, str]]  # (normalised word, surface form) -> times written so, not sentence-initially
    secrets: tuple[str, ...] = ()  # the kind of each secret found (its sentences, or lines, were dropped)

    @property
    def tokens(self) -> int:
        """Tokens counted, sentence ends included."""
        return sum(len(s) for s in self.sentences)

    @property
    def words(self) -> int:
        """Tokens other than sentence ends."""
        return sum(len(s) - 1 for s in self.sentences)


MAX_DOCUMENT_ENV = "NEXTWORD_MAX_DOCUMENT_MB"
DEFAULT_MAX_DOCUMENT_MB = 16.0
_READ_CHUNK = 1 << 20


def max_document_bytes() -> int:
    """The largest file read as one document (learn, score, report, eval, train-neural): `$NEXTWORD_MAX_DOCUMENT_MB`
    megabytes (10^6 bytes), else 16."""
    return megabytes_setting(MAX_DOCUMENT_ENV, DEFAULT_MAX_DOCUMENT_MB, allow_zero=False)


def megabytes_setting(name: str, default: float, allow_zero: bool) -> int:
    """The environment variable `name` read as megabytes (10^6 bytes; `default` when unset), in bytes; a clear
    `InputError` for anything but a finite number above 0 (or 0 itself with `allow_zero`)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return int(default * 1e6)
    try:
        megabytes = float(raw)
    except ValueError:
        megabytes = -1.0
    valid = megabytes >= 0 if allow_zero else megabytes > 0
    if not valid or megabytes == float("inf"):
        wanted = "0 or above" if allow_zero else "above 0"
        raise InputError(f"{name}={raw!r}: give a number of megabytes{',' if allow_zero else ''} {wanted}, e.g. 64")
    return int(megabytes * 1e6)


def read_text_file(path: Path, max_bytes: int | None = None) -> str:
    """The UTF-8 text of `path`, or an `InputError` saying why it cannot be read (nothing is changed).

    At most `max_bytes` (default `max_document_bytes()`) are read: a larger file, or an endless one (`/dev/zero`),
    is refused after reading one byte more than that, in 1 MB chunks."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give the text files inside it")
    limit = max_document_bytes() if max_bytes is None else max_bytes
    chunks: list[bytes] = []
    size = 0
    try:
        with path.open("rb") as f:
            while size <= limit:
                chunk = f.read(min(_READ_CHUNK, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    if size > limit:
        raise InputError(
            f"{path} is larger than the maximum document size ({limit / 1e6:,.6g} MB); "
            f"set {MAX_DOCUMENT_ENV} to read it, or split it"
        )
    return decode_text(b"".join(chunks), str(path))


def read_user_text(path: Path, max_bytes: int | None = None) -> str:
    """`read_text_file` for a document the person wrote (learn, score, report, eval): a file that holds
    credentials by its name, or a symbolic link to one, is refused without being read."""
    refuse_secret_file(path)
    return read_text_file(path, max_bytes)


def read_corpus_file(path: Path) -> str:
    """A corpus file (build, train-neural): any size, but a regular file (not a device or a pipe, which could be
    endless), and never a credentials file."""
    refuse_secret_file(path)
    if path.exists() and not path.is_dir() and not path.is_file():
        raise InputError(f"{path} is not a regular file (a device, pipe or socket); give a text file")
    return read_text_file(path, max_bytes=1 << 62)


def refuse_secret_file(path: Path) -> None:
    """An `InputError` for a file that holds credentials by its name, or a symbolic link to one."""
    from store import secrets

    if secrets.is_secret_path(path):
        raise InputError(f"{path} is a credentials file by its name; nextword never reads such files")


def decode_text(data: bytes, name: str) -> str:
    """Bytes as UTF-8 text (a BOM is dropped); binary data or invalid UTF-8 is an `InputError`."""
    if b"\x00" in data[:BINARY_SNIFF_BYTES] or b"\x00" in data:
        raise InputError(f"{name} looks like a binary file (it contains NUL bytes); only text files can be read")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")  # not utf-8-sig: its error offsets skip the BOM
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{name} is not valid UTF-8 (byte {exc.start}, line {line}); convert it to UTF-8") from exc


def analyse(text: str, tokenizer: str) -> Analysed:
    """Split text into sentences for counting; prose mode also records surface forms for the casing table.

    Secrets (`store.secrets`) are never learned: every sentence a secret overlaps is dropped whole, with the words
    written around the secret in it (in pretokenized mode, every line). A sentence's extent for this runs from the
    end of the previous sentence's last token, or its own line's start if that is later, to the start of the next
    sentence's first token, or its own line's end if that is sooner: so a secret that produces no tokens of its own
    (inside a URL or inline code, say) still drops the sentence written around it on its line.
    """
    from store import secrets

    found = secrets.find_secrets(text)
    kinds = tuple(s.kind for s in found)
    if tokenizer == "pretokenized":  # lone surrogates (possible in editor text) cannot be stored: replace them
        text = _SURROGATES.sub("\ufffd", text)  # one character for one: the secrets' offsets still hold
        if found:
            text = blank_secret_lines(text, found)
        return Analysed(tokenize.pretokenized_sentences(text), Counter(), kinds)
    sentences: list[list[str]] = []
    casing: Counter[tuple[str, str]] = Counter()
    tokenized = tokenize.sentences(text)
    keep = without_secrets(text, tokenized, found) if found else tokenized
    for sentence in keep:
        sentences.append([t.norm for t in sentence])
        for token in sentence[1:]:
            if token.kind == "word":
                casing[(token.norm, token.surface)] += 1
    return Analysed(sentences, casing, kinds)


def without_secrets(
    text: str,
    sentences: list[list[tokenize.Token]],
    found: list[secrets.Secret],
    before_first: int = 0,
    after_last: int | None = None,
) -> list[list[tokenize.Token]]:
    """The sentences that no secret overlaps (see `analyse` for a sentence's extent). `before_first` and
    `after_last` stand for the neighbours of the first and the last sentence where `sentences` are some of a
    text's (`store.streaming` analyses a text piece by piece): the previous sentence's end, the next one's start."""
    starts = [s.start for s in found]
    ends = list(itertools.accumulate((s.end for s in found), max))  # ends[i]: the furthest end among found[:i+1]
    kept = []
    for i, sentence in enumerate(sentences):
        first, last = sentence[0].start, sentence[-1].end
        before = sentences[i - 1][-1].end if i else before_first
        after = sentences[i + 1][0].start if i + 1 < len(sentences) else len(text) if after_last is None else after_last
        lo = max(before, text.rfind("\n", before, first) + 1)
        newline = text.find("\n", last, after)
        hi = after if newline < 0 else newline
        j = bisect.bisect_left(starts, hi)  # the secrets that start before hi: does one of them end after lo?
        if j and ends[j - 1] > lo:
            continue
        kept.append(sentence)
    return kept


def blank_secret_lines(text: str, found: list[secrets.Secret]) -> str:
    """`text` without the lines that a secret overlaps (pretokenized mode: a line is a sentence)."""
    newlines = [m.start() for m in re.finditer("\n", text)]
    drop: set[int] = set()
    for secret in found:  # line i runs from newlines[i - 1] + 1 to newlines[i]
        first = bisect.bisect_left(newlines, secret.start)
        drop.update(range(first, bisect.bisect_left(newlines, secret.end - 1) + 1))
    return "\n".join(line for i, line in enumerate(text.split("\n")) if i not in drop)


def pack_stream(stream: np.ndarray) -> bytes:
    """A token-id stream, compressed for the sources table (zlib level 1: on Reuters' streams 5.8x faster than
    level 6 and 17 % larger; a build spent ~4 % of its time here)."""
    return zlib.compress(np.asarray(stream, dtype="<i4").tobytes(), 1)


def unpack_stream(blob: bytes | None) -> np.ndarray:
    if not blob:
        return np.zeros(0, dtype=np.int64)
    return np.frombuffer(zlib.decompress(blob), dtype="<i4").astype(np.int64)


def pack_casing(casing: Counter[tuple[str, str]]) -> bytes:
    return zlib.compress(json.dumps(sorted([w, s, n] for (w, s), n in casing.items())).encode(), 6)


def unpack_casing(blob: bytes | None) -> Counter[tuple[str, str]]:
    if not blob:
        return Counter()
    return Counter({(w, s): n for w, s, n in json.loads(zlib.decompress(blob))})


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
