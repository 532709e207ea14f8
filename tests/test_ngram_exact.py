"""Exact values of every smoothing on one tiny corpus, computed by hand as fractions.

The corpus (five sentences, `</s>` appended, `<s>` prepended):

    S1  <s> the cat sat </s>
    S2  <s> the dog sat </s>
    S3  <s> the cat ran </s>
    S4  <s> a dog ran </s>
    S5  <s> the cat sat </s>

V = {the, cat, sat, dog, ran, a, </s>, <unk>}: |V| = 8.

Raw unigrams (without <s>): the 4, cat 3, sat 3, dog 2, ran 2, a 1, </s> 5; total 20 (and <s> 5).
Raw bigrams, grouped by context:
    <s>: the 4, a 1 (5)     the: cat 3, dog 1 (4)     cat: sat 2, ran 1 (3)     dog: sat 1, ran 1 (2)
    a: dog 1 (1)            sat: </s> 3 (3)           ran: </s> 2 (2)
Raw trigrams, grouped by context:
    <s> the: cat 3, dog 1 (4)   <s> a: dog 1   the cat: sat 2, ran 1 (3)   the dog: sat 1   a dog: ran 1
    cat sat: </s> 2   dog sat: </s> 1   cat ran: </s> 1   dog ran: </s> 1
Continuation counts N1+(. w): the 1 {<s>}, a 1 {<s>}, cat 1 {the}, dog 2 {the, a}, sat 2 {cat, dog},
    ran 2 {cat, dog}, </s> 2 {sat, ran}; total 11.
Continuation counts N1+(. u w): the cat 1, the dog 1, a dog 1, cat sat 1, cat ran 1, dog sat 1, dog ran 1,
    sat </s> 2, ran </s> 2, <s> the 0, <s> a 0.
Count-of-counts (n1, n2, n3, n4, n5):
    order 1 raw (1, 2, 2, 1, 1)        order 1 adjusted (3, 4, 0, 0, 0)
    order 2 raw (6, 2, 2, 1, 0)        order 2 adjusted (8, 2, 0, 1, 0)  (<s> the 4 and <s> a 1 are raw)
    order 3 raw (8, 2, 1, 0, 0)
"""

from __future__ import annotations

import math
from fractions import Fraction as F

import pytest

from lm_core.counting import count_ngrams, encode_sentences
from lm_core.counts import ADJUSTED, RAW
from lm_core.metrics import perplexity
from lm_core.ngram import NgramModel, Smoothing
from lm_core.smoothing import KN_FALLBACK, kneser_ney_discounts
from lm_core.vocab import Vocab

TEXT = """
the cat sat
the dog sat
the cat ran
a dog ran
the cat sat
"""

EXACT = dict(rel=1e-12)


@pytest.fixture(scope="module")
def counts():
    sentences = [[*line.split(), "</s>"] for line in TEXT.strip().splitlines()]
    vocab = Vocab()
    return count_ngrams(encode_sentences(sentences, vocab), order=3, vocab=vocab)


def model(counts, smoothing, **kw) -> NgramModel:
    return NgramModel(counts, smoothing=smoothing, **kw)


def p(m: NgramModel, word: str, *context: str) -> float:
    return math.exp(m.logprob(word, tuple(context)))


# --- counting --------------------------------------------------------------------------------------------------


def test_continuation_counts_of_unigrams_and_bigrams(counts):
    v = counts.vocab
    uni = counts.level(())
    cont = {v.word(i): int(c) for i, c in zip(uni.ids, uni.cont, strict=True)}
    assert cont == {"the": 1, "a": 1, "cat": 1, "dog": 2, "sat": 2, "ran": 2, "</s>": 2}
    raw = {v.word(i): int(c) for i, c in zip(uni.ids, uni.count, strict=True)}
    assert raw == {"the": 4, "cat": 3, "sat": 3, "dog": 2, "ran": 2, "a": 1, "</s>": 5}
    the = counts.level((v.id_of("the"),))
    assert dict(zip(the.ids.tolist(), the.cont.tolist(), strict=True)) == {v.id_of("cat"): 1, v.id_of("dog"): 1}
    sat = counts.level((v.id_of("sat"),))
    assert sat.cont.tolist() == [2] and sat.count.tolist() == [3]
    bos = counts.level((v.id_of("<s>"),))
    assert sorted(bos.count.tolist()) == [1, 4] and bos.cont.tolist() == [0, 0]


def test_count_of_counts_raw_and_adjusted(counts):
    zeros = (0,) * 5
    assert counts.count_of_counts(1, RAW) == (1, 2, 2, 1, 1, *zeros)
    assert counts.count_of_counts(1, ADJUSTED) == (3, 4, 0, 0, 0, *zeros)
    assert counts.count_of_counts(2, RAW) == (6, 2, 2, 1, 0, *zeros)
    assert counts.count_of_counts(2, ADJUSTED) == (8, 2, 0, 1, 0, *zeros)
    assert counts.count_of_counts(3, RAW) == (8, 2, 1, 0, 0, *zeros)


# --- MLE -------------------------------------------------------------------------------------------------------


def test_mle_trigram(counts):
    m = model(counts, Smoothing.MLE)
    assert p(m, "sat", "the", "cat") == pytest.approx(F(2, 3), **EXACT)
    assert p(m, "cat", "<s>", "the") == pytest.approx(F(3, 4), **EXACT)


def test_mle_backs_off_to_the_longest_seen_context(counts):
    m = model(counts, Smoothing.MLE)
    # "a cat" was never seen: c(cat ran) / c(cat .) = 1/3
    assert p(m, "ran", "a", "cat") == pytest.approx(F(1, 3), **EXACT)
    # "<unk> dog" unseen: c(dog sat) / c(dog .) = 1/2
    assert p(m, "sat", "zebra", "dog") == pytest.approx(F(1, 2), **EXACT)
    # "sat <unk>" and "<unk>" unseen: the unigram c(the) / 20
    assert p(m, "the", "sat", "zebra") == pytest.approx(F(4, 20), **EXACT)


def test_mle_gives_an_unseen_word_zero(counts):
    m = model(counts, Smoothing.MLE)
    assert m.logprob("the", ("the", "cat")) == -math.inf
    assert m.logprob("zebra", ("the", "cat")) == -math.inf


# --- add-delta ---------------------------------------------------------------------------------------------------


def test_laplace(counts):
    m = model(counts, Smoothing.ADD_DELTA, delta=1.0)
    # (c(the cat w) + 1) / (3 + 8)
    assert p(m, "sat", "the", "cat") == pytest.approx(F(3, 11), **EXACT)
    assert p(m, "dog", "the", "cat") == pytest.approx(F(1, 11), **EXACT)
    assert p(m, "zebra", "the", "cat") == pytest.approx(F(1, 11), **EXACT)
    # unseen context: 1 / |V|
    assert p(m, "sat", "a", "cat") == pytest.approx(F(1, 8), **EXACT)


def test_lidstone(counts):
    m = model(counts, Smoothing.ADD_DELTA, delta=0.5)
    # (c + 1/2) / (3 + 8/2)
    assert p(m, "sat", "the", "cat") == pytest.approx(F(5, 14), **EXACT)
    assert p(m, "dog", "the", "cat") == pytest.approx(F(1, 14), **EXACT)
    # order 2: (c(<s> the) + 1/2) / (5 + 4)
    assert p(model(counts, Smoothing.ADD_DELTA, delta=0.5, order=2), "the", "<s>") == pytest.approx(F(9, 18), **EXACT)


# --- stupid backoff -----------------------------------------------------------------------------------------------


def test_stupid_backoff_seen_and_backed_off(counts):
    m = model(counts, Smoothing.STUPID_BACKOFF)
    assert p(m, "sat", "the", "cat") == pytest.approx(F(2, 3), **EXACT)
    # "a dog sat" unseen, "dog sat" seen: 0.4 * 1/2
    assert p(m, "sat", "a", "dog") == pytest.approx(F(2, 5) * F(1, 2), **EXACT)
    # "dog the" unseen too: 0.16 * c(the) / 20
    assert p(m, "the", "a", "dog") == pytest.approx(F(4, 25) * F(4, 20), **EXACT)
    assert m.logprob("zebra", ("a", "dog")) == -math.inf


def test_stupid_backoff_scores_do_not_sum_to_one(counts):
    m = model(counts, Smoothing.STUPID_BACKOFF)
    # ran 1 + sat 0.4 * 1/2 + 0.16 * (the 4 + cat 3 + dog 2 + a 1 + </s> 5) / 20 = 1 + 1/5 + 3/25 = 33/25
    assert sum(m.distribution(("a", "dog")).values()) == pytest.approx(F(33, 25), **EXACT)


# --- Katz ----------------------------------------------------------------------------------------------------------
# Good-Turing needs n1..n6 > 0 (k = 5); every order here has n6 = 0, so the absolute-discount fallback applies:
# d_c = (c - D) / c with D = n1 / (n1 + 2 n2): order 1 D = 1/5, order 2 D = 6/10 = 3/5, order 3 D = 8/12 = 2/3.
# Unigrams (<unk> unseen, so they are discounted): P1(w) = (c - 1/5) / 20:
#   the 19/100, cat 14/100, sat 14/100, dog 9/100, ran 9/100, a 4/100, </s> 24/100; left for <unk>: 7/100.
# Context "the": cat (3 - 3/5)/4 = 3/5, dog (1 - 3/5)/4 = 1/10; alpha = (1 - 7/10) / (1 - 14/100 - 9/100) = 30/77.


def test_katz_seen_and_backed_off_bigrams(counts):
    m = model(counts, Smoothing.KATZ, order=2)
    assert p(m, "cat", "the") == pytest.approx(F(3, 5), **EXACT)
    assert p(m, "dog", "the") == pytest.approx(F(1, 10), **EXACT)
    assert p(m, "sat", "the") == pytest.approx(F(30, 77) * F(14, 100), **EXACT)  # 3/55
    assert p(m, "zebra", "the") == pytest.approx(F(30, 77) * F(7, 100), **EXACT)  # <unk>: 3/110
    assert p(m, "the", "zebra") == pytest.approx(F(19, 100), **EXACT)  # unseen context: the unigram level


def test_katz_trigram_two_step_backoff(counts):
    m = model(counts, Smoothing.KATZ, order=3)
    # Context "cat": sat (2 - 3/5)/3 = 7/15, ran (1 - 3/5)/3 = 2/15; alpha = (2/5) / (1 - 23/100) = 40/77.
    # Context "the cat": sat (2 - 2/3)/3 = 4/9, ran (1 - 2/3)/3 = 1/9; alpha = (4/9) / (1 - 3/5) = 10/9 (> 1).
    assert p(m, "sat", "the", "cat") == pytest.approx(F(4, 9), **EXACT)
    assert p(m, "ran", "the", "cat") == pytest.approx(F(1, 9), **EXACT)
    assert p(m, "</s>", "the", "cat") == pytest.approx(F(10, 9) * F(40, 77) * F(24, 100), **EXACT)  # 32/231


# --- Kneser-Ney --------------------------------------------------------------------------------------------------
# Unigram level (adjusted = continuation counts, total 11; coc (3, 4, 0, 0) -> fallback D = 0.5, 1, 1.5):
#   gamma = (0.5 * 3 + 1 * 4) / 11 = 1/2;  p1 = max(a - D, 0)/11 + 1/2 * 1/8:
#   the, a, cat: 1/22 + 1/16 = 19/176;  dog, sat, ran, </s>: 1/11 + 1/16 = 27/176;  <unk>: 11/176.
P1 = {"the": F(19, 176), "a": F(19, 176), "cat": F(19, 176), "<unk>": F(11, 176)}
P1 |= dict.fromkeys(["dog", "sat", "ran", "</s>"], F(27, 176))


def test_kneser_ney_unigram_level_sums_to_one():
    assert sum(P1.values()) == 1


def test_kneser_ney_order_2(counts):
    m = model(counts, Smoothing.KNESER_NEY, order=2)
    # Top order raw, coc (6, 2, 2, 1): Y = 6/10, D1 = 1 - 2Y 2/6 = 3/5, D2 = 2 - 3Y 2/2 = 1/5, D3+ = 3 - 4Y 1/2 = 9/5.
    # Context "the": cat 3, dog 1 (4); gamma = (3/5 + 9/5) / 4 = 3/5.
    gamma = F(3, 5)
    assert p(m, "cat", "the") == pytest.approx((3 - F(9, 5)) / 4 + gamma * P1["cat"], **EXACT)  # 321/880
    assert p(m, "dog", "the") == pytest.approx((1 - F(3, 5)) / 4 + gamma * P1["dog"], **EXACT)  # 169/880
    assert p(m, "sat", "the") == pytest.approx(gamma * P1["sat"], **EXACT)  # only at the unigram level
    assert p(m, "zebra", "the") == pytest.approx(gamma * P1["<unk>"], **EXACT)  # 3/80
    # Context "<s>": the 4, a 1 (5); gamma = (3/5 + 9/5) / 5 = 12/25.
    assert p(m, "the", "<s>") == pytest.approx((4 - F(9, 5)) / 5 + F(12, 25) * P1["the"], **EXACT)  # 541/1100
    assert p(m, "cat", "<s>") == pytest.approx(F(12, 25) * P1["cat"], **EXACT)


def test_kneser_ney_order_1_uses_discounts_from_raw_counts(counts):
    m = model(counts, Smoothing.KNESER_NEY, order=1)
    # Raw coc (1, 2, 2, 1): Y = 1/5, D1 = 1 - 2Y 2 = 1/5, D2 = 2 - 3Y 2/2 = 7/5, D3+ = 3 - 4Y 1/2 = 13/5.
    # N1 = 1 (a), N2 = 2 (dog, ran), N3+ = 4; gamma = (1/5 + 14/5 + 52/5) / 20 = 67/100.
    assert p(m, "the") == pytest.approx((4 - F(13, 5)) / 20 + F(67, 800), **EXACT)  # 123/800
    assert p(m, "a") == pytest.approx((1 - F(1, 5)) / 20 + F(67, 800), **EXACT)  # 99/800
    assert p(m, "zebra") == pytest.approx(F(67, 800), **EXACT)


# Order 3: the top order's raw coc (8, 2, 1, 0) gives discounts as KenLM's lmplz does (it needs only n1, n2, n3 > 0):
# Y = 8/12 = 2/3, D1 = 1 - 2Y 2/8 = 2/3, D2 = 2 - 3Y 1/2 = 1, D3+ = 3 - 4Y 0/1 = 3. The lower orders fall back to
# D = (0.5, 1, 1.5): order 2 adjusted (8, 2, 0, 1) has n3 = 0, order 1 adjusted (3, 4, 0, 0).
# Bigram level (continuation counts): "cat": sat 1, ran 1 (2), gamma = 0.5 * 2 / 2 = 1/2, so
#   p2(sat|cat) = p2(ran|cat) = 1/4 + 1/2 * 27/176 = 115/352 and p2(w|cat) = p1(w)/2 otherwise; "dog" likewise.
#   "the": cat 1, dog 1 (2), gamma = 1/2: p2(cat|the) = 1/4 + 19/352 = 107/352, p2(dog|the) = 115/352.


def test_kneser_ney_order_3_seen_trigram(counts):
    m = model(counts, Smoothing.KNESER_NEY, order=3)
    # "the cat": sat 2, ran 1 (3, raw); gamma = (2/3 + 1) / 3 = 5/9.
    assert p(m, "sat", "the", "cat") == pytest.approx((2 - 1) / F(3) + F(5, 9) * F(115, 352), **EXACT)
    assert p(m, "ran", "the", "cat") == pytest.approx(F(1, 3) / 3 + F(5, 9) * F(115, 352), **EXACT)


def test_kneser_ney_order_3_backoff_levels(counts):
    m = model(counts, Smoothing.KNESER_NEY, order=3)
    # "a dog": ran 1 (1, raw); gamma = (2/3) / 1 = 2/3; the bigram level's "dog" has gamma 1/2.
    assert p(m, "ran", "a", "dog") == pytest.approx(F(1, 3) + F(2, 3) * F(115, 352), **EXACT)
    assert p(m, "sat", "a", "dog") == pytest.approx(F(2, 3) * F(115, 352), **EXACT)  # seen bigram only
    assert p(m, "the", "a", "dog") == pytest.approx(F(1, 3) * P1["the"], **EXACT)  # unigram level only
    assert p(m, "<unk>", "a", "dog") == pytest.approx(F(1, 3) * P1["<unk>"], **EXACT)
    assert p(m, "zebra", "a", "dog") == pytest.approx(F(11, 528), **EXACT)
    # "<unk> dog" unseen: the bigram level alone.
    assert p(m, "sat", "zebra", "dog") == pytest.approx(F(115, 352), **EXACT)


def test_kneser_ney_order_3_sentence_start_uses_raw_counts_below_the_top(counts):
    m = model(counts, Smoothing.KNESER_NEY, order=3)
    # Bigram level after "<s>" uses raw counts: the 4, a 1 (5); D from order 2 adjusted (fallback);
    # gamma = (0.5 * 1 + 1.5 * 1) / 5 = 2/5. (Continuation counts of "<s> w" are 0: that context would look unseen.)
    assert p(m, "the", "<s>") == pytest.approx((4 - F(3, 2)) / 5 + F(2, 5) * P1["the"], **EXACT)  # 239/440
    assert p(m, "a", "<s>") == pytest.approx(F(1, 2) / 5 + F(2, 5) * P1["a"], **EXACT)  # 63/440
    assert p(m, "cat", "<s>") == pytest.approx(F(2, 5) * P1["cat"], **EXACT)  # 19/440
    # "<s> the": cat 3, dog 1 (4, raw, top order); gamma = (2/3 + 3) / 4 = 11/12.
    assert p(m, "cat", "<s>", "the") == pytest.approx((3 - 3) / 4 + F(11, 12) * F(107, 352), **EXACT)
    assert p(m, "dog", "<s>", "the") == pytest.approx(F(1, 3) / 4 + F(11, 12) * F(115, 352), **EXACT)
    # The context never reaches back past <s>.
    assert p(m, "cat", "sat", "</s>", "<s>", "the") == p(m, "cat", "<s>", "the")


# --- perplexity ----------------------------------------------------------------------------------------------------


def test_perplexity_order_2_kneser_ney(counts):
    m = model(counts, Smoothing.KNESER_NEY, order=2)
    tokens = ["the", "cat", "ran", "</s>", "a", "dog", "sat", "</s>"]
    # Order-2 KN as in test_kneser_ney_order_2 (D = 3/5, 1/5, 9/5 at the top):
    # cat: sat 2, ran 1, gamma = (3/5 + 1/5)/3 = 4/15;   ran: </s> 2, gamma = (1/5)/2 = 1/10;
    # a: dog 1, gamma = 3/5;  dog: sat 1, ran 1, gamma = (6/5)/2 = 3/5;  sat: </s> 3, gamma = (9/5)/3 = 3/5.
    probs = [
        F(541, 1100),  # the | <s>
        F(321, 880),  # cat | the
        (1 - F(3, 5)) / 3 + F(4, 15) * P1["ran"],  # ran | cat = 23/132
        (2 - F(1, 5)) / 2 + F(1, 10) * P1["</s>"],  # </s> | ran = 1611/1760
        (1 - F(3, 5)) / 5 + F(12, 25) * P1["a"],  # a | <s> = 29/220
        (1 - F(3, 5)) / 1 + F(3, 5) * P1["dog"],  # dog | a = 433/880
        (1 - F(3, 5)) / 2 + F(3, 5) * P1["sat"],  # sat | dog = 257/880
        (3 - F(9, 5)) / 3 + F(3, 5) * P1["</s>"],  # </s> | sat = 433/880
    ]
    expected = math.exp(-sum(math.log(q) for q in probs) / len(probs))
    assert perplexity(m, tokens) == pytest.approx(expected, **EXACT)
    assert perplexity(m, tokens) == pytest.approx(float(math.prod(probs)) ** (-1 / 8), **EXACT)


def test_discounts_follow_lmplz_when_n4_is_zero():
    # lmplz needs n1..n3 > 0 only: with n4 = 0, D3+ = 3 (the old rule fell back to 0.5, 1, 1.5)
    assert kneser_ney_discounts((8, 2, 1, 0)) == pytest.approx((F(2, 3), 1, 3), **EXACT)
    assert kneser_ney_discounts((8, 2, 0, 1)) == KN_FALLBACK  # n3 = 0: no estimate, as lmplz (with its fallback)
    assert kneser_ney_discounts((1, 5, 50, 0)) == KN_FALLBACK  # D2 = 2 - 3Y 50/5 < 0: out of range
