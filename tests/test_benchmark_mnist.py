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
