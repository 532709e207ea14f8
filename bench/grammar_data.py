"""Learner sentences and planted errors for the grammar-oddity evaluation (`bench/evaluation.py`).

JFLEG (Napoles, Sakaguchi and Tetreault 2017): each source sentence has four corrections. A source token is an
error when at least 2 of the 4 corrections change it (a token replaced or deleted; an insertion marks the tokens on
either side of the gap), as the corpora README says. The kind of an error token is read from the corrections that
change it (the most common kind among them): article, preposition, inflection (another form of the same lemma),
spelling (a word the model does not know, or one letter from the correction), missing word (an insertion), doubled,
confusion (a pair of `CONFUSION_SETS`), other.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lm_core.corrections import ARTICLES, CONFUSIONS, DETERMINERS, PREPOSITION_SET, inflections, one_edit_away

_NO_SPACE_BEFORE = re.compile(r"^(?:[.,;:!?%)\]}]|n't|'s|'re|'ve|'ll|'d|'m)$", re.IGNORECASE)
_NO_SPACE_AFTER = frozenset({"(", "[", "{", "$"})


@dataclass
class LearnerSentence:
    text: str  # the source sentence as prose (spaces before punctuation removed)
    spans: list[tuple[int, int]]  # character span of each source token in `text`
    errors: list[bool]  # per token: changed by at least 2 of the 4 corrections
    kinds: list[str] = field(default_factory=list)  # per error token: its kind ("" for tokens that are fine)


def detokenize(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Space-separated tokens as prose, with each token's character span."""
    text, spans = "", []
    for i, token in enumerate(tokens):
        if i and not _NO_SPACE_BEFORE.match(token) and tokens[i - 1] not in _NO_SPACE_AFTER:
            text += " "
        spans.append((len(text), len(text) + len(token)))
        text += token
    return text, spans


def _edit_kind(source: list[str], target: list[str], known: frozenset[str] | None) -> str:
    """The kind of one correction: source tokens replaced by target tokens (either may be empty)."""
    s = [w.lower() for w in source]
    t = [w.lower() for w in target]
    if not s:
        if any(w in ARTICLES or w in DETERMINERS for w in t):
            return "article"
        return "preposition" if any(w in PREPOSITION_SET for w in t) else "missing word"
    if len(s) == 1 and len(t) == 1:
        a, b = s[0], t[0]
        if b in CONFUSIONS.get(a, ()):
            return "confusion"
        if (a in DETERMINERS or a in ARTICLES) and (b in DETERMINERS or b in ARTICLES):
            return "article"
        if a in PREPOSITION_SET and b in PREPOSITION_SET:
            return "preposition"
        if b in inflections(a) or a in inflections(b):
            return "inflection"
        if (known is not None and a.isalpha() and a not in known) or b in one_edit_away(a):
            return "spelling"
        return "other"
    if not t:
        if len(s) == 1 and (s[0] in ARTICLES or s[0] in DETERMINERS):
            return "article"
        if len(s) == 1 and s[0] in PREPOSITION_SET:
            return "preposition"
        return "other"
    if len(s) == 2 and sorted(s) == sorted(t):
        return "transposition"
    return "other"


def load_jfleg(folder: Path, known: frozenset[str] | None = None) -> list[LearnerSentence]:
    """JFLEG's `dev.src` with the error tokens its four corrections show."""
    sources = (folder / "dev.src").read_text(encoding="utf-8").splitlines()
    refs = [(folder / f"dev.ref{k}").read_text(encoding="utf-8").splitlines() for k in range(4)]
    out = []
    for n, line in enumerate(sources):
        tokens = line.split()
        if not tokens:
            continue
        votes = [0] * len(tokens)
        kinds: list[Counter[str]] = [Counter() for _ in tokens]
        for ref in refs:
            target = ref[n].split() if n < len(ref) else []
            marked: set[int] = set()
            matcher = difflib.SequenceMatcher(
                a=[t.lower() for t in tokens], b=[t.lower() for t in target], autojunk=False
            )
            for op, i1, i2, j1, j2 in matcher.get_opcodes():
                if op == "equal":
                    continue
                kind = _edit_kind(tokens[i1:i2], target[j1:j2], known)
                touched = range(i1, i2) if i2 > i1 else [i for i in (i1 - 1, i1) if 0 <= i < len(tokens)]
                for i in touched:
                    if i not in marked:
                        marked.add(i)
                        kinds[i][kind] += 1
            for i in marked:
                votes[i] += 1
        text, spans = detokenize(tokens)
        errors = [v >= 2 for v in votes]
        labels = [kinds[i].most_common(1)[0][0] if errors[i] else "" for i in range(len(tokens))]
        out.append(LearnerSentence(text, spans, errors, labels))
    return out


@dataclass
class LearnerScore:
    flags: int
    correct: int
    error_tokens: int
    found_tokens: int
    sentences_with_error: int
    sentences_found: int
    per_kind: dict[str, tuple[int, int]]  # kind -> (error tokens, of them touched by a flag)

    @property
    def precision(self) -> float:
        return self.correct / self.flags if self.flags else float("nan")

    @property
    def recall(self) -> float:
        return self.found_tokens / self.error_tokens if self.error_tokens else float("nan")

    @property
    def f05(self) -> float:
        p, r = self.precision, self.recall
        return 1.25 * p * r / (0.25 * p + r) if p + r > 0 else 0.0

    @property
    def sentence_rate(self) -> float:
        return self.sentences_found / self.sentences_with_error if self.sentences_with_error else float("nan")


def score_learner(data: list[LearnerSentence], flags: list[list[tuple[int, int]]]) -> LearnerScore:
    """Flags (character spans per sentence) against the error tokens: a flag is correct when it overlaps an error
    token; recall counts error tokens overlapped by a flag."""
    total = correct = errors = found = with_error = sentences_found = 0
    per_kind: dict[str, list[int]] = {}
    for sentence, spans in zip(data, flags, strict=True):
        hit_tokens: set[int] = set()
        good = False
        for start, end in spans:
            total += 1
            touched = [i for i, (a, b) in enumerate(sentence.spans) if a < end and start < b]
            if not touched:  # a zero-width flag: the token at its position
                touched = [i for i, (a, b) in enumerate(sentence.spans) if a <= start <= b][:1]
            hits = [i for i in touched if sentence.errors[i]]
            if hits:
                correct += 1
                good = True
                hit_tokens.update(hits)
        n_err = sum(sentence.errors)
        errors += n_err
        found += len(hit_tokens)
        if n_err:
            with_error += 1
            sentences_found += good
        for i, kind in enumerate(sentence.kinds):
            if kind:
                entry = per_kind.setdefault(kind, [0, 0])
                entry[0] += 1
                entry[1] += i in hit_tokens
    return LearnerScore(
        total, correct, errors, found, with_error, sentences_found, {k: (v[0], v[1]) for k, v in per_kind.items()}
    )
