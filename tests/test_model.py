"""Tests for implicit_vae.model: loss terms and their shapes, the split of parameters between model
and critic, where gradients go, and the refusal of incompatible components."""

from __future__ import annotations

import pytest
import torch

from implicit_vae.divergences import ESTIMATORS
from implicit_vae.likelihoods import LIKELIHOODS
from implicit_vae.model import ImplicitVAE, IncompatibleComponentsError, compatible_estimators
from implicit_vae.posteriors import POSTERIORS
from implicit_vae.priors import StandardNormal

DATA_DIM, LATENT_DIM, BATCH = 6, 2, 5
# The loss is the batch mean of -reconstruction + β·kl, recomputed here in float32.
EXACT_ATOL = 1e-5
# Estimators this file builds by name (other registry entries may need other options).
KNOWN_ESTIMATORS = ("analytic", "monte_carlo", "avb", "avb_ac")
COMPATIBLE = [(p, e) for p in sorted(POSTERIORS) for e in KNOWN_ESTIMATORS
              if ESTIMATORS[e].requirements_error(POSTERIORS[p](DATA_DIM, LATENT_DIM, hidden=(4,)),
                                                  StandardNormal(LATENT_DIM)) is None]


def components(posterior: str = "implicit", estimator: str = "avb", likelihood: str = "bernoulli",
               latent_dims: tuple[int, int, int, int] = (LATENT_DIM,) * 4, data_dims=(DATA_DIM,) * 2):
    """Small posterior, prior, likelihood and estimator; dims per component can be made to disagree."""
    post_cls = POSTERIORS[posterior]
    extra = {"noise_dim": 3} if not posterior.startswith("gaussian") else {}
    if posterior == "noise_basis":
        extra.update(n_basis=2, basis_hidden=(8,))
    post = post_cls(data_dims[0], latent_dims[0], hidden=(16,), **extra)
    prior = StandardNormal(latent_dims[1])
    lik = LIKELIHOODS[likelihood](latent_dims[2], data_dims[1], hidden=(16,))
    est_cls = ESTIMATORS[estimator]
    est = (est_cls(data_dims[0], latent_dims[3], width=16, blocks=1)
           if estimator in ("avb", "avb_ac") else est_cls(data_dims[0], latent_dims[3]))
    return post, prior, lik, est


def model(posterior: str = "implicit", estimator: str = "avb", **kw) -> ImplicitVAE:
    return ImplicitVAE(*components(posterior, estimator), **kw)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randint(0, 2, (BATCH, DATA_DIM)).float()


def test_compatible_pairs_cover_every_posterior():
    """Every posterior works with at least one estimator (guards the parametrisation below)."""
    assert {p for p, _ in COMPATIBLE} == set(POSTERIORS)
    assert ("gaussian", "analytic") in COMPATIBLE and ("implicit", "avb_ac") in COMPATIBLE


@pytest.mark.parametrize(("posterior", "estimator"), COMPATIBLE)
@pytest.mark.parametrize("n_samples", [1, 3])
def test_forward_shapes_and_loss(posterior, estimator, n_samples, x):
    """forward gives (B,) reconstruction and kl, a scalar loss equal to mean(-rec + β·kl), and the
    posterior sample with n_samples draws."""
    vae = model(posterior, estimator, beta=0.7)
    terms = vae(x, n_samples)
    assert terms.reconstruction.shape == terms.kl.shape == (BATCH,)
    assert terms.loss.shape == ()
    assert terms.q.z.shape == (n_samples, BATCH, LATENT_DIM)
    for t in (terms.reconstruction, terms.kl, terms.loss):
        assert torch.isfinite(t).all()
    expected = (-terms.reconstruction + 0.7 * terms.kl).mean()
    torch.testing.assert_close(terms.loss, expected, atol=EXACT_ATOL, rtol=0)
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl, atol=0, rtol=0)


def test_reconstruction_is_mean_log_likelihood_over_samples(x):
    """reconstruction = mean over the n samples of log p(x|z) for the very z in the returned sample."""
    vae = model("gaussian", "analytic")
    terms = vae(x, 4)
    expected = vae.log_likelihood(x, terms.q.z).mean(0)
    torch.testing.assert_close(terms.reconstruction, expected, atol=EXACT_ATOL, rtol=0)
    assert vae.log_likelihood(x, terms.q.z).shape == (4, BATCH)


@pytest.mark.parametrize(("posterior", "estimator"), COMPATIBLE)
def test_parameter_split_is_a_partition(posterior, estimator):
    """model_parameters and critic_parameters are disjoint and together are every trainable
    parameter; the critic's are exactly the estimator's."""
    vae = model(posterior, estimator)
    model_ids = [id(p) for p in vae.model_parameters()]
    critic_ids = [id(p) for p in vae.critic_parameters()]
    trainable = {id(p) for p in vae.parameters() if p.requires_grad}
    assert len(set(model_ids)) == len(model_ids) and len(set(critic_ids)) == len(critic_ids)
    assert not set(model_ids) & set(critic_ids)
    assert set(model_ids) | set(critic_ids) == trainable
    assert set(critic_ids) == {id(p) for p in vae.estimator.parameters() if p.requires_grad}
    assert {id(p) for p in vae.posterior.parameters()} <= set(model_ids)
    assert (len(critic_ids) > 0) == vae.estimator.has_critic


def test_frozen_parameters_are_in_neither_split():
    """A parameter with requires_grad=False (fixed Gaussian σ) is trained by neither optimiser."""
    post, prior, _, est = components("gaussian", "analytic")
    lik = LIKELIHOODS["gaussian"](LATENT_DIM, DATA_DIM, hidden=(16,), fixed_std=0.3)
    vae = ImplicitVAE(post, prior, lik, est)
    frozen = id(lik.log_std)
    assert frozen not in {id(p) for p in vae.model_parameters() + vae.critic_parameters()}


@pytest.mark.parametrize("estimator", ["avb", "avb_ac"])
@pytest.mark.parametrize("posterior", ["implicit", "noise_basis"])
def test_kl_gradient_reaches_sampler(posterior, estimator, x):
    """The KL estimate's gradient reaches every parameter of the implicit sampler g (finite,
    non-zero) and none of the decoder's."""
    vae = model(posterior, estimator)
    vae(x, 2).kl.sum().backward()
    for name, p in vae.posterior.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in vae.likelihood.parameters())


@pytest.mark.parametrize("estimator", ["avb", "avb_ac"])
def test_critic_loss_does_not_touch_the_model(estimator, x):
    """model.critic_loss trains the critic only: no gradient reaches posterior or decoder."""
    vae = model("implicit", estimator)
    out = vae.critic_loss(x, 2)
    assert torch.isfinite(out.loss) and 0.0 <= out.accuracy <= 1.0
    out.loss.backward()
    assert all(p.grad is None for p in vae.model_parameters())
    assert all(p.grad is not None for p in vae.critic_parameters())


def test_loss_gradient_reaches_decoder_and_posterior(x):
    """The total loss trains decoder and posterior together."""
    vae = model("gaussian", "analytic")
    vae(x).loss.backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_analytic_with_implicit_posterior_lists_working_estimators():
    """AnalyticKL with an ImplicitPosterior raises IncompatibleComponentsError (a ValueError) that
    says why and lists the estimators that do work, avb and avb_ac among them."""
    post, prior, lik, _ = components("implicit", "avb")
    with pytest.raises(IncompatibleComponentsError) as err:
        ImplicitVAE(post, prior, lik, ESTIMATORS["analytic"](DATA_DIM, LATENT_DIM))
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert "AnalyticKL" in message and "ImplicitPosterior" in message
    listed = [name.strip() for name in message.split("estimators that work here:")[1].split(",")]
    assert "avb" in listed and "avb_ac" in listed
    assert "analytic" not in listed and "monte_carlo" not in listed


def test_compatible_estimators():
    """compatible_estimators names the estimators whose requirements are met."""
    post, prior, _, _ = components("implicit", "avb")
    names = compatible_estimators(post, prior)
    assert {"avb", "avb_ac"} <= set(names) and not {"analytic", "monte_carlo"} & set(names)
    gaussian, _, _, _ = components("gaussian", "analytic")
    assert set(KNOWN_ESTIMATORS) <= set(compatible_estimators(gaussian, prior))


@pytest.mark.parametrize("which", range(4))
def test_latent_dim_mismatch_raises(which):
    """Any component with a different latent size is refused, with the sizes in the message."""
    dims = [LATENT_DIM] * 4
    dims[which] = LATENT_DIM + 1
    with pytest.raises(IncompatibleComponentsError, match=rf"\[{LATENT_DIM}, {LATENT_DIM + 1}\]"):
        ImplicitVAE(*components("implicit", "avb", latent_dims=tuple(dims)))


def test_data_dim_mismatch_raises():
    """A likelihood over a different data size than the posterior reads is refused."""
    with pytest.raises(IncompatibleComponentsError, match=rf"{DATA_DIM}.*{DATA_DIM + 1}"):
        ImplicitVAE(*components("implicit", "avb", data_dims=(DATA_DIM, DATA_DIM + 1)))


def test_forward_rejects_bad_x():
    """A batch of the wrong width is a ValueError with the expected shape."""
    with pytest.raises(ValueError, match=rf"\(B, {DATA_DIM}\)"):
        model()(torch.zeros(BATCH, DATA_DIM + 1))


def test_reconstruct_and_generate_shapes(x):
    """reconstruct gives (B, data_dim), generate (n, data_dim), Bernoulli means in [0, 1], no graph."""
    vae = model()
    rec, gen = vae.reconstruct(x), vae.generate(7)
    assert rec.shape == (BATCH, DATA_DIM) and gen.shape == (7, DATA_DIM)
    for out in (rec, gen):
        assert ((out >= 0) & (out <= 1)).all() and not out.requires_grad
    assert vae.latent_dim == LATENT_DIM
