"""The evaluation metrics on tiny examples worked by hand (`lm_core.evaluation`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import ClassVar

import pytest

from lm_core.evaluation import (
    PRPoint,
    accuracy_from_ranks,
    f1,
    is_word,
    keystroke_savings,
    model_suggest,
    next_word_accuracy,
    pr_curve,
    precision_recall,
    word_ranks,
)
from lm_core.model import Context, Prediction


class TableModel:
    """A bigram "model" whose predictions after a word are a fixed ranked list (probabilities made up)."""

    order = 2
    TABLE: ClassVar[dict[str, list[str]]] = {
        "<s>": [",", "the", "a", "</s>", "it"],
        "the": ["dog", "<unk>", "cat", "end"],
        "cat": ["sat", "ran"],
        "sat": [".", "</s>", "down"],
    }

    def logprob(self, word: str, context: Context) -> float:
        return math.log(0.1)

    def predict(self, context: Context, k: int = 10, prefix: str = "") -> list[Prediction]:
        words = [w for w in self.TABLE.get(context[-1] if context else "<s>", []) if w.startswith(prefix)]
        return [Prediction(w, 0.5 / (n + 1)) for n, w in enumerate(words[:k])]


def test_is_word() -> None:
    assert is_word("cat") and is_word("it's") and is_word("42")
    assert not any(is_word(t) for t in (",", "</s>", "<s>", "<unk>", "--"))


def test_accuracy_on_a_tiny_model() -> None:
    # Stream: the cat , sat </s> <unk> sat </s>. Word targets and the model's word predictions (",", "</s>" and
    # "<unk>" filtered out):
    #   the  after <s>:  [the, a, it]   rank 0
    #   cat  after the:  [dog, cat, end] rank 1
    #   ","  not a target
    #   sat  after ",":  []             miss
    #   </s> not a target
    #   <unk>                            miss (unk="miss") or not a target (unk="exclude")
    #   sat  after <unk> (context restarted at <s>, then <unk>): [] miss
    tokens = ["the", "cat", ",", "sat", "</s>", "<unk>", "sat", "</s>"]
    model = TableModel()
    assert word_ranks(model, tokens, 5) == [0, 1, None, None, None]
    acc = next_word_accuracy(model, tokens, (1, 2, 3))
    assert acc == {1: pytest.approx(1 / 5), 2: pytest.approx(2 / 5), 3: pytest.approx(2 / 5)}
    excluded = next_word_accuracy(model, tokens, (1, 3), unk="exclude")
    assert excluded == {1: pytest.approx(1 / 4), 3: pytest.approx(2 / 4)}
    assert math.isnan(accuracy_from_ranks([], (1,))[1])
    with pytest.raises(ValueError):
        word_ranks(model, tokens, 3, unk="skip")


def test_model_suggest_filters_words_and_prefix() -> None:
    suggest = model_suggest(TableModel())
    assert suggest([], "", 3) == ["the", "a", "it"]
    assert suggest(["the"], "c", 3) == ["cat"]


def _suggest(context: Sequence[str], prefix: str, k: int) -> list[str]:
    candidates = {
        (): ["a", "the", "it", "to"],
        ("the",): ["dog", "end", "man", "car", "cat"],
    }.get(tuple(context), [])
    return [w for w in candidates if w.startswith(prefix)][:k]


def test_keystroke_savings_on_three_words() -> None:
    # Typing "the cat sat": without prediction 4 + 4 + 4 = 12 keystrokes (three letters and a space per word).
    # "the" (no context): prefix "" shows [a, the, it, to] -> rank 1; prefix "t" shows [the, to] -> rank 0.
    # "cat" (after the): prefix "" shows [dog, end, man, car, cat] -> rank 4; "c" and "ca" show [car, cat] -> rank 1.
    # "sat": never suggested, typed in full (4 keystrokes with its space).
    #   k=1: the = 1 letter + 1 selection; cat = 4 typed; sat = 4 typed -> typed 9, selections 1 -> 1 - 10/12 = 1/6
    #   k=3: the = 0 + 1; cat = 1 + 1; sat = 4                          -> typed 5, selections 2 -> 1 - 7/12 = 5/12
    #   k=5: the = 0 + 1; cat = 0 + 1; sat = 4                          -> typed 4, selections 2 -> 1 - 6/12 = 1/2
    result = keystroke_savings(_suggest, ["the", "cat", "sat"], (1, 3, 5))
    assert {k: (r.typed, r.selections, r.without) for k, r in result.items()} == {
        1: (9, 1, 12),
        3: (5, 2, 12),
        5: (4, 2, 12),
    }
    assert result[1].ksr == pytest.approx(float(Fraction(1, 6)))
    assert result[3].ksr == pytest.approx(float(Fraction(5, 12)))
    assert result[5].ksr == pytest.approx(0.5)
    assert result[3].words == 3 and result[3].taken == 2
    # Charging the space after a selection too: k=3 typed 5 + 2 spaces = 7, selections 2 -> 1 - 9/12 = 1/4.
    assert keystroke_savings(_suggest, ["the", "cat", "sat"], (3,), auto_space=False)[3].ksr == pytest.approx(0.25)


def test_keystroke_savings_without_suggestions_is_zero() -> None:
    result = keystroke_savings(lambda c, p, k: [], ["hello", "world"], (1,))
    assert result[1].ksr == 0.0 and result[1].without == 12


def test_precision_recall_f1_exact() -> None:
    predicted = [("d", 0, 3), ("d", 10, 12), ("e", 0, 2)]
    true = [("d", 1, 2), ("d", 20, 25)]
    precision, recall = precision_recall(predicted, true)
    assert precision == pytest.approx(float(Fraction(1, 3)))
    assert recall == pytest.approx(float(Fraction(1, 2)))
    # F1 = 2 PR / (P + R) = (2 * 1/6) / (5/6) = 2/5
    assert f1(precision, recall) == pytest.approx(0.4)
    assert precision_recall([], true) == (1.0, 0.0)
    assert precision_recall(predicted, []) == (0.0, 1.0)
    assert f1(0.0, 0.0) == 0.0
    # touching ranges do not overlap (half-open)
    assert precision_recall([("d", 0, 3)], [("d", 3, 5)]) == (0.0, 0.0)


def test_pr_curve_points() -> None:
    # Sorted by score: 0.9 (error), 0.8 (not), 0.8 (error), 0.3 (not); 3 true errors in all (one never scored).
    points = pr_curve([0.8, 0.9, 0.3, 0.8], [False, True, False, True], positives=3)
    assert points == [
        PRPoint(0.9, 1.0, pytest.approx(1 / 3)),
        PRPoint(0.8, pytest.approx(2 / 3), pytest.approx(2 / 3)),
        PRPoint(0.3, 0.5, pytest.approx(2 / 3)),
    ]
    assert pr_curve([1.0, 0.5], [True, False])[-1] == PRPoint(0.5, 0.5, 1.0)
    with pytest.raises(ValueError):
        pr_curve([1.0], [])
