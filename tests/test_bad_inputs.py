"""Bad input of every kind: one line on stderr, exit code 2, no traceback; a typed library exception.

The one table of bad input (config keys and files, data files, MNIST directories, checkpoints, command
line arguments). Each case builds its input in ``tmp_path`` and gives the command line that uses it,
plus fragments the one-line message must contain: what was wrong (the key, value or file) and what was
expected. The same case is then run through the library (no CLI), which must raise the named exception
type. Other test files test what valid input does; bad input belongs here.
"""

from __future__ import annotations

import builtins
import dataclasses
import gzip
import hashlib
import json
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from implicit_vae.cli import main, resolve_config
from implicit_vae.config import Config, ConfigError, DataConfig, load_config, parse_override
from implicit_vae.data import DataError, load_dataset
from implicit_vae.divergences import ESTIMATORS
from implicit_vae.evaluation import EvaluationError
from implicit_vae.evaluation.run import split_data
from implicit_vae.likelihoods import LIKELIHOODS
from implicit_vae.model import ImplicitVAE, IncompatibleComponentsError
from implicit_vae.posteriors import POSTERIORS
from implicit_vae.priors import StandardNormal
from implicit_vae.training.checkpoint import CheckpointError, atomic_save
from implicit_vae.training.fit import TrainingInputWarning, fit
from implicit_vae.training.runs import load_run
from tiny_runs import TINY_NETWORKS

# Every train command carries these, so a case that wrongly succeeded would still be quick.
SMALL = [
    *TINY_NETWORKS,
    "train.max_steps=3",
]
MNIST = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One short finished run whose copies the checkpoint cases damage."""
    run = tmp_path_factory.mktemp("bad_inputs") / "run"
    overrides = [*SMALL, "train.max_steps=4", "train.val_every=2", f"train.run_dir={run}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("implicit_vae.training.report.write_plots", lambda *args, **kwargs: None)
        fit(load_config(overrides=overrides))
    (run / "hashes.json").write_text(json.dumps(_hashes(run)))
    return run


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "hashes.json"
    }


# --- building inputs --------------------------------------------------------------------------------


def train(tmp: Path, *sets: str, config: str | None = None) -> list[str]:
    argv = ["train"] + (["--config", config] if config else [])
    for item in [*SMALL, f"train.run_dir={tmp / 'new_run'}", *sets]:
        argv += ["--set", item]
    return argv


def data_file(tmp: Path, name: str, content, *sets: str) -> list[str]:
    """Write ``content`` (bytes, text or an array for np.save) and train on it."""
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    return train(tmp, "data.name=file", f"data.path={path}", *sets)


def yaml_config(tmp: Path, text: str | bytes) -> list[str]:
    path = tmp / "c.yaml"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return train(tmp, config=str(path))


def npz_file(tmp: Path, **arrays: np.ndarray) -> list[str]:
    np.savez(tmp / "x.npz", **arrays)
    return train(tmp, "data.name=file", f"data.path={tmp / 'x.npz'}")


def run_dir_under_a_file(tmp: Path) -> list[str]:
    (tmp / "f").write_text("")
    return train(tmp, f"train.run_dir={tmp / 'f' / 'run'}")


def idx(a: np.ndarray, magic: bytes | None = None) -> bytes:
    """IDX bytes of a uint8 array: magic 00 00 08 ndim, big-endian dims, data."""
    head = magic if magic is not None else bytes([0, 0, 0x08, a.ndim])
    return head + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def mnist_dir(tmp: Path, **replace: bytes | None) -> list[str]:
    """A valid 4x4 'MNIST' directory of 20 train and 10 test images, with files replaced or
    removed (``None``) by keyword (``t10k_images=...``)."""
    directory = tmp / "mnist"
    directory.mkdir()
    rng = np.random.default_rng(0)
    for name in MNIST:
        n = 20 if name.startswith("train") else 10
        if "images" in name:
            content = idx(rng.integers(0, 256, (n, 4, 4), dtype=np.uint8))
        else:
            content = idx((np.arange(n) % 10).astype(np.uint8))
        key = name.split("-idx")[0].replace("-", "_")
        content = replace.get(key, content)
        if content is not None:
            (directory / name).write_bytes(content)
    return train(tmp, "data.name=mnist", f"data.path={directory}")


def run_copy(tmp: Path, trained: Path, damage: Callable[[Path], None] | None = None) -> Path:
    """A copy of the trained run with ``damage`` applied to its checkpoints/last.ckpt."""
    run = tmp / "run"
    shutil.copytree(trained, run)
    if damage is not None:
        damage(run / "checkpoints" / "last.ckpt")
    return run


def edited(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        ckpt = torch.load(path, weights_only=True)
        change(ckpt)
        atomic_save(ckpt, path)

    return damage


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


class OpensMarker:
    """Unpickling it would create the file MARKER beside the checkpoints directory."""

    def __init__(self, path: Path):
        self.path = str(path.parent.parent / "MARKER")

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


def pickled(path: Path) -> None:
    torch.save({"format_version": 1, "payload": OpensMarker(path)}, path)


def raw_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"format_version": 1, "payload": OpensMarker(path)}, protocol=2))


def resume(tmp, trained, damage=None, *extra) -> list[str]:
    return ["train", "--resume", str(run_copy(tmp, trained, damage)), *extra]


def evaluate(tmp, trained, damage=None, *extra) -> list[str]:
    return ["evaluate", str(run_copy(tmp, trained, damage)), *extra]


def remove_key(ckpt: dict) -> None:
    del ckpt["model"][sorted(ckpt["model"])[0]]


def other_latent_dim(ckpt: dict) -> None:
    ckpt["config"]["model"]["latent_dim"] = 3


def unknown_stored_posterior(ckpt: dict) -> None:
    ckpt["config"]["model"]["posterior"] = "flow"


def choice_cases() -> list:
    """Every config key with a fixed set of names: an unknown name is refused, listing each allowed
    one (booleans as YAML spells them) in the schema's order."""
    cases = []
    for section in ("data", "model", "divergence", "train"):
        for f in dataclasses.fields(getattr(Config(), section)):
            if "choices" not in f.metadata:
                continue
            key = f"{section}.{f.name}"
            shown = [str(c).lower() if isinstance(c, bool) else c for c in f.metadata["choices"]]
            cases.append(case(
                f"config-unknown-name-{key}",
                lambda t, r, key=key: train(t, f"{key}=no_such_name"),
                (f"{key}: 'no_such_name' is not allowed", "expected one of " + ", ".join(shown)),
                ConfigError,
            ))  # fmt: skip
    return cases


# --- the cases -------------------------------------------------------------------------------------

Make = Callable[[Path, Path], list[str]]
CONTINUOUS = np.random.default_rng(0).random((40, 6))


def case(id: str, make: Make, expected: tuple[str, ...], error: type[Exception] | None):
    """``expected`` fragments may use ``{tmp}``; ``error`` None: the check lives in the CLI only."""
    return pytest.param(make, expected, error, id=id)


# fmt: off
CASES = [
    # config
    case("config-unknown-key", lambda t, r: train(t, "train.max_step=3"),
         ("unknown config key 'train.max_step'", "train accepts max_steps"), ConfigError),
    case("config-unknown-section", lambda t, r: train(t, "optim.lr=1"),
         ("'optim.lr'", "section one of data, model, divergence, train"), ConfigError),
    case("config-wrong-type-int", lambda t, r: train(t, "train.batch_size=abc"),
         ("train.batch_size: 'abc' has the wrong type", "expected an integer"), ConfigError),
    case("config-wrong-type-bool", lambda t, r: train(t, "model.inject_noise=maybe"),
         ("model.inject_noise: 'maybe'", "expected true/false"), ConfigError),
    case("config-wrong-type-list", lambda t, r: train(t, "model.hidden=32"),
         ("model.hidden: 32", "expected a list of an integer"), ConfigError),
    case("config-unknown-key-no-section", lambda t, r: train(t, "lr=0.1"),
         ("unknown config key 'lr'", "expected section.key"), ConfigError),
    case("config-wrong-type-float-for-int", lambda t, r: train(t, "model.latent_dim=2.5"),
         ("model.latent_dim: 2.5 has the wrong type", "expected an integer"), ConfigError),
    case("config-wrong-type-exponent-for-int", lambda t, r: train(t, "model.latent_dim=1e3"),
         ("model.latent_dim: '1e3' has the wrong type", "expected an integer"), ConfigError),
    case("config-wrong-type-bool-for-int", lambda t, r: train(t, "model.latent_dim=true"),
         ("model.latent_dim: True has the wrong type", "expected an integer"), ConfigError),
    case("config-wrong-type-float", lambda t, r: train(t, "train.lr=fast"),
         ("train.lr: 'fast' has the wrong type", "expected a number"), ConfigError),
    case("config-wrong-type-text-for-list", lambda t, r: train(t, "model.hidden=abc"),
         ("model.hidden: 'abc' has the wrong type", "expected a list of an integer"), ConfigError),
    case("config-wrong-type-list-element", lambda t, r: train(t, "model.hidden=[64, 2.5]"),
         ("model.hidden: [64, 2.5] has the wrong type", "expected a list of an integer"),
         ConfigError),
    case("config-wrong-type-int-for-bool", lambda t, r: train(t, "model.inject_noise=1"),
         ("model.inject_noise: 1 has the wrong type", "expected true/false"), ConfigError),
    case("config-wrong-type-optional-string", lambda t, r: train(t, "data.path=3"),
         ("data.path: 3 has the wrong type", "expected a string or null"), ConfigError),
    case("config-empty-value-for-string", lambda t, r: train(t, "train.run_dir="),
         ("train.run_dir: None has the wrong type", "expected a string"), ConfigError),
    case("config-negative-batch-size", lambda t, r: train(t, "train.batch_size=-4"),
         ("train.batch_size: -4 is out of range", "expected >= 1"), ConfigError),
    case("config-zero-max-steps", lambda t, r: train(t, "train.max_steps=0"),
         ("train.max_steps: 0", "expected >= 1"), ConfigError),
    case("config-zero-lr", lambda t, r: train(t, "train.lr=0"),
         ("train.lr: 0", "expected > 0"), ConfigError),
    case("config-negative-exponent-lr", lambda t, r: train(t, "train.critic_lr=-1e-3"),
         ("train.critic_lr: -0.001 is out of range", "expected > 0.0"), ConfigError),
    case("config-negative-count-min-zero", lambda t, r: train(t, "divergence.critic_blocks=-1"),
         ("divergence.critic_blocks: -1 is out of range", "expected >= 0"), ConfigError),
    case("config-negative-float-min-zero", lambda t, r: train(t, "model.beta=-0.5"),
         ("model.beta: -0.5 is out of range", "expected >= 0.0"), ConfigError),
    case("config-list-element-out-of-range", lambda t, r: train(t, "model.hidden=[64, 0]"),
         ("model.hidden: [64, 0] is out of range", "expected >= 1"), ConfigError),
    case("config-fraction-above-max", lambda t, r: train(t, "data.val_fraction=0.6"),
         ("data.val_fraction: 0.6 is out of range", "expected <= 0.5"), ConfigError),
    case("config-optional-size-zero", lambda t, r: train(t, "train.threads=0"),
         ("train.threads: 0 is out of range", "expected >= 1"), ConfigError),
    case("config-optional-size-negative", lambda t, r: train(t, "data.mnist_train_limit=-5"),
         ("data.mnist_train_limit: -5 is out of range", "expected >= 1"), ConfigError),
    case("config-nan-lr", lambda t, r: train(t, "train.lr=.nan"),
         ("train.lr: nan", "not a finite number"), ConfigError),
    case("config-nan-text-lr", lambda t, r: train(t, "train.lr=nan"),
         ("train.lr: nan", "not a finite number"), ConfigError),
    case("config-inf-beta", lambda t, r: train(t, "model.beta=.inf"),
         ("model.beta: inf", "not a finite number"), ConfigError),
    case("config-beta1-above-range", lambda t, r: train(t, "train.beta1=1.5"),
         ("train.beta1: 1.5", "expected <= 0.999"), ConfigError),
    case("config-analytic-needs-posterior-density",
         lambda t, r: train(t, "divergence.name=analytic", "model.posterior=implicit"),
         ("divergence.name: 'analytic'", "no density", "choose one of avb, avb_ac"), ConfigError),
    case("config-analytic-with-noise-basis-posterior",
         lambda t, r: train(t, "divergence.name=analytic", "model.posterior=noise_basis"),
         ("divergence.name: 'analytic'", "NoiseBasisPosterior has no density",
          "choose one of avb, avb_ac"), ConfigError),
    case("config-monte-carlo-needs-posterior-density",
         lambda t, r: train(t, "divergence.name=monte_carlo", "model.posterior=implicit"),
         ("divergence.name: 'monte_carlo'", "needs log q(z|x)", "choose one of avb, avb_ac"),
         ConfigError),
    case("config-estimator-needs-prior-density",
         lambda t, r: train(t, "divergence.name=avb_ac", "model.prior=implicit"),
         ("divergence.name: 'avb_ac'", "needs log p(z)", "choose one of"), ConfigError),
    case("config-knn-one-sample", lambda t, r: train(t, "divergence.name=knn", "train.n_samples=1"),
         ("train.n_samples: 1", "knn", "expected >= 2"), ConfigError),
    case("config-iw-one-sample",
         lambda t, r: train(t, "model.objective=iw", "divergence.name=sivi",
                            "model.posterior=semi_implicit"),
         ("model.objective: 'iw'", "train.n_samples is 1", "expected train.n_samples >= 2"),
         ConfigError),
    case("config-multistep-without-milestones",
         lambda t, r: train(t, "train.lr_schedule=multistep"),
         ("train.lr_milestones: required", "'multistep'"), ConfigError),
    case("config-milestones-without-multistep",
         lambda t, r: train(t, "train.lr_milestones=[2]"),
         ("train.lr_milestones: only train.lr_schedule=multistep", "'constant'"), ConfigError),
    case("config-milestones-not-increasing",
         lambda t, r: train(t, "train.lr_schedule=multistep", "train.lr_milestones=[3,2]"),
         ("train.lr_milestones: [3, 2] is not strictly increasing",), ConfigError),
    case("config-iw-with-beta", lambda t, r: train(t, "model.objective=iw", "train.n_samples=4",
                                                   "model.beta=0.5"),
         ("model.objective: 'iw'", "model.beta 1, got 0.5", "expected model.beta 1"), ConfigError),
    case("config-iw-estimator-without-log-ratio",
         lambda t, r: train(t, "model.objective=iw", "train.n_samples=4"),
         ("model.objective: 'iw'", "'avb_ac' does not give", "expected one of analytic, monte_carlo, sivi"),
         ConfigError),
    case("config-critic-never-trained", lambda t, r: train(t, "train.critic_steps=0"),
         ("train.critic_steps: 0 never trains the critic", "'avb_ac'", "expected >= 1"),
         ConfigError),
    case("config-fractions-leave-no-training-data",  # the bound itself is refused
         lambda t, r: train(t, "data.val_fraction=0.5", "data.test_fraction=0.4"),
         ("data.val_fraction + data.test_fraction = 0.9", "expected a sum below 0.9"), ConfigError),
    case("config-samples-prior-without-path", lambda t, r: train(t, "model.prior=samples"),
         ("model.prior_path: required", ".npy file of shape (N, latent_dim)"), ConfigError),
    case("config-samples-prior-file-missing",
         lambda t, r: train(t, "model.prior=samples", f"model.prior_path={t / 'bank.npy'}"),
         ("model.prior_path", "{tmp}/bank.npy", "does not exist"), ConfigError),
    case("config-override-without-value", lambda t, r: train(t, "train.max_steps"),
         ("'train.max_steps'", "not of the form section.key=value"), ConfigError),
    case("config-invalid-yaml",
         lambda t, r: yaml_config(t, "train: [1, 2\n"),
         ("{tmp}/c.yaml", "not valid YAML"), ConfigError),
    case("config-undecodable-file",
         lambda t, r: yaml_config(t, b"\xff\xfe\x00bad"),
         ("{tmp}/c.yaml", "not valid YAML", "can't decode byte 0xff"), ConfigError),
    case("config-top-level-list",
         lambda t, r: yaml_config(t, "- 1\n- 2\n"),
         ("{tmp}/c.yaml", "expected a mapping of sections", "got list"), ConfigError),
    case("config-top-level-scalar",
         lambda t, r: yaml_config(t, "42\n"),
         ("{tmp}/c.yaml", "expected a mapping of sections (data, model", "got int"), ConfigError),
    case("config-section-not-a-mapping",
         lambda t, r: yaml_config(t, "train: 5\n"),
         ("{tmp}/c.yaml", "section 'train' must be a mapping"), ConfigError),
    case("config-unknown-section-in-file",
         lambda t, r: yaml_config(t, "optim: {lr: 1}\n"),
         ("{tmp}/c.yaml", "unknown section 'optim'", "expected one of data"), ConfigError),
    case("config-unknown-key-in-file",
         lambda t, r: yaml_config(t, "model:\n  width: 3\n"),
         ("unknown config key 'model.width'", "model accepts latent_dim"), ConfigError),
    case("config-wrong-type-in-file",
         lambda t, r: yaml_config(t, "model:\n  noise_dim: many\n"),
         ("model.noise_dim: 'many' has the wrong type", "expected an integer"), ConfigError),
    case("config-out-of-range-in-file",
         lambda t, r: yaml_config(t, "model:\n  latent_dim: 0\n"),
         ("model.latent_dim: 0 is out of range; expected >= 1",), ConfigError),
    case("config-missing-file", lambda t, r: train(t, config=str(t / "absent.yaml")),
         ("{tmp}/absent.yaml", "neither a file nor a shipped config", "toy4_avb"), ConfigError),
    case("config-directory-as-file", lambda t, r: train(t, config=str(t)),
         ("config file '{tmp}' does not exist",), ConfigError),
    case("config-run-dir-under-a-file",
         lambda t, r: run_dir_under_a_file(t),
         ("train.run_dir", "{tmp}/f/run", "expected a directory path"), ConfigError),
    # data files
    case("data-file-without-path", lambda t, r: train(t, "data.name=file"),
         ("data.path: required", ".npz, .npy or .csv"), ConfigError),
    case("data-missing-file", lambda t, r: train(t, "data.name=file", f"data.path={t / 'x.npy'}"),
         ("{tmp}/x.npy", "file not found"), DataError),
    case("data-empty-file", lambda t, r: data_file(t, "x.npy", b""),
         ("{tmp}/x.npy", "file is empty"), DataError),
    case("data-one-dimensional", lambda t, r: data_file(t, "x.npy", np.zeros(50)),
         ("{tmp}/x.npy", "shape (50,)", "expected 2-D (N, D) or 3-D (N, H, W)"), DataError),
    case("data-too-few-rows", lambda t, r: data_file(t, "x.npy", np.zeros((3, 4))),
         ("{tmp}/x.npy", "shape (3, 4)", "expected at least 10 rows"), DataError),
    case("data-nan-values",
         lambda t, r: data_file(t, "x.npy", np.where(np.eye(12, 5) > 0, np.nan, 0.5)),
         ("{tmp}/x.npy", "NaN/inf values, first at row 0, column 0", "expected finite numbers"),
         DataError),
    case("data-strings-in-npy", lambda t, r: data_file(t, "x.npy", np.full((12, 2), "a")),
         ("{tmp}/x.npy", "dtype <U1", "expected numbers"), DataError),
    case("data-pickle-named-npy", lambda t, r: data_file(t, "x.npy", pickle.dumps(np.zeros(3))),
         ("{tmp}/x.npy", "not a valid .npy file"), DataError),
    case("data-text-in-csv-column",
         lambda t, r: data_file(t, "x.csv", "a,b\n" + "0,1\n" * 11 + "1,yes\n"),
         ("{tmp}/x.csv", "row 13, column 2: 'yes' is not a number"), DataError),
    case("data-ragged-csv", lambda t, r: data_file(t, "x.csv", "0,1\n" * 11 + "1\n"),
         ("{tmp}/x.csv", "row 12 has 1 columns", "expected 2"), DataError),
    case("data-csv-header-only", lambda t, r: data_file(t, "x.csv", "a,b\n"),
         ("{tmp}/x.csv", "no data rows", "expected numeric rows"), DataError),
    case("data-unknown-extension", lambda t, r: data_file(t, "x.dat", "0 1\n"),
         ("{tmp}/x.dat", "unknown extension '.dat'", "expected one of .npz, .npy, .csv"),
         DataError),
    case("data-npz-without-x", lambda t, r: npz_file(t, a=np.zeros((12, 2)), b=np.zeros(12)),
         ("{tmp}/x.npz", "expected one named 'x'"), DataError),
    case("data-labels-wrong-shape", lambda t, r: npz_file(t, x=np.zeros((12, 2)), y=np.zeros(5)),
         ("{tmp}/x.npz", "labels 'y' have shape (5,)", "expected (12,) integers"), DataError),
    case("data-outside-unit-interval-binarised",
         lambda t, r: data_file(t, "x.npy", CONTINUOUS * 3, "data.binarize=dynamic"),
         ("{tmp}/x.npy", "is not in [0, 1]", "data.binarize=none with a gaussian likelihood"),
         DataError),
    case("data-continuous-with-bernoulli",
         lambda t, r: data_file(t, "x.npy", CONTINUOUS, "data.binarize=none"),
         ("model.likelihood: 'bernoulli' needs binary data", "model.likelihood=gaussian"),
         ConfigError),
    case("data-digits-continuous-with-bernoulli", lambda t, r: train(t, "data.binarize=none"),
         ("model.likelihood: 'bernoulli' needs binary data", "data.binarize=dynamic or fixed"),
         ConfigError),
    # MNIST IDX directories
    case("mnist-without-path", lambda t, r: train(t, "data.name=mnist"),
         ("data.path: required for mnist", "t10k-images-idx3-ubyte"), DataError),
    case("mnist-missing-directory",
         lambda t, r: train(t, "data.name=mnist", f"data.path={t / 'nowhere'}"),
         ("{tmp}/nowhere", "no MNIST files found", "expected train-images-idx3-ubyte"),
         DataError),
    case("mnist-missing-one-file", lambda t, r: mnist_dir(t, train_labels=None),
         ("{tmp}/mnist", "missing train-labels-idx1-ubyte", "expected"), DataError),
    case("mnist-truncated-idx",
         lambda t, r: mnist_dir(t, t10k_images=idx(np.zeros((10, 4, 4), np.uint8))[:-7]),
         ("{tmp}/mnist/t10k-images-idx3-ubyte", "truncated or corrupt"), DataError),
    case("mnist-wrong-magic",
         lambda t, r: mnist_dir(t, t10k_images=idx(np.zeros((10, 4, 4), np.uint8), b"\x08\x03\0\0")),
         ("{tmp}/mnist/t10k-images-idx3-ubyte", "not an IDX file", "expected 0x0000"),
         DataError),
    case("mnist-labels-given-as-images",
         lambda t, r: mnist_dir(t, t10k_images=idx(np.zeros(10, np.uint8))),
         ("{tmp}/mnist/t10k-images-idx3-ubyte", "expected an images file", "labels file?"),
         DataError),
    case("mnist-count-mismatch",
         lambda t, r: mnist_dir(t, train_labels=idx(np.zeros(19, np.uint8))),
         ("has 20 images but", "has 19 labels", "expected matching counts"), DataError),
    case("mnist-labels-out-of-range",
         lambda t, r: mnist_dir(t, t10k_labels=idx(np.full(10, 12, np.uint8))),
         ("{tmp}/mnist/t10k-labels-idx1-ubyte", "labels range 12..12", "expected 0..9"),
         DataError),
    case("mnist-broken-gzip",
         lambda t, r: mnist_dir(t, t10k_labels=gzip.compress(idx(np.zeros(10, np.uint8)))[:-9]),
         ("{tmp}/mnist/t10k-labels-idx1-ubyte", "not a valid gzip file"), DataError),
    # checkpoints
    case("ckpt-truncated-resume", lambda t, r: resume(t, r, truncate),
         ("{tmp}/run/checkpoints/last.ckpt", "truncated or corrupt"), CheckpointError),
    case("ckpt-truncated-evaluate", lambda t, r: evaluate(t, r, truncate),
         ("{tmp}/run/checkpoints/last.ckpt", "truncated or corrupt"), CheckpointError),
    case("ckpt-empty", lambda t, r: resume(t, r, lambda p: p.write_bytes(b"")),
         ("{tmp}/run/checkpoints/last.ckpt", "truncated or corrupt"), CheckpointError),
    case("ckpt-not-a-checkpoint", lambda t, r: evaluate(t, r, lambda p: p.write_bytes(b"{}")),
         ("{tmp}/run/checkpoints/last.ckpt", "truncated or corrupt"), CheckpointError),
    case("ckpt-pickled-object", lambda t, r: evaluate(t, r, pickled),
         ("{tmp}/run/checkpoints/last.ckpt", "pickled Python objects (", "open) and was refused"),
         CheckpointError),
    case("ckpt-raw-pickle", lambda t, r: resume(t, r, raw_pickle),
         ("{tmp}/run/checkpoints/last.ckpt", "pickled Python objects (", "open) and was refused"),
         CheckpointError),
    case("ckpt-other-torch-file",
         lambda t, r: evaluate(t, r, lambda p: torch.save({"w": torch.zeros(2)}, p)),
         ("{tmp}/run/checkpoints/last.ckpt", "not an implicit-vae checkpoint"), CheckpointError),
    case("ckpt-format-version", lambda t, r: resume(t, r, edited(lambda c: c.update(
         format_version=7))), ("format version 7", "reads format 1"), CheckpointError),
    case("ckpt-missing-entry", lambda t, r: resume(t, r, edited(lambda c: c.pop("optimizers"))),
         ("{tmp}/run/checkpoints/last.ckpt", "entry 'optimizers' is missing", "expected a list"),
         CheckpointError),
    case("ckpt-architecture-missing-key-evaluate", lambda t, r: evaluate(t, r, edited(remove_key)),
         ("{tmp}/run", "does not fit the model", "missing: "), CheckpointError),
    case("ckpt-architecture-missing-key-resume", lambda t, r: resume(t, r, edited(remove_key),
                                                                     "--set", "train.max_steps=8"),
         ("does not fit the model", "missing: "), CheckpointError),
    case("ckpt-architecture-other-shape", lambda t, r: evaluate(t, r, edited(other_latent_dim)),
         ("{tmp}/run", "does not fit", "in the file", "expected"), CheckpointError),
    case("ckpt-stored-config-invalid", lambda t, r: evaluate(t, r, edited(unknown_stored_posterior)),
         ("{tmp}/run/checkpoints/last.ckpt", "holds a config this version cannot use",
          "model.posterior: 'flow' is not allowed", "expected one of gaussian"), CheckpointError),
    case("ckpt-none-in-run-dir",
         lambda t, r: resume(t, r, lambda p: shutil.rmtree(p.parent)),
         ("{tmp}/run/checkpoints/last.ckpt", "does not exist"), CheckpointError),
    case("ckpt-no-best",
         lambda t, r: evaluate(t, r, lambda p: (p.parent / "best.ckpt").unlink(), "--checkpoint",
                               "best"),
         ("{tmp}/run/checkpoints/best.ckpt", "does not exist"), CheckpointError),
    # command line
    case("cli-unknown-command", lambda t, r: ["fly"],
         ("invalid choice: 'fly'", "choose from 'train', 'describe', 'benchmark', 'evaluate'"), None),
    case("cli-no-command", lambda t, r: [], ("arguments are required: COMMAND",), None),
    case("cli-resume-missing-run-dir", lambda t, r: ["train", "--resume", str(t / "gone")],
         ("--resume", "{tmp}/gone", "does not exist"), ConfigError),
    case("cli-evaluate-missing-run-dir", lambda t, r: ["evaluate", str(t / "gone")],
         ("{tmp}/gone", "does not exist"), ConfigError),
    case("cli-resume-without-dir", lambda t, r: ["train", "--resume"],
         ("--resume", "expected one argument"), None),
    case("cli-ais-steps-zero", lambda t, r: ["evaluate", str(r), "--ais-steps", "0"],
         ("--ais-steps", "0 is not a positive integer"), None),
    case("cli-ais-chains-text", lambda t, r: ["evaluate", str(r), "--ais-chains", "many"],
         ("--ais-chains", "'many' is not an integer"), None),
    case("cli-split-bogus", lambda t, r: ["evaluate", str(r), "--split", "bogus"],
         ("--split", "invalid choice: 'bogus'", "'train', 'val', 'test'"), EvaluationError),
    case("cli-checkpoint-bogus", lambda t, r: ["evaluate", str(r), "--checkpoint", "first"],
         ("--checkpoint", "invalid choice: 'first'", "'last', 'best'"), ConfigError),
    case("cli-json-into-missing-directory",
         lambda t, r: ["evaluate", str(r), "--json", str(t / "no" / "out.json")],
         ("--json", "{tmp}/no", "does not exist"), None),
    case("cli-resume-with-config",
         lambda t, r: ["train", "--resume", str(r), "--config", "default"],
         ("--config cannot be combined with --resume",), None),
    case("cli-resume-changes-architecture",
         lambda t, r: resume(t, r, None, "--set", "model.latent_dim=3"),
         ("model.latent_dim: cannot be changed when resuming", "only train."), ConfigError),
    case("cli-resume-finished-run", lambda t, r: resume(t, r),
         ("train.max_steps: the run already has 4 steps", "with a larger N"), ConfigError),
    case("cli-unknown-option", lambda t, r: ["train", "--sett", "train.max_steps=3"],
         ("unrecognized arguments: --sett",), None),
    case("cli-describe-bad-override", lambda t, r: ["describe", "--set", "model.likelihood=poisson"],
         ("model.likelihood: 'poisson' is not allowed", "expected one of bernoulli, gaussian"),
         ConfigError),
    *choice_cases(),
]
# fmt: on


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("make,expected,error", CASES)
def test_cli_prints_one_line_and_exits_2(make, expected, error, tmp_path, trained, capsys):
    argv = make(tmp_path, trained)
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and lines[0].startswith("implicit-vae")
    for fragment in expected:
        assert fragment.format(tmp=tmp_path) in lines[0], (fragment, lines[0])
    assert not (tmp_path / "MARKER").exists()  # no pickled payload ever ran
    assert not (tmp_path / "new_run").exists()  # a refused run leaves nothing behind


def _library(argv: list[str]) -> None:
    """What the CLI does for ``argv``, through the library's public functions."""
    command, rest = argv[0], argv[1:]
    options: dict[str, list[str]] = {}
    positional = []
    while rest:
        if rest[0].startswith("--"):
            options.setdefault(rest[0], []).append(rest[1])
            rest = rest[2:]
        else:
            positional.append(rest.pop(0))
    sets = options.get("--set", [])
    if command == "train" and "--resume" in options:
        overrides = dict(parse_override(s) for s in sets)
        fit(None, resume=options["--resume"][0], resume_overrides=overrides)
    elif command == "train":
        fit(load_config(resolve_config(options.get("--config", [None])[0]), sets))
    elif command == "describe":
        load_config(resolve_config(options.get("--config", [None])[0]), sets)
    else:
        cfg, _, data = load_run(positional[0], options.get("--checkpoint", ["last"])[0])
        split_data(data, options.get("--split", ["test"])[0], cfg.train.seed)


@pytest.mark.parametrize("make,expected,error", [c for c in CASES if c.values[2] is not None])
def test_library_raises_a_typed_one_line_exception(make, expected, error, tmp_path, trained):
    argv = make(tmp_path, trained)
    with pytest.raises(error) as info:
        _library(argv)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "MARKER").exists()


def test_estimator_without_the_density_it_needs_raises_incompatible_components():
    posterior = POSTERIORS["implicit"](4, 2, hidden=(8,))
    likelihood = LIKELIHOODS["bernoulli"](2, 4, hidden=(8,))
    with pytest.raises(IncompatibleComponentsError, match="needs log q"):
        ImplicitVAE(posterior, StandardNormal(2), likelihood, ESTIMATORS["analytic"](4, 2))
    with pytest.raises(IncompatibleComponentsError, match=r"latent dimensions disagree: \[2, 3\]"):
        ImplicitVAE(posterior, StandardNormal(3), likelihood, ESTIMATORS["avb"](4, 2))


def test_intensities_in_the_unit_interval_are_accepted_for_a_bernoulli_likelihood(tmp_path):
    np.save(tmp_path / "x.npy", CONTINUOUS)
    data = load_dataset(DataConfig(name="file", path=str(tmp_path / "x.npy")), seed=0)
    assert data.binary and data.dynamic_binarize


# Inputs that train but probably not as meant: one warning naming the key, exit code 0 (the CLI
# prints each warning as one line, tests/cli/test_startup.py).
# fmt: off
WARNED = [
    pytest.param(("train.batch_size=5000",),
                 ("train.batch_size: 5000 is more than the 1437 training examples",), id="batch"),
    pytest.param(("model.latent_dim=65",),
                 ("model.latent_dim: 65 is more than the data's 64 dimensions",), id="latent-dim"),
    pytest.param(("model.hidden=[]",),
                 ("model.hidden: [] makes the MLP encoder and decoder linear maps",), id="hidden"),
]
# fmt: on


@pytest.mark.parametrize("sets,expected", WARNED)
def test_suspicious_input_warns_in_one_line_and_trains(sets, expected, tmp_path):
    with pytest.warns(TrainingInputWarning) as record:
        assert main(train(tmp_path, "train.max_steps=1", *sets)) == 0
    warned = [str(w.message) for w in record if w.category is TrainingInputWarning]
    assert len(warned) == 1 and "\n" not in warned[0], warned
    for fragment in expected:
        assert fragment in warned[0], (fragment, warned[0])


def test_critic_free_estimators_train_with_no_critic_steps(tmp_path):
    """critic_steps=0 is refused only where there is a critic to leave untrained."""
    sets = ("train.critic_steps=0", "divergence.name=analytic", "model.posterior=gaussian")
    assert main(train(tmp_path, "train.max_steps=1", *sets)) == 0


def test_no_case_changed_a_file_of_the_shared_run(trained):
    assert _hashes(trained) == json.loads((trained / "hashes.json").read_text())
