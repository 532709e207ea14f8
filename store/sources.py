"""Reading what is learned: files checked for being text, and text turned into sentences and casing counts."""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm_core import tokenize
from store.errors import InputError

BINARY_SNIFF_BYTES = 8192
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Analysed:
    """Text as the store learns it: normalised sentences (each ending with `</s>`) and casing counts."""

    sentences: list[list[str]]
    casing: Counter[tuple[str, str]]  # (normalised word, surface form) -> times written so, not sentence-initially

    @property
    def tokens(self) -> int:
        """Tokens counted, sentence ends included."""
        return sum(len(s) for s in self.sentences)

    @property
    def words(self) -> int:
        """Tokens other than sentence ends."""
        return sum(len(s) - 1 for s in self.sentences)


def read_text_file(path: Path) -> str:
    """The UTF-8 text of `path`, or an `InputError` saying why it cannot be learned (nothing is changed)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give the text files inside it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    return decode_text(data, str(path))


def decode_text(data: bytes, name: str) -> str:
    """Bytes as UTF-8 text (a BOM is dropped); binary data or invalid UTF-8 is an `InputError`."""
    if b"\x00" in data[:BINARY_SNIFF_BYTES] or b"\x00" in data:
        raise InputError(f"{name} looks like a binary file (it contains NUL bytes); only text can be learned")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{name} is not valid UTF-8 (byte {exc.start}, line {line}); convert it to UTF-8") from exc


def analyse(text: str, tokenizer: str) -> Analysed:
    """Split text into sentences for counting; prose mode also records surface forms for the casing table."""
    if tokenizer == "pretokenized":  # lone surrogates (possible in editor text) cannot be stored: replace them
        return Analysed(tokenize.pretokenized_sentences(_SURROGATES.sub("\ufffd", text)), Counter())
    sentences: list[list[str]] = []
    casing: Counter[tuple[str, str]] = Counter()
    for sentence in tokenize.sentences(text):
        sentences.append([t.norm for t in sentence])
        for token in sentence[1:]:
            if token.kind == "word":
                casing[(token.norm, token.surface)] += 1
    return Analysed(sentences, casing)


def pack_stream(stream: np.ndarray) -> bytes:
    """A token-id stream, compressed for the sources table."""
    return zlib.compress(np.asarray(stream, dtype="<i4").tobytes(), 6)


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
