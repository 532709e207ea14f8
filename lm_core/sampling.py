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
