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

LN2 = math.log(2.0)
"""Nats in a bit: a natural log divided by it is a log2."""
LN10 = math.log(10.0)
"""Nats in a decimal digit (a ban): a log10 (ARPA files, KenLM) times it is a natural log."""


def to_bits(nats: float) -> float:
    """A natural log (or a difference of natural logs) as a log2, in bits."""
    return nats / LN2


def surprisal_bits(logprob: float) -> float:
    """-log2 P in bits of a natural-log probability; inf for a probability of 0."""
    return -logprob / LN2


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
    many = getattr(model, "logprobs", None)  # an n-gram model: every (word, context) at once, the same floats
    if many is not None:
        return list(many(list(contexts(tokens, None if model.order is None else model.order - 1))))
    return [s.logprob for s in score_tokens(model, tokens)]


Continuation = tuple[Sequence[str], Sequence[str]]
"""(before, after): tokens of one sentence read from `<s>`; `after` are the ones to score, each given `<s>`, `before`
and the tokens of `after` before it."""


def continuation_scores(model: LanguageModel, requests: Sequence[Continuation]) -> list[list[float]]:
    """Natural-log P of each token of each request's `after` (see `Continuation`), all requests at once: from the
    model's batched `score_continuations` when it has one (a neural model or a blend: padded batches of requests
    in one forward pass each), else token by token (contexts cut to the model's order - 1)."""
    batched = getattr(model, "score_continuations", None)
    if batched is not None:
        return [list(scores) for scores in batched(requests)]
    width = None if model.order is None else model.order - 1
    queries: list[tuple[str, tuple[str, ...]]] = []
    for before, after in requests:
        history = [BOS, *before]
        for word in after:
            queries.append((word, tuple(history if width is None else history[max(0, len(history) - width) :])))
            history.append(word)
    many = getattr(model, "logprobs", None)  # an n-gram model: every (word, context) at once, the same floats
    scores = many(queries) if many is not None else [model.logprob(word, context) for word, context in queries]
    out, start = [], 0
    for _, after in requests:
        out.append(list(scores[start : start + len(after)]))
        start += len(after)
    return out


def perplexity_of_scores(logprobs: Iterable[float]) -> float:
    """exp(-mean(logprobs)); inf if any is -inf; nan for no scores."""
    values = list(logprobs)
    if not values:
        return math.nan
    return math.exp(-math.fsum(values) / len(values))


def perplexity(model: LanguageModel, tokens: Sequence[str]) -> float:
    """Perplexity of `model` on `tokens`: exp of the mean negative natural-log likelihood per token (an n-gram
    model scores every token in one bulk `logprobs` call, the same floats as one `logprob` per token)."""
    many = getattr(model, "logprobs", None)
    if many is not None:
        return perplexity_of_scores(many(list(contexts(tokens, None if model.order is None else model.order - 1))))
    return perplexity_of_scores(s.logprob for s in score_tokens(model, tokens))


def split_sentences(tokens: Sequence[str]) -> list[list[str]]:
    """A flat token sequence cut after each `</s>` (a last sentence without one is kept as it is)."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for token in tokens:
        current.append(token)
        if token == EOS:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    return sentences
