"""A Gaussian-mixture prior, learnable or fixed (the AAE's mixture on a circle)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .base import Prior


def spread_means(components: int, latent_dim: int, radius: float) -> torch.Tensor:
    """``components`` initial means, shape (K, D): evenly spaced on [−radius, radius] for D = 1;
    at distance ``radius`` from the origin for D ≥ 2 — evenly on a circle for D = 2 (the AAE's
    mixture), along fixed pseudo-random directions (seed 0, not the global RNG) for D ≥ 3."""
    if latent_dim == 1:
        return torch.linspace(-radius, radius, components).unsqueeze(-1)
    if latent_dim == 2:
        angle = 2 * math.pi * torch.arange(components) / components
        return radius * torch.stack([angle.cos(), angle.sin()], dim=-1)
    directions = torch.randn(components, latent_dim, generator=torch.Generator().manual_seed(0))
    return radius * directions / directions.norm(dim=-1, keepdim=True)


class GaussianMixture(Prior):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²), with learnable logits, means and log-scales.

    Means start spread at distance ``radius`` (on a circle in 2-D, see :func:`spread_means`) with
    scale ``scale`` and equal weights, so a 2-D latent map shows one cluster per component.
    Sampling picks a component (a discrete choice: no gradient) and returns z = μ_k + σ_k ε,
    reparameterised in the means and scales; the weights learn through ``log_prob`` only.

    Args:
        latent_dim: D.
        components: K.
        learnable: train the logits, means and scales (else they are fixed buffers).
        radius: distance of the initial means from the origin.
        scale: initial standard deviation of every component.
    """

    has_density = True

    def __init__(
        self,
        latent_dim: int,
        components: int = 10,
        learnable: bool = True,
        radius: float = 4.0,
        scale: float = 0.5,
    ):
        super().__init__(latent_dim)
        if components < 1:
            raise ValueError(f"components must be >= 1, got {components}")
        if not (radius >= 0 and scale > 0 and math.isfinite(radius) and math.isfinite(scale)):
            raise ValueError(f"radius must be >= 0 and scale > 0, got {radius} and {scale}")
        self.components = components
        values = {
            "logits": torch.zeros(components),
            "means": spread_means(components, latent_dim, radius),
            "log_scales": torch.full((components, latent_dim), math.log(scale)),
        }
        for name, value in values.items():
            if learnable:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def distribution(self) -> torch.distributions.MixtureSameFamily:
        """The same density as a torch distribution (for reference and tests)."""
        d = torch.distributions
        normal = d.Independent(d.Normal(self.means, self.log_scales.exp()), 1)
        return d.MixtureSameFamily(d.Categorical(logits=self.logits), normal)

    def _sample(self, n: int) -> torch.Tensor:
        k = torch.multinomial(self.logits.detach().softmax(-1), n, replacement=True)  # (n,)
        eps = torch.randn(n, self.latent_dim, device=self.means.device, dtype=self.means.dtype)
        return self.means[k] + self.log_scales[k].exp() * eps

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:
        u = (z.unsqueeze(-2) - self.means) / self.log_scales.exp()  # (..., K, D)
        log_normal = -0.5 * (u.pow(2) + math.log(2 * math.pi)).sum(-1) - self.log_scales.sum(-1)
        return (log_normal + self.logits.log_softmax(-1)).logsumexp(-1)
