"""Models with known log p(x) for the evaluation tests: a linear-Gaussian decoder (closed form) and a
2-D Bernoulli decoder (quadrature), plus an explicit Gaussian proposal with fixed per-example moments."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from implicit_vae.likelihoods import BernoulliLikelihood
from implicit_vae.posteriors import Posterior, PosteriorSample


@dataclass
class LinearGaussian:
    """p(z) = N(0, I_d), p(x|z) = N(Wz + b, σ² I); x (n, dx) drawn from the model."""

    W: torch.Tensor
    b: torch.Tensor
    sigma: float
    x: torch.Tensor
    exact: torch.Tensor  # log N(x; b, W Wᵀ + σ² I), (n,)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r = (x - z @ self.W.T - self.b) / self.sigma
        return (-0.5 * r.pow(2) - math.log(self.sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def posterior_moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact mean (n, d) and marginal std (n, d) of p(z|x)."""
        d = self.W.shape[1]
        cov = torch.linalg.inv(torch.eye(d, dtype=self.W.dtype) + self.W.T @ self.W / self.sigma**2)
        mean = (self.x - self.b) @ self.W @ cov / self.sigma**2
        return mean, cov.diagonal().sqrt().expand_as(mean).clone()


def make_linear_gaussian(d: int, dx: int, sigma: float, n: int, seed: int = 0,
                         dtype: torch.dtype = torch.float32) -> LinearGaussian:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(dx, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    b = torch.randn(dx, generator=g, dtype=torch.float64)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    x = z @ W.T + b + sigma * torch.randn(n, dx, generator=g, dtype=torch.float64)
    cov = W @ W.T + sigma**2 * torch.eye(dx, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(b, cov).log_prob(x)
    return LinearGaussian(*(t.to(dtype) for t in (W, b)), sigma, x.to(dtype), exact.to(dtype))


@pytest.fixture
def linear_gaussian():
    return make_linear_gaussian


def make_bernoulli_2d(n: int = 8, data_dim: int = 32, seed: int = 0):
    """A fixed random tanh MLP decoder 2 -> 32 -> 32 logits, sharpened so that the posteriors are
    narrow-ish and non-Gaussian; returns (likelihood, x (n, data_dim))."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lik = BernoulliLikelihood(2, data_dim, hidden=(32,), act="tanh")
        with torch.no_grad():
            lik.decoder[0].weight.mul_(2.0)
            lik.decoder[-1].weight.mul_(4.0)
            x = torch.bernoulli(torch.sigmoid(lik.decoder(torch.randn(n, 2))))
    return lik.requires_grad_(False), x


@pytest.fixture
def bernoulli_2d():
    return make_bernoulli_2d


def grid_posterior_moments(log_likelihood, prior, x, limit=6.0, grid=201):
    """Mean and std (B, 2) of p(z|x) on a grid: the moments an ideal Gaussian proposal would use."""
    nodes = torch.linspace(-limit, limit, grid)
    zi, zj = torch.meshgrid(nodes, nodes, indexing="ij")
    z = torch.stack([zi.reshape(-1), zj.reshape(-1)], dim=-1)
    with torch.no_grad():
        log_joint = log_likelihood(x, z[:, None, :].expand(-1, x.shape[0], -1)) + prior.log_prob(z)[
            :, None]
    w = torch.softmax(log_joint, dim=0).unsqueeze(-1)  # (G², B, 1)
    mean = (w * z[:, None, :]).sum(0)
    std = (w * (z[:, None, :] - mean).pow(2)).sum(0).sqrt()
    return mean, std


class FixedGaussianPosterior(Posterior):
    """Explicit q(z|x) = N(mean_i, diag std_i²) for the reference row x_i that x matches."""

    has_density = True

    def __init__(self, x_ref: torch.Tensor, mean: torch.Tensor, std: torch.Tensor):
        super().__init__(x_ref.shape[1], mean.shape[1])
        self.x_ref, self.mean, self.std = x_ref, mean, std

    def _dist(self, x: torch.Tensor) -> torch.distributions.Independent:
        # Rows that are equal have equal moments, so the first match is the right one.
        idx = (x[:, None, :] == self.x_ref[None]).all(-1).float().argmax(1)
        return torch.distributions.Independent(
            torch.distributions.Normal(self.mean[idx], self.std[idx]), 1)

    def _sample(self, x: torch.Tensor, n: int) -> PosteriorSample:
        q = self._dist(x)
        z = q.sample((n,))
        return PosteriorSample(z=z, log_prob=q.log_prob(z))

    def _log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._dist(x).log_prob(z)


@pytest.fixture
def fixed_gaussian_posterior():
    return FixedGaussianPosterior


@pytest.fixture
def posterior_moments():
    return grid_posterior_moments
