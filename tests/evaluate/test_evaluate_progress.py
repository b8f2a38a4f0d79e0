"""evaluate_model's long parts show progress (plain lines when the output is no terminal), the
quadrature can be skipped, and the AIS-versus-steps curve is on the headline's own examples."""

from __future__ import annotations

import math

import pytest
import torch

from implicit_vae.config import load_config
from implicit_vae.config.factory import build_model
from implicit_vae.evaluation.run import evaluate_model

SMALL = ["model.hidden=[8]", "model.latent_dim=2"]
FAST = {"ais_chains": 2, "ais_steps": 40, "ais_leapfrog_steps": 2, "is_samples": 8,
        "iw_mixing_samples": 3}  # fmt: skip


def _model(posterior: str, divergence: str):
    cfg = load_config(overrides=[*SMALL, f"model.posterior={posterior}",
                                 f"divergence.name={divergence}"])  # fmt: skip
    return build_model(cfg, 6).eval()


@pytest.fixture
def x():
    return torch.randint(0, 2, (6, 6), generator=torch.Generator().manual_seed(1)).float()


@pytest.mark.parametrize(
    "posterior,divergence,parts",
    [
        ("gaussian", "analytic", ["AIS ", "AIS curve, 10 steps ", "AIS curve, 30 steps ", "IS ",
                                  "quadrature "]),
        ("semi_implicit", "sivi", ["AIS ", "semi-implicit IW "]),
    ],
)  # fmt: skip
def test_every_long_part_reports_progress_as_plain_lines(
    posterior, divergence, parts, x, tmp_path, capsys
):
    out = evaluate_model(_model(posterior, divergence), x, divergence=divergence,
                         ais_curve_path=tmp_path / "curve.png", **FAST)  # fmt: skip
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    for part in parts:
        done = [line for line in lines if line.startswith(part) and "took" in line]
        assert done, (part, lines)
    assert math.isfinite(out["log_px_ais"])


def test_no_progress_writes_nothing(x, capsys):
    evaluate_model(_model("gaussian", "analytic"), x, divergence="analytic", progress=False, **FAST)
    assert capsys.readouterr().err == ""


def test_quadrature_can_be_skipped(x):
    model = _model("gaussian", "analytic")
    full = evaluate_model(model, x, divergence="analytic", progress=False, **FAST)
    assert "log_px_exact" in full and full["skipped"] == {}
    quick = evaluate_model(model, x, divergence="analytic", progress=False, exact=False, **FAST)
    assert "log_px_exact" not in quick and "log_px_exact_refinement_change" not in quick
    assert "no-exact" in quick["skipped"]["log_px_exact"]
    assert "log_px_exact" not in quick["unavailable"]


def test_the_ais_curve_ends_at_the_headline_number_on_the_same_examples(x, tmp_path):
    model = _model("gaussian", "analytic")
    out = evaluate_model(model, x, divergence="analytic", progress=False, per_example=True,
                         ais_curve_path=tmp_path / "c.png", ais_curve_examples=None, **FAST)  # fmt: skip
    curve = out["ais_versus_steps"]
    assert (curve["examples"], curve["of_examples"], curve["subset"]) == (6, 6, False)
    assert [p["steps"] for p in curve["points"]] == [10, 30, 40]
    last = curve["points"][-1]
    assert last["log_px"] == pytest.approx(out["log_px_ais"], abs=1e-6)
    assert last["stderr"] == pytest.approx(out["log_px_ais_stderr"], abs=1e-6)
    assert (tmp_path / "c.png").is_file()


def test_a_subset_curve_says_so_and_uses_those_examples_headline_values(x, tmp_path):
    model = _model("gaussian", "analytic")
    out = evaluate_model(model, x, divergence="analytic", progress=False, per_example=True,
                         ais_curve_path=tmp_path / "c.png", ais_curve_examples=3, **FAST)  # fmt: skip
    curve = out["ais_versus_steps"]
    assert (curve["examples"], curve["of_examples"], curve["subset"]) == (3, 6, True)
    first3 = out["per_example"]["log_px_ais"][:3].mean().item()
    assert curve["points"][-1]["log_px"] == pytest.approx(first3, abs=1e-6)
