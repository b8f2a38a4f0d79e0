"""Tests for implicit_vae.priors: StandardNormal sampling, its exact density, and shape checks."""

from __future__ import annotations

import math

import pytest
import torch

from implicit_vae.priors import PRIORS, Prior, StandardNormal

# Exact float32 comparison of the same density computed two ways.
EXACT_ATOL = 1e-5
# Moments of N_MC standard-normal draws: standard error 1/sqrt(N_MC) ≈ 0.007 for the mean and
# sqrt(2/N_MC) ≈ 0.01 for the variance, so 0.05 is a ~5σ bound.
N_MC = 20_000
MC_ATOL = 0.05


@pytest.mark.parametrize("name", sorted(PRIORS))
@pytest.mark.parametrize("dim", [1, 3])
def test_sample_shape(name, dim):
    """sample(n) gives finite (n, D) draws."""
    z = PRIORS[name](dim).sample(7)
    assert z.shape == (7, dim) and torch.isfinite(z).all()


@pytest.mark.parametrize("dim", [1, 3])
def test_standard_normal_log_prob_matches_torch(dim):
    """log_prob equals Independent(Normal(0, 1), 1).log_prob over any leading shape, and the
    distribution() the prior exposes."""
    prior = StandardNormal(dim)
    reference = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(dim), torch.ones(dim)), 1)
    z = 2 * torch.randn(5, 4, dim)
    out = prior.log_prob(z)
    assert out.shape == (5, 4)
    torch.testing.assert_close(out, reference.log_prob(z), atol=EXACT_ATOL, rtol=0)
    torch.testing.assert_close(out, prior.distribution().log_prob(z), atol=EXACT_ATOL, rtol=0)


def test_standard_normal_log_prob_at_origin():
    """log N(0; 0, I_D) = -D/2 log(2π), by hand."""
    value = StandardNormal(4).log_prob(torch.zeros(4))
    expected = torch.tensor(-0.5 * 4 * math.log(2 * math.pi))
    torch.testing.assert_close(value, expected, atol=EXACT_ATOL, rtol=0)


def test_standard_normal_samples_are_standard():
    """Draws have mean 0 and identity covariance."""
    z = StandardNormal(3).sample(N_MC)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=MC_ATOL, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), torch.eye(3), atol=MC_ATOL, rtol=0)


def test_standard_normal_follows_dtype():
    """The sampler follows the module's dtype (the anchor buffer moves with .to())."""
    prior = StandardNormal(2).to(torch.float64)
    assert prior.sample(3).dtype == torch.float64
    assert prior.log_prob(torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float64


def test_standard_normal_has_no_parameters_and_no_state():
    """No trainable parameters and nothing in the state dict (the anchor is non-persistent)."""
    prior = StandardNormal(2)
    assert list(prior.parameters()) == [] and prior.state_dict() == {}


def test_bad_shapes_raise():
    """A z whose last dimension is not D, n < 1 and D < 1 are ValueErrors naming the value."""
    prior = StandardNormal(3)
    with pytest.raises(ValueError, match=r"dimension 3, got \(5, 2\)"):
        prior.log_prob(torch.zeros(5, 2))
    with pytest.raises(ValueError, match="got 0"):
        prior.sample(0)
    with pytest.raises(ValueError, match="got 0"):
        StandardNormal(0)


def test_prior_without_density_refuses_log_prob():
    """A prior that does not declare a density raises NotImplementedError on log_prob."""

    class SampleOnly(Prior):
        def _sample(self, n):
            return torch.zeros(n, self.latent_dim)

    prior = SampleOnly(2)
    assert prior.sample(3).shape == (3, 2)
    with pytest.raises(NotImplementedError, match="SampleOnly"):
        prior.log_prob(torch.zeros(3, 2))
