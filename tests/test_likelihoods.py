"""Tests for implicit_vae.likelihoods: exact log-likelihoods against torch.distributions,
broadcasting over (n, B, D) latents, means and shape checks, for every entry of LIKELIHOODS."""

from __future__ import annotations

import math

import pytest
import torch

from implicit_vae.likelihoods import LIKELIHOODS, BernoulliLikelihood, GaussianLikelihood

LATENT_DIM, DATA_DIM, BATCH, N = 2, 5, 4, 3
# Exact float32 comparison of the same log-likelihood computed two ways: 1e-5 absolute, plus 1e-6
# relative because with the default σ = 0.1 a Gaussian log-likelihood reaches hundreds of nats and
# float32 keeps only ~7 significant digits.
EXACT_ATOL = 1e-5
EXACT_RTOL = 1e-6


def make(name: str) -> torch.nn.Module:
    return LIKELIHOODS[name](LATENT_DIM, DATA_DIM, hidden=(16,))


def data_for(name: str) -> torch.Tensor:
    if LIKELIHOODS[name].needs_binary_data:
        return torch.randint(0, 2, (BATCH, DATA_DIM)).float()
    return torch.randn(BATCH, DATA_DIM)


def reference(lik: torch.nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x|z) from torch.distributions, summed over data dimensions."""
    out = lik.decoder(z)
    if isinstance(lik, BernoulliLikelihood):
        return torch.distributions.Bernoulli(logits=out).log_prob(x.expand_as(out)).sum(-1)
    if isinstance(lik, GaussianLikelihood):
        return torch.distributions.Normal(out, lik.log_std.exp()).log_prob(x).sum(-1)
    raise AssertionError(f"no reference density for {type(lik).__name__}: add one here")


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_log_prob_matches_torch(name):
    """log_prob(x, z) for z (B, D) equals the torch.distributions log-likelihood summed over x."""
    lik, x = make(name), data_for(name)
    z = torch.randn(BATCH, LATENT_DIM)
    out = lik.log_prob(x, z)
    assert out.shape == (BATCH,)
    torch.testing.assert_close(out, reference(lik, x, z), atol=EXACT_ATOL, rtol=EXACT_RTOL)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_log_prob_broadcasts_over_samples(name):
    """z of shape (n, B, D) against x (B, data_dim) gives (n, B), each row as if computed alone."""
    lik, x = make(name), data_for(name)
    z = torch.randn(N, BATCH, LATENT_DIM)
    out = lik.log_prob(x, z)
    assert out.shape == (N, BATCH)
    torch.testing.assert_close(out, reference(lik, x, z), atol=EXACT_ATOL, rtol=EXACT_RTOL)
    for i in range(N):
        torch.testing.assert_close(out[i], lik.log_prob(x, z[i]), atol=EXACT_ATOL, rtol=EXACT_RTOL)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_mean_shape_and_gradient(name):
    """mean(z) has shape (..., data_dim); log_prob's gradient reaches every decoder parameter."""
    lik, x = make(name), data_for(name)
    z = torch.randn(N, BATCH, LATENT_DIM)
    assert lik.mean(z).shape == (N, BATCH, DATA_DIM)
    lik.log_prob(x, z).sum().backward()
    for pname, p in lik.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
            assert p.grad.abs().sum() > 0, pname


def test_bernoulli_mean_is_sigmoid_in_unit_interval():
    """The Bernoulli mean is sigmoid(logits), inside [0, 1] even for large latents."""
    lik = make("bernoulli")
    z = 50 * torch.randn(N, BATCH, LATENT_DIM)
    mean = lik.mean(z)
    assert ((mean >= 0) & (mean <= 1)).all()
    torch.testing.assert_close(mean, torch.sigmoid(lik.decoder(z)), atol=0, rtol=0)


def test_bernoulli_is_stable_for_extreme_logits():
    """Huge logits give finite log-likelihoods: 0 when they agree with x, -|logit| when not."""
    lik = make("bernoulli")
    out = torch.full((1, DATA_DIM), 200.0)
    x_agree, x_disagree = torch.ones(1, DATA_DIM), torch.zeros(1, DATA_DIM)
    torch.testing.assert_close(lik._log_prob(x_agree, out), torch.zeros(1), atol=EXACT_ATOL,
                               rtol=EXACT_RTOL)
    torch.testing.assert_close(lik._log_prob(x_disagree, out), torch.tensor([-200.0 * DATA_DIM]),
                               atol=EXACT_ATOL, rtol=EXACT_RTOL)


def test_gaussian_fixed_std_is_exact_and_frozen():
    """fixed_std sets σ exactly and freezes it; the log-likelihood then matches by hand."""
    lik = GaussianLikelihood(LATENT_DIM, DATA_DIM, hidden=(16,), fixed_std=0.5)
    assert not lik.log_std.requires_grad
    x, z = torch.randn(BATCH, DATA_DIM), torch.randn(BATCH, LATENT_DIM)
    mu = lik.mean(z)
    manual = (-0.5 * ((x - mu) / 0.5).pow(2) - math.log(0.5) - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(lik.log_prob(x, z), manual, atol=EXACT_ATOL, rtol=EXACT_RTOL)


def test_gaussian_default_std_is_learned():
    """Without fixed_std the per-dimension log σ starts at log 0.1 and is trainable."""
    lik = make("gaussian")
    assert lik.log_std.requires_grad
    torch.testing.assert_close(lik.log_std, torch.full((DATA_DIM,), math.log(0.1)))


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_bad_shapes_raise(name):
    """x or z with the wrong last dimension is a ValueError naming the expected size."""
    lik = make(name)
    with pytest.raises(ValueError, match=rf"dimension {DATA_DIM}"):
        lik.log_prob(torch.zeros(BATCH, DATA_DIM + 1), torch.zeros(BATCH, LATENT_DIM))
    with pytest.raises(ValueError, match=rf"dimension {LATENT_DIM}"):
        lik.log_prob(torch.zeros(BATCH, DATA_DIM), torch.zeros(BATCH, LATENT_DIM + 1))
