"""English inflections and a dictionary of known words, from a compact table shipped with nextword.

The table (`data/inflections.tsv.gz`, ~0.5 MB) holds, for every lower-case word of lemminflect's dictionary
(https://github.com/bjascob/LemmInflect, MIT; its data derive from the SPECIALIST Lexicon of the U.S. National
Library of Medicine), the inflected forms of every lemma it can be, as `inflections` returns them. It is made once
from lemminflect's own lookups (`python -m lm_core.morphology --rebuild`, needs `pip install lemminflect`), so
nextword gives exactly lemminflect's answers without loading its tables at run time: those are Python dicts of
dicts of tuples, about 40 MB resident; this table is one sorted text of ~2 MB searched by bisection.
"""

from __future__ import annotations

import gzip
import sys
from array import array
from itertools import accumulate, pairwise
from pathlib import Path

TABLE = Path(__file__).with_name("data") / "inflections.tsv.gz"
HEADER = "# word<TAB>the forms of its lemmas (space-separated; lemminflect {version}, AUX left out)\n"


class Morphology:
    """The shipped table: `forms(word)` and `known(word)`, both for a lower-case word. Read-only once loaded, so
    one instance serves every thread."""

    def __init__(self, text: str) -> None:
        lines = [line for line in text.split("\n") if line and not line.startswith("#")]
        keys = [line[: line.index("\t")] for line in lines]
        if any(a >= b for a, b in pairwise(keys)):
            raise ValueError("the inflection table is not sorted by word")
        self._blob = "\n".join(lines) + "\n"
        # where each line starts (one more: the end), and where its word ends; array('q'): 8 bytes an entry, and
        # indexing gives Python ints (the search's slices)
        self._starts = array("q", accumulate((len(line) + 1 for line in lines), initial=0))
        self._keys_end = array("q", (start + len(key) for start, key in zip(self._starts, keys, strict=False)))

    @classmethod
    def load(cls, path: Path = TABLE) -> Morphology:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return cls(f.read())

    def __len__(self) -> int:
        return len(self._keys_end)

    def _find(self, word: str) -> int | None:
        """The line of `word` (a binary search over the sorted keys), or None."""
        blob, starts, ends = self._blob, self._starts, self._keys_end
        lo, hi = 0, len(ends)
        while lo < hi:
            mid = (lo + hi) // 2
            key = blob[starts[mid] : ends[mid]]
            if key < word:
                lo = mid + 1
            elif key > word:
                hi = mid
            else:
                return mid
        return None

    def known(self, word: str) -> bool:
        """Whether the dictionary knows `word` as a form of some lemma (lemminflect's `getAllLemmas(word)` is not
        empty)."""
        return self._find(word.lower()) is not None

    def forms(self, word: str) -> tuple[str, ...]:
        """The other inflected forms of every lemma `word` can be, lower case, alphabetic, no duplicates, `word`
        itself left out; () for a word the dictionary does not know."""
        line = self._find(word.lower())
        if line is None:
            return ()
        text = self._blob[self._keys_end[line] + 1 : self._starts[line + 1] - 1]
        return tuple(f for f in text.split(" ") if f and f != word)


def lemminflect_forms(word: str) -> tuple[str, ...] | None:
    """What the table holds for `word`, from lemminflect itself: the lower-case alphabetic forms of every lemma
    (not AUX) of `word`, in lemminflect's order, `word` among them; None when lemminflect does not know `word`."""
    import lemminflect

    lemmas = lemminflect.getAllLemmas(word)
    if not lemmas:
        return None
    forms: dict[str, None] = {}
    for upos, spellings in lemmas.items():
        if upos == "AUX":
            continue
        for lemma in spellings:
            for group in lemminflect.getAllInflections(lemma, upos=upos).values():
                forms.update((f.lower(), None) for f in group)
    return tuple(f for f in forms if f.isalpha())


def dictionary_words() -> list[str]:
    """Every lower-case word lemminflect's `getAllLemmas` answers for (its lookup table's and its overrides')."""
    from lemminflect.core.Lemmatizer import Lemmatizer

    lemmatizer = Lemmatizer()
    words = set(lemmatizer._getLemmaDict()) | set(lemmatizer._getOverridesDict())
    return sorted(w for w in words if w == w.lower() and "\t" not in w and "\n" not in w and " " not in w)


def rebuild(path: Path = TABLE) -> int:
    """Write the table from lemminflect's lookups; the number of words."""
    import lemminflect

    lines = [HEADER.format(version=lemminflect.__version__)]
    for word in dictionary_words():
        forms = lemminflect_forms(word)
        if forms is not None:
            lines.append(f"{word}\t{' '.join(forms)}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as f:
        f.write("".join(lines).encode("utf-8"))
    return len(lines) - 1


if __name__ == "__main__":
    if sys.argv[1:] != ["--rebuild"]:
        sys.exit("usage: python -m lm_core.morphology --rebuild")
    print(f"{rebuild()} words -> {TABLE}")
