"""The standard normal prior N(0, I)."""

from __future__ import annotations

import math

import torch

from .base import Prior


class StandardNormal(Prior):
    """p(z) = N(0, I_D)."""

    has_density = True
    is_standard_normal = True

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
