"""Shared word-list indexes and alignments: what is derived from a list that extends another equals what is derived
from scratch, and blends over a grown reference give the same probabilities as fresh ones."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lm_core.blend import Blend, _alignment_from, _extended_alignment, _position
from lm_core.vocab import UNK
from lm_core.word_lists import SharedWordLists, build_index, extend_index


def _words(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        out["".join(rng.choice("abcéz'") for _ in range(rng.randint(1, 5)))] = None
    return list(out)


def _same(a, b) -> None:
    assert a.position == b.position
    assert a.sorted_words == b.sorted_words
    assert np.array_equal(a.sorted_positions, b.sorted_positions)


@pytest.mark.parametrize("cut", [0, 1, 7, 499, 500])
def test_an_extended_index_equals_one_built_from_scratch(cut: int) -> None:
    words = _words(1, 500)
    _same(extend_index(build_index(words[:cut]), cut, words), build_index(words))


def test_prefix_lookups_find_exactly_the_words_with_the_prefix() -> None:
    words = _words(2, 300)
    index = build_index(words)
    for prefix in ("", "a", "ab", "é", "z'", "zzzzzz"):
        found = sorted(words[i] for i in index.with_prefix(prefix).tolist())
        assert found == sorted(w for w in words if w.startswith(prefix))


def test_the_shared_index_of_a_grown_list_extends_the_kept_one_and_leaves_it_as_it_was() -> None:
    shared = SharedWordLists(size=2)
    old = _words(3, 200)
    old_index = shared.index(old)
    grown = [*old, "new", "aaa", "zzzzzzz"]
    _same(shared.index(grown), build_index(grown))
    assert "new" not in old_index.position  # the old list's index is not changed
    assert shared.index(old) is old_index
    assert shared.index(list(old)) is not old_index  # another list object with the same words is indexed anew
    _same(shared.index(list(old)), old_index)


def test_an_alignment_extended_to_a_grown_reference_equals_one_made_from_scratch() -> None:
    ref = [UNK, *_words(4, 300)]
    component = [UNK, "outside", *_words(4, 300)[::3], "also-outside", "later"]
    old_ref = ref[:250]
    old_index = {w: i for i, w in enumerate(old_ref)}
    old = _alignment_from(
        np.asarray([old_index.get(w, -1) for w in component]), len(old_ref), 0, _position(component, UNK)
    )
    grown = [*ref, "later"]
    extended = _extended_alignment(old, len(old_ref), grown, 0, component)
    index = {w: i for i, w in enumerate(grown)}
    fresh = _alignment_from(np.asarray([index.get(w, -1) for w in component]), len(grown), 0, _position(component, UNK))
    for field in ("both_ref", "both_m", "pool_ref", "extra_m", "in_ref"):
        assert np.array_equal(getattr(extended, field), getattr(fresh, field)), field
    assert extended.unk_m == fresh.unk_m == 0


class _Fixed:
    """A model with a fixed distribution over a word list (the list object given)."""

    order = 2

    def __init__(self, words: list[str], seed: int) -> None:
        self.words = words
        p = np.random.default_rng(seed).random(len(words))
        self.p = p / p.sum()

    def distribution_arrays(self, context) -> tuple[list[str], np.ndarray]:
        return self.words, self.p

    def logprob(self, word: str, context) -> float:
        return float(np.log(self.p[self.words.index(word)])) if word in self.words else float(np.log(self.p[0]))


def test_a_blend_over_a_grown_reference_gives_what_a_blend_made_from_scratch_gives() -> None:
    base = [UNK, *_words(5, 400)]
    component = _Fixed([UNK, *base[1::2], "only-here", "later"], seed=6)
    before = Blend([_Fixed(base, seed=7), component], [0.5, 0.5])
    before.distribution(())  # aligns the component onto the reference list as it was
    grown_words = [*base, "later", "brand-new"]
    after = Blend([_Fixed(grown_words, seed=8), component], [0.5, 0.5]).distribution(())
    scratch_words = list(grown_words)  # equal words, another list: nothing kept applies to it
    scratch = Blend([_Fixed(scratch_words, seed=8), _Fixed(list(component.words), seed=6)], [0.5, 0.5])
    expected = scratch.distribution(())
    assert after == expected
    assert sum(after.values()) == pytest.approx(1.0, abs=1e-12)
