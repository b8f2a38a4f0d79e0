"""Tests for implicit_vae.config and implicit_vae.factory: defaults, YAML files and overrides, and
building every shipped config. Bad config input (one ConfigError per kind, through the CLI and the
library) is the config part of the table in tests/test_bad_inputs.py."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest
import torch

from implicit_vae.config import Config, config_from_dict, load_config, parse_override
from implicit_vae.config.factory import build_model
from implicit_vae.divergences import ESTIMATORS
from implicit_vae.model import ImplicitVAE
from implicit_vae.posteriors import POSTERIORS

SHIPPED = sorted(
    Path(str(p)) for p in resources.files("implicit_vae").joinpath("configs").iterdir()
    if p.name.endswith(".yaml")
)
SMALL = ["model.hidden=[16]", "divergence.critic_width=16", "divergence.critic_blocks=1",
         "model.n_basis=2", "model.noise_dim=3"]


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_load():
    """With no file and no overrides the result is Config()'s defaults, and it builds."""
    cfg = load_config()
    assert cfg == Config()
    assert cfg.model.posterior == "noise_basis" and cfg.divergence.name == "avb_ac"
    assert isinstance(build_model(cfg, 64), ImplicitVAE)


def test_yaml_file_then_overrides(tmp_path):
    """File values replace defaults; overrides (read as YAML) replace file values; the rest stay."""
    path = write(tmp_path, "model:\n  latent_dim: 4\n  hidden: [32, 16]\ntrain:\n  lr: 0.01\n")
    cfg = load_config(path, ["train.lr=0.002", "model.inject_noise=true", "train.threads=2"])
    assert cfg.model.latent_dim == 4 and cfg.model.hidden == [32, 16]
    assert cfg.train.lr == 0.002 and cfg.model.inject_noise is True and cfg.train.threads == 2
    assert cfg.train.batch_size == Config().train.batch_size


def test_yaml11_exponent_without_dot_is_a_float(tmp_path):
    """YAML 1.1 reads `1e-4` (no dot) as a string; float fields accept it as 1e-4, in a file and in
    an override."""
    cfg = load_config(write(tmp_path, "train:\n  lr: 1e-4\n  critic_lr: 3E-5\n"))
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.critic_lr == 3e-5
    assert load_config(overrides=["train.lr=1e-4"]).train.lr == 1e-4


def test_int_accepted_for_float_and_null_for_optional():
    """An integer is a valid float (stored as float); null clears an optional field."""
    cfg = load_config(overrides=["model.beta=2", "data.path=null", "train.threads=null"])
    assert cfg.model.beta == 2.0 and isinstance(cfg.model.beta, float)
    assert cfg.data.path is None and cfg.train.threads is None


def test_empty_file_gives_defaults(tmp_path):
    """An empty YAML file is no settings, not an error."""
    assert load_config(write(tmp_path, "")) == Config()


def test_save_and_dict_round_trip(tmp_path):
    """Config.save -> load_config and to_dict -> config_from_dict reproduce the config exactly."""
    cfg = load_config(overrides=["model.latent_dim=3", "train.lr=1e-4", "model.hidden=[8, 4]"])
    cfg.save(tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


def test_parse_override():
    """section.key=value splits at the first '=', reading the value as YAML."""
    assert parse_override("model.hidden=[64, 32]") == ("model.hidden", [64, 32])
    assert parse_override("train.run_dir=runs/a=b") == ("train.run_dir", "runs/a=b")
    assert parse_override(" train.lr = 1.0e-3") == ("train.lr", 1e-3)


POSSIBLE = [("gaussian", e) for e in ("analytic", "monte_carlo", "avb", "avb_ac")] + [
    (p, e) for p in ("implicit", "noise_basis") for e in ("avb", "avb_ac")]


@pytest.mark.parametrize(("posterior", "estimator"), POSSIBLE)
def test_build_model_options_reach_components(posterior, estimator):
    """Every possible posterior/estimator pair builds, with the configured classes and sizes."""
    cfg = load_config(overrides=[*SMALL, "model.latent_dim=3", f"model.posterior={posterior}",
                                 f"divergence.name={estimator}"])
    vae = build_model(cfg, 5)
    assert vae.latent_dim == 3 and vae.posterior.data_dim == 5 and vae.likelihood.data_dim == 5
    assert type(vae.posterior) is POSTERIORS[posterior]
    assert type(vae.estimator) is ESTIMATORS[estimator]
    if vae.estimator.has_critic:
        assert vae.estimator.critic.f.head.in_features == 16
    terms = vae(torch.randint(0, 2, (4, 5)).float())
    assert terms.kl.shape == (4,) and torch.isfinite(terms.loss)


def test_shipped_configs_exist():
    """The package ships the documented configs (guards the parametrisation below)."""
    names = {p.name for p in SHIPPED}
    assert {"default.yaml", "digits_avb.yaml", "digits_vae.yaml", "toy4_avb.yaml",
            "toy4_vae.yaml", "digits_aae_mixture.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_config_loads_and_builds(path):
    """Each shipped YAML loads without error and builds a model for its data's size (4 for the
    toy, (1, 8, 8) digits, (1, 28, 28) MNIST and binarised MNIST) whose forward pass gives finite
    (B,) terms."""
    cfg = load_config(path)
    event_shape = {"toy4": (4,), "digits": (1, 8, 8), "mnist": (1, 28, 28),
                   "binarized_mnist": (1, 28, 28)}[cfg.data.name]
    if cfg.model.architecture == "conv":
        cfg.model.conv_width = 4  # the layout, at a width that builds in a moment
    vae = build_model(cfg, event_shape)
    data_dim = math.prod(event_shape)
    x = torch.randint(0, 2, (8, data_dim)).float()
    terms = vae(x)
    assert terms.reconstruction.shape == terms.kl.shape == (8,)
    assert torch.isfinite(terms.loss)
    assert vae.latent_dim == cfg.model.latent_dim and vae.beta == cfg.model.beta
    assert type(vae.posterior) is POSTERIORS[cfg.model.posterior]
    assert type(vae.estimator) is ESTIMATORS[cfg.divergence.name]
