"""The interface every language model in nextword satisfies.

All probabilities cross this boundary either as plain probabilities (`Prediction.prob`) or as natural logarithms
(`LanguageModel.logprob`). log10 appears only at the ARPA edge (`store.arpa`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

Context = tuple[str, ...]
"""Tokens before the predicted word, oldest first; may start with "<s>" at a sentence start."""

UNBOUNDED_CONTEXT = 64
"""Tokens of context given to a model of unbounded order (`order` None: a recurrent neural model, a blend)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """One candidate next word and its probability (a probability, not a log)."""

    word: str
    prob: float


@runtime_checkable
class LanguageModel(Protocol):
    """A conditional distribution over the next token.

    `order` is the n-gram order (None for unbounded context, as in an RNN). `logprob` is a natural log.
    `predict` returns the k most probable next words that start with `prefix`, most probable first, with
    probabilities equal to `exp(logprob(word, context))`.
    """

    order: int | None

    def logprob(self, word: str, context: Context) -> float: ...

    def predict(self, context: Context, k: int = 10, prefix: str = "") -> list[Prediction]: ...


def top_predictions(
    candidates: np.ndarray, scores: Callable[[np.ndarray], np.ndarray], words: list[str], k: int, log: bool = False
) -> list[Prediction]:
    """The k most probable of `candidates` (word ids) as `Prediction`s, best first, ties broken by word.
    `scores(candidates)` gives their probabilities, or with `log` their natural-log probabilities; candidates of
    probability 0 are left out."""
    if len(candidates) == 0:
        return []
    ranked = rank_top_k(scores(candidates), candidates, words, k)
    if log:
        return [Prediction(words[w], math.exp(lp)) for lp, w in ranked if lp > -math.inf]
    return [Prediction(words[w], p) for p, w in ranked if p > 0]


KTH_SAMPLE_STRIDE = 32
"""`kth_largest` first takes the k-th largest of every this many values (a lower bound) when the array is long."""


def kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest of `values` (1 <= k <= len(values); no NaN), counting repeats: what
    `np.partition(values, len(values) - k)[len(values) - k]` gives. For a long array the k-th largest of a strided
    sample (every `KTH_SAMPLE_STRIDE`-th value) bounds it from below, so only the values at least that large are
    partitioned: ~10x faster for the 30,000-60,000 probabilities of a vocabulary, which a completion ranks."""
    n = len(values)
    if n >= 4 * KTH_SAMPLE_STRIDE * k:
        sample = values[::KTH_SAMPLE_STRIDE]
        bound = np.partition(sample, len(sample) - k)[len(sample) - k]
        values = values[values >= bound]  # the k largest are all here (the sample's k are at least the bound)
        n = len(values)
    return np.partition(values, n - k)[n - k]


def rank_top_k(scores: np.ndarray, ids: np.ndarray | None, words: list[str], k: int) -> list[tuple[float, int]]:
    """The k best (score, id) pairs, best first, ties broken by word (`words[id]`). Only the ids scoring at least
    the k-th best are sorted (every one tied with it included), so ranking stays cheap for a whole vocabulary.
    `ids` None: each score's id is its position (no array of them is made)."""
    if len(scores) > k:
        keep = np.flatnonzero(scores >= kth_largest(scores, k))
        scores, ids = scores[keep], (keep if ids is None else ids[keep])
    elif ids is None:
        ids = np.arange(len(scores))
    ranked = sorted(zip(scores.tolist(), ids.tolist(), strict=True), key=lambda si: (-si[0], words[si[1]]))
    return ranked[:k]
