"""One default per option: every estimator and posterior option the config exposes as a typed key
has the same default in the config as in the class that reads it (so the library and the CLI build
the same model). The gaussian_skip rule, shared by both, is tested in
tests/divergences/test_gaussian_skip.py."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from implicit_vae.config.factory import _ESTIMATOR_KEYS, _POSTERIOR_KEYS
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
