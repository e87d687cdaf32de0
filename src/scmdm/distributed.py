"""Distributed training on PyTorch's own engine: ``torchrun`` starts the processes, ``torch.distributed`` joins
them, DistributedDataParallel (or FSDP, ``train.fsdp``) keeps their gradients in step.

    torchrun --standalone --nproc_per_node=N -m scmdm train --config qm9_base --out runs/x

Backends: NCCL when the processes train on CUDA (process r on ``cuda:LOCAL_RANK``), gloo on CPU. Mixed
precision is ``train.precision=bfloat16``: autocast inside every process, as on one (weights, gradients and
their reduction stay float32).

Sharding a step. ``train.batch_size`` = B is the *global* batch, the same index set as on one process
(``training.batch_indices``). It is cut into n = W·m consecutive pieces (W processes, m = ``train.grad_accum``
micro-batches per process; piece sizes differ by at most one) and process r takes pieces r·m … r·m + m − 1
(``shard_rows``). Micro-batch k of process r, with b_rk rows and mean per-sequence loss ℓ̄_rk, back-propagates

    L_rk = W · (b_rk / B) · ℓ̄_rk.

Gradients add up over the micro-batches and are averaged over the processes (DDP all-reduce and FSDP
reduce-scatter divide by W), so every process ends with

    (1/W) Σ_r Σ_k W (b_rk / B) ∇ℓ̄_rk = (1/B) Σ_rows ∇ℓ_row = the gradient of the single-process step,

equal up to float32 round-off (a sum taken in another order). Every random number of a step (times, masks,
generation orders, hint noise) is drawn for the whole global batch from one generator that all processes
hold in the same state, and each takes its rows, so the union over processes is exactly one single-process
draw (``scmdm.objectives``). Dropout is the exception: each process draws its own masks from its own global
RNG, so runs with ``model.dropout`` > 0 agree in distribution, not number by number.

Rank 0 alone writes: metrics.jsonl, the progress bar, checkpoints (then a barrier), the loss plot. With
FSDP the weights, EMA and optimizer state are gathered tensor by tensor into full CPU tensors on rank 0 for
every checkpoint, so a checkpoint is the same files whatever the number of processes or FSDP, and a run may
resume with another W or without FSDP. Validation runs on rank 0 with the full EMA weights (the others wait
and receive the numbers), so validation NELBO is the single-process number exactly; under FSDP that full
copy of the model has to fit rank 0's device.

Multi-node: the run folder must be on a filesystem every node sees (rank 0 writes checkpoints, every rank
reads them on resume); ``agree`` turns a node that sees another checkpoint into a clear error, not a hang.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from scmdm.errors import ConfigError

__all__ = ["DistInfo", "info", "launched", "backend_for", "session", "shard_rows", "LossRunner", "wrap",
           "resolve_device",
           "gradient_sync", "all_reduce_sum", "any_rank", "broadcast_object", "all_gather_object", "agree", "barrier",
           "full_tensor", "full_state_dict", "like", "full_optimizer_state", "shard_optimizer_state"]

TIMEOUT = timedelta(minutes=30)  # a collective waits this long (rank 0 may be validating or writing a checkpoint)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether a process group is up (even one of a single process)."""
        return dist.is_available() and dist.is_initialized()


def info() -> DistInfo:
    """Rank, world size and local rank of this process (0, 1, 0 without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device_name: str) -> str:
    """``nccl`` for CUDA (``auto`` with CUDA present), ``gloo`` for CPU."""
    if device_name == "mps":
        raise ConfigError("train.device='mps' cannot train distributed (no collective backend); use cpu or cuda")
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


@contextmanager
def session(device_name: str) -> Iterator[DistInfo]:
    """Join the process group when launched by torchrun (environment ``WORLD_SIZE`` > 1), leave it at the end.
    Without a launcher, or when a group is already up (a caller's own), it only reports ``info()``."""
    if not launched() or dist.is_initialized():
        yield info()
        return
    backend = backend_for(device_name)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield info()
    finally:
        dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA if available, else CPU. A device that is not there is a ConfigError (one line)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available here; use cpu (or auto)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but MPS is not available here; use cpu (or auto)")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, mps, cuda, cuda:N")
    return torch.device(name)


def shard_rows(batch: int, *, rank: int = 0, world_size: int = 1, micro_batches: int = 1) -> list[slice]:
    """The rows of a global batch that process ``rank`` handles, one slice per micro-batch (module docstring):
    ``batch`` rows cut into world_size·micro_batches consecutive pieces whose sizes differ by at most one
    (the first ``batch mod n`` are one longer), pieces rank·m … rank·m + m − 1 for this process."""
    pieces = world_size * micro_batches
    if not 0 <= rank < world_size or micro_batches < 1:
        raise ValueError(f"need 0 <= rank < world_size and micro_batches >= 1, got rank={rank}, "
                         f"world_size={world_size}, micro_batches={micro_batches}")
    if batch < pieces:
        raise ConfigError(f"train.batch_size ({batch}) must be at least processes × train.grad_accum = "
                          f"{world_size} × {micro_batches} = {pieces}: every micro-batch needs a row")
    base, extra = divmod(batch, pieces)
    starts = [i * base + min(i, extra) for i in range(pieces + 1)]
    return [slice(starts[i], starts[i + 1]) for i in range(rank * micro_batches, (rank + 1) * micro_batches)]


class LossRunner(nn.Module):
    """Runs a loss function of the model as this module's ``forward``: ``runner(fn) = fn(model)``.

    DDP and FSDP act on ``forward`` (DDP prepares its gradient reduction there; FSDP's root gathers its
    parameters there), while the losses call other methods too (``encode``, ``verify``) and may run the model
    twice (self-conditioning's pass 1 under no-grad, then pass 2). Wrapping the whole loss makes it one
    forward per backward for them."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[[nn.Module], Any]) -> Any:
        return fn(self.model)


def wrap(model: nn.Module, *, device: torch.device, fsdp: bool = False, find_unused: bool = False) -> nn.Module:
    """``LossRunner(model)``, under DDP or FSDP when a process group is up.

    FSDP (FSDP2's ``fully_shard``) shards each transformer block (and each verifier block) as its own unit and
    the rest with the root, over all processes; call it *before* building the optimizer, whose parameters
    are then the sharded ones. ``find_unused``: some parameters may get no gradient in a step (a
    self-conditioning projection on one-pass updates), which DDP must be told."""
    runner = LossRunner(model)
    if not info().enabled:
        if fsdp:
            raise ConfigError("train.fsdp=true needs a distributed launch: torchrun --nproc_per_node=N -m scmdm "
                              "train ... (or an initialised torch.distributed process group)")
        return runner
    if fsdp:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        causal = getattr(model, "causal", None)
        for block in [*model.blocks, *(causal.blocks if causal is not None else [])]:
            fully_shard(block, mesh=mesh)
        fully_shard(runner, mesh=mesh)
        return runner
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # the buffers (rotary tables) are constants: no need to re-broadcast them at every forward
    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                      else {"broadcast_buffers": False})
    return DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused, **no_buffer_sync)


def gradient_sync(wrapped: nn.Module, enabled: bool):
    """A context in which backward reduces gradients across processes (``enabled``) or only accumulates them
    locally (every micro-batch but the last of a step)."""
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(wrapped, DistributedDataParallel):
        return nullcontext() if enabled else wrapped.no_sync()
    if hasattr(wrapped, "set_requires_gradient_sync"):  # an FSDP2 module
        wrapped.set_requires_gradient_sync(enabled)
    return nullcontext()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over processes (the tensor itself without a process group)."""
    if info().enabled:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` holds on any process (decisions every process must take alike)."""
    if not info().enabled:
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)).item() > 0)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (a small picklable value: numbers, a dict of numbers)."""
    if not info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    if not info().enabled:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def agree(value: Any, what: str, hint: str = "") -> Any:
    """``value``, after checking that every process has the same one (else a ValueError that names them)."""
    values = all_gather_object(value)
    if any(v != values[0] for v in values):
        seen = "; ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
        raise ValueError(f"the processes disagree on {what} ({seen}){hint}")
    return value


def barrier() -> None:
    if info().enabled:
        dist.barrier()


# ---- FSDP: sharded tensors (DTensor) <-> the full tensors a checkpoint holds ----------------------------------
def _is_dtensor(value: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """The whole tensor of an FSDP-sharded one (a collective: every process must call it), else the tensor."""
    return value.full_tensor() if _is_dtensor(value) else value


def full_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The full tensors of a (possibly sharded) state dict on rank 0, in CPU memory, gathered one tensor at a
    time (a collective: every process calls it; the others get {}). Peak device memory: one full tensor."""
    main = info().is_main
    full = {}
    for k, v in state.items():  # the dict's order is the same on every process
        if isinstance(v, torch.Tensor):
            v = full_tensor(v).detach().cpu()
        if main:
            full[k] = v
    return full


def like(full: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``full`` laid out like ``reference``: this process's shard when ``reference`` is sharded, else itself."""
    if not _is_dtensor(reference):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(reference.device, reference.dtype), reference.device_mesh, reference.placements)


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with sharded moments gathered into full CPU tensors, on rank 0 (a collective,
    like ``full_state_dict``; the others get the param groups and no moments)."""
    state = optimizer.state_dict()
    return {"state": {i: full_state_dict(entries) if any(_is_dtensor(v) for v in entries.values()) else entries
                      for i, entries in sorted(state["state"].items())},
            "param_groups": state["param_groups"]}


def shard_optimizer_state(state: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A full optimizer state dict (as ``full_optimizer_state`` or a single process writes it) with each
    parameter's moments laid out like the parameter (its shard under FSDP)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    out = {}
    for index, entries in state["state"].items():
        param = params[int(index)]
        out[index] = {k: like(v, param) if isinstance(v, torch.Tensor) and v.shape == param.shape else v
                      for k, v in entries.items()}
    return {"state": out, "param_groups": state["param_groups"]}
