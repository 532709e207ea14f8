"""Candidate corrections for one sentence: small named generators, each proposing edits of one kind.

An `Edit` replaces the tokens `[start, stop)` of a sentence with `tokens`; every generator states its edits that
way, so an insertion before token i replaces token i with (new, token i), a deletion replaces it with nothing and a
transposition replaces two tokens with the same two swapped. `lm_core.oddities` scores them with a language model
(Bryant and Briscoe 2018: generate candidates for each position, keep the ones the model prefers by a margin).

Kinds: confusion (a word of a confusion set), doubled (a repeated word), article (a/an/the and other determiners
substituted, inserted or deleted), preposition (a closed set: substituted, inserted or deleted), inflection
(another form of the same lemma, from lemminflect's tables), transposition (two adjacent words swapped), missing
word (a common function word inserted), spelling (a known word one edit away).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from lm_core.morphology import Morphology

CONFUSION, DOUBLED, ARTICLE, PREPOSITION = "confusion", "doubled", "article", "preposition"
INFLECTION, TRANSPOSITION, MISSING_WORD, SPELLING = "inflection", "transposition", "missing word", "spelling"
MISSPELLING = "misspelling"
KINDS: tuple[str, ...] = (
    CONFUSION, DOUBLED, ARTICLE, PREPOSITION, INFLECTION, TRANSPOSITION, MISSING_WORD, SPELLING, MISSPELLING,
)  # fmt: skip

CONFUSION_SETS: tuple[tuple[str, ...], ...] = (
    ("their", "there", "they're"), ("its", "it's"), ("your", "you're"), ("whose", "who's"), ("then", "than"),
    ("to", "too", "two"), ("affect", "effect"), ("lose", "loose"), ("accept", "except"), ("advice", "advise"),
    ("weather", "whether"), ("quite", "quiet"), ("principal", "principle"), ("peace", "piece"), ("passed", "past"),
    ("were", "where", "we're"), ("has", "have"), ("is", "are"), ("was", "were"), ("a", "an"), ("of", "off"),
    ("breath", "breathe"), ("choose", "chose"), ("fewer", "less"),
)  # fmt: skip
VALID_DOUBLES = frozenset({"had", "that"})
"""Words that may stand twice in a row in good English ("she had had enough", "that that is")."""

DETERMINER_SETS: tuple[tuple[str, ...], ...] = (
    ("a", "an", "the"), ("this", "these"), ("that", "those"), ("much", "many"), ("less", "fewer"),
    ("another", "other"), ("every", "all"),
)  # fmt: skip
ARTICLES: tuple[str, ...] = ("a", "an", "the")
PREPOSITIONS: tuple[str, ...] = (
    "of", "in", "to", "for", "with", "on", "at", "from", "by", "about", "into", "over", "after", "through",
    "between", "during", "against", "under", "without", "towards",
)  # fmt: skip
INSERTED_PREPOSITIONS: tuple[str, ...] = ("of", "in", "to", "for", "with", "on", "at", "about")
FUNCTION_WORDS: tuple[str, ...] = ("is", "are", "was", "be", "it", "that", "and", "have", "will", "can", "not", "been")
"""Common words a writer drops (the 'missing word' kind; articles and prepositions have kinds of their own)."""
NO_INSERT_AFTER = frozenset({*ARTICLES, "this", "these", "that", "those", "my", "your", "his", "her", "its", "our"})
"""An article is not inserted right after a determiner or possessive."""
_LETTERS = "abcdefghijklmnopqrstuvwxyz'"
MISSPELLING_MIN_LETTERS = 3
"""Shorter words are never judged misspelt (abbreviations, interjections)."""


def _groups(sets: tuple[tuple[str, ...], ...]) -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for group in sets:
        for word in group:
            others = table.setdefault(word, [])
            others.extend(w for w in group if w != word and w not in others)
    return {w: tuple(alts) for w, alts in table.items()}


CONFUSIONS = _groups(CONFUSION_SETS)
DETERMINERS = _groups(DETERMINER_SETS)
PREPOSITION_SET = frozenset(PREPOSITIONS)


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace tokens [start, stop) of a sentence with `tokens`; `kind` is one of KINDS."""

    kind: str
    start: int
    stop: int
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class Vocabulary:
    """What the generators may propose: `known(word)` (the model's vocabulary, a user's learned words included),
    `near(word)` (words common enough to be offered as a spelling correction one edit from `word`, e.g. a
    `NeighbourIndex`), where the model has counts, `seen_pair(a, b)` (the text the model learned from has `a`
    followed by `b`), and `spell(word)`, the corrections of a misspelt word (e.g. a `Speller`; default: `near`)."""

    known: Callable[[str], bool]
    near: Callable[[str], Sequence[str]]
    seen_pair: Callable[[str, str], bool] | None = None
    spell: Callable[[str], Sequence[str]] | None = None


Generator = Callable[[Sequence[str], int, Vocabulary], Iterator[Edit]]
"""(sentence tokens, position, vocabulary) -> the edits of one kind at that position."""


def confusion_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """Another word of token i's confusion set (their/there/they're, then/than, ...)."""
    for other in CONFUSIONS.get(tokens[i], ()):
        yield Edit(CONFUSION, i, i + 1, (other,))


def doubled_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """Drop token i when it repeats the token before it ("the the")."""
    if i > 0 and tokens[i - 1] == tokens[i] and tokens[i] not in VALID_DOUBLES:
        yield Edit(DOUBLED, i, i + 1, ())


def article_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """Articles and determiners: token i swapped within its set (a/an/the, this/these, much/many...), an article
    dropped, or an article inserted before token i."""
    yield from article_changes(tokens, i, vocab)
    yield from article_insertions(tokens, i, vocab)


def article_changes(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """`article_edits` that change token i (swapped within its set, or dropped)."""
    word = tokens[i]
    for other in DETERMINERS.get(word, ()):
        if (word, other) not in (("a", "an"), ("an", "a")):  # a/an is a confusion set of its own
            yield Edit(ARTICLE, i, i + 1, (other,))
    if word in ARTICLES:
        yield Edit(ARTICLE, i, i + 1, ())


def article_insertions(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """`article_edits` that insert an article before token i (not itself an article)."""
    word = tokens[i]
    if word not in ARTICLES and _is_plain_word(word) and (i == 0 or tokens[i - 1] not in NO_INSERT_AFTER):
        for article in ARTICLES:
            yield Edit(ARTICLE, i, i + 1, (article, word))


def preposition_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """Prepositions (a closed set): token i swapped for another or dropped, or one inserted before token i."""
    yield from preposition_changes(tokens, i, vocab)
    yield from preposition_insertions(tokens, i, vocab)


def preposition_changes(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """`preposition_edits` that change token i (swapped for another preposition, or dropped)."""
    word = tokens[i]
    if word in PREPOSITION_SET:
        for other in PREPOSITIONS:
            if other != word:
                yield Edit(PREPOSITION, i, i + 1, (other,))
        yield Edit(PREPOSITION, i, i + 1, ())


def preposition_insertions(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """`preposition_edits` that insert a preposition before token i (not itself one, nor after one)."""
    word = tokens[i]
    if word not in PREPOSITION_SET and _is_plain_word(word) and i > 0 and tokens[i - 1] not in PREPOSITION_SET:
        for preposition in INSERTED_PREPOSITIONS:
            yield Edit(PREPOSITION, i, i + 1, (preposition, word))


def inflection_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """Another inflection of token i's lemma: noun number, verb form, comparative/superlative."""
    for form in inflections(tokens[i]):
        if vocab.known(form):
            yield Edit(INFLECTION, i, i + 1, (form,))


def transposition_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """Tokens i and i+1 swapped."""
    if (
        i + 1 < len(tokens)
        and _is_plain_word(tokens[i])
        and _is_plain_word(tokens[i + 1])
        and tokens[i] != tokens[i + 1]
    ):
        yield Edit(TRANSPOSITION, i, i + 2, (tokens[i + 1], tokens[i]))


def missing_word_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """A common function word inserted before token i."""
    if _is_plain_word(tokens[i]):
        for word in FUNCTION_WORDS:
            if word != tokens[i] and (i == 0 or word != tokens[i - 1]):
                yield Edit(MISSING_WORD, i, i + 1, (word, tokens[i]))


def spelling_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """Frequent known words one edit (a letter deleted, inserted, changed, or two swapped) from token i."""
    word = tokens[i]
    if len(word) < 4 or not word.isalpha() or not vocab.known(word):
        return
    for other in vocab.near(word):
        yield Edit(SPELLING, i, i + 1, (other,))


def misspelling_edits(tokens: Sequence[str], i: int, vocab: Vocabulary) -> Iterator[Edit]:
    """Token i is no English word (neither the model nor lemminflect's dictionary knows it): the known words closest
    to it (`Vocabulary.spell`: one edit away, or two for a long word)."""
    word = tokens[i]
    if len(word) < MISSPELLING_MIN_LETTERS or not word.isalpha() or vocab.known(word) or is_dictionary_word(word):
        return
    for other in (vocab.spell or vocab.near)(word):
        yield Edit(MISSPELLING, i, i + 1, (other,))


GENERATORS: dict[str, Generator] = {
    CONFUSION: confusion_edits,
    DOUBLED: doubled_edits,
    ARTICLE: article_edits,
    PREPOSITION: preposition_edits,
    INFLECTION: inflection_edits,
    TRANSPOSITION: transposition_edits,
    MISSING_WORD: missing_word_edits,
    SPELLING: spelling_edits,
    MISSPELLING: misspelling_edits,
}
WITHOUT_INSERTIONS: dict[str, Generator | None] = {
    ARTICLE: article_changes,
    PREPOSITION: preposition_changes,
    MISSING_WORD: None,
}
"""The generators of the kinds that insert words, less their insertions (None: the kind only inserts)."""


def edits_at(
    tokens: Sequence[str], i: int, vocab: Vocabulary, kinds: frozenset[str] | Sequence[str], insertions: bool = True
) -> list[Edit]:
    """Every edit of the given kinds at position i, each replacement proposed once (the first kind names it);
    without `insertions`, none that inserts a word before token i (the same list less those: no edit that changes
    tokens is ever named like an insertion)."""
    seen: set[tuple[int, tuple[str, ...]]] = set()
    out: list[Edit] = []
    for kind in KINDS:
        if kind not in kinds:
            continue
        generate = GENERATORS[kind] if insertions else WITHOUT_INSERTIONS.get(kind, GENERATORS[kind])
        if generate is None:
            continue
        for edit in generate(tokens, i, vocab):
            key = (edit.stop, edit.tokens)
            if key not in seen and edit.tokens != tuple(tokens[edit.start : edit.stop]):
                seen.add(key)
                out.append(edit)
    return out


@functools.cache
def _morphology() -> Morphology:
    return Morphology.load()


@functools.lru_cache(maxsize=8_192)
def inflections(word: str) -> tuple[str, ...]:
    """The other inflected forms of every lemma `word` can be (lemminflect's, from the shipped table
    `lm_core.morphology`; lower case, no duplicates)."""
    return _morphology().forms(word)


def is_dictionary_word(word: str) -> bool:
    """The dictionary (lemminflect's, from the shipped table) knows `word` as a form of some lemma."""
    return _morphology().known(word)


@functools.lru_cache(maxsize=65_536)
def one_edit_away(word: str) -> tuple[str, ...]:
    """Every lower-case string one deletion, insertion, substitution or adjacent transposition from `word`."""
    splits = [(word[:k], word[k:]) for k in range(len(word) + 1)]
    out: dict[str, None] = {}
    for left, right in splits:
        if right:
            out[left + right[1:]] = None
            for c in _LETTERS:
                out[left + c + right[1:]] = None
        if len(right) > 1:
            out[left + right[1] + right[0] + right[2:]] = None
        for c in _LETTERS:
            out[left + c + right] = None
    out.pop(word, None)
    return tuple(out)


class NeighbourIndex:
    """Words one edit (a letter deleted, inserted or changed, two adjacent letters swapped) from a query, among a
    fixed word list: every word is filed under itself and each of its one-letter deletions (SymSpell's trick), so
    a query looks up only its own deletions, not every possible edit."""

    def __init__(self, words: Iterable[str]) -> None:
        self._index: dict[str, list[str]] = {}
        self.add(words)

    def add(self, words: Iterable[str]) -> None:
        """File more words (not already filed): the index then answers as one built over all of them."""
        for word in words:
            for key in {word, *_deletions(word)}:
                self._index.setdefault(key, []).append(word)

    def __call__(self, word: str) -> tuple[str, ...]:
        found: dict[str, None] = {}
        for key in {word, *_deletions(word)}:
            for other in self._index.get(key, ()):
                if other != word and _one_edit(word, other):
                    found[other] = None
        return tuple(found)


class Speller:
    """The corrections of a misspelt word among a fixed word list: the words one edit away (a letter deleted,
    inserted or changed, two adjacent letters swapped: the optimal string alignment distance), or, when there is
    none and the word has at least `TWO_EDITS_LETTERS` letters, the words two edits away; at most `limit`, in the
    list's order (rapidfuzz's matcher, in C++, over the whole list)."""

    TWO_EDITS_LETTERS = 6

    def __init__(self, words: Iterable[str], limit: int = 8) -> None:
        self._words = list(words)
        self._limit = limit
        self._cache: dict[str, tuple[str, ...]] = {}

    def __call__(self, word: str) -> tuple[str, ...]:
        found = self._cache.get(word)
        if found is None:
            found = self._closest(word)
            if len(self._cache) > 65_536:
                self._cache.clear()
            self._cache[word] = found
        return found

    def _closest(self, word: str) -> tuple[str, ...]:
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        most = 2 if len(word) >= self.TWO_EDITS_LETTERS else 1
        matches = process.extract(word, self._words, scorer=OSA.distance, score_cutoff=most, limit=None)
        if not matches:
            return ()
        nearest = min(distance for _, distance, _ in matches)
        closest = sorted((index, w) for w, distance, index in matches if distance == nearest and w != word)
        return tuple(w for _, w in closest[: self._limit])


def _deletions(word: str) -> list[str]:
    return [word[:k] + word[k + 1 :] for k in range(len(word))]


def _one_edit(a: str, b: str) -> bool:
    """a and b differ by one deletion, insertion, substitution or adjacent transposition."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:k] + long[k + 1 :] == short for k in range(len(long)))


def warm() -> None:
    """Load the inflection table now, so the first check does not wait for it."""
    _morphology()


def _is_plain_word(token: str) -> bool:
    return token.isalpha()
