"""Training a neural language model on a token-id stream: batches, truncated backpropagation through time, gradient
clipping, learning-rate decay on a validation plateau, early stopping, resumable checkpoints, progress reports.

The one pipeline every caller (`nextword train-neural`, the server's retraining, the default-model builder, data-
parallel training) goes through:

    job = prepare(sentences, checkpoint_path, TrainConfig(...), NeuralConfig(...) or a Checkpoint)
        # validation text: given, or the last HOLDOUT of the tokens; too little text: TooLittleText;
        # the model: fresh (seeded, vocabulary from the training text) or the checkpoint's (blend weight kept)
    result = train(job)            # or lm_core.distributed.train_data_parallel(nproc, job) / train_in_group

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
from dataclasses import asdict, dataclass, field, replace
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
)
from lm_core.vocab import BOS, BOS_ID, EOS, UNK, UNK_ID, Vocab

MIN_VOCAB = 4  # the smallest vocabulary a model may have: <unk> <s> </s> and one word (as NeuralConfig checks)
_EXP_LIMIT = 700.0  # exp() of more overflows a float (at about 709.8): such a perplexity is reported as infinite
_SHORTEST_S = 1e-9  # a time span never taken as shorter than this, so a rate never divides by zero


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
    return list(words if max_size is None else words[: max(max_size, MIN_VOCAB)])


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
        n = counted_targets(targets)
        if n:
            total += float(loss_of(logits, targets)) * n
            count += n
    model.train(was_training)
    return total / count if count else math.nan


# --- the pipeline: sentences -> split -> check -> model -> job ------------------------------------------------------
HOLDOUT = 0.1  # the share of the tokens held out for validation when no validation text is given

SMALL_MODEL = NeuralConfig(
    cell="lstm", vocab_size=10_000, embed_dim=128, hidden_dim=128, layers=1, dropout=0.1, tie_weights=True
)
"""The model the server's retraining trains from scratch: a one-layer LSTM of 128 units with tied word vectors, over
the 10,000 commonest words (a fresh model's `vocab_size` is the most words its vocabulary keeps)."""


class TooLittleText(TrainingError):
    """The text is too short to train on: no held-out part, or fewer training tokens than two per batch row."""

    def __init__(self, tokens: int) -> None:
        super().__init__(f"too little text to train on ({tokens:,} tokens); give more text")
        self.tokens = tokens


@dataclass
class TrainingJob:
    """One training run, ready to start (`prepare` makes one from sentences): the model, its token streams and
    vocabulary, how to train, and where the checkpoint goes. `train` runs it in this process; the functions of
    `lm_core.distributed` run it over several."""

    model: NeuralModule  # trained in place: on return it holds the best weights, in eval mode
    train_ids: torch.Tensor  # (N,) the training stream `<s> w1 .. wk </s> <s> ...` (see `encode`)
    valid_ids: torch.Tensor  # (M,) the held-out stream, measured after every epoch
    vocab: list[str]  # the model's words, by id
    config: TrainConfig
    checkpoint_path: Path
    resume: bool = False  # continue from the training state saved at checkpoint_path (same shape and vocabulary)
    blend_weight: float | None = None  # written into every checkpoint's metrics: a fine-tuned model keeps its own

    def __post_init__(self) -> None:
        self.checkpoint_path = Path(self.checkpoint_path)


def prepare(
    sentences: Sequence[Sequence[str]],
    checkpoint_path: str | Path,
    config: TrainConfig,
    start: NeuralConfig | Checkpoint = SMALL_MODEL,
    valid: Sequence[Sequence[str]] | None = None,
    resume: bool = False,
) -> TrainingJob:
    """The job of training on `sentences` (each ending with `</s>`), validated on `valid`, or else on the last
    `HOLDOUT` of the tokens (`split_holdout`). `start` is a fresh model's shape (its vocabulary: the `vocab_size`
    commonest training words), or a checkpoint whose weights, shape, vocabulary and blend weight the job keeps (to
    fine-tune it, or with `resume` the checkpoint at `checkpoint_path` itself). Raises `TooLittleText`."""
    if valid is None:
        train_sentences, valid = split_holdout(sentences, HOLDOUT)
    else:
        train_sentences = list(sentences)
    if not valid or sum(len(s) for s in train_sentences) < 2 * config.batch_size:
        raise TooLittleText(sum(len(s) for s in sentences))
    torch.manual_seed(config.seed)  # a fresh model's initial weights
    if isinstance(start, Checkpoint):
        model, vocab = build_model(start.config), start.vocab
        model.load_state_dict(start.model.state_dict())
    else:
        vocab = build_vocab(train_sentences, max_size=start.vocab_size)
        model = build_model(replace(start, vocab_size=len(vocab)))
    train_ids, valid_ids = encode(train_sentences, vocab), encode(valid, vocab)
    return TrainingJob(model, train_ids, valid_ids, vocab, config, Path(checkpoint_path), resume, _blend_weight(start))


def train_on_sentences(
    sentences: Sequence[Sequence[str]],
    checkpoint_path: str | Path,
    init: Checkpoint | None = None,
    config: TrainConfig | None = None,
    vocab_size: int = SMALL_MODEL.vocab_size,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """`prepare` and `train` in one: fine-tune `init`, or train a `SMALL_MODEL` of at most `vocab_size` words from
    scratch, on `sentences`, the last `HOLDOUT` of the tokens held out. Raises `TooLittleText`."""
    start = init if init is not None else replace(SMALL_MODEL, vocab_size=vocab_size)
    job = prepare(sentences, checkpoint_path, config or TrainConfig(), start)
    return train(job, progress, should_stop)


def _blend_weight(start: NeuralConfig | Checkpoint) -> float | None:
    """The blend weight a checkpoint was saved with, if any. A fine-tuned model keeps it: the only held-out text is
    then the user's own, which the n-gram store has learned too, so a weight fit on it would favour the n-gram model
    unfairly."""
    weight = start.metrics.get("blend_weight") if isinstance(start, Checkpoint) else None
    return float(weight) if isinstance(weight, int | float) else None


# --- the loop -------------------------------------------------------------------------------------------------------
def train(
    job: TrainingJob,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    parallel: DataParallel | None = None,
) -> TrainResult:
    """Train `job.model` on `job.train_ids`, keeping the best model (by validation loss) at `job.checkpoint_path`.

    After every epoch the validation loss decides: better by `min_improvement` -> these weights become the best;
    not better -> the best weights and optimizer state are restored, the lr decays, and after `patience` such
    epochs in a row training stops. Then the checkpoint is replaced (atomically) with the best weights, config,
    vocabulary, metrics, and the optimizer state and counters for resuming. `job.resume` continues from the
    checkpoint's training state (same model shape and vocabulary).
    `should_stop()` is polled every step: when it says so, training stops at once (the checkpoint keeps the best
    model so far). `max_minutes` ends training after a last validation. A NaN/inf loss raises `TrainingError`.
    On return the model holds the best weights, in eval mode.

    With `parallel`, this process is one of a group (see `DataParallel`): it trains on its share of the rows
    (`batch_size` is the global batch), the reported losses are the global batch's, `progress` is called and the
    checkpoint written by process 0 only, and process r seeds torch with `seed + r` (its own dropout masks; the
    weights all processes start from are process 0's).
    """
    run = _Run(job, parallel or _ONE_PROCESS, parallel is not None, progress, should_stop)
    stopped = "epochs"
    while run.at.epoch < job.config.epochs and stopped == "epochs":
        epoch = _Epoch(run.at.epoch + 1)
        stopped = run.train_epoch(epoch)  # "epochs" (it ran to its end), "time budget" or "cancelled"
        if stopped == "cancelled":  # at once: no validation, the checkpoint keeps the best model so far
            break
        run.end_epoch(epoch)  # validate; keep the best weights or decay the lr; write the checkpoint
        if stopped == "epochs":
            stopped = run.plateau_stop()
    return run.result(stopped)


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


@dataclass
class _Epoch:
    """One epoch under way: its number (1-based), the training losses of its steps, when it started."""

    number: int
    losses: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class _Meter:
    """Mean loss and tokens per second since the last report."""

    def __init__(self) -> None:
        self.loss, self.steps, self.tokens, self.start = 0.0, 0, 0, time.monotonic()

    def add(self, loss: float, tokens: int) -> None:
        self.loss, self.steps, self.tokens = self.loss + loss, self.steps + 1, self.tokens + tokens

    def take(self) -> tuple[float, float]:
        mean = self.loss / max(self.steps, 1)
        rate = self.tokens / max(time.monotonic() - self.start, _SHORTEST_S)
        self.__init__()
        return mean, rate


class _OneProcess:
    """The group of one process that trains alone: `DataParallel` whose collectives return what they are given."""

    rank, world_size = 0, 1

    def wrap(self, model: NeuralModule) -> torch.nn.Module:
        return model

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        return rows

    def all_sum(self, values: list[float]) -> list[float]:
        return values

    def from_first(self, value: float) -> float:
        return value


_ONE_PROCESS = _OneProcess()
_METRICS = ("epoch", "train_loss", "valid_loss", "lr", "seconds")  # one value per epoch, in checkpoints' metrics


class _Run:
    """The state of one call of `train`, and its steps as small methods, in the order the loop calls them."""

    def __init__(
        self,
        job: TrainingJob,
        group: DataParallel,
        summed_loss: bool,
        progress: Callable[[TrainProgress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        """Seed torch, lay out the rows, check there is enough data, build the optimizer (or resume its state)."""
        config = job.config
        self.job, self.config, self.group = job, config, group
        self.summed_loss = summed_loss  # data parallel: each process's loss is a share of the global batch's sum
        self.report = progress if group.rank == 0 else None
        self.should_stop = should_stop
        torch.manual_seed(config.seed + group.rank)
        job.model.to(torch.device(config.device))
        self.rows = batchify(job.train_ids, config.batch_size).to(config.device)  # (B, N)
        _check_data(self.rows, job)
        self.local_rows = group.shard(self.rows)  # (B / world, N): this process's rows
        self.optimizer = make_optimizer(job.model, config)
        self.metrics: dict[str, Any] = {key: [] for key in _METRICS}
        self.metrics.update(curve_epoch=[], curve_train_loss=[])
        self.at = _Counters(config.lr)
        if job.resume:
            self.at, loaded = _resume(job.model, self.optimizer, job.checkpoint_path, job.vocab)
            self.metrics.update(loaded)
        _set_lr(self.optimizer, self.at.lr)
        self.net = group.wrap(job.model)  # forward and backward through this
        self.best = _snapshot(job.model, self.optimizer)
        self.batches = math.ceil((self.rows.size(1) - 1) / config.bptt)
        self.deadline = time.monotonic() + config.max_minutes * 60 if config.max_minutes else math.inf  # seconds

    def train_epoch(self, epoch: _Epoch) -> str:
        """One pass over the rows, a truncated-BPTT step per chunk: "epochs" when it ran to its end, else why it
        stopped early ("cancelled", "time budget")."""
        self.job.model.train()
        state = self.job.model.init_state(self.local_rows.size(0))  # (L, B, H) zeros, or the window model's <s> ids
        meter = _Meter()
        for batch, i in enumerate(range(0, self.rows.size(1) - 1, self.config.bptt), start=1):
            inputs, targets = get_batch(self.local_rows, i, self.config.bptt)  # (B, T) each
            loss, state, norm = train_step(
                self.net, self.optimizer, state, inputs, targets, self.config.clip_norm, self._denominator(i)
            )
            loss = self.group.all_sum([loss])[0] / self.group.world_size  # the global batch's mean loss
            self.at.step += 1
            self._check_finite(loss, norm, epoch.number)
            epoch.losses.append(loss)
            meter.add(loss, inputs.numel() * self.group.world_size)
            if self.at.step % self.config.log_every == 0 or batch == self.batches:
                self._log_curve(epoch.number, batch, meter)
            stop = self._stop_signal()
            if stop:
                return stop
        return "epochs"

    def _denominator(self, i: int) -> float | None:
        """Data parallel: the global batch's count of targets / the number of processes (see `train_step`);
        alone: None (the mean over this batch)."""
        if not self.summed_loss:
            return None
        return counted_targets(get_batch(self.rows, i, self.config.bptt)[1]) / self.group.world_size

    def _check_finite(self, loss: float, norm: float, epoch: int) -> None:
        if not math.isfinite(loss) or not math.isfinite(norm):
            what = f"loss became {_bad(loss)}" if not math.isfinite(loss) else f"gradient norm became {_bad(norm)}"
            raise TrainingError(
                f"the {what} at step {self.at.step} (epoch {epoch}); {_kept(self.job.checkpoint_path)}; "
                "try a lower learning rate or a smaller clipping norm"
            )

    def _log_curve(self, epoch: int, batch: int, meter: _Meter) -> None:
        """A point of the training curve (mean loss since the last one, at a fractional epoch), and a report."""
        mean, rate = meter.take()
        self.metrics["curve_epoch"].append(epoch - 1 + batch / self.batches)
        self.metrics["curve_train_loss"].append(mean)
        if self.report:
            at, config = self.at, self.config
            self.report(
                TrainProgress(epoch, config.epochs, batch, self.batches, at.step, mean, _exp(mean), at.lr, rate)
            )

    def _stop_signal(self) -> str | None:
        """ "cancelled" when `should_stop` says so, "time budget" once `max_minutes` is spent, else None; data
        parallel: on every process when any one must stop, at the same step."""
        cancel, late = bool(self.should_stop and self.should_stop()), time.monotonic() > self.deadline
        cancel, late = (flag > 0 for flag in self.group.all_sum([float(cancel), float(late)]))
        return "cancelled" if cancel else "time budget" if late else None

    def end_epoch(self, epoch: _Epoch) -> None:
        """Validate; keep the best weights or restore them and decay the lr; write the checkpoint; report."""
        valid = self._validate(epoch.number)
        train_loss = sum(epoch.losses) / len(epoch.losses)
        values = (epoch.number, train_loss, valid, self.at.lr, time.monotonic() - epoch.started)
        for key, value in zip(_METRICS, values, strict=True):
            self.metrics[key].append(value)
        self.at.epoch = epoch.number
        self._keep_best_or_decay(valid)
        self._save_checkpoint()
        if self.report:
            self._report_epoch(epoch.number, train_loss, valid)

    def _report_epoch(self, epoch: int, train_loss: float, valid: float) -> None:
        at, batches = self.at, self.batches
        ppl, valid_ppl = _exp(train_loss), _exp(valid)
        self.report(
            TrainProgress(epoch, self.config.epochs, batches, batches, at.step, train_loss, ppl, at.lr, 0.0, valid_ppl)
        )

    def _validate(self, epoch: int) -> float:
        """The validation loss (nats per token): process 0's, on every process, so that every process decides
        alike."""
        valid = math.nan
        if self.group.rank == 0:
            valid = evaluate(self.job.model, self.job.valid_ids, self.config.eval_batch_size, self.config.bptt)
        valid = self.group.from_first(valid)
        if not math.isfinite(valid):
            raise TrainingError(
                f"the validation loss became {_bad(valid)} in epoch {epoch}; {_kept(self.job.checkpoint_path)}"
            )
        return valid

    def _keep_best_or_decay(self, valid: float) -> None:
        at = self.at
        if valid < at.best_valid_loss - self.config.min_improvement:
            at.best_valid_loss, at.best_epoch, at.bad_epochs = valid, at.epoch, 0
            self.best = _snapshot(self.job.model, self.optimizer)
        else:  # a plateau: back to the best model, with a smaller step
            at.bad_epochs += 1
            _restore(self.job.model, self.optimizer, self.best)
            at.lr *= self.config.lr_decay
            _set_lr(self.optimizer, at.lr)
        self.metrics.update(best_valid_loss=at.best_valid_loss, best_epoch=at.best_epoch)

    def _save_checkpoint(self) -> None:
        """Process 0 replaces the checkpoint: the best weights, the metrics (with the job's blend weight), and what
        resuming needs (the best optimizer state, the config, the counters)."""
        if self.group.rank != 0:
            return
        job = self.job
        metrics = self.metrics if job.blend_weight is None else {**self.metrics, "blend_weight": job.blend_weight}
        training = {"optimizer": self.best[1], "train_config": asdict(self.config), **asdict(self.at)}
        save_checkpoint(job.checkpoint_path, self.best[0], job.model.config, job.vocab, metrics, training)

    def plateau_stop(self) -> str:
        """Why to stop after this epoch ("early stopping", "lr below min_lr"), or "epochs" to go on."""
        if self.at.bad_epochs >= self.config.patience:
            return "early stopping"
        if self.at.lr < self.config.min_lr:
            return "lr below min_lr"
        return "epochs"

    def result(self, stopped: str) -> TrainResult:
        """The best weights back in the model (eval mode), and what the run did."""
        _restore(self.job.model, self.optimizer, self.best)
        self.job.model.eval()
        return TrainResult(self.at.best_valid_loss, self.at.epoch, self.at.step, stopped, self.metrics)


def _check_data(rows: torch.Tensor, job: TrainingJob) -> None:
    if rows.size(1) < 2:
        raise TrainingError(
            f"{len(job.train_ids):,} training tokens are too few for batches of {job.config.batch_size} rows; "
            "give more text or a smaller batch size"
        )
    if len(job.valid_ids) < 2:
        raise TrainingError("the validation text is too short (it needs at least 2 tokens)")


def _exp(loss: float) -> float:
    return math.exp(loss) if loss < _EXP_LIMIT else math.inf


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
