"""Adversarial Variational Bayes: a critic T(x, z) learns log q(z|x) − log p(z).

References:
    > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes: Unifying Variational
    > Autoencoders and Generative Adversarial Networks, ICML 2017 (arXiv:1701.04722).
"""

from __future__ import annotations

import torch
from torch import nn

from ..networks import ResidualCritic


class ConditionalCritic(torch.nn.Module):
    """T(x, z) = f([x, z]) + ½‖z‖²·``gaussian_skip``: a residual MLP on the concatenation.

    The skip term is −log N(z; 0, I) up to a constant, the part of the optimal T that is known when
    the contrast distribution is a standard normal; the network then only learns the rest (AVB toy code).
    Shapes: x (N, data_dim), z (N, D) -> (N,).
    """

    def __init__(
        self, data_dim: int, latent_dim: int, width: int, blocks: int, gaussian_skip: bool
    ):
        super().__init__()
        self.f = ResidualCritic(data_dim + latent_dim, width, blocks)
        self.gaussian_skip = gaussian_skip

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        t = self.f(torch.cat([x, z], dim=-1))
        return t + 0.5 * z.pow(2).sum(-1) if self.gaussian_skip else t


def pair_with_x(x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten z (n, B, D) and repeat x (B, data_dim) to match: (n*B, data_dim), (n*B, D)."""
    n, b, d = z.shape
    return x.unsqueeze(0).expand(n, b, x.shape[-1]).reshape(n * b, -1), z.reshape(n * b, d)


class LatentCritic(nn.Module):
    """D(z) = f(z) + ½‖z‖²·``gaussian_skip``: a residual MLP on z alone; x is accepted and
    ignored so that it can stand in for :class:`~implicit_vae.divergences.avb.ConditionalCritic`.

    Shapes: x (N, data_dim) or None, z (N, D) -> (N,).
    """

    def __init__(self, latent_dim: int, width: int, blocks: int, gaussian_skip: bool):
        super().__init__()
        self.f = ResidualCritic(latent_dim, width, blocks)
        self.gaussian_skip = gaussian_skip

    def forward(self, x: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        t = self.f(z)
        return t + 0.5 * z.pow(2).sum(-1) if self.gaussian_skip else t
