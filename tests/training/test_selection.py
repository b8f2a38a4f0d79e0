"""``train.select_by``: best.ckpt at the best logged criterion, a training trajectory that does not
depend on the criterion, refused resumes and combinations; and an old-style config (gaussian_skip:
true, no select_by) that resumes exactly."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from implicit_vae.cli import main
from implicit_vae.config import ConfigError, config_from_dict, load_config
from implicit_vae.config.factory import build_model
from implicit_vae.training.checkpoint import CheckpointError, atomic_save, load_checkpoint
from implicit_vae.training.fit import fit
from implicit_vae.training.selection import criterion_for
from tiny_runs import TINY_NETWORKS, assert_same_training_state

SMALL = [
    *TINY_NETWORKS,
    "train.threads=1",
    "train.log_every=5",
    "train.val_every=5",
    "train.checkpoint_every=10",
    "train.select_examples=32",
    "train.select_samples=8",
    "train.select_ais_chains=2",
    "train.select_ais_steps=10",
]
# posterior, estimator, select_by -> the metric it logs
RUNS = [
    ("gaussian", "avb", "iw_bound", "log_px_is"),
    ("semi_implicit", "sivi", "iw_bound", "log_px_iw_semi_implicit"),
    ("noise_basis", "avb_ac", "ais", "log_px_ais"),
]


def _cfg(run_dir, steps: int, *extra: str):
    return load_config(
        overrides=[*SMALL, f"train.max_steps={steps}", f"train.run_dir={run_dir}", *extra]
    )


def _column(run_dir, name: str) -> dict[int, float]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return {int(r["step"]): float(r[name]) for r in csv.DictReader(handle) if r.get(name)}


@pytest.mark.parametrize(("posterior", "estimator", "select_by", "metric"), RUNS)
def test_best_checkpoint_is_the_maximum_of_the_logged_criterion(
    tmp_path, posterior, estimator, select_by, metric
):
    """Every validation logs the criterion; best.ckpt is the step of its largest value, and
    summary.json names the criterion, the value and the step."""
    run = tmp_path / "run"
    extra = [f"model.posterior={posterior}", f"divergence.name={estimator}"]
    fit(_cfg(run, 30, *extra, f"train.select_by={select_by}"))
    logged = _column(run, f"val/{metric}")
    assert sorted(logged) == [5, 10, 15, 20, 25, 30]
    assert all(math.isfinite(v) and v < 0 for v in logged.values())  # log p(x) of 64 pixels
    assert _column(run, f"val/{metric}_stderr")
    step = max(logged, key=logged.get)
    best = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert best["model_step"] == step and best["best_step"] == step
    assert best["best_val"] == logged[step] and best["select_by"] == select_by
    chosen = json.loads((run / "summary.json").read_text())["selected_by"]
    assert chosen == {
        "select_by": select_by, "metric": f"val/{metric}", "value": logged[step], "step": step,
        "best_is": "highest", "examples": 32, **(
            {"samples": 8} if select_by == "iw_bound" else {"chains": 2, "steps": 10}),
    }  # fmt: skip


def test_loss_selection_is_the_minimum_and_is_reported(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *[a for o in [*SMALL, "train.max_steps=20", f"train.run_dir={run}"]
                            for a in ("--set", o)]]) == 0  # fmt: skip
    logged = _column(run, "val/loss")
    step = min(logged, key=logged.get)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["selected_by"]["step"] == step and summary["best_val_loss"] == logged[step]
    assert load_checkpoint(run / "checkpoints" / "best.ckpt")["model_step"] == step
    assert "chosen by train.select_by=loss (lowest val/loss" in capsys.readouterr().out


@pytest.mark.parametrize(("posterior", "estimator", "select_by", "metric"), [RUNS[0], RUNS[2]])
def test_the_criterion_does_not_move_the_training_trajectory(
    tmp_path, posterior, estimator, select_by, metric
):
    """Weights, optimizer states and RNG after 20 steps (3 validations) are bit-identical whether
    best.ckpt is chosen by the loss or by a sampled bound."""
    extra = [f"model.posterior={posterior}", f"divergence.name={estimator}"]
    fit(_cfg(tmp_path / "loss", 20, *extra, "train.val_every=7"))
    fit(_cfg(tmp_path / "bound", 20, *extra, "train.val_every=7", f"train.select_by={select_by}"))
    assert_same_training_state(tmp_path / "loss", tmp_path / "bound", 20)
    assert _column(tmp_path / "bound", f"val/{metric}")


def test_resume_refuses_another_criterion(tmp_path, capsys):
    run = tmp_path / "run"
    fit(_cfg(run, 10, "model.posterior=gaussian", "train.select_by=iw_bound"))
    with pytest.raises(ConfigError, match=r"^train\.select_by: the run chose best\.ckpt by "
                                          r"'iw_bound' since it started"):  # fmt: skip
        fit(None, resume=run, resume_overrides={"train.select_by": "loss", "train.max_steps": 20})
    code = main(["train", "--resume", str(run), "--set", "train.select_by=ais",
                 "--set", "train.max_steps=20"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "train.select_by" in err and len(err.splitlines()) == 1
    # the same criterion may be restated; the best so far carries over
    before = load_checkpoint(run / "checkpoints" / "last.ckpt")
    fit(None, resume=run, resume_overrides={"train.select_by": "iw_bound", "train.max_steps": 15})
    after = load_checkpoint(run / "checkpoints" / "best.ckpt")
    assert after["best_val"] >= before["best_val"]
    logged = _column(run, "val/log_px_is")
    assert after["best_val"] == max(logged.values())


def test_a_checkpoint_of_another_criterion_is_refused(tmp_path):
    """A checkpoint whose config and best value disagree on the criterion is not continued."""
    run = tmp_path / "run"
    fit(_cfg(run, 5, "model.posterior=gaussian", "train.select_by=iw_bound"))
    path = run / "checkpoints" / "last.ckpt"
    ckpt = load_checkpoint(path)
    ckpt["config"]["train"]["select_by"] = "loss"
    atomic_save(ckpt, path)
    with pytest.raises(CheckpointError, match="chose best.ckpt by 'iw_bound'"):
        fit(None, resume=run, resume_overrides={"train.max_steps": 10})


# model overrides, select_by -> the allowed list the error names (None: allowed)
COMBINATIONS = [
    (["model.posterior=implicit"], "iw_bound", "loss, ais"),
    (["model.posterior=noise_basis"], "iw_bound", "loss, ais"),
    (["model.posterior=implicit", "model.prior=implicit", "divergence.name=avb"], "ais", "loss"),
    (["model.posterior=gaussian", "model.prior=implicit", "divergence.name=avb"], "iw_bound",
     "loss"),
    (["model.posterior=implicit"], "ais", None),
    (["model.posterior=gaussian", "model.prior=gaussian_mixture", "divergence.name=avb"],
     "iw_bound", None),
    (["model.posterior=semi_implicit", "divergence.name=sivi"], "iw_bound", None),
]  # fmt: skip


@pytest.mark.parametrize(("models", "select_by", "allowed"), COMBINATIONS)
def test_combinations_the_posterior_does_not_allow_are_one_line_errors(
    tmp_path, models, select_by, allowed
):
    cfg = _cfg(tmp_path / "run", 5, *models, "model.prior_hidden=[8]",
               f"train.select_by={select_by}")  # fmt: skip
    model = build_model(cfg, 64)
    if allowed is None:
        assert criterion_for(cfg.train, model).maximise
        return
    with pytest.raises(ConfigError, match=rf"^train\.select_by: '{select_by}' cannot be used "
                                          rf"here: .*; allowed: {allowed}$"):  # fmt: skip
        criterion_for(cfg.train, model)
    with pytest.raises(ConfigError, match=r"^train\.select_by"):
        fit(cfg)
    assert not (tmp_path / "run").exists()  # refused before any run directory


def test_an_old_style_config_resumes_exactly(tmp_path):
    """A checkpoint as written before select_by and auto existed (gaussian_skip: true, no select_*
    keys, no select_by/best_step entries) resumes to the weights of an unbroken run, with the skip
    it had then (on for avb with N(0, I), off for avb_ac)."""
    for name, skip in (("avb", True), ("avb_ac", False)):
        extra = [f"divergence.name={name}", "model.posterior=implicit"]
        fit(_cfg(tmp_path / f"{name}_whole", 20, *extra))
        split = tmp_path / f"{name}_split"
        fit(_cfg(split, 10, *extra))
        path = split / "checkpoints" / "last.ckpt"
        ckpt = load_checkpoint(path)
        ckpt["config"]["divergence"]["gaussian_skip"] = True
        for key in [k for k in ckpt["config"]["train"] if k.startswith("select_")]:
            del ckpt["config"]["train"][key]
        del ckpt["select_by"], ckpt["best_step"]
        atomic_save(ckpt, path)
        old = load_checkpoint(path)
        built = build_model(config_from_dict(old["config"]), 64)
        assert built.estimator.critic.gaussian_skip is skip
        fit(None, resume=split, resume_overrides={"train.max_steps": 20})
        a = load_checkpoint(tmp_path / f"{name}_whole" / "checkpoints" / "last.ckpt")
        b = load_checkpoint(path)
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (name, key)
        assert b["config"]["divergence"]["gaussian_skip"] is True  # kept as it was stored
