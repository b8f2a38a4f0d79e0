"""Non-finite guards (style guide R10) and the critic-saturation alarm.

NaN and inf are injected deterministically at the k-th *training* call of one component (calls made
with gradients off, i.e. validation and plots, are not counted), so the step at which training must
stop is known exactly.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from implicit_vae.cli import EXIT_NONFINITE, main
from implicit_vae.config import load_config
from implicit_vae.data.stream import BatchStream
from implicit_vae.divergences.base import DivergenceEstimator
from implicit_vae.likelihoods import Likelihood
from implicit_vae.model import ImplicitVAE
from implicit_vae.training.checkpoint import load_checkpoint
from implicit_vae.training.fit import fit
from implicit_vae.training.guards import (
    CriticSaturationWarning,
    NonFiniteError,
    SaturationAlarm,
    SkipCounter,
    first_nonfinite_weight,
)
from tiny_runs import TINY_NETWORKS

SMALL = [
    *TINY_NETWORKS,
    "train.val_every=1000",
    "train.checkpoint_every=4",
    "train.log_every=2",
]
ANALYTIC = ["divergence.name=analytic", "model.posterior=gaussian"]  # no critic


def _cfg(run_dir, steps, extra=()):
    return load_config(
        overrides=[*SMALL, f"train.max_steps={steps}", f"train.run_dir={run_dir}", *extra]
    )


def _inject(monkeypatch, cls, name, at, spoil):
    """Make ``cls.name`` return ``spoil(output)`` at its training calls numbered ``at`` (1-based)."""
    original = getattr(cls, name)
    calls = [0]

    def wrapper(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        if torch.is_grad_enabled():
            calls[0] += 1
            if calls[0] in at:
                out = spoil(out)
        return out

    monkeypatch.setattr(cls, name, wrapper)


class _BadGrad(torch.autograd.Function):
    """Identity forward; backward fills the gradient with ``value``."""

    @staticmethod
    def forward(ctx, x, value):
        ctx.value = value
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, ctx.value), None


def _assert_last_good(run, before_step):
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["model_step"] < before_step
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not (run / "summary.json").exists()


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize(
    "cls,name,term,spoil",
    [
        (DivergenceEstimator, "estimate", "KL estimate", lambda v: lambda out: out * v),
        (Likelihood, "log_prob", "reconstruction", lambda v: lambda out: out + v),
        (
            DivergenceEstimator,
            "critic_loss",
            "critic loss",
            lambda v: lambda out: out._replace(loss=out.loss * v),
        ),
    ],
    ids=["kl", "reconstruction", "critic"],
)
def test_nonfinite_term_stops_at_that_step_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, cls, name, term, spoil, value
):
    run = tmp_path / "run"
    _inject(monkeypatch, cls, name, {7}, spoil(value))
    with pytest.raises(NonFiniteError) as info:
        fit(_cfg(run, 12))
    err = info.value
    shown = "nan" if math.isnan(value) else "inf"
    assert (err.step, err.term, err.value) == (7, term, shown)
    assert str(err).startswith(f"training stopped at step 7: the {term} is ")
    assert err.checkpoint == run / "checkpoints" / "last.ckpt" and str(err.checkpoint) in str(err)
    _assert_last_good(run, 7)


def test_infinite_critic_logits_are_caught_in_the_critic_step(tmp_path, monkeypatch):
    from implicit_vae.divergences.critics import ConditionalCritic

    run = tmp_path / "run"
    # Per step the critic runs twice for its own loss, then once in the KL estimate: call 16 is the
    # first logit of step 6.
    _inject(monkeypatch, ConditionalCritic, "forward", {16}, lambda out: out + math.inf)
    with pytest.raises(NonFiniteError, match="at step 6: the critic loss is"):
        fit(_cfg(run, 10))
    _assert_last_good(run, 6)


@pytest.mark.parametrize("value,shown", [(math.inf, "inf"), (math.nan, "nan")])
def test_nonfinite_gradient_stops_before_the_optimizer_steps(tmp_path, monkeypatch, value, shown):
    run = tmp_path / "run"
    original, calls = ImplicitVAE.forward, [0]

    def forward(self, x, n_samples=1):
        terms = original(self, x, n_samples)
        if torch.is_grad_enabled():
            calls[0] += 1
            if calls[0] == 5:  # one parameter's gradient turns non-finite; the loss stays finite
                bias = self.likelihood.decoder[-1].bias
                bias.register_hook(lambda g: torch.full_like(g, value))
        return terms

    monkeypatch.setattr(ImplicitVAE, "forward", forward)
    with pytest.raises(NonFiniteError, match=f"at step 5: the model gradient is {shown}"):
        fit(_cfg(run, 10, ANALYTIC))
    _assert_last_good(run, 5)


@pytest.mark.filterwarnings("ignore:Error detected in")  # anomaly mode's forward traceback
def test_detect_anomaly_names_the_backward_that_made_a_nan(tmp_path, monkeypatch):
    original = ImplicitVAE.forward

    def forward(self, x, n_samples=1):
        terms = original(self, x, n_samples)
        if torch.is_grad_enabled():
            terms.loss = _BadGrad.apply(terms.loss, math.nan)
        return terms

    monkeypatch.setattr(ImplicitVAE, "forward", forward)
    cfg = _cfg(tmp_path / "run", 3, [*ANALYTIC, "train.detect_anomaly=true"])
    with pytest.raises(NonFiniteError, match="step 1: the model gradient is nan") as info:
        fit(cfg)
    assert "autograd anomaly" in str(info.value) and "returned nan values" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not torch.is_anomaly_enabled()


def test_nonfinite_weight_after_an_update_is_reported_by_name(tmp_path, monkeypatch):
    original, calls = torch.optim.Adam.step, [0]

    def step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == 6:
            with torch.no_grad():
                self.param_groups[0]["params"][0][0, 0] = math.inf
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    with pytest.raises(NonFiniteError, match=r"at step 6: the weight posterior\.\S+ is inf"):
        fit(_cfg(tmp_path / "run", 10, ANALYTIC))
    _assert_last_good(tmp_path / "run", 6)


def test_cli_reports_nan_data_in_one_line_and_exits_3(tmp_path, monkeypatch, capsys):
    original = BatchStream.__getitem__
    monkeypatch.setattr(
        BatchStream, "__getitem__", lambda s, k: original(s, k) * (math.nan if k == 4 else 1.0)
    )
    run = tmp_path / "run"
    args = [*SMALL, "train.max_steps=8", f"train.run_dir={run}"]
    assert main(["train", *[a for item in args for a in ("--set", item)]]) == EXIT_NONFINITE == 3
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("implicit-vae:")]
    assert lines == [
        "implicit-vae: training stopped at step 5: the critic loss is nan (the update was not "
        "applied; train.on_nonfinite=skip skips such batches, train.detect_anomaly=true finds the "
        f"operation that made it); the last good checkpoint is {run / 'checkpoints' / 'last.ckpt'}"
    ]
    _assert_last_good(run, 5)


def test_stop_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    _inject(monkeypatch, DivergenceEstimator, "estimate", {2}, lambda out: out * math.nan)
    with pytest.raises(NonFiniteError, match="no checkpoint had been written yet"):
        fit(_cfg(tmp_path / "run", 6))


def test_skip_mode_counts_skipped_batches_and_resumes_the_count(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _inject(monkeypatch, DivergenceEstimator, "estimate", {3, 5}, lambda out: out * math.nan)
    _, summary = fit(_cfg(run, 8, ["train.on_nonfinite=skip"]))
    assert summary["steps"] == 8 and summary["skipped_batches"] == 2
    assert json.loads((run / "summary.json").read_text())["skipped_batches"] == 2
    with (run / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/skipped_batches")]
    assert [float(r["train/skipped_batches"]) for r in rows] == [0.0, 1.0, 2.0, 2.0]
    assert all(math.isfinite(float(r["train/loss"])) for r in rows)
    _, summary = fit(None, resume=run, resume_overrides={"train.max_steps": 10})
    assert summary["skipped_batches"] == 2


def test_skip_mode_stops_after_too_many_bad_batches_in_a_row(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _inject(
        monkeypatch,
        DivergenceEstimator,
        "critic_loss",
        set(range(3, 99)),
        lambda out: out._replace(loss=out.loss * math.nan),
    )
    cfg = _cfg(run, 12, ["train.on_nonfinite=skip", "train.max_consecutive_skips=3"])
    with pytest.raises(NonFiniteError, match="step 6: the critic loss is nan .4 batches in a row"):
        fit(cfg)
    # Skipped batches leave the weights alone, so the step-4 checkpoint is good.
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["guards"]["skipped_batches"] == 2


def test_critic_saturation_alarm_warns_once_and_is_recorded(tmp_path, monkeypatch):
    run = tmp_path / "run"
    _inject(
        monkeypatch,
        DivergenceEstimator,
        "critic_loss",
        set(range(1, 99)),
        lambda out: out._replace(accuracy=1.0),
    )
    cfg = _cfg(run, 9, ["train.saturation_patience=5"])
    with pytest.warns(CriticSaturationWarning, match="critic saturated at step 5") as caught:
        _, summary = fit(cfg)
    assert len([w for w in caught if w.category is CriticSaturationWarning]) == 1
    assert "density chasm" in str(caught[0].message) and "avb_ac" in str(caught[0].message)
    assert summary["critic_saturated_at_step"] == 5
    with (run / "metrics.csv").open() as handle:
        values = [
            r["train/critic_saturated"]
            for r in csv.DictReader(handle)
            if r.get("train/critic_saturated")
        ]
    assert [float(v) for v in values] == [
        0.0,
        0.0,
        1.0,
        1.0,
        1.0,
    ]  # logged every 2 steps; saturated from 5


def test_a_healthy_run_records_no_alarm_and_no_skips(tmp_path):
    _, summary = fit(_cfg(tmp_path / "run", 4))
    assert summary["critic_saturated_at_step"] is None and summary["skipped_batches"] == 0
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["guards"]["skipped_batches"] == 0 and "rng_ranks" not in ckpt


def test_saturation_alarm_and_skip_counter_units():
    alarm = SaturationAlarm(0.99, 3)
    fired = [
        alarm.update(a, s) for s, a in enumerate([1.0, 1.0, math.nan, 1.0, 0.995, 1.0, 1.0], 1)
    ]
    assert fired == [False, False, False, False, False, True, False] and alarm.saturated_at == 6
    counter = SkipCounter("skip", 2)
    assert [counter.should_skip(), counter.should_skip(), counter.should_skip()] == [
        True,
        True,
        False,
    ]
    counter.good_batch()
    assert counter.should_skip() and counter.state() == {
        "skipped_batches": 4,
        "consecutive_skips": 1,
    }
    assert not SkipCounter("stop", 50).should_skip()
    layer = torch.nn.Linear(2, 2)
    assert first_nonfinite_weight(layer.named_parameters()) is None
    with torch.no_grad():
        layer.bias[1] = -math.inf
    assert first_nonfinite_weight(layer.named_parameters()) == ("bias", "-inf")
