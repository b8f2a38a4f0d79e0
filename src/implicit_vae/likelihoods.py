"""Observation models p(x|z): a decoder network plus a distribution over the data.

Subclass requirements (:class:`Likelihood`):
  - ``params_per_dim``: how many decoder outputs each data dimension takes;
  - ``_log_prob(x, out) -> out.shape[:-1]``: log p(x|z) summed over data dimensions;
  - ``_mean(out)``: E[x|z], the reconstruction shown in plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .networks import mlp
from .networks.shapes import event_shape_of, flatten_event


class Likelihood(nn.Module):
    """p(x|z) with a decoder network ``z (N, D) -> parameters``.

    The decoder's output for each z holds ``params_per_dim`` values per data dimension, in any
    shape with that many elements (a flat (N, data_dim) row from an MLP, an image (N, C, H, W) from
    a transposed-conv decoder); it is read flat. The decoder sees z as (N, D), whatever leading
    dimensions the caller has (AIS passes (chains, B, D)).

    Args:
        latent_dim: D.
        event_shape: the shape of one data point, e.g. ``(64,)`` or ``(1, 28, 28)``; an int ``d``
            means ``(d,)``.
        hidden, act: widths and activation of the default MLP decoder.
        decoder: the decoder instead of the default, any module z (N, D) -> (N, ...) with
            ``params_per_dim · prod(event_shape)`` values per row.
    """

    params_per_dim: int = 1
    needs_binary_data: bool = False

    def __init__(
        self,
        latent_dim: int,
        event_shape: int | Sequence[int],
        hidden: Sequence[int] = (256, 256),
        act: str = "elu",
        *,
        decoder: nn.Module | None = None,
    ):
        super().__init__()
        self.event_shape = event_shape_of(event_shape)
        self.latent_dim, self.data_dim = latent_dim, math.prod(self.event_shape)
        self.decoder = (
            decoder
            if decoder is not None
            else mlp(latent_dim, hidden, self.data_dim * self.params_per_dim, act)
        )

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) for x of shape (B, *event_shape) or (B, data_dim) and z of shape (..., B, D);
        returns (..., B)."""
        x = flatten_event(x, self.event_shape)
        if x.shape[-1] != self.data_dim:
            shaped = f"(B, {', '.join(map(str, self.event_shape))}) or " if len(self.event_shape) > 1 else ""
            raise ValueError(
                f"x must have shape {shaped}(B, {self.data_dim}) (dimension {self.data_dim}), "
                f"got {tuple(x.shape)}"
            )
        return self._log_prob(x, self._decode(z))

    def mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z], shape (..., data_dim)."""
        return self._mean(self._decode(z))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder parameters for z (..., D), flat: (..., data_dim · params_per_dim)."""
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must end in dimension {self.latent_dim}, got {tuple(z.shape)}")
        lead, width = z.shape[:-1], self.data_dim * self.params_per_dim
        out = self.decoder(z.reshape(-1, self.latent_dim))
        if out.numel() != math.prod(lead) * width:
            raise ValueError(
                f"{type(self.decoder).__name__} returned shape {tuple(out.shape)} for "
                f"{math.prod(lead)} latent codes; expected {width} values per code"
            )
        return out.reshape(*lead, width)

    def _log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli pixels parameterised by logits; x must lie in {0, 1} (or [0, 1] as in
    the continuous relaxation used with fixed grey levels)."""

    needs_binary_data = True

    def _log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        x = x.expand_as(out)
        # -BCE-with-logits is the numerically stable Bernoulli log-likelihood.
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class GaussianLikelihood(Likelihood):
    """Diagonal Gaussian N(x; μ(z), σ²) with one learned log σ per data dimension (or a fixed σ)."""

    def __init__(
        self,
        latent_dim: int,
        event_shape: int | Sequence[int],
        hidden: Sequence[int] = (256, 256),
        act: str = "elu",
        fixed_std: float | None = None,
        *,
        decoder: nn.Module | None = None,
    ):
        super().__init__(latent_dim, event_shape, hidden, act, decoder=decoder)
        init = math.log(fixed_std) if fixed_std is not None else math.log(0.1)
        self.log_std = nn.Parameter(
            torch.full((self.data_dim,), init), requires_grad=fixed_std is None
        )

    def _log_prob(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std.clamp(-7.0, 5.0)
        return (
            -0.5 * ((x - out) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
        ).sum(-1)

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        return out


LIKELIHOODS = {"bernoulli": BernoulliLikelihood, "gaussian": GaussianLikelihood}
