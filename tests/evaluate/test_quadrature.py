"""2-D quadrature (src/implicit_vae/evaluate/quadrature.py): the ground truth of the other tests."""

from __future__ import annotations

import pytest
import torch

from implicit_vae.evaluation import EvaluationError, exact_log_likelihood_2d
from implicit_vae.priors import Prior, StandardNormal


def test_quadrature_matches_closed_form_linear_gaussian(linear_gaussian):
    m = linear_gaussian(2, 5, 0.7, n=10, dtype=torch.float64)
    est = exact_log_likelihood_2d(m.log_likelihood, StandardNormal(2).double(), m.x)
    assert (est - m.exact).abs().max() < 1e-3  # measured ≈ 1e-9


def test_quadrature_converges_in_the_grid(bernoulli_2d):
    lik, x = bernoulli_2d(n=4)
    prior = StandardNormal(2)
    coarse = exact_log_likelihood_2d(lik.log_prob, prior, x, grid=401)
    fine = exact_log_likelihood_2d(lik.log_prob, prior, x, grid=801)
    assert (coarse - fine).abs().max() < 1e-3


def test_quadrature_is_independent_of_batching(bernoulli_2d):
    lik, x = bernoulli_2d(n=7)
    prior = StandardNormal(2)
    seen = []

    def counting(x_, z):
        seen.append(x_.shape[0])
        return lik.log_prob(x_, z)

    small = exact_log_likelihood_2d(counting, prior, x, grid=101, batch_size=3)
    assert max(seen) == 3
    whole = exact_log_likelihood_2d(lik.log_prob, prior, x, grid=101, batch_size=64)
    assert torch.allclose(small, whole, atol=1e-5)


def test_quadrature_rejects_wrong_dimension_and_implicit_prior(bernoulli_2d):
    lik, x = bernoulli_2d(n=2)

    class SampleOnly(Prior):
        def _sample(self, n):
            return torch.randn(n, 2)

    with pytest.raises(EvaluationError, match="2-D"):
        exact_log_likelihood_2d(lik.log_prob, StandardNormal(3), x)
    with pytest.raises(EvaluationError, match="implicit"):
        exact_log_likelihood_2d(lik.log_prob, SampleOnly(2), x)
    with pytest.raises(ValueError):
        exact_log_likelihood_2d(lik.log_prob, StandardNormal(2), x, grid=1)
