"""Training a neural language model on a token-id stream: batches, truncated backpropagation through time, gradient
clipping, learning-rate decay on a validation plateau, early stopping, resumable checkpoints, progress reports.

The loop, top to bottom (`train`):

    for each epoch:
        state = zeros                                   # one state per batch row, carried across batches
        for each chunk of `bptt` columns:               # truncated BPTT: gradients reach back `bptt` steps
            state = state.detach()                      # ... and no further: the graph never grows
            loss = cross-entropy(model(chunk, state))   # `<s>` targets are ignored (it is never predicted)
            loss.backward(); clip the global grad norm; optimizer step
        valid loss improved?  save the checkpoint : restore the best weights, lr *= decay (patience runs out: stop)

Losses are natural-log cross-entropies per token; perplexity = exp(loss). The validation loss is measured on the
continuous stream (the state carried across sentences, as in training); `lm_core.metrics.perplexity`, which
restarts each sentence from `<s>`, gives somewhat higher numbers for recurrent models.

A NaN or infinite loss (or gradient) stops training with `TrainingError`; the checkpoint file then still holds the
last good model, untouched (checkpoints are only ever replaced whole, after a finished epoch).

Data-parallel training (`train(..., parallel=group)`, see `lm_core.distributed`): N processes each run this same
loop on their B/N rows of the batchified stream; their gradients are averaged, so each step equals one step of a
single process on all B rows (up to float summation order). Only process 0 validates, reports and writes
checkpoints; every decision (stop, decay, time budget) is made on values all processes share.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from lm_core.neural import (
    Checkpoint,
    NeuralConfig,
    NeuralError,
    NeuralModule,
    State,
    build_model,
    detach_state,
    load_checkpoint,
    save_checkpoint,
    share_storage,
    update_checkpoint_metrics,
)
from lm_core.vocab import BOS, BOS_ID, EOS, UNK, UNK_ID, Vocab


class TrainingError(NeuralError):
    """Training cannot go on (a NaN loss, data too small for the batch shape, a checkpoint that does not fit)."""


class DataParallel(Protocol):
    """The processes that train one model together (`lm_core.distributed.ProcessGroup`). Every process calls
    `wrap` once, then the collectives (`all_sum`, `from_first`) at the same points of the loop, in the same order."""

    rank: int  # this process, 0 .. world_size - 1; process 0 validates, reports and writes the checkpoints
    world_size: int

    def wrap(self, model: NeuralModule) -> torch.nn.Module:
        """The module to run forward and backward through: it averages the gradients of all processes."""
        ...

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's rows of the batchified stream (B, N) -> (B / world_size, N)."""
        ...

    def all_sum(self, values: list[float]) -> list[float]:
        """The element-wise sums over all processes (the same on every process)."""
        ...

    def from_first(self, value: float) -> float:
        """Process 0's value, on every process."""
        ...


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Stored in resumable checkpoints (as a dict)."""

    epochs: int = 6  # passes over the training stream (fewer if early stopping or the time budget ends it)
    batch_size: int = 20  # parallel rows of the stream (B)
    bptt: int = 35  # truncated BPTT: tokens per chunk (T), and how far back gradients reach
    optimizer: str = "adam"  # "adam" or "sgd" (word_language_model: sgd with lr 20, clip 0.25)
    lr: float = 2e-3  # initial learning rate
    clip_norm: float = 0.5  # gradients are scaled so their global L2 norm is at most this (0: no clipping)
    lr_decay: float = 0.25  # lr *= this when the validation loss stops improving
    patience: int = 2  # stop after this many epochs in a row without improvement
    min_improvement: float = 1e-3  # a validation loss must drop by this (nats) to count as an improvement
    min_lr: float = 1e-6  # stop once the lr decays below this
    weight_decay: float = 0.0  # L2 penalty, as the optimizer implements it
    eval_batch_size: int = 10  # rows of the validation stream
    max_minutes: float | None = None  # time budget: stop (after a last validation) once it is spent
    log_every: int = 20  # report progress every this many steps
    seed: int = 1234  # torch's random seed (initialisation, dropout)
    device: str = "cpu"  # "cpu", "cuda", "mps": where the model and batches live

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, not {self.optimizer!r}")
        for name in ("epochs", "batch_size", "bptt", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1 or self.clip_norm < 0 or self.patience < 1:
            raise ValueError("lr must be > 0, lr_decay in (0, 1], clip_norm >= 0 and patience >= 1")


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: where training is and how it goes (loss in nats per token over the last steps)."""

    epoch: int  # 1-based
    epochs: int
    batch: int  # 1-based, within the epoch
    batches: int  # per epoch
    step: int  # optimizer steps so far, over all epochs
    loss: float
    perplexity: float
    lr: float
    tokens_per_s: float
    valid_perplexity: float | None = None  # set on the report that ends an epoch


@dataclass
class TrainResult:
    best_valid_loss: float
    epochs_run: int
    steps: int
    stopped: str  # why it stopped: "epochs", "early stopping", "lr below min_lr", "time budget", "cancelled"
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def best_valid_perplexity(self) -> float:
        return math.exp(self.best_valid_loss)


# --- data -----------------------------------------------------------------------------------------------------------
def build_vocab(sentences: Iterable[Sequence[str]], max_size: int | None = None, min_count: int = 1) -> list[str]:
    """The vocabulary for a new model: `<unk>` `<s>` `</s>` then the words seen at least `min_count` times, most
    frequent first, at most `max_size` words in all."""
    counts: Counter[str] = Counter(w for s in sentences for w in s if w not in (BOS, EOS, UNK))
    words = Vocab.from_counts(counts, min_count).words
    return list(words if max_size is None else words[: max(max_size, 4)])


def split_holdout(
    sentences: Sequence[Sequence[str]], fraction: float = 0.1
) -> tuple[list[Sequence[str]], list[Sequence[str]]]:
    """(training, held-out) sentences: the held-out part is the last `fraction` of the tokens, starting at a
    sentence start; text of a single long sentence is cut inside it."""
    total = sum(len(s) for s in sentences)
    wanted = max(1, round(total * fraction))
    held, cut = 0, len(sentences)
    while cut > 1 and held < wanted:
        cut -= 1
        held += len(sentences[cut])
    if held >= wanted or len(sentences) != 1:
        return list(sentences[:cut]), list(sentences[cut:])
    only = sentences[0]  # one sentence: cut it
    return [only[: len(only) - wanted]], [only[len(only) - wanted :]]


def encode(sentences: Iterable[Sequence[str]], vocab_words: Sequence[str]) -> torch.Tensor:
    """A token-id stream `<s> w1 .. wk </s> <s> ...` (each sentence ends with `</s>`); unknown words are `<unk>`."""
    index = {w: i for i, w in enumerate(vocab_words)}
    ids: list[int] = []
    for sentence in sentences:
        ids.append(BOS_ID)
        ids.extend(UNK_ID if w == BOS else index.get(w, UNK_ID) for w in sentence)
    return torch.tensor(ids, dtype=torch.long)


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into `batch_size` rows of equal length (the remainder is dropped), one row per
    batch element, so that each row is a contiguous piece of text and a state can be carried along it:

        stream:  a b c d e f g h i j k l m n o p q r s t u v w x y z    (26 ids), batch_size = 4

                 | a b c d e f |      row 0
        rows =   | g h i j k l |      row 1        (4, 6); y z are dropped
                 | m n o p q r |      row 2
                 | s t u v w x |      row 3

        get_batch(rows, 0, bptt=3):  inputs  a b c    targets  b c d
                                             g h i             h i j
                                             ...               ...
        get_batch(rows, 3, bptt=3):  inputs  d e      targets  e f    (the state after 'c' carries on to 'd')
    """
    length = len(stream) // batch_size
    return stream[: length * batch_size].view(batch_size, length)  # (B, N)


def get_batch(rows: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs rows[:, i : i+T] and targets one to the right, T = min(bptt, what is left); both (B, T)."""
    t = min(bptt, rows.size(1) - 1 - i)
    return rows[:, i : i + t], rows[:, i + 1 : i + 1 + t]


# --- one step -------------------------------------------------------------------------------------------------------
def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats per token) of logits (B, T, V) against targets (B, T); `<s>` targets are ignored."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=BOS_ID)


def summed_loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy (nats) of logits (B, T, V) against targets (B, T); `<s>` targets are ignored."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=BOS_ID, reduction="sum")


def counted_targets(targets: torch.Tensor) -> int:
    """How many targets a loss counts (all but `<s>`)."""
    return int((targets != BOS_ID).sum())


def train_step(
    model: NeuralModule,
    optimizer: torch.optim.Optimizer,
    state: State,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    clip_norm: float,
    denominator: float | None = None,
) -> tuple[float, State, float]:
    """One step of truncated BPTT: (loss, the detached state to carry on with, the gradient norm before clipping).

    The incoming state is detached first, so backpropagation stops at this chunk's start whatever the caller
    passes; clipping scales all gradients together so that their global L2 norm is at most `clip_norm`.
    The loss is the mean over this batch's non-`<s>` targets (nats per token), or, given `denominator`, their
    summed cross-entropy divided by it (data parallel: the global batch's count / the number of processes, so that
    the averaged gradients are those of the global batch's mean).
    """
    state = detach_state(state)
    optimizer.zero_grad(set_to_none=True)
    logits, state = model(inputs, state)  # (B, T, V)
    loss = loss_of(logits, targets) if denominator is None else summed_loss_of(logits, targets) / denominator
    loss.backward()
    value = float(loss.detach())
    if clip_norm > 0:
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm))
    else:
        norm = global_grad_norm(model)
    if math.isfinite(norm) and math.isfinite(value):  # a bad step is never applied
        optimizer.step()
    return value, detach_state(state), norm


def global_grad_norm(model: torch.nn.Module) -> float:
    """The L2 norm of all gradients together (what clipping bounds)."""
    grads = [p.grad.detach().flatten() for p in model.parameters() if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0


@torch.no_grad()
def evaluate(model: NeuralModule, stream: torch.Tensor, batch_size: int, bptt: int) -> float:
    """Mean cross-entropy (nats per token, `<s>` targets not counted) over a stream, the state carried along."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = batchify(stream, min(batch_size, max(1, (len(stream) - 1) // 2))).to(device)
    state = model.init_state(rows.size(0))
    total, count = 0.0, 0
    for i in range(0, rows.size(1) - 1, bptt):
        inputs, targets = get_batch(rows, i, bptt)
        logits, state = model(inputs, state)
        n = int((targets != BOS_ID).sum())
        if n:
            total += float(loss_of(logits, targets)) * n
            count += n
    model.train(was_training)
    return total / count if count else math.nan


# --- the loop -------------------------------------------------------------------------------------------------------
def make_optimizer(model: NeuralModule, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class _Counters:
    """Where training stands; saved in checkpoints so that training can resume."""

    lr: float
    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    bad_epochs: int = 0  # epochs in a row without improvement
    best_valid_loss: float = math.inf
    best_epoch: int = 0  # the epoch whose weights the checkpoint holds


class _Meter:
    """Mean loss and tokens per second since the last report."""

    def __init__(self) -> None:
        self.loss, self.steps, self.tokens, self.start = 0.0, 0, 0, time.monotonic()

    def add(self, loss: float, tokens: int) -> None:
        self.loss, self.steps, self.tokens = self.loss + loss, self.steps + 1, self.tokens + tokens

    def take(self) -> tuple[float, float]:
        mean = self.loss / max(self.steps, 1)
        rate = self.tokens / max(time.monotonic() - self.start, 1e-9)
        self.__init__()
        return mean, rate


def train(
    model: NeuralModule,
    train_ids: torch.Tensor,
    valid_ids: torch.Tensor,
    config: TrainConfig,
    checkpoint_path: str | Path,
    vocab_words: Sequence[str],
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
    parallel: DataParallel | None = None,
) -> TrainResult:
    """Train `model` on a token-id stream, keeping the best model (by validation loss) at `checkpoint_path`.

    After every epoch the validation loss decides: better by `min_improvement` -> these weights become the best;
    not better -> the best weights and optimizer state are restored, the lr decays, and after `patience` such
    epochs in a row training stops. Then the checkpoint is replaced (atomically) with the best weights, config,
    vocabulary, metrics, and the optimizer state and counters for resuming. `resume` continues from the
    checkpoint's training state (same model shape and vocabulary).
    `should_stop()` is polled every step: when it says so, training stops at once (the checkpoint keeps the best
    model so far). `max_minutes` ends training after a last validation. A NaN/inf loss raises `TrainingError`.
    On return the model holds the best weights, in eval mode.

    With `parallel`, this process is one of a group (see `DataParallel`): it trains on its share of the rows
    (`batch_size` is the global batch), the reported losses are the global batch's, `progress` is called and the
    checkpoint written by process 0 only, and process r seeds torch with `seed + r` (its own dropout masks; the
    weights all processes start from are process 0's).
    """
    checkpoint_path = Path(checkpoint_path)
    rank, world = (parallel.rank, parallel.world_size) if parallel else (0, 1)
    report = progress if rank == 0 else None
    torch.manual_seed(config.seed + rank)
    model.to(torch.device(config.device))
    rows = batchify(train_ids, config.batch_size).to(config.device)  # (B, N)
    if rows.size(1) < 2:
        raise TrainingError(
            f"{len(train_ids):,} training tokens are too few for batches of {config.batch_size} rows; "
            "give more text or a smaller batch size"
        )
    if len(valid_ids) < 2:
        raise TrainingError("the validation text is too short (it needs at least 2 tokens)")
    local_rows = parallel.shard(rows) if parallel else rows  # (B / world, N): this process's rows
    optimizer = make_optimizer(model, config)
    metrics: dict[str, Any] = {key: [] for key in ("epoch", "train_loss", "valid_loss", "lr", "seconds")}
    metrics.update(curve_epoch=[], curve_train_loss=[])
    at = _Counters(config.lr)
    if resume:
        at, loaded = _resume(model, optimizer, checkpoint_path, vocab_words)
        metrics.update(loaded)
    _set_lr(optimizer, at.lr)
    net = parallel.wrap(model) if parallel else model  # forward and backward through this
    best = _snapshot(model, optimizer)
    batches = math.ceil((rows.size(1) - 1) / config.bptt)
    deadline = time.monotonic() + config.max_minutes * 60 if config.max_minutes else math.inf
    stopped = "epochs"
    while at.epoch < config.epochs and stopped == "epochs":
        epoch = at.epoch + 1
        model.train()
        state = model.init_state(local_rows.size(0))  # (L, B, H) zeros, or the window model's <s> ids
        meter, losses, epoch_start = _Meter(), [], time.monotonic()
        for batch, i in enumerate(range(0, rows.size(1) - 1, config.bptt), start=1):
            inputs, targets = get_batch(local_rows, i, config.bptt)  # (B, T) each
            share = counted_targets(get_batch(rows, i, config.bptt)[1]) / world if parallel else None
            loss, state, norm = train_step(net, optimizer, state, inputs, targets, config.clip_norm, share)
            if parallel:  # the global batch's mean loss (the gradients were averaged in backward)
                loss = parallel.all_sum([loss])[0] / world
            at.step += 1
            if not math.isfinite(loss) or not math.isfinite(norm):
                what = f"loss became {_bad(loss)}" if not math.isfinite(loss) else f"gradient norm became {_bad(norm)}"
                raise TrainingError(
                    f"the {what} at step {at.step} (epoch {epoch}); {_kept(checkpoint_path)}; "
                    "try a lower learning rate or a smaller clipping norm"
                )
            losses.append(loss)
            meter.add(loss, inputs.numel() * world)
            if at.step % config.log_every == 0 or batch == batches:
                mean, rate = meter.take()
                metrics["curve_epoch"].append(epoch - 1 + batch / batches)  # the training curve, in epochs
                metrics["curve_train_loss"].append(mean)
                if report:
                    report(TrainProgress(epoch, config.epochs, batch, batches, at.step, mean, _exp(mean), at.lr, rate))
            cancel, late = bool(should_stop and should_stop()), time.monotonic() > deadline
            if parallel:  # every process stops when any one must, at the same step
                cancel, late = (flag > 0 for flag in parallel.all_sum([float(cancel), float(late)]))
            if cancel:
                _restore(model, optimizer, best)
                model.eval()
                return TrainResult(at.best_valid_loss, at.epoch, at.step, "cancelled", metrics)
            if late:
                stopped = "time budget"
                break
        valid = evaluate(model, valid_ids, config.eval_batch_size, config.bptt) if rank == 0 else math.nan
        if parallel:  # process 0's number, so that every process decides alike
            valid = parallel.from_first(valid)
        if not math.isfinite(valid):
            raise TrainingError(f"the validation loss became {_bad(valid)} in epoch {epoch}; {_kept(checkpoint_path)}")
        train_loss = sum(losses) / len(losses)
        for key, value in zip(
            ("epoch", "train_loss", "valid_loss", "lr", "seconds"),
            (epoch, train_loss, valid, at.lr, time.monotonic() - epoch_start),
            strict=True,
        ):
            metrics[key].append(value)
        at.epoch = epoch
        if valid < at.best_valid_loss - config.min_improvement:
            at.best_valid_loss, at.best_epoch, at.bad_epochs = valid, epoch, 0
            best = _snapshot(model, optimizer)
        else:  # a plateau: back to the best model, with a smaller step
            at.bad_epochs += 1
            _restore(model, optimizer, best)
            at.lr *= config.lr_decay
            _set_lr(optimizer, at.lr)
        metrics.update(best_valid_loss=at.best_valid_loss, best_epoch=at.best_epoch)
        training = {"optimizer": best[1], "train_config": asdict(config), **asdict(at)}
        if rank == 0:
            save_checkpoint(checkpoint_path, best[0], model.config, vocab_words, metrics, training)
        if report:
            mean, ppl = train_loss, _exp(train_loss)
            report(TrainProgress(epoch, config.epochs, batches, batches, at.step, mean, ppl, at.lr, 0.0, _exp(valid)))
        if stopped == "epochs" and at.bad_epochs >= config.patience:
            stopped = "early stopping"
        elif stopped == "epochs" and at.lr < config.min_lr:
            stopped = "lr below min_lr"
    _restore(model, optimizer, best)
    model.eval()
    return TrainResult(at.best_valid_loss, at.epoch, at.step, stopped, metrics)


SMALL_MODEL = {"cell": "lstm", "embed_dim": 128, "hidden_dim": 128, "layers": 1, "dropout": 0.1, "tie_weights": True}
"""The model `train_on_sentences` trains from scratch: a one-layer LSTM of 128 units with tied word vectors."""


def train_on_sentences(
    sentences: Sequence[Sequence[str]],
    checkpoint_path: str | Path,
    init: Checkpoint | None = None,
    config: TrainConfig | None = None,
    vocab_size: int = 10_000,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune `init` (keeping its shape and vocabulary), or train a `SMALL_MODEL` from scratch (a vocabulary of
    the `vocab_size` commonest words), on `sentences` (each ending with `</s>`); the last 10% of the tokens are held
    out for validation. The best model is written to `checkpoint_path` (see `train`). Raises `TrainingError` for
    too little text."""
    config = config or TrainConfig()
    train_sentences, valid = split_holdout(sentences, 0.1)
    tokens = sum(len(s) for s in sentences)
    if not valid or sum(len(s) for s in train_sentences) < 2 * config.batch_size:
        raise TrainingError(f"too little text to train on ({tokens:,} tokens); learn more documents first")
    torch.manual_seed(config.seed)
    if init is not None:
        vocab = init.vocab
        model = build_model(init.config)
        model.load_state_dict(init.model.state_dict())
    else:
        vocab = build_vocab(train_sentences, max_size=vocab_size)
        model = build_model(NeuralConfig(vocab_size=len(vocab), **SMALL_MODEL))
    train_ids, valid_ids = encode(train_sentences, vocab), encode(valid, vocab)
    result = train(model, train_ids, valid_ids, config, checkpoint_path, vocab, progress, should_stop)
    weight = init.metrics.get("blend_weight") if init is not None else None
    if isinstance(weight, int | float) and Path(checkpoint_path).exists():
        # The fine-tuned model keeps the blend weight it came with: the only held-out text here is the user's own,
        # which the n-gram store has learned too, so a weight fit on it would favour the n-gram model unfairly.
        update_checkpoint_metrics(checkpoint_path, blend_weight=float(weight))
    return result


def _exp(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


def _bad(value: float) -> str:
    return "NaN" if math.isnan(value) else "infinite"


def _kept(path: Path) -> str:
    if path.exists():
        return f"the last good checkpoint {path} is kept"
    return "no checkpoint had been written yet"


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _snapshot(model: NeuralModule, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Copies of the weights and the optimizer state (to restore the best model after a worse epoch)."""
    weights = share_storage(model.state_dict(), lambda v: v.detach().clone())  # tied weights stay one tensor
    return weights, _clone(optimizer.state_dict())


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _restore(model: NeuralModule, optimizer: torch.optim.Optimizer, snapshot: tuple[dict, dict]) -> None:
    """Load a snapshot's weights and optimizer state, keeping the current learning rate."""
    weights, opt_state = snapshot
    model.load_state_dict(weights)
    lrs = [g["lr"] for g in optimizer.param_groups]
    optimizer.load_state_dict(_clone(opt_state))
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr


def _resume(
    model: NeuralModule, optimizer: torch.optim.Optimizer, path: Path, vocab_words: Sequence[str]
) -> tuple[_Counters, dict[str, Any]]:
    """Load the checkpoint's weights and optimizer state into `model` and `optimizer`; its counters and metrics."""
    checkpoint = load_checkpoint(path)
    if checkpoint.training is None:
        raise TrainingError(f"{path} holds no training state (it was saved for use only); train anew or fine-tune")
    if checkpoint.config != model.config:
        raise TrainingError(f"{path} holds another model ({checkpoint.config}), not {model.config}")
    if checkpoint.vocab != list(vocab_words):
        raise TrainingError(f"{path} was trained with another vocabulary; resume with the same data and options")
    device = next(model.parameters()).device
    model.load_state_dict(checkpoint.model.state_dict())
    model.to(device)
    t = checkpoint.training
    optimizer.load_state_dict(t["optimizer"])
    counters = _Counters(
        float(t["lr"]),
        int(t["epoch"]),
        int(t["step"]),
        int(t["bad_epochs"]),
        float(t["best_valid_loss"]),
        int(t["best_epoch"]),
    )
    metrics = {k: list(v) if isinstance(v, list) else v for k, v in checkpoint.metrics.items()}
    return counters, metrics
