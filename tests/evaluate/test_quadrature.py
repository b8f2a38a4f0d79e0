"""2-D quadrature (src/implicit_vae/evaluate/quadrature.py): the ground truth of the other tests."""

from __future__ import annotations

import pytest
import torch

from implicit_vae.evaluation import EvaluationError, exact_log_likelihood_2d
from implicit_vae.evaluation.quadrature import quadrature_log_likelihood_2d
from implicit_vae.priors import Prior, StandardNormal


def test_quadrature_matches_closed_form_linear_gaussian(linear_gaussian):
    m = linear_gaussian(2, 5, 0.7, n=10, dtype=torch.float64)
    est = exact_log_likelihood_2d(m.log_likelihood, StandardNormal(2).double(), m.x)
    assert (est - m.exact).abs().max() < 1e-3  # measured ≈ 4e-15
    fixed = exact_log_likelihood_2d(m.log_likelihood, StandardNormal(2).double(), m.x, limit=6.0)
    assert (fixed - m.exact).abs().max() < 1e-3  # the old fixed box [−6, 6]² still works here


def test_quadrature_fits_the_box_to_a_far_posterior(linear_gaussian):
    """Data the model finds unlikely put the posterior at z ≈ (8, −7), outside [−6, 6]²: the fitted
    box finds it (measured error 6e-14 nats), the old fixed box misses it (error ≈ 989 nats)."""
    m = linear_gaussian(2, 5, 0.1, n=4, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    m.x = (torch.tensor([8.0, -7.0], dtype=torch.float64) @ m.W.T + m.b
           + 0.1 * torch.randn(4, 5, generator=g, dtype=torch.float64))
    exact = torch.distributions.MultivariateNormal(
        m.b, m.W @ m.W.T + 0.01 * torch.eye(5, dtype=torch.float64)).log_prob(m.x)
    mean, std = m.posterior_moments()
    assert (mean - torch.tensor([8.0, -7.0], dtype=torch.float64)).abs().max() < 0.5
    prior = StandardNormal(2).double()
    est = quadrature_log_likelihood_2d(m.log_likelihood, prior, m.x)
    assert (est.log_px - exact).abs().max() < 1e-6
    assert (est.lower < mean - 6 * std).all() and (est.upper > mean + 6 * std).all()
    assert est.refinement_change.max() < 1e-6
    fixed = quadrature_log_likelihood_2d(m.log_likelihood, prior, m.x, limit=6.0)
    assert (fixed.log_px - exact).abs().min() > 10


def test_refinement_change_flags_a_coarse_grid(bernoulli_2d, linear_gaussian):
    """The half-grid-to-grid change is tiny where the grid resolves p(x|z) p(z) (measured 4e-15 for
    the linear-Gaussian model in float64, 2e-6 for the Bernoulli one in float32 at grid 401) and
    large where it does not (measured up to 9 nats at grid 11), where it also bounds the error."""
    m = linear_gaussian(2, 5, 0.7, n=10, dtype=torch.float64)
    smooth = quadrature_log_likelihood_2d(m.log_likelihood, StandardNormal(2).double(), m.x)
    assert smooth.refinement_change.max() < 1e-8
    lik, x = bernoulli_2d(n=4)
    prior = StandardNormal(2)
    fine = quadrature_log_likelihood_2d(lik.log_prob, prior, x, grid=401)
    assert fine.refinement_change.max() < 1e-4
    coarse = quadrature_log_likelihood_2d(lik.log_prob, prior, x, grid=11)
    assert coarse.refinement_change.max() > 1.0
    assert ((coarse.log_px - fine.log_px).abs() <= coarse.refinement_change + 1e-4).all()
    with pytest.warns(RuntimeWarning, match="raise grid"):
        exact_log_likelihood_2d(lik.log_prob, prior, x, grid=11)


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
        exact_log_likelihood_2d(lik.log_prob, StandardNormal(2), x, grid=2)
    with pytest.raises(ValueError):
        exact_log_likelihood_2d(lik.log_prob, StandardNormal(2), x, limit=0.0)
