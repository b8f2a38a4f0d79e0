"""Tests for implicit_vae.divergences.analytic: the closed-form Gaussian KL against torch and by
hand, its Monte Carlo counterpart, and which posteriors each accepts."""

from __future__ import annotations

import math

import pytest
import torch

from implicit_vae.divergences import AnalyticKL, MonteCarloKL
from implicit_vae.posteriors import (
    GaussianPosterior,
    ImplicitPosterior,
    NoiseBasisPosterior,
    Posterior,
    PosteriorSample,
)
from implicit_vae.priors import Prior, StandardNormal

DATA_DIM, LATENT_DIM, BATCH = 3, 4, 5
# Exact float32 comparison of closed forms (values of a few nats).
EXACT_ATOL = 1e-5
# Monte Carlo KL from N_MC samples per example: with the KLs of 5–12 nats of the test posterior the
# standard error of the mean of log q − log p is below 0.5% of the KL (measured errors ≤ 0.6%), so a
# 5% relative tolerance is a wide (~10σ) bound.
N_MC = 10_000
MC_RTOL = 0.05


def gaussian_posterior() -> GaussianPosterior:
    """A small Gaussian posterior whose q(z|x) is clearly away from N(0, I) (KL of several nats):
    a scaled-up last layer with mean biases of order 1 and log σ biases in [−1, 0.5]."""
    post = GaussianPosterior(DATA_DIM, LATENT_DIM, hidden=(16,))
    last = post.net[-1]
    with torch.no_grad():
        last.weight.mul_(3.0)
        last.bias[:LATENT_DIM] = torch.randn(LATENT_DIM)
        last.bias[LATENT_DIM:] = torch.empty(LATENT_DIM).uniform_(-1.0, 0.5)
    return post


def standard_normal(dim: int) -> torch.distributions.Independent:
    return torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(dim), torch.ones(dim)), 1)


def test_analytic_kl_matches_torch_kl_divergence():
    """AnalyticKL equals torch.distributions.kl_divergence(q(z|x), N(0, I)) per example."""
    post, prior = gaussian_posterior(), StandardNormal(LATENT_DIM)
    x = torch.randn(BATCH, DATA_DIM)
    q = post.sample(x, 2)
    kl = AnalyticKL(DATA_DIM, LATENT_DIM).estimate(x, q, prior)
    expected = torch.distributions.kl_divergence(post.distribution(x), standard_normal(LATENT_DIM))
    assert kl.shape == (BATCH,)
    assert (expected > 0.5).all()  # the test q is far enough from p for the MC check below
    torch.testing.assert_close(kl, expected, atol=EXACT_ATOL, rtol=0)


def test_analytic_kl_by_hand():
    """For μ = (1, 2), σ² = (1, e⁻²): KL = ½[(1 + 1 − 1 − 0) + (4 + e⁻² − 1 + 2)] = 3 + e⁻²/2."""
    q = PosteriorSample(z=torch.zeros(1, 1, 2), mean=torch.tensor([[1.0, 2.0]]),
                        var=torch.tensor([[1.0, math.exp(-2.0)]]))
    kl = AnalyticKL(1, 2).estimate(torch.zeros(1, 1), q, StandardNormal(2))
    torch.testing.assert_close(kl, torch.tensor([3.0 + 0.5 * math.exp(-2.0)]), atol=EXACT_ATOL,
                               rtol=0)


def test_analytic_kl_zero_at_prior():
    """KL(N(0, I) ‖ N(0, I)) = 0 exactly."""
    q = PosteriorSample(z=torch.zeros(1, 3, 2), mean=torch.zeros(3, 2), var=torch.ones(3, 2))
    kl = AnalyticKL(1, 2).estimate(torch.zeros(3, 1), q, StandardNormal(2))
    torch.testing.assert_close(kl, torch.zeros(3), atol=EXACT_ATOL, rtol=0)


def test_monte_carlo_kl_agrees_with_analytic():
    """MonteCarloKL with N_MC samples per example agrees with the closed form within MC_RTOL."""
    post, prior = gaussian_posterior(), StandardNormal(LATENT_DIM)
    x = torch.randn(BATCH, DATA_DIM)
    with torch.no_grad():
        q = post.sample(x, N_MC)
        mc = MonteCarloKL(DATA_DIM, LATENT_DIM).estimate(x, q, prior)
        exact = AnalyticKL(DATA_DIM, LATENT_DIM).estimate(x, q, prior)
    assert mc.shape == (BATCH,)
    torch.testing.assert_close(mc, exact, rtol=MC_RTOL, atol=0)


@pytest.mark.parametrize("cls", [AnalyticKL, MonteCarloKL])
def test_gradient_reaches_gaussian_posterior(cls):
    """Both estimates are differentiable w.r.t. every parameter of the Gaussian posterior."""
    post, prior = gaussian_posterior(), StandardNormal(LATENT_DIM)
    x = torch.randn(BATCH, DATA_DIM)
    cls(DATA_DIM, LATENT_DIM).estimate(x, post.sample(x, 4), prior).sum().backward()
    for name, p in post.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cls", [AnalyticKL, MonteCarloKL])
def test_no_critic(cls):
    """Closed-form estimators have no parameters and a zero critic loss with nan accuracy."""
    est = cls(DATA_DIM, LATENT_DIM)
    assert not est.has_critic
    x = torch.randn(BATCH, DATA_DIM)
    out = est.critic_loss(x, gaussian_posterior().sample(x), StandardNormal(LATENT_DIM))
    assert out.loss.item() == 0.0 and math.isnan(out.accuracy)


def test_analytic_kl_accepts_gaussian_against_standard_normal():
    """The one closed-form pair has no requirements error."""
    assert AnalyticKL.requirements_error(gaussian_posterior(), StandardNormal(LATENT_DIM)) is None
    assert MonteCarloKL.requirements_error(gaussian_posterior(), StandardNormal(LATENT_DIM)) is None


@pytest.mark.parametrize("cls", [AnalyticKL, MonteCarloKL])
def test_refuses_implicit_posterior(cls):
    """Without a density the refusal names the estimator and ImplicitPosterior."""
    reason = cls.requirements_error(ImplicitPosterior(DATA_DIM, LATENT_DIM, hidden=(8,)),
                                    StandardNormal(LATENT_DIM))
    assert reason is not None and cls.__name__ in reason and "ImplicitPosterior" in reason
    assert "no density" in reason


def test_analytic_kl_refuses_noise_basis_posterior():
    """NoiseBasisPosterior has moments but no density: AnalyticKL refuses it by name."""
    post = NoiseBasisPosterior(DATA_DIM, LATENT_DIM, hidden=(8,), basis_hidden=(8,), n_basis=2)
    reason = AnalyticKL.requirements_error(post, StandardNormal(LATENT_DIM))
    assert reason is not None and "NoiseBasisPosterior" in reason


def test_analytic_kl_refuses_other_explicit_pairs():
    """A posterior with a density and moments that is not Gaussian, or a prior that is not the
    standard normal, has no registered closed form."""

    class OtherExplicit(Posterior):
        has_density = True
        has_moments = True

    class OtherPrior(Prior):
        has_density = True

    reason = AnalyticKL.requirements_error(OtherExplicit(DATA_DIM, LATENT_DIM),
                                           StandardNormal(LATENT_DIM))
    assert reason is not None and "OtherExplicit" in reason and "closed form" in reason
    reason = AnalyticKL.requirements_error(gaussian_posterior(), OtherPrior(LATENT_DIM))
    assert reason is not None and "OtherPrior" in reason


def test_estimate_checks_shapes():
    """x and z of the wrong shape are ValueErrors that state the expected shape."""
    est, prior = AnalyticKL(DATA_DIM, LATENT_DIM), StandardNormal(LATENT_DIM)
    q = PosteriorSample(z=torch.zeros(1, BATCH, LATENT_DIM), mean=torch.zeros(BATCH, LATENT_DIM),
                        var=torch.ones(BATCH, LATENT_DIM))
    with pytest.raises(ValueError, match=rf"\(B, {DATA_DIM}\)"):
        est.estimate(torch.zeros(BATCH, DATA_DIM + 1), q, prior)
    with pytest.raises(ValueError, match=rf"\(n, {BATCH + 1}, {LATENT_DIM}\)"):
        est.estimate(torch.zeros(BATCH + 1, DATA_DIM), q, prior)


def full_covariance_posterior():
    """A full-covariance Gaussian posterior with strong correlations and KLs of several nats."""
    from implicit_vae.posteriors import FullCovarianceGaussianPosterior

    post = FullCovarianceGaussianPosterior(DATA_DIM, LATENT_DIM, hidden=(16,))
    with torch.no_grad():
        post.net[-1].weight.mul_(3.0)
        post.net[-1].bias.normal_(0.0, 0.7)
    return post


def test_analytic_kl_full_covariance_matches_torch():
    """½(‖μ‖² + tr Σ − D − log det Σ) equals torch's KL(N(μ, Σ) ‖ N(0, I)) per example, and the
    Monte Carlo KL from the density agrees within MC_RTOL."""
    torch.manual_seed(0)
    post, prior = full_covariance_posterior(), StandardNormal(LATENT_DIM)
    x = torch.randn(BATCH, DATA_DIM)
    q = post.sample(x, N_MC)
    kl = AnalyticKL(DATA_DIM, LATENT_DIM).estimate(x, q, prior)
    reference = torch.distributions.MultivariateNormal(torch.zeros(LATENT_DIM), torch.eye(LATENT_DIM))
    expected = torch.distributions.kl_divergence(post.distribution(x), reference)
    assert (expected > 0.5).all()
    torch.testing.assert_close(kl, expected, atol=1e-4, rtol=0)
    mc = MonteCarloKL(DATA_DIM, LATENT_DIM).estimate(x, q, prior)
    torch.testing.assert_close(mc, kl, rtol=MC_RTOL, atol=0)
    assert AnalyticKL.requirements_error(post, prior) is None


def test_analytic_kl_full_covariance_with_a_diagonal_factor_is_the_diagonal_formula():
    """With the off-diagonal entries of L zeroed the two closed forms coincide."""
    torch.manual_seed(1)
    post, prior = full_covariance_posterior(), StandardNormal(LATENT_DIM)
    x = torch.randn(BATCH, DATA_DIM)
    q = post.sample(x, 1)
    diagonal = PosteriorSample(z=q.z, mean=q.mean, var=q.var)
    kl_diag_form = AnalyticKL(DATA_DIM, LATENT_DIM).estimate(x, diagonal, prior)
    kl_full = AnalyticKL(DATA_DIM, LATENT_DIM).estimate(x, q, prior)
    assert (kl_full > kl_diag_form).all()  # correlations cost KL for the same marginals
    with torch.no_grad():
        rows, cols = torch.tril_indices(LATENT_DIM, LATENT_DIM)
        off = (rows != cols).nonzero().squeeze(1) + LATENT_DIM
        post.net[-1].weight[off] = 0.0
        post.net[-1].bias[off] = 0.0
    q = post.sample(x, 1)
    diagonal = PosteriorSample(z=q.z, mean=q.mean, var=q.var)
    torch.testing.assert_close(
        AnalyticKL(DATA_DIM, LATENT_DIM).estimate(x, q, prior),
        AnalyticKL(DATA_DIM, LATENT_DIM).estimate(x, diagonal, prior),
        atol=EXACT_ATOL, rtol=0,
    )
