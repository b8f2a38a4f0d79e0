"""Variational posteriors q(z|x): explicit (diagonal and full-covariance Gaussian) and implicit
(sampler-only).

The family contract lives in :class:`Posterior`; every posterior returns a :class:`PosteriorSample`, which
carries the samples and, where the posterior can give them, the moments of q(z|x) (used by adaptive
contrast) and log q(z|x) (used by estimators that need a density).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..networks.shapes import as_event_batch, event_shape_of


@dataclass
class PosteriorSample:
    """Samples of q(z|x) for a batch.

    Attributes:
        z: reparameterised samples, shape (n, B, D): differentiable w.r.t. the posterior's parameters.
        mean: E[z|x], shape (B, D), or None when the posterior cannot give it.
        var: Var[z|x] (diagonal), shape (B, D), or None.
        log_prob: log q(z|x) of each sample, shape (n, B), or None for implicit posteriors.
        cov: Cov[z|x], shape (B, D, D), or None where the posterior gives only ``var``.
        log_det_cov: log det Cov[z|x], shape (B,), where the posterior has it exactly (the
            full-covariance Gaussian, from its Cholesky factor); else None.
        moment_draws: the number of independent draws per x the moments were estimated from
            (the implicit sampler's), or None where they are exact.
    """

    z: torch.Tensor
    mean: torch.Tensor | None = None
    var: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    cov: torch.Tensor | None = None
    log_det_cov: torch.Tensor | None = None
    moment_draws: int | None = None

    def covariance(self) -> torch.Tensor:
        """Cov[z|x], shape (B, D, D): ``cov`` where given, else diag(``var``)."""
        if self.cov is not None:
            return self.cov
        if self.var is None:
            raise ValueError("this posterior sample carries no moments")
        return torch.diag_embed(self.var)

    def detach(self) -> PosteriorSample:
        """A copy cut from the graph (critic updates must not move the posterior)."""
        tensors = (None if t is None else t.detach() for t in self._fields())
        return PosteriorSample(*tensors, moment_draws=self.moment_draws)

    def _fields(self) -> tuple:  # the tensor fields
        return (self.z, self.mean, self.var, self.log_prob, self.cov, self.log_det_cov)


class Posterior(nn.Module):
    """Base class of q(z|x).

    Subclass requirements:
      - implement ``_sample(x, n) -> PosteriorSample`` with ``z`` of shape (n, B, D), reparameterised
        (differentiable w.r.t. the parameters) so the KL estimate's gradient reaches the sampler;
      - set ``has_density = True`` only if ``_log_prob(z, x) -> (n, B)`` is implemented and exact;
      - set ``has_moments = True`` only if the returned sample carries ``mean`` and ``var`` (and, where
        the posterior can correlate the coordinates of z, the full ``cov``).
    The public methods check shapes and hand the private ones ``x`` as (B, *event_shape); the
    networks a posterior holds are ``nn.Module`` arguments and see x in that shape.

    Args:
        event_shape: the shape of one data point, e.g. ``(64,)`` or ``(1, 28, 28)``; an int ``d``
            means ``(d,)``. Batches may come as (B, *event_shape) or flat (B, prod(event_shape)).
        latent_dim: D, the dimension of z.
    """

    has_density: bool = False
    has_moments: bool = False

    def __init__(self, event_shape: int | Sequence[int], latent_dim: int):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.event_shape = event_shape_of(event_shape)
        self.data_dim = math.prod(self.event_shape)
        self.latent_dim = latent_dim

    def sample(self, x: torch.Tensor, n: int = 1, moments: bool = True) -> PosteriorSample:
        """Draw ``n`` samples of z for each example of ``x`` (B, *event_shape) or (B, data_dim);
        returns z of shape (n, B, D)."""
        x = self._check_x(x)
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        return self._sample(x, n) if moments else self._sample_without_moments(x, n)

    def log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log q(z|x) for z of shape (n, B, D) and x of shape (B, *event_shape); returns (n, B)."""
        if not self.has_density:
            raise NotImplementedError(f"{type(self).__name__} is implicit: it has no log-density")
        x = self._check_x(x)
        if z.dim() != 3 or z.shape[1:] != (x.shape[0], self.latent_dim):
            raise ValueError(
                f"z must have shape (n, {x.shape[0]}, {self.latent_dim}), got {tuple(z.shape)}"
            )
        return self._log_prob(z, x)

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        return as_event_batch(x, self.event_shape)

    def _sample_without_moments(self, x: torch.Tensor, n: int) -> PosteriorSample:
        """Samples for a caller that will not read the moments; override where they cost extra."""
        return self._sample(x, n)

    def _sample(self, x: torch.Tensor, n: int) -> PosteriorSample:
        raise NotImplementedError

    def _log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
