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

    Shapes: ``x`` (N, *in_shape) or (N, prod(in_shape)), ``eps`` (N, noise_dim) -> (N, out_dim);
    :meth:`many` takes n draws per x, ``eps`` (n, N, noise_dim) -> (n, N, out_dim).

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
        return self._rest(self._first(h), eps)

    def x_part(self, x: torch.Tensor) -> torch.Tensor:
        """The first layer's x-part W_x x + b, shape (N, width), to pass to :meth:`many` when the
        same x meets several batches of draws (UIVI's HMC calls the network 50 times per step)."""
        first = self._first
        d_x = first.in_features - self.noise_dim
        return nn.functional.linear(flatten_event(x, self.in_shape), first.weight[:, :d_x], first.bias)

    def many(self, x: torch.Tensor, eps: torch.Tensor, x_part: torch.Tensor | None = None
             ) -> torch.Tensor:
        """g(x, ε_k) for n draws per x: x (N, *in_shape), eps (n, N, noise_dim) -> (n, N, out_dim).

        The first layer's x-part W_x x is computed once per x, not once per draw: with 784 pixels
        and ε of 10 dimensions it is most of the work, and SIVI's mixtures, UIVI's HMC over ε and
        the contrast's moment draws all evaluate many ε for the same x.
        """
        first = self._first
        h_x = self.x_part(x) if x_part is None else x_part
        h = h_x + nn.functional.linear(eps, first.weight[:, first.in_features - self.noise_dim:])
        n, b = eps.shape[:2]
        out = self._rest(h.reshape(n * b, -1), eps.reshape(n * b, -1))
        return out.view(n, b, -1)

    @property
    def _first(self) -> nn.Linear:
        return self.layers[0] if len(self.layers) else self.out

    def _rest(self, h: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Everything after the first layer's affine map: h (M, hidden[0]), eps (M, noise_dim)."""
        if not len(self.layers):
            return h  # no hidden layer: the first affine map is the output
        for i, act in enumerate(self.acts):
            if i > 0:
                h = self.layers[i](h)
            if self.inject_hidden:
                h = h + self.noise_maps[i](eps)
            h = act(h)
        return self.out(h)


def noise_net_draws(net: nn.Module, x: torch.Tensor, eps: torch.Tensor, out_dim: int,
                    x_part: torch.Tensor | None = None) -> torch.Tensor:
    """``net(x, ε_k)`` for n draws per x: x (N, *event_shape), eps (n, N, E) -> (n, N, out_dim).

    A :class:`NoiseInjectedMLP` shares the x-part of its first layer across the draws; any other
    module ``net(x, eps)`` is called once on x repeated n times. Raises ValueError naming the
    module when its output is not (n·N, out_dim). ``x_part``: ``net.x_part(x)``, computed before.
    """
    n, b = eps.shape[:2]
    if isinstance(net, NoiseInjectedMLP):
        out = net.many(x, eps, x_part).reshape(n * b, -1)
    else:
        x_rep = x.unsqueeze(0).expand(n, *x.shape).reshape(n * b, *x.shape[1:])
        out = net(x_rep, eps.reshape(n * b, -1))
    if out.shape != (n * b, out_dim):
        raise ValueError(
            f"{type(net).__name__} returned shape {tuple(out.shape)}; expected ({n * b}, {out_dim})"
        )
    return out.view(n, b, out_dim)
