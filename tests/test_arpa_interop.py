"""ARPA files as KenLM reads them: an n-gram whose shorter suffix is missing (SRILM pruning) is still used, positive
log10 probabilities are refused, and a model without `<unk>` scores unknown words -inf (documented, said on import).
The expected values are KenLM's (`kenlm.Model.full_scores`) for the same files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from lm_core.backoff import BackoffModel
from lsp_server.cli import main
from store.arpa import ArpaStore, read_arpa
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
