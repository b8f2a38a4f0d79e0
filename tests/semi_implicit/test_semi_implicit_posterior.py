"""SemiImplicitPosterior: the sample carries its generating noise, the conditional density is exact,
and for a linear mixing network (μ = m + A ε, global σ, so q = N(m, AAᵀ + σ²I) exactly) the sample
moments and the Rao-Blackwellised moments it reports match the closed form."""

from __future__ import annotations

import math

import pytest
import torch
from si_models import linear_case, table_posterior

from implicit_vae.posteriors import SemiImplicitPosterior, SemiImplicitSample

# z moments from N = 40,000 draws of a q whose variances are at most 1.63: the standard error of a
# mean is ≤ 0.007 and that of a (co)variance entry ≤ sqrt(2/N)·1.63 ≈ 0.012, so 0.05 is a > 4σ
# margin. The reported moments use m = 20,000 mixing draws (Rao-Blackwellised over η, so only the
# AAᵀ part is noisy): standard error ≤ 0.015, and 0.06 is a 4σ margin.
N_MC, MC_ATOL = 40_000, 0.05
M_MOMENTS, MOMENT_ATOL = 20_000, 0.06


def test_linear_mixing_sample_moments_match_the_gaussian_marginal():
    x, mean, factor, cov = linear_case()
    post = table_posterior(x, mean, factor, sigma=0.3)
    post.moment_samples = M_MOMENTS
    with torch.no_grad():
        q = post.sample(x, N_MC)
    z = q.z  # (N, B, D)
    torch.testing.assert_close(z.mean(0), mean, atol=MC_ATOL, rtol=0)
    centred = z - z.mean(0)
    sample_cov = torch.einsum("nbi,nbj->bij", centred, centred) / (N_MC - 1)
    torch.testing.assert_close(sample_cov, cov, atol=MC_ATOL, rtol=0)
    # the moments adaptive contrast reads
    torch.testing.assert_close(q.mean, mean, atol=MOMENT_ATOL, rtol=0)
    torch.testing.assert_close(q.cov, cov, atol=MOMENT_ATOL, rtol=0)
    torch.testing.assert_close(q.var, cov.diagonal(dim1=1, dim2=2), atol=MOMENT_ATOL, rtol=0)
    assert q.moment_draws == M_MOMENTS


def test_sample_carries_its_generating_noise_and_exact_conditional_density():
    x, mean, factor, _ = linear_case()
    post = table_posterior(x, mean, factor, sigma=0.3)
    q = post.sample_with_mixing(x, 5)
    assert isinstance(q, SemiImplicitSample)
    assert q.eps.shape == (5, 3, 2) and q.loc.shape == q.scale.shape == q.z.shape == (5, 3, 2)
    expected_loc = mean + torch.einsum("bde,nbe->nbd", factor, q.eps)
    torch.testing.assert_close(q.loc, expected_loc, atol=1e-6, rtol=0)
    torch.testing.assert_close(q.scale, torch.full_like(q.z, 0.3), atol=1e-6, rtol=0)
    exact = torch.distributions.Normal(expected_loc, 0.3).log_prob(q.z).sum(-1)
    torch.testing.assert_close(post.conditional_log_prob(q.z, x, q.eps), exact, atol=1e-5, rtol=0)
    loc, scale = q.components(7)
    assert loc.shape == scale.shape == (7, 3, 2)


@pytest.mark.parametrize("sigma", ["global", "x", "x_eps"])
def test_every_sigma_kind_samples_and_differentiates(sigma):
    post = SemiImplicitPosterior((1, 2, 3), 2, noise_dim=3, hidden=(8,), sigma=sigma,
                                 inject_hidden=True)  # fmt: skip
    x = torch.randn(4, 1, 2, 3)
    q = post.sample(x.flatten(1), 6)  # flat rows work too
    assert q.z.shape == (6, 4, 2) and q.mean.shape == (4, 2) and (q.var > 0).all()
    assert q.cov.shape == (4, 2, 2)
    log_k = post.conditional_log_prob(q.z, x, q.eps)
    assert log_k.shape == (6, 4) and torch.isfinite(log_k).all()
    manual = torch.distributions.Normal(q.loc, q.scale).log_prob(q.z).sum(-1)
    torch.testing.assert_close(log_k, manual, atol=1e-5, rtol=0)
    (q.z.sum() + log_k.sum()).backward()
    for name, p in post.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{sigma}: no gradient for {name}"
    if sigma != "global":  # σ depends on x
        assert not torch.allclose(q.scale[0, 0], q.scale[0, 1])


def test_sigma_starts_at_sigma_init():
    post = SemiImplicitPosterior(3, 2, noise_dim=2, hidden=(8,), sigma_init=0.25)
    q = post.sample(torch.randn(2, 3), 1, moments=False)
    torch.testing.assert_close(q.scale, torch.full_like(q.scale, 0.25))


def test_mixture_log_prob_tends_to_the_exact_density_from_above():
    # E[log q̂_K(z)] >= log q(z), decreasing to it: K = 2000 mixing draws, 400 z per x.
    x, mean, factor, cov = linear_case()
    post = table_posterior(x, mean, factor, sigma=0.3)
    with torch.no_grad():
        q = post.sample(x, 400, moments=False)
        exact = torch.distributions.MultivariateNormal(mean, cov).log_prob(q.z)  # (n, B)
        gaps = [float((post.mixture_log_prob(q.z, x, k, q.eps) - exact).mean()) for k in (1, 2000)]
        without = float((post.mixture_log_prob(q.z, x, 2000) - exact).mean())
    assert gaps[0] > 0.5 and 0 <= gaps[1] < 0.05, gaps
    assert abs(without) < 0.05  # UIVI's estimate (no ε_0) is close too at this K


def test_bad_arguments_are_value_errors_naming_them():
    with pytest.raises(ValueError, match="sigma must be one of global, x, x_eps"):
        SemiImplicitPosterior(3, 2, sigma="both")
    with pytest.raises(ValueError, match="moment_samples"):
        SemiImplicitPosterior(3, 2, moment_samples=1)
    with pytest.raises(ValueError, match="sigma_net is read only with sigma='x'"):
        SemiImplicitPosterior(3, 2, sigma_net=torch.nn.Linear(3, 2))
    post = SemiImplicitPosterior(3, 2, noise_dim=4, hidden=(8,))
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"eps must have shape \(1, 2, 4\)"):
        post.conditional_log_prob(torch.zeros(1, 2, 2), x, torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match=r"returned shape \(2, 2\); expected \(2, 4\)"):
        SemiImplicitPosterior(3, 2, noise_dim=1, sigma="x_eps",
                              net=_Fixed(2)).sample(x)  # fmt: skip
    assert math.isfinite(float(post.sample(x, 1).z.detach().sum()))


class _Fixed(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.width = width

    def forward(self, x, eps):
        return torch.zeros(x.shape[0], self.width)
