"""Learning-rate schedules: exact values, and what the trainer applies."""

from __future__ import annotations

import csv
import math

import pytest

from implicit_vae.training.schedules import lr_factor


def test_constant_is_one_everywhere():
    assert {lr_factor("constant", s, 100) for s in (1, 50, 100)} == {1.0}


def test_cosine_starts_at_one_halves_midway_and_ends_near_zero():
    assert lr_factor("cosine", 1, 100) == 1.0
    assert lr_factor("cosine", 51, 100) == pytest.approx(0.5, abs=1e-12)
    last = lr_factor("cosine", 100, 100)
    assert last == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)), abs=1e-15)
    assert 0 < last < 1e-3
    values = [lr_factor("cosine", s, 100) for s in range(1, 101)]
    assert all(a > b for a, b in zip(values, values[1:]))  # strictly decreasing


@pytest.mark.parametrize(
    ("milestones", "gamma", "expected"),
    [
        ([3, 6], 0.5, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]),
        ([1], 0.1, [1] + [0.1] * 9),
        ([10], 0.1, [1] * 10),  # a milestone at the last update changes nothing of this run
    ],
)
def test_multistep_drops_by_gamma_after_each_milestone(milestones, gamma, expected):
    values = [lr_factor("multistep", s, 10, milestones, gamma) for s in range(1, 11)]
    assert values == pytest.approx(expected, rel=1e-12)


def test_multistep_matches_torch_multistep_lr_stepped_once_per_update():
    import torch

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    torch_schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[4, 7], gamma=0.3)
    for step in range(1, 13):  # update `step` uses the rate set after step - 1 scheduler steps
        assert lr_factor("multistep", step, 12, [4, 7], 0.3) == pytest.approx(
            opt.param_groups[0]["lr"], rel=1e-12), step
        opt.step()
        torch_schedule.step()


def test_unknown_schedule_is_refused_by_name():
    with pytest.raises(ValueError, match="'linear'.*constant"):
        lr_factor("linear", 1, 10)


@pytest.mark.parametrize(
    ("settings", "factor"),
    [
        (["train.lr_schedule=cosine"], lambda s: lr_factor("cosine", s, 20)),
        (["train.lr_schedule=multistep", "train.lr_milestones=[7,12]", "train.lr_gamma=0.5"],
         lambda s: lr_factor("multistep", s, 20, [7, 12], 0.5)),
    ],
    ids=["cosine", "multistep"],
)
def test_trainer_logs_and_applies_the_scheduled_rate(settings, factor, tmp_path):
    from implicit_vae.config import load_config
    from implicit_vae.training.fit import fit
    from tiny_runs import TINY_NETWORKS

    run = tmp_path / "run"
    overrides = [*TINY_NETWORKS, "train.max_steps=20", "train.log_every=5", "train.lr=0.01",
                 *settings, f"train.run_dir={run}"]
    fit(load_config(overrides=overrides))
    with (run / "metrics.csv").open() as handle:
        logged = {int(float(r["step"])): float(r["train/lr"]) for r in csv.DictReader(handle)
                  if r.get("train/lr")}
    # Each logged value is the mean over the 5 updates of its window.
    for step, value in logged.items():
        expect = sum(0.01 * factor(s) for s in range(step - 4, step + 1)) / 5
        assert value == pytest.approx(expect, rel=1e-6), step
    assert sorted(logged) == [5, 10, 15, 20]
