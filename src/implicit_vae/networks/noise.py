"""The noise-injected MLP g(x, ε) of implicit samplers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .activations import activation
from .shapes import event_shape_of, flatten_event


class NoiseInjectedMLP(nn.Module):
    """g(x, ε): an MLP whose input is ``[x, ε]`` and, optionally, whose hidden layers each add a
    learned linear map of ε before the activation (the AVB MNIST encoder's ``add_linear``).

    Shapes: ``x`` (N, *in_shape) or (N, prod(in_shape)), ``eps`` (N, noise_dim) -> (N, out_dim).

    References:
        > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes, ICML 2017.
    """

    def __init__(
        self,
        in_shape: int | Sequence[int],
        noise_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        act: str = "elu",
        inject_hidden: bool = False,
    ):
        super().__init__()
        self.in_shape = event_shape_of(in_shape)
        self.noise_dim = noise_dim
        self.inject_hidden = inject_hidden
        widths = [math.prod(self.in_shape) + noise_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.noise_maps = nn.ModuleList(
            nn.Linear(noise_dim, h, bias=False) for h in (hidden if inject_hidden else [])
        )
        self.acts = nn.ModuleList(activation(act) for _ in hidden)
        self.out = nn.Linear(widths[-1], out_dim)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        h = torch.cat([flatten_event(x, self.in_shape), eps], dim=-1)
        for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
            h = layer(h)
            if self.inject_hidden:
                h = h + self.noise_maps[i](eps)
            h = act(h)
        return self.out(h)
