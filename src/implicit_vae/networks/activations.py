"""Activation functions by name."""

from __future__ import annotations

from torch import nn

ACTIVATIONS = {
    "elu": nn.ELU,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()
