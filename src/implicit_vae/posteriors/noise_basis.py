"""AVB's adaptive-contrast (noise-basis) encoder z = z0(x) + Σ_i a_i(x) ⊙ v_i(ε_i), with moments."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..networks import ParallelMLPs
from ..networks.mlp import MLPTrunk
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

    Args:
        event_shape, latent_dim: as for :class:`Posterior`.
        noise_dim, n_basis: dimension of each ε_i and the number K of bases.
        hidden, basis_hidden, act: the default trunk (an MLP) and bases (K MLPs of ε_i).
        trunk: the feature network instead of the default, any module x (B, *event_shape) ->
            (B, feature_dim), e.g. :class:`~implicit_vae.networks.ConvEncoder`.
        feature_dim: the trunk's output width; read from ``trunk.out_features`` when not given.
        bases: the noise bases instead of the default, a module (K, N, noise_dim) -> (K, N, D).

    References:
        > L. Mescheder, S. Nowozin, A. Geiger. Adversarial Variational Bayes, ICML 2017, Sec. 4 and
        > the official ``conv0_ac`` encoder.
    """

    has_moments = True

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        noise_dim: int = 16,
        n_basis: int = 16,
        hidden: Sequence[int] = (256, 256),
        basis_hidden: Sequence[int] = (128, 128, 128),
        act: str = "elu",
        *,
        trunk: nn.Module | None = None,
        feature_dim: int | None = None,
        bases: nn.Module | None = None,
    ):
        super().__init__(event_shape, latent_dim)
        if noise_dim < 1 or n_basis < 1:
            raise ValueError(f"noise_dim and n_basis must be >= 1, got {noise_dim}, {n_basis}")
        self.noise_dim, self.n_basis = noise_dim, n_basis
        self.trunk = trunk if trunk is not None else MLPTrunk(self.event_shape, hidden, act)
        width = feature_dim if feature_dim is not None else getattr(self.trunk, "out_features", None)
        if not isinstance(width, int) or width < 1:
            raise ValueError(
                f"the trunk {type(self.trunk).__name__} has no out_features; pass feature_dim, "
                "the width of its output (B, feature_dim)"
            )
        self.z0 = nn.Linear(width, latent_dim)
        self.coeffs = nn.Linear(width, n_basis * latent_dim)
        self.bases = (
            bases
            if bases is not None
            else ParallelMLPs(n_basis, noise_dim, basis_hidden, latent_dim, act)
        )

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
