"""What models and blends derive from a vocabulary's word list, computed once per list and shared.

A model's vocabulary is a plain list of words (`NgramModel.vocabulary_words`, `NeuralLM.words`); a `Blend` needs each
reference list's word -> position index and its sorted order (prefix lookups by bisection), and a document cache needs
the same index. For 30,000 words these cost tens of milliseconds, and after a learn that adds a word every consumer
would need them again at once, on the completion that follows. `SharedWordLists` keeps them by the list's identity
(the list is held, so its id stays its own, and checked by length too: a list grown in place is a new one), for the
latest few lists, and derives a list that extends one it holds (a count store's vocabulary only appends the words a
learn added) from that one: an index copy and a few insertions instead of a rebuild.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections import OrderedDict

import numpy as np

SHARED_WORD_LISTS = 6
"""Word lists whose index and sorted order are kept (about 4 MB each for 30,000 words): the store's vocabulary and the
one before (while two threads may differ for a moment), a neural model's, the user layer's and the one before (while
a rebuilt layer is readied), and one to spare. With 4, a learn that added words pushed the neural model's or the user
layer's out, and the next completion rebuilt it from scratch (~3 ms for 20,000 words)."""


class WordListIndex:
    """A word list's derived forms: `position[word]` is its place in the list; `sorted_words` are its words in code
    point order and `sorted_positions[i]` is where `sorted_words[i]` sits in the list (both made when first asked
    for: a membership test needs only `position`)."""

    def __init__(
        self, words: list[str], position: dict[str, int], ordered: tuple[list[str], np.ndarray] | None = None
    ) -> None:
        self.position = position
        self._words = words
        self._ordered = ordered

    def _order(self) -> tuple[list[str], np.ndarray]:
        if self._ordered is None:
            words = self._words
            order = sorted(range(len(words)), key=words.__getitem__)
            self._ordered = ([words[i] for i in order], np.asarray(order, dtype=np.int64))
        return self._ordered

    @property
    def sorted_words(self) -> list[str]:
        return self._order()[0]

    @property
    def sorted_positions(self) -> np.ndarray:
        return self._order()[1]

    def with_prefix(self, prefix: str) -> np.ndarray:
        """Positions in the list of the words starting with `prefix` (all of them for ""), in sorted-word order."""
        sorted_words, sorted_positions = self._order()
        if not prefix:
            return sorted_positions
        lo = bisect_left(sorted_words, prefix)
        hi = bisect_left(sorted_words, prefix + "\U0010ffff", lo)
        return sorted_positions[lo:hi]


def build_index(words: list[str]) -> WordListIndex:
    """The index of `words` (distinct words), from scratch."""
    return WordListIndex(words, {w: i for i, w in enumerate(words)})


def extend_index(old: WordListIndex, old_length: int, words: list[str]) -> WordListIndex:
    """The index of `words`, whose first `old_length` words are the list `old` indexes: the new words are added
    (the same index `build_index(words)` gives)."""
    position = dict(old.position)
    for i, word in enumerate(words[old_length:], start=old_length):
        position[word] = i
    if old._ordered is None:
        return WordListIndex(words, position)
    new_order = sorted(range(old_length, len(words)), key=words.__getitem__)
    at = [bisect_left(old.sorted_words, words[i]) for i in new_order]
    sorted_words = list(old.sorted_words)
    for shift, (where, i) in enumerate(zip(at, new_order, strict=True)):
        sorted_words.insert(where + shift, words[i])
    sorted_positions = np.insert(old.sorted_positions, at, np.asarray(new_order, dtype=np.int64))
    return WordListIndex(words, position, (sorted_words, sorted_positions))


class SharedWordLists:
    """`WordListIndex` of the latest `size` word lists, by the lists' identity (thread-safe)."""

    def __init__(self, size: int = SHARED_WORD_LISTS) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[int, tuple[list[str], int, WordListIndex]] = OrderedDict()

    def index(self, words: list[str]) -> WordListIndex:
        """The index of `words` (a list of distinct words; not to be changed in place while it is in use)."""
        with self._lock:
            entry = self._entries.get(id(words))
            if entry is not None and entry[0] is words and entry[1] == len(words):
                self._entries.move_to_end(id(words))
                return entry[2]
            base = self._longest_prefix(words)
        derived = build_index(words) if base is None else extend_index(base[2], base[1], words)
        with self._lock:
            self._entries[id(words)] = (words, len(words), derived)
            self._entries.move_to_end(id(words))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return derived

    def _longest_prefix(self, words: list[str]) -> tuple[list[str], int, WordListIndex] | None:
        """A kept list (as it was when indexed) that `words` extends, the longest; None when there is none."""
        best = None
        for held, length, derived in self._entries.values():
            if length < len(words) and (best is None or length > best[1]) and words[:length] == held[:length]:
                best = (held, length, derived)
        return best


SHARED = SharedWordLists()
"""The process's shared word-list indexes (every Blend and document cache uses them)."""
