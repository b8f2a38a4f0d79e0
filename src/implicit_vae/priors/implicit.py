"""An implicit prior p(z) = h(η)_# N(0, I): a learnable generator, no density."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..networks import mlp
from .base import Prior


class ImplicitPrior(Prior):
    """p(z) = h(η)_# N(0, I): a learnable generator h (an MLP), η ~ N(0, I_noise_dim); no density.

    Samples are reparameterised, z = h(η), so an estimator can send KL(q ‖ p) gradients to h's
    parameters through prior samples (see :mod:`implicit_vae.divergences.prior_gradient`).
    With ``hidden=()`` h is affine and p is the Gaussian N(b, W Wᵀ), which the tests use to check
    gradients against the closed form.

    Args:
        latent_dim: D.
        noise_dim: dimension of η.
        hidden: widths of h's hidden layers.
        act: activation name (see :data:`implicit_vae.networks.ACTIVATIONS`).
        generator: h instead of the default MLP, any module η (n, noise_dim) -> z (n, D).
    """

    def __init__(
        self,
        latent_dim: int,
        noise_dim: int = 8,
        hidden: Sequence[int] = (64, 64),
        act: str = "elu",
        *,
        generator: nn.Module | None = None,
    ):
        super().__init__(latent_dim)
        if noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {noise_dim}")
        self.noise_dim = noise_dim
        self.generator = (
            generator if generator is not None else mlp(noise_dim, tuple(hidden), latent_dim, act)
        )

    def _sample(self, n: int) -> torch.Tensor:
        weight = next(self.generator.parameters())  # device and dtype of h
        eta = torch.randn(n, self.noise_dim, device=weight.device, dtype=weight.dtype)
        return self.generator(eta)
