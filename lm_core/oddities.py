"""Finding words that read oddly: real-word errors a spell checker cannot see ("their is", "the the", "I has").

For a word w at position i, an alternative a (a word from w's confusion set, the model's own best guesses when w is
very surprising, or deleting w when it doubles the word before it) is scored on the window of tokens whose context
it changes: log P(a, w[i+1], ..., w[i+n-1]) against log P(w, w[i+1], ..., w[i+n-1]), each token given the tokens
before it (Mays, Damerau and Mercer's method). The word is odd when the best alternative's window is at least
`threshold_bits` bits more probable. Works with any `LanguageModel`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lm_core.metrics import Continuation, continuation_scores
from lm_core.model import LanguageModel
from lm_core.vocab import BOS, EOS, UNK

SPECIAL = frozenset({BOS, EOS, UNK})

CONFUSION_SETS: tuple[tuple[str, ...], ...] = (
    ("their", "there", "they're"),
    ("its", "it's"),
    ("your", "you're"),
    ("whose", "who's"),
    ("then", "than"),
    ("to", "too", "two"),
    ("affect", "effect"),
    ("lose", "loose"),
    ("accept", "except"),
    ("advice", "advise"),
    ("weather", "whether"),
    ("quite", "quiet"),
    ("principal", "principle"),
    ("peace", "piece"),
    ("passed", "past"),
    ("were", "where", "we're"),
    ("has", "have"),
    ("is", "are"),
    ("was", "were"),
    ("a", "an"),
    ("of", "off"),
    ("breath", "breathe"),
    ("choose", "chose"),
    ("fewer", "less"),
)
VALID_DOUBLES = frozenset({"had", "that"})
"""Words that may stand twice in a row in good English ("she had had enough", "that that is")."""
DELETE = ""
"""The alternative 'drop this word' (for a doubled word)."""


def _confusions() -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for group in CONFUSION_SETS:
        for word in group:
            table.setdefault(word, [])
            table[word].extend(w for w in group if w != word and w not in table[word])
    return {w: tuple(alts) for w, alts in table.items()}


CONFUSIONS = _confusions()


@dataclass(frozen=True)
class OddityConfig:
    threshold_bits: float = 7.0  # how much more probable (log2) the best alternative's window must be
    surprisal_bits: float = 14.0  # words at least this surprising also try the model's own best guesses
    guesses: int = 0  # how many of the model's own guesses to try (0: off; they flag rare names and terms too often)
    guess_extra_bits: float = 10.0  # a guess (not a confusable word) must beat the threshold by this much more
    max_alternatives: int = 3  # alternatives reported per odd word


@dataclass(frozen=True)
class Oddity:
    """Token `index` of the sentence reads oddly; `alternatives` (best first, "" = delete the word) with the gain
    in bits of each."""

    index: int
    word: str
    surprisal: float  # bits, -log2 P(word | context)
    alternatives: tuple[tuple[str, float], ...]


def _context(model: LanguageModel, tokens: Sequence[str], i: int) -> tuple[str, ...]:
    """The context of token i: the tokens before it from `<s>`, the last order-1 of them."""
    history = (BOS, *tokens[:i])
    if model.order is None:
        return history
    width = model.order - 1
    return history[max(0, len(history) - width) :] if width else ()


def find_oddities(
    model: LanguageModel,
    sentence: Sequence[str],
    config: OddityConfig | None = None,
    skip: Sequence[bool] | None = None,
    guessable: Sequence[bool] | None = None,
    logprobs: Sequence[float] | None = None,
) -> list[Oddity]:
    """The odd words of one sentence of normalised tokens (ending with `</s>`); `skip[i]` excludes token i
    (punctuation, ignored words); the model's own guesses are tried only where `guessable[i]` (the caller leaves
    out proper names, which are surprising by nature). `logprobs[i]`, when given, is token i's natural-log
    probability in context (saves scoring it again). The windows of every alternative are scored together
    (`lm_core.metrics.continuation_scores`: one batched call for a neural model or a blend)."""
    plan = plan_oddities(model, sentence, config, skip, guessable, logprobs)
    return plan.finish(continuation_scores(model, plan.requests))


@dataclass
class _Candidate:
    index: int
    word: str
    surprisal: float
    alternatives: list[str]
    guesses: list[str]
    original: float | None  # natural-log probability of the window as written, when already known


@dataclass
class OddityPlan:
    """What finding one sentence's oddities needs scored (`requests`, for `lm_core.metrics.continuation_scores`),
    and how to turn the scores into oddities (`finish`). Many sentences' plans can be scored in one call."""

    config: OddityConfig
    candidates: list[_Candidate]
    requests: list[Continuation]

    def finish(self, scores: Sequence[Sequence[float]]) -> list[Oddity]:
        """The oddities, given the natural-log scores of `requests` (in order)."""
        config = self.config
        found: list[Oddity] = []
        position = 0
        for candidate in self.candidates:
            if candidate.original is None:
                original = math.fsum(scores[position])
                position += 1
            else:
                original = candidate.original
            gains: list[tuple[str, float]] = []
            for alternative in candidate.alternatives:
                gains.append((alternative, (math.fsum(scores[position]) - original) / math.log(2)))
                position += 1
            needed = {g: config.threshold_bits + config.guess_extra_bits for g in candidate.guesses}
            kept = [(a, gain) for a, gain in gains if gain >= needed.get(a, config.threshold_bits)]
            kept.sort(key=lambda ag: -ag[1])
            if kept:
                found.append(
                    Oddity(candidate.index, candidate.word, candidate.surprisal, tuple(kept[: config.max_alternatives]))
                )
        return found


def plan_oddities(
    model: LanguageModel,
    sentence: Sequence[str],
    config: OddityConfig | None = None,
    skip: Sequence[bool] | None = None,
    guessable: Sequence[bool] | None = None,
    logprobs: Sequence[float] | None = None,
) -> OddityPlan:
    """The windows `find_oddities` scores for one sentence (its arguments), not scored yet."""
    config = config or OddityConfig()
    span = 1 if model.order is None else model.order  # tokens whose probability a change at i can affect
    span = max(span, 2)
    candidates: list[_Candidate] = []
    requests: list[Continuation] = []
    for i, word in enumerate(sentence):
        if word == EOS or (skip is not None and skip[i]):
            continue
        context = _context(model, sentence, i)
        logprob = logprobs[i] if logprobs is not None else model.logprob(word, context)
        surprisal = -logprob / math.log(2) if logprob > -math.inf else math.inf
        alternatives = list(CONFUSIONS.get(word, ()))
        if i > 0 and sentence[i - 1] == word and word not in VALID_DOUBLES:
            alternatives.append(DELETE)
        guesses: list[str] = []
        if config.guesses and surprisal >= config.surprisal_bits and (guessable is None or guessable[i]):
            predicted = model.predict(context, config.guesses + 4)
            guesses = [p.word for p in predicted if _is_word(p.word) and p.word != word and p.word not in alternatives]
            guesses = guesses[: config.guesses]
        alternatives.extend(guesses)
        if not alternatives:
            continue
        stop = min(i + span, len(sentence))
        original = None
        if logprobs is not None:  # the same tokens in the same contexts: already scored
            original = math.fsum(logprobs[i:stop])
        else:
            requests.append((sentence[:i], sentence[i:stop]))
        for alternative in alternatives:
            if alternative == DELETE:  # the words after it move up by one
                requests.append((sentence[:i], sentence[i + 1 : stop]))
            else:
                requests.append((sentence[:i], [alternative, *sentence[i + 1 : stop]]))
        candidates.append(_Candidate(i, word, surprisal, alternatives, guesses, original))
    return OddityPlan(config, candidates, requests)


def _is_word(token: str) -> bool:
    return token not in SPECIAL and any(ch.isalnum() for ch in token)
