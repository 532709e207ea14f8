"""Grammar oddities: the candidate generators, the bulk n-gram scorer, the window scoring and the selection of what
is flagged, on small texts of our own (no corpus)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from lm_core import corrections
from lm_core.corrections import Edit, NeighbourIndex, Speller, Vocabulary, edits_at, one_edit_away
from lm_core.counting import count_ngrams, encode_sentences, prune
from lm_core.morphology import Morphology, dictionary_words, lemminflect_forms
from lm_core.ngram import NgramModel
from lm_core.oddities import (
    Correction,
    OddityConfig,
    candidate_is_gated,
    explain,
    find_oddities,
    score_tokens_of,
    score_windows,
)
from lm_core.vocab import BOS, EOS, Vocab
from lsp_server.engine import Engine
from store.countstore import CountStore

TEXT = """\
i want to go home .
we want to go home now .
they want to go to the park .
i want to eat an apple .
she has an apple and a pear .
he has a dog and a cat .
the dog is in the house .
the cat is in the garden .
we went to the park yesterday .
i went to the shop yesterday .
they are good at maths .
she is good at maths .
the children are in the garden .
the child is in the house .
"""
SENTENCES = [[*line.split(), EOS] for line in TEXT.strip().splitlines()]
EVERYTHING = Vocabulary(known=lambda w: True, near=lambda w: ())


@pytest.fixture(scope="module")
def model() -> NgramModel:
    vocab = Vocab()
    return NgramModel(count_ngrams(encode_sentences(SENTENCES * 3, vocab), order=3, vocab=vocab))


def known_to(model: NgramModel) -> Vocabulary:
    vocab = model.counts.vocab
    return Vocabulary(known=lambda w: w in vocab, near=NeighbourIndex([w for w in vocab.words if w.isalpha()]))


# --- generators ----------------------------------------------------------------------------------------------
def test_each_generator_states_its_edits_as_a_replacement_of_tokens() -> None:
    tokens = ["i", "want", "go", "go", "home", EOS]
    assert list(corrections.doubled_edits(tokens, 3, EVERYTHING)) == [Edit("doubled", 3, 4, ())]
    assert list(corrections.doubled_edits(["had", "had", EOS], 1, EVERYTHING)) == []  # "she had had enough"
    assert list(corrections.transposition_edits(tokens, 1, EVERYTHING)) == [Edit("transposition", 1, 3, ("go", "want"))]
    articles = list(corrections.article_edits(tokens, 2, EVERYTHING))
    assert articles == [Edit("article", 2, 3, (a, "go")) for a in ("a", "an", "the")]  # inserted before 'go'
    the = list(corrections.article_edits(["the", "dog", EOS], 0, EVERYTHING))
    assert the == [Edit("article", 0, 1, ("a",)), Edit("article", 0, 1, ("an",)), Edit("article", 0, 1, ())]
    # a/an is a confusion set, not an article substitution
    assert Edit("article", 0, 1, ("an",)) not in list(corrections.article_edits(["a", "apple", EOS], 0, EVERYTHING))
    preps = list(corrections.preposition_edits(["good", "in", "maths", EOS], 1, EVERYTHING))
    assert Edit("preposition", 1, 2, ("at",)) in preps and Edit("preposition", 1, 2, ()) in preps
    assert len(preps) == len(corrections.PREPOSITIONS)  # every other preposition, and dropping it
    missing = list(corrections.missing_word_edits(["i", "go", EOS], 1, EVERYTHING))
    assert Edit("missing word", 1, 2, ("will", "go")) in missing
    assert [e.tokens for e in corrections.confusion_edits(["their", "is"], 0, EVERYTHING)] == [("there",), ("they're",)]


def test_inflections_come_from_lemminflect_and_only_known_forms_are_proposed() -> None:
    assert set(corrections.inflections("went")) == {"go", "goes", "going", "gone"}
    assert {"child"} <= set(corrections.inflections("children"))
    only_goes = Vocabulary(known=lambda w: w == "goes", near=lambda w: ())
    assert list(corrections.inflection_edits(["he", "go", EOS], 1, only_goes)) == [Edit("inflection", 1, 2, ("goes",))]


def test_the_shipped_inflection_table_gives_lemminflects_answers_for_every_word_it_knows() -> None:
    """The table (`lm_core/data/inflections.tsv.gz`) is lemminflect's lookups made once: every dictionary word's
    forms and membership equal lemminflect's own (the way `inflections` used them before the table), and words it
    does not know get nothing."""
    lemminflect = pytest.importorskip("lemminflect")
    table = Morphology.load()
    words = dictionary_words()
    assert len(table) == len(words) > 60_000
    for word in words:
        expected = [f for f in lemminflect_forms(word) or () if f != word]
        assert list(table.forms(word)) == expected, word
        assert table.known(word) == bool(lemminflect.getAllLemmas(word)), word
    for word in ("hte", "zzyzx", "", "qwertyuiop"):
        assert table.forms(word) == () and table.known(word) == bool(lemminflect.getAllLemmas(word)) is False
    assert table.known("Walked") and set(table.forms("Walked")) == {*table.forms("walked"), "walked"}


def test_an_unsorted_inflection_table_is_refused() -> None:
    with pytest.raises(ValueError, match="not sorted"):
        Morphology("went\tgo\nchildren\tchild\n")
    assert Morphology("children\tchild\nwent\tgo goes\n").forms("went") == ("go", "goes")


def test_edits_at_proposes_each_replacement_once_and_never_the_text_itself() -> None:
    tokens = ["she", "is", "good", "in", "maths", EOS]
    edits = edits_at(tokens, 3, EVERYTHING, corrections.KINDS)
    keys = [(e.start, e.stop, e.tokens) for e in edits]
    assert len(keys) == len(set(keys))
    assert all(e.tokens != tuple(tokens[e.start : e.stop]) for e in edits)
    assert edits_at(tokens, 3, EVERYTHING, ()) == []


def test_the_neighbour_index_finds_exactly_the_words_one_edit_away() -> None:
    words = ["from", "form", "farm", "forms", "for", "fro", "of", "the", "then", "than", "hte", "tehn", "there"]
    index = NeighbourIndex(words)
    for query in ("from", "form", "teh", "fomr", "thn", "then", "xyz", "fro"):
        assert set(index(query)) == {w for w in one_edit_away(query) if w in words}, query
    assert set(index("form")) == {"from", "farm", "forms", "for"}


def test_misspellings_are_words_no_dictionary_knows() -> None:
    vocab = Vocabulary(known=lambda w: w in {"sciences", "science"}, near=NeighbourIndex(["sciences", "science"]))
    assert list(corrections.misspelling_edits(["siences", EOS], 0, vocab)) == [Edit("misspelling", 0, 1, ("sciences",))]
    assert list(corrections.misspelling_edits(["sigh", EOS], 0, vocab)) == []  # a word lemminflect knows
    assert list(corrections.spelling_edits(["siences", EOS], 0, vocab)) == []  # real-word spelling: known words only


def test_the_speller_offers_the_closest_known_words_one_edit_away_or_two_for_long_words() -> None:
    words = ["the", "then", "prefer", "preferred", "successful", "environment", "they"]
    speller = Speller(words)
    assert speller("hte") == ("the",)  # adjacent letters swapped: one edit
    assert speller("thn") == ("the", "then")  # both one edit away, in the list's order
    assert speller("preffer") == ("prefer",)  # one edit wins over 'preferred' (two)
    assert speller("succesfull") == ("successful",)  # two edits, a word of 6+ letters
    assert speller("inviroment") == ("environment",)
    assert speller("thye") == ("the", "they")  # one deletion, one swap: equally close, in the list's order
    assert speller("hten") == ("then",)
    assert speller("xqzt") == ()  # nothing within one edit, and too short for two
    vocab = Vocabulary(known=lambda w: w in words, near=lambda w: (), spell=speller)
    assert list(corrections.misspelling_edits(["hte", EOS], 0, vocab)) == [Edit("misspelling", 0, 1, ("the",))]
    assert list(corrections.misspelling_edits(["ht", EOS], 0, vocab)) == []  # two letters: never judged


# --- scoring ---------------------------------------------------------------------------------------------------
def test_bulk_logprobs_equal_logprob_bit_for_bit(model: NgramModel) -> None:
    words = [*model.counts.vocab.words, "unseen-word"]
    queries = [(w, c) for w in words for c in [(BOS,), (BOS, "i"), ("want", "to"), ("the", "dog"), ("zz", "qq"), ()]]
    assert model.logprobs(queries) == [model.logprob(w, c) for w, c in queries]


def test_bulk_logprobs_equal_logprob_on_a_pruned_store(tmp_path: Path) -> None:
    vocab = Vocab()
    pruned = prune(count_ngrams(encode_sentences(SENTENCES * 2, vocab), order=3, vocab=vocab), [1, 2, 3])
    model = NgramModel(pruned)
    contexts = [(BOS,), ("want", "to"), ("to", "the"), ("go", "home"), ("the", "park")]
    queries = [(w, c) for w in vocab.words for c in contexts]
    assert model.logprobs(queries) == [model.logprob(w, c) for w, c in queries]
    with CountStore.open(tmp_path / "s.db", order=3, tokenizer="pretokenized", create=True) as store:
        store.learn("text", TEXT)
        engine = Engine(store)
        assert engine.ngram.logprobs(queries) == [engine.ngram.logprob(w, c) for w, c in queries]
        engine.close()


def test_score_windows_sums_each_token_given_the_tokens_before_it(model: NgramModel) -> None:
    prefix, window = ["i", "want"], ["to", "go", "home"]
    expected = (
        model.logprob("to", ("i", "want")) + model.logprob("go", ("want", "to")) + model.logprob("home", ("to", "go"))
    )
    memo: dict = {}
    [got] = score_windows(model, [(prefix, window)], memo)
    assert got == expected
    assert len(memo) == 3 and score_windows(model, [(prefix, window)], memo) == [got]  # the second time: memoised
    [start] = score_windows(model, [([], ["i"])])
    assert start == model.logprob("i", (BOS,))


# --- finding oddities ------------------------------------------------------------------------------------------
OPEN = OddityConfig(threshold_bits=3.0, gate_bits=0.0, insertion_gate_bits=0.0, frequency_weight=0.0,
                    deletion_bits=0.0, kind_bits=())  # fmt: skip


def flagged(model: NgramModel, text: str, config: OddityConfig = OPEN) -> list[tuple[int, int, tuple[str, ...], str]]:
    tokens = [*text.split(), EOS]
    found = find_oddities(model, tokens, config, vocab=known_to(model))
    return [(o.index, o.end, o.alternatives[0].tokens, o.alternatives[0].kind) for o in found]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i want go home .", (2, 3, ("to", "go"), "preposition")),  # a missing 'to' (a preposition inserted)
        ("we want to go to park yesterday .", (5, 6, ("the", "park"), "article")),
        ("she is good in maths .", (3, 4, ("at",), "preposition")),
        ("the childs is in the house .", (1, 2, ("child",), "misspelling")),  # no word: a misspelling
        ("the children is in the garden .", (2, 3, ("are",), "confusion")),
        ("the dog is in house the .", (4, 6, ("the", "house"), "transposition")),
        ("i went to the the park yesterday .", (4, 5, (), "doubled")),
    ],
)
def test_a_planted_error_is_flagged_with_its_correction(
    model: NgramModel, text: str, expected: tuple[int, int, tuple[str, ...], str]
) -> None:
    assert expected in flagged(model, text)


def test_clean_sentences_of_the_text_are_not_flagged(model: NgramModel) -> None:
    for sentence in SENTENCES:
        assert flagged(model, " ".join(sentence[:-1]), OddityConfig()) == []


def test_skipped_and_fixed_tokens_are_never_changed(model: NgramModel) -> None:
    tokens = ["she", "is", "good", "in", "maths", ".", EOS]
    everything = find_oddities(model, tokens, OPEN, vocab=known_to(model))
    assert any(o.index == 3 for o in everything)
    fixed = [True, True, True, False, True, False, False]
    assert all(o.index != 3 for o in find_oddities(model, tokens, OPEN, editable=fixed, vocab=known_to(model)))
    skip = [False, False, False, True, False, True, True]
    assert all(o.index != 3 for o in find_oddities(model, tokens, OPEN, skip=skip, vocab=known_to(model)))


def test_a_word_may_be_inserted_before_a_token_that_is_never_changed(model: NgramModel) -> None:
    tokens = [*["we", "want", "to", "go", "to", "park", "yesterday", "."], EOS]
    fixed = [t != "park" for t in tokens]  # 'park' as a name would be: never changed
    [odd] = [o for o in find_oddities(model, tokens, OPEN, editable=fixed, vocab=known_to(model)) if o.index == 5]
    assert odd.alternatives[0].tokens == ("the", "park")
    assert all(c.tokens[-1] == "park" and len(c.tokens) == 2 for c in odd.alternatives)  # only insertions


def test_edits_are_gated_by_the_surprisal_near_them() -> None:
    tokens = ["we", "want", "go", "park", EOS]
    bits = [3.0, 2.0, 6.5, 9.5, 1.0]
    config = OddityConfig(gate_bits=7.0, insertion_gate_bits=9.0)
    assert not candidate_is_gated(tokens, Edit("article", 3, 4, ("the", "park")), bits, config)  # 9.5 >= 9
    assert candidate_is_gated(tokens, Edit("preposition", 2, 3, ("to", "go")), bits, config)  # 6.5 < 9
    assert not candidate_is_gated(tokens, Edit("inflection", 2, 3, ("goes",)), bits, config)  # the next: 9.5 >= 7
    assert candidate_is_gated(tokens, Edit("inflection", 1, 2, ("wants",)), bits, config)  # 2.0 and 6.5 < 7
    assert not candidate_is_gated(tokens, Edit("confusion", 1, 2, ("want",)), bits, config)  # never gated


def test_without_insertions_the_edits_are_the_same_less_those_that_insert_a_word() -> None:
    sentences = [["i", "want", "go", "to", "the", "park", "in", "summer", EOS], ["the", "the", "dogs", "runs", EOS]]
    kinds = frozenset(corrections.KINDS)
    for tokens in sentences:
        for i in range(len(tokens) - 1):
            every = edits_at(tokens, i, EVERYTHING, kinds)
            kept = [tuple(tokens[e.start : e.stop]) for e in every]  # an insertion keeps these after its new word
            inserting = [e for e, k in zip(every, kept, strict=True) if len(k) == 1 and e.tokens[1:] == k]
            assert edits_at(tokens, i, EVERYTHING, kinds, insertions=False) == [e for e in every if e not in inserting]
    assert any(e.kind == "missing word" for e in edits_at(sentences[0], 2, EVERYTHING, kinds))  # there were some


def test_no_insertion_is_proposed_before_a_token_below_the_insertion_gate(model: NgramModel) -> None:
    tokens = [*["we", "want", "to", "go", "to", "park", "yesterday", "."], EOS]
    open_gate = replace(OPEN, kinds=frozenset({"article", "missing word"}))
    [odd] = [o for o in find_oddities(model, tokens, open_gate, vocab=known_to(model)) if o.index == 5]
    assert odd.alternatives[0].tokens == ("the", "park")
    surprisal = -math.log2(math.exp(score_tokens_of(model, tokens)[5]))
    shut = replace(open_gate, insertion_gate_bits=surprisal + 0.01, gate_bits=100.0)
    assert all(o.index != 5 for o in find_oddities(model, tokens, shut, vocab=known_to(model)))


def test_the_threshold_and_the_kinds_decide_what_is_flagged(model: NgramModel) -> None:
    tokens = ["she", "is", "good", "in", "maths", ".", EOS]
    [odd] = [o for o in find_oddities(model, tokens, OPEN, vocab=known_to(model)) if o.index == 3]
    gain = odd.alternatives[0].gain
    above = OddityConfig(**{**OPEN.__dict__, "threshold_bits": gain + 0.01})
    assert all(o.index != 3 for o in find_oddities(model, tokens, above, vocab=known_to(model)))
    no_prepositions = OddityConfig(**{**OPEN.__dict__, "kinds": frozenset(corrections.KINDS) - {"preposition"}})
    assert all(o.alternatives[0].kind != "preposition" for o in find_oddities(model, tokens, no_prepositions))


def test_the_gain_is_the_window_log2_ratio_normalised_by_the_settings(model: NgramModel) -> None:
    tokens = ["she", "is", "good", "in", "maths", ".", EOS]
    [odd] = [o for o in find_oddities(model, tokens, OPEN, vocab=known_to(model)) if o.index == 3]
    at = next(c for c in odd.alternatives if c.tokens == ("at",))

    def window(word: str) -> float:
        return score_windows(model, [(tokens[:3], [word, "maths", "."])])[0]

    assert at.window_bits == pytest.approx((window("at") - window("in")) / math.log(2), rel=1e-12)
    assert at.gain == at.window_bits  # no frequency weight in OPEN
    weighted = OddityConfig(**{**OPEN.__dict__, "frequency_weight": 0.5})
    [odd] = [o for o in find_oddities(model, tokens, weighted, vocab=known_to(model)) if o.index == 3]
    at_weighted = next(c for c in odd.alternatives if c.tokens == ("at",))
    unigram = (model.logprob("at", ()) - model.logprob("in", ())) / math.log(2)
    assert at_weighted.gain == pytest.approx(at.window_bits - 0.5 * unigram, rel=1e-12)


def test_dropping_either_word_of_a_doubled_pair_is_one_flag(model: NgramModel) -> None:
    found = flagged(model, "i went to the the park yesterday .")
    assert [f for f in found if f[2] == ()] == [(4, 5, (), "doubled")]


def test_explanations_are_plain_words() -> None:
    an = Correction(("an",), 9.0, "confusion", 8.0)
    assert explain("a", "an", an) == "'an' before a vowel sound; the model finds 'an' 256x likelier than 'a' here"
    inflected = Correction(("information",), 9.0, "inflection", math.log2(300))
    assert explain("informations", "information", inflected) == (
        "another form of the same word: 'information'; the model finds 'information' 300x likelier than "
        "'informations' here"
    )
    dropped = Correction((), 12.0, "doubled", 3.0)
    assert explain("the", "", dropped) == "'the' is repeated; the model finds '(nothing)' 8.0x likelier than 'the' here"
    misspelt = Correction(("sciences",), -3.0, "misspelling", -3.0)
    assert explain("siences", "sciences", misspelt) == (
        "'siences' is not a word the model or the dictionary knows; perhaps 'sciences'"
    )


def test_the_oddity_kinds_setting_is_validated() -> None:
    from lsp_server.settings import Settings, parse_settings

    settings, problems = parse_settings({"oddityKinds": ["article", "misspelling", "article"]})
    assert (settings.oddity_kinds, problems) == (("article", "misspelling"), [])
    settings, [problem] = parse_settings({"oddityKinds": ["articles"]})
    assert settings.oddity_kinds == Settings().oddity_kinds == corrections.KINDS
    assert problem.startswith("nextword setting 'oddityKinds': unknown kind(s) 'articles'; known: confusion, ")
    assert parse_settings({"oddityKinds": "article"})[1] != []


def test_a_neighbour_index_given_more_words_answers_as_one_built_over_all_of_them() -> None:
    first, more = ["cat", "cart", "dog", "bat"], ["cast", "car", "dot", "at"]
    grown = NeighbourIndex(first)
    grown.add(more)
    whole = NeighbourIndex(first + more)
    for query in ["cat", "ca", "cst", "dig", "bt", "act", "zzz"]:
        assert sorted(grown(query)) == sorted(whole(query)), query
        assert set(grown(query)) == {w for w in one_edit_away(query) if w in first + more}, query


def test_an_insertion_is_not_refused_for_a_pair_the_sentence_already_has(model: NgramModel) -> None:
    pairs = {(a, b) for s in SENTENCES for a, b in zip([BOS, *s], s, strict=False)}
    base = known_to(model)
    vocab = Vocabulary(base.known, base.near, seen_pair=lambda a, b: (a, b) in pairs)
    tokens = ["we", "went", "to", "park", "now", ".", EOS]  # 'park now' is in no sentence of the text
    assert ("park", "now") not in pairs
    found = find_oddities(model, tokens, OPEN, vocab=vocab)
    assert ("the", "park") in [c.tokens for o in found if o.index == 3 for c in o.alternatives]
    swapped = ["we", "went", "to", "park", "the", "now", ".", EOS]  # swapping back would make 'park now': refused
    found = find_oddities(model, swapped, OPEN, vocab=vocab)
    assert all(c.kind != "transposition" for o in found for c in o.alternatives)
    for vocabulary, config in ((Vocabulary(base.known, base.near), OPEN), (vocab, replace(OPEN, seen_pairs=False))):
        found = find_oddities(model, swapped, config, vocab=vocabulary)  # no pairs known, or the filter off
        assert ("the", "park") in [c.tokens for o in found for c in o.alternatives if c.kind == "transposition"]


def test_blend_bits_move_every_threshold_only_when_a_screened_model_decides(model: NgramModel) -> None:
    tokens = ["she", "is", "good", "in", "maths", ".", EOS]
    [odd] = [o for o in find_oddities(model, tokens, OPEN, vocab=known_to(model)) if o.index == 3]
    above = replace(OPEN, threshold_bits=odd.alternatives[0].gain + 0.01, blend_bits=-0.02)
    assert all(o.index != 3 for o in find_oddities(model, tokens, above, vocab=known_to(model)))  # no screen
    screened = find_oddities(model, tokens, above, vocab=known_to(model), screen=model)
    assert [c.tokens for o in screened if o.index == 3 for c in o.alternatives][:1] == [odd.alternatives[0].tokens]
    assert above.for_screened().threshold_bits == pytest.approx(odd.alternatives[0].gain - 0.01)
