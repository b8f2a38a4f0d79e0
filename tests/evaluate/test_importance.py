"""Importance sampling (src/implicit_vae/evaluate/importance.py) and the shared estimate helpers."""

from __future__ import annotations

import math

import pytest
import torch

from implicit_vae.evaluation import (
    EvaluationError,
    LogLikelihoodEstimate,
    exact_log_likelihood_2d,
    importance_sampling_log_likelihood,
)
from implicit_vae.evaluation._common import logmeanexp_with_stderr
from implicit_vae.posteriors import GaussianPosterior, ImplicitPosterior
from implicit_vae.priors import StandardNormal


def test_is_matches_quadrature_bernoulli_2d(bernoulli_2d, posterior_moments,
                                            fixed_gaussian_posterior):
    lik, x = bernoulli_2d(n=8)
    prior = StandardNormal(2)
    exact = exact_log_likelihood_2d(lik.log_prob, prior, x)
    mean, std = posterior_moments(lik.log_prob, prior, x)
    q = fixed_gaussian_posterior(x, mean, 1.5 * std)  # wider than p(z|x): bounded weights
    est = importance_sampling_log_likelihood(lik.log_prob, prior, q, x, samples=2000)
    err = est.log_px - exact
    assert err.abs().mean() < 0.05  # measured ≈ 0.01
    assert err.mean().abs() < 4 * est.mean_stderr + 0.01


def test_is_with_library_gaussian_posterior(bernoulli_2d):
    """An untrained GaussianPosterior is a poor, prior-like proposal: IS still converges, slowly."""
    lik, x = bernoulli_2d(n=8)
    prior = StandardNormal(2)
    q = GaussianPosterior(32, 2, hidden=(16,))
    exact = exact_log_likelihood_2d(lik.log_prob, prior, x)
    est = importance_sampling_log_likelihood(lik.log_prob, prior, q, x, samples=20000)
    assert est.log_px.shape == est.stderr.shape == (8,)
    assert (est.log_px - exact).abs().mean() < 0.05  # measured ≈ 0.02 (s.e. ≈ 0.025 each)
    assert all(p.grad is None for p in q.parameters())


def test_is_chunks_samples_and_batches(bernoulli_2d, posterior_moments, fixed_gaussian_posterior):
    lik, x = bernoulli_2d(n=300)
    prior = StandardNormal(2)
    mean, std = posterior_moments(lik.log_prob, prior, x, grid=51)
    q = fixed_gaussian_posterior(x, mean, 1.5 * std)
    rows, seen_batch = [], {}

    def counting(x_, z):
        rows.append(z.shape[0] * z.shape[1])
        seen_batch.setdefault(x_.shape[0], 0)
        seen_batch[x_.shape[0]] += z.shape[0]
        return lik.log_prob(x_, z)

    state = torch.get_rng_state()
    a = importance_sampling_log_likelihood(counting, prior, q, x, samples=1000, batch_size=128)
    assert torch.equal(torch.get_rng_state(), state)
    assert max(rows) <= 16384 and set(seen_batch) == {128, 300 - 2 * 128}
    assert seen_batch[128] == 2 * 1000 and seen_batch[44] == 1000  # every sample, once
    b = importance_sampling_log_likelihood(lik.log_prob, prior, q, x, samples=1000, batch_size=128)
    assert torch.equal(a.log_px, b.log_px)


def test_is_rejects_implicit_posterior_and_prior(bernoulli_2d):
    lik, x = bernoulli_2d(n=4)
    with pytest.raises(EvaluationError, match="ais_log_likelihood"):
        importance_sampling_log_likelihood(lik.log_prob, StandardNormal(2), ImplicitPosterior(32, 2),
                                           x, samples=4)
    with pytest.raises(ValueError):
        importance_sampling_log_likelihood(lik.log_prob, StandardNormal(2), GaussianPosterior(32, 2),
                                           x, samples=0)


def test_logmeanexp_and_delta_method_stderr():
    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(50, 3, generator=g, dtype=torch.float64) * 2 - 300  # underflows exp()
    est, se = logmeanexp_with_stderr(log_w)
    w = (log_w + 300).exp()
    assert torch.allclose(est, w.mean(0).log() - 300)
    assert torch.allclose(se, w.std(0) / (math.sqrt(50) * w.mean(0)))
    assert torch.isnan(logmeanexp_with_stderr(log_w[:1])[1]).all()
    e = LogLikelihoodEstimate(torch.tensor([-1.0, -3.0]), torch.tensor([0.3, 0.4]))
    assert e.mean == pytest.approx(-2.0) and e.mean_stderr == pytest.approx(0.25)
