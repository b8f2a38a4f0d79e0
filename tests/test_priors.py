"""Tests for implicit_vae.priors: the standard normal, the learnable Gaussian mixture, the implicit
generator prior and the bank of samples: sampling, exact densities, gradients, loading errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from implicit_vae.config import ConfigError, load_config
from implicit_vae.config.factory import build_model
from implicit_vae.priors import (
    PRIORS,
    GaussianMixture,
    ImplicitPrior,
    Prior,
    SamplePrior,
    StandardNormal,
    spread_means,
)

# Exact float32 comparison of the same density computed two ways.
EXACT_ATOL = 1e-5
# Moments of N_MC standard-normal draws: standard error 1/sqrt(N_MC) ≈ 0.007 for the mean and
# sqrt(2/N_MC) ≈ 0.01 for the variance, so 0.05 is a ~5σ bound.
N_MC = 20_000
MC_ATOL = 0.05


BUILD = {
    "standard_normal": StandardNormal,
    "gaussian_mixture": lambda d: GaussianMixture(d, components=3),
    "implicit": lambda d: ImplicitPrior(d, noise_dim=2, hidden=(8,)),
    "samples": lambda d: SamplePrior(torch.randn(50, d)),
}


def test_every_registered_prior_is_built_here():
    """The parametrisations below cover the whole registry."""
    assert set(BUILD) == set(PRIORS)


@pytest.mark.parametrize("name", sorted(PRIORS))
@pytest.mark.parametrize("dim", [1, 3])
def test_sample_shape(name, dim):
    """sample(n) gives finite (n, D) draws of the module's dtype."""
    prior = BUILD[name](dim)
    z = prior.sample(7)
    assert isinstance(prior, PRIORS[name])
    assert z.shape == (7, dim) and torch.isfinite(z).all() and z.dtype == torch.float32
    assert prior.to(torch.float64).sample(2).dtype == torch.float64


@pytest.mark.parametrize("name", sorted(PRIORS))
def test_density_and_learnability_flags(name):
    """The flags against what each prior does: has_density iff log_prob gives finite (N,) values
    (the others refuse it); is_learnable iff it has parameters that train. Only the standard normal
    and the mixture have a density; only the mixture and the implicit generator learn."""
    prior = BUILD[name](2)
    if prior.has_density:
        log_p = prior.log_prob(torch.zeros(3, 2))
        assert log_p.shape == (3,) and torch.isfinite(log_p).all()
    else:
        with pytest.raises(NotImplementedError, match="implicit"):
            prior.log_prob(torch.zeros(3, 2))
    assert prior.is_learnable == any(p.requires_grad for p in prior.parameters())
    assert prior.has_density == (name in ("standard_normal", "gaussian_mixture"))
    assert prior.is_learnable == (name in ("gaussian_mixture", "implicit"))


@pytest.mark.parametrize("dim", [1, 3])
def test_standard_normal_log_prob_matches_torch(dim):
    """log_prob equals Independent(Normal(0, 1), 1).log_prob over any leading shape, and the
    distribution() the prior exposes."""
    prior = StandardNormal(dim)
    reference = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(dim), torch.ones(dim)), 1
    )
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


# --- Gaussian mixture --------------------------------------------------------------------------


def _random_mixture(dim: int = 3, k: int = 4) -> GaussianMixture:
    prior = GaussianMixture(dim, components=k)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(k))
        prior.means.copy_(2 * torch.randn(k, dim))
        prior.log_scales.copy_(0.3 * torch.randn(k, dim))
    return prior


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_mixture_log_prob_matches_mixture_same_family(dim):
    """log_prob equals torch's MixtureSameFamily(Categorical, Independent(Normal)) exactly, over
    any leading shape and far into the tails (logsumexp keeps it finite)."""
    prior = _random_mixture(dim)
    d = torch.distributions
    reference = d.MixtureSameFamily(
        d.Categorical(logits=prior.logits.detach()),
        d.Independent(d.Normal(prior.means.detach(), prior.log_scales.detach().exp()), 1),
    )
    z = 3 * torch.randn(5, 4, dim)
    z[0, 0] = 40.0  # far tail
    out = prior.log_prob(z)
    assert out.shape == (5, 4) and torch.isfinite(out).all()
    torch.testing.assert_close(out, reference.log_prob(z), atol=EXACT_ATOL, rtol=1e-6)
    torch.testing.assert_close(out, prior.distribution().log_prob(z), atol=EXACT_ATOL, rtol=1e-6)


def test_mixture_sample_moments():
    """Draws have the mixture's mean Σπμ and covariance Σπ(diag σ² + μμᵀ) − mean meanᵀ; the
    tolerance is ~5 standard errors of N_MC draws at this spread (variances up to ~10)."""
    prior = _random_mixture(2, 3)
    with torch.no_grad():
        pi, mu, var = prior.logits.softmax(-1), prior.means, (2 * prior.log_scales).exp()
        mean = (pi[:, None] * mu).sum(0)
        second = (pi[:, None, None] * (torch.diag_embed(var) + mu[:, :, None] * mu[:, None])).sum(0)
        z = prior.sample(N_MC)
    scale = float(second.diagonal().max().sqrt())
    torch.testing.assert_close(z.mean(0), mean, atol=MC_ATOL * scale, rtol=0)
    torch.testing.assert_close(
        torch.cov(z.T), second - mean[:, None] * mean, atol=0.1 * scale**2, rtol=0
    )


def test_mixture_starts_on_a_circle_with_equal_weights():
    """In 2-D the K means sit evenly on a circle of the given radius (the AAE's prior)."""
    prior = GaussianMixture(2, components=10, radius=3.0, scale=0.4)
    means = prior.means.detach()
    torch.testing.assert_close(means.norm(dim=-1), torch.full((10,), 3.0), atol=EXACT_ATOL, rtol=0)
    gaps = (means - means.roll(1, 0)).norm(dim=-1)
    torch.testing.assert_close(
        gaps, torch.full((10,), 6 * math.sin(math.pi / 10)), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(prior.log_scales.exp(), torch.full((10, 2), 0.4))
    assert torch.equal(prior.logits, torch.zeros(10))
    torch.testing.assert_close(spread_means(5, 1, 2.0).squeeze(-1), torch.linspace(-2, 2, 5))
    for d in (3, 5):
        torch.testing.assert_close(
            spread_means(6, d, 2.0).norm(dim=-1), torch.full((6,), 2.0), atol=1e-5, rtol=0
        )
    assert torch.equal(spread_means(6, 4, 1.0), spread_means(6, 4, 1.0))  # fixed seed


def test_mixture_samples_are_reparameterised_in_means_and_scales():
    """Gradients of a function of the samples reach the means and scales; the weights learn
    through log_prob."""
    prior = GaussianMixture(2, components=3)
    prior.sample(64).pow(2).sum().backward()
    assert prior.means.grad.abs().sum() > 0 and prior.log_scales.grad.abs().sum() > 0
    assert prior.logits.grad is None
    prior.log_prob(torch.randn(8, 2)).sum().backward()
    assert prior.logits.grad.abs().sum() > 0


def test_fixed_mixture_has_no_parameters():
    """learnable=False keeps logits, means and scales as buffers (saved, not trained)."""
    prior = GaussianMixture(2, components=3, learnable=False)
    assert list(prior.parameters()) == [] and not prior.is_learnable
    assert set(prior.state_dict()) == {"logits", "means", "log_scales"}


def test_mixture_bad_arguments():
    with pytest.raises(ValueError, match="components"):
        GaussianMixture(2, components=0)
    with pytest.raises(ValueError, match="scale > 0"):
        GaussianMixture(2, scale=0.0)


# --- implicit generator prior -----------------------------------------------------------------


def test_implicit_prior_shapes_and_gradient():
    """h(η) gives (n, D) samples, reparameterised: every generator parameter gets a gradient."""
    prior = ImplicitPrior(3, noise_dim=5, hidden=(16, 16))
    z = prior.sample(32)
    assert z.shape == (32, 3)
    z.pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prior.parameters())


def test_affine_implicit_prior_is_the_gaussian_it_implies():
    """With hidden=() h(η) = Wη + b, so draws have mean b and covariance WWᵀ."""
    prior = ImplicitPrior(2, noise_dim=3, hidden=())
    w, b = prior.generator[0].weight.detach(), prior.generator[0].bias.detach()
    with torch.no_grad():
        z = prior.sample(N_MC)
    torch.testing.assert_close(z.mean(0), b, atol=MC_ATOL, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), w @ w.T, atol=MC_ATOL, rtol=0)


def test_implicit_prior_bad_noise_dim():
    with pytest.raises(ValueError, match="noise_dim"):
        ImplicitPrior(2, noise_dim=0)


# --- bank of samples ----------------------------------------------------------------------------


def test_sample_prior_draws_rows_of_the_bank_uniformly(tmp_path):
    """Every draw is a row of the bank; each of 4 rows is drawn ~1/4 of the time (5σ bound); the
    bank is a saved buffer, not a parameter."""
    bank = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.save(tmp_path / "bank.npy", bank)
    prior = SamplePrior.from_file(tmp_path / "bank.npy", latent_dim=2)
    z = prior.sample(N_MC)
    rows = (z[:, 0] / 2).long()
    torch.testing.assert_close(z, torch.as_tensor(bank)[rows])
    freq = torch.bincount(rows, minlength=4).float() / N_MC
    torch.testing.assert_close(
        freq, torch.full((4,), 0.25), atol=5 * math.sqrt(0.1875 / N_MC), rtol=0
    )
    assert list(prior.parameters()) == [] and set(prior.state_dict()) == {"bank"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (np.zeros(5), r"shape \(N, latent_dim\).*got \(5,\)"),
        (np.zeros((2, 3, 2)), r"got \(2, 3, 2\)"),
        (np.zeros((0, 2)), "N >= 1"),
        (np.array([[0.0, 1.0], [np.nan, 2.0], [np.inf, 0.0]]), "2 rows with NaN or infinite"),
        (np.zeros((5, 3)), "dimension 3, but the model's latent_dim is 2"),
        (np.array([["a", "b"]]), "not real numbers"),
        (b"not an npy file", "not a readable .npy array"),
    ],
)
def test_sample_prior_loading_errors_are_one_line(tmp_path, content, message):
    """Missing file, wrong shape, empty bank, NaN/inf, wrong latent dim, non-numbers and a file that
    is not .npy each give one line naming the file."""
    path = tmp_path / "bank.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    with pytest.raises(ValueError, match=message) as info:
        SamplePrior.from_file(path, latent_dim=2)
    assert "\n" not in str(info.value) and "bank.npy" in str(info.value)


def _prior(*overrides: str):
    small = ["model.hidden=[8]", "divergence.name=avb", "divergence.critic_width=8"]
    return build_model(load_config(None, [*small, *overrides]), 6).prior


def test_factory_builds_every_prior_from_config(tmp_path):
    """model.prior plus its fields build the right prior; a missing or bad prior_path is a
    ConfigError naming model.prior_path; an unknown prior lists the four."""
    bank = tmp_path / "bank.npy"
    np.save(bank, np.random.randn(20, 2))
    assert type(_prior()) is StandardNormal
    mixture = _prior(
        "model.prior=gaussian_mixture", "model.prior_components=4", "model.prior_learnable=false"
    )
    assert type(mixture) is GaussianMixture and mixture.components == 4 and not mixture.is_learnable
    implicit = _prior("model.prior=implicit", "model.prior_noise_dim=3", "model.prior_hidden=[5]")
    assert implicit.generator[0].weight.shape == (5, 3)
    assert (
        type(_prior("model.latent_dim=2", "model.prior=samples", f"model.prior_path={bank}"))
        is SamplePrior
    )
    with pytest.raises(
        ConfigError, match=r"^model.prior_path: required when model.prior is 'samples'"
    ):
        _prior("model.prior=samples")
    with pytest.raises(
        ConfigError, match=r"^model.prior_path: .*dimension 2, but the model's latent_dim is 8$"
    ):
        _prior("model.prior=samples", f"model.prior_path={bank}")
    with pytest.raises(
        ConfigError,
        match="model.prior: 'vamp' is not allowed; expected one of "
        "standard_normal, gaussian_mixture, implicit, samples",
    ):
        load_config(None, ["model.prior=vamp"])
