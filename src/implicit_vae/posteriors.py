"""Variational posteriors q(z|x): explicit (diagonal and full-covariance Gaussian) and implicit
(sampler-only).

The family contract lives in :class:`Posterior`; every posterior returns a :class:`PosteriorSample`, which
carries the samples and, where the posterior can give them, the moments of q(z|x) (used by adaptive
contrast) and log q(z|x) (used by estimators that need a density).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .nets import NoiseInjectedMLP, ParallelMLPs, activation, mlp


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
    """

    z: torch.Tensor
    mean: torch.Tensor | None = None
    var: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    cov: torch.Tensor | None = None
    log_det_cov: torch.Tensor | None = None

    def covariance(self) -> torch.Tensor:
        """Cov[z|x], shape (B, D, D): ``cov`` where given, else diag(``var``)."""
        if self.cov is not None:
            return self.cov
        if self.var is None:
            raise ValueError("this posterior sample carries no moments")
        return torch.diag_embed(self.var)

    def detach(self) -> PosteriorSample:
        """A copy cut from the graph (critic updates must not move the posterior)."""
        return PosteriorSample(*(None if t is None else t.detach() for t in self._fields()))

    def _fields(self) -> tuple:
        return (self.z, self.mean, self.var, self.log_prob, self.cov, self.log_det_cov)


class Posterior(nn.Module):
    """Base class of q(z|x).

    Subclass requirements:
      - implement ``_sample(x, n) -> PosteriorSample`` with ``z`` of shape (n, B, D), reparameterised
        (differentiable w.r.t. the parameters) so the KL estimate's gradient reaches the sampler;
      - set ``has_density = True`` only if ``_log_prob(z, x) -> (n, B)`` is implemented and exact;
      - set ``has_moments = True`` only if the returned sample carries ``mean`` and ``var`` (and, where
        the posterior can correlate the coordinates of z, the full ``cov``).
    The public methods check shapes; the private ones compute.
    """

    has_density: bool = False
    has_moments: bool = False

    def __init__(self, data_dim: int, latent_dim: int):
        super().__init__()
        if data_dim < 1 or latent_dim < 1:
            raise ValueError(f"data_dim and latent_dim must be >= 1, got {data_dim}, {latent_dim}")
        self.data_dim = data_dim
        self.latent_dim = latent_dim

    def sample(self, x: torch.Tensor, n: int = 1, moments: bool = True) -> PosteriorSample:
        """Draw ``n`` samples of z for each row of ``x`` (B, data_dim); returns z of shape (n, B, D)."""
        self._check_x(x)
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        return self._sample(x, n) if moments else self._sample_without_moments(x, n)

    def log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """log q(z|x) for z of shape (n, B, D) and x of shape (B, data_dim); returns (n, B)."""
        if not self.has_density:
            raise NotImplementedError(f"{type(self).__name__} is implicit: it has no log-density")
        self._check_x(x)
        if z.dim() != 3 or z.shape[1:] != (x.shape[0], self.latent_dim):
            raise ValueError(
                f"z must have shape (n, {x.shape[0]}, {self.latent_dim}), got {tuple(z.shape)}"
            )
        return self._log_prob(z, x)

    def _check_x(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x must have shape (B, {self.data_dim}), got {tuple(x.shape)}")

    def _sample_without_moments(self, x: torch.Tensor, n: int) -> PosteriorSample:
        """Samples for a caller that will not read the moments; override where they cost extra."""
        return self._sample(x, n)

    def _sample(self, x: torch.Tensor, n: int) -> PosteriorSample:
        raise NotImplementedError

    def _log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GaussianPosterior(Posterior):
    """Explicit diagonal Gaussian q(z|x) = N(μ(x), diag σ²(x)), reparameterised (Kingma & Welling 2014)."""

    has_density = True
    has_moments = True

    def __init__(
        self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (256, 256), act: str = "elu"
    ):
        super().__init__(data_dim, latent_dim)
        self.net = mlp(data_dim, hidden, 2 * latent_dim, act)

    def distribution(self, x: torch.Tensor) -> torch.distributions.Independent:
        """q(z|x) as a torch distribution with batch shape (B,) and event shape (D,)."""
        self._check_x(x)
        mean, log_std = self.net(x).chunk(2, dim=-1)
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
    """

    has_density = True
    has_moments = True

    def __init__(
        self, data_dim: int, latent_dim: int, hidden: Sequence[int] = (256, 256), act: str = "elu"
    ):
        super().__init__(data_dim, latent_dim)
        self.n_tril = latent_dim * (latent_dim + 1) // 2
        self.net = mlp(data_dim, hidden, latent_dim + self.n_tril, act)
        rows, cols = torch.tril_indices(latent_dim, latent_dim)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def distribution(self, x: torch.Tensor) -> torch.distributions.MultivariateNormal:
        """q(z|x) as a torch distribution with batch shape (B,) and event shape (D,)."""
        self._check_x(x)
        out = self.net(x)
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


POSTERIORS = {
    "gaussian": GaussianPosterior,
    "gaussian_full": FullCovarianceGaussianPosterior,
    "implicit": ImplicitPosterior,
    "noise_basis": NoiseBasisPosterior,
}
