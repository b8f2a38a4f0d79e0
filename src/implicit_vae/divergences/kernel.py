"""Kernel estimators of the entropy term of KL(q(z|x) ‖ p(z)) = −H(q(z|x)) − E_q[log p(z)]:
a kernel density estimate of log q(z|x), and Stein / spectral-Stein estimates of ∇_z log q(z|x).

Both use the n samples of q(z|x) drawn per example, and both need log p(z).

References:
    > D. W. Scott. Multivariate Density Estimation, Wiley 1992 (bandwidth rules).
    > Y. Li, R. E. Turner. Gradient Estimators for Implicit Models, ICLR 2018.
    > J. Shi, S. Sun, J. Zhu. A Spectral Approach to Gradient Estimation for Implicit
    > Distributions, ICML 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..posteriors import PosteriorSample
from ..priors import Prior
from .base import DivergenceEstimator
from .distances import check_samples_per_x, kozachenko_leonenko_entropy, pairwise_sq_dists

BANDWIDTH_RULES = ("cv", "scott", "silverman")
CV_SCALE_RANGE = (0.1, 3.0)  # the likelihood-CV search range, in multiples of Scott's bandwidth
CV_ITERATIONS = 20  # golden-section steps: the bracket shrinks to 0.618²⁰ ≈ 7e-5 of its log-width
CV_POINTS = 2_000  # held-out points scored per candidate bandwidth (all n remain kernel centres)


def _leave_one_out_log_density(sq_units: torch.Tensor, log_scale: torch.Tensor, dim: int):
    """Leave-one-out log-density in units of the base bandwidth (add −Σ_d log h_d − (D/2) log 2π).

    ``sq_units`` (B, r, n): squared distances in units of the base bandwidth, +inf on the excluded
    self-pairs; ``log_scale`` (B,): log of the bandwidth multiplier c. Returns (B, r):
    log (1/(n−1)) Σ_{j≠i} exp(−½ sq_ij / c²) − D log c.
    """
    log_k = -0.5 * sq_units * (-2.0 * log_scale).exp().view(-1, 1, 1)
    average = log_k.logsumexp(-1) - math.log(sq_units.shape[-1] - 1)
    return average - dim * log_scale.view(-1, 1)


@torch.no_grad()
def likelihood_cv_log_scale(sq_units: torch.Tensor, dim: int) -> torch.Tensor:
    """log of the bandwidth multiplier c (B,) maximising the mean leave-one-out log-likelihood
    (1/r) Σ_i log q̂_{−i}(z_i) of the first r ≤ ``CV_POINTS`` samples, by golden-section search on
    log c over ``CV_SCALE_RANGE`` (the LOO log-likelihood is unimodal in c in practice)."""
    rows = sq_units[:, :CV_POINTS]

    def score(log_c: torch.Tensor) -> torch.Tensor:
        return _leave_one_out_log_density(rows, log_c, dim).mean(-1)

    lo = sq_units.new_full(sq_units.shape[:1], math.log(CV_SCALE_RANGE[0]))
    hi = sq_units.new_full(sq_units.shape[:1], math.log(CV_SCALE_RANGE[1]))
    golden = (math.sqrt(5.0) - 1.0) / 2.0
    x1, x2 = hi - golden * (hi - lo), lo + golden * (hi - lo)
    f1, f2 = score(x1), score(x2)
    for _ in range(CV_ITERATIONS):
        left = f1 > f2  # the maximum lies in [lo, x2]
        lo, hi = torch.where(left, lo, x1), torch.where(left, x2, hi)
        # the surviving inner point keeps its value; the other one is new and scored
        kept = torch.where(left, f1, f2)
        x1, x2 = (
            torch.where(left, hi - golden * (hi - lo), x2),
            torch.where(left, x1, lo + golden * (hi - lo)),
        )
        fresh = score(torch.where(left, x1, x2))
        f1, f2 = torch.where(left, fresh, kept), torch.where(left, kept, fresh)
    return 0.5 * (lo + hi)


class KernelDensityKL(DivergenceEstimator):
    """KL(q(z|x) ‖ p(z)) ≈ (1/n) Σ_i [log q̂_{−i}(z_i) − log p(z_i)], where q̂_{−i} is the
    leave-one-out Gaussian kernel density estimate over the other n − 1 samples of q(z|x):
    q̂_{−i}(z) = 1/(n−1) Σ_{j≠i} N(z; z_j, diag h²).

    Bandwidth (held constant for the gradient, which flows through both the evaluation points and
    the kernel centres): h_d = c · σ_d · n^{−1/(D+4)}, σ_d the per-dimension sample std of q(z|x):
      - ``"cv"`` (default): c maximises the leave-one-out log-likelihood (1/n) Σ_i log q̂_{−i}(z_i)
        (likelihood cross-validation, Habbema et al. 1974; Duin 1976), searched per example over
        c ∈ [0.1, 3]. That is the right criterion for this estimator: the value *is* that mean,
        both of its errors lower it in expectation — the smoothing bias (E q̂ = q * K_h is wider
        than q, so E_q[log (q * K_h)] < E_q[log q]) and the Jensen gap of the log of a noisy
        average — so the bandwidth with the largest value is the one with the smallest total bias.
        Scott's rule targets the density's mean squared error instead and smooths too much or too
        little for the entropy (measured: c ≈ 1.2–1.3 on Gaussians, 0.5–0.7 on a 4-component
        mixture; at D = 8, n = 10⁴ the KL = 1 error went from −24 % to −19 %, the mixture's from
        −14 % to −7 %). Likelihood CV over-smooths heavy-tailed q (Hall 1987).
      - ``"scott"``: c = 1 (Scott's rule); ``"silverman"``: c = (4 / (D + 2))^{1/(D+4)};
      - a positive float: h_d = that float.

    KDE suffers the curse of dimensionality, whatever the bandwidth: both biases above grow
    quickly with D for fixed n, so the KL is under-estimated (by ≈ 0.2 nats at D = 8, n = 10⁴ for
    Gaussians, and far more at D = 32), and it needs many samples per x (``train.n_samples``, at
    least 2; dozens in practice).

    Args:
        event_shape: the shape of one x (unused: no critic).
        latent_dim: dimension D of z.
        bandwidth: "cv", "scott", "silverman", or a positive float (absolute bandwidth).

    References:
        > D. W. Scott. Multivariate Density Estimation, Wiley 1992, Sec. 6.3.
        > B. W. Silverman. Density Estimation for Statistics and Data Analysis, 1986, Sec. 3.4.4
        > (likelihood cross-validation) and 4.3.
        > J. D. F. Habbema, J. Hermans, K. van den Broek. A stepwise discriminant analysis program
        > using density estimation, COMPSTAT 1974; R. P. W. Duin. On the choice of smoothing
        > parameters for Parzen estimators of probability density functions, IEEE Trans. Comput.
        > C-25(11), 1976.
        > P. Hall. On Kullback–Leibler loss and density estimation, Ann. Statist. 15(4), 1987.
    """

    needs_prior_density = True

    def __init__(self, event_shape: int | Sequence[int], latent_dim: int, bandwidth: str | float = "cv"):
        super().__init__(event_shape, latent_dim)
        if isinstance(bandwidth, str):
            if bandwidth not in BANDWIDTH_RULES:
                raise ValueError(
                    f"bandwidth must be one of {BANDWIDTH_RULES} or a positive float, "
                    f"got {bandwidth!r}"
                )
        elif not bandwidth > 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}")
        self.bandwidth = bandwidth
        self.min_samples_per_x = 2

    def _base_bandwidths(self, z: torch.Tensor) -> torch.Tensor:
        """h_d for c = 1 (or the fixed float), shape (B, D); the rule's factor c comes later."""
        n, _, d = z.shape
        if not isinstance(self.bandwidth, str):
            return z.new_full(z.shape[1:], float(self.bandwidth))
        factor = n ** (-1.0 / (d + 4))
        if self.bandwidth == "silverman":
            factor *= (4.0 / (d + 2)) ** (1.0 / (d + 4))
        return (z.detach().std(0) * factor).clamp_min(1e-6)  # (B, D)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """Leave-one-out KDE log q̂_{−i}(z_i) for each sample of ``z`` (n, B, D); returns (n, B)."""
        n, _, d = z.shape
        h = self._base_bandwidths(z)  # (B, D)
        u = (z / h).transpose(0, 1)  # (B, n, D)
        eye = torch.eye(n, dtype=torch.bool, device=z.device)
        sq = pairwise_sq_dists(u, u).masked_fill(eye, math.inf)  # (B, n, n)
        log_c = (
            likelihood_cv_log_scale(sq.detach(), d)
            if self.bandwidth == "cv"
            else sq.new_zeros(sq.shape[:1])
        )
        log_norm = h.log().sum(-1, keepdim=True) + 0.5 * d * math.log(2 * math.pi)  # (B, 1)
        return (_leave_one_out_log_density(sq, log_c, d) - log_norm).transpose(0, 1)

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        check_samples_per_x("kde", q.z.shape[0], 2, "leave-one-out density estimate")
        return (self.log_density(q.z) - prior.log_prob(q.z)).mean(0)


class SteinEntropyKL(DivergenceEstimator):
    """KL(q(z|x) ‖ p(z)) whose *gradient* uses a kernel estimate ĝ(z_i) ≈ ∇_z log q(z_i|x) from the
    n samples of q(z|x). Because the score-function term vanishes, ∇_φ E_q[log q] = E[ĝ(z)ᵀ ∂z/∂φ],
    so the surrogate (1/n) Σ_i stopgrad(ĝ_i)·z_i has the entropy gradient.

    The surrogate's *value* is meaningless, so the returned value is replaced (without changing the
    gradient) by a sensible KL estimate: −Ĥ_KL − (1/n) Σ_i log p(z_i), with Ĥ_KL the
    Kozachenko–Leonenko k-NN entropy of the same samples. We chose k-NN over a KDE value because it
    has no bandwidth and degrades more gracefully with dimension; it is only reported, never
    differentiated (its gradient is too noisy).

    Score estimators (RBF kernel k(a, b) = exp(−‖a − b‖²/(2σ²)), σ = the median pairwise distance
    unless ``bandwidth`` is given):
      - ``"ssge"`` (Shi et al. 2018): Nyström eigenfunctions ψ_j of the kernel, ĝ = Σ_j β_j ψ_j with
        β_j = −E_q[∇ψ_j]; keeps the top eigenpairs holding ``eigen_fraction`` of the spectrum.
      - ``"sge"`` (Li & Turner 2018): Ĝ = −(K + ηI)⁻¹⟨∇, K⟩ from Stein's identity.

    Args:
        event_shape: the shape of one x (unused: no critic).
        latent_dim: dimension D of z.
        method: "ssge" or "sge".
        bandwidth: RBF length scale σ; None uses the median heuristic.
        eta: ridge η of "sge" (the kernel's diagonal is 1).
        eigen_fraction: share of the kernel's eigenvalue mass kept by "ssge".
    Defaults were picked on Gaussians (D = 2 and 8, n = 16 to 256), judging the gradient w.r.t. q's
    mean and log-scale: relative error ≈ 0.1 at n = 256, 0.2 at n = 64, 0.35–0.65 at n = 16.
        k: neighbour used by the reported k-NN entropy.

    References:
        > Y. Li, R. E. Turner. Gradient Estimators for Implicit Models, ICLR 2018.
        > J. Shi, S. Sun, J. Zhu. A Spectral Approach to Gradient Estimation for Implicit
        > Distributions, ICML 2018.
    """

    needs_prior_density = True

    def __init__(
        self,
        event_shape: int | Sequence[int],
        latent_dim: int,
        method: str = "ssge",
        bandwidth: float | None = None,
        eta: float = 0.03,
        eigen_fraction: float = 0.99,
        k: int = 1,
    ):
        super().__init__(event_shape, latent_dim)
        if method not in ("ssge", "sge"):
            raise ValueError(f"method must be 'ssge' or 'sge', got {method!r}")
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}")
        if not eta > 0 or not 0 < eigen_fraction <= 1 or k < 1:
            raise ValueError(
                f"need eta > 0, 0 < eigen_fraction <= 1, k >= 1; got {eta}, {eigen_fraction}, {k}"
            )
        self.method, self.bandwidth, self.eta = method, bandwidth, eta
        self.eigen_fraction, self.k = eigen_fraction, k
        self.min_samples_per_x = max(2, k + 1)

    @torch.no_grad()
    def score(self, z: torch.Tensor) -> torch.Tensor:
        """Estimated ∇_z log q(z|x) at each sample of ``z`` (n, B, D), from those samples.

        Returns (n, B, D); carries no gradient."""
        zb = z.detach().transpose(0, 1).double()  # (B, n, D); float64 for the linear algebra
        sq = pairwise_sq_dists(zb, zb)
        n = sq.shape[-1]
        if self.bandwidth is None:
            off = sq[:, ~torch.eye(n, dtype=torch.bool, device=z.device)]
            var = off.median(-1).values.clamp_min(1e-12).view(-1, 1, 1)  # σ² = median ‖a − b‖²
        else:
            var = zb.new_tensor(self.bandwidth**2)
        kern = (-0.5 * sq / var).exp()  # (B, n, n)
        row = kern.sum(-1, keepdim=True)  # (B, n, 1)
        if self.method == "sge":
            # ⟨∇, K⟩_i = Σ_k ∇_{z_k} k(z_i, z_k) = (row_i z_i − (K Z)_i) / σ²
            grad_k = (row * zb - kern @ zb) / var
            eye = torch.eye(n, dtype=zb.dtype, device=zb.device)
            g = -torch.linalg.solve(kern + self.eta * eye, grad_k)
        else:
            g = self._ssge(kern, row, zb, var)
        return g.transpose(0, 1).to(z.dtype)

    def _ssge(self, kern, row, zb, var):
        n = kern.shape[-1]
        lam, u = torch.linalg.eigh(kern)  # ascending
        lam, u = lam.flip(-1), u.flip(-1)
        lam = lam.clamp_min(1e-10)
        keep = (lam.cumsum(-1) / lam.sum(-1, keepdim=True)) <= self.eigen_fraction
        keep[..., 0] = True
        # Σ_i ∇ψ_j(z_i) = −(√n / (λ_j σ²)) (λ_j Uᵀ Z − Uᵀ (row ⊙ Z))_j ; β_j = −(1/n) of that.
        ut_z, ut_rz = u.transpose(1, 2) @ zb, u.transpose(1, 2) @ (row * zb)  # (B, n, D)
        beta = (lam.unsqueeze(-1) * ut_z - ut_rz) / (lam.unsqueeze(-1) * var * math.sqrt(n))
        beta = beta * keep.unsqueeze(-1)
        return math.sqrt(n) * u @ beta  # ψ_j(z_i) = √n u_ij

    def _estimate(self, x: torch.Tensor, q: PosteriorSample, prior: Prior) -> torch.Tensor:
        n = q.z.shape[0]
        check_samples_per_x("stein", n, self.min_samples_per_x, "kernel score and k-NN entropy")
        with torch.no_grad():
            value = -kozachenko_leonenko_entropy(q.z.detach(), self.k)
        if q.z.requires_grad and torch.is_grad_enabled():  # the O(n³) score serves the gradient
            surrogate = (self.score(q.z) * q.z).sum(-1).mean(0)  # ∇_{z_i} = ĝ_i / n
            value = value + (surrogate - surrogate.detach())
        return value - prior.log_prob(q.z).mean(0)
