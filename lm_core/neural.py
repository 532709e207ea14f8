"""Neural language models: Elman RNN, LSTM and GRU (`RecurrentLM`) and Bengio's fixed-window model (`WindowLM`),
their checkpoints, and `NeuralLM`, the `LanguageModel` that wraps one for scoring and prediction.

Both modules map word ids (B, T) and a state to logits (B, T, V) and the next state, so one training loop serves
them all: a recurrent model's state is its hidden state (detached between batches by truncated BPTT), the window
model's state is the last `window` word ids (so a window reaches back across batches too).

Ids are those of `lm_core.vocab` (`<unk>`=0, `<s>`=1, `</s>`=2). `<s>` is an input only: its logit is -inf, so it
is never predicted and a distribution sums to 1 over every other word of the model's vocabulary. Log-probabilities
are natural logs, computed in float64 from the float32 logits (so distributions sum to 1 within ~1e-15).

torch is imported here and in `lm_core.training` only, so that the n-gram code (and a server's first completion)
never pays for importing it.
"""

from __future__ import annotations

import math
import os
import threading
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lm_core.files import make_private_folder, open_private
from lm_core.model import Context, Prediction
from lm_core.vocab import BOS, BOS_ID, EOS, UNK, UNK_ID

CELLS = ("rnn", "lstm", "gru", "window")
CHECKPOINT_FORMAT = "nextword-neural-lm"
CHECKPOINT_VERSION = 1

State = Any
"""A model's state: a tensor (RNN, GRU: hidden (L, B, H); window model: the last ids (B, window)) or, for an LSTM,
a tuple (h, c) of two (L, B, H) tensors."""


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
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable neural checkpoint ({_one_line(exc)})") from exc
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
    model = build_model(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: its weights do not fit its config ({_one_line(exc)})") from exc
    model.eval()
    training = payload.get("training")
    return Checkpoint(model, config, vocab, payload["metrics"], training if isinstance(training, dict) else None)


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line (torch's messages run to many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the LanguageModel ----------------------------------------------------------------------------------------------
@dataclass
class DocumentState:
    """What is cached for one document: the tokens seen, model states at some token counts, and the next-word
    log-probabilities after all the tokens."""

    tokens: tuple[str, ...]
    states: list[tuple[int, State]]  # (number of tokens fed, the state after them), ascending; starts with (0, init)
    logprobs: torch.Tensor  # (V,) float64, natural logs of P(next word | tokens)


class NeuralLM:
    """A neural model as a `LanguageModel`: `logprob` (natural log) and exact top-k `predict`.

    Words outside the model's vocabulary are `<unk>`; `<s>` is never predicted. `order` is None for recurrent cells
    (unbounded context) and window + 1 for the window model. An empty context means a sentence start (`<s>`).

    Inference caches, per document key, the state after the tokens seen (`logprobs_after`), so the next request on
    a document runs only the tokens after the longest cached point its tokens still agree with. `logprob` and
    `predict` use the key None, so scoring a text token by token (contexts that keep growing) runs each token once.
    """

    def __init__(
        self,
        model: NeuralModule,
        vocab_words: Sequence[str],
        max_documents: int = 32,
        max_states_per_document: int = 64,
    ) -> None:
        config: NeuralConfig = model.config
        if len(vocab_words) != config.vocab_size:
            raise ValueError(f"the vocabulary has {len(vocab_words)} words but the model has {config.vocab_size}")
        self.model = model.eval()
        self.config = config
        self.order = config.order
        self.words: list[str] = list(vocab_words)
        self._ids = {w: i for i, w in enumerate(self.words)}
        # prefix filtering: the predictable words sorted, so a prefix is one index range found by bisection
        ranked = sorted((w, i) for i, w in enumerate(self.words) if i != BOS_ID)
        self._sorted_words = [w for w, _ in ranked]
        self._sorted_ids = torch.tensor([i for _, i in ranked], dtype=torch.long)
        self._documents: OrderedDict[object, DocumentState] = OrderedDict()
        self.max_documents = max_documents
        self.max_states = max_states_per_document
        self.tokens_run = 0  # tokens fed through the network, ever (tests check that caching saves work)

    @classmethod
    def load(cls, path: str | Path) -> NeuralLM:
        """The model of a checkpoint file (`CheckpointError` if it cannot be used)."""
        checkpoint = load_checkpoint(path)
        return cls(checkpoint.model, checkpoint.vocab)

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
        return self.words, self.logprobs_after(None, context).exp().numpy()

    # --- vocabulary -------------------------------------------------------------------------------------------------
    def id_of(self, word: str) -> int:
        return self._ids.get(word, UNK_ID)

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def prefix_ids(self, prefix: str) -> torch.Tensor:
        """Ids of the predictable words starting with `prefix`: one index range of the sorted vocabulary."""
        if not prefix:
            return self._sorted_ids
        lo = bisect_left(self._sorted_words, prefix)
        hi = bisect_left(self._sorted_words, prefix + "\U0010ffff", lo)
        return self._sorted_ids[lo:hi]

    def top_k(self, logprobs: torch.Tensor, k: int, prefix: str = "") -> list[Prediction]:
        """The k best words starting with `prefix` under `logprobs` (V,), every word tied with the k-th
        considered, so ties are broken by word exactly."""
        if k <= 0:
            return []
        ids = self.prefix_ids(prefix)
        values = logprobs[ids]  # (P,) the candidates' log-probabilities
        if len(values) > k:
            kth = torch.topk(values, k).values[-1]
            keep = values >= kth  # the top k and every word tied with the k-th
            ids, values = ids[keep], values[keep]
        ranked = sorted(zip(values.tolist(), ids.tolist(), strict=True), key=lambda vi: (-vi[0], self.words[vi[1]]))
        return [Prediction(self.words[i], math.exp(v)) for v, i in ranked[:k] if v > -math.inf]

    # --- inference with cached states -------------------------------------------------------------------------------
    @torch.inference_mode()
    def logprobs_after(self, doc_key: object, tokens: Sequence[str]) -> torch.Tensor:
        """Natural-log P(next word | tokens) for every word id, as a (V,) float64 tensor (do not modify it).

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
            fed, state = 0, self.model.init_state(1)
            states = [(0, state)]
        ids = self._tensor([self.id_of(t) for t in tokens[fed:]])  # (1, T)
        logits, state = self.model(ids, state, last_only=True)  # (1, 1, V)
        self.tokens_run += ids.size(1)
        logprobs = F.log_softmax(logits[0, -1].double(), dim=-1).cpu()  # (V,) float64, so it sums to 1 exactly
        states.append((len(tokens), state))
        if len(states) > self.max_states:  # keep the start and the most recent points
            states = [states[0], *states[len(states) - self.max_states + 1 :]]
        self._documents[doc_key] = DocumentState(tokens, states, logprobs)
        if len(self._documents) > self.max_documents:
            self._documents.popitem(last=False)
        return logprobs

    def _tensor(self, ids: list[int]) -> torch.Tensor:
        """Word ids as a (1, T) batch on the model's device."""
        return torch.tensor([ids], dtype=torch.long, device=next(self.model.parameters()).device)

    def forget_document(self, doc_key: object) -> None:
        """Drop a document's cached states (e.g. when it is closed)."""
        self._documents.pop(doc_key, None)

    @torch.inference_mode()
    def sentence_logprobs(self, tokens: Sequence[str]) -> list[float]:
        """Natural-log P of every token of a flat sequence with `</s>` at sentence ends, each sentence scored from
        `<s>` on: the same numbers as `lm_core.metrics.score_tokens` gives (within float rounding), one network
        call per sentence instead of one per token."""
        out: list[float] = []
        start = 0
        while start < len(tokens):
            end = next((i + 1 for i in range(start, len(tokens)) if tokens[i] == EOS), len(tokens))
            sentence = tokens[start:end]
            inputs = [BOS, *sentence[:-1]]
            ids = self._tensor([self.id_of(t) for t in inputs])  # (1, T)
            logits, _ = self.model(ids, self.model.init_state(1))  # (1, T, V)
            self.tokens_run += ids.size(1)
            logprobs = F.log_softmax(logits[0].double(), dim=-1).cpu()  # (T, V)
            targets = torch.tensor([self.id_of(t) for t in sentence], dtype=torch.long)
            out += logprobs.gather(1, targets[:, None])[:, 0].tolist()
            start = end
        return out

    @torch.inference_mode()
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
        state = self.model.init_state(1)
        scores = torch.empty(len(stream), dtype=torch.float64)  # scores[p] = log P(stream[p] | stream[:p])
        scores[0] = 0.0
        for start in range(0, len(stream) - 1, chunk):
            ids = self._tensor(stream[start : start + chunk + 1])  # (1, T + 1): inputs and the next target
            logits, state = self.model(ids[:, :-1], state)  # (1, T, V)
            self.tokens_run += ids.size(1) - 1
            logprobs = F.log_softmax(logits[0].double(), dim=-1).cpu()  # (T, V)
            scores[start + 1 : start + ids.size(1)] = logprobs.gather(1, ids[0, 1:].cpu()[:, None])[:, 0]
        return scores[targets].tolist()


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n
