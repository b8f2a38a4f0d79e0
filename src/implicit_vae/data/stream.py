"""A training-batch stream whose k-th batch is a pure function of (seed, k).

Making the data order a function of the step number, rather than of an iterator's hidden state, is what
lets a resumed run see exactly the batches an unbroken run would have seen.

The training set lives on the training device (copied there once): a batch is an index of it by the
epoch's permutation, which is drawn on the CPU (so the order is the same on every device) and copied
once per epoch, and dynamic binarisation draws with a generator on that device. No batch is copied
from the host.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler


class BatchStream(Dataset):
    """Map-style dataset whose item ``k`` is the k-th training batch.

    Epochs are reshuffled permutations (seeded by ``seed`` and the epoch number); the last incomplete
    batch of each epoch is dropped. With ``dynamic_binarize``, each batch is resampled as Bernoulli(x)
    with its own seeded generator (AVB's dynamic binarisation). On the CPU the batches are those of
    earlier versions, bit for bit; on a GPU the order is the same and the Bernoulli draws are the
    GPU generator's (equally a function of the seed and k).

    Args:
        data: training examples, shape (N, D).
        batch_size: examples per batch (capped at N).
        seed: base seed for shuffling and binarisation.
        dynamic_binarize: resample binary pixels for every batch.
        device: where batches are made (``data`` is copied there once); default: ``data``'s.
    """

    def __init__(
        self,
        data: torch.Tensor,
        batch_size: int,
        seed: int,
        dynamic_binarize: bool = False,
        device: torch.device | str | None = None,
    ):
        if data.dim() != 2 or data.shape[0] == 0:
            raise ValueError(
                f"training data must have shape (N, D) with N >= 1, got {tuple(data.shape)}"
            )
        self.data = data if device is None else data.to(device)
        self.device = self.data.device
        self.batch_size = min(batch_size, data.shape[0])
        self.seed = seed
        self.dynamic_binarize = dynamic_binarize
        self.batches_per_epoch = data.shape[0] // self.batch_size
        self._cached: tuple[int, torch.Tensor] | None = None  # (epoch, permutation on device)
        self._binarizer = torch.Generator(device=self.device) if dynamic_binarize else None

    def __len__(self) -> int:  # unbounded in principle; the sampler decides how many are drawn
        return 2**62

    def __getitem__(self, k: int) -> torch.Tensor:
        epoch, position = divmod(int(k), self.batches_per_epoch)
        if self._cached is None or self._cached[0] != epoch:
            gen = torch.Generator().manual_seed(self._mix(epoch, 0))
            order = torch.randperm(self.data.shape[0], generator=gen).to(self.device)
            self._cached = (epoch, order)
        order = self._cached[1]
        rows = order[position * self.batch_size : (position + 1) * self.batch_size]
        x = self.data[rows]  # (batch_size, D)
        if self._binarizer is not None:
            # Re-seeding is host-side state only (no device synchronisation).
            x = torch.bernoulli(x, generator=self._binarizer.manual_seed(self._mix(int(k), 1)))
        return x

    def _mix(self, value: int, stream: int) -> int:
        # Distinct, reproducible seeds for each (seed, stream, value); 2**61 − 1 is a Mersenne prime.
        return (self.seed * 1_000_003 + stream * 7_919 + value * 104_729) % (2**61 - 1)


class StepSampler(Sampler[int]):
    """Yields batch indices ``start, ..., stop − 1``; ``start`` is set when a run resumes (for a
    ``DataLoader`` over a :class:`BatchStream` in your own loop; ``fit`` indexes the stream itself)."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)
