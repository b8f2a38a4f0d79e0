"""Variational posteriors q(z|x): explicit (diagonal and full-covariance Gaussian) and implicit
(sampler-only).

The family contract lives in :class:`Posterior`; every posterior returns a :class:`PosteriorSample`, which
carries the samples and, where the posterior can give them, the moments of q(z|x) (used by adaptive
contrast) and log q(z|x) (used by estimators that need a density).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..networks import ParallelMLPs, activation
from .base import Posterior, PosteriorSample


class NoiseBasisPosterior(Posterior):
    """AVB's adaptive-contrast encoder: z = z0(x) + Σ_i a_i(x) ⊙ v_i(ε_i), ε_i ~ N(0, I).

    Because every v_i depends on noise only, the moments of q(z|x) follow in closed form from the moments
    of the v_i (estimated from the noise draws of the batch):
    E[z|x] = z0 + Σ a_i E[v_i],  Var[z|x] = Σ a_i² Var[v_i].
    The v_i share no noise, so the full covariance is closed-form too:
    Cov[z|x] = Σ_i diag(a_i) Cov[v_i] diag(a_i).
    The coefficients a_i(x) = ELU(lin_i(h(x)) − 5) + 1 start small and positive, as in the AVB code.
    Samples are implicit (no density) unless ``n_basis`` v_i are linear in ε, which we do not assume.

    References:
        > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes, ICML 2017, Sec. 4 and
        > the official ``conv0_ac`` encoder.
    """

    has_moments = True

    def __init__(
        self,
        data_dim: int,
        latent_dim: int,
        noise_dim: int = 16,
        n_basis: int = 16,
        hidden: Sequence[int] = (256, 256),
        basis_hidden: Sequence[int] = (128, 128, 128),
        act: str = "elu",
    ):
        super().__init__(data_dim, latent_dim)
        if noise_dim < 1 or n_basis < 1:
            raise ValueError(f"noise_dim and n_basis must be >= 1, got {noise_dim}, {n_basis}")
        self.noise_dim, self.n_basis = noise_dim, n_basis
        widths = [data_dim, *hidden]
        trunk: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            trunk += [nn.Linear(a, b), activation(act)]
        self.trunk = nn.Sequential(*trunk)
        self.z0 = nn.Linear(widths[-1], latent_dim)
        self.coeffs = nn.Linear(widths[-1], n_basis * latent_dim)
        self.bases = ParallelMLPs(n_basis, noise_dim, basis_hidden, latent_dim, act)

    def _sample(self, x: torch.Tensor, n: int) -> PosteriorSample:
        b, d, k = x.shape[0], self.latent_dim, self.n_basis
        h = self.trunk(x)
        z0 = self.z0(h)  # (B, D)
        a = (F.elu(self.coeffs(h) - 5.0) + 1.0).view(b, k, d)  # (B, K, D), positive
        eps = torch.randn(k, n * b, self.noise_dim, device=x.device, dtype=x.dtype)
        v = self.bases(eps).permute(1, 0, 2).reshape(n, b, k, d)  # (n, B, K, D)
        z = z0 + (a * v).sum(2)  # (n, B, D)
        # The v_i are x-independent, so all n*B draws estimate their moments; at least 2 are needed.
        v_flat = v.reshape(n * b, k, d)
        v_mean = v_flat.mean(0)
        centred = v_flat - v_mean
        v_cov = (  # Cov[v_i]: (K, D, D)
            torch.einsum("nki,nkj->kij", centred, centred) / (n * b - 1)
            if n * b > 1
            else torch.eye(d, dtype=x.dtype, device=x.device).expand(k, d, d)
        )
        mean = z0 + (a * v_mean).sum(1)
        cov = torch.einsum("bki,kij,bkj->bij", a, v_cov, a)  # (B, D, D)
        return PosteriorSample(
            z=z,
            mean=mean.detach(),
            var=torch.diagonal(cov, dim1=1, dim2=2).detach(),
            cov=cov.detach(),
        )
