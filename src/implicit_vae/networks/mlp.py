"""Fully connected networks whose input may be an event of any shape (flattened on entry)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .activations import activation
from .shapes import event_shape_of, flatten_event


def _hidden_layers(
    in_shape: tuple[int, ...], hidden: Sequence[int], act: str
) -> tuple[list[nn.Module], int]:
    """Linear + activation per hidden width, from the flattened input; and the last width."""
    layers: list[nn.Module] = []
    width = math.prod(in_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        width = h
    return layers, width


class MLP(nn.Sequential):
    """``in_shape -> hidden... -> out_dim``, no output activation; the trailing ``in_shape`` dims of
    the input are flattened first, so images (..., C, H, W) and flat rows (..., C·H·W) both work.

    A ``Sequential`` of Linear/activation layers (the layout older checkpoints hold), with the
    flattening in ``forward`` rather than as a layer, so that parameter names stay ``0.weight``….
    Shapes: (..., *in_shape) or (..., prod(in_shape)) -> (..., out_dim).
    """

    def __init__(
        self, in_shape: int | Sequence[int], hidden: Sequence[int], out_dim: int, act: str = "elu"
    ):
        shape = event_shape_of(in_shape)
        layers, width = _hidden_layers(shape, hidden, act)
        super().__init__(*layers, nn.Linear(width, out_dim))
        self.in_shape = shape
        self.in_features = math.prod(shape)
        self.out_features = out_dim

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(flatten_event(inputs, self.in_shape))


def mlp(
    in_dim: int | Sequence[int], hidden: Sequence[int], out_dim: int, act: str = "elu"
) -> MLP:
    """A fully connected network ``in_dim -> hidden... -> out_dim`` (see :class:`MLP`)."""
    return MLP(in_dim, hidden, out_dim, act)


class MLPTrunk(nn.Sequential):
    """Features ``in_shape -> hidden...`` with an activation after every layer (an encoder trunk to
    which a posterior adds its own heads). Shapes: (B, *in_shape) or (B, prod) -> (B, hidden[-1])."""

    def __init__(self, in_shape: int | Sequence[int], hidden: Sequence[int], act: str = "elu"):
        shape = event_shape_of(in_shape)
        layers, width = _hidden_layers(shape, hidden, act)
        super().__init__(*layers)
        self.in_shape = shape
        self.out_features = width

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return super().forward(flatten_event(inputs, self.in_shape))
