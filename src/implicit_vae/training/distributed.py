"""Multi-process training with ``torchrun``: who this process is, batch shards, collectives, RNG.

``torchrun --nproc_per_node W -m implicit_vae.cli train ...`` starts W processes; each runs the same
training with Lightning Fabric's DDP strategy, over NCCL on CUDA GPUs (one device per process) and gloo
on the CPU. Several machines: start torchrun on each with ``--nnodes N --node_rank R
--rdzv_endpoint HOST:PORT`` (or ``--rdzv_backend c10d``) instead of ``--standalone``; nothing else
changes. ``train.batch_size`` is the *global*
batch: rank r of W takes rows ``r::W`` of the step's global batch, so W processes with B/W rows each see
exactly the rows one process with B rows sees. Gradients are averaged by DDP, and both loss terms are
batch means, so each update is the global-batch update up to the posterior and prior noise, which every
rank draws from its own stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from ..config import ConfigError
from ..rng import collect_rng_states


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1, no DDP)."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    ddp: bool = False

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, strategy: str) -> World:
        """Read torchrun's environment; ``strategy`` is ``train.strategy`` (``auto`` or ``ddp``).

        Raises:
            ConfigError: for ``ddp`` without a torchrun launch.
        """
        launched = dist.is_available() and dist.is_torchelastic_launched()
        if not launched:
            if strategy == "ddp":
                raise ConfigError(
                    "train.strategy: 'ddp' needs processes started by torchrun, e.g. torchrun "
                    "--standalone --nproc_per_node 2 -m implicit_vae.cli train ...; use 'auto' for "
                    "one process"
                )
            return cls()
        world_size = int(os.environ["WORLD_SIZE"])
        return cls(
            rank=int(os.environ["RANK"]),
            world_size=world_size,
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
            ddp=strategy == "ddp" or world_size > 1,
        )

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.ddp:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def local_batch(self, global_batch: int) -> int:
        """Rows per process for a global batch of ``global_batch`` rows.

        Raises:
            ConfigError: if the batch does not split evenly (unequal shards would weight examples
                unequally in the averaged gradient).
        """
        if global_batch % self.world_size:
            raise ConfigError(
                f"train.batch_size: {global_batch} (the global batch) does not split evenly over "
                f"{self.world_size} processes; use a multiple of {self.world_size}"
            )
        return global_batch // self.world_size

    def reduce_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise mean over ranks of a small tensor, left on its device (no host read).

        Each rank's loss terms are means over its shard, so with equal shards this is the global
        batch mean; it is NaN or inf exactly when some rank's value is, so every rank reaches the
        same verdict on a non-finite term and none waits forever in a collective.
        """
        if not self.ddp or self.world_size == 1:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.world_size

    def gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's RNG states, in rank order (a collective: every rank must call it)."""
        own = collect_rng_states()
        if not self.ddp or self.world_size == 1:
            return [own]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, own)
        return out

    def rank_seed(self, seed: int) -> int:
        """Seed of this rank's noise stream: ``seed`` itself on rank 0 (so a one-process run is
        unchanged), distinct and reproducible on the others."""
        return seed if self.rank == 0 else (seed * 1_000_003 + self.rank * 7_919) % (2**31 - 1)


def process_group_backend(device_type: str) -> str:
    """The collective backend for training on ``device_type``: NCCL between CUDA GPUs, else gloo."""
    return "nccl" if device_type == "cuda" else "gloo"


class ShardedStream(Dataset):
    """Rows ``rank::world_size`` of each batch of a step-indexed batch stream.

    Args:
        stream: map-style dataset whose item k is the k-th global batch, shape (B, D), on the
            training device (slicing it there copies nothing to or from the host).
        world: this process's rank and the number of processes.
    """

    def __init__(self, stream: Dataset, world: World):
        self.stream, self.rank, self.world_size = stream, world.rank, world.world_size

    def __len__(self) -> int:
        return len(self.stream)  # type: ignore[arg-type]

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.stream[k][self.rank :: self.world_size]
