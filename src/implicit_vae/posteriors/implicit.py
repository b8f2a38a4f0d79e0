"""Variational posteriors q(z|x): explicit (diagonal and full-covariance Gaussian) and implicit
(sampler-only).

The family contract lives in :class:`Posterior`; every posterior returns a :class:`PosteriorSample`, which
carries the samples and, where the posterior can give them, the moments of q(z|x) (used by adaptive
contrast) and log q(z|x) (used by estimators that need a density).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..networks import NoiseInjectedMLP
from .base import Posterior, PosteriorSample


class ImplicitPosterior(Posterior):
    """Implicit q(z|x) defined by the sampler z = g(ε, x), ε ~ N(0, I_noise_dim); no density.

    Noise is concatenated to the input and, with ``inject_hidden``, also added through a learned linear
    map at every hidden layer, which keeps deep samplers from ignoring it. ``moment_samples`` extra draws
    per x give empirical moments for adaptive contrast (the AVB Stan example uses batch moments the same
    way).

    References:
        > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes, ICML 2017, Sec. 3.
    """

    has_moments = True

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        noise_dim: int = 16,
        hidden: Sequence[int] = (256, 256),
        act: str = "elu",
        inject_hidden: bool = False,
        moment_samples: int = 16,
    ):
        super().__init__(data_dim, latent_dim)
        if noise_dim < 1:
            raise ValueError(f"noise_dim must be >= 1, got {noise_dim}")
        self.noise_dim = noise_dim
        self.moment_samples = moment_samples
        self.net = NoiseInjectedMLP(data_dim, noise_dim, hidden, latent_dim, act, inject_hidden)

    def _draw(self, x: torch.Tensor, n: int) -> torch.Tensor:
        b = x.shape[0]
        eps = torch.randn(n, b, self.noise_dim, device=x.device, dtype=x.dtype)
        x_rep = x.unsqueeze(0).expand(n, b, self.data_dim)
        return self.net(x_rep.reshape(n * b, -1), eps.reshape(n * b, -1)).view(n, b, -1)

    def _sample_without_moments(self, x: torch.Tensor, n: int) -> PosteriorSample:
        # The moment draws cost more than the sample itself; plain AVB never reads them.
        return PosteriorSample(z=self._draw(x, n))

    def _sample(self, x: torch.Tensor, n: int) -> PosteriorSample:
        z = self._draw(x, n)  # (n, B, D)
        with torch.no_grad():
            # Moments are constants to the estimators (stop-gradient, as in AVB's adaptive contrast).
            extra = self._draw(x, max(self.moment_samples, 2))
            pool = torch.cat([z.detach(), extra], dim=0)  # (m, B, D)
            mean = pool.mean(0)
            centred = pool - mean
            cov = torch.einsum("mbi,mbj->bij", centred, centred) / (pool.shape[0] - 1)
        return PosteriorSample(z=z, mean=mean, var=torch.diagonal(cov, dim1=1, dim2=2), cov=cov)
