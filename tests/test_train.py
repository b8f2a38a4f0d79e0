"""End-to-end training: run outputs, exact resume, log continuity."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from implicit_vae.cli import main
from implicit_vae.config import ConfigError, load_config
from implicit_vae.data.stream import BatchStream
from implicit_vae.training.checkpoint import load_checkpoint
from implicit_vae.training.fit import fit, new_run_dir
from tiny_runs import TINY_NETWORKS, assert_same_training_state

# A small network keeps each run to a few seconds while exercising every code path.
SMALL = [
    *TINY_NETWORKS,
    "train.val_every=7",
    "train.checkpoint_every=10",
    "train.log_every=5",
]


def _args(run_dir, steps, extra=()):
    out = []
    for item in [*SMALL, f"train.max_steps={steps}", f"train.run_dir={run_dir}", *extra]:
        out += ["--set", item]
    return out


def test_cli_run_on_digits_creates_every_output(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *_args(run, 30)]) == 0
    assert f"run directory: {run}" in capsys.readouterr().out
    for name in [
        "config.yaml",
        "metrics.csv",
        "summary.json",
        "checkpoints/last.ckpt",
        "checkpoints/best.ckpt",
        "plots/reconstructions.png",
        "plots/samples.png",
        "plots/training_curves.png",
        "plots/latent_map.png",
    ]:
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["kl_is_estimate"] is True
    for split in ("train", "val", "test"):
        assert {"loss", "reconstruction_error", "kl"} <= set(summary[split])
    assert summary["wall_time_s"] > 0
    # The stored config is complete and reloads to the same values.
    assert load_config(run / "config.yaml").train.max_steps == 30


def test_two_dimensional_latent_draws_the_posterior_scatter(tmp_path):
    run = tmp_path / "toy"
    overrides = [
        "data.name=toy4",
        "model.latent_dim=2",
        "model.posterior=implicit",
        "divergence.name=avb",
    ]
    assert main(["train", *_args(run, 12, overrides)]) == 0
    assert (run / "plots" / "posterior_scatter.png").is_file()


@pytest.mark.parametrize(
    "divergence,posterior",
    [("avb_ac", "noise_basis"), ("avb", "implicit"), ("analytic", "gaussian")],
)
def test_resume_reproduces_an_unbroken_run(tmp_path, divergence, posterior):
    """Model, critic and optimizer states after 10 + 15 steps equal those after 25 unbroken steps."""
    extra = [f"divergence.name={divergence}", f"model.posterior={posterior}"]
    whole = load_config(
        overrides=[*SMALL, *extra, "train.max_steps=25", f"train.run_dir={tmp_path / 'whole'}"]
    )
    fit(whole)
    split = load_config(
        overrides=[*SMALL, *extra, "train.max_steps=10", f"train.run_dir={tmp_path / 'split'}"]
    )
    fit(split)
    fit(None, resume=tmp_path / "split", resume_overrides={"train.max_steps": 25})
    assert_same_training_state(tmp_path / "whole", tmp_path / "split", 25)


def test_resume_mid_schedule_continues_the_cosine_curve(tmp_path, monkeypatch):
    """A cosine run stopped after its step-10 checkpoint and resumed equals the unbroken run: the
    rate is a function of the step, so nothing about the schedule has to be restored."""
    from implicit_vae.training.module import TwoPlayerLoop

    extra = ["train.lr_schedule=cosine", "train.max_steps=25"]
    fit(load_config(overrides=[*SMALL, *extra, f"train.run_dir={tmp_path / 'whole'}"]))

    class Stop(Exception):
        pass

    original = TwoPlayerLoop.on_step_end

    def stop_after_step_10(self):
        original(self)
        if self.model_step == 10:
            raise Stop

    monkeypatch.setattr(TwoPlayerLoop, "on_step_end", stop_after_step_10)
    with pytest.raises(Stop):
        fit(load_config(overrides=[*SMALL, *extra, f"train.run_dir={tmp_path / 'split'}"]))
    monkeypatch.setattr(TwoPlayerLoop, "on_step_end", original)
    assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.ckpt")["model_step"] == 10
    fit(None, resume=tmp_path / "split")
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.ckpt")
    assert a["model_step"] == b["model_step"] == 25
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_resume_keeps_earlier_metric_rows(tmp_path):
    run = tmp_path / "run"
    fit(load_config(overrides=[*SMALL, "train.max_steps=10", f"train.run_dir={run}"]))
    fit(None, resume=run, resume_overrides={"train.max_steps": 20})
    with (run / "metrics.csv").open() as handle:
        steps = sorted({int(float(r["step"])) for r in csv.DictReader(handle)})
    assert steps[0] == 5 and steps[-1] == 20


def test_resume_refuses_finished_run_and_architecture_changes(tmp_path):
    run = tmp_path / "run"
    fit(load_config(overrides=[*SMALL, "train.max_steps=5", f"train.run_dir={run}"]))
    with pytest.raises(ConfigError, match="already has 5 steps"):
        fit(None, resume=run)
    with pytest.raises(ConfigError, match="cannot be changed when resuming"):
        fit(None, resume=run, resume_overrides={"model.latent_dim": 3})


def test_new_run_dir_never_reuses_a_nonempty_directory(tmp_path):
    first = new_run_dir(tmp_path / "r")
    (first / "file").write_text("x")
    second = new_run_dir(tmp_path / "r")
    assert second.name == "r-2" and (first / "file").read_text() == "x"


def test_batch_stream_is_a_function_of_seed_and_step():
    data = torch.rand(100, 3)
    a, b = BatchStream(data, 32, seed=1), BatchStream(data, 32, seed=1)
    assert torch.equal(a[7], b[7]) and not torch.equal(a[7], a[8])
    epoch = torch.cat([a[k] for k in range(3)])  # 3 batches of 32 per epoch, no repeats
    assert torch.unique(epoch, dim=0).shape[0] == 96
    binary = BatchStream(data, 32, seed=1, dynamic_binarize=True)
    assert set(binary[0].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(binary[3], BatchStream(data, 32, seed=1, dynamic_binarize=True)[3])


CONV_KINDS = [("gaussian", "analytic"), ("gaussian_full", "analytic"), ("implicit", "avb"),
              ("noise_basis", "avb_ac")]  # fmt: skip


@pytest.mark.parametrize("data", ["digits", "mnist"])
@pytest.mark.parametrize(("posterior", "divergence"), CONV_KINDS)
def test_conv_models_train_from_the_cli_and_resume_exactly(tmp_path, data, posterior, divergence):
    """model.architecture=conv, every posterior kind, on 8x8 digits and 28x28 MNIST (a generated
    IDX fixture): 4 + 4 steps resumed from the CLI equal 8 unbroken steps, weight for weight."""
    from test_data import fake_mnist

    extra = ["model.architecture=conv", "model.conv_width=2", f"model.posterior={posterior}",
             f"divergence.name={divergence}", "train.checkpoint_every=4", "train.val_every=100",
             "train.batch_size=8", "model.latent_dim=3"]  # fmt: skip
    if posterior == "implicit":
        extra.append("model.noise_dim=4")
    if data == "mnist":
        (tmp_path / "idx").mkdir()
        fake_mnist(tmp_path / "idx", n_train=None, n_test=120, side=28)
        extra += ["data.name=mnist", f"data.path={tmp_path / 'idx'}"]
    assert main(["train", *_args(tmp_path / "whole", 8, extra)]) == 0
    assert main(["train", *_args(tmp_path / "split", 4, extra)]) == 0
    assert main(["train", "--resume", str(tmp_path / "split"), "--set", "train.max_steps=8"]) == 0
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.ckpt")
    assert a["model_step"] == b["model_step"] == 8
    assert a["event_shape"] == ([1, 8, 8] if data == "digits" else [1, 28, 28])
    assert any(".conv" in key or "convs" in key for key in a["model"]), "no conv layer in the model"
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
