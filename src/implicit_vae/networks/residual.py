"""Residual blocks and the residual-MLP critic head of AVB's adversary."""

from __future__ import annotations

import torch
from torch import nn

from .activations import activation


class ResidualBlock(nn.Module):
    """``act(h + W2 act(W1 h))`` with ``W2`` zero-initialised, so each block starts as ``act(h)``
    (the AVB reference adversary's block)."""

    def __init__(self, width: int, act: str = "elu"):
        super().__init__()
        self.inner = nn.Sequential(
            nn.Linear(width, width), activation(act), nn.Linear(width, width)
        )
        nn.init.zeros_(self.inner[2].weight)
        nn.init.zeros_(self.inner[2].bias)
        self.act = activation(act)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(h + self.inner(h))


class ResidualCritic(nn.Module):
    """Scalar critic f(inputs): a linear stem, residual blocks, a linear head (AVB toy adversary).

    Shapes: ``inputs`` (N, in_dim) -> (N,).
    """

    def __init__(self, in_dim: int, width: int = 256, blocks: int = 5, act: str = "elu"):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(in_dim, width), activation(act))
        self.blocks = nn.Sequential(*(ResidualBlock(width, act) for _ in range(blocks)))
        self.head = nn.Linear(width, 1)
        # A near-zero head starts the critic at logit 0: an uninformed, balanced classifier.
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(inputs))).squeeze(-1)
