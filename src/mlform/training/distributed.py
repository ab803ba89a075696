"""Data-parallel training under ``torchrun``: the process group and what the ranks share.

``torchrun`` (``torch.distributed.run``) starts one trainer process per GPU (or per CPU
slot) on every node and tells each where it stands through ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT``; the Kubernetes target launches it from
an indexed Job (:func:`mlform.infra.kubernetes.torchrun_command`). When ``WORLD_SIZE`` is
more than 1 the torch trainer becomes one rank of a data-parallel run:

* :func:`process_group` joins the group (``nccl`` on CUDA, ``gloo`` on the CPU) and leaves
  it at the end, unless the caller had already joined one (then the caller owns it);
* :func:`rank_device` pins the rank to ``cuda:LOCAL_RANK``, one GPU per process;
* :class:`DataParallel` wraps the module in ``DistributedDataParallel`` (gradients are
  averaged, so every rank keeps the same parameters), shards each epoch's rows with a
  ``DistributedSampler`` reshuffled by ``set_epoch``, shards the validation rows and sums
  the per-rank metrics with ``all_reduce``: every rank sees the same metrics, so early
  stopping, the scheduler and the divergence check decide the same everywhere (a rank
  that stopped alone would leave the others waiting in a collective forever);
* only rank 0 (:attr:`DataParallel.primary`) writes checkpoints and artifacts; the others
  wait at a barrier, and resume from the checkpoint rank 0 read (broadcast), so they
  need not share its disk.

A run with ``WORLD_SIZE`` unset or 1 never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

__all__ = [
    "DataParallel",
    "DistributedError",
    "Group",
    "Launch",
    "launch_from_env",
    "process_group",
    "rank_device",
]

_TIMEOUT = timedelta(minutes=30)  # torch's default for gloo; a stuck peer fails the run


class DistributedError(RuntimeError):
    """The ``torchrun`` environment is malformed or the process group cannot be joined."""


@dataclass(frozen=True, slots=True)
class Launch:
    """Where ``torchrun`` placed this process: its rank among ``world_size``."""

    world_size: int
    rank: int
    local_rank: int
    local_world_size: int


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The ``torchrun`` placement from the environment; None for a single process."""
    env = os.environ if environ is None else environ
    if int(_variable(env, "WORLD_SIZE", "1")) <= 1:
        return None
    world = int(_variable(env, "WORLD_SIZE", "1"))
    rank = int(_variable(env, "RANK", None))
    local_rank = int(_variable(env, "LOCAL_RANK", "0"))
    local_world = int(_variable(env, "LOCAL_WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise DistributedError(
                f"WORLD_SIZE={world} but {name} is not set: launch the trainer with torchrun, "
                "which sets it"
            )
    return Launch(world, rank, local_rank, local_world)


def _variable(env: Mapping[str, str], name: str, default: str | None) -> str:
    value = env.get(name, default)
    if value is None or not value.strip().isdigit():
        raise DistributedError(
            f"{name}={value!r} is not a non-negative integer; torchrun sets {name} for every "
            "process it starts (unset WORLD_SIZE to train in a single process)"
        )
    return value


def rank_device(device: torch.device, launch: Launch | None) -> torch.device:
    """``cuda:LOCAL_RANK`` for a CUDA rank (made current), ``device`` otherwise."""
    if launch is None or device.type != "cuda":
        return device
    if launch.local_rank >= torch.cuda.device_count():
        raise DistributedError(
            f"LOCAL_RANK={launch.local_rank} but only {torch.cuda.device_count()} GPU(s) are "
            "visible: run one process per GPU (torchrun --nproc-per-node=<GPUs>)"
        )
    torch.cuda.set_device(launch.local_rank)
    return torch.device("cuda", launch.local_rank)


@contextmanager
def process_group(launch: Launch | None, device: torch.device) -> Iterator[Group | None]:
    """The process group of this rank for the block (None for a single process)."""
    if launch is None:
        yield None
        return
    if dist.is_initialized():  # joined by the caller, who leaves it
        yield Group(dist.get_world_size(), dist.get_rank(), str(dist.get_backend()), device)
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        if device.type == "cuda":
            dist.init_process_group(backend=backend, timeout=_TIMEOUT, device_id=device)
        else:
            dist.init_process_group(backend=backend, timeout=_TIMEOUT)
    except (RuntimeError, ValueError) as error:
        raise DistributedError(
            f"rank {launch.rank} of {launch.world_size} could not join the {backend} process "
            f"group at {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}: {error}"
        ) from error
    try:
        yield Group(dist.get_world_size(), dist.get_rank(), backend, device)
    finally:
        dist.destroy_process_group()


@dataclass(frozen=True, slots=True)
class Group:
    """The joined process group, as the trainer sees it."""

    world_size: int
    rank: int
    backend: str
    device: torch.device


class DataParallel:
    """What a rank of a data-parallel run does differently from a single process."""

    def __init__(self, group: Group, seed: int) -> None:
        self.group, self.seed = group, seed

    @property
    def primary(self) -> bool:
        """Rank 0: the one that writes checkpoints and artifacts."""
        return self.group.rank == 0

    @property
    def world_size(self) -> int:
        return self.group.world_size

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module under ``DistributedDataParallel`` (rank 0's parameters broadcast)."""
        device = self.group.device
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def epoch_order(self, rows: int, epoch: int) -> torch.Tensor:
        """This rank's shuffled share of ``rows`` for ``epoch``.

        Every rank gets the same number of rows (the sampler repeats a few when ``rows``
        does not divide evenly), so all ranks run the same number of optimizer steps.
        """
        rows_dataset: Any = range(rows)  # a sized sequence is all the sampler reads
        sampler: DistributedSampler[int] = DistributedSampler(
            rows_dataset,
            num_replicas=self.group.world_size,
            rank=self.group.rank,
            shuffle=True,
            seed=self.seed,
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.int64)

    def validation_share(self, rows: int) -> slice:
        """This rank's contiguous part of the validation rows (disjoint, none repeated)."""
        world, rank = self.group.world_size, self.group.rank
        return slice(rows * rank // world, rows * (rank + 1) // world)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums of ``values`` over all ranks (identical on every rank)."""
        device = self.group.device if self.group.backend == "nccl" else torch.device("cpu")
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.cpu()]

    def barrier(self) -> None:
        dist.barrier()

    def from_primary(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (pickled; tensors arrive on the CPU)."""
        box = [value if self.primary else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]
