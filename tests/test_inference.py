"""The numpy inference path (`lm_core.inference`) against torch: the same checkpoint read without torch, the same
logits and probabilities (within 1e-5) for every cell, batched scoring equal to one sentence at a time, and the
server's model path never importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lm_core.inference import (
    CheckpointError,
    NeuralLM,
    load_network,
    network_of,
    read_checkpoint,
    split_sentences,
)
from lm_core.metrics import score_tokens
from lm_core.neural import CELLS, NeuralConfig, build_model, load_checkpoint, save_checkpoint

torch.set_num_threads(1)

VOCAB = ["<unk>", "<s>", "</s>", "the", "cat", "dog", "sees", "a", "big", "small", "bird", "."]
SENTENCES = [
    ["the", "cat", "sees", "a", "dog", ".", "</s>"],
    ["a", "big", "bird", "</s>"],
    ["the", "small", "small", "dog", "sees", "the", "big", "cat", "and", "a", "bird", ".", "</s>"],  # "and": <unk>
    ["</s>"],
]
TOKENS = [t for s in SENTENCES for t in s]


def model_for(cell: str, seed: int = 0) -> torch.nn.Module:
    """A small random model whose weights are far from zero, so that every gate and layer matters."""
    torch.manual_seed(seed)
    config = NeuralConfig(cell=cell, vocab_size=len(VOCAB), embed_dim=8, hidden_dim=8, layers=2, window=3)
    model = build_model(config)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.8, 0.8)
    return model.eval()


def saved_lstm(tmp_path: Path) -> Path:
    """A small random LSTM saved as a half-precision checkpoint (as the shipped one is)."""
    model = model_for("lstm")
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, model.config, VOCAB, half=True)
    return path


def python_prints(code: str) -> str:
    """What `code` prints, run by a fresh interpreter from the repository (thread-count variables unset)."""
    root = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env, check=True
    ).stdout


@pytest.mark.parametrize("cell", CELLS)
def test_numpy_logits_and_states_equal_torch(cell: str) -> None:
    model = model_for(cell)
    net = network_of(model)
    ids = np.asarray([[1, 3, 4, 6, 7, 5, 2, 1, 8, 10], [1, 7, 8, 10, 2, 1, 3, 9, 9, 5]], dtype=np.int64)
    state_t, state_n = model.init_state(2), net.init_state(2)
    for chunk in (ids[:, :4], ids[:, 4:]):  # the state carries across calls
        logits_t, state_t = model(torch.from_numpy(chunk), state_t)
        logits_n, state_n = net(chunk, state_n)
        assert np.allclose(logits_n, logits_t.detach().numpy(), atol=1e-5, rtol=0, equal_nan=False)
        assert np.array_equal(np.isinf(logits_n), np.isinf(logits_t.detach().numpy()))  # <s> masked in both
    flat_t = [s.detach().numpy() for s in (state_t if isinstance(state_t, tuple) else (state_t,))]
    flat_n = state_n if isinstance(state_n, tuple) else (state_n,)
    for a, b in zip(flat_n, flat_t, strict=True):
        assert np.allclose(a, b, atol=1e-5, rtol=0) if a.dtype.kind == "f" else np.array_equal(a, b)


@pytest.mark.parametrize("tied", [True, False])
def test_the_decoder_is_row_major_so_a_completions_one_row_product_is_fast(tied: bool) -> None:
    """A one-row product over a column-major decoder took ~2.7 ms against ~1 ms row-major (20,000 words, one BLAS
    thread): the layout is part of the completion budget."""
    torch.manual_seed(0)
    config = NeuralConfig(cell="lstm", vocab_size=len(VOCAB), embed_dim=8, hidden_dim=8, layers=1, tie_weights=tied)
    net = network_of(build_model(config).eval())
    assert net.decoder_with_bias.flags.c_contiguous and net.decoder_t.flags.c_contiguous
    assert net.decoder_with_bias.dtype == np.float32


@pytest.mark.parametrize("cell", CELLS)
def test_probabilities_from_a_checkpoint_read_without_torch_equal_torch(cell: str, tmp_path: Path) -> None:
    model = model_for(cell, seed=1)
    path = tmp_path / f"{cell}.pt"
    save_checkpoint(path, model, model.config, VOCAB, metrics={"blend_weight": 0.25}, half=True)
    loaded = load_network(path)
    assert loaded.vocab == VOCAB and loaded.metrics == {"blend_weight": 0.25}
    reference = load_checkpoint(path).model  # torch's reading of the same (half-precision) file
    ids = torch.tensor([[1, 3, 4, 6, 7, 5, 2, 1, 8]])
    probs_t = F.softmax(reference(ids, reference.init_state(1))[0].double(), dim=-1).detach().numpy()
    logits_n, _ = loaded.network(ids.numpy(), loaded.network.init_state(1))
    probs_n = np.exp(logits_n.astype(np.float64) - np.logaddexp.reduce(logits_n.astype(np.float64), -1, keepdims=True))
    assert np.abs(probs_n - probs_t).max() < 1e-5


@pytest.mark.parametrize("cell", CELLS)
def test_batched_scoring_equals_scoring_word_by_word(cell: str) -> None:
    lm = NeuralLM(model_for(cell, seed=2), VOCAB)
    word_by_word = [s.logprob for s in score_tokens(NeuralLM(lm.net, VOCAB), TOKENS)]
    for batch in (1, 2, 64):  # sentences of different lengths padded together, or one at a time
        assert lm.sentence_logprobs(TOKENS, batch=batch) == pytest.approx(word_by_word, abs=1e-5)
    stream = lm.stream_logprobs(TOKENS, chunk=3)
    assert stream[: len(SENTENCES[0])] == pytest.approx(word_by_word[: len(SENTENCES[0])], abs=1e-5)


def test_scoring_decodes_only_real_positions_and_keeps_sentence_order() -> None:
    lm = NeuralLM(model_for("lstm", seed=3), VOCAB)
    scores = lm.score_sentences([SENTENCES[2], SENTENCES[0], []], batch=2)
    assert [len(s) for s in scores] == [len(SENTENCES[2]), len(SENTENCES[0]), 0]
    assert lm.tokens_run == len(SENTENCES[2]) + len(SENTENCES[0])
    assert scores[1] == pytest.approx(lm.sentence_logprobs(SENTENCES[0]), abs=1e-9)
    assert split_sentences(["a", "</s>", "b"]) == [["a", "</s>"], ["b"]]


def test_foreign_pickles_and_damaged_files_are_refused_in_one_line(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"format": "nextword-neural-lm", "x": torch.nn.Linear(2, 2)}, evil)  # a pickled module: code
    with pytest.raises(CheckpointError, match="not allowed") as info:
        read_checkpoint(evil)
    assert "\n" not in str(info.value)
    damaged = tmp_path / "damaged.pt"
    good = tmp_path / "good.pt"
    model = model_for("gru")
    save_checkpoint(good, model, model.config, VOCAB)
    damaged.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable neural checkpoint"):
        load_network(damaged)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_network(tmp_path / "missing.pt")
    with zipfile.ZipFile(good) as archive:
        assert any(name.endswith("data.pkl") for name in archive.namelist())


def test_the_server_path_never_imports_torch(tmp_path: Path) -> None:
    path = saved_lstm(tmp_path)
    code = (
        "import sys; from lm_core.inference import NeuralLM; "
        f"lm = NeuralLM.load({str(path)!r}); lm.predict(('<s>', 'the'), 3); lm.sentence_logprobs(['the', '</s>']); "
        "print('torch' in sys.modules)"
    )
    assert python_prints(code).strip() == "False"


def test_the_server_path_with_adaptation_never_imports_torch(tmp_path: Path) -> None:
    """The Engine as the server drives it: a neural model attached, personal adaptation on, completions, a check
    and a learn; torch (hundreds of MB resident) is never loaded."""
    path = saved_lstm(tmp_path)
    db = tmp_path / "s.db"
    code = (
        "import sys\n"
        "from lsp_server.engine import Engine\n"
        "from store.countstore import CountStore\n"
        f"with CountStore.open({str(db)!r}, order=3, tokenizer='prose', create=True) as s:\n"
        "    s.learn('base', 'The cat sees a dog. A big bird. The small dog sees the big cat. ' * 3)\n"
        f"e = Engine.open({str(db)!r})\n"
        f"e.attach_neural({str(path)!r}, 0.3)\n"
        "e.enable_adaptation()\n"
        "e.learn('doc', 'The big dog sees a small bird.')\n"
        "text = 'The cat sees the '\n"
        "assert e.complete_at(text, len(text)).suggestions\n"
        "e.check('The the cat sees a dog.')\n"
        "print('torch' in sys.modules)"
    )
    assert python_prints(code).strip() == "False"


def test_models_over_one_vocabulary_list_share_it() -> None:
    """A Blend keys its alignment of a component's words onto the store's by the list's identity: every thread's
    NeuralLM over the attached network shares the one list, so one derivation serves them all."""
    words = list(VOCAB)
    net = NeuralLM(model_for("lstm", seed=4), words).net
    first, second = NeuralLM(net, words), NeuralLM(net, words)
    assert first.words is words and second.words is words
    assert NeuralLM(net, tuple(words)).words == words  # any other sequence is copied into a list


def test_groups_scored_side_by_side_give_the_same_floats_and_blas_keeps_one_thread(tmp_path: Path) -> None:
    path = saved_lstm(tmp_path)
    code = (
        "from threadpoolctl import threadpool_info; from lm_core.inference import NeuralLM, set_batch_threads\n"
        "def blas(): return sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'})\n"
        f"lm = NeuralLM.load({str(path)!r}); tokens = {TOKENS * 40!r}\n"
        "one = lm.sentence_logprobs(tokens, batch=3)\n"
        "set_batch_threads(2); two = lm.sentence_logprobs(tokens, batch=3)\n"
        "print(one == two, len(one) == len(tokens), lm.tokens_run == 2 * len(tokens), blas())"
    )
    assert python_prints(code).split() == ["True", "True", "True", "[1]"]
