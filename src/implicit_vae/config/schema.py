"""Typed configuration: YAML files and ``section.key=value`` overrides, validated with clear errors.

Every problem raises :class:`ConfigError` with one sentence naming the key, the value and what is
allowed; the CLI prints that sentence and exits with code 2.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The names of each component family. The schema imports nothing of the library, so a config is
# checked without loading torch; tests/config/test_schema.py checks that these match the registries.
ESTIMATOR_NAMES = (
    "analytic", "monte_carlo", "avb", "avb_ac", "aae", "kl_nwj", "kl_dv", "reverse_kl", "js",
    "kde", "stein", "knn", "mmd", "energy", "sivi", "uivi",
)  # fmt: skip
LIKELIHOOD_NAMES = ("bernoulli", "gaussian")
ACTIVATION_NAMES = ("elu", "relu", "leaky_relu", "tanh", "softplus")
POSTERIOR_NAMES = ("gaussian", "gaussian_full", "implicit", "noise_basis", "semi_implicit")
PRIOR_NAMES = ("standard_normal", "gaussian_mixture", "implicit", "samples")
SCHEDULE_NAMES = ("constant", "cosine")
ARCHITECTURE_NAMES = ("mlp", "conv")


class ConfigError(ValueError):
    """A configuration value, key or file is invalid."""


def _choices(*names: str) -> dict:
    return {"choices": names}


def _at_least(low: float) -> dict:
    return {"min": low}


@dataclass
class DataConfig:
    name: str = field(
        default="digits", metadata=_choices("toy4", "digits", "mnist", "file", "binarized_mnist")
    )  # binarized_mnist: the fixed 0/1 benchmark with its own train/valid/test split
    path: str | None = None  # IDX dir (mnist); .amat dir (binarized_mnist); npz/npy/csv/amat file
    binarize: str = field(
        default="auto", metadata=_choices("auto", "dynamic", "fixed", "none")
    )  # auto: dynamic for grey levels, nothing for 0/1 data (binarized_mnist allows auto or none)
    val_fraction: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})
    test_fraction: float = field(default=0.1, metadata={"min": 0.0, "max": 0.5})
    toy4_size: int = field(default=4096, metadata=_at_least(4))  # examples drawn for toy4
    mnist_train_limit: int | None = field(
        default=None, metadata=_at_least(1)
    )  # mnist, binarized_mnist: use only the first N training images (None: all)
    image_shape: list[int] | None = field(
        default=None, metadata=_at_least(1)
    )  # file: rows are images of [H, W] or [C, H, W] (digits and mnist know theirs)


@dataclass
class ModelConfig:
    latent_dim: int = field(default=8, metadata=_at_least(1))
    posterior: str = field(default="noise_basis", metadata=_choices(*POSTERIOR_NAMES))
    likelihood: str = field(default="bernoulli", metadata=_choices(*LIKELIHOOD_NAMES))
    prior: str = field(default="standard_normal", metadata=_choices(*PRIOR_NAMES))
    prior_components: int = field(default=10, metadata=_at_least(1))  # gaussian_mixture: K
    prior_learnable: bool = True  # gaussian_mixture: train weights, means and scales
    prior_noise_dim: int = field(default=8, metadata=_at_least(1))  # implicit prior: η dimension
    prior_hidden: list[int] = field(
        default_factory=lambda: [64, 64], metadata=_at_least(1)
    )  # implicit prior: generator widths
    prior_path: str | None = None  # samples: .npy file of shape (N, latent_dim)
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # encoder and decoder widths
    activation: str = field(default="elu", metadata=_choices(*ACTIVATION_NAMES))
    noise_dim: int = field(default=16, metadata=_at_least(1))  # ε dimension of implicit samplers
    n_basis: int = field(default=16, metadata=_at_least(1))  # noise_basis: number of v_i(ε_i)
    inject_noise: bool = False  # implicit: also add a linear map of ε at every hidden layer
    moment_samples: int | None = field(
        default=None, metadata=_at_least(2)
    )  # implicit: independent draws per x for adaptive contrast's moments (None: 10·latent_dim)
    posterior_sigma: str = field(
        default="global", metadata=_choices("global", "x", "x_eps")
    )  # semi_implicit: σ of N(z; μ(x, ε), σ²) is one vector, a network of x, or of (x, ε)
    beta: float = field(default=1.0, metadata=_at_least(0.0))  # KL weight; 1 is the ELBO
    architecture: str = field(
        default="mlp", metadata=_choices(*ARCHITECTURE_NAMES)
    )  # mlp, or conv: AVB's convolutional networks (image data only)
    conv_width: int | None = field(
        default=None, metadata=_at_least(1)
    )  # conv: channels of the first conv layer, doubling after (None: AVB's 64, 32 below 16 px)
    encoder: str | None = None  # your own encoder builder, "package.module:function"
    decoder: str | None = None  # your own decoder builder, "package.module:function"
    critic: str | None = None  # your own builder of the critic's x-branch, "package.module:function"
    posterior_options: dict = field(
        default_factory=dict
    )  # further keyword arguments of the posterior class (e.g. moment_samples, basis_hidden)
    prior_options: dict = field(default_factory=dict)  # further keyword arguments of the prior
    likelihood_options: dict = field(default_factory=dict)  # e.g. fixed_std for gaussian
    prior_critic_options: dict = field(
        default_factory=dict
    )  # learnable implicit prior: the aggregate critic D(z) (width, blocks, prior_samples)


@dataclass
class DivergenceConfig:
    name: str = field(default="avb_ac", metadata=_choices(*ESTIMATOR_NAMES))
    # critic_width, critic_blocks: the library's one critic size, divergences.critics.CRITIC_WIDTH
    # and CRITIC_BLOCKS (tests/divergences/test_gaussian_skip.py checks that they agree)
    critic_width: int = field(default=256, metadata=_at_least(1))
    critic_blocks: int = field(default=3, metadata=_at_least(0))
    gaussian_skip: bool | str = field(
        default="auto", metadata=_choices("auto", True, False)
    )  # ½‖z‖² in the critic: auto = on iff avb/aae with a standard normal prior; false = off;
    # true = auto too (what true meant before auto existed: old configs load and resume unchanged);
    # to force it on elsewhere: divergence.options.gaussian_skip=true (refused where meaningless)
    waymarks: int = field(
        default=1, metadata=_at_least(1)
    )  # avb/avb_ac/aae: K telescoping classifiers across the density chasm (1: a single critic)
    contrast: str = field(
        default="diagonal", metadata=_choices("diagonal", "full")
    )  # avb_ac: normalise z by q's standard deviations (AVB) or by its full covariance
    contrast_scale: float = field(
        default=1.0, metadata={"min": 0.0, "exclusive_min": True}
    )  # avb_ac: contrast N(μ, s²Σ); s > 1 lets the critic see, and charge, q's heavy tails
    mixing_samples: int = field(
        default=100, metadata=_at_least(1)
    )  # sivi: K fresh mixing draws beside the generating one in log q̂ (SIVI's code: 1, then 50);
    # uivi: the same K, for its reported value only
    options: dict = field(
        default_factory=dict
    )  # further keyword arguments of the estimator class (e.g. k for knn, bandwidth for kde)


@dataclass
class TrainConfig:
    max_steps: int = field(default=3000, metadata=_at_least(1))  # model (primal) updates
    batch_size: int = field(default=128, metadata=_at_least(1))
    seed: int = field(default=0, metadata=_at_least(0))
    lr: float = field(default=1e-3, metadata={"min": 0.0, "exclusive_min": True})
    critic_lr: float = field(default=1e-3, metadata={"min": 0.0, "exclusive_min": True})
    lr_schedule: str = field(
        default="constant", metadata=_choices(*SCHEDULE_NAMES)
    )  # factor on both learning rates: constant, or cosine decay to 0 over max_steps
    beta1: float = field(default=0.5, metadata={"min": 0.0, "max": 0.999})  # AVB uses 0.5
    beta2: float = field(default=0.999, metadata={"min": 0.0, "max": 0.9999})
    critic_steps: int = field(default=1, metadata=_at_least(0))  # critic updates per model update
    n_samples: int = field(default=1, metadata=_at_least(1))  # z samples per example
    checkpoint_every: int = field(default=500, metadata=_at_least(1))
    val_every: int = field(default=250, metadata=_at_least(1))
    select_by: str = field(
        default="loss", metadata=_choices("loss", "iw_bound", "ais")
    )  # best.ckpt: lowest validation loss, or highest IW bound / AIS estimate of log p(x)
    select_examples: int = field(
        default=256, metadata=_at_least(1)
    )  # iw_bound, ais: computed on the first N validation examples, the same ones every time
    select_samples: int = field(
        default=64, metadata=_at_least(1)
    )  # iw_bound: K importance samples per example (semi-implicit: each with K mixing draws)
    select_ais_chains: int = field(default=4, metadata=_at_least(1))  # ais: chains per example
    select_ais_steps: int = field(default=100, metadata=_at_least(1))  # ais: annealing steps
    log_every: int = field(default=10, metadata=_at_least(1))
    run_dir: str = "runs/default"
    progress_bar: bool = True
    threads: int | None = field(
        default=None, metadata=_at_least(1)
    )  # torch intra-op threads (None: torch's default)
    on_nonfinite: str = field(
        default="stop", metadata=_choices("stop", "skip")
    )  # NaN/inf in a loss, gradient or weight: stop, or skip the batch
    max_consecutive_skips: int = field(default=50, metadata=_at_least(1))  # skip: then stop anyway
    detect_anomaly: bool = False  # debug: torch.autograd.detect_anomaly around every update (slow)
    saturation_threshold: float = field(
        default=0.99, metadata={"min": 0.5, "max": 1.0}
    )  # critic accuracy above which a step counts as saturated
    saturation_patience: int = field(default=200, metadata=_at_least(1))  # steps before the alarm
    strategy: str = field(
        default="auto", metadata=_choices("auto", "ddp")
    )  # auto: DDP when torchrun starts several processes; ddp: always DDP (needs torchrun)
    accelerator: str = field(
        default="auto", metadata=_choices("auto", "cpu", "gpu", "cuda", "mps")
    )  # auto: a CUDA GPU if one is visible, else the CPU; gpu is cuda
    devices: int | None = field(
        default=None, metadata=_at_least(1)
    )  # devices per machine; None: 1, or torchrun's --nproc_per_node (one process per device)
    precision: str = field(
        default="32-true", metadata=_choices("32-true", "bf16-mixed", "16-mixed")
    )  # mixed: autocast forward passes, fp32 weights; 16-mixed (CUDA only) adds a GradScaler


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML, atomically (temporary file, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        tmp.replace(path)


SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(Config)}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {
        type(None): "null",
        bool: "true/false",
        dict: "a mapping of option names to values",
        int: "an integer",
        float: "a number",
        str: "a string",
    }.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise TypeError; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_coerce(v, typing.get_args(tp)[0]) for v in value]
    if tp is dict:  # options passed on to a component's constructor, checked by the factory
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise TypeError
        return dict(value)
    if tp is type(None):
        if value is None:
            return None
        raise TypeError
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def _check_range(key: str, value: Any, meta: dict) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        shown = (str(c).lower() if isinstance(c, bool) else c for c in meta["choices"])
        raise ConfigError(f"{key}: {value!r} is not allowed; expected one of {', '.join(shown)}")
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, (int, float)):
            continue
        if not math.isfinite(v):
            raise ConfigError(f"{key}: {value!r} is not a finite number")
        if "min" in meta and (v < meta["min"] or (meta.get("exclusive_min") and v == meta["min"])):
            bound = f"> {meta['min']}" if meta.get("exclusive_min") else f">= {meta['min']}"
            raise ConfigError(f"{key}: {value!r} is out of range; expected {bound}")
        if "max" in meta and v > meta["max"]:
            raise ConfigError(f"{key}: {value!r} is out of range; expected <= {meta['max']}")


def _set(cfg: Config, key: str, value: Any) -> None:
    section_name, _, name = key.partition(".")
    if section_name not in SECTIONS or not name:
        raise ConfigError(
            f"unknown config key {key!r}; expected section.key with section one of "
            f"{', '.join(SECTIONS)}"
        )
    section = getattr(cfg, section_name)
    fields = {f.name: f for f in dataclasses.fields(section)}
    if name not in fields:
        raise ConfigError(f"unknown config key {key!r}; {section_name} accepts {', '.join(fields)}")
    tp = typing.get_type_hints(type(section))[name]
    try:
        coerced = _coerce(value, tp)
    except TypeError:
        raise ConfigError(
            f"{key}: {value!r} has the wrong type; expected {_type_name(tp)}"
        ) from None
    meta = dict(fields[name].metadata)
    if name == "hidden":
        meta.setdefault("min", 1)
    _check_range(key, coerced, meta)
    setattr(section, name, coerced)


def _flatten(raw: Any, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections ({', '.join(SECTIONS)}), "
            f"got {type(raw).__name__}"
        )
    flat = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{source}: unknown section {section!r}; expected one of {', '.join(SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys to values")
        for key, value in values.items():
            flat[f"{section}.{key}"] = value
    return flat


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``section.key=value``; the value is read as YAML (``3``, ``1e-3``, ``true``, ``[64, 64]``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Build a validated :class:`Config` from defaults, an optional YAML file, and overrides.

    Raises:
        ConfigError: for a missing or unparsable file, an unknown key, a wrong type or a value out
            of range; the message names the key and what is allowed.
    """
    cfg = Config()
    entries: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
        entries.update(_flatten(raw, str(path)))
    for text in overrides:
        key, value = parse_override(text)
        entries[key] = value
    for key, value in entries.items():
        _set(cfg, key, value)
    _check_consistency(cfg)
    return cfg


def config_from_dict(raw: dict) -> Config:
    """Rebuild a validated Config from :meth:`Config.to_dict` output (e.g. a checkpoint's copy)."""
    cfg = Config()
    for key, value in _flatten(raw, "stored config").items():
        _set(cfg, key, value)
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: Config) -> None:
    if cfg.model.prior == "samples" and not cfg.model.prior_path:
        raise ConfigError(
            "model.prior_path: required when model.prior is 'samples'; give an .npy file of shape "
            "(N, latent_dim)"
        )
    if cfg.data.name in ("file",) and not cfg.data.path:
        raise ConfigError(
            "data.path: required when data.name is 'file'; give an .npz, .npy or .csv file"
        )
    if cfg.data.val_fraction + cfg.data.test_fraction >= 0.9:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {cfg.data.val_fraction + cfg.data.test_fraction}"
            " leaves too little training data; expected a sum below 0.9"
        )
