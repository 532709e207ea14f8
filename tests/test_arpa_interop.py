"""ARPA files as KenLM reads them: an n-gram whose shorter suffix is missing (SRILM pruning) is still used, positive
log10 probabilities are refused, and a model without `<unk>` scores unknown words -inf (documented, said on import).
The expected values are KenLM's (`kenlm.Model.full_scores`) for the same files."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from lm_core.backoff import BackoffModel
from lm_core.counting import count_ngrams, encode_sentences
from lm_core.counts import ADJUSTED, RAW
from lm_core.ngram import NgramModel, Smoothing
from lm_core.smoothing import kneser_ney_discounts
from lm_core.vocab import Vocab
from lsp_server.cli import main
from store.arpa import ArpaStore, export_arpa, read_arpa
from store.errors import InputError

PRUNED = """\
\\data\\
ngram 1=6
ngram 2=2
ngram 3=1

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-0.7\t</s>\t0
-0.6\ta\t-0.2
-0.6\tb\t-0.4
-0.6\tc\t0

\\2-grams:
-0.5\t<s> a\t0
-0.4\ta b\t-0.1

\\3-grams:
-0.2\ta b c

\\end\\
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_ngram_whose_suffix_is_missing_is_still_used(tmp_path: Path) -> None:
    model = BackoffModel(read_arpa(write(tmp_path, "pruned.arpa", PRUNED)))
    assert model.log10prob("c", ("a", "b")) == pytest.approx(-0.2)  # KenLM -0.2; before, -0.6 - 0.4 - 0.1 = -1.1
    assert model.log10prob("c", ("x", "b")) == pytest.approx(-0.6 - 0.4)  # no `x b c`: p(c) + bow(b)
    assert model.log10prob("a", ("a", "b")) == pytest.approx(-0.6 - 0.4 - 0.1)
    assert [p.word for p in model.predict(("a", "b"), 3)] == ["c", "a", "b"]
    assert math.isclose(sum(model.distribution(("x", "b")).values()), sum(model.distribution(("b",)).values()))


def test_the_cli_completes_a_pruned_model_with_the_longest_listed_ngram(tmp_path: Path) -> None:
    write(tmp_path, "pruned.arpa", PRUNED)
    runner = CliRunner()
    db = str(tmp_path / "m.db")
    assert runner.invoke(main, ["import-arpa", str(tmp_path / "pruned.arpa"), "--db", db]).exit_code == 0
    result = runner.invoke(main, ["complete", "--db", db, "-k", "3", "a b"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split()[1] == "c"


def test_a_positive_log10_probability_is_refused(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.arpa", PRUNED.replace("-0.6\tc\t0", "0.3\tc\t0"))
    with pytest.raises(InputError, match=r"line 12: the log10 probability 0.3 is above 0 \(a probability above 1\)"):
        read_arpa(bad)
    with pytest.raises(InputError):
        ArpaStore.import_arpa(bad, tmp_path / "bad.db")
    assert not (tmp_path / "bad.db").exists()
    ok = write(tmp_path, "ok.arpa", PRUNED.replace("-0.4\tb\t-0.4", "-0.4\tb\t0.4"))  # a positive backoff is fine
    assert read_arpa(ok).listed_counts() == {1: 6, 2: 2, 3: 1}


def test_a_model_without_unk_scores_unknown_words_minus_infinity_and_says_so(tmp_path: Path) -> None:
    text = PRUNED.replace("ngram 1=6", "ngram 1=5").replace("-1.0\t<unk>\t0\n", "")
    model = BackoffModel(read_arpa(write(tmp_path, "nounk.arpa", text)))
    assert model.logprob("zebra", ("a",)) == -math.inf  # KenLM: log10 -100
    result = CliRunner().invoke(main, ["import-arpa", str(tmp_path / "nounk.arpa"), "--db", str(tmp_path / "n.db")])
    assert result.exit_code == 0, result.output
    assert "lists no <unk>: unknown words score -inf (perplexity inf)" in result.output


# --- Kneser-Ney discounts as lmplz estimates them -------------------------------------------------------------------
# A corpus whose every order has n1, n2, n3 > 0 and n4 = 0 (count-of-counts: unigrams adjusted (3, 6, 1, 0), bigrams
# adjusted (14, 3, 1, 0), trigrams raw (13, 4, 1, 0)). lmplz estimates the discounts there (D3+ = 3); the old rule fell
# back to (0.5, 1, 1.5) at every order, 0.70 log10 away from lmplz at worst (<unk>: -1.342 against lmplz's -1.121).
N4_ZERO_CORPUS = "the cat sat on the mat\nthe cat ran\na cat was on the mat\na dog sat\nthe cat sat on a mat\n"
# `lmplz -o 3 --discount_fallback < corpus` (KenLM 0.3.0 built from source); lmplz writes <s>'s probability as 0.
LMPLZ_N4_ZERO_ARPA = """\
\\data\\
ngram 1=12
ngram 2=18
ngram 3=18

\\1-grams:
-1.1205739	<unk>	0
0	<s>	-0.06550155
-1.1205739	</s>	0
-1.0898393	the	-0.15490194
-1.0898393	cat	-0.15490194
-1.0898393	sat	-0.15490194
-1.0898393	on	-0.17609124
-1.0898393	mat	-0.18708666
-0.92008823	ran	-0.15490194
-1.0898393	a	-0.15490194
-0.92008823	was	-0.15490194
-0.92008823	dog	-0.15490194

\\2-grams:
-0.6924392	sat </s>	0
-0.39876327	mat </s>	0
-0.45218807	ran </s>	0
-1.1553409	<s> the	0
-0.54129857	on the	-0.11471957
-0.6841993	the cat	-0.14372201
-0.804324	a cat	-0.20827593
-0.804324	cat sat	-0.11471957
-0.44743016	dog sat	-0.20827593
-0.6841993	sat on	-0.20827593
-0.44743016	was on	-0.20827593
-0.6841993	the mat	-0.11471957
-0.804324	a mat	-0.20827593
-0.73484856	cat ran	-0.20827593
-0.6779269	<s> a	-0.20827593
-0.81189096	on a	-0.20827593
-0.73484856	cat was	-0.20827593
-0.73484856	a dog	-0.20827593

\\3-grams:
-0.2953024	dog sat </s>
-0.26864976	the mat </s>
-0.2019695	a mat </s>
-0.22221448	cat ran </s>
-0.4335879	sat on the
-0.25262347	was on the
-0.6841993	<s> the cat
-0.54118603	<s> a cat
-0.5727254	the cat sat
-0.220474	a dog sat
-0.40779302	cat sat on
-0.220474	cat was on
-0.40779302	on the mat
-0.3204878	on a mat
-0.58629066	the cat ran
-0.54372704	sat on a
-0.30544335	a cat was
-0.5164577	<s> a dog

\\end\\
"""


def arpa_entries(text: str) -> dict[str, float]:
    """'n-gram' -> log10 probability and 'n-gram bow' -> log10 backoff (0 where none is listed, as ARPA reads it),
    for every n-gram but <s> (whose probability is never used)."""
    entries: dict[str, float] = {}
    for row in (line.split("\t") for line in text.splitlines()):
        if len(row) >= 2 and row[1] != "<s>":
            entries[row[1]] = float(row[0])
            entries[row[1] + " bow"] = float(row[2]) if len(row) > 2 else 0.0
    return entries


def n4_zero_counts(order: int = 3):
    vocab = Vocab()
    sentences = [[*line.split(), "</s>"] for line in N4_ZERO_CORPUS.splitlines()]
    return count_ngrams(encode_sentences(sentences, vocab), order=order, vocab=vocab)


def test_discounts_with_n4_zero_are_lmplz_s() -> None:
    # lmplz's statistics for the corpus: "1 12 D1=0.2 D2=1.9 D3+=3", "2 18 D1=0.7 D2=1.3 D3+=3",
    # "3 18 D1=0.619048 D2=1.53571 D3+=3", that is Y = 1/5, 7/10, 13/21 in Chen and Goodman's formulas
    assert kneser_ney_discounts((3, 6, 1, 0)) == pytest.approx((0.2, 1.9, 3), abs=1e-12)
    assert kneser_ney_discounts((14, 3, 1, 0)) == pytest.approx((0.7, 1.3, 3), abs=1e-12)
    assert kneser_ney_discounts((13, 4, 1, 0)) == pytest.approx((13 / 21, 43 / 28, 3), abs=1e-12)


def test_an_exported_small_model_is_lmplz_s_when_n4_is_zero(tmp_path: Path) -> None:
    counts = n4_zero_counts()
    assert [counts.count_of_counts(n, kind)[:4] for n, kind in [(1, ADJUSTED), (2, ADJUSTED), (3, RAW)]] == [
        (3, 6, 1, 0),
        (14, 3, 1, 0),
        (13, 4, 1, 0),
    ]
    export_arpa(counts, tmp_path / "ours.arpa", order=3)
    ours, lmplz = arpa_entries((tmp_path / "ours.arpa").read_text()), arpa_entries(LMPLZ_N4_ZERO_ARPA)
    assert ours.keys() == lmplz.keys()
    for entry, value in lmplz.items():
        assert ours[entry] == pytest.approx(value, abs=2e-7), entry  # 7 decimals each; lmplz computes in float
    assert ours["<unk>"] == pytest.approx(-1.1205739, abs=1e-7)
    model = NgramModel(counts, smoothing=Smoothing.KNESER_NEY, order=3)
    assert model.logprob("mat", ("on", "the")) / math.log(10) == pytest.approx(-0.40779302, abs=1e-6)
    # an unknown word after "a dog": bow(a dog) + bow(dog) + p(<unk>), as lmplz's ARPA reads
    expected = -0.20827593 - 0.15490194 - 1.1205739
    assert model.logprob("zebra", ("a", "dog")) / math.log(10) == pytest.approx(expected, abs=1e-6)


LMPLZ = os.environ.get("NEXTWORD_LMPLZ") or shutil.which("lmplz")


@pytest.mark.skipif(LMPLZ is None, reason="KenLM's lmplz is not installed (set NEXTWORD_LMPLZ to its path)")
def test_lmplz_itself_gives_the_recorded_model(tmp_path: Path) -> None:
    """Where lmplz is at hand, it is run on the corpus, and its model is the one recorded above."""
    assert LMPLZ is not None
    proc = subprocess.run(
        [LMPLZ, "-o", "3", "--discount_fallback", "-S", "100M", "-T", str(tmp_path)],
        input=N4_ZERO_CORPUS,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert arpa_entries(proc.stdout) == pytest.approx(arpa_entries(LMPLZ_N4_ZERO_ARPA), abs=1e-7)
