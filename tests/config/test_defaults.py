"""One default per option: every estimator and posterior option the config exposes as a typed key
has the same default in the config as in the class that reads it (so the library and the CLI build
the same model), and the gaussian_skip the factory chooses is the class's own default under a
standard normal prior."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from implicit_vae.config import load_config
from implicit_vae.config.factory import _ESTIMATOR_KEYS, _POSTERIOR_KEYS, build_model
from implicit_vae.config.schema import DivergenceConfig, ModelConfig
from implicit_vae.divergences import ESTIMATORS
from implicit_vae.posteriors import POSTERIORS


def _config_defaults(section: type) -> dict:
    return {f.name: f.default for f in dataclasses.fields(section)}


def _class_default(cls: type, argument: str):
    parameter = inspect.signature(cls.__init__).parameters.get(argument)
    return inspect.Parameter.empty if parameter is None else parameter.default


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_estimator_defaults_agree_with_the_config(name):
    config = _config_defaults(DivergenceConfig)
    for key, argument in _ESTIMATOR_KEYS.items():
        default = _class_default(ESTIMATORS[name], argument)
        if default is not inspect.Parameter.empty:
            assert default == config[key], (name, key)


@pytest.mark.parametrize("name", sorted(POSTERIORS))
def test_posterior_defaults_agree_with_the_config(name):
    config = _config_defaults(ModelConfig)
    for key, argument in _POSTERIOR_KEYS.items():
        default = _class_default(POSTERIORS[name], argument)
        if default is not inspect.Parameter.empty:
            assert default == config[key], (name, key)


SKIP_TAKERS = sorted(n for n, c in ESTIMATORS.items() if "gaussian_skip" in inspect.signature(
    c.__init__).parameters)  # fmt: skip


@pytest.mark.parametrize("name", SKIP_TAKERS)
def test_factory_gaussian_skip_is_the_class_default_under_a_standard_normal_prior(name):
    """With the default config (a standard normal prior) the factory's critic has the skip exactly
    when the class's default critic does."""
    cfg = load_config(overrides=[
        f"divergence.name={name}", "model.posterior=implicit", "model.hidden=[8]",
        "divergence.critic_width=8", "divergence.critic_blocks=1", "train.n_samples=2",
    ])  # fmt: skip
    built = build_model(cfg, 4).estimator.critic
    default = _class_default(ESTIMATORS[name], "gaussian_skip")
    assert bool(getattr(built, "gaussian_skip", False)) == default, name
