"""The networks a config asks for: conv for images, a user's own builders by import path, and the
options mappings that reach every constructor argument."""

from __future__ import annotations

import pytest
import torch

from implicit_vae.config import (
    ACTIVATION_NAMES,
    ARCHITECTURE_NAMES,
    ESTIMATOR_NAMES,
    LIKELIHOOD_NAMES,
    POSTERIOR_NAMES,
    PRIOR_NAMES,
    SCHEDULE_NAMES,
    ConfigError,
    load_config,
)
from implicit_vae.config.factory import UnusedOptionWarning, build_model
from implicit_vae.divergences import ESTIMATORS
from implicit_vae.likelihoods import LIKELIHOODS
from implicit_vae.networks import ACTIVATIONS, ConvDecoder, ConvEncoder, ConvNoiseEncoder
from implicit_vae.posteriors import POSTERIORS
from implicit_vae.priors import PRIORS
from implicit_vae.training.schedules import SCHEDULES

SMALL = ["model.hidden=[16]", "divergence.critic_width=16", "divergence.critic_blocks=1",
         "model.conv_width=4"]  # fmt: skip
DIGIT = (1, 8, 8)


def test_schema_names_match_the_registries():
    """The schema lists names without importing components; they must be the registries' keys."""
    assert tuple(ESTIMATORS) == ESTIMATOR_NAMES
    assert tuple(POSTERIORS) == POSTERIOR_NAMES
    assert tuple(PRIORS) == PRIOR_NAMES
    assert tuple(LIKELIHOODS) == LIKELIHOOD_NAMES
    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
    assert tuple(SCHEDULES) == SCHEDULE_NAMES
    assert ARCHITECTURE_NAMES == ("mlp", "conv")


@pytest.mark.parametrize("posterior", ["gaussian", "gaussian_full", "implicit", "noise_basis"])
def test_conv_architecture_builds_conv_networks_for_every_posterior(posterior):
    """model.architecture=conv puts AVB's conv nets in the posterior, decoder and critic; a batch of
    images or of flat rows gives finite per-example terms and gradients reach the conv layers."""
    estimator = "analytic" if posterior.startswith("gaussian") else "avb_ac"
    cfg = load_config(overrides=[*SMALL, "model.architecture=conv", f"model.posterior={posterior}",
                                 f"divergence.name={estimator}"])  # fmt: skip
    vae = build_model(cfg, DIGIT)
    if posterior == "implicit":
        assert isinstance(vae.posterior.net, ConvNoiseEncoder)
    elif posterior == "noise_basis":
        assert isinstance(vae.posterior.trunk, ConvEncoder)
    else:
        assert isinstance(vae.posterior.net[0], ConvEncoder)
    assert isinstance(vae.likelihood.decoder, ConvDecoder)
    if vae.estimator.has_critic:
        assert vae.estimator.critic.x_features is not None
    x = torch.randint(0, 2, (4, *DIGIT)).float()
    terms = vae(x)
    assert terms.kl.shape == (4,) and torch.isfinite(terms.loss)
    terms.loss.backward()
    first_conv = next(m for m in vae.posterior.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    flat = vae(x.view(4, -1))  # the data pipeline's flat rows give the same shapes
    assert flat.kl.shape == (4,)


def test_conv_on_flat_data_is_a_config_error():
    cfg = load_config(overrides=[*SMALL, "model.architecture=conv"])
    with pytest.raises(ConfigError) as err:
        build_model(cfg, 4)
    assert "model.architecture" in str(err.value) and "\n" not in str(err.value)


def test_user_builders_by_import_path_are_used():
    """model.encoder / decoder / critic name a user's functions; their modules end up in the
    model and train."""
    cfg = load_config(overrides=[*SMALL, "model.encoder=user_networks:conv_encoder",
                                 "model.decoder=user_networks:decoder",
                                 "model.critic=user_networks:critic_features"])  # fmt: skip
    vae = build_model(cfg, DIGIT)
    assert isinstance(vae.posterior.trunk[0], torch.nn.Conv2d) and vae.posterior.trunk[3].out_features == 32
    assert isinstance(vae.likelihood.decoder[1], torch.nn.Unflatten)
    assert vae.estimator.critic.x_features.out_features == 16
    x = torch.randint(0, 2, (6, 64)).float()
    terms = vae(x)
    terms.loss.backward()
    assert vae.posterior.trunk[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("override", "expected"), [
    ("model.encoder=no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("model.encoder=user_networks:missing", "has no function 'missing'"),
    ("model.encoder=user_networks", "is not of the form 'package.module:function'"),
    ("model.encoder=user_networks:wrong_encoder", "expected (2, F) features"),
    ("model.encoder=user_networks:not_a_module", "expected an nn.Module"),
    ("model.decoder=user_networks:wrong_decoder", "expected (2, 1, 8, 8)"),
    ("model.decoder=user_networks:critic_features", "the network failed on an input of shape (2, 8)"),
])  # fmt: skip
def test_bad_builder_paths_are_one_line_errors_naming_the_key(override, expected):
    cfg = load_config(overrides=[*SMALL, override])
    with pytest.raises(ConfigError) as err:
        build_model(cfg, DIGIT)
    message = str(err.value)
    assert message.startswith(override.split("=")[0] + ":") and expected in message
    assert "\n" not in message


@pytest.mark.parametrize(("overrides", "read"), [
    (["model.posterior=implicit", "model.posterior_options={moment_samples: 40}"],
     lambda vae: vae.posterior.moment_samples == 40),
    (["model.posterior=noise_basis", "model.posterior_options={basis_hidden: [8]}"],
     lambda vae: len(vae.posterior.bases.weights) == 2),
    (["divergence.name=knn", "divergence.options={k: 4}", "train.n_samples=8",
      "model.posterior=implicit"], lambda vae: vae.estimator.k == 4),
    (["divergence.name=kde", "divergence.options={bandwidth: scott}", "train.n_samples=8",
      "model.posterior=implicit"], lambda vae: vae.estimator.bandwidth == "scott"),
    (["divergence.name=mmd", "divergence.options={scales: [1.0, 4.0]}", "train.n_samples=8",
      "model.posterior=implicit"], lambda vae: tuple(vae.estimator.scales) == (1.0, 4.0)),
    (["divergence.name=kl_dv", "divergence.options={critic_objective: dv}",
      "model.posterior=implicit"], lambda vae: vae.estimator.critic_objective == "dv"),
    (["model.likelihood=gaussian", "model.likelihood_options={fixed_std: 0.5}"],
     lambda vae: not vae.likelihood.log_std.requires_grad),
    (["model.posterior=implicit", "model.prior=implicit", "divergence.name=avb",
      "model.prior_critic_options={width: 8, prior_samples: 64}"],
     lambda vae: vae.prior_critic.prior_samples == 64
     and vae.prior_critic.critic.f.stem[0].out_features == 8),
    (["model.prior=gaussian_mixture", "model.prior_options={radius: 2.0}"],
     lambda vae: torch.allclose(vae.prior.means.norm(dim=-1), torch.tensor(2.0))),
])  # fmt: skip
def test_options_mappings_reach_the_constructor(overrides, read):
    vae = build_model(load_config(overrides=[*SMALL, *overrides]), 6)
    assert read(vae)


@pytest.mark.parametrize(("overrides", "key"), [
    (["model.posterior_options={n_bases: 4}"], "model.posterior_options"),
    (["divergence.options={k: 3}"], "divergence.options"),  # avb_ac takes no k
    (["model.likelihood_options={std: 1}"], "model.likelihood_options"),
    (["model.prior_critic_options={width: 8}"], "model.prior_critic_options"),  # fixed prior
    (["divergence.name=knn", "divergence.options={k: 0}", "train.n_samples=8",
      "model.posterior=implicit"], "divergence.options"),  # a bad value, refused by the class
])  # fmt: skip
def test_an_option_the_class_does_not_accept_is_an_error(overrides, key):
    with pytest.raises(ConfigError) as err:
        build_model(load_config(overrides=[*SMALL, *overrides]), 6)
    assert str(err.value).startswith(key + ":") and "\n" not in str(err.value)


def test_a_size_the_chosen_class_does_not_read_warns():
    """model.n_basis on an implicit posterior is not silently dropped: it warns, naming the key."""
    cfg = load_config(overrides=[*SMALL, "model.posterior=implicit", "model.n_basis=3"])
    with pytest.warns(UnusedOptionWarning, match="model.n_basis"):
        build_model(cfg, 6)


def test_empty_hidden_means_linear_encoder_and_decoder():
    """model.hidden=[] (as its help says): no hidden layer, one affine map each way."""
    cfg = load_config(
        overrides=["model.hidden=[]", "model.posterior=gaussian", "divergence.name=analytic"]
    )
    model = build_model(cfg, 64)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    d, z = 64, cfg.model.latent_dim
    assert count(model.posterior) == d * 2 * z + 2 * z  # x -> (μ, log σ)
    assert count(model.likelihood) == z * d + d  # z -> Bernoulli logits
