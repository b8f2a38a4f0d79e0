"""The ``sivi`` estimator against the closed-form KL of a linear semi-implicit posterior
(q = N(m, AAᵀ + σ²I) exactly): biased high, decreasing in K and within Monte Carlo error of the truth
at K = 1000; its requirements; and its gradient."""

from __future__ import annotations

import pytest
import torch
from si_models import gaussian_kl_to_standard_normal, linear_case, table_posterior

from implicit_vae.divergences import ESTIMATORS, SIVI
from implicit_vae.posteriors import ImplicitPosterior, PosteriorSample
from implicit_vae.priors import StandardNormal

# 20 repeats × 250 z per x: the standard error of each mean estimate is ≤ 0.03 nats (measured), so
# 0.1 is > 3σ; the bias at K = 1000 is below 0.005 nats (measured with 50 × 200 draws).
REPEATS, N_Z, ATOL = 20, 250, 0.1


def _mean_estimate(post, x, k: int) -> torch.Tensor:
    estimator, prior = SIVI(4, 2, mixing_samples=k), StandardNormal(2)
    with torch.no_grad():
        values = [estimator.estimate(x, post.sample(x, N_Z, moments=False), prior)
                  for _ in range(REPEATS)]  # fmt: skip
    return torch.stack(values).mean(0)  # (B,)


def test_sivi_kl_decreases_in_k_to_the_closed_form_kl():
    x, mean, factor, cov = linear_case()
    post = table_posterior(x, mean, factor, sigma=0.3)
    exact = gaussian_kl_to_standard_normal(mean, cov)  # (1.52, 0.68, 0.48) nats
    by_k = {k: _mean_estimate(post, x, k) for k in (1, 10, 100, 1000)}
    # Measured: K = 1: (2.86, 2.09, 1.77); K = 10: (1.96, 1.16, 0.89); K = 100: (1.58, 0.74, 0.56).
    for small, large in ((1, 10), (10, 100), (100, 1000)):
        assert (by_k[small] > by_k[large] + 0.02).all(), (small, by_k[small], by_k[large])
    assert (by_k[100] > exact - ATOL).all()
    torch.testing.assert_close(by_k[1000], exact, atol=ATOL, rtol=0)


def test_gradient_reaches_the_mixing_network_and_sigma():
    x, mean, factor, _ = linear_case()
    post = table_posterior(x, mean, factor, sigma=0.3)
    value = SIVI(4, 2, mixing_samples=5).estimate(x, post.sample(x, 3, moments=False),
                                                  StandardNormal(2))  # fmt: skip
    assert value.shape == (3,)
    value.sum().backward()
    for name, p in post.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_requirements_in_one_sentence():
    implicit = ImplicitPosterior(4, 2, noise_dim=2, hidden=(8,))
    reason = SIVI.requirements_error(implicit, StandardNormal(2))
    assert reason == (
        "SIVI needs the mixing noise and conditional density of a SemiImplicitPosterior, which "
        "ImplicitPosterior is not"
    )
    assert ESTIMATORS["sivi"] is SIVI and SIVI.needs_prior_density
    with pytest.raises(ValueError, match="needs a sample of a SemiImplicitPosterior"):
        SIVI(4, 2).estimate(torch.zeros(1, 4), PosteriorSample(z=torch.zeros(1, 1, 2)),
                            StandardNormal(2))  # fmt: skip
    with pytest.raises(ValueError, match="mixing_samples must be an integer >= 1"):
        SIVI(4, 2, mixing_samples=0)
