"""The implicit posterior z = g(ε, x): a sampler network, no density."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..networks import NoiseInjectedMLP
from ..networks.noise import noise_net_draws
from .base import Posterior, PosteriorSample


class ImplicitPosterior(Posterior):
    """Implicit q(z|x) defined by the sampler z = g(ε, x), ε ~ N(0, I_noise_dim); no density.

    Noise is concatenated to the input and, with ``inject_hidden``, also added through a learned linear
    map at every hidden layer, which keeps deep samplers from ignoring it. ``moment_samples`` extra draws
    per x give empirical moments for adaptive contrast (the AVB Stan example uses batch moments the same
    way). They are independent of the returned samples: a draw inside its own moment pool is pulled
    towards the pool's mean, so its normalised z̃ = L⁻¹(z − μ) is not N(0, I) even for a Gaussian q
    (with 16 pooled draws, D = 8: a critic's KL 7.05 for a true 5.30).

    Estimated moments still cost the contrast a little: the critic can only learn z̃'s distribution
    averaged over the moment noise, so the estimate falls short by the mutual information between z̃
    and the moments, about k / 2m nat for m draws and k estimated moments (for a Gaussian q: mean and
    variances, k = 2D, for the diagonal contrast; mean and covariance, k = D(D + 3)/2, for the full one).
    The default m = 10·D keeps the diagonal contrast's shortfall near 0.1 nat at any D; the full
    contrast needs m ≥ 10·D to be usable at all and more (m ≈ D(D + 3)/0.2) for a 0.1 nat shortfall.

    Args:
        event_shape, latent_dim: as for :class:`Posterior`.
        noise_dim: dimension of ε.
        hidden, act, inject_hidden: the default sampler network (:class:`NoiseInjectedMLP`).
        moment_samples: m, extra draws per x for the moments adaptive contrast reads (>= 2);
            None: 10·D (see :func:`moment_draws`).
        net: the sampler instead of the default, any module ``net(x, eps)`` with x
            (N, *event_shape) and eps (N, noise_dim) -> z (N, D), e.g. AVB's convolutional
            :class:`~implicit_vae.networks.ConvNoiseEncoder`.

    References:
        > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes, ICML 2017, Sec. 3.
    """

    has_moments = True

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        noise_dim: int = 16,
        hidden: Sequence[int] = (256, 256),
        act: str = "elu",
        inject_hidden: bool = False,
        moment_samples: int | None = None,
        *,
        net: nn.Module | None = None,
    ):
        super().__init__(event_shape, latent_dim)
        if noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {noise_dim}")
        self.noise_dim = noise_dim
        self.moment_samples = moment_draws(moment_samples, latent_dim)
        self.net = (
            net
            if net is not None
            else NoiseInjectedMLP(
                self.event_shape, noise_dim, hidden, latent_dim, act, inject_hidden
            )
        )

    def _draw(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b = x.shape[0]
        eps = torch.randn(n, b, self.noise_dim, device=x.device, dtype=x.dtype)
        return noise_net_draws(self.net, x, eps, self.latent_dim)

    def _sample_without_moments(self, x: torch.Tensor, n: int) -> PosteriorSample:
        # The moment draws cost more than the sample itself; plain AVB never reads them.
        return PosteriorSample(z=self._draw(x, n))

    def _sample(self, x: torch.Tensor, n: int) -> PosteriorSample:
        z = self._draw(x, n)  # (n, B, D)
        with torch.no_grad():
            # Moments are constants to the estimators (stop-gradient, as in AVB's adaptive contrast),
            # from draws independent of z (see the class docstring for why z is not among them).
            pool = self._draw(x, self.moment_samples)  # (m, B, D)
            mean = pool.mean(0)
            centred = pool - mean
            cov = torch.einsum("mbi,mbj->bij", centred, centred) / (pool.shape[0] - 1)
        return PosteriorSample(
            z=z,
            mean=mean,
            var=torch.diagonal(cov, dim1=1, dim2=2),
            cov=cov,
            moment_draws=self.moment_samples,
        )


def moment_draws(moment_samples: int | None, latent_dim: int) -> int:
    """The number of moment draws per x: ``moment_samples``, or by default (None) 10·D, the least
    the full contrast accepts and a shortfall of about 0.1 nat for the diagonal one (see
    :class:`ImplicitPosterior`). Raises ValueError for anything but an integer >= 2."""
    if moment_samples is None:
        return 10 * latent_dim
    if isinstance(moment_samples, bool) or not isinstance(moment_samples, int) or moment_samples < 2:
        raise ValueError(
            f"moment_samples must be an integer >= 2 (or None: 10·D), got {moment_samples!r}"
        )
    return moment_samples
