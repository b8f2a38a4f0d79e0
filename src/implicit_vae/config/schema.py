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

from ..files import atomic_write_text

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
SCHEDULE_NAMES = ("constant", "cosine", "multistep")
ARCHITECTURE_NAMES = ("mlp", "conv")


class ConfigError(ValueError):
    """A configuration value, key or file is invalid."""


def _key(
    default: Any = dataclasses.MISSING, *, help: str, factory: Any = None, **checks: Any
) -> Any:
    """A config field with its one line of ``help`` (shown by ``implicit-vae config --show``) and
    its checks: ``choices``, ``min`` (``exclusive_min``), ``max``; for a list they apply to each item."""
    meta = {"help": help, **checks}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = _key(
        "digits",
        choices=("toy4", "digits", "mnist", "file", "binarized_mnist", "images"),
        help="data set; file: your array/table files; images: a folder of PNG/JPEG; "
        "binarized_mnist: the 0/1 benchmark",
    )
    path: str | None = _key(
        None,
        help="file: npz/npy/csv/txt/amat[.gz] or a folder of train/val/test files; images, mnist, "
        "binarized_mnist: a folder",
    )
    train_path: str | None = _key(
        None, help="file: the training split's own file (then val/test come from their paths)"
    )
    val_path: str | None = _key(
        None, help="file: the validation split's file (null: held out of train by val_fraction)"
    )
    test_path: str | None = _key(
        None, help="file: the test split's file (null: held out of train by test_fraction)"
    )
    binarize: str = _key(
        "auto",
        choices=("auto", "dynamic", "fixed", "none"),
        help="auto: none for gaussian; bernoulli: dynamic for grey levels, none for 0/1 data; "
        "runs record what was done",
    )
    standardize: bool = _key(
        False,
        help="rescale each numeric column by the training split's mean and std (gaussian "
        "likelihood)",
    )
    val_fraction: float = _key(
        0.1, min=0.0, max=0.5, help="fraction held out for validation (unused with a val file)"
    )
    test_fraction: float = _key(
        0.1, min=0.0, max=0.5, help="fraction held out for testing (unused with a test file)"
    )
    toy4_size: int = _key(4096, min=4, help="examples drawn for toy4")
    mnist_train_limit: int | None = _key(
        None,
        min=1,
        help="mnist, binarized_mnist: use only the first N training images (null: all)",
    )
    image_shape: list[int] | None = _key(
        None,
        min=1,
        help="file: rows are [H, W] or [C, H, W] images; images: resize to it (C=1 grey, C=3 RGB)",
    )


@dataclass
class ModelConfig:
    latent_dim: int = _key(8, min=1, help="dimension of z")
    posterior: str = _key("noise_basis", choices=POSTERIOR_NAMES, help="family of q(z|x)")
    likelihood: str = _key(
        "bernoulli", choices=LIKELIHOOD_NAMES, help="p(x|z): bernoulli for 0/1 data, gaussian else"
    )
    prior: str = _key("standard_normal", choices=PRIOR_NAMES, help="p(z)")
    prior_components: int = _key(10, min=1, help="gaussian_mixture prior: number of components K")
    prior_learnable: bool = _key(
        True, help="gaussian_mixture prior: train its weights, means and scales"
    )
    prior_noise_dim: int = _key(8, min=1, help="implicit prior: dimension of its noise η")
    prior_hidden: list[int] = _key(
        factory=lambda: [64, 64], min=1, help="implicit prior: hidden widths of its generator"
    )
    prior_path: str | None = _key(None, help="samples prior: .npy file of shape (N, latent_dim)")
    hidden: list[int] = _key(
        factory=lambda: [256, 256],
        min=1,
        help="hidden widths of the encoder, reversed for the decoder ([]: no hidden layer, linear "
        "maps)",
    )
    activation: str = _key("elu", choices=ACTIVATION_NAMES, help="activation of every MLP")
    noise_dim: int = _key(16, min=1, help="dimension of the noise ε of implicit samplers")
    n_basis: int = _key(16, min=1, help="noise_basis: number of noise vectors v_i(ε_i)")
    inject_noise: bool = _key(
        False, help="implicit: also add a linear map of ε at every hidden layer"
    )
    moment_samples: int | None = _key(
        None,
        min=2,
        help="implicit: independent draws per x for adaptive contrast's moments (null: "
        "10·latent_dim)",
    )
    posterior_sigma: str = _key(
        "global",
        choices=("global", "x", "x_eps"),
        help="semi_implicit: σ of N(z; μ(x, ε), σ²) is one vector, a network of x, or of (x, ε)",
    )
    beta: float = _key(1.0, min=0.0, help="weight of the KL term; 1 is the ELBO")
    objective: str = _key(
        "elbo",
        choices=("elbo", "iw"),
        help="elbo, or iw: the IWAE bound over train.n_samples z (estimators analytic, "
        "monte_carlo, sivi)",
    )
    architecture: str = _key(
        "mlp",
        choices=ARCHITECTURE_NAMES,
        help="mlp, or conv: AVB's convolutional networks (image data only)",
    )
    conv_width: int | None = _key(
        None,
        min=1,
        help="conv: channels of the first conv layer, doubling after (null: AVB's 64, 32 below "
        "16 px)",
    )
    encoder: str | None = _key(None, help='your own encoder builder, "package.module:function"')
    decoder: str | None = _key(None, help='your own decoder builder, "package.module:function"')
    critic: str | None = _key(
        None, help='your own builder of the critic\'s x-branch, "package.module:function"'
    )
    posterior_options: dict = _key(
        factory=dict,
        help="further keyword arguments of the posterior class (e.g. moment_samples, basis_hidden)",
    )
    prior_options: dict = _key(factory=dict, help="further keyword arguments of the prior class")
    likelihood_options: dict = _key(
        factory=dict,
        help="further keyword arguments of the likelihood (e.g. fixed_std for gaussian)",
    )
    prior_critic_options: dict = _key(
        factory=dict,
        help="learnable implicit prior: options of the aggregate critic D(z) (width, blocks, "
        "prior_samples)",
    )


@dataclass
class DivergenceConfig:
    name: str = _key(
        "avb_ac", choices=ESTIMATOR_NAMES, help="estimator of KL(q(z|x) ‖ p(z)) (or its divergence)"
    )
    # critic_width, critic_blocks: the library's one critic size, divergences.critics.CRITIC_WIDTH
    # and CRITIC_BLOCKS (tests/divergences/test_gaussian_skip.py checks that they agree)
    critic_width: int = _key(256, min=1, help="hidden width of the critic")
    critic_blocks: int = _key(3, min=0, help="hidden blocks of the critic")
    gaussian_skip: bool | str = _key(
        "auto",
        choices=("auto", True, False),
        help="½‖z‖² in the critic; auto: on iff avb/aae with N(0, I) prior; true = auto; false: off",
    )  # to force it on elsewhere: divergence.options.gaussian_skip=true (refused where meaningless)
    waymarks: int = _key(
        1,
        min=1,
        help="avb/avb_ac/aae: K telescoping classifiers across the density chasm (1: a single "
        "critic)",
    )
    contrast: str = _key(
        "diagonal",
        choices=("diagonal", "full"),
        help="avb_ac: normalise z by q's standard deviations (AVB) or by its full covariance",
    )
    contrast_scale: float = _key(
        1.0,
        min=0.0,
        exclusive_min=True,
        help="avb_ac: contrast N(μ, s²Σ); s > 1 lets the critic see, and charge, q's heavy tails",
    )
    mixing_samples: int = _key(
        100,
        min=1,
        help="sivi, uivi: K fresh mixing draws beside the generating one in log q̂ (uivi: only "
        "for its reported value)",
    )  # SIVI's own code uses K = 1, then 50
    options: dict = _key(
        factory=dict,
        help="further keyword arguments of the estimator class (e.g. k for knn, bandwidth for kde)",
    )


@dataclass
class TrainConfig:
    max_steps: int = _key(3000, min=1, help="model (primal) updates")
    batch_size: int = _key(128, min=1, help="examples per update")
    seed: int = _key(0, min=0, help="seed of every random number (weights, batches, noise)")
    lr: float = _key(1e-3, min=0.0, exclusive_min=True, help="learning rate of the model (Adam)")
    critic_lr: float = _key(
        1e-3, min=0.0, exclusive_min=True, help="learning rate of the critic (Adam)"
    )
    lr_schedule: str = _key(
        "constant",
        choices=SCHEDULE_NAMES,
        help="factor on both learning rates: constant, cosine (to 0 at max_steps) or multistep",
    )
    lr_milestones: list[int] = _key(
        factory=list,
        min=1,
        help="multistep: the steps after which the rates are multiplied by lr_gamma, increasing",
    )
    lr_gamma: float = _key(
        0.1, min=0.0, exclusive_min=True, max=1.0, help="multistep: factor at each milestone"
    )
    beta1: float = _key(0.5, min=0.0, max=0.999, help="Adam's β1 (AVB uses 0.5)")
    beta2: float = _key(0.999, min=0.0, max=0.9999, help="Adam's β2")
    critic_steps: int = _key(
        1, min=0, help="critic updates per model update (>= 1 for an estimator with a critic)"
    )
    n_samples: int = _key(1, min=1, help="z samples per example")
    checkpoint_every: int = _key(500, min=1, help="steps between checkpoints (last.ckpt)")
    val_every: int = _key(250, min=1, help="steps between validations (best.ckpt by select_by)")
    select_by: str = _key(
        "loss",
        choices=("loss", "iw_bound", "ais"),
        help="best.ckpt: lowest validation loss, or highest IW bound / AIS estimate of log p(x)",
    )
    select_examples: int = _key(
        256, min=1, help="iw_bound, ais: the first N validation examples, the same every time"
    )
    select_samples: int = _key(
        64, min=1, help="iw_bound: K importance samples per example (semi-implicit: K mixing each)"
    )
    select_ais_chains: int = _key(4, min=1, help="select_by=ais: chains per example")
    select_ais_steps: int = _key(100, min=1, help="select_by=ais: annealing steps")
    log_every: int = _key(10, min=1, help="steps between rows of metrics.csv and TensorBoard")
    run_dir: str = _key(
        "runs/default", help="output directory; if taken, the first free of DIR-2, DIR-3…"
    )
    progress_bar: bool = _key(True, help="show a progress bar")
    threads: int | None = _key(None, min=1, help="torch intra-op threads (null: torch's default)")
    on_nonfinite: str = _key(
        "stop",
        choices=("stop", "skip"),
        help="NaN/inf in a loss, gradient or weight: stop, or skip the batch",
    )
    max_consecutive_skips: int = _key(
        50, min=1, help="on_nonfinite=skip: stop after this many skipped batches in a row"
    )
    detect_anomaly: bool = _key(
        False, help="debug: torch.autograd.detect_anomaly around every update (slow)"
    )
    saturation_threshold: float = _key(
        0.99, min=0.5, max=1.0, help="critic accuracy above which a step counts as saturated"
    )
    saturation_patience: int = _key(
        200, min=1, help="saturated steps in a row before the critic-saturation warning"
    )
    strategy: str = _key(
        "auto",
        choices=("auto", "ddp"),
        help="auto: DDP when torchrun starts several processes; ddp: always DDP (needs torchrun)",
    )
    accelerator: str = _key(
        "auto",
        choices=("auto", "cpu", "gpu", "cuda", "mps"),
        help="auto: a CUDA GPU if one is visible, else the CPU; gpu is cuda",
    )
    devices: int | None = _key(
        None,
        min=1,
        help="devices per machine; null: 1, or torchrun's --nproc_per_node (one process per "
        "device)",
    )
    precision: str = _key(
        "32-true",
        choices=("32-true", "bf16-mixed", "16-mixed"),
        help="mixed: autocast forward passes, fp32 weights; 16-mixed (CUDA only) adds a GradScaler",
    )


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML, whole or not at all (:mod:`implicit_vae.files`)."""
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


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


def _check_range(key: str, value: Any, meta: Any) -> None:
    if value is None:
        return
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected {_allowed(meta, False)}")
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
    _check_range(key, coerced, fields[name].metadata)
    setattr(section, name, coerced)


def _short_type(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_short_type(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"list[{_short_type(typing.get_args(tp)[0])}]"
    return {type(None): "null", dict: "mapping"}.get(tp, getattr(tp, "__name__", str(tp)))


def _allowed(meta: Any, is_list: bool) -> str:
    """The choices or range of a field, in words ("" if any value of its type is allowed)."""
    if "choices" in meta:  # booleans as YAML spells them
        return "one of " + ", ".join(
            str(c).lower() if isinstance(c, bool) else str(c) for c in meta["choices"]
        )
    bounds = []
    if "min" in meta:
        bounds.append(f"{'>' if meta.get('exclusive_min') else '>='} {meta['min']}")
    if "max" in meta:
        bounds.append(f"<= {meta['max']}")
    return ("each " if is_list and bounds else "") + ", ".join(bounds)


def key_table(cfg: Config | None = None) -> list[dict[str, Any]]:
    """Every config key, in schema order: ``key``, ``type``, ``default``, ``value`` (in ``cfg``, or
    the default), ``allowed`` (choices or range, "" if any value of the type) and ``help``."""
    cfg = cfg if cfg is not None else Config()
    defaults = Config()
    rows = []
    for section in SECTIONS:
        hints = typing.get_type_hints(type(getattr(defaults, section)))
        for f in dataclasses.fields(getattr(defaults, section)):
            rows.append(
                {
                    "key": f"{section}.{f.name}",
                    "type": _short_type(hints[f.name]),
                    "default": getattr(getattr(defaults, section), f.name),
                    "value": getattr(getattr(cfg, section), f.name),
                    "allowed": _allowed(f.metadata, "list" in _short_type(hints[f.name])),
                    "help": f.metadata.get("help", ""),
                }
            )
    return rows


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
    t = cfg.train
    if t.lr_schedule == "multistep" and not t.lr_milestones:
        raise ConfigError(
            "train.lr_milestones: required when train.lr_schedule is 'multistep'; give the steps "
            "at which the rates drop, e.g. [100000, 175000]"
        )
    if t.lr_milestones and t.lr_schedule != "multistep":
        raise ConfigError(
            f"train.lr_milestones: only train.lr_schedule=multistep uses them, but "
            f"train.lr_schedule is {t.lr_schedule!r}; use train.lr_schedule=multistep or drop them"
        )
    if any(b <= a for a, b in zip(t.lr_milestones, t.lr_milestones[1:])):
        raise ConfigError(
            f"train.lr_milestones: {t.lr_milestones} is not strictly increasing; expected steps "
            "in increasing order"
        )
    if cfg.model.objective == "iw" and cfg.train.n_samples < 2:
        raise ConfigError(
            "model.objective: 'iw' averages importance weights over train.n_samples z per "
            f"example, but train.n_samples is {cfg.train.n_samples} (with 1 it is the ELBO); "
            "expected train.n_samples >= 2"
        )
    if cfg.model.objective == "iw" and cfg.model.beta != 1:
        raise ConfigError(
            f"model.objective: 'iw' is a bound on log p(x) only with model.beta 1, got "
            f"{cfg.model.beta}; expected model.beta 1 or model.objective elbo"
        )
    if cfg.model.prior == "samples" and not cfg.model.prior_path:
        raise ConfigError(
            "model.prior_path: required when model.prior is 'samples'; give an .npy file of shape "
            "(N, latent_dim)"
        )
    d = cfg.data
    split_keys = [k for k in ("train_path", "val_path", "test_path") if getattr(d, k)]
    if split_keys and d.name != "file":
        raise ConfigError(
            f"data.{split_keys[0]}: only data.name=file reads split files, but data.name is "
            f"{d.name!r}; use data.name=file"
        )
    if split_keys and d.path:
        raise ConfigError(
            f"data.path and data.{split_keys[0]} are both set; expected either data.path (one "
            "file, or a folder of train/val/test files) or data.train_path/val_path/test_path"
        )
    if split_keys and not d.train_path:
        raise ConfigError(
            f"data.{split_keys[0]}: given without data.train_path; expected data.train_path too"
        )
    if d.name == "file" and not d.path and not d.train_path:
        raise ConfigError(
            "data.path: required when data.name is 'file'; give an .npz, .npy or .csv file (or "
            "a folder of train/val/test files, or data.train_path)"
        )
    if d.name == "images" and not d.path:
        raise ConfigError(
            "data.path: required when data.name is 'images'; give a folder of PNG/JPEG images"
        )
    if d.standardize and cfg.model.likelihood != "gaussian":
        raise ConfigError(
            f"data.standardize: true makes values outside [0, 1], which model.likelihood="
            f"{cfg.model.likelihood!r} cannot model; use model.likelihood=gaussian"
        )
    if d.standardize and d.binarize in ("dynamic", "fixed"):
        raise ConfigError(
            f"data.standardize: true cannot follow data.binarize={d.binarize}; use "
            "data.binarize=none or auto"
        )
    if cfg.data.val_fraction + cfg.data.test_fraction >= 0.9:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction = {cfg.data.val_fraction + cfg.data.test_fraction}"
            " leaves too little training data; expected a sum below 0.9"
        )
