"""Inference for the neural language models without torch: checkpoints read with numpy, the forward pass of the
Elman RNN, LSTM, GRU and window models in numpy, and `NeuralLM`, the `LanguageModel` over one of them.

torch trains (`lm_core.neural`, `lm_core.training`); the server, `complete`, `score`, `check` and `eval` only run
forward passes, and this module gives them the same numbers (float32 weights and activations, log-softmax in
float64; within 1e-5 of torch's probabilities, `tests/test_inference.py`) without importing torch, which costs
~250 MB of resident memory and seconds of start-up. Measured in `bench/neural_inference.py`.

A checkpoint (`torch.save` of a plain dict, see `lm_core.neural.save_checkpoint`) is a zip of one pickle and one
file per tensor storage. `read_checkpoint` unpickles it with an allow-list of globals (the tensor rebuild function,
storage types, OrderedDict) and reads each storage with numpy, so, as `torch.load(weights_only=True)`, no code is
ever unpickled; anything else is refused with a `CheckpointError`.

Shapes: ids (B, T) int64, hidden states (L, B, H), logits (B, T, V) float32. Log-probabilities are natural logs.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from abc import ABC, abstractmethod
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from lm_core.metrics import split_sentences
from lm_core.model import Context, Prediction, rank_top_k
from lm_core.vocab import BOS, BOS_ID, EOS, UNK, UNK_ID

CELLS = ("rnn", "lstm", "gru", "window")
CHECKPOINT_FORMAT = "nextword-neural-lm"
CHECKPOINT_VERSION = 1
DECODE_ROWS = 256  # positions decoded per matrix product: (256, V) float32 logits at a time (20 MB for V=20,000)
BATCH_SENTENCES = 64  # sentences run side by side (padded to the longest of them) when scoring many
BLAS_THREADS = 1  # numpy's BLAS threads, set when a network is built: on busy cores more threads only wait on each
# other (measured: a one-row decoder product ~30x slower with 2 OpenBLAS threads on 2 loaded cores); as torch's
# set_num_threads(1) did for inference before


class NeuralError(Exception):
    """Base class of the neural models' named errors; each message is one line a person can act on."""


class CheckpointError(NeuralError):
    """A checkpoint is missing, damaged, of another format, or inconsistent (weights vs. config vs. vocabulary)."""


@dataclass(frozen=True)
class NeuralConfig:
    """What a neural model is: its cell and sizes. Stored in every checkpoint (as a dict)."""

    cell: str = "lstm"  # "rnn" (Elman, tanh), "lstm", "gru", or "window" (Bengio et al. 2003)
    vocab_size: int = 10_000  # words the model knows, <unk> <s> </s> included; ids as in lm_core.vocab
    embed_dim: int = 200  # word-vector size; must equal hidden_dim when tie_weights is set
    hidden_dim: int = 200  # recurrent state size (the window model: its tanh layer)
    layers: int = 2  # stacked recurrent layers (the window model has one hidden layer)
    dropout: float = 0.2  # on embeddings, between layers and before the output; training only
    tie_weights: bool = True  # the output layer reuses the input embeddings (Press & Wolf 2017): fewer weights
    window: int = 4  # the window model's context, in words (an order-5 model); unused by recurrent cells

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        if self.vocab_size < 4:
            raise ValueError(f"vocab_size must be at least 4 (<unk> <s> </s> and a word), not {self.vocab_size}")
        for name in ("embed_dim", "hidden_dim", "layers", "window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if self.tie_weights and self.embed_dim != self.hidden_dim:
            raise ValueError(f"tied weights need embed_dim == hidden_dim (got {self.embed_dim} and {self.hidden_dim})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NeuralConfig:
        """A config from a checkpoint's dict; unknown keys are an error (a newer format), missing ones default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config fields {', '.join(unknown)}")
        return cls(**data)

    @property
    def order(self) -> int | None:
        """The n-gram order the model amounts to: None (unbounded) for recurrent cells, window + 1 otherwise."""
        return self.window + 1 if self.cell == "window" else None


# --- reading checkpoints without torch ------------------------------------------------------------------------------
_DTYPES = {
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _Storage:
    """A tensor storage named in the pickle; its bytes are read only if a tensor the caller keeps needs them."""

    key: str
    dtype: type


class LazyArray:
    """A tensor of a checkpoint, not read yet: `load()` reads it (numpy, the tensor's dtype)."""

    def __init__(self, read: Callable[[str], bytes], storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self._read, self.storage, self.offset, self.shape, self.stride = read, storage, offset, shape, stride

    def load(self) -> np.ndarray:
        flat = np.frombuffer(self._read(self.storage.key), dtype=self.storage.dtype)
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :], self.shape, tuple(s * itemsize for s in self.stride), writeable=False
        )
        return np.array(view)  # a copy of its own: the storage's bytes can go


class _CheckpointUnpickler(pickle.Unpickler):
    """torch's zip-pickle format with only what a nextword checkpoint holds: plain data, tensors, OrderedDict."""

    def __init__(self, file: Any, read: Callable[[str], bytes]) -> None:
        super().__init__(file)
        self._read = read

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self._rebuild
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a checkpoint")

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] in _DTYPES):
            raise pickle.UnpicklingError(f"unsupported storage {pid!r:.60}")
        return _Storage(str(pid[2]), _DTYPES[pid[1]])

    def _rebuild(self, storage: _Storage, offset: int, shape: tuple, stride: tuple, *_: Any) -> LazyArray:
        return LazyArray(self._read, storage, offset, tuple(shape), tuple(stride))


def existing_checkpoint(path: str | Path) -> Path:
    """`path` as a Path; `CheckpointError` (one line) when no file is there or it is a directory."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint")
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict a checkpoint file holds, its tensors as `LazyArray`s (read on `load()`). Raises `CheckpointError`
    (one line) for a file that is missing, not a zip of torch's format, or holds anything but plain data."""
    path = existing_checkpoint(path)
    try:
        archive = zipfile.ZipFile(path)
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError("no data.pkl inside")
        root = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(f"{root}byteorder").decode() if f"{root}byteorder" in names else "little"
        if byteorder.strip() != "little":
            raise ValueError(f"{byteorder.strip()}-endian tensors")
        with archive.open(pickles[0]) as f:
            payload = _CheckpointUnpickler(f, lambda key: archive.read(f"{root}data/{key}")).load()
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path} is not a readable neural checkpoint ({_one_line(exc)})") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a nextword neural checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    return payload


def checked_payload(path: Path, payload: Any) -> tuple[NeuralConfig, list[str]]:
    """The config and vocabulary of a checkpoint's dict, after the checks every reader makes (`CheckpointError`)."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a nextword neural checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('version')}; this nextword reads {CHECKPOINT_VERSION}"
        )
    for key, kind in (("config", dict), ("vocab", list), ("state_dict", dict), ("metrics", dict)):
        if not isinstance(payload.get(key), kind):
            raise CheckpointError(
                f"{path} is a damaged neural checkpoint ('{key}' is missing or not a {kind.__name__})"
            )
    try:
        config = NeuralConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an invalid model config ({_one_line(exc)})") from exc
    vocab = payload["vocab"]
    if not all(isinstance(w, str) for w in vocab) or vocab[:3] != [UNK, BOS, EOS] or len(set(vocab)) != len(vocab):
        raise CheckpointError(f"{path} has an invalid vocabulary (it must start with <unk> <s> </s>, no repeats)")
    if len(vocab) != config.vocab_size:
        raise CheckpointError(f"{path}: its vocabulary has {len(vocab)} words but its config says {config.vocab_size}")
    return config, vocab


@dataclass
class LoadedNetwork:
    """A checkpoint read for inference: the numpy network, its vocabulary and the training metrics."""

    network: Network
    vocab: list[str]
    metrics: dict[str, Any]


def load_network(path: str | Path) -> LoadedNetwork:
    """The numpy network of the checkpoint at `path` (no torch), with the same checks as
    `lm_core.neural.load_checkpoint`; `CheckpointError` (one line) if it cannot be used."""
    path = Path(path)
    payload = read_checkpoint(path)
    config, vocab = checked_payload(path, payload)
    weights = {}
    for key, value in payload["state_dict"].items():
        if not isinstance(value, LazyArray):
            raise CheckpointError(f"{path} is a damaged neural checkpoint ({key} is not a tensor)")
        weights[key] = value.load()
    try:
        network = build_network(config, weights)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: its weights do not fit its config ({_one_line(exc)})") from exc
    return LoadedNetwork(network, vocab, payload["metrics"])


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the networks ---------------------------------------------------------------------------------------------------
State = Any
"""A network's state: hidden (L, B, H) float32 (RNN, GRU), a tuple (h, c) of two (LSTM), or the last ids
(B, window) int64 (the window model)."""


class Network(ABC):
    """A trained model's forward pass in numpy: `hidden` maps ids (B, T) and a state to the top layer's outputs
    (B, T, H) and the next state; `decode` maps outputs (N, H) to logits (N, V) (`<s>`: -inf). Read-only: one
    network serves any number of `NeuralLM`s and threads."""

    config: NeuralConfig

    def __init__(self, config: NeuralConfig, weights: Mapping[str, np.ndarray]) -> None:
        _limit_blas_threads()
        self.config = config
        encoder = _weight(weights, "encoder.weight", (config.vocab_size, config.embed_dim))
        decoder = weights.get("decoder.weight", encoder) if config.tie_weights else weights["decoder.weight"]
        width = config.hidden_dim
        bias = _weight(weights, "decoder.bias", (config.vocab_size,))
        # the decoder's weights (H, V) with its bias as one more row (H + 1, V): one matrix product gives the
        # logits, no second pass over them to add the bias (~35% of the decoding time at 20k words)
        # Row-major (C order) on purpose: with one BLAS thread a one-row product over it takes ~0.6-1.4 ms, over
        # the same matrix in column-major order (what `np.vstack` of a transposed array gives) ~2.6-3 ms (20,000
        # words, measured on 2 AMD EPYC cores; batches of 128-256 rows are no slower)
        self.decoder_with_bias = np.empty((width + 1, config.vocab_size), dtype=np.float32)
        self.decoder_with_bias[:width] = _shaped(decoder, "decoder.weight", (config.vocab_size, width)).T
        self.decoder_with_bias[width] = bias
        # (H, V) contiguous, a view: one row of outputs times it is the fastest product for a completion's token
        self.decoder_t = self.decoder_with_bias[:width]
        # (V, E) rows looked up by id; with tied weights, a view of the decoder's array (not a second 16 MB copy)
        self.encoder = self.decoder_t.T if config.tie_weights else encoder
        self.decoder_bias = bias.copy()
        self.decoder_bias[BOS_ID] = -np.inf

    @abstractmethod
    def init_state(self, batch: int) -> State:
        """The state before any token, for `batch` rows."""

    @abstractmethod
    def hidden(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """The top layer's outputs for `ids` (B, T) from `state`, and the state after them."""

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Logits (N, V) float32 for outputs (N, H): [outputs, 1] @ `decoder_with_bias`, then `<s>` -inf."""
        n, width = outputs.shape
        augmented = np.empty((n, width + 1), dtype=np.float32)
        augmented[:, :width] = outputs
        augmented[:, width] = 1.0
        logits = augmented @ self.decoder_with_bias
        logits[:, BOS_ID] = -np.inf
        return logits

    def __call__(self, ids: np.ndarray, state: State, last_only: bool = False) -> tuple[np.ndarray, State]:
        """Logits (B, T, V), or (B, 1, V) for the last position only, and the state after `ids` (B, T)."""
        out, state = self.hidden(ids, state)
        if last_only:
            out = out[:, -1:]
        b, t, h = out.shape
        return self.decode(out.reshape(b * t, h)).reshape(b, t, -1), state


_blas_limited: list[object] = []
_batch_threads = [1]  # threads that score groups of sentences side by side (`set_batch_threads`)


def _limit_blas_threads() -> None:
    """Limit numpy's BLAS to BLAS_THREADS threads in this process (once)."""
    if not _blas_limited:
        _blas_limited.append(threadpool_limits(limits=BLAS_THREADS, user_api="blas"))


def set_batch_threads(threads: int) -> None:
    """How many threads score groups of sentences side by side in this process (`NeuralLM.score_continuations`,
    which `eval`, `score` and checks use); each group's products and softmax run on one core (numpy lets go of the
    interpreter lock in them). One (the default) suits the server, whose threads share the cores with each other
    and the editor; a command that scores a whole file in a process of its own may use every core (`nextword eval`
    of WikiText-2 test with the shipped LSTM on 2 idle cores: see bench/RESULTS.md, "Check speed")."""
    _batch_threads[0] = max(1, threads)


def _weight(weights: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in weights:
        raise KeyError(f"no {key}")
    return _shaped(weights[key], key, shape)


def _shaped(value: np.ndarray, key: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"{key} has shape {tuple(array.shape)}, not {shape}")
    return array


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, in place on `x` (float32)."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1.0
    np.reciprocal(x, out=x)
    return x


class RecurrentNetwork(Network):
    """Embedding -> stacked Elman RNN (tanh) / LSTM / GRU -> decoder, as torch's nn.RNN / nn.LSTM / nn.GRU compute
    them (gate order i f g o for the LSTM, r z n for the GRU)."""

    GATES: ClassVar[dict[str, int]] = {"rnn": 1, "lstm": 4, "gru": 3}

    def __init__(self, config: NeuralConfig, weights: Mapping[str, np.ndarray]) -> None:
        super().__init__(config, weights)
        g, h = self.GATES[config.cell], config.hidden_dim
        self.layers = []
        for layer in range(config.layers):
            width = config.embed_dim if layer == 0 else h
            w_ih = _weight(weights, f"rnn.weight_ih_l{layer}", (g * h, width))
            w_hh = _weight(weights, f"rnn.weight_hh_l{layer}", (g * h, h))
            b_ih = _weight(weights, f"rnn.bias_ih_l{layer}", (g * h,))
            b_hh = _weight(weights, f"rnn.bias_hh_l{layer}", (g * h,))
            self.layers.append((np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T), b_ih, b_hh))

    def init_state(self, batch: int) -> State:
        shape = (self.config.layers, batch, self.config.hidden_dim)
        zeros = np.zeros(shape, dtype=np.float32)
        return (zeros, zeros.copy()) if self.config.cell == "lstm" else zeros

    def hidden(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        x = self.encoder[ids]  # (B, T, E)
        lstm = self.config.cell == "lstm"
        hs, cs = state if lstm else (state, None)
        new_h, new_c = [], []
        gru = self.config.cell == "gru"
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.layers):
            b, t, width = x.shape
            # the input's share of every step at once, (B, T, G*H): one matrix product over all B*T positions;
            # the LSTM and RNN add b_hh to it too (the GRU scales its share of h, b_hh included, by r)
            inputs = (np.ascontiguousarray(x).reshape(b * t, width) @ w_ih).reshape(b, t, -1)
            inputs += b_ih if gru else b_ih + b_hh
            if lstm:
                x, h, c = self._lstm(inputs, hs[layer], cs[layer], w_hh)
                new_c.append(c)
            elif gru:
                x, h = self._gru(inputs, hs[layer], w_hh, b_hh)
            else:
                x, h = self._rnn(inputs, hs[layer], w_hh)
            new_h.append(h)
        if lstm:
            return x, (np.stack(new_h), np.stack(new_c))
        return x, np.stack(new_h)

    @staticmethod
    def _lstm(inputs, h, c, w_hh):
        """Steps of an LSTM layer; `inputs` (B, T, 4H) hold the input's share of the gates, both biases added."""
        size = h.shape[-1]
        out = np.empty((*inputs.shape[:2], size), dtype=np.float32)
        for t in range(inputs.shape[1]):
            gates = h @ w_hh  # (B, 4H)
            gates += inputs[:, t]
            _sigmoid(gates[:, : 2 * size])
            _sigmoid(gates[:, 3 * size :])
            g = np.tanh(gates[:, 2 * size : 3 * size])
            c = gates[:, size : 2 * size] * c + gates[:, :size] * g
            h = gates[:, 3 * size :] * np.tanh(c)
            out[:, t] = h
        return out, h, c

    @staticmethod
    def _gru(inputs, h, w_hh, b_hh):
        size = h.shape[-1]
        out = np.empty((*inputs.shape[:2], size), dtype=np.float32)
        for t in range(inputs.shape[1]):
            x_t = inputs[:, t]
            h_part = h @ w_hh + b_hh  # (B, 3H)
            rz = _sigmoid(x_t[:, : 2 * size] + h_part[:, : 2 * size])
            n = np.tanh(x_t[:, 2 * size :] + rz[:, :size] * h_part[:, 2 * size :])
            z = rz[:, size:]
            h = (1 - z) * n + z * h
            out[:, t] = h
        return out, h

    @staticmethod
    def _rnn(inputs, h, w_hh):
        """Steps of an Elman layer; `inputs` (B, T, H) hold the input's share, both biases added."""
        out = np.empty((*inputs.shape[:2], h.shape[-1]), dtype=np.float32)
        for t in range(inputs.shape[1]):
            h = h @ w_hh
            h += inputs[:, t]
            np.tanh(h, out=h)
            out[:, t] = h
        return out, h


class WindowNetwork(Network):
    """Bengio et al. (2003), as `lm_core.neural.WindowLM`: the last `window` word vectors -> tanh -> decoder; its
    state is the last `window` ids, and ids before a window's latest `<s>` read as `<s>`."""

    def __init__(self, config: NeuralConfig, weights: Mapping[str, np.ndarray]) -> None:
        super().__init__(config, weights)
        width = config.window * config.embed_dim
        self.hidden_t = np.ascontiguousarray(_weight(weights, "hidden.weight", (config.hidden_dim, width)).T)
        self.hidden_bias = _weight(weights, "hidden.bias", (config.hidden_dim,))

    def init_state(self, batch: int) -> State:
        return np.full((batch, self.config.window), BOS_ID, dtype=np.int64)

    def hidden(self, ids: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        n = self.config.window
        full = np.concatenate([state, ids], axis=1)  # (B, n + T)
        windows = np.lib.stride_tricks.sliding_window_view(full, n, axis=1)[:, 1:]  # (B, T, n)
        is_bos = windows == BOS_ID
        later_bos = np.flip(np.cumsum(np.flip(is_bos, -1), -1), -1) - is_bos  # <s> after each position
        windows = np.where(later_bos > 0, BOS_ID, windows)
        b, t = ids.shape
        x = self.encoder[windows].reshape(b, t, n * self.config.embed_dim)
        return np.tanh(x @ self.hidden_t + self.hidden_bias), full[:, -n:].copy()


def build_network(config: NeuralConfig, weights: Mapping[str, np.ndarray]) -> Network:
    """The numpy network of `config` with `weights` (a state_dict's arrays, any float dtype)."""
    return WindowNetwork(config, weights) if config.cell == "window" else RecurrentNetwork(config, weights)


def network_of(model: Any) -> Network:
    """A numpy network as is; a torch module (`lm_core.neural.RecurrentLM` or `WindowLM`) as a numpy copy of its
    current weights (the module is not imported here: only its `config` and `state_dict()` are read)."""
    if isinstance(model, Network):
        return model
    weights = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    return build_network(model.config, weights)


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Natural-log softmax of each row of float32 logits, as float64 (rows sum to 1 within ~1e-15)."""
    rows = logits.astype(np.float64)
    rows -= rows.max(axis=-1, keepdims=True)
    rows -= np.log(np.exp(rows).sum(axis=-1, keepdims=True))
    return rows


def target_logprobs(logits: np.ndarray, targets: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """log softmax(logits)[target] for each row (N, V) float32 -> (N,) float64, without the float64 copy of the
    whole block: exp in float32 (relative error ~1e-7), sums in float64. `overwrite`: `logits` may be used as the
    scratch block (saves a copy of it)."""
    top = logits.max(axis=1, keepdims=True)
    picked = np.take_along_axis(logits, targets[:, None], axis=1)[:, 0].astype(np.float64)
    shifted = np.subtract(logits, top, out=logits) if overwrite else logits - top
    np.exp(shifted, out=shifted)
    log_z = np.log(shifted.sum(axis=1, dtype=np.float64))
    return picked - top[:, 0].astype(np.float64) - log_z


# --- the LanguageModel ----------------------------------------------------------------------------------------------
@dataclass
class DocumentState:
    """What is cached for one document: the tokens seen, network states at some token counts, and the next-word
    log-probabilities after all the tokens."""

    tokens: tuple[str, ...]
    states: list[tuple[int, State]]  # (number of tokens fed, the state after them), ascending; starts with (0, init)
    logprobs: np.ndarray  # (V,) float64, natural logs of P(next word | tokens)


class NeuralLM:
    """A neural model as a `LanguageModel`: `logprob` (natural log) and exact top-k `predict`.

    `model` is a numpy `Network` (from `load_network`) or a torch module (its weights are copied at construction).
    Words outside the model's vocabulary are `<unk>`; `<s>` is never predicted. `order` is None for recurrent cells
    (unbounded context) and window + 1 for the window model. An empty context means a sentence start (`<s>`).

    Inference caches, per document key, the state after the tokens seen (`logprobs_after`), so the next request on
    a document runs only the tokens after the longest cached point its tokens still agree with; at most
    `max_documents` documents (least recently used dropped) and `max_states_per_document` states each are kept.
    `logprob` and `predict` use the key None, so scoring a text token by token (contexts that keep growing) runs
    each token once.
    """

    def __init__(
        self,
        model: Any,
        vocab_words: Sequence[str],
        max_documents: int = 32,
        max_states_per_document: int = 64,
    ) -> None:
        self.model = model
        self.net = network_of(model)
        config = self.net.config
        if len(vocab_words) != config.vocab_size:
            raise ValueError(f"the vocabulary has {len(vocab_words)} words but the model has {config.vocab_size}")
        self.config = config
        self.order = config.order
        # a list is kept as given (not copied): every NeuralLM over one vocabulary list then shares it, and with it
        # what a Blend derives from the list's identity (its alignment onto the store's words)
        self.words: list[str] = vocab_words if isinstance(vocab_words, list) else list(vocab_words)
        self._ids = {w: i for i, w in enumerate(self.words)}
        # prefix filtering: the predictable words sorted, so a prefix is one index range found by bisection
        ranked = sorted((w, i) for i, w in enumerate(self.words) if i != BOS_ID)
        self._sorted_words = [w for w, _ in ranked]
        self._sorted_ids = np.asarray([i for _, i in ranked], dtype=np.int64)
        self._documents: OrderedDict[object, DocumentState] = OrderedDict()
        self.max_documents = max_documents
        self.max_states = max_states_per_document
        self.tokens_run = 0  # tokens fed through the network, ever (tests check that caching saves work)

    @classmethod
    def load(cls, path: str | Path) -> NeuralLM:
        """The model of a checkpoint file (`CheckpointError` if it cannot be used); no torch."""
        loaded = load_network(path)
        return cls(loaded.network, loaded.vocab)

    # --- the LanguageModel interface --------------------------------------------------------------------------------
    def logprob(self, word: str, context: Context) -> float:
        """Natural log of P(word | context); a word outside the vocabulary is scored as `<unk>`; -inf for `<s>`."""
        return float(self.logprobs_after(None, context)[self.id_of(word)])

    def predict(self, context: Context, k: int = 10, prefix: str = "") -> list[Prediction]:
        """The k most probable next words starting with `prefix`, most probable first (ties by word); exact, over
        the whole vocabulary; probabilities equal exp(logprob)."""
        return self.top_k(self.logprobs_after(None, context), k, prefix)

    def distribution(self, context: Context) -> dict[str, float]:
        """P(w | context) for every w of the vocabulary but `<s>` (sums to 1)."""
        words, probs = self.distribution_arrays(context)
        return dict(zip(words, probs.tolist(), strict=True))

    def distribution_arrays(self, context: Context) -> tuple[list[str], np.ndarray]:
        """(the vocabulary, P(w | context) for each word as float64); `<s>` has probability 0."""
        return self.words, np.exp(self.logprobs_after(None, context))

    def vocabulary_words(self) -> list[str]:
        """The words `distribution_arrays` lists (the same list object)."""
        return self.words

    # --- vocabulary -------------------------------------------------------------------------------------------------
    def id_of(self, word: str) -> int:
        return self._ids.get(word, UNK_ID)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def prefix_ids(self, prefix: str) -> np.ndarray:
        """Ids of the predictable words starting with `prefix`: one index range of the sorted vocabulary."""
        if not prefix:
            return self._sorted_ids
        lo = bisect_left(self._sorted_words, prefix)
        hi = bisect_left(self._sorted_words, prefix + "\U0010ffff", lo)
        return self._sorted_ids[lo:hi]

    def top_k(self, logprobs: np.ndarray, k: int, prefix: str = "") -> list[Prediction]:
        """The k best words starting with `prefix` under `logprobs` (V,), every word tied with the k-th
        considered, so ties are broken by word exactly."""
        if k <= 0:
            return []
        ids = self.prefix_ids(prefix)
        ranked = rank_top_k(logprobs[ids], ids, self.words, k)
        return [Prediction(self.words[i], math.exp(v)) for v, i in ranked if v > -math.inf]

    # --- inference with cached states -------------------------------------------------------------------------------
    def logprobs_after(self, doc_key: object, tokens: Sequence[str]) -> np.ndarray:
        """Natural-log P(next word | tokens) for every word id, as a (V,) float64 array (do not modify it).

        The state after `tokens` is cached under `doc_key`: when the next call's tokens extend them (or agree with
        them up to a cached point), only the tokens after that point are run. Empty `tokens` mean `(<s>,)`.
        """
        tokens = tuple(tokens) or (BOS,)
        doc = self._documents.get(doc_key)
        if doc is not None:
            self._documents.move_to_end(doc_key)
            if doc.tokens == tokens:
                return doc.logprobs
            same = _common_prefix(doc.tokens, tokens)
            fed, state = next((n, s) for n, s in reversed(doc.states) if n <= same and n < len(tokens))
            states = [(n, s) for n, s in doc.states if n <= fed]
        else:
            fed, state = 0, self.net.init_state(1)
            states = [(0, state)]
        ids = self._ids_array([self.id_of(t) for t in tokens[fed:]])  # (1, T)
        logits, state = self.net(ids, state, last_only=True)  # (1, 1, V)
        self.tokens_run += ids.shape[1]
        logprobs = log_softmax_rows(logits[0, -1])  # (V,) float64, so it sums to 1 exactly
        logprobs.flags.writeable = False
        states.append((len(tokens), state))
        if len(states) > self.max_states:  # keep the start and the most recent points
            states = [states[0], *states[len(states) - self.max_states + 1 :]]
        self._documents[doc_key] = DocumentState(tokens, states, logprobs)
        while len(self._documents) > self.max_documents:
            self._documents.popitem(last=False)
        return logprobs

    @staticmethod
    def _ids_array(ids: list[int]) -> np.ndarray:
        return np.asarray([ids], dtype=np.int64)

    def forget_document(self, doc_key: object) -> None:
        """Drop a document's cached states (e.g. when it is closed)."""
        self._documents.pop(doc_key, None)

    @property
    def cached_documents(self) -> int:
        """How many documents' states are cached now."""
        return len(self._documents)

    def sentence_logprobs(self, tokens: Sequence[str], batch: int = BATCH_SENTENCES) -> list[float]:
        """Natural-log P of every token of a flat sequence with `</s>` at sentence ends, each sentence scored from
        `<s>` on: the same numbers as `lm_core.metrics.score_tokens` gives (within float rounding). Sentences run
        `batch` at a time in one padded forward pass (similar lengths together; padding comes after a sentence's
        end, so it never changes what the sentence's words see), decoded DECODE_ROWS positions at a time."""
        sentences = split_sentences(tokens)
        scores = self.score_sentences(sentences, batch)
        return [s for sentence in scores for s in sentence]

    def score_sentences(self, sentences: Sequence[Sequence[str]], batch: int = BATCH_SENTENCES) -> list[list[float]]:
        """Natural-log P of each token of each sentence (a sentence: its words, ending with `</s>` if it ends),
        each read from `<s>`, scored in padded batches of `batch` sentences."""
        return self.score_continuations([((), sentence) for sentence in sentences], batch)

    def score_continuations(
        self, requests: Sequence[tuple[Sequence[str], Sequence[str]]], batch: int = BATCH_SENTENCES
    ) -> list[list[float]]:
        """For each request (before, after) of one sentence: natural-log P of each token of `after`, given `<s>`,
        `before` and the tokens of `after` before it (`lm_core.metrics.Continuation`). Requests run `batch` at a
        time in one padded forward pass (similar lengths together; padding comes after a request's last token, so
        it never changes what a token sees); only the positions of `after` tokens are decoded."""
        out: list[list[float]] = [[] for _ in requests]
        order = sorted(range(len(requests)), key=lambda i: len(requests[i][0]) + len(requests[i][1]))
        groups = [[i for i in order[start : start + batch] if requests[i][1]] for start in range(0, len(order), batch)]
        groups = [group for group in groups if group]
        threads = min(_batch_threads[0], len(groups))
        if threads > 1:  # groups side by side (`set_batch_threads`), each result where it belongs
            with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="nextword-scoring") as pool:
                results = list(pool.map(lambda group: self._score_group(group, requests), groups))
        else:
            results = [self._score_group(group, requests) for group in groups]
        for group, scores in zip(groups, results, strict=True):
            self.tokens_run += len(scores)
            position = 0
            for i in group:
                n = len(requests[i][1])
                out[i] = scores[position : position + n].tolist()
                position += n
        return out

    def _score_group(self, group: list[int], requests: Sequence[tuple[Sequence[str], Sequence[str]]]) -> np.ndarray:
        """The scores of the `after` tokens of the requests `group`, in order, from one padded forward pass."""
        rows, targets, inputs = self._padded(group, requests)
        outputs, _ = self.net.hidden(inputs, self.net.init_state(len(group)))  # (B, T, H)
        picked = outputs[rows[:, 0], rows[:, 1]]  # (N, H): only the positions scored are decoded
        return self._decode_targets(picked, targets)

    def _padded(
        self, group: list[int], requests: Sequence[tuple[Sequence[str], Sequence[str]]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the (row, position) of each scored token (N, 2), their ids (N,), the padded inputs (B, T))."""
        width = max(len(requests[i][0]) + len(requests[i][1]) for i in group)
        inputs = np.full((len(group), width), BOS_ID, dtype=np.int64)
        rows: list[tuple[int, int]] = []
        targets: list[int] = []
        for row, i in enumerate(group):
            before, after = requests[i]
            ids = [self.id_of(t) for t in (*before, *after)]
            inputs[row, 1 : len(ids)] = ids[:-1]
            rows += [(row, t) for t in range(len(before), len(ids))]
            targets += ids[len(before) :]
        return np.asarray(rows, dtype=np.int64), np.asarray(targets, dtype=np.int64), inputs

    def _decode_targets(self, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """log P(target) for each row of outputs (N, H), DECODE_ROWS rows per matrix product."""
        scores = np.empty(len(targets), dtype=np.float64)
        for lo in range(0, len(targets), DECODE_ROWS):
            hi = lo + DECODE_ROWS
            scores[lo:hi] = target_logprobs(self.net.decode(outputs[lo:hi]), targets[lo:hi], overwrite=True)
        return scores

    def stream_logprobs(self, tokens: Sequence[str], chunk: int = 2000) -> list[float]:
        """Natural-log P of every token of a flat sequence with `</s>` at sentence ends, the text read as one
        stream: `<s>` is fed after each `</s>` but the state carries on, so each word sees the sentences before
        it (as in training, and as the editor's document state does). This is how published recurrent-model
        perplexities on PTB and WikiText-2 are measured. Runs `chunk` tokens per network call."""
        stream: list[int] = [BOS_ID]
        targets: list[int] = []  # for each token, its position in the stream
        for token in tokens:
            targets.append(len(stream))
            stream.append(self.id_of(token))
            if token == EOS:
                stream.append(BOS_ID)
        ids = np.asarray(stream, dtype=np.int64)
        state = self.net.init_state(1)
        scores = np.zeros(len(stream), dtype=np.float64)  # scores[p] = log P(stream[p] | stream[:p])
        for start in range(0, len(stream) - 1, chunk):
            inputs = ids[start : start + chunk][None, :]  # (1, T)
            outputs, state = self.net.hidden(inputs, state)
            next_ids = ids[start + 1 : start + 1 + inputs.shape[1]]
            outputs = outputs[0, : len(next_ids)]
            scores[start + 1 : start + 1 + len(next_ids)] = self._decode_targets(outputs, next_ids)
            self.tokens_run += len(next_ids)
        return scores[targets].tolist()


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
