"""Priors p(z).

Subclass requirements (:class:`Prior`):
  - ``_sample(n) -> (n, D)``, differentiable w.r.t. the prior's parameters where it has any;
  - ``has_density = True`` only if ``_log_prob(z) -> z.shape[:-1]`` is implemented and exact.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Prior(nn.Module):
    """Base class of p(z) over R^D."""

    has_density: bool = False

    def __init__(self, latent_dim: int):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim

    def sample(self, n: int) -> torch.Tensor:
        """Draw ``n`` samples, shape (n, D)."""
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        return self._sample(n)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) for z of shape (..., D); returns shape (...)."""
        if not self.has_density:
            raise NotImplementedError(f"{type(self).__name__} is implicit: it has no log-density")
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must end in dimension {self.latent_dim}, got {tuple(z.shape)}")
        return self._log_prob(z)

    def _sample(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class StandardNormal(Prior):
    """p(z) = N(0, I_D)."""

    has_density = True

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        # A buffer so that .to(device) moves the sampler with the model.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def distribution(self) -> torch.distributions.Independent:
        loc = self._anchor.new_zeros(self.latent_dim)
        return torch.distributions.Independent(torch.distributions.Normal(loc, loc + 1.0), 1)

    def _sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=self._anchor.device, dtype=self._anchor.dtype)

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return -0.5 * (z.pow(2).sum(-1) + self.latent_dim * math.log(2 * math.pi))


PRIORS = {"standard_normal": StandardNormal}
