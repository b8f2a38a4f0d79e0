"""TensorBoard gets what a person looks for: the scalars, image grids at every validation and the
run's hyper-parameters beside its final numbers."""

from __future__ import annotations

import pytest
import torch

from implicit_vae.training.report import flat_hparams, image_grid

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="reading the event files needs tensorboard",
)


def _events(run_dir):
    acc = event_accumulator.EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0}
    )
    acc.Reload()
    return acc


def test_image_grids_are_logged_at_every_validation(digits_run):
    acc = _events(digits_run)
    images = acc.Tags()["images"]
    assert {"images/val_reconstructions", "images/samples"} <= set(images), images
    for tag in ("images/val_reconstructions", "images/samples"):
        events = acc.Images(tag)
        assert [e.step for e in events] == [10, 20, 30], tag
    rec = acc.Images("images/val_reconstructions")[-1]
    # 8 digits of 8x8 magnified 4x, in a row of data over a row of reconstructions
    assert (rec.width, rec.height) == (8 * 33 - 1, 2 * 33 - 1)
    samples = acc.Images("images/samples")[-1]
    assert (samples.width, samples.height) == (8 * 33 - 1, 2 * 33 - 1)


def test_scalars_use_the_reconstruction_error(digits_run):
    scalars = set(_events(digits_run).Tags()["scalars"])
    assert {"train/reconstruction_error", "val/reconstruction_error", "val/loss"} <= scalars
    assert not {"train/reconstruction", "val/reconstruction"} & scalars
    assert {"test/loss", "test/reconstruction_error"} <= scalars  # the final numbers


def test_hyperparameters_are_logged_with_the_final_metrics(digits_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = _events(digits_run)
    content = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(content)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = {m.name.tag for m in experiment.experiment.metric_infos}
    assert {"val/loss", "val/reconstruction_error", "test/loss"} <= metrics
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["train.max_steps"].number_value == 30
    assert hp["data.name"].string_value == "digits"
    assert hp["model.hidden"].string_value == "[32]"


def test_flat_hparams_keeps_types_tensorboard_accepts():
    flat = flat_hparams({"a": {"b": 1, "c": None, "d": [1, 2]}, "e": True, "f": "x"})
    assert flat == {"a.b": 1, "a.c": "none", "a.d": "[1, 2]", "e": True, "f": "x"}


def test_image_grid_places_each_image_in_its_cell():
    rows = torch.zeros(3, 1 * 40 * 40)
    rows[1] = 1.0  # the second image white
    grid = image_grid(rows, (1, 40, 40), ncol=2)  # 40 px: not magnified
    assert grid.shape == (1, 2 * 41 - 1, 2 * 41 - 1)
    assert grid[0, :40, :40].max() == 0 and grid[0, :40, 41:].min() == 1
    assert grid[0, 41:, :40].max() == 0  # the third, on the second row
    assert grid[0, 40, :].min() == 1  # the gap between the rows


def test_non_image_data_logs_no_images(tmp_path):
    from implicit_vae.cli import main
    from tiny_runs import TINY_NETWORKS

    run = tmp_path / "toy"
    sets = [*TINY_NETWORKS, "data.name=toy4", "model.latent_dim=2", "train.max_steps=10",
            "train.val_every=5", f"train.run_dir={run}"]  # fmt: skip
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    acc = _events(run)
    assert acc.Tags()["images"] == []
    assert "val/loss" in acc.Tags()["scalars"]
