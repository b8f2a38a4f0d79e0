"""benchmarks/mnist.py on tiny settings: the split, the saved test binarisation and the JSON schema.

Needs the real MNIST t10k files in ``../shared/data/mnist`` (next to the repository); skipped without.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from pngs import decoded_png
from scripts import load_benchmark_script

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data" / "mnist"
HAS_DATA = any((DATA_DIR / f"t10k-images-idx3-ubyte{ext}").is_file() for ext in ("", ".gz"))
needs_mnist = pytest.mark.skipif(
    not HAS_DATA, reason=f"MNIST t10k files not found in {DATA_DIR} (the benchmark's default)"
)
# Tiny nets and budgets: the smoke run checks the plumbing, not the numbers.
TINY = [
    "--steps", "10",
    "--max-test", "20",
    "--ais-chains", "2",
    "--ais-steps", "5",
    "--is-samples", "10",
    "--threads", "1",
    "--set", "model.hidden=[16]",
    "--set", "divergence.critic_width=16",
    "--set", "divergence.critic_blocks=1",
    "--set", "model.n_basis=2",
    "--set", "model.noise_dim=4",
    "--set", "train.val_every=5",
    "--set", "train.log_every=5",
    "--set", "train.checkpoint_every=10",
]  # fmt: skip


def _tiny_mnist_run(config: str, run_dir: Path, *overrides: str) -> Path:
    """A 10-step run of a shipped MNIST config with TINY's networks, trained into ``run_dir``."""
    from implicit_vae.config import load_config
    from implicit_vae.training.fit import fit

    tiny = [a for a in TINY[TINY.index("--set") :] if a != "--set"]
    cfg = load_config(
        REPO / "src" / "implicit_vae" / "configs" / config,
        [*tiny, f"data.path={DATA_DIR}", "train.max_steps=10", "train.progress_bar=false",
         *overrides, f"train.run_dir={run_dir}"],
    )  # fmt: skip
    return fit(cfg)[0]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark_script("mnist.py", "mnist_benchmark")


def test_missing_data_dir_exits_2(bench, tmp_path, capsys):
    """A data directory that does not exist gets one clear line and exit code 2, before training."""
    code = bench.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "--data-dir" in err


@needs_mnist
def test_test_set_is_last_1000_binarised_once_with_seed_0(bench, tmp_path):
    """The test tensor is Bernoulli(intensity) of t10k[9000:10000] with Generator seed 0, saved as
    uint8, and a second call reuses the saved file; the train files (if any) are ignored."""
    from implicit_vae.data import read_idx

    t10k = bench.t10k_only_dir(DATA_DIR, tmp_path / "work")
    assert sorted(p.name.split(".")[0] for p in t10k.iterdir()) == [
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    x, info = bench.binarized_test_set(t10k, tmp_path, DATA_DIR)
    images = read_idx(next(t10k.glob("t10k-images*")))
    assert images.shape == (10000, 28, 28)
    intensities = torch.as_tensor(images[9000:].reshape(1000, -1), dtype=torch.float32) / 255.0
    expected = torch.bernoulli(intensities, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.uint8 and x.shape == (1000, 784)
    assert torch.equal(x, expected.to(torch.uint8))
    assert info["split"]["test"] == "t10k[9000:10000]" and "warning" not in info
    assert info["test_tensor_origin"] == "sampled and saved"
    saved = tmp_path / bench.TEST_TENSOR
    assert torch.equal(torch.load(saved, weights_only=True), x)

    again, info2 = bench.binarized_test_set(t10k, tmp_path, DATA_DIR)
    assert info2["test_tensor_origin"] == "loaded" and torch.equal(again, x)
    assert info2["test_tensor_sha256"] == info["test_tensor_sha256"]

    torch.save(torch.ones(1000, 784, dtype=torch.uint8), saved)  # inconsistent with the images
    with pytest.raises(bench.BenchmarkError, match="delete it to resample"):
        bench.binarized_test_set(t10k, tmp_path, DATA_DIR)


@needs_mnist
def test_smoke_run_writes_json_table_and_figures(bench, tmp_path, capsys):
    """All three models train for a few steps and are evaluated; the JSON has every field."""
    out = tmp_path / "results"
    assert bench.main([*TINY, "--out", str(out), "--data-dir", str(DATA_DIR)]) == 0

    report = json.loads((out / "mnist.json").read_text())
    assert report["benchmark"] == "mnist" and report["command"].startswith("python benchmarks/")
    assert report["data"]["test_examples_evaluated"] == 20
    assert report["evaluation"]["ais_chains"] == 2 and report["evaluation"]["ais_steps"] == 5
    assert set(report["models"]) == {"vae", "avb", "avb_ac"}
    common = {
        "config", "steps", "log_px_ais", "log_px_ais_stderr", "reconstruction_error",
        "train_wall_time_s", "eval_wall_time_s", "seconds_per_step", "critic_health",
    }  # fmt: skip
    for name, r in report["models"].items():
        assert common <= set(r), name
        assert r["config"] == f"mnist_{name}.yaml" and r["steps"] == 10
        assert math.isfinite(r["log_px_ais"]) and r["log_px_ais_stderr"] >= 0
        assert r["evaluation"]["ais"]["initial"] == "posterior moments"
        for kind in ("samples", "reconstructions", "training"):
            decoded_png(out / f"mnist_{name}_{kind}.png")
    vae = report["models"]["vae"]
    assert {"elbo", "kl", "log_px_is", "log_px_is_stderr"} <= set(vae)
    assert "elbo_estimate" not in vae and vae["critic_health"] is None
    for name in ("avb", "avb_ac"):
        r = report["models"][name]
        assert {"elbo_estimate", "kl_estimate"} <= set(r) and "log_px_is" not in r
        health = r["critic_health"]
        assert 0.0 <= health["final_critic_accuracy"] <= 1.0
        gap = r["elbo_estimate"] - r["log_px_ais"]
        assert health["elbo_estimate_minus_log_px_ais"] == pytest.approx(gap)
        assert health["curve"] and {"step", "critic_accuracy"} <= set(health["curve"][0])
    cmp = report["comparison"]
    assert cmp["avb_ac_minus_vae_log_px_ais"] == pytest.approx(
        report["models"]["avb_ac"]["log_px_ais"] - vae["log_px_ais"]
    )
    assert isinstance(cmp["goal_met"], bool)
    # per-image AIS saved by the same evaluation, so the paired comparison needs no second AIS run
    per_image = {n: torch.load(out / f"mnist_per_image_{n}.pt") for n in ("vae", "avb_ac")}
    n_test = report["data"]["test_examples_evaluated"]
    for name, saved in per_image.items():
        assert saved["log_px_ais"].shape == (n_test,)
        assert saved["log_px_ais"].mean().item() == pytest.approx(
            report["models"][name]["log_px_ais"]
        )
    paired = cmp["paired_over_test_images"]
    diff = per_image["avb_ac"]["log_px_ais"] - per_image["vae"]["log_px_ais"]
    assert paired["difference"] == pytest.approx(cmp["avb_ac_minus_vae_log_px_ais"], abs=1e-4)
    assert paired["difference_stderr_over_examples"] == pytest.approx(
        diff.std().item() / math.sqrt(n_test), rel=1e-4
    )

    table = (out / "mnist.md").read_text()
    assert table.count("\n| ") >= 4 and "AVB-AC − VAE" in table and "Paired over" in table
    assert "| avb_ac |" in capsys.readouterr().out
    assert (out / "mnist_test_binarized.pt").is_file()


@needs_mnist
def test_reuse_runs_evaluates_the_finished_run_and_refuses_another_config(bench, tmp_path, capsys):
    """--reuse-runs evaluates the run left in --workdir (same numbers, no new run directory); a run
    trained with other settings is refused with one line, never evaluated by mistake."""
    work, out = tmp_path / "work", tmp_path / "out"
    args = [*TINY, "--models", "vae", "--data-dir", str(DATA_DIR), "--workdir", str(work)]
    assert bench.main([*args, "--out", str(out / "a")]) == 0
    assert bench.main([*args, "--out", str(out / "b"), "--reuse-runs"]) == 0
    first, again = (json.loads((out / k / "mnist.json").read_text()) for k in ("a", "b"))
    assert again["models"]["vae"]["training"].startswith("reused")
    assert again["models"]["vae"]["log_px_ais"] == first["models"]["vae"]["log_px_ais"]
    assert not any(p.name.startswith("vae-") for p in work.iterdir())  # nothing trained again
    capsys.readouterr()
    code = bench.main([*args, "--out", str(out / "c"), "--reuse-runs", "--steps", "11"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--reuse-runs" in err and "train.max_steps" in err and err.count("\n") == 1


@needs_mnist
def test_a_later_run_of_one_model_keeps_the_others_rows(bench, tmp_path):
    """Rerunning one model into the same --out replaces its row and keeps the other models' rows,
    each with the command that produced it; other evaluation settings start a fresh report."""
    work, out = tmp_path / "work", tmp_path / "out"
    args = [*TINY, "--data-dir", str(DATA_DIR), "--workdir", str(work), "--out", str(out)]
    assert bench.main([*args, "--models", "vae", "avb_ac"]) == 0
    assert bench.main([*args, "--models", "avb_ac", "--seed", "1"]) == 0
    report = json.loads((out / "mnist.json").read_text())
    assert list(report["models"]) == ["vae", "avb_ac"] and not report["complete"]
    assert "--seed" not in report["models"]["vae"]["command"]
    assert "--seed 1" in report["models"]["avb_ac"]["command"]
    assert "vae: `python benchmarks/mnist.py" in (out / "mnist.md").read_text()
    assert bench.main([*args, "--models", "avb", "--ais-steps", "6"]) == 0
    assert list(json.loads((out / "mnist.json").read_text())["models"]) == ["avb"]


@needs_mnist
def test_optional_full_covariance_vae_is_paired_against_avb_ac(bench, tmp_path):
    """vae_full is not run by default; when run, the report pairs AVB-AC against it image by image
    and the three required models still decide whether the report is complete."""
    assert "vae_full" not in bench.parse_args([]).models
    work, out = tmp_path / "work", tmp_path / "out"
    args = [*TINY, "--data-dir", str(DATA_DIR), "--workdir", str(work), "--out", str(out)]
    assert bench.main([*args, "--models", "vae", "avb_ac", "vae_full"]) == 0
    report = json.loads((out / "mnist.json").read_text())
    assert report["models"]["vae_full"]["posterior"] == "gaussian_full" and not report["complete"]
    assert "log_px_is" in report["models"]["vae_full"]  # explicit: IS is allowed
    full = report["comparison"]["avb_ac_minus_vae_full_paired"]
    expect = report["models"]["avb_ac"]["log_px_ais"] - report["models"]["vae_full"]["log_px_ais"]
    assert full["difference"] == pytest.approx(expect, abs=1e-3) and full["examples"] == 20
    assert "AVB-AC − full-covariance VAE (vae_full)" in (out / "mnist.md").read_text()


@needs_mnist
def test_contrast_diagnostic_reads_two_runs_and_writes_json_and_figure(tmp_path, capsys):
    """benchmarks/mnist_contrast.py on two tiny avb_ac runs (diagonal and full contrast): the JSON
    holds each run's correlation KL (>= 0), kurtosis and critic accuracy, and the figure is written."""
    contrast = load_benchmark_script("mnist_contrast.py")
    runs = {}
    for name in ("diagonal", "full"):
        runs[name] = _tiny_mnist_run("mnist_avb_ac.yaml", tmp_path / name, f"divergence.contrast={name}")
    x = torch.bernoulli(torch.full((5, 784), 0.3), generator=torch.Generator().manual_seed(0))
    torch.save(x.to(torch.uint8), tmp_path / "x.pt")
    out = tmp_path / "out"
    argv = ["--diagonal", str(runs["diagonal"]), "--full", str(runs["full"]), "--examples", "5",
            "--samples", "200", "--test-tensor", str(tmp_path / "x.pt"), "--out", str(out)]  # fmt: skip
    assert contrast.main(argv) == 0
    report = json.loads((out / "mnist_contrast.json").read_text())
    for name in ("diagonal", "full"):
        r = report["runs"][name]
        assert r["contrast"] == name and r["kl_from_correlations"]["min"] >= -1e-6
        assert r["kurtosis"]["mean"] > 1.0 and 0.0 <= r["final_critic_accuracy"] <= 1.0
        assert len(r["correlation_eigenvalues"]) == 8
    decoded_png(out / "mnist_contrast.png")
    assert contrast.main(["--diagonal", str(tmp_path / "nope"), "--full", str(runs["full"])]) == 2
    assert "does not exist" in capsys.readouterr().err


@needs_mnist
def test_paired_per_image_ais_reproduces_evaluate_and_compares(tmp_path, capsys):
    """benchmarks/mnist_paired.py: the per-image AIS mean equals evaluate_model's log_px_ais with
    the same settings (so it reproduces mnist.json), and `compare` reports the paired difference
    with its standard error over images."""
    paired = load_benchmark_script("mnist_paired.py")
    from implicit_vae.evaluation.run import evaluate_model
    from implicit_vae.training.runs import load_run

    run = _tiny_mnist_run("mnist_vae.yaml", tmp_path / "vae")
    x = torch.bernoulli(torch.full((6, 784), 0.3), generator=torch.Generator().manual_seed(0))
    torch.save(x.to(torch.uint8), tmp_path / "x.pt")
    common = ["--test-tensor", str(tmp_path / "x.pt"), "--ais-chains", "2", "--ais-steps", "4",
              "--out", str(tmp_path)]  # fmt: skip
    assert paired.main(["per-image", "--run", str(run), "--name", "a", *common]) == 0
    _, model, _ = load_run(run, with_data=False)
    numbers = evaluate_model(model, x, divergence="analytic", ais_chains=2, ais_steps=4,
                             is_samples=2, seed=0, ais_leapfrog_steps=2)  # fmt: skip
    saved = torch.load(tmp_path / "mnist_per_image_a.pt")
    # readable by `implicit-vae compare` (same keys as evaluate's per-example files)
    assert saved["log_px_ais_stderr"].shape == (6,) and len(saved["data_sha256"]) == 64
    assert float(saved["log_px_ais"].mean()) == pytest.approx(numbers["log_px_ais"], abs=1e-4)
    shifted = {**saved, "log_px_ais": saved["log_px_ais"] - 1.0}
    torch.save(shifted, tmp_path / "mnist_per_image_b.pt")
    out = ["--out", str(tmp_path)]
    assert paired.main(["compare", "--a", "a", "--b", "b", *out]) == 0
    report = json.loads((tmp_path / "mnist_paired.json").read_text())
    assert report["difference"] == pytest.approx(1.0, abs=1e-5)
    assert report["difference_stderr_over_images"] == pytest.approx(0.0, abs=1e-5)
    assert report["images_where_a_is_higher"] == 1.0 and report["images"] == 6
    # files from different test images are refused in one line, not paired
    torch.save({**saved, "data_sha256": "0" * 64}, tmp_path / "mnist_per_image_d.pt")
    capsys.readouterr()
    assert paired.main(["compare", "--a", "a", "--b", "d", *out]) == 2
    assert "different data" in capsys.readouterr().err
    # --max-test: the first N images only (their AIS draws differ from a full run's, so compare
    # settings only between runs over the same --max-test)
    assert (
        paired.main(["per-image", "--run", str(run), "--name", "c", "--max-test", "4", *common])
        == 0
    )
    first = torch.load(tmp_path / "mnist_per_image_c.pt")
    assert first["log_px_ais"].shape == (4,) and first["ais"]["steps"] == 4
    assert torch.isfinite(first["log_px_ais"]).all()


@needs_mnist
def test_posterior_shape_summary_of_a_run(tmp_path, capsys):
    """benchmarks/mnist_posterior_shape.py on a tiny avb_ac run: kurtosis > 0, correlation KL >= 0,
    a critic accuracy in [0, 1], the critic's KL(q̃ ‖ N) and its marginal lower bound per image;
    a directory without a run is one line and exit code 2."""
    shape = load_benchmark_script("mnist_posterior_shape.py")
    run = _tiny_mnist_run("mnist_avb_ac.yaml", tmp_path / "run")
    x = torch.bernoulli(torch.full((4, 784), 0.3), generator=torch.Generator().manual_seed(0))
    torch.save(x.to(torch.uint8), tmp_path / "x.pt")
    argv = ["--run", "tiny", str(run), "--test-tensor", str(tmp_path / "x.pt"), "--samples", "200",
            "--out", str(tmp_path / "out")]
    assert shape.main(argv) == 0
    r = json.loads((tmp_path / "out" / "mnist_posterior_shape.json").read_text())["runs"]["tiny"]
    assert r["kurtosis"]["mean"] > 0 and r["kl_from_correlations"]["min"] >= -1e-6
    assert 0.0 <= r["critic_accuracy_last_10pct"] <= 1.0
    charge = r["critic_charge"]
    assert len(charge["critic_kl_per_image"]) == len(charge["marginal_kl_per_image"]) == 4
    assert math.isfinite(charge["critic_kl"]) and charge["marginal_kl"] > -0.1
    assert 0.0 <= charge["share_beyond_4"] <= 1.0
    wide = _tiny_mnist_run("mnist_avb_ac.yaml", tmp_path / "wide", "divergence.contrast_scale=2")
    charge = shape.critic_charge(wide, x, 200, seed=0)  # the closed-form part of a wider contrast
    assert all(math.isfinite(v) for v in charge["critic_kl_per_image"])
    capsys.readouterr()
    assert shape.main(["--run", "x", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a finished run" in err
