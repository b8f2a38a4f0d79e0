"""The KL-accuracy benchmark's library side: known-answer cases, the JSON schema, atomic writes and
the figure, on a tiny grid."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from implicit_vae import benchmarks
from implicit_vae.benchmarks import (
    gaussian_case,
    kl_accuracy,
    markdown_table,
    monte_carlo_truths,
    sampler_only_case,
)
from implicit_vae.benchmarks.cases import semi_implicit_case
from implicit_vae.benchmarks.kl import run_cell
from pngs import decoded_png

CELL_KEYS = {
    "estimate",
    "truth",
    "relative_error",
    "wall_time_s",
    "steps",
    "status",
    "estimator",
    "case",
    "dim",
    "target_kl",
    "divergence",
}


@pytest.mark.parametrize(("dim", "kl"), [(2, 1.0), (2, 50.0), (8, 50.0), (128, 10.0)])
def test_gaussian_case_hits_the_target_kl(dim, kl):
    case = gaussian_case(dim, kl)
    q = torch.distributions.Normal(case.info["mean_norm"] / math.sqrt(dim), case.info["s"])
    p = torch.distributions.Normal(0.0, 1.0)
    exact = torch.distributions.kl_divergence(q, p) * dim
    assert case.truth["kl"][0] == pytest.approx(kl, rel=1e-9)
    assert float(exact) == pytest.approx(kl, rel=1e-5)
    assert case.truth["reverse_kl"][0] == pytest.approx(
        float(torch.distributions.kl_divergence(p, q)) * dim, rel=1e-5
    )
    assert case.info["kl_from_scale"] == pytest.approx(min(kl / 2, 2 * dim))
    assert case.sample_q(5).shape == (5, dim)


def test_monte_carlo_truths_agree_with_the_closed_form():
    case = gaussian_case(2, 1.0)
    case.truth.pop("kl")
    monte_carlo_truths(case, n=200_000)
    value, se = case.truth["kl"]
    assert abs(value - 1.0) < 4 * se + 1e-3
    assert set(case.truth) == {"kl", "reverse_kl", "js", "energy_distance", "mmd2"}
    assert 0 < case.truth["js"][0] < math.log(2)


def test_semi_implicit_case_density_is_exact():
    """log q of the semi-implicit case against two independent answers: it integrates to 1 (the
    trapezoid rule on a 2-D grid; q is a product, so the 1-D marginal suffices per axis), and it
    equals the posterior's own mixture density log E_ε N(z; μ(ε), s²) for d = 1 mixing, where 10⁶
    fresh draws make the mixture exact to ~1e-3."""
    case = semi_implicit_case(2)
    t = torch.linspace(-6.0, 14.0, 4001, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    mass = torch.trapezoid(torch.trapezoid(case.log_q(grid).exp().view(4001, 4001), t), t)
    assert float(mass) == pytest.approx(1.0, abs=1e-6)
    one = semi_implicit_case(1)
    torch.manual_seed(0)
    z = one.sample_q(6)
    mixture = one.posterior.mixture_log_prob(z.unsqueeze(1), torch.zeros(1, 1), 1_000_000)[:, 0]
    assert torch.allclose(one.log_q(z.double()).float(), mixture, atol=5e-3)


def test_semi_implicit_case_runs_sivi_on_the_posterior_and_skips_it_elsewhere():
    """sivi reads the mixing noise: on the semi-implicit case it runs on the case's posterior (its
    K = 100 surrogate is an upper estimate, above the truth by at most a few tenths of a nat at
    d = 2); on a case given as samplers it is a status, not a failure."""
    case = monte_carlo_truths(semi_implicit_case(2), n=100_000)
    cell = run_cell(case, "sivi", steps=0, batch_size=64, seed=0, samples=4000)
    truth, se = case.truth["kl"]
    assert cell["status"] == "ok"
    assert truth - 4 * se < cell["estimate"] < truth + 0.3
    skipped = run_cell(gaussian_case(2, 1.0), "sivi", steps=0, batch_size=64, seed=0, samples=64)
    assert skipped["status"] == "needs a semi-implicit posterior: not run"


def test_unknown_case_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown cases \\['banana'\\]"):
        kl_accuracy(["knn"], cases=["banana"], out_dir=tmp_path, progress=False)


def _atomic_writes(monkeypatch) -> list[str]:
    """Record every os.replace into a target, so the test can see that files arrive whole."""
    seen: list[str] = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(dst))
        assert os.path.basename(src).startswith(f".{os.path.basename(dst)}.")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    return seen


def test_tiny_run_writes_the_json_and_the_figure(tmp_path, monkeypatch):
    seen = _atomic_writes(monkeypatch)
    result = kl_accuracy(
        ["knn", "avb_ac"],
        dims=(2,),
        kls=(1,),
        steps=5,
        batch_size=32,
        out_dir=tmp_path,
        progress=False,
        extra_cases=False,
        samples=500,
        mc_samples=20_000,
    )
    on_disk = json.loads((tmp_path / "kl_accuracy.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["meta"]["complete"] is True
    assert len(on_disk["cells"]) == 2
    for cell in on_disk["cells"]:
        assert set(cell) >= CELL_KEYS
        assert cell["status"] == "ok"
        assert cell["truth"] == pytest.approx(1.0)
        assert cell["relative_error"] == pytest.approx(cell["estimate"] - 1.0)
        assert cell["wall_time_s"] > 0
    steps = {c["estimator"]: c["steps"] for c in on_disk["cells"]}
    assert steps == {"knn": 0, "avb_ac": 5}
    png = tmp_path / "kl_accuracy.png"
    decoded_png(png)
    assert {"kl_accuracy.json", "kl_accuracy.png"} <= set(seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kl_accuracy.json", "kl_accuracy.png"]
    assert "| knn |" in markdown_table(result)


def test_sampler_only_cells_say_what_they_need(tmp_path):
    case = monte_carlo_truths(sampler_only_case(2), n=20_000)
    cells = {
        n: benchmarks.run_cell(case, n, steps=2, batch_size=16, seed=0, samples=64)
        for n in ("kde", "monte_carlo", "analytic", "energy")
    }
    assert cells["kde"]["status"] == "needs log p: not run"
    assert cells["monte_carlo"]["status"] == "needs log q and log p: not run"
    assert cells["analytic"]["status"].startswith("not applicable")
    assert cells["energy"]["status"] == "ok"
    assert cells["energy"]["divergence"] == "energy_distance"
    assert cells["energy"]["relative_error"] is not None


def test_a_failing_estimator_is_recorded_not_raised(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("critic diverged")

    monkeypatch.setattr(benchmarks.kl, "estimate_divergence", boom)
    cell = benchmarks.run_cell(gaussian_case(2, 1.0), "avb", 3, 16, 0, 64)
    assert cell["status"] == "failed: RuntimeError: critic diverged"
    assert cell["estimate"] is None and cell["relative_error"] is None


def test_unknown_estimator_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown estimators"):
        kl_accuracy(["nope"], out_dir=tmp_path, progress=False)
    assert not (tmp_path / "kl_accuracy.json").exists()


def test_a_failed_json_write_leaves_the_previous_file_whole(tmp_path):
    path = benchmarks.write_json({"cells": [1]}, tmp_path / "kl_accuracy.json")
    with pytest.raises(ValueError):  # NaN is refused (allow_nan=False) halfway through the dump
        benchmarks.write_json({"cells": [1, float("nan")]}, path)
    assert json.loads(path.read_text()) == {"cells": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["kl_accuracy.json"]
