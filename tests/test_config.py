"""Tests for implicit_vae.config and implicit_vae.factory: defaults, YAML files and overrides, one
ConfigError per kind of bad input (naming the key and what is allowed), and building every shipped
config."""

from __future__ import annotations

import dataclasses
import math
import re
from importlib import resources
from pathlib import Path

import pytest
import torch

from implicit_vae.config import Config, ConfigError, config_from_dict, load_config, parse_override
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
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("model.latent_dim")


# (override, words the message must contain: the key and what is allowed)
BAD_OVERRIDES = [
    # unknown section / key
    ("optim.lr=0.1", ["optim.lr", "data, model, divergence, train"]),
    ("lr=0.1", ["'lr'", "section.key"]),
    ("model.width=3", ["model.width", "latent_dim", "posterior", "hidden"]),
    # wrong type
    ("model.latent_dim=abc", ["model.latent_dim", "'abc'", "an integer"]),
    ("model.latent_dim=2.5", ["model.latent_dim", "2.5", "an integer"]),
    ("model.latent_dim=1e3", ["model.latent_dim", "an integer"]),
    ("model.latent_dim=true", ["model.latent_dim", "an integer"]),
    ("train.lr=fast", ["train.lr", "a number"]),
    ("model.hidden=abc", ["model.hidden", "a list of an integer"]),
    ("model.hidden=64", ["model.hidden", "a list"]),
    ("model.hidden=[64, 2.5]", ["model.hidden", "a list of an integer"]),
    ("model.inject_noise=1", ["model.inject_noise", "true/false"]),
    ("data.path=3", ["data.path", "a string or null"]),
    ("train.run_dir=", ["train.run_dir", "a string"]),
    # sizes and ranges
    ("model.latent_dim=0", ["model.latent_dim", ">= 1"]),
    ("model.latent_dim=-2", ["model.latent_dim", ">= 1"]),
    ("train.batch_size=0", ["train.batch_size", ">= 1"]),
    ("model.noise_dim=-1", ["model.noise_dim", ">= 1"]),
    ("divergence.critic_width=0", ["divergence.critic_width", ">= 1"]),
    ("divergence.critic_blocks=-1", ["divergence.critic_blocks", ">= 0"]),
    ("model.hidden=[64, 0]", ["model.hidden", ">= 1"]),
    ("model.beta=-0.5", ["model.beta", ">= 0.0"]),
    ("train.lr=0", ["train.lr", "> 0.0"]),
    ("train.critic_lr=-1e-3", ["train.critic_lr", "> 0.0"]),
    ("data.val_fraction=0.6", ["data.val_fraction", "<= 0.5"]),
    ("data.test_fraction=-0.1", ["data.test_fraction", ">= 0.0"]),
    ("train.beta1=1.0", ["train.beta1", "<= 0.999"]),
    ("data.toy4_size=3", ["data.toy4_size", ">= 4"]),
    # not finite
    ("train.lr=.nan", ["train.lr", "finite"]),
    ("train.lr=nan", ["train.lr", "finite"]),
    ("model.beta=.inf", ["model.beta", "finite"]),
    # unknown names
    ("model.posterior=flow", ["model.posterior", "'flow'", "gaussian", "implicit", "noise_basis"]),
    ("model.likelihood=poisson", ["model.likelihood", "bernoulli", "gaussian"]),
    ("model.prior=laplace", ["model.prior", "standard_normal"]),
    ("model.activation=gelu", ["model.activation", "elu", "relu", "tanh"]),
    ("divergence.name=gan", ["divergence.name", "'gan'", "analytic", "monte_carlo", "avb", "avb_ac"]),
    ("data.name=cifar", ["data.name", "toy4", "digits", "mnist", "file"]),
    ("data.binarize=otsu", ["data.binarize", "dynamic", "fixed", "none"]),
]


@pytest.mark.parametrize(("override", "words"), BAD_OVERRIDES, ids=[o for o, _ in BAD_OVERRIDES])
def test_bad_override_names_key_and_allowed(override, words):
    """Each bad override is a ConfigError whose message names the key and what is allowed."""
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize("key", [f"{s}.{f.name}" for s in ("data", "model", "divergence", "train")
                                 for f in dataclasses.fields(getattr(Config(), s))
                                 if f.metadata.get("choices")])
def test_every_choice_field_lists_all_choices(key):
    """For every field with a fixed set of names, an unknown name lists every allowed one."""
    section, name = key.split(".")
    fields = dataclasses.fields(getattr(Config(), section))
    allowed = next(f for f in fields if f.name == name).metadata["choices"]
    with pytest.raises(ConfigError, match=re.escape(key)) as err:
        load_config(overrides=[f"{key}=no_such_name"])
    shown = [str(c).lower() if isinstance(c, bool) else c for c in allowed]  # true/false as YAML
    assert all(c in str(err.value) for c in shown)


@pytest.mark.parametrize("override", ["train.threads=-1", "train.threads=0",
                                      "data.mnist_train_limit=0", "data.mnist_train_limit=-5"])
def test_optional_sizes_must_be_positive(override):
    """Optional sizes, when given, must be >= 1 like the other sizes."""
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert override.split("=")[0] in str(err.value) and ">= 1" in str(err.value)


def test_fractions_must_leave_training_data():
    """val_fraction + test_fraction >= 0.9 is refused, naming both keys and the bound."""
    with pytest.raises(ConfigError, match=r"data.val_fraction \+ data.test_fraction.*below 0.9"):
        load_config(overrides=["data.val_fraction=0.5", "data.test_fraction=0.4"])


def test_file_data_needs_path():
    """data.name=file without data.path is refused naming data.path; with a path it loads."""
    with pytest.raises(ConfigError, match=r"data.path: required when data.name is 'file'"):
        load_config(overrides=["data.name=file"])
    assert load_config(overrides=["data.name=file", "data.path=x.npz"]).data.path == "x.npz"


def test_missing_file(tmp_path):
    """A config path that does not exist is named in the error."""
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"{str(missing)!r} does not exist")):
        load_config(missing)


def test_directory_is_not_a_file(tmp_path):
    """A directory given as the config file is refused like a missing file."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path)


def test_invalid_yaml(tmp_path):
    """Unparsable YAML is a ConfigError naming the file, not a yaml exception."""
    path = write(tmp_path, "model: [1, 2\n")
    with pytest.raises(ConfigError, match=re.escape(f"{str(path)!r} is not valid YAML")):
        load_config(path)


def test_undecodable_file(tmp_path):
    """A binary file is reported as invalid YAML."""
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("text", ["- model\n- train\n", "42\n", "just a string\n"])
def test_top_level_must_be_mapping(tmp_path, text):
    """A file whose top level is not a mapping names the sections it should contain."""
    with pytest.raises(ConfigError, match="expected a mapping of sections.*data, model"):
        load_config(write(tmp_path, text))


def test_unknown_section_in_file(tmp_path):
    """An unknown section in a file names itself and the known sections."""
    with pytest.raises(ConfigError, match="unknown section 'optim'.*data, model, divergence, train"):
        load_config(write(tmp_path, "optim:\n  lr: 0.1\n"))


def test_unknown_key_in_file(tmp_path):
    """An unknown key in a file names section.key and the keys the section accepts."""
    with pytest.raises(ConfigError, match=r"'model.width'.*model accepts latent_dim"):
        load_config(write(tmp_path, "model:\n  width: 3\n"))


def test_section_must_be_mapping(tmp_path):
    """A section given as a scalar is refused, naming the section."""
    with pytest.raises(ConfigError, match="section 'model' must be a mapping"):
        load_config(write(tmp_path, "model: 3\n"))


def test_bad_value_in_file_names_key(tmp_path):
    """Type and range errors in a file name section.key like overrides do."""
    with pytest.raises(ConfigError, match=r"train.batch_size: 'many'.*an integer"):
        load_config(write(tmp_path, "train:\n  batch_size: many\n"))
    with pytest.raises(ConfigError, match=r"model.latent_dim: 0 is out of range; expected >= 1"):
        load_config(write(tmp_path, "model:\n  latent_dim: 0\n"))


def test_config_from_dict_validates():
    """A stored config is validated like a file."""
    raw = Config().to_dict()
    raw["model"]["posterior"] = "flow"
    with pytest.raises(ConfigError, match="model.posterior"):
        config_from_dict(raw)


@pytest.mark.parametrize(("posterior", "estimator"),
                         [("implicit", "analytic"), ("noise_basis", "analytic"),
                          ("implicit", "monte_carlo")])
def test_build_model_refuses_impossible_estimator(posterior, estimator):
    """An estimator that cannot work with the posterior is a ConfigError naming divergence.name and
    listing the estimators that can (avb, avb_ac)."""
    cfg = load_config(overrides=[*SMALL, f"model.posterior={posterior}",
                                 f"divergence.name={estimator}"])
    with pytest.raises(ConfigError) as err:
        build_model(cfg, 4)
    message = str(err.value)
    assert "divergence.name" in message and repr(estimator) in message
    listed = [n.strip() for n in message.split("choose one of")[1].split(",")]
    assert "avb" in listed and "avb_ac" in listed and estimator not in listed


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
