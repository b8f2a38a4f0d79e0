"""A prior given only by a fixed bank of its samples (no density)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import Prior


class SamplePrior(Prior):
    """p(z) = the empirical distribution of a fixed bank of samples (N, D); no density, no parameters.

    ``sample`` draws rows uniformly with replacement. The bank is a buffer, so checkpoints carry it.
    Build it from a tensor or with :meth:`from_file` (an ``.npy`` array).
    """

    def __init__(self, bank: torch.Tensor | np.ndarray):
        bank = torch.as_tensor(bank, dtype=torch.get_default_dtype())
        if bank.dim() != 2 or bank.shape[0] < 1 or bank.shape[1] < 1:
            raise ValueError(
                f"the prior sample bank must have shape (N, latent_dim) with N >= 1, "
                f"got {tuple(bank.shape)}"
            )
        if not torch.isfinite(bank).all():
            bad = int((~torch.isfinite(bank)).any(-1).sum())
            raise ValueError(f"the prior sample bank has {bad} rows with NaN or infinite values")
        super().__init__(bank.shape[1])
        self.register_buffer("bank", bank.clone())

    @classmethod
    def from_file(cls, path: str | Path, latent_dim: int | None = None) -> SamplePrior:
        """Load an ``.npy`` array of shape (N, D); checks D against ``latent_dim`` when given.

        Raises:
            ValueError: one line naming the file, for a missing or unreadable file, a wrong shape,
                non-finite values or a latent dimension that does not match.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"prior sample file {str(path)!r} does not exist")
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(
                f"prior sample file {str(path)!r} is not a readable .npy array: {first}"
            ) from None
        if array.dtype.kind not in "biuf":  # bool, signed, unsigned, float
            raise ValueError(
                f"prior sample file {str(path)!r} holds {array.dtype}, not real numbers"
            )
        try:
            prior = cls(array.astype(np.float64))
        except ValueError as err:
            raise ValueError(f"prior sample file {str(path)!r}: {err}") from None
        if latent_dim is not None and prior.latent_dim != latent_dim:
            raise ValueError(
                f"prior sample file {str(path)!r} has samples of dimension {prior.latent_dim}, "
                f"but the model's latent_dim is {latent_dim}"
            )
        return prior

    def _sample(self, n: int) -> torch.Tensor:
        rows = torch.randint(self.bank.shape[0], (n,), device=self.bank.device)
        return self.bank[rows]
