"""The Engine as the one door to a store of either kind (`store.base.ModelStore`): what commands need, with an
imported ARPA model saying through the protocol (`learnable`, `ImportedModelError`) what it cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest

from lm_core.metrics import perplexity
from lsp_server.engine import Engine
from store.arpa import ArpaStore, export_arpa
from store.base import open_model_store
from store.countstore import CountStore
from store.errors import ImportedModelError

TEXT = "the cat sat on the mat\nthe dog sat on the rug\nthe cat ran\n"


@pytest.fixture
def counts_path(tmp_path: Path) -> Path:
    path = tmp_path / "s.db"
    with CountStore.open(path, order=3, tokenizer="pretokenized", create=True) as store:
        store.learn("notes", TEXT)
    return path


@pytest.fixture
def arpa_path(counts_path: Path, tmp_path: Path) -> Path:
    with CountStore.open(counts_path) as store:
        export_arpa(store.load_tables(), tmp_path / "m.arpa")
    ArpaStore.import_arpa(tmp_path / "m.arpa", tmp_path / "m.db").close()
    return tmp_path / "m.db"


def test_the_store_kind_is_read_from_the_file(counts_path: Path, arpa_path: Path) -> None:
    with open_model_store(counts_path) as counts, open_model_store(arpa_path) as arpa:
        assert (type(counts), counts.learnable) == (CountStore, True)
        assert (type(arpa), arpa.learnable) == (ArpaStore, False)


def test_an_imported_model_cannot_learn_forget_or_export_and_says_so(arpa_path: Path, tmp_path: Path) -> None:
    engine = Engine.open(arpa_path)
    cannot = f"{arpa_path} is an imported ARPA model: it scores and completes but cannot"
    with pytest.raises(ImportedModelError, match=f"^{cannot} learn$"):
        engine.learn("notes", "the cat sat\n")
    with pytest.raises(ImportedModelError, match=f"^{cannot} forget$"):
        engine.forget("notes")
    with pytest.raises(ImportedModelError, match=r"not a count store: export the ARPA file it came from$"):
        engine.export_arpa(tmp_path / "new" / "again.arpa")
    assert not (tmp_path / "new").exists()  # nothing made for an export that cannot happen
    engine.close()


def test_an_imported_model_has_no_sources_learned_text_or_adaptation(arpa_path: Path) -> None:
    engine = Engine.open(arpa_path)
    assert engine.sources() == [] and engine.base_sources() == [] and engine.learned_sentences() == []
    assert engine.version() == engine.version() == 0
    engine.enable_adaptation()
    assert engine.adaptation is None and engine.adaptation_weights() is None
    assert engine.stats()["smoothing"] == "ARPA backoff" and engine.ngram_kind == "ARPA backoff"
    assert engine.checkpoint() == 0
    engine.close()


def test_learning_through_the_engine_names_the_kind_and_changes_the_version(counts_path: Path) -> None:
    engine = Engine.open(counts_path)
    before = engine.version()
    result = engine.learn("/home/me/more.txt", "the dog ran\n", kind="file")
    assert (result.source, result.tokens, result.replaced) == ("/home/me/more.txt", 4, False)
    assert engine.version() == before + 1
    assert sorted((s.name, s.kind) for s in engine.sources()) == [("/home/me/more.txt", "file"), ("notes", "document")]
    assert sorted(engine.learned_sentences()) == [
        ["the", "cat", "ran", "</s>"],
        ["the", "cat", "sat", "on", "the", "mat", "</s>"],
        ["the", "dog", "ran", "</s>"],
        ["the", "dog", "sat", "on", "the", "rug", "</s>"],
    ]
    engine.close()


def test_the_engine_exports_what_the_store_exports_into_a_new_private_folder(counts_path: Path, tmp_path: Path) -> None:
    with CountStore.open(counts_path) as store:
        expected = export_arpa(store.load_tables(), tmp_path / "direct.arpa", order=2)
    engine = Engine.open(counts_path)
    written = engine.export_arpa(tmp_path / "out" / "via-engine.arpa", 2)
    engine.close()
    assert written == expected == {1: 11, 2: 13}  # 8 words, <unk>, <s>, </s>; 13 distinct bigrams
    assert (tmp_path / "out" / "via-engine.arpa").read_text() == (tmp_path / "direct.arpa").read_text()
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o700


def test_the_model_and_its_estimates_are_the_stores(counts_path: Path, arpa_path: Path) -> None:
    held = ["the", "cat", "sat", "on", "the", "rug", "</s>"]
    counts, arpa = Engine.open(counts_path), Engine.open(arpa_path)
    assert counts.ngram_kind == "kneser-ney" and counts.ngram.order == arpa.ngram.order == 3
    assert perplexity(arpa.ngram, held) == pytest.approx(perplexity(counts.ngram, held), rel=1e-6)
    assert [row.name for row in counts.compare(held, held)] == ["n-gram"]
    assert counts.compare(held, held)[0].perplexity == perplexity(counts.ngram, held)
    assert counts.compare(held, held)[0].description == "kneser-ney, order 3"
    counts.close()
    arpa.close()


def test_generate_continues_the_seed_as_prose(counts_path: Path) -> None:
    from lm_core.sampling import SamplingConfig

    engine = Engine.open(counts_path)
    greedy = SamplingConfig(greedy=True)
    assert engine.generate("the dog", 4, greedy) == "sat on the mat"  # "on the" ends mat or rug: a tie, broken by word
    assert engine.generate("", 3, greedy) == "The cat sat"  # a blank seed starts a sentence: capitalised
    engine.close()


def test_learning_an_analysed_text_equals_learning_the_text(counts_path: Path, arpa_path: Path) -> None:
    from store import sources

    text = "the dog ran to the cat\n"
    engine = Engine.open(counts_path)
    analysed = sources.analyse(text, engine.tokenizer)
    by_analysis = engine.learn_analysed("a", analysed, sources.sha256(text), kind="file")
    by_text = engine.learn("b", text)
    assert (by_analysis.tokens, by_analysis.changed_ngrams) == (by_text.tokens, by_text.changed_ngrams) == (7, 20)
    assert engine.learned_sentences().count(["the", "dog", "ran", "to", "the", "cat", "</s>"]) == 2
    engine.close()
    arpa = Engine.open(arpa_path)
    with pytest.raises(ImportedModelError, match=r"cannot learn$"):
        arpa.learn_analysed("a", analysed, sources.sha256(text))
    arpa.close()


def test_the_oddity_vocabulary_knows_which_pairs_the_store_has_seen_and_follows_a_learn(counts_path: Path) -> None:
    engine = Engine.open(counts_path)
    seen = engine.oddity_vocabulary().seen_pair
    assert seen("the", "cat") and seen("sat", "on") and seen("<s>", "the")
    assert not seen("cat", "the") and not seen("the", "on") and not seen("the", "zebra") and not seen("zebra", "cat")
    engine.learn("more", "the zebra sat\n")
    seen = engine.oddity_vocabulary().seen_pair
    assert seen("the", "zebra") and seen("zebra", "sat") and not seen("zebra", "cat")
