"""ARPA export, import and the backoff model: the exported file reproduces the Kneser-Ney model exactly."""

from __future__ import annotations

import gzip
import itertools
import math

import numpy as np
import pytest

from lm_core.backoff import ArpaTables, BackoffModel, kneser_ney_tables
from lm_core.counting import count_ngrams, encode_sentences
from lm_core.metrics import contexts, perplexity
from lm_core.model import LanguageModel
from lm_core.ngram import NgramModel, Smoothing
from lm_core.vocab import Vocab
from store.arpa import ArpaStore, export_arpa, read_arpa, write_arpa
from store.countstore import CountStore
from store.errors import InputError, StoreError, StoreMismatchError

TEXT = """
the cat sat on the mat
the dog sat on the mat
the cat ran to the dog
a dog ran to a cat
the cat sat
the cat sat on a mat
a cat saw the dog
the dog saw a cat on the mat
the cat ran
a dog sat
the mat was on the dog
a cat was on the mat
the dog ran
"""
TEST_TEXT = "the cat sat on a dog\nthe zebra ran to the mat\nmat the on sat\na dog was the cat\n"
CONTEXT_WORDS = ["<s>", "the", "cat", "on", "mat", "a", "zebra"]


def sentences(text: str) -> list[list[str]]:
    return [[*line.split(), "</s>"] for line in text.strip().splitlines()]


def tokens(text: str) -> list[str]:
    return [w for s in sentences(text) for w in s]


@pytest.fixture(scope="module")
def counts():
    vocab = Vocab()
    return count_ngrams(encode_sentences(sentences(TEXT), vocab), order=4, vocab=vocab)


@pytest.fixture(scope="module")
def arpa_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("arpa")


@pytest.fixture(scope="module")
def arpa3(counts, arpa_dir):
    path = arpa_dir / "kn3.arpa"
    export_arpa(counts, path, order=3)
    return path


def all_contexts(order: int):
    """Every context of up to order-1 words from CONTEXT_WORDS, and each longest one with a word in front."""
    for n in range(order):
        yield from itertools.product(CONTEXT_WORDS, repeat=n)
    for context in itertools.product(CONTEXT_WORDS, repeat=order - 1):
        yield ("mat", *context)


def scored_words(counts) -> list[str]:
    return [w for w in counts.vocab.words if w != "<s>"] + ["zebra"]


# --- export reproduces the model ------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [2, 3, 4])
def test_exported_arpa_scores_every_word_like_the_kneser_ney_model(counts, arpa_dir, order):
    path = arpa_dir / f"exact{order}.arpa"
    export_arpa(counts, path, order=order)
    ours, theirs = NgramModel(counts, smoothing=Smoothing.KNESER_NEY, order=order), BackoffModel(read_arpa(path))
    for context in all_contexts(order):
        for word in scored_words(counts):
            assert theirs.logprob(word, context) == pytest.approx(ours.logprob(word, context), abs=1e-5)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_in_memory_tables_equal_the_model_to_rounding_error(counts, order):
    ours = NgramModel(counts, smoothing=Smoothing.KNESER_NEY, order=order)
    theirs = BackoffModel(kneser_ney_tables(counts, order))
    for context in all_contexts(min(order, 3)):
        for word in scored_words(counts):
            assert theirs.logprob(word, context) == pytest.approx(ours.logprob(word, context), abs=1e-12)


def section(text: str, n: int) -> list[str]:
    return text.split(f"\\{n}-grams:\n")[1].split("\n\n")[0].splitlines()


def test_export_lists_unk_and_sentence_start_like_kenlm(counts, arpa3):
    text = arpa3.read_text()
    assert text.startswith("\\data\\\nngram 1=") and text.endswith("\n\\end\\\n")
    unigrams = {line.split("\t")[1]: line.split("\t") for line in section(text, 1)}
    assert unigrams["<s>"][0] == "-99.0" and len(unigrams["<s>"]) == 3
    unk = float(unigrams["<unk>"][0]) * math.log(10)
    assert unk == pytest.approx(NgramModel(counts, order=3).logprob("<unk>", ()), abs=1e-6)


def test_only_contexts_carry_a_backoff(arpa3):
    text = arpa3.read_text()
    assert all(len(line.split("\t")) == 2 for line in section(text, 3))
    assert all(len(line.split("\t")) == 2 for line in section(text, 2) if line.endswith(" </s>"))
    assert any(len(line.split("\t")) == 3 for line in section(text, 2))


def test_export_returns_the_counts_it_wrote(counts, arpa_dir):
    written = export_arpa(counts, arpa_dir / "c.arpa", order=3)
    header = (arpa_dir / "c.arpa").read_text().split("\n\n")[0].splitlines()[1:]
    assert header == [f"ngram {n}={c}" for n, c in written.items()]
    assert written[2] == len(counts.tables[1]) and written[1] == len(counts.tables[0]) + 1  # + <unk>


# --- KenLM ------------------------------------------------------------------------------------------------------------
def test_kenlm_scores_our_arpa_as_we_do(counts, arpa3):
    kenlm = pytest.importorskip("kenlm")
    model = kenlm.Model(str(arpa3))
    ours = NgramModel(counts, order=3)
    for line, sentence in zip(TEST_TEXT.splitlines(), sentences(TEST_TEXT), strict=True):
        expected = [ours.logprob(w, c) / math.log(10) for w, c in contexts(sentence, 2)]
        got = [score for score, _, _ in model.full_scores(line, bos=True, eos=True)]
        assert got == pytest.approx(expected, abs=1e-5)
        assert model.score(line, bos=True, eos=True) == pytest.approx(sum(expected), abs=1e-5)
    kenlm_ppl = 10 ** (-sum(model.score(line) for line in TEST_TEXT.splitlines()) / len(tokens(TEST_TEXT)))
    assert kenlm_ppl == pytest.approx(perplexity(ours, tokens(TEST_TEXT)), rel=1e-4)


# --- the backoff model ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backoff3(arpa3) -> BackoffModel:
    return BackoffModel(read_arpa(arpa3))


@pytest.mark.parametrize("context", [(), ("<s>",), ("<s>", "the"), ("the", "cat"), ("zebra",), ("on", "zebra")])
def test_distribution_sums_to_one(backoff3, context):
    assert math.fsum(backoff3.distribution(context).values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("prefix", ["", "c", "ma", "s", "zz"])
@pytest.mark.parametrize("context", [("<s>",), ("the", "cat"), ("a",), ("zebra", "mat"), ()])
def test_predict_is_the_top_k_of_the_distribution(backoff3, context, prefix):
    dist = {w: p for w, p in backoff3.distribution(context).items() if w.startswith(prefix)}
    expected = sorted(dist.items(), key=lambda wp: (-wp[1], wp[0]))[:4]
    got = backoff3.predict(context, k=4, prefix=prefix)
    assert [(p.word, p.prob) for p in got] == [(w, pytest.approx(p, rel=1e-12)) for w, p in expected]
    assert all(p.prob == math.exp(backoff3.logprob(p.word, context)) for p in got)


def test_predict_breaks_ties_by_word(tmp_path):
    path = tmp_path / "ties.arpa"
    path.write_text(
        "\\data\\\nngram 1=6\n\n\\1-grams:\n-1\t<unk>\n-99\t<s>\n-0.5\t</s>\n"
        "-1\tzulu\n-1\tbravo\n-1\talpha\n\n\\end\\\n"
    )
    model = BackoffModel(read_arpa(path))
    assert [p.word for p in model.predict((), k=3)] == ["</s>", "<unk>", "alpha"]
    assert [p.word for p in model.predict((), k=2, prefix="b")] == ["bravo"]


def test_unknown_words_score_as_unk(backoff3):
    assert backoff3.logprob("zebra", ("the",)) == backoff3.logprob("<unk>", ("the",))
    assert backoff3.logprob("the", ("zebra",)) == backoff3.logprob("the", ("<unk>",))
    assert backoff3.logprob("<s>", ()) == -math.inf


def test_contexts_never_reach_before_sentence_start(backoff3):
    assert backoff3.logprob("cat", ("a", "dog", "<s>", "the")) == backoff3.logprob("cat", ("<s>", "the"))


PRUNED = """\\data\\
ngram 1=5
ngram 2=3
ngram 3=1

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.25
-0.5\t</s>
-0.6\ta\t-0.125
-0.7\tb\t-0.5

\\2-grams:
-0.2\t<s> a\t-0.0625
-0.3\ta </s>
-0.4\tb </s>

\\3-grams:
-0.05\ta b </s>

\\end\\
"""


def test_a_context_missing_from_a_pruned_file_backs_off_as_if_absent(tmp_path):
    path = tmp_path / "pruned.arpa"  # "a b" is not listed, yet "a b </s>" is
    path.write_text(PRUNED)
    tables = read_arpa(path)
    model, ln10 = BackoffModel(tables), math.log(10)
    assert model.logprob("</s>", ("a", "b")) == pytest.approx(-0.05 * ln10)
    assert model.logprob("a", ("a", "b")) == pytest.approx((-0.6 - 0.5) * ln10)
    assert model.logprob("b", ("<s>", "a")) == pytest.approx((-0.7 - 0.125 - 0.0625) * ln10)
    assert model.logprob("</s>", ("<s>", "a")) == pytest.approx((-0.3 - 0.0625) * ln10)
    assert tables.entry((3, 4)) is None and tables.listed_counts() == {1: 5, 2: 3, 3: 1}
    assert [p.word for p in model.predict(("a", "b"), k=1)] == ["</s>"]


def test_gzipped_arpa_files_are_read(tmp_path):
    path = tmp_path / "pruned.arpa.gz"
    path.write_bytes(gzip.compress(PRUNED.encode()))
    assert read_arpa(path).listed_counts() == {1: 5, 2: 3, 3: 1}


# --- the SQLite store -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(arpa3, arpa_dir):
    with ArpaStore.import_arpa(arpa3, arpa_dir / "kn3.db") as s:
        yield s


def test_round_trip_through_the_store_gives_the_same_file(arpa3, store, arpa_dir):
    again = arpa_dir / "again.arpa"
    written = write_arpa(store.load_tables(), again)
    assert again.read_text() == arpa3.read_text()
    assert written == store.counts() == read_arpa(arpa3).listed_counts()


def test_round_trip_keeps_every_value(arpa3, store):
    a, b = read_arpa(arpa3), store.load_tables()
    assert a.vocab.words == b.vocab.words
    for x, y in zip(a.orders, b.orders, strict=True):
        assert np.array_equal(x.grams, y.grams) and np.array_equal(x.logprob, y.logprob)
        assert np.array_equal(x.backoff, y.backoff) and np.array_equal(x.has_backoff, y.has_backoff)


def test_store_model_scores_and_predicts_like_the_file_model(store, backoff3):
    model = store.model()
    assert isinstance(model, LanguageModel) and model.order == 3
    for context in all_contexts(2):
        for word in ["the", "cat", "</s>", "zebra", "mat"]:
            assert model.logprob(word, context) == backoff3.logprob(word, context)
        assert model.predict(context, k=5) == backoff3.predict(context, k=5)


def test_reopened_store_says_what_it_is(store):
    with ArpaStore.open(store.path) as again:
        assert (again.order, again.tokenizer) == (3, "pretokenized")
        assert again.stats()["ngrams"] == store.counts()


def test_import_refuses_an_existing_store(arpa3, store):
    with pytest.raises(StoreError, match="already exists"):
        ArpaStore.import_arpa(arpa3, store.path)


def test_a_count_store_is_not_an_arpa_store(tmp_path):
    with CountStore.open(tmp_path / "counts.db", create=True):
        pass
    with pytest.raises(StoreMismatchError):
        ArpaStore.open(tmp_path / "counts.db")


def test_a_failed_import_leaves_no_file(tmp_path):
    with pytest.raises(InputError):
        ArpaStore.import_arpa(tmp_path / "missing.arpa", tmp_path / "new.db")
    assert not (tmp_path / "new.db").exists()


# --- bad input --------------------------------------------------------------------------------------------------------
def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_arpa(tmp_path / "nope.arpa")


def test_a_file_without_data_is_not_arpa(tmp_path):
    (tmp_path / "x.arpa").write_text("hello\nworld\n")
    with pytest.raises(InputError, match="not an ARPA file"):
        read_arpa(tmp_path / "x.arpa")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("ngram 2=3", "ngram 2=4"), r"line 17: the \\2-grams: section ends after 3"),
        (lambda t: t.replace("ngram 2=3", "ngram 2=2"), r"line 16: more 2-grams than the 2"),
        (lambda t: t.split("\\3-grams:")[0], r"line 18: expected the \\3-grams: section, found the end"),
        (lambda t: t.replace("\\end\\\n", ""), r"line 21: expected \\end\\"),
        (lambda t: t.replace("ngram 2=3", "ngram 2=three"), r"line 3: expected 'ngram N=COUNT'"),
        (lambda t: t.replace("-0.3\ta </s>", "-0.3\ta"), r"line 15: expected 'log10prob', 2 word"),
        (lambda t: t.replace("-0.3\ta </s>", "x\ta </s>"), r"line 15: not a number"),
        (lambda t: t.replace("-0.3\ta </s>", "-0.3\ta c"), r"line 15: the word 'c' is not among the unigrams"),
        (lambda t: t.replace("-0.3\ta </s>", "-0.3\t<s> a"), r"line 15: duplicate 2-gram"),
    ],
)
def test_bad_arpa_files_name_the_line(tmp_path, edit, message):
    path = tmp_path / "bad.arpa"
    path.write_text(edit(PRUNED))
    with pytest.raises(InputError, match=message):
        read_arpa(path)


def test_a_binary_file_is_not_arpa(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\\data\\\n\xff\xfe\x00")
    with pytest.raises(InputError, match="not UTF-8"):
        read_arpa(tmp_path / "x.bin")


def test_tables_reject_duplicates_given_directly():
    grams = [np.array([[0], [2], [0]])]
    with pytest.raises(ValueError, match="duplicate 1-gram"):
        ArpaTables.from_arrays(Vocab(), grams, [np.zeros(3)], [np.zeros(3)], [np.zeros(3, bool)])
