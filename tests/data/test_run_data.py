"""What a run records about its data: config.yaml's data.binarize is what was done,
data_info.json holds the preprocessing (re-applied by evaluate and --resume) and a fingerprint that
--resume checks, refusing changed data with one line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from implicit_vae.cli import main
from implicit_vae.training.checkpoint import load_checkpoint
from implicit_vae.training.runs import DATA_INFO, load_run

TINY = ["train.progress_bar=false", "model.hidden=[16]", "model.latent_dim=2",
        "model.posterior=gaussian", "divergence.name=analytic", "train.batch_size=16",
        "train.max_steps=6", "train.val_every=3", "train.checkpoint_every=3"]


def train(tmp: Path, *sets: str, name: str = "run") -> Path:
    argv = ["train"]
    for item in [*TINY, f"train.run_dir={tmp / name}", *sets]:
        argv += ["--set", item]
    assert main(argv) == 0
    return tmp / name


def recorded(run: Path) -> str:
    return yaml.safe_load((run / "config.yaml").read_text())["data"]["binarize"]


def test_zero_one_file_asked_for_dynamic_records_none(tmp_path, capsys):
    x = (np.random.default_rng(0).random((40, 6)) > 0.5).astype(np.float32)
    np.save(tmp_path / "bits.npy", x)
    run = train(tmp_path, "data.name=file", f"data.path={tmp_path / 'bits.npy'}",
                "data.binarize=dynamic")
    assert "data.binarize=dynamic changes nothing on data that are already 0/1" in \
        capsys.readouterr().out
    assert recorded(run) == "none"
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["config"]["data"]["binarize"] == \
        "none"
    assert json.loads((run / DATA_INFO).read_text())["binarize"] == "none"


def test_auto_records_what_the_likelihood_needed(tmp_path):
    assert recorded(train(tmp_path, "data.name=digits", name="digits")) == "dynamic"
    grey = np.random.default_rng(0).random((40, 6)).astype(np.float32)
    np.save(tmp_path / "grey.npy", grey)
    run = train(tmp_path, "data.name=file", f"data.path={tmp_path / 'grey.npy'}",
                "model.likelihood=gaussian", name="gauss")
    assert recorded(run) == "none"
    _, _, data = load_run(run)
    assert not data.binary and not torch.isin(data.val, torch.tensor([0.0, 1.0])).all()


def _table(path: Path, n: int = 60, extra: str = "") -> None:
    rng = np.random.default_rng(0)
    lines = ["size,kind,price"] + [
        f"{rng.normal(10, 2):.2f},{'ab'[i % 2]},{rng.normal(1e4, 3e3):.0f}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n" + extra)


def test_resume_refuses_changed_data_naming_run_and_change(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    _table(csv)
    sets = ["data.name=file", f"data.path={csv}", "model.likelihood=gaussian",
            "data.standardize=true"]
    run = train(tmp_path, *sets)
    _table(csv, extra="11.0,b,9000\n")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.max_steps=9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"the data of run {str(run)!r} changed" in err
    assert str(csv) in err and "train split: 49 rows, was 48" in err
    _table(csv)  # the same data again: the run continues
    assert main(["train", "--resume", str(run), "--set", "train.max_steps=9"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["model_step"] == 9


def test_evaluate_reapplies_the_saved_preprocessing(tmp_path):
    csv = tmp_path / "t.csv"
    _table(csv)
    run = train(tmp_path, "data.name=file", f"data.path={csv}", "model.likelihood=gaussian",
                "data.standardize=true")
    info = json.loads((run / DATA_INFO).read_text())
    assert info["columns"] == ["size", "kind=a", "kind=b", "price"]
    assert info["encoding"]["columns"][1]["categories"] == ["a", "b"]
    _, _, data = load_run(run)
    assert abs(float(data.train[:, 0].mean())) < 1e-4
    # the saved numbers are what is applied (not a recomputation from the file)
    info["standardize"]["mean"][0] += 2 * info["standardize"]["std"][0]
    (run / DATA_INFO).write_text(json.dumps(info))
    with pytest.warns(UserWarning, match="changed since it was trained"):
        _, _, shifted = load_run(run)
    assert torch.allclose(shifted.train[:, 0], data.train[:, 0] - 2, atol=1e-4)


def test_run_without_data_info_still_loads(tmp_path):
    run = train(tmp_path, "data.name=toy4", "data.toy4_size=64")
    (run / DATA_INFO).unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, data = load_run(run)
    assert data.name == "toy4" and not [w for w in caught if "changed" in str(w.message)]


def test_rgb_image_folder_trains_and_draws_its_figures(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "rgb").mkdir()
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (5, 5, 3)).astype(np.uint8)).save(
            tmp_path / "rgb" / f"{i}.png")
    run = train(tmp_path, "data.name=images", f"data.path={tmp_path / 'rgb'}")
    assert recorded(run) == "dynamic"
    assert {p.name for p in (run / "plots").iterdir()} >= {"samples.png", "reconstructions.png"}
    assert json.loads((run / DATA_INFO).read_text())["channels"] == 3


def test_a_run_with_a_relative_data_path_is_read_from_any_directory(tmp_path, monkeypatch):
    """data.path relative to where training ran: evaluate from elsewhere reads the same file (the
    fingerprint matches, no warning), and a path the current directory does hold is left alone."""
    (tmp_path / "train_here").mkdir()
    x = (np.random.default_rng(0).random((40, 6)) > 0.5).astype(np.float32)
    np.save(tmp_path / "train_here" / "bits.npy", x)
    monkeypatch.chdir(tmp_path / "train_here")
    run = train(tmp_path, "data.name=file", "data.path=bits.npy")
    assert json.loads((run / DATA_INFO).read_text())["working_directory"] == \
        str(tmp_path / "train_here")
    _, _, there = load_run(run)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, here = load_run(run)
    assert not [w for w in caught if "changed since" in str(w.message)]
    assert torch.equal(here.test, there.test) and torch.equal(here.train, there.train)
    np.save(tmp_path / "elsewhere" / "bits.npy", 1.0 - x)  # a file of that name here wins, and differs
    with pytest.warns(UserWarning, match="changed since it was trained"):
        _, _, other = load_run(run)
    assert torch.equal(other.test, 1.0 - there.test)
