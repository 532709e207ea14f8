"""Metrics over any `LanguageModel`: per-token scores and perplexity.

A token sequence here is flat and holds `</s>` at every sentence end; the context restarts with `<s>` after each
`</s>`. Scores are natural logs; perplexity is exp of the mean negative log-likelihood per scored token.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from lm_core.model import LanguageModel
from lm_core.vocab import BOS, EOS


@dataclass(frozen=True, slots=True)
class TokenScore:
    word: str
    logprob: float  # natural log of P(word | context)
    position: int  # index in the scored token sequence


def contexts(tokens: Sequence[str], max_context: int | None) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(word, context) for each token; contexts start with `<s>` and keep at most `max_context` tokens."""
    history: list[str] = [BOS]
    for word in tokens:
        context = history if max_context is None else history[max(0, len(history) - max_context) :]
        yield word, tuple(context)
        history = [BOS] if word == EOS else [*history, word]
        if max_context is not None and len(history) > max_context + 1:
            history = history[len(history) - max_context :]  # drops the oldest (and so the <s>)


def score_tokens(model: LanguageModel, tokens: Sequence[str]) -> list[TokenScore]:
    """The natural-log probability of every token given the ones before it (see the module docstring)."""
    max_context = None if model.order is None else model.order - 1
    return [
        TokenScore(word, model.logprob(word, context), i)
        for i, (word, context) in enumerate(contexts(tokens, max_context))
    ]


def sentence_scores(model: LanguageModel, tokens: Sequence[str]) -> list[float]:
    """The natural-log probabilities `score_tokens` gives, from a model's batched `sentence_logprobs` when it has
    one (a neural model or a blend: one network call per sentence instead of one per token)."""
    batched = getattr(model, "sentence_logprobs", None)
    if batched is not None:
        return list(batched(tokens))
    return [s.logprob for s in score_tokens(model, tokens)]


def perplexity_of_scores(logprobs: Iterable[float]) -> float:
    """exp(-mean(logprobs)); inf if any is -inf; nan for no scores."""
    values = list(logprobs)
    if not values:
        return math.nan
    return math.exp(-math.fsum(values) / len(values))


def perplexity(model: LanguageModel, tokens: Sequence[str]) -> float:
    """Perplexity of `model` on `tokens`: exp of the mean negative natural-log likelihood per token."""
    return perplexity_of_scores(s.logprob for s in score_tokens(model, tokens))
