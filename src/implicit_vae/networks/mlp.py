"""Network building blocks: MLPs, noise-injected MLPs and residual critics.

Everything here is plain ``torch.nn``; the posteriors, likelihoods and critics compose these blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .activations import activation


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "elu") -> nn.Sequential:
    """A fully connected network ``in_dim -> hidden... -> out_dim`` with no output activation."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)
