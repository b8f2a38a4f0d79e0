"""Density requirements: declared flags, build-time errors that list the estimators that can work,
missing densities in ``estimate_divergence``, and too few samples of q(z|x) per example."""

from __future__ import annotations

import pytest
import torch

from implicit_vae.divergences import ESTIMATORS, estimate_divergence
from implicit_vae.likelihoods import BernoulliLikelihood
from implicit_vae.model import ImplicitVAE, IncompatibleComponentsError
from implicit_vae.posteriors import (
    GaussianPosterior,
    ImplicitPosterior,
    PosteriorSample,
    SemiImplicitPosterior,
)
from implicit_vae.priors import Prior, StandardNormal

DATA_DIM, LATENT_DIM = 4, 2

class ShiftedNoisePrior(Prior):
    """An implicit prior: a sampler without a density."""

    def _sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.latent_dim) + 1.0


def _model(name: str, posterior, prior) -> ImplicitVAE:
    return ImplicitVAE(
        posterior,
        prior,
        BernoulliLikelihood(LATENT_DIM, DATA_DIM, hidden=(8,)),
        ESTIMATORS[name](DATA_DIM, LATENT_DIM),
    )


@pytest.mark.parametrize("name", sorted(set(ESTIMATORS) - {"sivi", "uivi"}))
def test_declared_density_flags_match_what_estimate_reads(name):
    """Each flag against the estimator's behaviour: one that declares it needs neither log q(z|x)
    nor q's moments estimates from bare samples of q; one that declares it needs log p(z) fails with
    a prior that has none, and works with one otherwise. (sivi and uivi read the mixing noise of a
    semi-implicit posterior instead: tests/semi_implicit.)"""
    cls = ESTIMATORS[name]
    estimator = cls(DATA_DIM, LATENT_DIM)
    x = torch.zeros(3, DATA_DIM)
    bare = PosteriorSample(z=torch.randn(4, 3, LATENT_DIM))  # no log q, no mean or covariance
    if cls.needs_posterior_density or cls.needs_posterior_moments:
        with pytest.raises((AttributeError, TypeError, ValueError)):
            estimator.estimate(x, bare, StandardNormal(LATENT_DIM))
        return
    value = estimator.estimate(x, bare, StandardNormal(LATENT_DIM))
    assert value.shape == (3,) and torch.isfinite(value).all()
    if cls.needs_prior_density:
        with pytest.raises(NotImplementedError, match="has no log-density"):
            estimator.estimate(x, bare, ShiftedNoisePrior(LATENT_DIM))
    else:
        value = estimator.estimate(x, bare, ShiftedNoisePrior(LATENT_DIM))
        assert value.shape == (3,) and torch.isfinite(value).all()
    assert cls.is_kl == (cls.divergence_name == "kl")


def test_kde_with_an_implicit_prior_fails_in_one_sentence_listing_what_works():
    posterior = ImplicitPosterior(DATA_DIM, LATENT_DIM, noise_dim=2, hidden=(8,))
    with pytest.raises(IncompatibleComponentsError) as info:
        _model("kde", posterior, ShiftedNoisePrior(LATENT_DIM))
    message = str(info.value)
    assert "KernelDensityKL needs log p(z), but ShiftedNoisePrior has no density" in message
    assert ". " not in message and "\n" not in message  # one sentence
    listed = message.split("estimators that work here: ")[1].split(", ")
    assert listed == ["avb", "aae", "kl_nwj", "kl_dv", "reverse_kl", "js", "knn", "mmd", "energy"]


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_builds_exactly_where_its_requirements_hold(name):
    implicit = ImplicitPosterior(DATA_DIM, LATENT_DIM, noise_dim=2, hidden=(8,))
    gaussian = GaussianPosterior(DATA_DIM, LATENT_DIM, hidden=(8,))
    if name in ("sivi", "uivi"):  # they read the mixing noise of a semi-implicit posterior
        gaussian = SemiImplicitPosterior(DATA_DIM, LATENT_DIM, noise_dim=2, hidden=(8,))
    _model(name, gaussian, StandardNormal(LATENT_DIM))  # everything works with both densities
    cls = ESTIMATORS[name]
    works = not (cls.needs_posterior_density or cls.needs_prior_density)
    if works:
        _model(name, implicit, ShiftedNoisePrior(LATENT_DIM))
    else:
        with pytest.raises(IncompatibleComponentsError, match="estimators that work here: avb, "):
            _model(name, implicit, ShiftedNoisePrior(LATENT_DIM))


def _normal(n: int) -> torch.Tensor:
    return torch.randn(n, 2)


def _log_normal(z: torch.Tensor) -> torch.Tensor:
    return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)


@pytest.mark.parametrize(
    ("name", "missing"),
    [("avb_ac", "log_p"), ("kde", "log_p"), ("stein", "log_p"), ("monte_carlo", "log_q")],
)
def test_estimate_divergence_asks_for_a_missing_density(name, missing):
    given = {"log_q": _log_normal, "log_p": _log_normal}
    del given[missing]
    with pytest.raises(ValueError, match=f"pass {missing} "):
        estimate_divergence(name, _normal, _normal, steps=1, batch_size=8, **given)


def test_estimate_divergence_rejects_unknown_names_and_bad_samplers():
    with pytest.raises(ValueError, match="unknown estimator 'nope'; expected one of"):
        estimate_divergence("nope", _normal, _normal)
    with pytest.raises(ValueError, match=r"sample_p\(80\) must return .* \(80, 2\), got \(80, 3\)"):
        estimate_divergence("knn", _normal, lambda n: torch.randn(n, 3), batch_size=8)


def test_estimate_divergence_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = estimate_divergence("knn", _normal, _normal, batch_size=16, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert estimate_divergence("knn", _normal, _normal, batch_size=16, seed=4) == first


@pytest.mark.parametrize(
    ("name", "needed"), [("knn", 2), ("kde", 2), ("stein", 2), ("mmd", 2), ("energy", 2)]
)
def test_sample_based_estimators_need_several_samples_per_x(name, needed):
    estimator = ESTIMATORS[name](DATA_DIM, LATENT_DIM)
    x = torch.zeros(3, DATA_DIM)
    q = PosteriorSample(z=torch.randn(needed - 1, 3, LATENT_DIM))
    with pytest.raises(ValueError, match=f"set train.n_samples >= {needed}"):
        estimator.estimate(x, q, StandardNormal(LATENT_DIM))


def test_knn_needs_k_plus_one_samples_and_mmd_can_match_the_aggregate():
    x, prior = torch.zeros(3, DATA_DIM), StandardNormal(LATENT_DIM)
    with pytest.raises(ValueError, match="set train.n_samples >= 4"):
        ESTIMATORS["knn"](DATA_DIM, LATENT_DIM, k=3).estimate(
            x, PosteriorSample(z=torch.randn(3, 3, LATENT_DIM)), prior
        )
    one_each = PosteriorSample(z=torch.randn(1, 3, LATENT_DIM))
    value = ESTIMATORS["mmd"](DATA_DIM, LATENT_DIM, aggregate=True).estimate(x, one_each, prior)
    assert value.shape == (3,) and torch.isfinite(value).all()
