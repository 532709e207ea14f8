"""Discount estimates from count-of-counts, shared by the n-gram model and the ARPA export.

`coc` is always (n_1, ..., n_K): how many n-grams of one order have count exactly k.
"""

from __future__ import annotations

import math
from enum import StrEnum

KN_FALLBACK = (0.5, 1.0, 1.5)
"""Discounts used when count-of-counts cannot give valid ones (tiny corpora); KenLM's --discount_fallback."""


class Smoothing(StrEnum):
    """The n-gram estimators (`lm_core.ngram.NgramModel`); here, in a module without numpy, so the CLI names them
    without importing the models."""

    MLE = "mle"
    ADD_DELTA = "add-delta"
    STUPID_BACKOFF = "stupid-backoff"
    KATZ = "katz"
    KNESER_NEY = "kneser-ney"


def kneser_ney_discounts(coc: tuple[int, ...]) -> tuple[float, float, float]:
    """Chen and Goodman's modified Kneser-Ney discounts (D1, D2, D3+) for one order.

    Y = n1 / (n1 + 2 n2); D1 = 1 - 2Y n2/n1; D2 = 2 - 3Y n3/n2; D3+ = 3 - 4Y n4/n3. As KenLM's lmplz, only n1,
    n2 and n3 must be above zero (n4 = 0 gives D3+ = 3); falls back to `KN_FALLBACK` when one of them is zero or a
    discount leaves its valid range (0 <= Dk <= k).
    """
    n1, n2, n3, n4 = (*coc, 0, 0, 0, 0)[:4]
    if min(n1, n2, n3) <= 0:
        return KN_FALLBACK
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 <= dk <= k for k, dk in enumerate(d, start=1)) or not all(map(math.isfinite, d)):
        return KN_FALLBACK
    return d


def good_turing_ratios(coc: tuple[int, ...], k: int = 5) -> tuple[float, ...]:
    """Katz's discount ratios d_c (c = 1..k) from Good-Turing: c* = d_c * c; counts above k are not discounted.

    d_c = ((c+1) n_{c+1} / (c n_c) - (k+1) n_{k+1} / n_1) / (1 - (k+1) n_{k+1} / n_1).
    When the estimates are unusable (a zero count-of-count, or some d_c outside (0, 1]), falls back to absolute
    discounting with Ney's D = n1 / (n1 + 2 n2) (0.5 when that is undefined): d_c = (c - D) / c.
    """
    n = (0, *coc, 0)  # n[c] for c = 0..len(coc)+1
    ratios: list[float] = []
    if len(n) > k + 1 and all(n[c] > 0 for c in range(1, k + 2)):
        common = (k + 1) * n[k + 1] / n[1]
        if common < 1:
            ratios = [((c + 1) * n[c + 1] / (c * n[c]) - common) / (1 - common) for c in range(1, k + 1)]
    if not ratios or not all(0 < r <= 1 for r in ratios):
        n1, n2 = n[1], n[2] if len(n) > 2 else 0
        discount = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 and n1 > 0 else 0.5
        ratios = [(c - discount) / c for c in range(1, k + 1)]
    return tuple(ratios)
