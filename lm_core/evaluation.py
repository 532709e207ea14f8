"""Evaluation metrics for predictive text: next-word accuracy, keystroke savings, precision / recall / F1 and a
precision-recall curve. Pure functions over any `LanguageModel` (or any suggestion function); no I/O.

Conventions (every function states its own units too):

- A *word* is a token with at least one alphanumeric character that is not `<s>`, `</s>` or `<unk>`
  (`is_word`). Accuracy is measured over word targets only: punctuation and sentence ends are not targets, and
  the model's predictions are filtered to words before the top k are taken (a keyboard never shows "," or `</s>`).
- `<unk>` targets: counted as misses by default (`unk="miss"`), as a person typing an out-of-vocabulary word would
  never see it suggested (Gboard-style recall counts them in the denominator). `unk="exclude"` leaves them out of
  both numerator and denominator.
- Keystroke savings follow Presage's formula, KSR = 1 - (keys typed + selections) / keys without prediction, with
  one space after every word counted as a keystroke in the "without prediction" total. Taking a suggestion inserts
  the word and its space (as Presage's simulator and phone keyboards do), so a word taken after typing j letters
  costs j + 1 keystrokes instead of len(word) + 1 (`auto_space=False` charges the space after a selection too).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from lm_core.model import UNBOUNDED_CONTEXT, Context, LanguageModel
from lm_core.vocab import BOS, EOS, UNK, is_word

Suggest = Callable[[Sequence[str], str, int], list[str]]
"""suggest(context_words, typed_prefix, k) -> at most k suggested words, best first."""


def _context(history: Sequence[str], order: int | None) -> Context:
    """The last order-1 tokens of `history` (which starts with <s>), or UNBOUNDED_CONTEXT for an unbounded model."""
    width = UNBOUNDED_CONTEXT if order is None else order - 1
    return tuple(history[max(0, len(history) - width) :]) if width > 0 else ()


def top_words(model: LanguageModel, context: Context, k: int, prefix: str = "") -> list[str]:
    """The model's k most probable next *words* (see `is_word`) after `context`, best first."""
    if k <= 0:
        return []
    ask = 2 * k + 8
    while True:
        predictions = model.predict(context, ask, prefix)
        words = [p.word for p in predictions if is_word(p.word)]
        if len(words) >= k or len(predictions) < ask:
            return words[:k]
        ask *= 4


def word_ranks(model: LanguageModel, tokens: Sequence[str], max_k: int, unk: str = "miss") -> list[int | None]:
    """For every word target of `tokens`, its 0-based rank among the model's top `max_k` word predictions, or
    None when it is not among them.

    `tokens` is a flat stream of sentences, each ending with `</s>`; the context restarts at `<s>` after each
    `</s>`. Non-word targets (punctuation, `</s>`) are skipped but stay in the context. `<unk>` targets give None
    (`unk="miss"`) or are skipped (`unk="exclude"`).
    """
    if unk not in ("miss", "exclude"):
        raise ValueError("unk must be 'miss' or 'exclude'")
    ranks: list[int | None] = []
    history: list[str] = [BOS]
    for token in tokens:
        if token == UNK:
            if unk == "miss":
                ranks.append(None)
        elif is_word(token):
            predicted = top_words(model, _context(history, model.order), max_k)
            ranks.append(predicted.index(token) if token in predicted else None)
        if token == EOS:
            history = [BOS]
        else:
            history.append(token)
    return ranks


def accuracy_from_ranks(ranks: Sequence[int | None], ks: Sequence[int] = (1, 3, 5)) -> dict[int, float]:
    """Top-k accuracy (a fraction in [0, 1]) per k: the share of targets whose rank is below k; nan for none."""
    n = len(ranks)
    return {k: (sum(1 for r in ranks if r is not None and r < k) / n if n else float("nan")) for k in ks}


def next_word_accuracy(
    model: LanguageModel, tokens: Sequence[str], ks: Sequence[int] = (1, 3, 5), unk: str = "miss"
) -> dict[int, float]:
    """Top-k next-word accuracy per k, a fraction in [0, 1], over the word targets of `tokens` (see `word_ranks`
    for the token stream, `is_word` for what counts, `unk` for `<unk>` targets)."""
    return accuracy_from_ranks(word_ranks(model, tokens, max(ks), unk), ks)


# --- keystroke savings ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeystrokeResult:
    """Keystroke savings for one k: `ksr` is a fraction (1 - (typed + selections) / without); `typed` counts
    letters and spaces typed, `selections` suggestions taken (one keystroke each), `without` the keystrokes with
    no prediction (every letter plus one space per word); `words` words typed, `taken` of them by a suggestion."""

    k: int
    ksr: float
    typed: int
    selections: int
    without: int
    words: int
    taken: int


def keystroke_savings(
    suggest: Suggest, words: Sequence[str], ks: Sequence[int] = (1, 3, 5), auto_space: bool = True
) -> dict[int, KeystrokeResult]:
    """Simulate a person typing `words` letter by letter, one space after each word, who takes a suggestion as soon
    as the intended word (exact string match) is among the k shown; returns a `KeystrokeResult` per k.

    Before each letter (from the empty prefix up to len(word) - 1 letters typed) the simulator asks
    `suggest(words[:i], typed_prefix, max(ks))`; with k shown, the person sees its first k. Taking a suggestion
    after j letters costs j + 1 keystrokes (letters + the selection; the space comes with it unless `auto_space`
    is False, then + 1 more); typing the whole word costs len(word) + 1 (the space). Without prediction every word
    costs len(word) + 1.
    """
    max_k = max(ks)
    typed = dict.fromkeys(ks, 0)
    selections = dict.fromkeys(ks, 0)
    without = 0
    for i, word in enumerate(words):
        without += len(word) + 1
        context = list(words[:i])
        found: dict[int, int] = {}  # k -> letters typed when the word first showed among the first k
        for j in range(len(word)):
            if len(found) == len(ks):
                break
            shown = suggest(context, word[:j], max_k)
            if word in shown[:max_k]:
                rank = shown.index(word)
                for k in ks:
                    if k not in found and rank < k:
                        found[k] = j
        for k in ks:
            if k in found:
                typed[k] += found[k] + (0 if auto_space else 1)
                selections[k] += 1
            else:
                typed[k] += len(word) + 1
    results = {}
    for k in ks:
        ksr = 1 - (typed[k] + selections[k]) / without if without else float("nan")
        results[k] = KeystrokeResult(k, ksr, typed[k], selections[k], without, len(words), selections[k])
    return results


def model_suggest(model: LanguageModel, lowercase: bool = False) -> Suggest:
    """A `Suggest` over a raw model: the context words (after `<s>`, one sentence) and the prefix go to
    `model.predict`, predictions filtered to words. With `lowercase`, the prefix is case-folded first."""

    def suggest(context: Sequence[str], prefix: str, k: int) -> list[str]:
        history = [BOS, *context]
        return top_words(model, _context(history, model.order), k, prefix.casefold() if lowercase else prefix)

    return suggest


# --- precision, recall, F1 --------------------------------------------------------------------------------------------
Span = tuple[Hashable, int, int]
"""(document id, start, end): a half-open character range [start, end) of one document."""


def _overlaps(a: Span, b: Span) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def precision_recall(predicted_spans: Sequence[Span], true_spans: Sequence[Span]) -> tuple[float, float]:
    """(precision, recall), fractions in [0, 1]. A predicted span is correct when it overlaps a true span of the
    same document; precision = correct predictions / predictions, recall = true spans overlapped by at least one
    prediction / true spans. With no predictions precision is 1.0 (no false alarm); with no true spans recall is
    1.0."""
    correct = sum(1 for p in predicted_spans if any(_overlaps(p, t) for t in true_spans))
    found = sum(1 for t in true_spans if any(_overlaps(p, t) for p in predicted_spans))
    precision = correct / len(predicted_spans) if predicted_spans else 1.0
    recall = found / len(true_spans) if true_spans else 1.0
    return precision, recall


def f1(precision: float, recall: float) -> float:
    """The harmonic mean of precision and recall (0.0 when both are 0)."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


@dataclass(frozen=True)
class PRPoint:
    """Flagging every item with score >= threshold gives this precision and recall (fractions)."""

    threshold: float
    precision: float
    recall: float


def pr_curve(scores: Sequence[float], labels: Sequence[bool], positives: int | None = None) -> list[PRPoint]:
    """The precision-recall curve: one point per distinct score, highest first, flagging every item scored at
    least that high. `labels[i]` says whether item i is a true error; `positives` is the number of true errors
    (default: sum(labels); give it when some true errors were never scored, so they count as missed)."""
    if len(scores) != len(labels):
        raise ValueError("scores and labels differ in length")
    total = sum(bool(label) for label in labels) if positives is None else positives
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    points: list[PRPoint] = []
    tp = 0
    for n, i in enumerate(order, 1):
        tp += bool(labels[i])
        if n < len(order) and scores[order[n]] == scores[i]:
            continue  # ties: one point after the last of them
        points.append(PRPoint(scores[i], tp / n, tp / total if total else 1.0))
    return points
