"""K independent MLPs in batched matmuls: the noise bases v_i(ε_i) of AVB's adaptive contrast."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .activations import activation


class ParallelMLPs(nn.Module):
    """K independent MLPs evaluated in one batched matmul per layer (the noise bases v_i(ε_i) of
    AVB's adaptive-contrast encoder), instead of K sequential small networks.

    Shapes: ``inputs`` (K, N, in_dim) -> (K, N, out_dim); network i sees ``inputs[i]`` only.
    """

    def __init__(
        self, count: int, in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "elu"
    ):
        super().__init__()
        widths = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(widths[:-1], widths[1:]):
            # Same initialisation as nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            bound = 1.0 / a**0.5
            self.weights.append(nn.Parameter(torch.empty(count, a, b).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(count, 1, b).uniform_(-bound, bound)))
        self.act = activation(act)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = inputs
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # (K, N, width)
            if i < last:
                h = self.act(h)
        return h
