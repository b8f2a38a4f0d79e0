"""The critics that density-ratio estimators train: T(x, z) on pairs and D(z) on latents alone.

References:
    > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes: Unifying Variational
    > Autoencoders and Generative Adversarial Networks, ICML 2017 (arXiv:1701.04722).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..networks import ResidualCritic
from ..networks.shapes import as_event_batch, event_shape_of, flatten_event


class ConditionalCritic(torch.nn.Module):
    """T(x, z) = f([h(x), z]) + ½‖z‖²·``gaussian_skip``: a residual MLP on the concatenation.

    h is the x-branch: the flattened x by default, or a feature network such as
    :class:`~implicit_vae.networks.ConvCriticFeatures` for images. The skip term is −log N(z; 0, I)
    up to a constant, the part of the optimal T that is known when the contrast distribution is a
    standard normal; the network then only learns the rest (AVB toy code).

    Args:
        event_shape: the shape of one x, e.g. ``(64,)`` or ``(1, 28, 28)`` (an int means ``(d,)``).
        latent_dim, width, blocks, gaussian_skip: z's dimension and the residual MLP f.
        x_features: the x-branch h, any module x (N, *event_shape) -> (N, feature_dim).
        feature_dim: h's output width; read from ``x_features.out_features`` when not given.
    Shapes: x (N, *event_shape) or (N, prod(event_shape)), z (N, D) -> (N,).
    """

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        width: int,
        blocks: int,
        gaussian_skip: bool,
        x_features: nn.Module | None = None,
        feature_dim: int | None = None,
    ):
        super().__init__()
        self.event_shape = event_shape_of(event_shape)
        self.x_features = x_features
        if x_features is None:
            feature_dim = math.prod(self.event_shape)
        elif feature_dim is None:
            feature_dim = getattr(x_features, "out_features", None)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(
                f"the critic's x-branch {type(x_features).__name__} has no out_features; pass "
                "feature_dim, the width of its output (N, feature_dim)"
            )
        self.f = ResidualCritic(feature_dim + latent_dim, width, blocks)
        self.gaussian_skip = gaussian_skip

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = (
            flatten_event(x, self.event_shape)
            if self.x_features is None
            else self.x_features(as_event_batch(x, self.event_shape))
        )
        t = self.f(torch.cat([h, z], dim=-1))
        return t + 0.5 * z.pow(2).sum(-1) if self.gaussian_skip else t


def pair_with_x(x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten z (n, B, D) and repeat x (B, ...) to match: (n*B, ...), (n*B, D)."""
    n, b, d = z.shape
    return x.unsqueeze(0).expand(n, *x.shape).reshape(n * b, *x.shape[1:]), z.reshape(n * b, d)


def critic_maker(
    event_shape: int | Sequence[int],
    latent_dim: int,
    width: int,
    blocks: int,
    x_features: nn.Module | None,
) -> Callable[[bool], ConditionalCritic]:
    """``make(gaussian_skip) -> ConditionalCritic``; the first critic gets ``x_features`` itself and
    every further one (telescoping waymarks) a fresh copy of it with its own parameters."""
    made = 0

    def make(gaussian_skip: bool) -> ConditionalCritic:
        nonlocal made
        features = x_features if made == 0 or x_features is None else copy.deepcopy(x_features)
        made += 1
        return ConditionalCritic(event_shape, latent_dim, width, blocks, gaussian_skip, features)

    return make


class LatentCritic(nn.Module):
    """D(z) = f(z) + ½‖z‖²·``gaussian_skip``: a residual MLP on z alone; x is accepted and
    ignored so that it can stand in for :class:`~implicit_vae.divergences.avb.ConditionalCritic`.

    Shapes: x (N, ...) or None, z (N, D) -> (N,).
    """

    def __init__(self, latent_dim: int, width: int, blocks: int, gaussian_skip: bool):
        super().__init__()
        self.f = ResidualCritic(latent_dim, width, blocks)
        self.gaussian_skip = gaussian_skip

    def forward(self, x: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        t = self.f(z)
        return t + 0.5 * z.pow(2).sum(-1) if self.gaussian_skip else t
