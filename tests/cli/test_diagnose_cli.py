"""`implicit-vae diagnose` on tiny trained runs: the JSON's numbers within sanity bounds, a figure
that decodes, the exact case of a Gaussian VAE, and one-line errors before torch is imported."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from implicit_vae.cli import main
from tiny_runs import TINY_NETWORKS

DIAGNOSE = ["--examples", "3", "--samples", "200"]


def _train(run, *extra: str) -> None:
    argv = ["train"]
    for item in [*TINY_NETWORKS, "train.max_steps=6", "train.log_every=2",
                 f"train.run_dir={run}", *extra]:  # fmt: skip
        argv += ["--set", item]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A digits AVB-AC run (the default config: noise-basis posterior, adaptive contrast) and a
    Gaussian VAE run."""
    root = tmp_path_factory.mktemp("diagnose")
    _train(root / "ac")
    _train(root / "vae", "model.posterior=gaussian", "divergence.name=analytic")
    return root


def test_diagnose_of_an_avb_ac_run_writes_sane_json_and_a_figure(runs, capsys):
    from matplotlib.image import imread

    run = runs / "ac"
    assert main(["diagnose", str(run), *DIAGNOSE]) == 0
    out = capsys.readouterr().out
    assert "lower bound on the KL" in out and "estimate of avb_ac" in out
    r = json.loads((run / "diagnose.json").read_text())
    assert r["examples"] == 3 and r["samples"] == 200 and r["split"] == "val"
    assert r["posterior"] == "NoiseBasisPosterior" and r["divergence"] == "avb_ac"
    parts = r["kl_parts"]
    for key in ("correlation", "marginal_gaussian", "gaussian_fit", "non_gaussian", "lower_bound"):
        assert len(parts[key]["per_example"]) == 3 and math.isfinite(parts[key]["mean"]), key
    assert parts["correlation"]["min"] >= -1e-6  # −½ log det C ≥ 0
    assert parts["non_gaussian"]["min"] > -0.2  # ≥ 0 up to the 1-D estimates' error
    assert parts["gaussian_fit"]["mean"] == pytest.approx(
        parts["marginal_gaussian"]["mean"] + parts["correlation"]["mean"], abs=1e-6)
    assert r["kurtosis"]["mean"] >= 1.0 and r["kurtosis"]["max"] >= r["kurtosis"]["mean"]
    assert r["excess_kurtosis"]["mean"] == pytest.approx(r["kurtosis"]["mean"] - 3)
    assert 0.0 <= r["share_beyond_4"] <= 1.0 and len(r["correlation_eigenvalues"]) == 8
    charge = r["charge"]
    assert charge["has_critic"] and len(charge["estimate"]["per_example"]) == 3
    assert 0.0 <= charge["under_charged_fraction"] <= 1.0
    assert math.isfinite(charge["critic"]["critic_kl"]["mean"])
    assert charge["critic"]["marginal_kl"]["min"] > -0.2
    assert 0.0 <= r["critic_accuracy_last_10pct"] <= 1.0
    image = imread(run / "diagnose.png")
    assert image.shape == (520, 1690, 4)  # 13 × 4 inches at 130 dpi, RGBA
    assert image[..., :3].std() > 0.05  # drawn on, not blank


def test_a_gaussian_vae_is_exactly_gaussian_and_its_estimate_is_the_bound(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["diagnose", str(runs / "vae"), *DIAGNOSE, "--split", "test", "--out", str(out),
                 "--no-plot", "--seed", "4"]) == 0  # fmt: skip
    r = json.loads((out / "diagnose.json").read_text())
    assert not (out / "diagnose.png").exists() and not (runs / "vae" / "diagnose.json").exists()
    assert r["moments"] == "exact" and r["gaussian_family"] and r["seed"] == 4
    assert r["kl_parts"]["correlation"]["max"] == pytest.approx(0.0, abs=1e-6)
    assert r["kl_parts"]["non_gaussian"]["max"] == 0.0
    assert r["charge"]["estimate"]["per_example"] == pytest.approx(
        r["kl_parts"]["lower_bound"]["per_example"], abs=2e-3)
    assert r["charge"]["under_charged_fraction"] == 0.0  # an exact KL is the bound, not below it
    assert r["critic_accuracy_last_10pct"] is None


PROBE = """
import sys
from implicit_vae.cli import main
code = main(sys.argv[1:])
print(code, ",".join(sorted(m for m in ("torch", "matplotlib") if m in sys.modules)) or "-")
"""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/nothing"], "does not exist; expected the directory of an implicit-vae train run"),
        (["{tmp}"], "has no checkpoints/last.ckpt"),
        (["{tmp}", "--examples", "0"], "argument --examples: 0 is not a positive integer"),
        (["{tmp}", "--samples", "1"], "argument --samples: 1 is below 2"),
        (["{tmp}", "--split", "dev"], "argument --split: invalid choice"),
    ],
)
def test_bad_input_is_one_line_before_torch_is_imported(tmp_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run([sys.executable, "-c", PROBE, "diagnose", *argv], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    code, heavy = proc.stdout.split()[-2:]
    assert code == "2" and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and heavy == "-"


def test_out_that_is_a_file_is_refused(runs, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["diagnose", str(runs / "ac"), "--out", str(tmp_path / "file")]) == 2
    assert "--out:" in capsys.readouterr().err
