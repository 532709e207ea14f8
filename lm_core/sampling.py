"""Generating text from any `LanguageModel`: greedy, temperature, top-k and top-p (nucleus) sampling.

Each step asks the model for its `max_candidates` most probable next words (`predict`), reweights them by the
temperature, keeps the top k and then the smallest set whose probability reaches top_p, renormalises and draws.
Seeded through `random.Random(seed)`, so a seed gives the same text every time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from lm_core.model import LanguageModel, Prediction
from lm_core.vocab import BOS, EOS, UNK


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # > 0; below 1 sharpens, above 1 flattens; ignored when greedy
    top_k: int | None = None  # keep only the k most probable words
    top_p: float | None = None  # keep the smallest set of words whose probability reaches p (0 < p <= 1)
    greedy: bool = False  # always take the most probable word
    max_candidates: int = 1000  # how many words each step considers (the model's most probable)
    seed: int | None = None
    stop_at_sentence_end: bool = False


def filter_candidates(predictions: Sequence[Prediction], config: SamplingConfig) -> list[tuple[str, float]]:
    """The (word, weight) pairs a step draws from, weights summing to 1. `<unk>` is never drawn."""
    pool = [p for p in predictions if p.word != UNK and p.prob > 0]
    if not pool:
        return []
    if config.greedy:
        return [(pool[0].word, 1.0)]
    if config.temperature <= 0:
        raise ValueError("temperature must be > 0 (use greedy for the most probable word)")
    logits = [math.log(p.prob) / config.temperature for p in pool]
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    pairs = sorted(zip((p.word for p in pool), weights, strict=True), key=lambda wp: -wp[1])
    if config.top_k is not None:
        pairs = pairs[: max(config.top_k, 1)]
    total = sum(w for _, w in pairs)
    pairs = [(w, x / total) for w, x in pairs]
    if config.top_p is not None:
        if not 0 < config.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        kept, mass = [], 0.0
        for word, weight in pairs:
            kept.append((word, weight))
            mass += weight
            if mass >= config.top_p:
                break
        pairs = [(w, x / mass) for w, x in kept]
    return pairs


def generate(
    model: LanguageModel, seed_tokens: Sequence[str], n: int, config: SamplingConfig | None = None
) -> list[str]:
    """Up to `n` tokens continuing `seed_tokens` (contexts restart with `<s>` after each `</s>`)."""
    config = config or SamplingConfig()
    rng = random.Random(config.seed)
    history = [BOS, *seed_tokens]
    out: list[str] = []
    for _ in range(n):
        context = tuple(history if model.order is None else history[max(0, len(history) - (model.order - 1)) :])
        k = 1 if config.greedy else config.max_candidates
        pairs = filter_candidates(model.predict(context, k + 1), config)
        if not pairs:
            break
        word = pairs[0][0] if config.greedy else rng.choices([w for w, _ in pairs], [x for _, x in pairs])[0]
        out.append(word)
        if word == EOS:
            if config.stop_at_sentence_end:
                break
            history = [BOS]
        else:
            history.append(word)
    return out


@dataclass(frozen=True)
class BeamConfig:
    max_words: int = 6  # longest continuation, in tokens
    beam_width: int = 3  # hypotheses kept after each step
    branching: int = 5  # next words tried per hypothesis
    min_step_prob: float = 0.1  # a hypothesis stops before a word less probable than this (low confidence)


def beam_continuation(
    model: LanguageModel, context: Sequence[str], config: BeamConfig | None = None, prefix: str = ""
) -> list[str]:
    """The most confident continuation of `context` by beam search: hypotheses grow while each next word has
    probability >= `min_step_prob` and stop at a sentence end; the best by mean natural-log probability per word
    wins. The first word must start with `prefix` (its probability is then taken among such words)."""
    config = config or BeamConfig()
    width = None if model.order is None else model.order - 1
    beams: list[tuple[float, list[str], bool]] = [(0.0, [], False)]
    for step in range(config.max_words):
        grown: list[tuple[float, list[str], bool]] = []
        for logprob, words, done in beams:
            if done:
                grown.append((logprob, words, True))
                continue
            history = (*context, *words)
            ctx = history if width is None else history[max(0, len(history) - width) :] if width else ()
            predictions = [p for p in model.predict(tuple(ctx), config.branching + 1, prefix if step == 0 else "")]
            predictions = [p for p in predictions if p.word != UNK]
            mass = sum(p.prob for p in predictions) if (step == 0 and prefix) else 1.0
            extended = False
            for p in predictions[: config.branching]:
                prob = p.prob / mass if mass > 0 else 0.0
                if prob < config.min_step_prob:
                    break
                extended = True
                if p.word == EOS:
                    grown.append((logprob, words, True))
                else:
                    grown.append((logprob + math.log(prob), [*words, p.word], False))
            if not extended:
                grown.append((logprob, words, True))
        beams = sorted(grown, key=lambda b: -_mean(b[0], b[1]))[: config.beam_width]
        if all(done for _, _, done in beams):
            break
    best = max(beams, key=lambda b: (bool(b[1]), _mean(b[0], b[1])))
    return best[1]


def _mean(logprob: float, words: list[str]) -> float:
    return logprob / len(words) if words else -math.inf
