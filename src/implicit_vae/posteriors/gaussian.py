"""Explicit Gaussian posteriors: diagonal N(μ(x), diag σ²(x)) and full-covariance N(μ(x), LLᵀ)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..networks import mlp
from ..networks.shapes import network_output
from .base import Posterior, PosteriorSample


class GaussianPosterior(Posterior):
    """Explicit diagonal Gaussian q(z|x) = N(μ(x), diag σ²(x)), reparameterised (Kingma & Welling 2014).

    Args:
        event_shape, latent_dim: as for :class:`Posterior`.
        hidden, act: widths and activation of the default MLP encoder.
        net: the encoder instead of the default, any module x (B, *event_shape) -> (B, 2D)
            (means, then log standard deviations).
    """

    has_density = True
    has_moments = True

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        hidden: Sequence[int] = (256, 256),
        act: str = "elu",
        *,
        net: nn.Module | None = None,
    ):
        super().__init__(event_shape, latent_dim)
        self.net = net if net is not None else mlp(self.event_shape, hidden, 2 * latent_dim, act)

    def distribution(self, x: torch.Tensor) -> torch.distributions.Independent:
        """q(z|x) as a torch distribution with batch shape (B,) and event shape (D,)."""
        x = self._check_x(x)
        mean, log_std = network_output(self.net, x, 2 * self.latent_dim).chunk(2, dim=-1)
        # Clamping log σ keeps exp() finite early in adversarial training without affecting the optimum.
        std = log_std.clamp(-12.0, 8.0).exp()
        return torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)

    def _sample(self, x: torch.Tensor, n: int) -> PosteriorSample:
        q = self.distribution(x)
        z = q.rsample((n,))  # (n, B, D)
        return PosteriorSample(z=z, mean=q.mean, var=q.variance, log_prob=q.log_prob(z))

    def _log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.distribution(x).log_prob(z)


class FullCovarianceGaussianPosterior(Posterior):
    """Explicit Gaussian q(z|x) = N(μ(x), L(x) L(x)ᵀ) with a full covariance, reparameterised.

    The encoder outputs μ (D values) and the D(D+1)/2 entries of a lower-triangular Cholesky factor
    L whose diagonal is exp(·) of its raw value, so L Lᵀ is positive definite for any output
    (Kingma et al. 2016, IAF, Sec. 3, uses the same factor). The baseline for what correlations
    alone buy over the diagonal Gaussian, and so for what an implicit posterior adds beyond them.

    Args:
        event_shape, latent_dim: as for :class:`Posterior`.
        hidden, act: widths and activation of the default MLP encoder.
        net: the encoder instead of the default, any module x (B, *event_shape) ->
            (B, D + D(D+1)/2) (means, then L's lower triangle row by row).
    """

    has_density = True
    has_moments = True

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        hidden: Sequence[int] = (256, 256),
        act: str = "elu",
        *,
        net: nn.Module | None = None,
    ):
        super().__init__(event_shape, latent_dim)
        self.n_tril = latent_dim * (latent_dim + 1) // 2
        out = latent_dim + self.n_tril
        self.net = net if net is not None else mlp(self.event_shape, hidden, out, act)
        rows, cols = torch.tril_indices(latent_dim, latent_dim)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def distribution(self, x: torch.Tensor) -> torch.distributions.MultivariateNormal:
        """q(z|x) as a torch distribution with batch shape (B,) and event shape (D,)."""
        x = self._check_x(x)
        out = network_output(self.net, x, self.latent_dim + self.n_tril)
        mean, raw = out[:, : self.latent_dim], out[:, self.latent_dim :]
        d = self.latent_dim
        tril = raw.new_zeros(x.shape[0], d, d)
        tril[:, self._rows, self._cols] = raw
        # Same clamp as the diagonal Gaussian's log σ: finite early on, inactive at the optimum.
        diag = torch.diagonal(tril, dim1=1, dim2=2).clamp(-12.0, 8.0).exp()
        scale_tril = tril.tril(-1) + torch.diag_embed(diag)
        return torch.distributions.MultivariateNormal(mean, scale_tril=scale_tril)

    def _sample(self, x: torch.Tensor, n: int) -> PosteriorSample:
        q = self.distribution(x)
        z = q.rsample((n,))  # (n, B, D)
        # log det Σ from L's diagonal: exact even where Σ is too ill-conditioned to re-factor.
        log_det = 2.0 * q.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return PosteriorSample(
            z=z,
            mean=q.mean,
            var=q.variance,
            log_prob=q.log_prob(z),
            cov=q.covariance_matrix,
            log_det_cov=log_det,
        )

    def _log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.distribution(x).log_prob(z)
