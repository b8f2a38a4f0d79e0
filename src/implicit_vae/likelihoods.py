"""Observation models p(x|z): a decoder network plus a distribution over the data.

Subclass requirements (:class:`Likelihood`):
  - ``params_per_dim``: how many decoder outputs each data dimension takes;
  - ``_log_prob(x, out) -> out.shape[:-1]``: log p(x|z) summed over data dimensions;
  - ``_mean(out)``: E[x|z], the reconstruction shown in plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .networks import mlp


class Likelihood(nn.Module):
    """p(x|z) with decoder ``z (..., D) -> parameters (..., data_dim * params_per_dim)``."""

    params_per_dim: int = 1
    needs_binary_data: bool = False

    def __init__(
        self, latent_dim: int, data_dim: int, hidden: Sequence[int] = (256, 256), act: str = "elu"
    ):
        super().__init__()
        self.latent_dim, self.data_dim = latent_dim, data_dim
        self.decoder = mlp(latent_dim, hidden, data_dim * self.params_per_dim, act)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) for x of shape (B, data_dim) and z of shape (..., B, D); returns (..., B)."""
        if x.shape[-1] != self.data_dim:
            raise ValueError(f"x must end in dimension {self.data_dim}, got {tuple(x.shape)}")
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must end in dimension {self.latent_dim}, got {tuple(z.shape)}")
        return self._log_prob(x, self.decoder(z))

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z], shape (..., data_dim)."""
        return self._mean(self.decoder(z))

    def _log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels parameterised by logits; x must lie in {0, 1} (or [0, 1] as in
    the continuous relaxation used with fixed grey levels)."""

    needs_binary_data = True

    def _log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        x = x.expand_as(out)
        # -BCE-with-logits is the numerically stable Bernoulli log-likelihood.
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class GaussianLikelihood(Likelihood):
    """Diagonal Gaussian N(x; μ(z), σ²) with one learned log σ per data dimension (or a fixed σ)."""

    def __init__(
        self,
        latent_dim: int,
        data_dim: int,
        hidden: Sequence[int] = (256, 256),
        act: str = "elu",
        fixed_std: float | None = None,
    ):
        super().__init__(latent_dim, data_dim, hidden, act)
        init = math.log(fixed_std) if fixed_std is not None else math.log(0.1)
        self.log_std = nn.Parameter(torch.full((data_dim,), init), requires_grad=fixed_std is None)

    def _log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std.clamp(-7.0, 5.0)
        return (
            -0.5 * ((x - out) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        ).sum(-1)

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        return out


LIKELIHOODS = {"bernoulli": BernoulliLikelihood, "gaussian": GaussianLikelihood}
