"""Vocabulary: a two-way mapping between words and integer ids, with an `<unk>` cutoff.

Ids 0, 1 and 2 are always `<unk>`, `<s>` and `</s>`; other words get the next free id in the order they are added,
so ids are stable as a vocabulary grows (the count store relies on this).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
SPECIAL = frozenset({BOS, EOS, UNK})
"""The tokens that stand for no written word: sentence start and end, and every out-of-vocabulary word."""


def is_word(token: str) -> bool:
    """True for a token a keyboard would suggest: it has an alphanumeric character and is not <s>, </s>, <unk>."""
    return token not in SPECIAL and any(ch.isalnum() for ch in token)


class Vocab:
    """Words <-> ids. `id_of` maps unknown words to `<unk>`'s id; `add` assigns new ids."""

    def __init__(self, words: Iterable[str] = ()) -> None:
        self._words: list[str] = [UNK, BOS, EOS]
        self._ids: dict[str, int] = {UNK: UNK_ID, BOS: BOS_ID, EOS: EOS_ID}
        for word in words:
            self.add(word)

    @classmethod
    def from_counts(cls, counts: Counter[str], min_count: int = 1) -> Vocab:
        """Keep words seen at least `min_count` times (most frequent first); the rest become `<unk>`."""
        kept = [w for w, c in sorted(counts.items(), key=lambda wc: (-wc[1], wc[0])) if c >= min_count]
        return cls(kept)

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def add(self, word: str) -> int:
        """The id of `word`, assigning the next free id if it is new."""
        wid = self._ids.get(word)
        if wid is None:
            wid = len(self._words)
            self._ids[word] = wid
            self._words.append(word)
        return wid

    def extend(self, words: list[str]) -> bool:
        """Give `words`, in order, the next free ids at once (a store's vocabulary read in bulk); False, changing
        nothing, if one of them is already known or comes twice."""
        start = len(self._words)
        fresh = dict(zip(words, range(start, start + len(words)), strict=True))
        if len(fresh) != len(words) or not self._ids.keys().isdisjoint(fresh):
            return False
        self._ids.update(fresh)
        self._words.extend(words)
        return True

    def id_of(self, word: str) -> int:
        """The id of `word`, or `<unk>`'s id if it is not in the vocabulary."""
        return self._ids.get(word, UNK_ID)

    def get(self, word: str) -> int | None:
        """The id of `word`, or None."""
        return self._ids.get(word)

    def retire(self, ids: list[int], placeholder: str) -> None:
        """Forget the words at `ids`: each id keeps its place (ids are never reused) under `placeholder.format(id)`."""
        for wid in ids:
            del self._ids[self._words[wid]]
            self._words[wid] = placeholder.format(wid)
            self._ids[self._words[wid]] = wid

    def word(self, wid: int) -> str:
        return self._words[wid]

    @property
    def index(self) -> Mapping[str, int]:
        """Word -> id, for every word (do not modify)."""
        return self._ids

    @property
    def words(self) -> list[str]:
        """All words, indexed by id (do not modify)."""
        return self._words
