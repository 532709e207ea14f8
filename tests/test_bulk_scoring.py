"""The bulk paths a check takes give the numbers of the one-at-a-time paths: follower lists read packed and in bulk
equal the store's rows, the n-gram model's many-query scoring equals `logprob` bit for bit (its memo evicting or
not), sentences scored together equal sentences scored alone, and the numpy decoder with its folded bias equals
the product plus the bias."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lm_core import ngram
from lm_core.inference import NeuralConfig, build_network
from lm_core.metrics import continuation_scores, perplexity, perplexity_of_scores, sentence_scores
from lm_core.ngram import NgramModel
from lm_core.oddities import score_tokens_many, score_tokens_of
from lm_core.vocab import BOS, BOS_ID
from store import schema
from store.bulk import build_local_base
from store.countstore import CountStore
from store.sqlite_counts import SqliteCounts

TEXT = """\
the cat sat on the mat .
the cat sat on the rug .
a dog sat on the mat .
the dog saw the cat on the mat .
a cat and a dog sat on a mat .
"""
SENTENCES = [*([*line.split(), "</s>"] for line in TEXT.splitlines()), ["the", "zebra", "sat", "</s>"]]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pruned base (trigrams seen once dropped, so contexts keep a hidden mass) with a document learned on top."""
    folder = tmp_path_factory.mktemp("bulk")
    text = folder / "text.txt"
    text.write_text(TEXT * 2 + "the bird sat on the rug .\n", encoding="utf-8")
    build_local_base(folder / "p.db", [text], 3, "pretokenized", (1, 1, 2))
    with CountStore.open(folder / "p.db") as store:
        store.learn("notes", "the cat saw a bird on the rug .\n")
    return folder / "p.db"


def stored_rows(store: CountStore, context: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """The followers of `context` as the store's tables hold them, read row by row."""
    n = len(context) + 1
    cols = schema.columns(n)
    where = " AND ".join(f"{c} = ?" for c in cols[:-1]) or f"w1 <> {BOS_ID}"
    query = f"SELECT {cols[-1]}, c, cc FROM ng{n} WHERE {where} ORDER BY {cols[-1]}"
    return [tuple(row) for row in store.db.execute(query, context)]


def every_context(store: CountStore) -> list[tuple[int, ...]]:
    contexts: list[tuple[int, ...]] = [()]
    for n in (2, 3):
        cols = ", ".join(schema.columns(n)[:-1])
        contexts += [tuple(row) for row in store.db.execute(f"SELECT DISTINCT {cols} FROM ng{n}")]
    return [*contexts, (999,), (999, 998)]  # and two contexts no text has


def test_follower_lists_read_packed_and_in_bulk_are_the_stored_rows(pruned: Path) -> None:
    with CountStore.open(pruned) as store:
        contexts = every_context(store)
        one_by_one, bulk = SqliteCounts(store), SqliteCounts(store)
        hidden_seen = 0
        for context, level in zip(contexts, bulk.levels(contexts), strict=True):
            single = one_by_one.level(context)
            rows = stored_rows(store, context)
            assert list(zip(level.ids.tolist(), level.count.tolist(), level.cont.tolist(), strict=True)) == rows
            for name in ("ids", "count", "cont"):
                assert getattr(single, name).tolist() == getattr(level, name).tolist()
            assert (single.hidden_count, single.hidden_cont) == (level.hidden_count, level.hidden_cont)
            hidden_seen += level.hidden_count > 0
        assert hidden_seen > 0  # the pruned base's hidden mass is read by both paths
        one_by_one.close()
        bulk.close()


def test_many_queries_equal_logprob_bit_for_bit_while_the_memo_evicts(pruned: Path) -> None:
    with CountStore.open(pruned) as store:
        words = [*store.vocab.words[3:], "</s>", "<s>", "unseen"]
        contexts = [(), (BOS,), (BOS, "the"), ("the", "cat"), ("on", "the"), ("a", "dog"), ("zebra", "sat")]
        queries = [(w, c) for c in contexts for w in words]
        expected = [NgramModel(SqliteCounts(store)).logprob(w, c) for w, c in queries]
        tiny = NgramModel(SqliteCounts(store))
        tiny.memo_bytes = 600  # far below the lists it reads: its memo evicts on almost every entry
        assert tiny.logprobs(queries) == expected
        assert tiny.logprobs(queries[::-1]) == expected[::-1]
        assert expected[words.index("<s>")] == -math.inf


@pytest.mark.parametrize("long_list", [1, 3, 10**9])  # every list searched alone / some / all laid end to end
def test_many_queries_equal_logprob_bit_for_bit_however_lists_are_searched(
    pruned: Path, long_list: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ngram, "LONG_FOLLOWER_LIST", long_list)
    with CountStore.open(pruned) as store:
        words = [*store.vocab.words[3:], "</s>", "<s>", "unseen"]
        contexts = [(), (BOS,), (BOS, "the"), ("the", "cat"), ("on", "the"), ("a", "dog"), ("sat", "on")]
        queries = [(w, c) for c in contexts for w in words]
        expected = [NgramModel(SqliteCounts(store)).logprob(w, c) for w, c in queries]
        assert NgramModel(SqliteCounts(store)).logprobs(queries) == expected
        assert NgramModel(SqliteCounts(store)).logprobs(queries[::-1]) == expected[::-1]


def test_sentences_scored_together_equal_sentences_scored_alone(pruned: Path) -> None:
    with CountStore.open(pruned) as store:
        model = NgramModel(SqliteCounts(store))
        alone = [score_tokens_of(model, sentence) for sentence in SENTENCES]
        by_token = [[model.logprob(w, c) for w, c in contexts_of(sentence)] for sentence in SENTENCES]
        memo: dict = {}
        assert score_tokens_many(model, SENTENCES, memo) == alone == by_token
        assert score_tokens_many(model, SENTENCES, memo) == alone  # again, from the memo
        flat = [t for s in SENTENCES for t in s]
        assert sentence_scores(model, flat) == [x for s in by_token for x in s]
        assert perplexity(model, flat) == perplexity_of_scores(x for s in by_token for x in s)
        requests = [(s[:2], s[2:]) for s in SENTENCES]
        assert continuation_scores(model, requests) == [scores[2:] for scores in by_token]


def contexts_of(sentence: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Each token with the two tokens before it (from `<s>`), as a trigram model reads it."""
    history = [BOS, *sentence]
    return [(word, tuple(history[max(0, i - 1) : i + 1])) for i, word in enumerate(sentence)]


def test_the_decoder_with_its_bias_folded_in_equals_the_product_plus_the_bias() -> None:
    rng = np.random.default_rng(0)
    config = NeuralConfig(cell="lstm", vocab_size=50, embed_dim=8, hidden_dim=8, layers=1)
    weights = {
        "encoder.weight": rng.normal(size=(50, 8)).astype(np.float32),
        "decoder.bias": rng.normal(size=50).astype(np.float32),
        "rnn.weight_ih_l0": rng.normal(size=(32, 8)).astype(np.float32),
        "rnn.weight_hh_l0": rng.normal(size=(32, 8)).astype(np.float32),
        "rnn.bias_ih_l0": rng.normal(size=32).astype(np.float32),
        "rnn.bias_hh_l0": rng.normal(size=32).astype(np.float32),
    }
    net = build_network(config, weights)
    outputs = rng.normal(size=(7, 8)).astype(np.float32)
    expected = outputs.astype(np.float64) @ weights["encoder.weight"].T.astype(np.float64) + weights["decoder.bias"]
    logits = net.decode(outputs)
    assert logits.dtype == np.float32 and logits.shape == (7, 50)
    assert np.all(logits[:, BOS_ID] == -np.inf)  # <s> is never predicted
    expected[:, BOS_ID] = -np.inf
    assert np.allclose(logits, expected, atol=1e-5, rtol=0)
