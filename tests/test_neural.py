"""Neural language models: what training must show (clipping, truncated BPTT, learning), checkpoints, cached-state
inference, the LanguageModel identities, and bad input (NaN loss, missing or damaged checkpoints)."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lm_core.metrics import perplexity, score_tokens
from lm_core.neural import (
    CELLS,
    CheckpointError,
    NeuralConfig,
    NeuralLM,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from lm_core.training import (
    TrainConfig,
    TrainingError,
    TrainingJob,
    batchify,
    build_vocab,
    encode,
    get_batch,
    global_grad_norm,
    make_optimizer,
    split_holdout,
    train,
    train_step,
)

torch.set_num_threads(1)  # tiny models: threads only contend (and the machine is shared)

NOUNS = ["cat", "dog", "bird", "fish", "cow"]
VERBS = ["sees", "likes", "chases", "eats"]
ADJECTIVES = ["big", "small", "red", "old"]


def sentences(n: int, seed: int) -> list[list[str]]:
    """A tiny grammar: "the ADJ NOUN VERB the NOUN </s>", so a model can beat unigrams by a lot."""
    rng = random.Random(seed)
    return [
        ["the", rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS), "the", rng.choice(NOUNS), "</s>"]
        for _ in range(n)
    ]


TRAIN = sentences(400, seed=0)
VALID = sentences(40, seed=1)
VOCAB = build_vocab(TRAIN)
FLAT_VALID = [w for s in VALID for w in s]


def small(cell: str = "lstm", **overrides: object) -> NeuralConfig:
    settings = dict(cell=cell, vocab_size=len(VOCAB), embed_dim=24, hidden_dim=24, layers=1, dropout=0.0)
    return NeuralConfig(**{**settings, **overrides})  # type: ignore[arg-type]


def quick(**overrides: object) -> TrainConfig:
    return TrainConfig(**{**dict(epochs=3, batch_size=8, bptt=16, lr=1e-2, log_every=1000), **overrides})  # type: ignore[arg-type]


def job(
    model: torch.nn.Module,
    config: TrainConfig,
    path: Path,
    train_sentences: list[list[str]] = TRAIN,
    resume: bool = False,
) -> TrainingJob:
    """Training `model` on `train_sentences`, validated on VALID."""
    return TrainingJob(model, encode(train_sentences, VOCAB), encode(VALID, VOCAB), VOCAB, config, path, resume)


def unigram_perplexity(train_sentences: list[list[str]], tokens: list[str]) -> float:
    counts = Counter(w for s in train_sentences for w in s)
    total = sum(counts.values())
    return math.exp(-sum(math.log(counts[w] / total) for w in tokens) / len(tokens))


# --- training --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_each_cell_learns_a_tiny_corpus_below_its_unigram_perplexity(cell: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(small(cell))
    result = train(job(model, quick(), tmp_path / "m.pt"))
    unigram = unigram_perplexity(TRAIN, FLAT_VALID)
    learned = perplexity(NeuralLM(model, VOCAB), FLAT_VALID)
    assert learned < unigram / 2, (cell, learned, unigram)  # about 2.4 against 11
    assert result.best_valid_perplexity < unigram / 2


def test_clipping_bounds_the_global_gradient_norm() -> None:
    torch.manual_seed(0)
    model = build_model(small("rnn"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the gradients stay as clipped
    inputs, targets = get_batch(batchify(encode(TRAIN, VOCAB), 4), 0, 20)
    _, _, before = train_step(model, optimizer, model.init_state(4), inputs, targets, clip_norm=0.01)
    assert before > 0.01  # the gradients really were larger
    assert global_grad_norm(model) <= 0.01 + 1e-6
    _, _, unclipped = train_step(model, optimizer, model.init_state(4), inputs, targets, clip_norm=0.0)
    assert global_grad_norm(model) == pytest.approx(unclipped) and unclipped == pytest.approx(before)


def _graph_size(tensor: torch.Tensor) -> int:
    """Autograd nodes reachable from `tensor` (the graph backward would walk)."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        todo.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def _saved_bytes(model, state, inputs, targets) -> tuple[int, int, object]:
    """One forward + loss: the autograd graph's size and the bytes it saves for backward, and the new state."""
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits, state = model(inputs, state)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return _graph_size(loss), saved[0], state


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_truncated_bptt_detaches_so_the_graph_and_its_memory_stay_flat(cell: str) -> None:
    torch.manual_seed(0)
    model = build_model(small(cell))
    optimizer = make_optimizer(model, quick())
    rows = batchify(encode(TRAIN, VOCAB), 4)
    state = model.init_state(4)
    sizes, memory = set(), set()
    for step in range(200):  # carried across 200 batches (wrapping around the data)
        inputs, targets = get_batch(rows, (step * 10) % (rows.size(1) - 11), 10)
        assert all(s.grad_fn is None for s in state), step  # each chunk starts cut from the last one
        nodes, saved, _ = _saved_bytes(model, state, inputs, targets)
        sizes.add(nodes)
        memory.add(saved)
        _, state, _ = train_step(model, optimizer, state, inputs, targets, clip_norm=0.5)
    assert len(sizes) == 1 and len(memory) == 1, (sizes, memory)  # identical at step 1 and step 200


def test_without_detaching_the_graph_would_grow() -> None:
    """The control for the test above: carrying a state that is not detached makes every step's graph bigger."""
    model = build_model(small("lstm"))
    rows = batchify(encode(TRAIN, VOCAB), 4)
    state = model.init_state(4)
    sizes = []
    for step in range(3):
        inputs, targets = get_batch(rows, step * 10, 10)
        nodes, _, state = _saved_bytes(model, state, inputs, targets)
        sizes.append(nodes)
    assert sizes[0] < sizes[1] < sizes[2]


def test_the_learning_rate_decays_on_a_plateau_and_training_stops_early(tmp_path: Path) -> None:
    # Demanding an improvement of 100 nats makes every epoch after the first a plateau.
    model = build_model(small("gru"))
    config = quick(epochs=10, patience=2, lr_decay=0.5, min_improvement=100.0)
    result = train(job(model, config, tmp_path / "m.pt"))
    assert result.stopped == "early stopping"
    assert result.epochs_run == 3
    assert result.metrics["lr"] == [1e-2, 1e-2, 5e-3]
    assert result.metrics["best_epoch"] == 1
    assert load_checkpoint(tmp_path / "m.pt").training["lr"] == 2.5e-3


def test_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.manual_seed(0)
    first = train(job(build_model(small("gru")), quick(epochs=1), path))
    assert first.epochs_run == 1
    resumed = train(job(build_model(small("gru")), quick(epochs=2), path, resume=True))
    assert resumed.epochs_run == 2 and resumed.metrics["epoch"] == [1, 2]
    assert resumed.metrics["valid_loss"][0] == first.metrics["valid_loss"][0]


def test_should_stop_cancels_at_once_and_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    train(job(build_model(small("rnn")), quick(epochs=1), path))
    before = path.read_bytes()
    calls = []
    result = train(
        job(build_model(small("rnn")), quick(epochs=5), path, resume=True),
        should_stop=lambda: len(calls) > 2 or calls.append(1) is not None,
    )
    assert result.stopped == "cancelled"
    assert path.read_bytes() == before


def test_progress_reports_loss_perplexity_and_lr(tmp_path: Path) -> None:
    reports = []
    model = build_model(small("window"))
    config = quick(epochs=2, log_every=5)
    train(job(model, config, tmp_path / "m.pt"), progress=reports.append)
    ends = [r for r in reports if r.valid_perplexity is not None]
    assert [r.epoch for r in ends] == [1, 2]
    assert all(r.perplexity == pytest.approx(math.exp(r.loss)) and r.lr == 1e-2 for r in reports)
    assert len(reports) > len(ends)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    model = build_model(small("lstm"))
    seen: dict[str, bytes] = {}

    def poison(report) -> None:  # in epoch 2, after epoch 1's checkpoint was written, a weight becomes NaN
        if report.epoch == 2 and "good" not in seen:
            seen["good"] = path.read_bytes()
            with torch.no_grad():
                model.decoder.bias[5] = math.nan

    config = quick(epochs=3, log_every=1)
    with pytest.raises(TrainingError) as error:
        train(job(model, config, path), progress=poison)
    message = str(error.value)
    assert "loss became NaN at step" in message and f"the last good checkpoint {path} is kept" in message
    assert "\n" not in message
    assert path.read_bytes() == seen["good"]
    assert math.isfinite(NeuralLM.load(path).logprob("cat", ("<s>", "the", "big")))


def test_a_nan_loss_before_any_checkpoint_says_none_was_written(tmp_path: Path) -> None:
    model = build_model(small("gru"))
    with torch.no_grad():
        model.decoder.bias[3] = math.nan
    with pytest.raises(TrainingError, match=r"at step 1 .*no checkpoint had been written yet"):
        train(job(model, quick(), tmp_path / "m.pt"))
    assert not (tmp_path / "m.pt").exists()


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="too few"):
        train(job(build_model(small()), quick(), tmp_path / "m.pt", TRAIN[:1]))


def test_batchify_cuts_the_stream_into_contiguous_rows() -> None:
    rows = batchify(torch.arange(26), 4)
    assert rows.tolist()[1] == [6, 7, 8, 9, 10, 11]
    inputs, targets = get_batch(rows, 3, 3)
    assert inputs.tolist()[0] == [3, 4] and targets.tolist()[0] == [4, 5]


# --- checkpoints -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_a_checkpoint_round_trip_gives_identical_outputs(cell: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = small(cell, layers=2, dropout=0.3)
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "m.pt", model, config, VOCAB, {"valid_loss": [1.5]})
    loaded = load_checkpoint(tmp_path / "m.pt")
    ids = encode(VALID[:3], VOCAB)[None, :]  # (1, T)
    with torch.no_grad():
        expected, _ = model(ids, model.init_state(1))
        got, _ = loaded.model(ids, loaded.model.init_state(1))
    assert torch.equal(expected, got)
    assert loaded.config == config and loaded.vocab == VOCAB and loaded.metrics == {"valid_loss": [1.5]}
    assert loaded.model.decoder.weight is loaded.model.encoder.weight  # tied weights stay tied


def test_tied_weights_are_saved_once_and_resuming_state_is_optional(tmp_path: Path) -> None:
    config = small("lstm", embed_dim=64, hidden_dim=64)
    model = build_model(config)
    weights_bytes = 4 * sum(p.numel() for p in model.parameters())  # parameters() lists a tied tensor once
    save_checkpoint(tmp_path / "m.pt", model, config, VOCAB)
    assert (tmp_path / "m.pt").stat().st_size < weights_bytes + 20_000
    assert load_checkpoint(tmp_path / "m.pt").training is None


def test_a_half_precision_checkpoint_is_half_the_size_and_close(tmp_path: Path) -> None:
    config = small("lstm", embed_dim=64, hidden_dim=64)
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "full.pt", model, config, VOCAB)
    save_checkpoint(tmp_path / "half.pt", model, config, VOCAB, half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.7 * (tmp_path / "full.pt").stat().st_size
    full, half = NeuralLM.load(tmp_path / "full.pt"), NeuralLM.load(tmp_path / "half.pt")
    context = ("<s>", "the", "big")
    assert half.logprob("cat", context) == pytest.approx(full.logprob("cat", context), abs=1e-2)


def test_a_missing_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no such checkpoint$"):
        load_checkpoint(tmp_path / "absent.pt")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not a readable neural checkpoint"),
        (b"this is not a checkpoint\n" * 10, "not a readable neural checkpoint"),
        ("truncated", "not a readable neural checkpoint"),
        ("pickled module", "not a readable neural checkpoint"),
        ("foreign dict", "not a nextword neural checkpoint"),
        ("newer version", "format version 99"),
        ("vocabulary mismatch", "vocabulary has 5 words but its config says"),
        ("weights mismatch", "weights do not fit its config"),
    ],
)
def test_a_damaged_or_foreign_checkpoint_is_a_one_line_error(content: object, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    config = small("gru")
    model = build_model(config)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "truncated":
        save_checkpoint(path, model, config, VOCAB)
        path.write_bytes(path.read_bytes()[:1000])
    elif content == "pickled module":
        torch.save(model, path)  # never loaded: weights_only refuses code
    else:
        save_checkpoint(path, model, config, VOCAB)
        payload = torch.load(path, weights_only=True)
        if content == "foreign dict":
            payload = {"weights": payload["state_dict"]}
        elif content == "newer version":
            payload["version"] = 99
        elif content == "vocabulary mismatch":
            payload["vocab"] = VOCAB[:5]
        else:
            payload["config"].update(embed_dim=12, hidden_dim=12)
        torch.save(payload, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert expected in str(error.value)
    assert "\n" not in str(error.value) and len(str(error.value)) < 300


# --- the LanguageModel -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained() -> NeuralLM:
    torch.manual_seed(0)
    model = build_model(small("lstm"))
    optimizer = make_optimizer(model, quick())
    rows = batchify(encode(TRAIN, VOCAB), 8)
    state = model.init_state(8)
    for i in range(0, 150, 15):  # a few quick steps so the distribution is far from uniform
        inputs, targets = get_batch(rows, i, 15)
        _, state, _ = train_step(model, optimizer, state, inputs, targets, 0.5)
    return NeuralLM(model.eval(), VOCAB)


CONTEXTS = [(), ("<s>",), ("<s>", "the"), ("<s>", "the", "big", "cat"), ("zebra",), ("the", "<s>", "the")]


@pytest.mark.parametrize("context", CONTEXTS)
def test_distributions_sum_to_one_and_predict_agrees_with_logprob(trained: NeuralLM, context: tuple) -> None:
    dist = trained.distribution(context)
    assert sum(dist.values()) == pytest.approx(1, abs=1e-9)
    assert dist["<s>"] == 0.0
    predictions = trained.predict(context, 5)
    assert len(predictions) == 5 and "<s>" not in [p.word for p in predictions]
    assert predictions == sorted(predictions, key=lambda p: (-p.prob, p.word))
    assert [p.word for p in predictions] == [w for w, _ in sorted(dist.items(), key=lambda wp: (-wp[1], wp[0]))[:5]]
    for p in predictions:
        assert p.prob == pytest.approx(math.exp(trained.logprob(p.word, context)), rel=1e-12)


def test_prefix_filtering_matches_a_filter_of_the_whole_vocabulary(trained: NeuralLM) -> None:
    context = ("<s>", "the", "small")
    dist = trained.distribution(context)
    for prefix in ["c", "ch", "b", "<", "zz", "the"]:
        matching = [(w, p) for w, p in dist.items() if w.startswith(prefix) and w != "<s>"]
        expected = sorted(matching, key=lambda wp: (-wp[1], wp[0]))[:3]
        assert [(p.word, pytest.approx(p.prob)) for p in trained.predict(context, 3, prefix)] == expected


def test_unknown_words_are_unk_and_bos_is_never_predicted(trained: NeuralLM) -> None:
    context = ("<s>", "the")
    assert trained.logprob("zebra", context) == trained.logprob("<unk>", context)
    assert trained.logprob("<s>", context) == -math.inf
    assert trained.order is None and NeuralLM(build_model(small("window", window=3)), VOCAB).order == 4


def same_distribution(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal log-probabilities within float32 rounding (a longer sequence in one call sums in another order);
    -inf (for <s>) in the same places."""
    finite_a, finite_b = a[np.isfinite(a)], b[np.isfinite(b)]
    return np.array_equal(np.isinf(a), np.isinf(b)) and np.allclose(finite_a, finite_b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_inference_from_the_cached_state_equals_recomputing_from_the_start(cell: str) -> None:
    torch.manual_seed(0)
    model = build_model(small(cell, layers=2))
    words = ["<s>", *FLAT_VALID[:20]]
    cached = NeuralLM(model, VOCAB)
    for n in range(1, len(words) + 1):  # typing: each request extends the last one by a word
        incremental = cached.logprobs_after("doc", words[:n])
        fresh = NeuralLM(model, VOCAB).logprobs_after("doc", words[:n])
        assert same_distribution(incremental, fresh), (cell, n)
    assert cached.tokens_run == len(words)  # each token ran once


def test_an_edit_resumes_from_the_last_state_the_tokens_agree_with(trained: NeuralLM) -> None:
    lm = NeuralLM(trained.model, VOCAB)
    lm.logprobs_after("doc", ("<s>", "the", "big"))
    lm.logprobs_after("doc", ("<s>", "the", "big", "cat", "sees"))
    before = lm.tokens_run
    edited = lm.logprobs_after("doc", ("<s>", "the", "big", "dog"))  # the last two words replaced by another
    assert lm.tokens_run - before == 1  # only "dog" ran, from the state after "big"
    assert same_distribution(edited, NeuralLM(trained.model, VOCAB).logprobs_after("x", ("<s>", "the", "big", "dog")))
    assert lm.logprobs_after("other", ("<s>",)) is not None and lm.tokens_run - before == 2  # documents are apart


def test_sentence_logprobs_agree_with_scoring_token_by_token(trained: NeuralLM) -> None:
    tokens = [*FLAT_VALID[:14], "zebra", "</s>"]
    by_sentence = trained.sentence_logprobs(tokens)
    one_by_one = [s.logprob for s in score_tokens(trained, tokens)]
    assert by_sentence == pytest.approx(one_by_one, abs=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 2000])
def test_stream_logprobs_carry_the_state_across_sentences(trained: NeuralLM, chunk: int) -> None:
    tokens = [*FLAT_VALID[:14], "zebra", "</s>"]
    stream = trained.stream_logprobs(tokens, chunk=chunk)
    assert len(stream) == len(tokens)
    first_end = tokens.index("</s>") + 1
    # the first sentence is read from <s> as sentence_logprobs reads it; later ones see the sentences before them
    assert stream[:first_end] == pytest.approx(trained.sentence_logprobs(tokens[:first_end]), abs=1e-5)
    history = ["<s>"]
    expected = []
    for token in tokens:
        expected.append(float(NeuralLM(trained.model, VOCAB).logprobs_after("x", tuple(history))[trained.id_of(token)]))
        history += [token, "<s>"] if token == "</s>" else [token]
    assert stream == pytest.approx(expected, abs=1e-5)


def test_the_window_model_never_reads_past_a_sentence_start() -> None:
    torch.manual_seed(0)
    model = build_model(small("window", window=4)).eval()
    lm = NeuralLM(model, VOCAB)
    mid_stream = lm.logprobs_after("a", ("big", "cat", "</s>", "<s>", "the"))
    assert same_distribution(mid_stream, lm.logprobs_after("b", ("<s>", "the")))


def test_tied_weights_need_equal_sizes() -> None:
    with pytest.raises(ValueError, match="tied weights need embed_dim == hidden_dim"):
        NeuralConfig(embed_dim=10, hidden_dim=20, tie_weights=True)
    with pytest.raises(ValueError, match="cell must be one of"):
        NeuralConfig(cell="transformer")


# --- the import boundary ---------------------------------------------------------------------------------
def test_the_ngram_path_and_the_cli_never_import_torch() -> None:
    code = (
        "import sys; import lm_core.ngram, lm_core.blend, lm_core.metrics, lsp_server.engine, lsp_server.cli; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_held_out_part_is_the_last_tenth_of_the_tokens_from_a_sentence_start() -> None:
    sentences = [["a"] * 10, ["b"] * 5, ["c"] * 2]
    assert split_holdout(sentences, 0.1) == (sentences[:2], sentences[2:])
    assert split_holdout([["a"] * 20], 0.1) == ([["a"] * 18], [["a"] * 2])  # one long sentence is cut
