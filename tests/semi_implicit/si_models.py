"""Semi-implicit posteriors with known marginals for the tests: a per-example table of means and
mixing factors, so that q(z|x_i) = ∫ N(z; m_i + A_i f(ε), σ² I) N(ε; 0, I) dε.

With f the identity, q(z|x_i) = N(m_i, A_i A_iᵀ + σ² I) exactly; with ``warp`` f(ε) = ε + 0.6 sin(2ε)
it is a non-Gaussian mixture (used where only the bound matters, not q's closed form)."""

from __future__ import annotations

import math

import torch
from torch import nn

from implicit_vae.posteriors import SemiImplicitPosterior


class TableMixing(nn.Module):
    """μ(x, ε) = m_i + A_i f(ε) for the reference row x_i that x equals. Shapes: x (N, D_x),
    eps (N, E) -> (N, D)."""

    def __init__(self, x_ref: torch.Tensor, mean: torch.Tensor, factor: torch.Tensor,
                 warp: bool = False):
        super().__init__()
        self.register_buffer("x_ref", x_ref)
        self.mean = nn.Parameter(mean.clone())  # (B, D)
        self.factor = nn.Parameter(factor.clone())  # (B, D, E)
        self.warp = warp

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        idx = (x[:, None, :] == self.x_ref[None]).all(-1).float().argmax(1)
        f = eps + 0.6 * torch.sin(2.0 * eps) if self.warp else eps
        return self.mean[idx] + torch.einsum("nde,ne->nd", self.factor[idx], f)


def table_posterior(x_ref: torch.Tensor, mean: torch.Tensor, factor: torch.Tensor, sigma: float,
                    warp: bool = False) -> SemiImplicitPosterior:
    """A semi-implicit posterior over the rows of ``x_ref`` with a global σ = ``sigma``."""
    post = SemiImplicitPosterior(
        x_ref.shape[1], mean.shape[1], noise_dim=factor.shape[2],
        net=TableMixing(x_ref, mean, factor, warp), sigma_init=sigma,
    )  # fmt: skip
    return post.to(x_ref.dtype)


def gaussian_kl_to_standard_normal(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, cov) ‖ N(0, I)) = ½ (tr Σ + ‖μ‖² − D − log det Σ), per row: (B,)."""
    d = mean.shape[-1]
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    return 0.5 * (trace + mean.pow(2).sum(-1) - d - torch.logdet(cov))


def linear_case(b: int = 3, d: int = 2, e: int = 2, sigma: float = 0.3, seed: int = 0):
    """Random means (B, D) and mixing factors (B, D, E) with ‖A‖ ≫ σ, so that the mixture over ε
    matters: q̂ with few components is far from q."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 4, generator=g)
    mean = 0.8 * torch.randn(b, d, generator=g)
    factor = torch.randn(b, d, e, generator=g) / math.sqrt(e)
    cov = factor @ factor.transpose(1, 2) + sigma**2 * torch.eye(d)
    return x, mean, factor, cov


def linear_gaussian_model(n: int = 4, d: int = 2, dx: int = 5, noise: float = 0.5, seed: int = 0):
    """p(z) = N(0, I), p(x|z) = N(Wz + c, s² I), in float64. Returns (log_likelihood, x (n, dx),
    exact log p(x) (n,), posterior mean (n, d), posterior covariance (d, d))."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    w = torch.randn(dx, d, generator=g, dtype=dt) / math.sqrt(d)
    c = torch.randn(dx, generator=g, dtype=dt)
    z = torch.randn(n, d, generator=g, dtype=dt)
    x = z @ w.T + c + noise * torch.randn(n, dx, generator=g, dtype=dt)
    marginal = torch.distributions.MultivariateNormal(c, w @ w.T + noise**2 * torch.eye(dx, dtype=dt))
    post_cov = torch.linalg.inv(torch.eye(d, dtype=dt) + w.T @ w / noise**2)
    post_mean = (x - c) @ w @ post_cov / noise**2

    def log_likelihood(xb: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
        r = (xb - zb @ w.T - c) / noise
        return (-0.5 * r.pow(2) - math.log(noise) - 0.5 * math.log(2 * math.pi)).sum(-1)

    return log_likelihood, x, marginal.log_prob(x), post_mean, post_cov
