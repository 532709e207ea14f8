"""Data-parallel training of a neural model over several processes: torch.distributed, gradients averaged by
`torch.nn.parallel.DistributedDataParallel` (DDP); backend gloo on CPU, nccl on CUDA (process r on GPU r, or on
GPU LOCAL_RANK under a launcher).

Two ways in:

- `train_data_parallel(nproc, ...)` spawns `nproc` processes on this machine (torch.multiprocessing, "spawn"). The
  parent hosts the rendezvous (a TCPStore on a free localhost port, chosen by the kernel, so no port can be taken
  in between) and watches its children: when one fails, the others are ended at once and `TrainingError` names
  the first failure (its rank, type and message) in one line; a child that the parent outlives never hangs, and
  one whose parent dies is killed (Linux: PR_SET_PDEATHSIG).
- `train_in_group(...)`: this process is one of a group that a launcher (torchrun) started, found through the
  RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT variables (`launched()`). The launcher watches the
  processes: when one fails it ends the others.

Why N processes with a global batch of B rows train exactly as 1 process with B rows (see `training.train`):

- the stream is batchified into B rows as for one process, and process r takes rows [r B/N, (r+1) B/N): each
  step, the N processes together see the same tokens as the one process does;
- the loss of process r is the summed cross-entropy of its rows divided by G/N, where G is the global batch's
  count of non-`<s>` targets (`<s>` targets are not counted, so the processes' own counts differ; every process
  holds the whole stream and counts G itself, without communication). DDP averages the gradients over the N
  processes, which gives d(summed cross-entropy of all B rows)/G: the gradient of one process's mean loss;
- clipping by the global norm then runs on that averaged gradient (identical on every process), as do the
  optimizer steps, so every process keeps identical weights;
- the reported loss is the global batch's mean (an all-reduce of the processes' losses / N);
- process 0 computes the validation loss and broadcasts it, and the stop signals (`should_stop`, the time budget)
  are summed over the processes, so every process takes the same decisions at the same step, and none waits on
  a collective the others skip;
- process 0 alone reports progress and writes the checkpoints (and the CLI's plot).

The weights agree with a single process's up to float summation order (the matrix products and the gradient
all-reduce add in another order; about 1e-7 relative per step, see tests/test_distributed.py). Dropout differs:
process r seeds torch with `seed + r` (deterministic, and each process draws its own masks), so with dropout the
N processes train like one process with other masks, not bit for bit like it.

Collectives and the rendezvous time out after `timeout` (30 minutes by default, torch's own): the last resort
against a process that hangs without exiting; an exit is noticed at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import json
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing
from torch.nn.parallel import DistributedDataParallel

from lm_core.neural import NeuralError, NeuralModule, build_model
from lm_core.training import TrainingError, TrainingJob, TrainProgress, TrainResult, train

DEFAULT_TIMEOUT = timedelta(minutes=30)  # torch's own default: a last resort against a process that hangs
LOCALHOST = "127.0.0.1"  # the rendezvous of processes spawned here never leaves this machine
_GRACE_S = 5.0  # how long a process ended by its parent gets to exit after SIGTERM, before SIGKILL
_EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: how a process stopped by Ctrl-C exits, as shells report it
_INTERRUPTED = (_EXIT_INTERRUPTED, -signal.SIGINT)  # exit codes of a process stopped by Ctrl-C (its own, or a signal)
_ERROR_CHARS = 500  # a failure's message is cut to this, so the one line the parent reports stays readable
# DDP should not broadcast the buffers (the constant never-predicted mask) before every forward; the option's name
# changed in torch 2.13.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


# --- one process's place in the group ---------------------------------------------------------------------------------
@dataclass
class ProcessGroup:
    """This process's place in an initialised torch.distributed group; what `training.train` needs of it (it
    implements `training.DataParallel`)."""

    rank: int
    world_size: int
    device: torch.device

    def wrap(self, model: NeuralModule) -> torch.nn.Module:
        """DDP around `model`: process 0's weights are copied to all at once, gradients are averaged in backward.
        Buffers (the never-predicted mask) are constant, so they are not broadcast every step."""
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, **_NO_BUFFER_SYNC)

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This process's rows of the batchified stream: (B, N) -> (B / world_size, N), rows r B/N .. (r+1) B/N."""
        check_divisible(rows.size(0), self.world_size)
        per_process = rows.size(0) // self.world_size
        return rows[self.rank * per_process : (self.rank + 1) * per_process]

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over all processes, in float64 (the same result on every process)."""
        summed = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(summed)
        return summed.tolist()

    def from_first(self, value: float) -> float:
        """Process 0's value, on every process."""
        shared = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(shared, src=0)
        return float(shared.item())


def check_divisible(batch_size: int, nproc: int) -> None:
    """Raise `TrainingError` unless the global batch splits evenly over the processes."""
    if nproc < 1:
        raise TrainingError(f"the number of processes must be at least 1, not {nproc}")
    if batch_size % nproc:
        raise TrainingError(
            f"a batch of {batch_size} rows does not split evenly over {nproc} processes; "
            f"give a batch size that is a multiple of {nproc}"
        )


def rank_device(device: str, index: int) -> torch.device:
    """Where process `index` (its local rank) trains: the CPU, or CUDA device `index`."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise TrainingError(f"unknown device {device!r}; use cpu or cuda") from None
    if kind == "cpu":
        return torch.device("cpu")
    if kind != "cuda":
        raise TrainingError(f"data-parallel training runs on cpu or cuda, not {device}")
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise TrainingError(f"process {index} needs CUDA device {index}, but torch sees {_cuda_count()} here")
    return torch.device("cuda", index)


def _cuda_count() -> str:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return f"{count} CUDA device{'' if count == 1 else 's'}"


def join_group(
    rank: int, world_size: int, device: torch.device, store: dist.Store | None, timeout: timedelta
) -> ProcessGroup:
    """Initialise torch.distributed for this process (gloo on CPU, nccl on CUDA): through `store`, or through the
    launcher's environment (MASTER_ADDR, MASTER_PORT) when it is None."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if store is None:
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size, timeout=timeout)
    else:
        dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)
    return ProcessGroup(rank, world_size, device)


# --- under a launcher (torchrun) --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """This process's place as a launcher (torchrun) started it."""

    rank: int
    world_size: int
    local_rank: int  # on this machine: which GPU it takes


def launched() -> Launch | None:
    """This process's place when a launcher started it as one of several (RANK and WORLD_SIZE set, WORLD_SIZE > 1,
    LOCAL_RANK defaulting to RANK); None otherwise. Malformed variables raise `TrainingError`."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world_size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise TrainingError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (as torchrun sets them)") from None
    if world_size <= 1:
        return None
    if not 0 <= rank < world_size:
        raise TrainingError(f"RANK {rank} is outside 0..{world_size - 1} (WORLD_SIZE {world_size})")
    return Launch(rank, world_size, local_rank)


def train_in_group(
    launch: Launch,
    job: TrainingJob,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> TrainResult:
    """`training.train` as process `launch.rank` of a launched group (every process calls it with the same job;
    `job.config.batch_size` is the global batch). Process 0 reports and writes the checkpoint; every process
    returns the same result, its model holding the best weights."""
    check_divisible(job.config.batch_size, launch.world_size)
    device = rank_device(job.config.device, launch.local_rank)
    group = join_group(launch.rank, launch.world_size, device, None, timeout)
    result = train(_on_device(job, device), progress, should_stop, parallel=group)
    dist.destroy_process_group()
    return result


def _on_device(job: TrainingJob, device: torch.device) -> TrainingJob:
    return replace(job, config=replace(job.config, device=str(device)))


# --- spawning the processes here --------------------------------------------------------------------------------------
def train_data_parallel(
    nproc: int,
    job: TrainingJob,
    progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    threads: int = 1,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> TrainResult:
    """`training.train` over `nproc` processes spawned on this machine, `job.config.batch_size` being the global
    batch (a multiple of `nproc`); each process uses `threads` CPU threads. `progress` and `should_stop` run in the
    processes (process 0 reports), so they must be picklable: module-level functions or instances of module-level
    classes. On return `job.model` holds the best weights (eval mode), as after `training.train`.

    The job travels to each process as it is: its tensors in shared memory, which the processes only read; each
    trains a copy of the model of its own (see `_own_copy`).

    Raises `TrainingError` (one line) when a process fails, after ending all the others; KeyboardInterrupt ends
    them too, and is raised again.
    """
    check_divisible(job.config.batch_size, nproc)
    for index in range(nproc):
        rank_device(job.config.device, index)
    spawned = _Spawned(job, progress, should_stop, threads, timeout)
    with tempfile.TemporaryDirectory(prefix="nextword-ddp-") as folder:
        store = dist.TCPStore(LOCALHOST, 0, is_master=True, wait_for_workers=False, timeout=timeout)
        context = torch.multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_process_main, args=(rank, nproc, store.port, spawned, folder), daemon=True)
            for rank in range(nproc)
        ]
        try:
            for process in processes:
                process.start()
            _watch(processes, Path(folder))
        finally:
            _end(processes)
        if not (Path(folder) / "result.pt").exists():
            raise TrainingError("the training processes ended without a result")
        result = torch.load(Path(folder) / "result.pt", weights_only=True)
    job.model.load_state_dict(result.pop("weights"))
    job.model.eval()
    return TrainResult(**result)


@dataclass
class _Spawned:
    """What every spawned process is given, besides its rank."""

    job: TrainingJob
    progress: Callable[[TrainProgress], None] | None
    should_stop: Callable[[], bool] | None
    threads: int
    timeout: timedelta


def _process_main(rank: int, world_size: int, port: int, spawned: _Spawned, folder: str) -> None:
    """One spawned process: join the group, train, and (process 0) leave the result for the parent. A failure is
    written to `folder` for the parent to report; the exit status is then 1 (130 when interrupted)."""
    _die_with_parent()
    try:
        torch.set_num_threads(spawned.threads)
        device = rank_device(spawned.job.config.device, rank)
        store = dist.TCPStore(LOCALHOST, port, is_master=False, timeout=spawned.timeout)
        group = join_group(rank, world_size, device, store, spawned.timeout)
        job = replace(_on_device(spawned.job, device), model=_own_copy(spawned.job.model))
        result = train(job, spawned.progress, spawned.should_stop, parallel=group)
        if rank == 0:
            _write_result(Path(folder), result, job.model)
        dist.destroy_process_group()
    except KeyboardInterrupt:
        sys.exit(_EXIT_INTERRUPTED)
    except BaseException as exc:  # every failure is reported, whatever it is
        _write_error(Path(folder), rank, world_size, exc)
        sys.exit(1)


def _own_copy(model: NeuralModule) -> NeuralModule:
    """A model of this process's own with `model`'s weights: the one it was given shares its memory with the
    parent and the other processes, which would all step it at once."""
    copy = build_model(model.config)
    copy.load_state_dict(model.state_dict())
    return copy


def _watch(processes: list[multiprocessing.process.BaseProcess], folder: Path) -> None:
    """Wait for every process to exit; at the first that fails, end the others and raise the failure that caused
    it (see `_failure`)."""
    running = {process.sentinel: process for process in processes}
    while running:
        for sentinel in multiprocessing.connection.wait(list(running)):
            process = running.pop(sentinel)
            process.join()
            if process.exitcode != 0:
                exited = {rank: p.exitcode for rank, p in enumerate(processes) if p.exitcode not in (None, 0)}
                _end(processes)
                if any(code in _INTERRUPTED for code in exited.values()):
                    raise KeyboardInterrupt
                raise TrainingError(_failure(exited, len(processes), folder))


def _end(processes: list[multiprocessing.process.BaseProcess]) -> None:
    """Stop the processes still running: SIGTERM, then SIGKILL after a grace period."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + _GRACE_S
    for process in processes:
        if process.pid is not None:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def _failure(exited: dict[int, int], world_size: int, folder: Path) -> str:
    """One line naming the failure that came first. `exited`: the exit status of each process that had ended by
    itself, unsuccessfully. In order of preference: the earliest error a process reported of its own; a process
    that ended without reporting one (killed by a signal, say); the earliest knock-on error (a peer's lost
    connection, which only follows the failure that caused it)."""
    errors = []
    for path in folder.glob("error-*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            r = json.loads(path.read_text(encoding="utf-8"))
            errors.append((bool(r["knock_on"]), float(r["time"]), int(r["rank"]), str(r["message"])))
    own = [e for e in errors if not e[0]]
    if own:
        return min(own)[3]
    silent = sorted(set(exited) - {rank for *_, rank, _ in errors})
    if silent or not errors:
        rank = silent[0] if silent else min(exited, default=0)
        code = exited.get(rank, 1)
        how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        return f"training process {rank} of {world_size} {how}"
    return min(errors)[3]


def _write_error(folder: Path, rank: int, world_size: int, exc: BaseException) -> None:
    """Leave this process's failure for the parent: one line, when it happened, and whether it is only a knock-on
    (a peer's lost connection, which follows the failure that caused it)."""
    text = " ".join(str(exc).split())[:_ERROR_CHARS]
    if isinstance(exc, NeuralError):
        message = text
    else:
        message = f"training process {rank} of {world_size} failed: {type(exc).__name__}: {text or '(no message)'}"
    knock_on = isinstance(exc, dist.DistError) or any(
        mark in text.lower() for mark in ("connection closed by peer", "connection reset by peer", "broken pipe")
    )
    record = {"rank": rank, "time": time.time(), "message": message, "knock_on": knock_on}
    with contextlib.suppress(OSError):
        tmp = folder / f".error-{rank}.tmp"
        tmp.write_text(json.dumps(record), encoding="utf-8")
        tmp.replace(folder / f"error-{rank}.json")


def _write_result(folder: Path, result: TrainResult, model: NeuralModule) -> None:
    """Process 0's result and best weights, for the parent (torch.save; read back with weights_only)."""
    tmp = folder / ".result.tmp"
    torch.save({**asdict(result), "weights": model.state_dict()}, tmp)
    tmp.replace(folder / "result.pt")


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process if its parent dies (so no orphan waits on a collective)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
