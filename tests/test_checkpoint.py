"""Checkpoint files: atomic writes, ``weights_only`` loading, refusals with one-line errors, RNG states.

The interrupted-save test follows Lightning's ``_RaisesOnPickle`` test of ``_atomic_save``
(style.md B3); the refusal of pickled objects follows PyTorch's ``weights_only`` loader (B2).
"""

from __future__ import annotations

import builtins
import math
import os
import pickle
import random
import stat

import numpy as np
import pytest
import torch

from implicit_vae import __version__
from implicit_vae.config import Config
from implicit_vae.rng import collect_rng_states, restore_rng_states
from implicit_vae.training.checkpoint import (
    FORMAT_VERSION,
    REQUIRED_ENTRIES,
    CheckpointError,
    atomic_save,
    load_checkpoint,
    remove_stale_temporaries,
)


def _checkpoint(step: int = 3) -> dict:
    """A checkpoint with the layout training writes: weights, a stepped Adam, RNG states, config."""
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model(torch.randn(4, 3)).pow(2).sum().backward()
    opt.step()
    return {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "config": Config().to_dict(),
        "model_step": step,
        "best_val": math.inf,
        "wall_time": 0.25,
        "model": model.state_dict(),
        "optimizers": [opt.state_dict()],
        "rng": collect_rng_states(),
    }


class _RaisesOnPickle:
    """Fails while ``torch.save`` serialises it: a save interrupted part-way (after the tensors)."""

    def __reduce__(self):
        raise RuntimeError("simulated crash inside torch.save")


class _OpensFile:
    """A pickle payload: unpickling it calls ``open(marker, "w")``, creating ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


# --- atomic save ----------------------------------------------------------------------------------


def test_saved_checkpoint_loads_with_plain_torch_load_weights_only(tmp_path):
    path = tmp_path / "last.ckpt"
    ckpt = _checkpoint()
    atomic_save(ckpt, path)
    raw = torch.load(path, weights_only=True)  # no add_safe_globals needed
    assert raw["model_step"] == 3 and raw["format_version"] == FORMAT_VERSION
    assert torch.equal(raw["model"]["weight"], ckpt["model"]["weight"])
    assert torch.equal(raw["rng"]["torch"], ckpt["rng"]["torch"])
    assert load_checkpoint(path)["optimizers"][0]["param_groups"][0]["betas"] == (0.5, 0.999)
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_interrupted_save_keeps_the_previous_checkpoint_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_save(_checkpoint(step=10), path)
    before = path.read_bytes()
    poisoned = {
        **_checkpoint(step=20),
        "weights": torch.zeros(200_000),
        "poison": _RaisesOnPickle(),
    }
    with pytest.raises(RuntimeError, match="simulated crash"):
        atomic_save(poisoned, path)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["model_step"] == 10
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_interrupted_first_save_creates_no_file(tmp_path):
    with pytest.raises(RuntimeError, match="simulated crash"):
        atomic_save({"poison": _RaisesOnPickle()}, tmp_path / "checkpoints" / "last.ckpt")
    assert os.listdir(tmp_path / "checkpoints") == []


def test_stale_temporaries_of_a_killed_save_are_removed_and_nothing_else(tmp_path):
    atomic_save(_checkpoint(), tmp_path / "last.ckpt")
    stale = tmp_path / ".last.ckpt.k2j4_x.tmp"  # what a SIGKILL inside atomic_save leaves
    stale.write_bytes(b"partial")
    (tmp_path / "notes.tmp").write_text("not ours")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt", "notes.tmp"]
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_saved_file_has_ordinary_permissions(tmp_path):
    atomic_save(_checkpoint(), tmp_path / "last.ckpt")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "last.ckpt").stat().st_mode) == 0o666 & ~umask


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pickled_object_is_refused_and_its_code_never_runs(tmp_path, writer):
    path, marker = tmp_path / "evil.ckpt", tmp_path / "MARKER"
    payload = {"format_version": FORMAT_VERSION, "x": _OpensFile(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    refused = r"pickled Python objects \([\w.]*open\) and was refused"  # the global it names
    with pytest.raises(CheckpointError, match=refused) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()
    # The payload is live: an unsafe load of the same bytes would have run it.
    live, live_marker = tmp_path / "live.ckpt", tmp_path / "LIVE"
    torch.save({"x": _OpensFile(live_marker)}, live)
    torch.load(live, weights_only=False)["x"].close()
    assert live_marker.exists()


@pytest.mark.parametrize("keep", [0, 64, 0.5], ids=["empty", "64-bytes", "half"])
def test_truncated_file_is_truncated_or_corrupt(tmp_path, keep):
    path = tmp_path / "last.ckpt"
    atomic_save(_checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_bytes_that_are_no_checkpoint_are_corrupt(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"hello, this is not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_other_format_version_names_both_versions(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_save({**_checkpoint(), "format_version": FORMAT_VERSION + 98}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"format version {FORMAT_VERSION + 98}" in message
    assert f"reads format {FORMAT_VERSION}" in message


@pytest.mark.parametrize("obj", [{"weights": torch.zeros(2)}, [1, 2], torch.zeros(3)])
def test_file_without_format_version_is_not_a_checkpoint(tmp_path, obj):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="not an implicit-vae checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("entry", sorted(REQUIRED_ENTRIES))
def test_missing_entry_is_named(tmp_path, entry):
    path = tmp_path / "last.ckpt"
    ckpt = _checkpoint()
    del ckpt[entry]
    atomic_save(ckpt, path)
    with pytest.raises(CheckpointError, match=f"entry '{entry}' is missing"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"model_step": "3"}, "entry 'model_step' is a str; expected an integer"),
        ({"model": {"weight": [1.0]}}, "model entries weight are not tensors"),
        ({"rng": {"torch": torch.zeros(3)}}, "malformed RNG states"),
        ({"config": {"model": {"latent_dim": -1}}}, "holds a config this version cannot use"),
    ],
    ids=["step-type", "model-not-tensors", "rng", "config"],
)
def test_malformed_entry_is_refused(tmp_path, change, match):
    path = tmp_path / "last.ckpt"
    atomic_save({**_checkpoint(), **change}, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.ckpt")


# --- RNG states ---------------------------------------------------------------------------------------


def _draws() -> tuple:
    return (
        torch.randn(5),
        np.random.standard_normal(3),
        np.random.randint(0, 1000, 3),
        [random.gauss(0, 1) for _ in range(3)],
        random.random(),
    )


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    # Odd numbers of Gaussian draws leave a cached value in numpy's and python's states.
    np.random.standard_normal()
    random.gauss(0, 1)
    states = collect_rng_states()
    assert states["numpy"]["has_gauss"] == 1 and states["python"]["gauss"] is not None
    expected = _draws()
    atomic_save({"rng": states}, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    _draws()  # move every generator on
    restore_rng_states(loaded)
    again = _draws()
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and np.array_equal(expected[2], again[2])
    assert expected[3:] == again[3:]
