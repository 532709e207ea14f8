"""Neural language models for training: Elman RNN, LSTM and GRU (`RecurrentLM`) and Bengio's fixed-window model
(`WindowLM`) in torch, and their checkpoints. Inference (`NeuralLM`, the `LanguageModel` that wraps a model for
scoring and prediction) runs in numpy, in `lm_core.inference`, which reads the same checkpoints without torch;
`NeuralLM`, `NeuralConfig` and the errors are re-exported here.

Both modules map word ids (B, T) and a state to logits (B, T, V) and the next state, so one training loop serves
them all: a recurrent model's state is its hidden state (detached between batches by truncated BPTT), the window
model's state is the last `window` word ids (so a window reaches back across batches too).

Ids are those of `lm_core.vocab` (`<unk>`=0, `<s>`=1, `</s>`=2). `<s>` is an input only: its logit is -inf, so it
is never predicted and a distribution sums to 1 over every other word of the model's vocabulary.

torch is imported here, in `lm_core.training` and `lm_core.distributed` only, so that the n-gram code, the server
and every command that only reads a model never pay for importing it.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lm_core.files import make_private_folder, open_private
from lm_core.inference import (
    CELLS,
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    NeuralConfig,
    NeuralError,
    NeuralLM,
    _one_line,
    checked_payload,
    existing_checkpoint,
)
from lm_core.vocab import BOS_ID

__all__ = [
    "CELLS",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "NeuralConfig",
    "NeuralError",
    "NeuralLM",
    "RecurrentLM",
    "WindowLM",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
    "update_checkpoint_metrics",
]

State = Any
"""A model's state: a tensor (RNN, GRU: hidden (L, B, H); window model: the last ids (B, window)) or, for an LSTM,
a tuple (h, c) of two (L, B, H) tensors."""


# --- the models -----------------------------------------------------------------------------------------------------
class RecurrentLM(nn.Module):
    """Embedding -> stacked RNN/LSTM/GRU -> linear decoder (word_language_model's RNNModel, batch first)."""

    def __init__(self, config: NeuralConfig) -> None:
        super().__init__()
        self.config = config
        rnn_class = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
        between = config.dropout if config.layers > 1 else 0.0  # torch warns about dropout after a last layer
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.Embedding(config.vocab_size, config.embed_dim)
        self.rnn = rnn_class(config.embed_dim, config.hidden_dim, config.layers, dropout=between, batch_first=True)
        self.decoder = nn.Linear(config.hidden_dim, config.vocab_size)
        _finish_word_layers(self, config)

    def forward(self, ids: torch.Tensor, state: State, last_only: bool = False) -> tuple[torch.Tensor, State]:
        """Logits (B, T, V) for each position, or (B, 1, V) for the last one only (`last_only`: what a suggestion
        needs, without the decoder's cost for the others), and the state after the chunk."""
        x = self.drop(self.encoder(ids))  # (B, T, E)
        out, state = self.rnn(x, state)  # (B, T, H); state (L, B, H), or (h, c) for an LSTM
        logits = self.decoder(self.drop(out[:, -1:] if last_only else out))  # (B, T or 1, V)
        return logits.masked_fill(self.never, -math.inf), state

    def init_state(self, batch: int) -> State:
        """Zeros on the model's device (word_language_model's init_hidden)."""
        weight = next(self.parameters())
        shape = (self.config.layers, batch, self.config.hidden_dim)
        if self.config.cell == "lstm":
            return (weight.new_zeros(shape), weight.new_zeros(shape))
        return weight.new_zeros(shape)


class WindowLM(nn.Module):
    """Bengio et al. (2003): the embeddings of the previous `window` words, concatenated -> tanh layer -> softmax.

    Its state is the last `window` ids seen (initially all `<s>`), so windows reach back across calls and batches.
    Like an n-gram context, a window never reaches back past a `<s>`: positions before the latest `<s>` in a window
    are read as `<s>`, so a sentence start looks the same in training (mid-stream) and at inference (padded).
    """

    def __init__(self, config: NeuralConfig) -> None:
        super().__init__()
        self.config = config
        self.drop = nn.Dropout(config.dropout)
        self.encoder = nn.Embedding(config.vocab_size, config.embed_dim)
        self.hidden = nn.Linear(config.window * config.embed_dim, config.hidden_dim)
        self.decoder = nn.Linear(config.hidden_dim, config.vocab_size)
        _finish_word_layers(self, config)

    def forward(
        self, ids: torch.Tensor, state: torch.Tensor, last_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As `RecurrentLM.forward`."""
        n = self.config.window
        full = torch.cat([state, ids], dim=1)  # (B, n + T): the previous n ids, then this chunk
        windows = _mask_before_bos(full.unfold(1, n, 1)[:, 1:])  # (B, T, n): window t ends with ids[:, t]
        if last_only:
            windows = windows[:, -1:]
        x = self.drop(self.encoder(windows)).flatten(2)  # (B, T, n * E)
        h = self.drop(torch.tanh(self.hidden(x)))  # (B, T, H)
        logits = self.decoder(h)  # (B, T, V)
        return logits.masked_fill(self.never, -math.inf), full[:, -n:]

    def init_state(self, batch: int) -> torch.Tensor:
        """`window` copies of `<s>` per row, on the model's device."""
        weight = next(self.parameters())
        return torch.full((batch, self.config.window), BOS_ID, dtype=torch.long, device=weight.device)


def _finish_word_layers(module: nn.Module, config: NeuralConfig) -> None:
    """What both model kinds do with their word vectors and decoder: tie them if asked, mask `<s>` out of the
    predictions, initialise them as word_language_model does."""
    if config.tie_weights:
        module.decoder.weight = module.encoder.weight
    module.register_buffer("never", _never_predicted(config.vocab_size), persistent=False)
    nn.init.uniform_(module.encoder.weight, -0.1, 0.1)
    nn.init.zeros_(module.decoder.bias)
    if not config.tie_weights:
        nn.init.uniform_(module.decoder.weight, -0.1, 0.1)


def _never_predicted(vocab_size: int) -> torch.Tensor:
    never = torch.zeros(vocab_size, dtype=torch.bool)
    never[BOS_ID] = True
    return never


def _mask_before_bos(windows: torch.Tensor) -> torch.Tensor:
    """Ids before the latest `<s>` of each window become `<s>` (windows (..., n); the last id is the newest)."""
    is_bos = (windows == BOS_ID).long()
    later_bos = is_bos.flip(-1).cumsum(-1).flip(-1) - is_bos  # how many <s> come after each position
    return windows.masked_fill(later_bos > 0, BOS_ID)


NeuralModule = RecurrentLM | WindowLM


def build_model(config: NeuralConfig) -> NeuralModule:
    """A freshly initialised model for `config`."""
    return WindowLM(config) if config.cell == "window" else RecurrentLM(config)


def detach_state(state: State) -> State:
    """The same values cut from the graph that made them (truncated BPTT: gradients stop at a batch boundary)."""
    if isinstance(state, tuple):
        return tuple(detach_state(s) for s in state)
    return state.detach()


# --- checkpoints ----------------------------------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """What a checkpoint file holds, loaded: the model (eval mode, CPU), its config and vocabulary, the training
    metrics, and (if it was saved with them) what resuming training needs."""

    model: NeuralModule
    config: NeuralConfig
    vocab: list[str]
    metrics: dict[str, Any]
    training: dict[str, Any] | None


def save_checkpoint(
    path: str | Path,
    model: NeuralModule | Mapping[str, torch.Tensor],
    config: NeuralConfig,
    vocab_words: Sequence[str],
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    half: bool = False,
) -> None:
    """Write a checkpoint atomically (a temporary file renamed over `path`, so a crash never leaves half of one).

    The file is `torch.save` of a plain dict that `torch.load(weights_only=True)` reads: the state_dict, the config
    as a dict, the vocabulary as a list of str, metrics of plain numbers, and optionally `training` (optimizer state
    and counters, for resuming). Never a pickled module. `half` stores floating weights as float16 (half the
    size; they are float32 again when loaded). `model` may also be a state_dict (e.g. a snapshot of the best
    weights taken during training).
    """
    path = Path(path)
    if len(vocab_words) != config.vocab_size:
        raise ValueError(f"the vocabulary has {len(vocab_words)} words but the config says {config.vocab_size}")
    weights = model if isinstance(model, Mapping) else model.state_dict()
    state = share_storage(weights, lambda v: (v.half() if half and v.is_floating_point() else v).detach().cpu())
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": asdict(config),
        "vocab": list(vocab_words),
        "state_dict": state,
        "metrics": metrics or {},
        "training": training,
    }
    _save_atomically(payload, path)


def _save_atomically(payload: dict[str, Any], path: Path) -> None:
    """`torch.save` to a temporary file renamed over `path`: a crash never leaves half a checkpoint."""
    make_private_folder(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open_private(tmp, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def update_checkpoint_metrics(path: str | Path, **values: Any) -> None:
    """Add or replace metrics of the checkpoint at `path` (e.g. the blend weight it should be used with), keeping
    everything else; the file is rewritten atomically."""
    path = Path(path)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["metrics"] = {**payload.get("metrics", {}), **values}
    _save_atomically(payload, path)


def share_storage(weights: Mapping[str, torch.Tensor], convert) -> dict[str, torch.Tensor]:
    """`convert` applied to each tensor once: tensors that share storage (tied weights) still share it after, so
    they are saved (and copied) once."""
    done: dict[tuple[int, int], torch.Tensor] = {}
    out = {}
    for key, value in weights.items():
        identity = (value.untyped_storage().data_ptr(), value.storage_offset())
        if identity not in done or done[identity].shape != value.shape:
            done[identity] = convert(value)
        out[key] = done[identity]
    return out


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (with `weights_only=True`: no code is ever unpickled).

    Raises `CheckpointError` with a one-line message for a missing, damaged, foreign or inconsistent file.
    """
    path = existing_checkpoint(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable neural checkpoint ({_one_line(exc)})") from exc
    config, vocab = checked_payload(path, payload)
    model = build_model(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: its weights do not fit its config ({_one_line(exc)})") from exc
    model.eval()
    training = payload.get("training")
    return Checkpoint(model, config, vocab, payload["metrics"], training if isinstance(training, dict) else None)
