"""Network building blocks: MLPs, noise-injected MLPs and residual critics.

Everything here is plain ``torch.nn``; the posteriors, likelihoods and critics compose these blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
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


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "elu") -> nn.Sequential:
    """A fully connected network ``in_dim -> hidden... -> out_dim`` with no output activation."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class NoiseInjectedMLP(nn.Module):
    """g(x, ε): an MLP whose input is ``[x, ε]`` and, optionally, whose hidden layers each add a
    learned linear map of ε before the activation (the AVB MNIST encoder's ``add_linear``).

    Shapes: ``x`` (N, in_dim), ``eps`` (N, noise_dim) -> (N, out_dim).

    References:
        > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes, ICML 2017.
    """

    def __init__(
        self,
        in_dim: int,
        noise_dim: int,
        hidden: Sequence[int],
        out_dim: int,
        act: str = "elu",
        inject_hidden: bool = False,
    ):
        super().__init__()
        self.noise_dim = noise_dim
        self.inject_hidden = inject_hidden
        widths = [in_dim + noise_dim, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.noise_maps = nn.ModuleList(
            nn.Linear(noise_dim, h, bias=False) for h in (hidden if inject_hidden else [])
        )
        self.acts = nn.ModuleList(activation(act) for _ in hidden)
        self.out = nn.Linear(widths[-1], out_dim)

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x, eps], dim=-1)
        for i, (layer, act) in enumerate(zip(self.layers, self.acts)):
            h = layer(h)
            if self.inject_hidden:
                h = h + self.noise_maps[i](eps)
            h = act(h)
        return self.out(h)


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
